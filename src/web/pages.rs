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
use super::templates::{Field, Fields};

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

/// The home page's context read in place (see [`Fields`]): what its
/// `Serialize` gives at each path the page and the layout read.
impl Fields for HomePage<'_> {
    fn field<S: AsRef<str>>(&self, path: &[S]) -> Option<Field<'_>> {
        match path {
            [name] => match name.as_ref() {
                "title" => Some(Field::Str(self.title)),
                "tool_name" => Some(Field::Str(self.tool_name)),
                "greeting" => Some(Field::Str(self.greeting)),
                "login_available" => Some(Field::Bool(self.login_available)),
                "flashes" => self.flashes.is_empty().then_some(Field::EmptyList),
                "csrf" => self.csrf.map(Field::Str),
                _ => None,
            },
            [object, name] if object.as_ref() == "user" => {
                let user = self.user.as_ref()?;
                match name.as_ref() {
                    "username" => Some(Field::Str(user.username)),
                    "editcount" => Some(Field::Str(&user.editcount)),
                    "groups" => Some(Field::Str(&user.groups)),
                    "blocked" => Some(Field::Bool(user.blocked)),
                    _ => None,
                }
            }
            _ => None,
        }
    }
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
            let page = home_page(&state, flashes, Some(logged_in));
            let body = state
                .templates
                .render_fields("home", &page)
                .map_err(|e| render_error("home", &e))?;
            Ok(html_response(body.into()))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::web::templates::Templates;

    fn pages<'a>(flashes: &[Vec<Flash>]) -> Vec<HomePage<'a>> {
        let mut pages = Vec::new();
        for flashes in flashes {
            for (username, groups, blocked) in [
                ("Alice", "autoconfirmed, user", false),
                ("Bob <b> & \"c\"", "", true),
                ("é ✓ 🦀", "sysop", true),
                ("", "", false),
            ] {
                pages.push(HomePage {
                    title: "Home",
                    tool_name: "hello-oauth",
                    greeting: "Hi",
                    login_available: true,
                    flashes: flashes.clone(),
                    user: Some(UserView {
                        username,
                        editcount: "1,234".into(),
                        groups: groups.into(),
                        blocked,
                    }),
                    csrf: Some("t0k3n&"),
                });
            }
        }
        pages
    }

    /// Every path the home page or the layout can read gives, in place,
    /// what the page's JSON value holds there.
    #[test]
    fn the_home_page_read_in_place_is_its_json() {
        let notice = vec![Flash {
            level: super::super::session::FlashLevel::Info,
            text: "hi".into(),
        }];
        let mut all = pages(&[Vec::new(), notice]);
        all.push(HomePage {
            user: None,
            csrf: None,
            ..pages(&[Vec::new()]).remove(0)
        });
        let paths: &[&[&str]] = &[
            &["title"],
            &["tool_name"],
            &["greeting"],
            &["login_available"],
            &["flashes"],
            &["csrf"],
            &["user", "username"],
            &["user", "editcount"],
            &["user", "groups"],
            &["user", "blocked"],
            &["user", "nothing"],
            &["nothing"],
            &["user", "username", "deeper"],
        ];
        for page in &all {
            let json = serde_json::to_value(page).unwrap();
            for path in paths {
                let in_json = path
                    .iter()
                    .try_fold(&json, |value, key| value.as_object()?.get(*key));
                match page.field(path) {
                    Some(field) => assert_eq!(Some(&field.to_value()), in_json, "{path:?}"),
                    // Absent, or a kind `Field` does not have (a list of
                    // notices, a null user).
                    None => assert!(
                        in_json.is_none_or(
                            |v| v.is_null() || v.as_array().is_some_and(|a| !a.is_empty())
                        ),
                        "{path:?}: {in_json:?}"
                    ),
                }
            }
        }
    }

    /// Pages put together in place are the pages the templates render,
    /// byte for byte, for each shape, before and after the shape is cut.
    #[test]
    fn the_home_page_in_place_is_the_rendered_page() {
        let templates = Templates::new().unwrap();
        let notice = vec![Flash {
            level: super::super::session::FlashLevel::Error,
            text: "<no>".into(),
        }];
        for page in pages(&[Vec::new(), notice]) {
            let expected = templates.render_whole("home", &page);
            assert!(expected.contains("Hello "), "{expected}");
            for _ in 0..2 {
                assert_eq!(templates.render_fields("home", &page).unwrap(), expected);
            }
            // Once the shape is cut, a page without notices is put together
            // in place (a page with one never is).
            let in_place = templates.in_place("home", &page);
            if page.flashes.is_empty() && !page.user.as_ref().unwrap().groups.is_empty() {
                assert_eq!(in_place.as_deref(), Some(&*expected));
            } else if !page.flashes.is_empty() {
                assert_eq!(in_place, None);
            }
        }
    }
}
