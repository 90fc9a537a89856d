//! Logging in with a Wikimedia account: `/login`, `/oauth-callback`,
//! `/logout` and `/profile`.
//!
//! This is the one place where [`crate::mediawiki::Error`]s become what a
//! user sees: every failed login ends on the home page with a flash message
//! that says what happened and what to do, and leaves one `login` log event
//! with the request id and a [`LoginFailure`] reason code. No failure here is
//! a 500, and no secret reaches a page or a log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use poem::http::StatusCode;
use poem::web::{Data, Form, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use url::Url;

use super::AppState;
use super::middleware::RequestId;
use super::pages::{OAUTH_NOT_CONFIGURED, render_page};
use super::session::{
    AuthState, Flash, FlashLevel, LoggedIn, PendingLogin, PendingLookup, Session, UserSummary,
    is_https,
};
use super::wiki::Wiki;
use crate::config::{CallbackMode, Config};
use crate::mediawiki::{self, percent_decode};
use crate::telemetry::metrics::Metrics;

/// Longest `next` path accepted, in bytes.
const MAX_NEXT_BYTES: usize = 512;
/// Longest `oauth_token` or `oauth_verifier` accepted, in bytes.
const MAX_PARAM_BYTES: usize = 256;
/// Paths never returned to after login (they would loop or act).
const NO_RETURN: &[&str] = &["/login", "/oauth-callback", "/logout"];

/// Why a login failed: one code per cause, for the log, the metrics and
/// docs/oauth.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginFailure {
    /// No OAuth consumer on this instance.
    NotConfigured,
    /// The callback came to a session with no login under way (cookies
    /// blocked, another browser, a session key that changed).
    NoPendingLogin,
    /// The login took longer than 10 minutes, or its link was used already.
    LoginExpired,
    /// The callback's token is not one of this session's pending logins.
    TokenMismatch,
    /// The callback lacked `oauth_token`.
    BadCallback,
    /// The user did not approve the request on the wiki.
    UserDeclined,
    /// The wiki answered with an error.
    WikiRefused,
    /// The wiki could not be reached.
    WikiUnreachable,
    /// The wiki did not answer in time.
    WikiTimeout,
    /// The wiki's answer was not what the protocol says (HTTP error, too
    /// large, garbage).
    WikiBadAnswer,
    /// The identity JWT failed verification.
    IdentityInvalid,
}

impl LoginFailure {
    /// Every reason, for metrics that want to pre-register their labels.
    pub const ALL: [LoginFailure; 11] = [
        LoginFailure::NotConfigured,
        LoginFailure::NoPendingLogin,
        LoginFailure::LoginExpired,
        LoginFailure::TokenMismatch,
        LoginFailure::BadCallback,
        LoginFailure::UserDeclined,
        LoginFailure::WikiRefused,
        LoginFailure::WikiUnreachable,
        LoginFailure::WikiTimeout,
        LoginFailure::WikiBadAnswer,
        LoginFailure::IdentityInvalid,
    ];

    /// The reason code, as logged and counted.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailure::NotConfigured => "not_configured",
            LoginFailure::NoPendingLogin => "no_pending_login",
            LoginFailure::LoginExpired => "login_expired",
            LoginFailure::TokenMismatch => "token_mismatch",
            LoginFailure::BadCallback => "bad_callback",
            LoginFailure::UserDeclined => "user_declined",
            LoginFailure::WikiRefused => "wiki_refused",
            LoginFailure::WikiUnreachable => "wiki_unreachable",
            LoginFailure::WikiTimeout => "wiki_timeout",
            LoginFailure::WikiBadAnswer => "wiki_bad_answer",
            LoginFailure::IdentityInvalid => "identity_invalid",
        }
    }

    /// The reason for a failed call to the wiki.
    pub fn from_wiki_error(err: &mediawiki::Error) -> LoginFailure {
        use mediawiki::Error as E;
        match err {
            e if e.is_stale_request_token() => LoginFailure::LoginExpired,
            E::Wiki { .. } => LoginFailure::WikiRefused,
            E::Unreachable(_) => LoginFailure::WikiUnreachable,
            E::Timeout => LoginFailure::WikiTimeout,
            E::Status(_) | E::TooLarge { .. } | E::BadResponse(_) | E::BadToken(_) => {
                LoginFailure::WikiBadAnswer
            }
            E::Identity(_) => LoginFailure::IdentityInvalid,
        }
    }

    /// What the user is told: what happened and what to do.
    fn message(self, err: Option<&mediawiki::Error>) -> String {
        match self {
            LoginFailure::NotConfigured => OAUTH_NOT_CONFIGURED.to_owned(),
            LoginFailure::NoPendingLogin => "Login failed: this browser has no login in progress. \
                Are cookies disabled? Allow cookies for this site, make sure you use the same \
                address (not localhost in one place and 127.0.0.1 in another), and log in again."
                .to_owned(),
            LoginFailure::LoginExpired => "Your login expired or was already used: logins must \
                be finished within 10 minutes, and each link works once. Please log in again."
                .to_owned(),
            LoginFailure::TokenMismatch => "Login failed: the wiki sent back a login this \
                browser did not start (or one that was already finished). Please log in again."
                .to_owned(),
            LoginFailure::BadCallback => "Login failed: the wiki sent you back without the \
                login details. Please log in again."
                .to_owned(),
            LoginFailure::UserDeclined => "You did not allow this tool to know your account, \
                so you are not logged in. Log in again whenever you like."
                .to_owned(),
            LoginFailure::WikiRefused => match err {
                Some(mediawiki::Error::Wiki { message, .. }) => format!(
                    "The wiki refused the login: \u{201c}{message}\u{201d} Please try again; if \
                     it keeps happening, tell the tool's maintainer."
                ),
                _ => "The wiki refused the login. Please try again; if it keeps happening, tell \
                      the tool's maintainer."
                    .to_owned(),
            },
            LoginFailure::WikiUnreachable => "Login failed: the wiki could not be reached. \
                Please try again in a few minutes."
                .to_owned(),
            LoginFailure::WikiTimeout => "Login failed: the wiki took too long to answer. \
                Please try again in a few minutes."
                .to_owned(),
            LoginFailure::WikiBadAnswer => "Login failed: the wiki gave an answer this tool \
                does not understand. Please try again later; if it keeps happening, tell the \
                tool's maintainer."
                .to_owned(),
            LoginFailure::IdentityInvalid => {
                let detail = match err {
                    Some(mediawiki::Error::Identity(e)) => format!(" ({e})"),
                    _ => String::new(),
                };
                format!(
                    "Login refused: the wiki's statement of who you are failed a security \
                     check{detail}. You are not logged in. Please try again; if it keeps \
                     happening, tell the tool's maintainer."
                )
            }
        }
    }
}

impl std::fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn request_id(req: &Request) -> Arc<str> {
    req.data::<RequestId>()
        .map_or_else(|| Arc::from("-"), |id| id.0.clone())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Ends a failed login: flash, log line, count, back to the home page.
/// The wiki client, or, on an instance without an OAuth consumer, the
/// `not_configured` failure (flash, log line, metric) to answer with.
fn wiki_or_fail<'a>(
    state: &'a AppState,
    session: &Session,
    request_id: &str,
) -> Result<Wiki<'a>, Box<Response>> {
    Wiki::of(state).ok_or_else(|| {
        Box::new(fail(
            &state.metrics,
            session,
            request_id,
            LoginFailure::NotConfigured,
            None,
        ))
    })
}

fn fail(
    metrics: &Metrics,
    session: &Session,
    request_id: &str,
    reason: LoginFailure,
    err: Option<&mediawiki::Error>,
) -> Response {
    let error = err.map(ToString::to_string);
    tracing::info!(
        target: "login",
        outcome = "failed",
        reason = reason.as_str(),
        request_id,
        error = error.as_deref().unwrap_or(""),
        "login failed"
    );
    metrics.login_failed(reason.as_str());
    session.flash(FlashLevel::Error, reason.message(err));
    Redirect::see_other("/").into_response()
}

/// The query string's parameters; the first value of each name wins.
fn query_params(req: &Request) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

/// `raw` as a same-origin relative path (with its query), or `None` if it
/// could lead anywhere else: `//host`, `/\host`, `https://host`, their
/// percent-encoded forms, control characters, or a path that loops.
pub fn safe_next(raw: &str) -> Option<String> {
    let unsafe_form = |s: &str| {
        !s.starts_with('/')
            || s.starts_with("//")
            || s.contains('\\')
            || s.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    // As it is, and decoded up to three times.
    let leaves = |s: &str| {
        if unsafe_form(s) {
            return true;
        }
        let mut decoded = s.to_owned();
        for _ in 0..3 {
            let again = percent_decode(&decoded);
            if again == decoded {
                break;
            }
            if unsafe_form(&again) {
                return true;
            }
            decoded = again;
        }
        false
    };
    if raw.is_empty() || raw.len() > MAX_NEXT_BYTES || leaves(raw) {
        return None;
    }
    let base = Url::parse("http://next.invalid/").ok()?;
    let joined = base.join(raw).ok()?;
    if joined.scheme() != "http"
        || joined.host_str() != Some("next.invalid")
        || joined.port().is_some()
    {
        return None;
    }
    let path = joined.path();
    if NO_RETURN
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        return None;
    }
    let mut next = path.to_owned();
    if let Some(query) = joined.query() {
        next.push('?');
        next.push_str(query);
    }
    // Dot segments fold into `//host` once resolved (`/.//host`): what is
    // returned must pass too, not only what came in.
    (!leaves(&next)).then_some(next)
}

/// The page the user came from, if it is on this site.
fn referer_next(req: &Request, config: &Config) -> Option<String> {
    let referer = Url::parse(req.header("referer")?).ok()?;
    let origin = |u: &Url| {
        u.host_str().map(|h| {
            format!(
                "{}:{}",
                h.to_ascii_lowercase(),
                u.port_or_known_default().unwrap_or(0)
            )
        })
    };
    let referer_origin = origin(&referer)?;
    let own = match &config.public_url {
        Some(public) => origin(public),
        None => {
            let scheme = if is_https(req) { "https" } else { "http" };
            Url::parse(&format!("{scheme}://{}/", req.header("host")?))
                .ok()
                .and_then(|u| origin(&u))
        }
    }?;
    if referer_origin != own {
        return None;
    }
    let mut path = referer.path().to_owned();
    if let Some(q) = referer.query() {
        path.push('?');
        path.push_str(q);
    }
    safe_next(&path)
}

/// The `oauth_callback` to send: `oob`, or this tool's `/oauth-callback`.
fn callback(req: &Request, config: &Config) -> String {
    if config.oauth_callback == CallbackMode::Oob {
        return "oob".to_owned();
    }
    let base = match &config.public_url {
        Some(public) => {
            let mut base = public.clone();
            if !base.path().ends_with('/') {
                let path = format!("{}/", base.path());
                base.set_path(&path);
            }
            Some(base)
        }
        None => req.header("host").and_then(|host| {
            let scheme = if is_https(req) { "https" } else { "http" };
            Url::parse(&format!("{scheme}://{host}/"))
                .ok()
                .filter(|u| u.path() == "/" && u.username().is_empty())
        }),
    };
    match base.and_then(|b| b.join("oauth-callback").ok()) {
        Some(url) => url.to_string(),
        None => {
            tracing::warn!("no usable public URL for the OAuth callback: sending oob");
            "oob".to_owned()
        }
    }
}

/// `GET /login`: asks the wiki for a request token, remembers it in the
/// session, and sends the browser to the wiki to approve it.
#[handler]
pub async fn login(req: &Request, state: Data<&Arc<AppState>>, session: Session) -> Response {
    let id = request_id(req);
    let client = match wiki_or_fail(&state, &session, &id) {
        Ok(client) => client,
        Err(answer) => return *answer,
    };
    let next = query_params(req)
        .get("next")
        .and_then(|n| safe_next(n))
        .or_else(|| referer_next(req, &state.config));

    if let Some(logged_in) = session.data().logged_in() {
        session.flash(
            FlashLevel::Info,
            format!("You are already logged in as {}.", logged_in.user.username),
        );
        return Redirect::see_other(next.as_deref().unwrap_or("/")).into_response();
    }

    match client.initiate(&callback(req, &state.config)).await {
        Ok(token) => {
            let url = client.authorize_url(&token);
            let now = unix_now();
            session.update(|d| {
                d.add_pending(
                    PendingLogin {
                        token,
                        next,
                        created: now,
                    },
                    now,
                );
            });
            state.metrics.login_started();
            tracing::info!(target: "login", outcome = "started", request_id = &*id, "login started");
            Redirect::see_other(url).into_response()
        }
        Err(e) => fail(
            &state.metrics,
            &session,
            &id,
            LoginFailure::from_wiki_error(&e),
            Some(&e),
        ),
    }
}

/// `GET /oauth-callback`: the wiki sends the browser back here with
/// `oauth_token` and `oauth_verifier`; finish the login.
#[handler]
pub async fn oauth_callback(
    req: &Request,
    state: Data<&Arc<AppState>>,
    session: Session,
) -> Response {
    let id = request_id(req);
    // Every way this can fail: flash, log line and metric, then home.
    let failed = |reason: LoginFailure, err: Option<&mediawiki::Error>| {
        fail(&state.metrics, &session, &id, reason, err)
    };
    let client = match wiki_or_fail(&state, &session, &id) {
        Ok(client) => client,
        Err(answer) => return *answer,
    };
    let params = query_params(req);
    let param = |name: &str| {
        params
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty() && v.len() <= MAX_PARAM_BYTES)
    };
    let Some(oauth_token) = param("oauth_token") else {
        return failed(LoginFailure::BadCallback, None);
    };

    let lookup = session.update(|d| d.take_pending(oauth_token, unix_now()));
    let pending = match lookup {
        PendingLookup::Found(pending) => pending,
        PendingLookup::Expired(_) => {
            return failed(LoginFailure::LoginExpired, None);
        }
        PendingLookup::Mismatch => {
            return failed(LoginFailure::TokenMismatch, None);
        }
        PendingLookup::NothingPending => {
            let reason = if session.data().logged_in().is_some() {
                // Most likely the callback reloaded after a successful login.
                LoginFailure::LoginExpired
            } else {
                LoginFailure::NoPendingLogin
            };
            return failed(reason, None);
        }
    };

    let declined = params.contains_key("oauth_problem") || params.contains_key("error");
    let Some(verifier) = param("oauth_verifier").filter(|_| !declined) else {
        return failed(LoginFailure::UserDeclined, None);
    };

    let access = match client.exchange(&pending.token, verifier).await {
        Ok(access) => access,
        Err(e) => return failed(LoginFailure::from_wiki_error(&e), Some(&e)),
    };
    let identity = match client.identify(&access).await {
        Ok(identity) => identity,
        Err(e) => return failed(LoginFailure::from_wiki_error(&e), Some(&e)),
    };

    state.metrics.login_completed();
    let user = UserSummary::from(&identity);
    session.flash(
        FlashLevel::Success,
        format!("You are logged in as {}.", user.username),
    );
    session.renew(AuthState::LoggedIn(LoggedIn {
        token: access,
        user,
        csrf: new_csrf_token(),
        since: unix_now(),
    }));
    tracing::info!(
        target: "login",
        outcome = "completed",
        request_id = &*id,
        sub = %identity.sub,
        "login completed"
    );
    Redirect::see_other(pending.next.as_deref().unwrap_or("/")).into_response()
}

/// 32 random bytes, base64url.
fn new_csrf_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Serialize)]
struct LogoutPage<'a> {
    title: &'static str,
    tool_name: &'a str,
    flashes: Vec<Flash>,
    username: &'a str,
    csrf: &'a str,
}

/// `GET /logout`: the logout form (a GET never logs out by itself).
#[handler]
pub fn logout_form(state: Data<&Arc<AppState>>, session: Session) -> poem::Result<Response> {
    let data = session.data();
    let Some(logged_in) = data.logged_in() else {
        session.flash(FlashLevel::Info, "You are not logged in.");
        return Ok(Redirect::see_other("/").into_response());
    };
    let page = LogoutPage {
        title: "Log out",
        tool_name: &state.config.tool_name,
        flashes: session.take_flashes(),
        username: &logged_in.user.username,
        csrf: &logged_in.csrf,
    };
    render_page(&state, "logout", &page)
}

/// The logout form's fields.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session if the form carries its CSRF token.
#[handler]
pub fn logout(
    req: &Request,
    session: Session,
    form: poem::Result<Form<LogoutForm>>,
) -> poem::Result<Response> {
    let id = request_id(req);
    // A form too large to read is refused as such (413), not taken for a
    // form without its token; any other unreadable form has no token.
    let form = match form {
        Ok(form) => Some(form),
        Err(e) if super::limits::is_body_too_large(&e) => {
            return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        Err(_) => None,
    };
    let data = session.data();
    let Some(logged_in) = data.logged_in() else {
        session.flash(FlashLevel::Info, "You are not logged in.");
        return Ok(Redirect::see_other("/").into_response());
    };
    let sent = form.as_ref().and_then(|f| f.csrf.as_deref()).unwrap_or("");
    if !bool::from(sent.as_bytes().ct_eq(logged_in.csrf.as_bytes())) {
        tracing::warn!(
            target: "login",
            outcome = "logout_refused",
            request_id = &*id,
            "logout refused: missing or wrong CSRF token"
        );
        return Err(poem::Error::from_string(
            "You were not logged out: the logout form was out of date or came from another \
             site. Go back to the home page and use its Log out button.",
            StatusCode::FORBIDDEN,
        ));
    }
    session.purge();
    session.flash(
        FlashLevel::Success,
        "You have logged out. To also withdraw this tool's access to your account, visit \
         Special:OAuthManageMyGrants on the wiki.",
    );
    tracing::info!(target: "login", outcome = "logged_out", request_id = &*id, "logged out");
    Ok(Redirect::see_other("/").into_response())
}

#[derive(Serialize)]
struct ProfileView {
    editcount: String,
    groups: Vec<String>,
    rights: Vec<String>,
    registration: Option<String>,
}

#[derive(Serialize)]
struct ProfilePage<'a> {
    title: &'static str,
    tool_name: &'a str,
    flashes: Vec<Flash>,
    username: &'a str,
    csrf: &'a str,
    wiki: String,
    profile: Option<ProfileView>,
    note: Option<String>,
}

/// Thousands separated by commas, as the home page shows counts.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the user is told when the live lookup fails.
fn profile_note(err: &mediawiki::Error) -> String {
    use mediawiki::Error as E;
    match err {
        E::Wiki { message, .. } => format!(
            "The wiki refused to show your account: \u{201c}{message}\u{201d} If you withdrew this \
             tool's access, log out and log in again."
        ),
        E::Timeout => "The wiki took too long to answer; reload the page to try again.".into(),
        E::Unreachable(_) => "The wiki could not be reached; reload the page to try again.".into(),
        _ => "The wiki's answer could not be understood; reload the page to try again.".into(),
    }
}

/// `GET /profile`: the user's account, fetched live from the Action API as
/// the user. Renders (with a note) even when the wiki fails.
#[handler]
pub async fn profile(
    req: &Request,
    state: Data<&Arc<AppState>>,
    session: Session,
) -> poem::Result<Response> {
    let id = request_id(req);
    let data = session.data();
    let Some(logged_in) = data.logged_in() else {
        session.flash(FlashLevel::Info, "Log in to see your account.");
        return Ok(Redirect::see_other("/").into_response());
    };
    let (profile, note) = match Wiki::of(&state) {
        None => (None, Some(OAUTH_NOT_CONFIGURED.to_owned())),
        Some(client) => match client.user_info(&logged_in.token).await {
            Ok(info) => (
                Some(ProfileView {
                    editcount: group_digits(info.editcount),
                    groups: info.groups.into_iter().filter(|g| g != "*").collect(),
                    rights: info.rights,
                    registration: info.registration,
                }),
                None,
            ),
            Err(e) => {
                tracing::warn!(
                    target: "profile",
                    request_id = &*id,
                    error = %e,
                    "could not fetch the user's account"
                );
                (None, Some(profile_note(&e)))
            }
        },
    };
    let page = ProfilePage {
        title: "Your account",
        tool_name: &state.config.tool_name,
        flashes: session.take_flashes(),
        username: &logged_in.user.username,
        csrf: &logged_in.csrf,
        wiki: state
            .config
            .mwuri
            .host_str()
            .unwrap_or("the wiki")
            .to_owned(),
        profile,
        note,
    };
    render_page(&state, "profile", &page)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn safe_relative_paths_are_kept() {
        assert_eq!(safe_next("/").as_deref(), Some("/"));
        assert_eq!(safe_next("/profile").as_deref(), Some("/profile"));
        assert_eq!(safe_next("/a/b?c=d&e=/f").as_deref(), Some("/a/b?c=d&e=/f"));
        assert_eq!(safe_next("/%E2%9C%93").as_deref(), Some("/%E2%9C%93"));
    }

    #[test]
    fn anything_that_could_leave_the_site_is_refused() {
        for evil in [
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "http:evil.example",
            "evil.example",
            "%2F%2Fevil.example",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%255C%255Cevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " //evil.example",
            "javascript:alert(1)",
            "",
            "/login",
            "/logout",
            "/oauth-callback?oauth_token=x",
            // Found by the fuzzer: dot segments that resolve to `//host`.
            "/.//evil.example",
            "/..//evil.example",
            "/a/../..//evil.example",
            "/./%2F/evil.example",
        ] {
            assert_eq!(safe_next(evil), None, "{evil:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(600))), None);
    }

    #[test]
    fn every_reason_has_a_distinct_code_and_a_message() {
        let mut codes: Vec<&str> = LoginFailure::ALL.iter().map(|r| r.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), LoginFailure::ALL.len());
        for reason in LoginFailure::ALL {
            assert!(reason.message(None).len() > 20);
        }
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1234567), "1,234,567");
    }
}
