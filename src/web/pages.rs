//! The HTML pages: the home page (anonymous or logged in, rendered from the
//! session alone: no call to the wiki on this path) and the stylesheet.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Response, handler};
use serde::Serialize;

use super::AppState;
use super::auth::group_digits;
use super::session::{Flash, Session};

/// The logged-in user, as the home page shows them.
#[derive(Debug, Serialize)]
struct UserView<'a> {
    username: &'a str,
    editcount: String,
    groups: &'a [String],
    blocked: bool,
}

/// What the home page shows.
#[derive(Debug, Serialize)]
struct HomePage<'a> {
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

/// `GET /`: the greeting (by name when logged in), any pending notices, and
/// a login link or the logout button.
#[handler]
pub fn home(state: Data<&Arc<AppState>>, session: Session) -> poem::Result<Response> {
    let flashes = session.take_flashes();
    let data = session.data();
    let logged_in = data.logged_in();
    let page = HomePage {
        tool_name: &state.config.tool_name,
        greeting: &state.config.greeting,
        login_available: state.config.oauth_configured(),
        flashes,
        user: logged_in.map(|l| UserView {
            username: &l.user.username,
            editcount: group_digits(l.user.editcount),
            groups: &l.user.groups,
            blocked: l.user.blocked,
        }),
        csrf: logged_in.map(|l| l.csrf.as_str()),
    };
    render_page(&state, "index", &page)
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
