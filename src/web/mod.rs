//! The web layer: routes, pages, middleware and the mapping of errors to
//! responses. Handlers get the shared [`AppState`] as request data.

pub mod account;
pub mod api;
pub mod auth;
pub mod errors;
pub mod limits;
pub mod methods;
pub mod middleware;
pub mod ops;
pub mod pages;
pub mod security;
pub mod session;
pub mod templates;
pub mod wiki;

use std::sync::Arc;
use std::time::Instant;

use poem::{Endpoint, EndpointExt, Response};

use methods::get;

use crate::config::Config;
use crate::readiness::WikiProbe;
use crate::telemetry::metrics::Metrics;
use templates::Templates;

/// Largest header block accepted: generous for cookies, far below memory trouble.
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What every handler may need, built once at start-up.
#[derive(Debug)]
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// Compiled page templates.
    pub templates: Templates,
    /// When the service started.
    pub started: Instant,
    /// The one outgoing HTTP client (see [`crate::http`]).
    pub http: reqwest::Client,
    /// This app's metrics, scraped at `/metrics`.
    pub metrics: Metrics,
    /// The latest background probe of the wiki, for `/readyz`.
    pub wiki_probe: Arc<WikiProbe>,
}

/// Builds the whole application: routes plus middleware, outermost last.
pub fn app(state: Arc<AppState>) -> anyhow::Result<impl Endpoint<Output = Response> + use<>> {
    let session = session::SessionMiddleware::new(state.config.session_key.secret())?;
    // Each page's methods: a wrong one is a 405 whose `Allow` lists them.
    let pages = vec![
        ("/", get(pages::home).head(pages::home)),
        // HEAD would start a login at the wiki, or spend a callback.
        ("/login", get(auth::login).without_head()),
        ("/oauth-callback", get(auth::oauth_callback).without_head()),
        ("/logout", get(auth::logout_form).post(auth::logout)),
        ("/profile", get(auth::profile)),
        (
            "/static/style.css",
            get(pages::stylesheet).head(pages::stylesheet),
        ),
    ];
    // The pages, the JSON API (/healthz, /readyz, /metrics, /api/v1/...),
    // its document and its explorer.
    let routes = api::mount(pages);
    let limits = limits::Limits::new(limits::LimitSettings {
        max_body_bytes: state.config.max_body_bytes,
        max_header_bytes: MAX_HEADER_BYTES,
        max_concurrent: state.config.max_concurrent,
        request_timeout: state.config.request_timeout,
    });
    Ok(routes.with(middleware::Front::new(state, limits, session)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
impl AppState {
    /// The state of `Config::for_tests`, for the unit tests.
    pub(crate) fn for_tests() -> Arc<AppState> {
        crate::install_crypto_provider();
        let config = Config::for_tests();
        Arc::new(AppState {
            templates: Templates::new().unwrap(),
            started: Instant::now(),
            http: crate::http::client(&config).unwrap(),
            metrics: Metrics::new(&config.tool_name).unwrap(),
            wiki_probe: Arc::new(WikiProbe::new(config.readiness_interval)),
            config,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// hyper copies a request's whole future into its connection on every
    /// request, so the future's size is paid per request (about one cache
    /// miss per 64 bytes: docs/performance.md, "Where the time goes"). It
    /// was 4.6 KB while every level was an `async fn` holding its own copy
    /// of the `Request`; written by hand at the front layer and at the
    /// dispatch it is 336 bytes. A new `async` level, or a handler
    /// future no longer boxed, shows here before it shows in a benchmark.
    #[test]
    fn a_requests_future_stays_small() {
        let app = app(AppState::for_tests()).unwrap();
        let request = || poem::Request::builder().uri_str("/healthz").finish();
        let front = std::mem::size_of_val(&app.call(request()));
        assert!(
            front <= 1024,
            "the front layer's future is {front} bytes, over its 1 KiB budget"
        );
    }
}
