//! The `auth` group of the API: who is logged in (`GET /api/v1/me`, from
//! the session alone, no call to the wiki) and their account as the wiki
//! sees it now (`GET /api/v1/userinfo`, from the Action API as the user).
//!
//! Neither answer ever carries a token, a token secret or the CSRF token:
//! the response types below have no field for them. The wiki's failures
//! become documented `502`/`504` answers with a reason code, never a `500`.

use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::AppState;
use super::api::{ApiError, ApiTags};
use super::middleware::RequestId;
use super::session::{COOKIE_NAME, LoggedIn, MAX_AGE, Session};
use super::wiki::Wiki;
use crate::mediawiki;

/// The `auth` group of the API.
#[derive(Debug, Clone, Copy)]
pub struct AuthApi;

/// The `WWW-Authenticate` challenge of a 401: log in with a form, get a
/// cookie (RFC 9110 asks every 401 for a challenge; this is the "Cookie"
/// scheme of draft-broyer-http-cookie-auth).
fn challenge() -> String {
    format!("Cookie realm=\"hello-oauth\", form-action=\"/login\", cookie-name=\"{COOKIE_NAME}\"")
}

/// The logged-in user, as the wiki vouched for them at login (the signed
/// identity the tool verified), kept in the session.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(example)]
pub struct Identity {
    /// The user name.
    pub username: String,
    /// The central user id (the identity's `sub`): the same on every wiki
    /// of the farm, and unchanged by a rename.
    pub sub: String,
    /// Edits at login time.
    pub editcount: u64,
    /// Groups at login time, without the implicit `*` (at most 20 are kept).
    pub groups: Vec<String>,
    /// Whether the user was blocked at login time.
    pub blocked: bool,
    /// The OAuth grants the user gave this tool at login (e.g.
    /// `mwoauth-authonly`, `basic`). Rights are not kept in the session
    /// (they can be long): `/api/v1/userinfo` has them, live.
    pub grants: Vec<String>,
    /// When the user logged in, in seconds since the Unix epoch.
    pub logged_in_at: u64,
    /// When this login ends and the user must log in again, in seconds since
    /// the Unix epoch.
    pub login_expires_at: u64,
}

impl Example for Identity {
    fn example() -> Self {
        Identity {
            username: "Example User".into(),
            sub: "12345678".into(),
            editcount: 1234,
            groups: vec!["user".into(), "autoconfirmed".into()],
            blocked: false,
            grants: vec!["basic".into()],
            logged_in_at: 1_767_225_600,
            login_expires_at: 1_767_225_600 + MAX_AGE.as_secs(),
        }
    }
}

impl From<&LoggedIn> for Identity {
    fn from(login: &LoggedIn) -> Self {
        let user = &login.user;
        Identity {
            username: user.username.clone(),
            sub: user.sub.clone(),
            editcount: user.editcount,
            groups: user.groups.clone(),
            blocked: user.blocked,
            grants: user.grants.clone(),
            logged_in_at: login.since,
            login_expires_at: login.since.saturating_add(MAX_AGE.as_secs()),
        }
    }
}

/// The user's account as the wiki sees it right now
/// (`action=query&meta=userinfo`, asked as the user).
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(example)]
pub struct UserInfo {
    /// The local user id on this wiki.
    pub id: u64,
    /// The user name.
    pub username: String,
    /// Edits on this wiki.
    pub editcount: u64,
    /// Groups, implicit ones included, without `*`.
    pub groups: Vec<String>,
    /// Rights the user has on this wiki.
    pub rights: Vec<String>,
    /// When the account was registered (ISO 8601); absent for accounts
    /// older than the wiki's record of registrations.
    #[oai(skip_serializing_if_is_none)]
    pub registration: Option<String>,
}

impl Example for UserInfo {
    fn example() -> Self {
        UserInfo {
            id: 42,
            username: "Example User".into(),
            editcount: 1234,
            groups: vec!["user".into(), "autoconfirmed".into()],
            rights: vec!["read".into(), "edit".into(), "createpage".into()],
            registration: Some("2015-03-14T15:09:26Z".into()),
        }
    }
}

impl From<mediawiki::UserInfo> for UserInfo {
    fn from(info: mediawiki::UserInfo) -> Self {
        UserInfo {
            id: info.id,
            username: info.name,
            editcount: info.editcount,
            groups: info.groups.into_iter().filter(|g| g != "*").collect(),
            rights: info.rights,
            registration: info.registration,
        }
    }
}

/// Answers of `GET /api/v1/me`.
#[derive(Debug, ApiResponse)]
pub enum MeResponse {
    /// The logged-in user.
    #[oai(status = 200)]
    LoggedIn(Json<Identity>),
    /// Nobody is logged in with this request (`not_logged_in`): no session
    /// cookie, a login that ended, or a cookie this instance cannot read.
    #[oai(status = 401)]
    NotLoggedIn(
        Json<ApiError>,
        /// A `Cookie` challenge naming `/login` and the session cookie.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
}

/// Answers of `GET /api/v1/userinfo`.
#[derive(Debug, ApiResponse)]
pub enum UserInfoResponse {
    /// The account, as the wiki answered just now.
    #[oai(status = 200)]
    Found(Json<UserInfo>),
    /// Nobody is logged in with this request (`not_logged_in`).
    #[oai(status = 401)]
    NotLoggedIn(
        Json<ApiError>,
        /// A `Cookie` challenge naming `/login` and the session cookie.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The wiki answered, but not with the account: it refused the request
    /// (`wiki_refused`, with the wiki's message; for instance the user
    /// withdrew this tool's access, and must log in again), or its answer
    /// was an HTTP error or could not be understood (`wiki_bad_answer`).
    #[oai(status = 502)]
    WikiFailed(Json<ApiError>),
    /// This instance has no OAuth consumer configured (`not_configured`),
    /// so it cannot ask the wiki anything.
    #[oai(status = 503)]
    NotConfigured(Json<ApiError>),
    /// The wiki did not answer: it took longer than the tool waits
    /// (`wiki_timeout`), or could not be reached at all
    /// (`wiki_unreachable`). Try again later.
    #[oai(status = 504)]
    WikiDidNotAnswer(Json<ApiError>),
}

fn request_id(req: &Request) -> Arc<str> {
    req.data::<RequestId>()
        .map_or_else(|| Arc::from("-"), |id| id.0.clone())
}

fn not_logged_in(request_id: &str) -> (Json<ApiError>, String) {
    (
        Json(ApiError::new(
            "not_logged_in",
            format!(
                "Nobody is logged in with this request. Log in with a browser at /login, then \
                 send the `{COOKIE_NAME}` cookie it sets."
            ),
            request_id,
        )),
        challenge(),
    )
}

/// The answer for a failed call to the wiki.
fn wiki_failure(err: &mediawiki::Error, request_id: &str) -> UserInfoResponse {
    use mediawiki::Error as E;
    let error = |code: &str, message: String| Json(ApiError::new(code, message, request_id));
    match err {
        E::Wiki { message, .. } => UserInfoResponse::WikiFailed(error(
            "wiki_refused",
            format!(
                "The wiki refused to show the account: \u{201c}{message}\u{201d} If you withdrew \
                 this tool's access on the wiki, log in again."
            ),
        )),
        E::Status(status) => UserInfoResponse::WikiFailed(error(
            "wiki_bad_answer",
            format!("The wiki answered with HTTP status {status}. Try again later."),
        )),
        E::TooLarge { .. } | E::BadResponse(_) | E::BadToken(_) | E::Identity(_) => {
            UserInfoResponse::WikiFailed(error(
                "wiki_bad_answer",
                "The wiki's answer could not be understood. Try again later.".into(),
            ))
        }
        E::Timeout => UserInfoResponse::WikiDidNotAnswer(error(
            "wiki_timeout",
            "The wiki did not answer in time. Try again in a moment.".into(),
        )),
        E::Unreachable(_) => UserInfoResponse::WikiDidNotAnswer(error(
            "wiki_unreachable",
            "The wiki could not be reached. Try again in a few minutes.".into(),
        )),
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// The logged-in user
    ///
    /// Who is logged in with this request's session cookie, as the wiki
    /// vouched for them at login: user name, central user id, edit count,
    /// groups and block status at that time, and when the login ends. Read
    /// from the session alone: it never calls the wiki, and never shows a
    /// token. Log in with a browser at `/login`; the explorer sends the
    /// cookie by itself. `401` when nobody is logged in.
    #[oai(path = "/api/v1/me", method = "get", operation_id = "me")]
    async fn me(&self, request: &Request, session: Session) -> MeResponse {
        match session.data().logged_in() {
            Some(login) => MeResponse::LoggedIn(Json(Identity::from(login))),
            None => {
                let (body, challenge) = not_logged_in(&request_id(request));
                MeResponse::NotLoggedIn(body, challenge)
            }
        }
    }

    /// The user's account, live from the wiki
    ///
    /// Asks the wiki's Action API, signed as the logged-in user
    /// (`action=query&meta=userinfo`), for the account as it is now: local
    /// user id, edit count, groups, rights and registration date. Each
    /// request makes one call to the wiki. `401` when nobody is logged in;
    /// when the wiki fails, `502` (it refused or answered wrongly) or `504`
    /// (it did not answer), with a reason code in `error`.
    #[oai(path = "/api/v1/userinfo", method = "get", operation_id = "userInfo")]
    async fn user_info(
        &self,
        state: Data<&Arc<AppState>>,
        request: &Request,
        session: Session,
    ) -> UserInfoResponse {
        let id = request_id(request);
        let data = session.data();
        let Some(login) = data.logged_in() else {
            let (body, challenge) = not_logged_in(&id);
            return UserInfoResponse::NotLoggedIn(body, challenge);
        };
        let Some(wiki) = Wiki::of(&state) else {
            return UserInfoResponse::NotConfigured(Json(ApiError::new(
                "not_configured",
                "This instance has no OAuth consumer configured, so it cannot ask the wiki. \
                 Tell the tool's maintainer.",
                &id,
            )));
        };
        match wiki.user_info(&login.token).await {
            Ok(info) => UserInfoResponse::Found(Json(UserInfo::from(info))),
            Err(e) => {
                tracing::warn!(
                    target: "api",
                    request_id = &*id,
                    error = %e,
                    "could not fetch the user's account"
                );
                wiki_failure(&e, &id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mediawiki::{AccessToken, JwtError};
    use crate::web::session::UserSummary;

    #[test]
    fn the_identity_has_no_field_for_a_token_or_the_csrf_token() {
        let login = LoggedIn {
            token: AccessToken::new("access-key-value", "access-secret-value"),
            user: UserSummary {
                username: "U".into(),
                sub: "7".into(),
                editcount: 3,
                groups: vec!["user".into()],
                blocked: false,
                grants: vec!["basic".into()],
            },
            csrf: "csrf-token-value".into(),
            since: 1000,
        };
        let identity = Identity::from(&login);
        assert_eq!(identity.login_expires_at, 1000 + MAX_AGE.as_secs());
        let json = serde_json::to_string(&poem_openapi::types::ToJSON::to_json(&identity))
            .unwrap_or_default();
        for secret in [
            "access-key-value",
            "access-secret-value",
            "csrf-token-value",
        ] {
            assert!(!json.contains(secret), "{json}");
        }
        assert!(json.contains("\"username\":\"U\""), "{json}");
    }

    #[test]
    fn wiki_failures_map_to_502_or_504_with_a_reason() {
        let wiki = mediawiki::Error::Wiki {
            code: Some("mwoauth-invalid-authorization".into()),
            message: "The authorization headers in your request are not valid".into(),
        };
        let cases = [
            (wiki, 502, "wiki_refused"),
            (mediawiki::Error::Status(500), 502, "wiki_bad_answer"),
            (mediawiki::Error::BadResponse("x"), 502, "wiki_bad_answer"),
            (
                mediawiki::Error::TooLarge { limit: 1 },
                502,
                "wiki_bad_answer",
            ),
            (
                mediawiki::Error::Identity(JwtError::Signature),
                502,
                "wiki_bad_answer",
            ),
            (mediawiki::Error::Timeout, 504, "wiki_timeout"),
            (
                mediawiki::Error::Unreachable("connection refused 10.0.0.1".into()),
                504,
                "wiki_unreachable",
            ),
        ];
        for (err, status, code) in cases {
            let (got_status, body) = match wiki_failure(&err, "rid") {
                UserInfoResponse::WikiFailed(Json(b)) => (502, b),
                UserInfoResponse::WikiDidNotAnswer(Json(b)) => (504, b),
                other => panic!("{err:?} -> {other:?}"),
            };
            assert_eq!((got_status, body.error.as_str()), (status, code), "{err:?}");
            assert_eq!(body.request_id, "rid");
            assert!(
                !body.message.contains("10.0.0.1"),
                "transport details stay in the log"
            );
        }
    }
}
