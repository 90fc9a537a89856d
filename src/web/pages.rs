//! The HTML pages: the home page (anonymous or logged in, rendered from the
//! session alone: no call to the wiki on this path) and the stylesheet.

use std::sync::Arc;

use poem::http::{HeaderMap, HeaderValue, StatusCode, header};
use poem::web::Data;
use poem::{Body, Response, handler};
use serde::Serialize;

use super::AppState;
use super::auth::group_digits;
use super::session::{Flash, LoggedIn, Session};

/// The logged-in user, as the home page shows them.
#[derive(Debug, Serialize)]
struct UserView<'a> {
    username: &'a str,
    editcount: String,
    /// Comma-separated, empty for none: joined here rather than with an
    /// `#each` in the template, which costs a block context per group.
    groups: String,
    blocked: bool,
}

/// What the home page shows, and what the layout around it reads (`title`,
/// `tool_name`, `flashes`).
#[derive(Debug, Serialize)]
struct HomePage<'a> {
    title: &'static str,
    tool_name: &'a str,
    greeting: &'a str,
    login_available: bool,
    flashes: Vec<Flash>,
    user: Option<UserView<'a>>,
    csrf: Option<&'a str>,
}

/// Renders a page, mapping a template failure to an opaque 500.
pub fn render_page(
    state: &AppState,
    name: &str,
    context: &impl Serialize,
) -> poem::Result<Response> {
    let body = state
        .templates
        .render(name, context)
        .map_err(|e| render_error(name, &e))?;
    Ok(html_response(body.into()))
}

fn render_error(name: &str, e: &handlebars::RenderError) -> poem::Error {
    poem::Error::from_string(
        format!("rendering {name}: {e}"),
        StatusCode::INTERNAL_SERVER_ERROR,
    )
}

/// An HTML page's response: its body and the two headers every page has.
fn html_response(body: Body) -> Response {
    let mut resp = Response::from(body);
    // Sized once for what every page carries (its own two, the security
    // headers, the request id, a cookie): a growing map rehashes each time.
    *resp.headers_mut() = HeaderMap::with_capacity(16);
    // Values checked at compile time, not on every response.
    const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
    resp.headers_mut().insert(header::CONTENT_TYPE, HTML);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, super::security::NO_STORE);
    resp
}

/// `GET /`: the greeting (by name when logged in), any pending notices, and
/// a login link (`index.hbs`) or the logout button (`home.hbs`).
#[handler]
pub fn home(state: Data<&Arc<AppState>>, session: Session) -> poem::Result<Response> {
    let flashes = session.take_flashes();
    // Rendered from the session in place: no copy of it.
    session.read(|data| match data.logged_in() {
        None if flashes.is_empty() => {
            // The same page for every anonymous visitor: see
            // `Templates::anonymous_home`.
            let body = state
                .templates
                .anonymous_home(|| home_page(&state, Vec::new(), None))
                .map_err(|e| render_error("index", &e))?;
            Ok(html_response(Body::from_bytes(body)))
        }
        None => render_page(&state, "index", &home_page(&state, flashes, None)),
        // Its own template (`home.hbs`) rather than a branch of the
        // anonymous one: an `{{#if user}}` around the whole page was a block
        // helper, its parameters and a block context on every render.
        Some(logged_in) => {
            render_page(&state, "home", &home_page(&state, flashes, Some(logged_in)))
        }
    })
}

/// The home page's context: anonymous when `logged_in` is `None`.
fn home_page<'a>(
    state: &'a AppState,
    flashes: Vec<Flash>,
    logged_in: Option<&'a LoggedIn>,
) -> HomePage<'a> {
    HomePage {
        title: "Home",
        tool_name: &state.config.tool_name,
        greeting: &state.config.greeting,
        login_available: state.config.oauth_configured(),
        flashes,
        user: logged_in.map(|l| UserView {
            username: &l.user.username,
            editcount: group_digits(l.user.editcount),
            groups: l.user.groups.join(", "),
            blocked: l.user.blocked,
        }),
        csrf: logged_in.map(|l| l.csrf.as_str()),
    }
}

/// Text shown when someone tries to log in on an instance without a consumer.
pub const OAUTH_NOT_CONFIGURED: &str = "Login is not available: this instance has no OAuth \
    consumer configured. Its operator must set TOOL_OAUTH_CONSUMER_KEY, \
    TOOL_OAUTH_CONSUMER_SECRET and TOOL_SESSION_KEY (see docs/oauth.md).";

/// `GET /static/style.css`: the tool's own stylesheet.
#[handler]
pub fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(super::templates::STYLESHEET)
}
