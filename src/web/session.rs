//! The session: a typed state kept in one encrypted, authenticated cookie
//! (AES-256-GCM through poem's private cookie jar, key derived from
//! `TOOL_SESSION_KEY`). Nothing is kept in process memory between requests,
//! so any replica holding the same key can serve any request.
//!
//! A cookie that fails to decrypt or parse (tampered, foreign, from an older
//! key) is treated as no session and replaced; it is never an error page.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use poem::web::cookie::{Cookie, CookieKey, SameSite};
use poem::{Endpoint, FromRequest, Middleware, Request, RequestBody, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "hello_oauth_session";
/// How long a session lives without being touched.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// At most this many flash messages are kept; older ones are dropped.
const MAX_FLASHES: usize = 5;

/// How serious a flash message is (also its CSS class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashLevel {
    /// Something worked.
    Success,
    /// For information.
    Info,
    /// Something failed; the text says what to do.
    Error,
}

/// A one-time notice shown on the next page the user sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// How serious it is.
    pub level: FlashLevel,
    /// The text, shown HTML-escaped.
    pub text: String,
}

/// Everything the cookie carries. Unknown fields are ignored and missing ones
/// take their defaults, so a newer or older release can read the cookie.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionData {
    /// Pending notices, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flashes: Vec<Flash>,
}

#[derive(Debug, Default)]
struct Inner {
    data: SessionData,
    changed: bool,
    purged: bool,
}

/// The current request's session. Cheap to clone; all clones share state.
#[derive(Debug, Clone, Default)]
pub struct Session(Arc<Mutex<Inner>>);

impl Session {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a handler panicked mid-update; the data
        // is plain values, still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current data.
    pub fn data(&self) -> SessionData {
        self.lock().data.clone()
    }

    /// Changes the data; the cookie is rewritten with the response.
    pub fn update<R>(&self, f: impl FnOnce(&mut SessionData) -> R) -> R {
        let mut inner = self.lock();
        inner.changed = true;
        inner.purged = false;
        f(&mut inner.data)
    }

    /// Adds a one-time notice.
    pub fn flash(&self, level: FlashLevel, text: impl Into<String>) {
        self.update(|d| {
            d.flashes.push(Flash {
                level,
                text: text.into(),
            });
            if d.flashes.len() > MAX_FLASHES {
                let excess = d.flashes.len() - MAX_FLASHES;
                d.flashes.drain(..excess);
            }
        });
    }

    /// Removes and returns the pending notices.
    pub fn take_flashes(&self) -> Vec<Flash> {
        let mut inner = self.lock();
        if inner.data.flashes.is_empty() {
            return Vec::new();
        }
        inner.changed = true;
        std::mem::take(&mut inner.data.flashes)
    }

    /// Forgets everything and removes the cookie.
    pub fn purge(&self) {
        let mut inner = self.lock();
        inner.data = SessionData::default();
        inner.purged = true;
        inner.changed = false;
    }
}

impl<'a> FromRequest<'a> for Session {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> Result<Self> {
        req.extensions().get::<Session>().cloned().ok_or_else(|| {
            poem::Error::from_string(
                "session middleware missing",
                poem::http::StatusCode::INTERNAL_SERVER_ERROR,
            )
        })
    }
}

/// Whether the request reached the proxy over https. Toolforge's front proxy
/// ends TLS and says so in `X-Forwarded-Proto`.
pub fn is_https(req: &Request) -> bool {
    req.header("x-forwarded-proto")
        .map(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        })
        .unwrap_or_else(|| req.uri().scheme_str() == Some("https"))
}

/// Middleware that loads the session from the cookie and writes it back.
#[derive(Clone)]
pub struct SessionMiddleware {
    key: Arc<CookieKey>,
}

impl std::fmt::Debug for SessionMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionMiddleware { key: [redacted] }")
    }
}

impl SessionMiddleware {
    /// Derives the cookie key from the configured secret with HKDF, so the
    /// secret itself never becomes the encryption key.
    /// The secret must be at least 32 bytes long (the configuration checks).
    pub fn new(secret: &SecretString) -> anyhow::Result<Self> {
        let master = secret.expose_secret().as_bytes();
        anyhow::ensure!(
            master.len() >= crate::config::MIN_SESSION_KEY_LEN,
            "the session key is shorter than {} bytes",
            crate::config::MIN_SESSION_KEY_LEN
        );
        Ok(Self {
            key: Arc::new(CookieKey::derive_from(master)),
        })
    }
}

impl<E: Endpoint> Middleware<E> for SessionMiddleware {
    type Output = poem::middleware::CookieJarManagerEndpoint<SessionEndpoint<E>>;

    fn transform(&self, ep: E) -> Self::Output {
        poem::middleware::CookieJarManager::new().transform(SessionEndpoint {
            inner: ep,
            key: self.key.clone(),
        })
    }
}

/// Endpoint produced by [`SessionMiddleware`].
pub struct SessionEndpoint<E> {
    inner: E,
    key: Arc<CookieKey>,
}

impl<E> std::fmt::Debug for SessionEndpoint<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionEndpoint { key: [redacted] }")
    }
}

impl<E: Endpoint> Endpoint for SessionEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let jar = req.cookie().clone();
        let private = jar.private_with_key(&self.key);
        let had_cookie = jar.get(COOKIE_NAME).is_some();
        let loaded = private
            .get(COOKIE_NAME)
            .and_then(|c| serde_json::from_str::<SessionData>(c.value_str()).ok());
        let unreadable = had_cookie && loaded.is_none();
        let session = Session(Arc::new(Mutex::new(Inner {
            data: loaded.unwrap_or_default(),
            changed: false,
            purged: unreadable,
        })));
        let secure = is_https(&req);
        req.extensions_mut().insert(session.clone());

        let result = self.inner.call(req).await;

        let inner = session.lock();
        let cookie = |value: String| {
            let mut cookie = Cookie::new_with_str(COOKIE_NAME, value);
            cookie.set_path("/");
            cookie.set_http_only(true);
            cookie.set_same_site(SameSite::Lax);
            cookie.set_secure(secure);
            cookie.set_max_age(MAX_AGE);
            cookie
        };
        if inner.changed && inner.data != SessionData::default() {
            match serde_json::to_string(&inner.data) {
                Ok(value) => private.add(cookie(value)),
                Err(e) => tracing::error!(error = %e, "could not serialise the session"),
            }
        } else if (inner.changed || inner.purged) && had_cookie {
            let mut removal = cookie(String::new());
            removal.make_removal();
            jar.add(removal);
        }
        drop(inner);
        result
    }
}
