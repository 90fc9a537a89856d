//! The HTML pages: the home page and the stylesheet, plus `/login` while
//! OAuth is not configured on this instance.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::{Data, Redirect};
use poem::{IntoResponse, Response, handler};
use serde::Serialize;

use super::AppState;
use super::session::{Flash, FlashLevel, Session};

/// What the home page shows.
#[derive(Debug, Serialize)]
struct HomePage<'a> {
    tool_name: &'a str,
    greeting: &'a str,
    login_available: bool,
    flashes: Vec<Flash>,
}

/// Renders a page, mapping a template failure to an opaque 500.
pub fn render_page(
    state: &AppState,
    name: &str,
    context: &impl Serialize,
) -> poem::Result<Response> {
    let body = state.templates.render(name, context).map_err(|e| {
        poem::Error::from_string(
            format!("rendering {name}: {e}"),
            StatusCode::INTERNAL_SERVER_ERROR,
        )
    })?;
    Ok(Response::builder()
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body))
}

/// `GET /`: the greeting, any pending notices, and a login link.
#[handler]
pub fn home(state: Data<&Arc<AppState>>, session: Session) -> poem::Result<Response> {
    let page = HomePage {
        tool_name: &state.config.tool_name,
        greeting: &state.config.greeting,
        login_available: state.config.oauth_configured(),
        flashes: session.take_flashes(),
    };
    render_page(&state, "index", &page)
}

/// Text shown when someone tries to log in on an instance without a consumer.
pub const OAUTH_NOT_CONFIGURED: &str = "Login is not available: this instance has no OAuth \
    consumer configured. Its operator must set TOOL_OAUTH_CONSUMER_KEY, \
    TOOL_OAUTH_CONSUMER_SECRET and TOOL_SESSION_KEY (see docs/oauth.md).";

/// `GET /login`.
#[handler]
pub fn login(state: Data<&Arc<AppState>>, session: Session) -> Response {
    if !state.config.oauth_configured() {
        session.flash(FlashLevel::Error, OAUTH_NOT_CONFIGURED);
        return Redirect::see_other("/").into_response();
    }
    session.flash(FlashLevel::Error, "Login is not implemented yet.");
    Redirect::see_other("/").into_response()
}

/// `GET /static/style.css`: the tool's own stylesheet.
#[handler]
pub fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(super::templates::STYLESHEET)
}
