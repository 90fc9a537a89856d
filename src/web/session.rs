//! The session: a typed state kept in one encrypted, authenticated cookie
//! (AES-256-GCM, key derived from `TOOL_SESSION_KEY` as poem's private
//! cookie jar derives it; [`Sealer`] has the format). Nothing is kept in
//! process memory between requests, so any replica holding the same key can
//! serve any request.
//!
//! A cookie that fails to decrypt or parse (tampered, foreign, from an older
//! key) is treated as no session and replaced; it is never an error page.
//!
//! The login state is a small state machine ([`AuthState`]): anonymous ->
//! pending (one [`PendingLogin`] per tab, keyed by its request token, each
//! used once and expiring after [`PENDING_LOGIN_TTL`]) -> logged in (access
//! token, a summary of the verified identity, a CSRF token). The cookie is
//! kept under browsers' 4 KB limit: when it would outgrow
//! [`MAX_COOKIE_BYTES`], the least useful parts go first (old notices, old
//! pending logins, long group lists); the login itself is never dropped.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aes_gcm::aead::AeadInPlace as _;
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use poem::http::{HeaderMap, HeaderValue, header};
use poem::web::cookie::{Cookie, CookieKey, SameSite};
use poem::{
    Endpoint, FromRequest, IntoResponse, Middleware, Request, RequestBody, Response, Result,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::mediawiki::{AccessToken, Identity, RequestToken};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "hello_oauth_session";
/// How long a session lives without being touched.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// At most this many flash messages are kept; older ones are dropped.
const MAX_FLASHES: usize = 5;
/// How long a login started with `/login` may take to come back.
pub const PENDING_LOGIN_TTL: Duration = Duration::from_secs(600);
/// At most this many logins (tabs) may be pending at once; the oldest goes.
pub const MAX_PENDING_LOGINS: usize = 4;
/// Largest `Set-Cookie` value written, in bytes (browsers keep up to 4096).
pub const MAX_COOKIE_BYTES: usize = 4000;
/// At most this many groups of the user are kept in the session.
const MAX_GROUPS: usize = 20;
/// Longest group name kept.
const MAX_GROUP_CHARS: usize = 64;

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

/// A login that went to the wiki and has not come back yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The request token; its key is the `oauth_token` the wiki sends back.
    pub token: RequestToken,
    /// Where to go once logged in (a safe relative path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// When the login started, in seconds since the Unix epoch.
    pub created: u64,
}

impl PendingLogin {
    /// Whether it is older than [`PENDING_LOGIN_TTL`] at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now.saturating_sub(self.created) > PENDING_LOGIN_TTL.as_secs()
    }
}

/// What the home page needs from the verified identity, and no more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The user name.
    pub username: String,
    /// The central user id.
    pub sub: String,
    /// Edits at login time.
    #[serde(default)]
    pub editcount: u64,
    /// Groups at login time, without the implicit `*`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether the user was blocked at login time.
    #[serde(default)]
    pub blocked: bool,
    /// The OAuth grants the user gave this tool (e.g. `basic`).
    #[serde(default)]
    pub grants: Vec<String>,
}

/// Grants kept in the session (MediaWiki's grant names are short and few).
const MAX_GRANTS: usize = 12;
/// Longest grant name kept.
const MAX_GRANT_CHARS: usize = 40;

impl From<&Identity> for UserSummary {
    fn from(id: &Identity) -> Self {
        UserSummary {
            username: id.username.clone(),
            sub: id.sub.clone(),
            editcount: id.editcount,
            groups: id
                .groups
                .iter()
                .filter(|g| g.as_str() != "*")
                .map(|g| g.chars().take(MAX_GROUP_CHARS).collect())
                .take(MAX_GROUPS)
                .collect(),
            blocked: id.blocked,
            grants: id
                .grants
                .iter()
                .map(|g| g.chars().take(MAX_GRANT_CHARS).collect())
                .take(MAX_GRANTS)
                .collect(),
        }
    }
}

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedIn {
    /// Lets the tool call the wiki as the user.
    pub token: AccessToken,
    /// Who the user is.
    pub user: UserSummary,
    /// The token that the logout form must echo.
    pub csrf: String,
    /// When the user logged in, in seconds since the Unix epoch.
    pub since: u64,
}

/// Where the visitor stands with login. In the cookie it is one object
/// tagged by `state` (`{"state":"logged_in","token":…,"user":…}`); see the
/// `Deserialize` impl below for how it is read back.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AuthState {
    /// Not logged in, no login under way.
    #[default]
    Anonymous,
    /// One or more logins (tabs) under way, oldest first.
    Pending {
        /// The logins, each keyed by its request token.
        logins: Vec<PendingLogin>,
    },
    /// Logged in.
    LoggedIn(LoggedIn),
}

/// Reads the internally tagged form that `Serialize` writes, field by field.
/// The derived impl buffers the whole object into serde's private `Content`
/// tree first, to find the tag wherever it is, then deserialises the variant
/// from that copy: 13k instructions of every logged-in page (9 %). All the
/// variants' fields are read into one flat struct instead, in one pass, and
/// the tag picks which of them make the variant. It accepts and refuses what
/// the derived impl does (missing fields, a missing or unknown tag, unknown
/// fields ignored, duplicates refused), with one difference: a field of
/// another variant must still have its type (`{"state":"anonymous",
/// "logins":1}` is refused). Only a forged cookie could carry that, and the
/// cookie is authenticated. `the_flat_reader_agrees_with_the_derived_one`
/// compares the two.
impl<'de> Deserialize<'de> for AuthState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum State {
            Anonymous,
            Pending,
            LoggedIn,
        }

        #[derive(Deserialize)]
        struct Flat {
            state: State,
            logins: Option<Vec<PendingLogin>>,
            token: Option<AccessToken>,
            user: Option<UserSummary>,
            csrf: Option<String>,
            since: Option<u64>,
        }

        fn required<T, E: serde::de::Error>(value: Option<T>, name: &'static str) -> Result<T, E> {
            value.ok_or_else(|| E::missing_field(name))
        }

        let flat = Flat::deserialize(deserializer)?;
        Ok(match flat.state {
            State::Anonymous => AuthState::Anonymous,
            State::Pending => AuthState::Pending {
                logins: required(flat.logins, "logins")?,
            },
            State::LoggedIn => AuthState::LoggedIn(LoggedIn {
                token: required(flat.token, "token")?,
                user: required(flat.user, "user")?,
                csrf: required(flat.csrf, "csrf")?,
                since: required(flat.since, "since")?,
            }),
        })
    }
}

impl AuthState {
    fn is_anonymous(&self) -> bool {
        matches!(self, AuthState::Anonymous)
    }
}

/// What became of the `oauth_token` that the wiki sent back.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingLookup {
    /// A pending login of this session, now removed (single use).
    Found(PendingLogin),
    /// A pending login of this session, now removed, that is too old.
    Expired(PendingLogin),
    /// Other logins are pending, not this one.
    Mismatch,
    /// No login is pending in this session at all.
    NothingPending,
}

/// Everything the cookie carries. Unknown fields are ignored and missing ones
/// take their defaults, so a newer or older release can read the cookie.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionData {
    /// Pending notices, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flashes: Vec<Flash>,
    /// The login state.
    #[serde(default, skip_serializing_if = "AuthState::is_anonymous")]
    pub auth: AuthState,
}

impl SessionData {
    /// The logged-in user, if any.
    pub fn logged_in(&self) -> Option<&LoggedIn> {
        match &self.auth {
            AuthState::LoggedIn(l) => Some(l),
            _ => None,
        }
    }

    /// Records a login under way, forgetting expired ones and, beyond
    /// [`MAX_PENDING_LOGINS`], the oldest.
    pub fn add_pending(&mut self, login: PendingLogin, now: u64) {
        let mut logins = match std::mem::take(&mut self.auth) {
            AuthState::Pending { logins } => logins,
            _ => Vec::new(),
        };
        logins.retain(|p| !p.is_expired(now) && p.token.key() != login.token.key());
        logins.push(login);
        if logins.len() > MAX_PENDING_LOGINS {
            let excess = logins.len() - MAX_PENDING_LOGINS;
            logins.drain(..excess);
        }
        self.auth = AuthState::Pending { logins };
    }

    /// Takes the pending login whose request token is `oauth_token`: it is
    /// removed whatever happens next, so it can be used only once.
    pub fn take_pending(&mut self, oauth_token: &str, now: u64) -> PendingLookup {
        let AuthState::Pending { logins } = &mut self.auth else {
            return PendingLookup::NothingPending;
        };
        let found = logins
            .iter()
            .position(|p| p.token.key() == oauth_token)
            .map(|i| logins.remove(i));
        logins.retain(|p| !p.is_expired(now));
        let any_left = !logins.is_empty();
        if !any_left {
            self.auth = AuthState::Anonymous;
        }
        match found {
            Some(p) if p.is_expired(now) => PendingLookup::Expired(p),
            Some(p) => PendingLookup::Found(p),
            None if any_left => PendingLookup::Mismatch,
            None => PendingLookup::NothingPending,
        }
    }

    /// Forgets what has outlived its time: pending logins older than
    /// [`PENDING_LOGIN_TTL`] and a login older than [`MAX_AGE`] (a copied
    /// cookie does not outlive the browser's). Returns whether anything went.
    pub fn expire(&mut self, now: u64) -> bool {
        match &mut self.auth {
            AuthState::LoggedIn(l) if now.saturating_sub(l.since) > MAX_AGE.as_secs() => {
                self.auth = AuthState::Anonymous;
                true
            }
            AuthState::Pending { logins } => {
                let before = logins.len();
                logins.retain(|p| !p.is_expired(now));
                let changed = logins.len() != before;
                if logins.is_empty() {
                    self.auth = AuthState::Anonymous;
                }
                changed
            }
            _ => false,
        }
    }

    /// Makes the data smaller by one step, least useful first. Returns
    /// false when nothing more can go without losing the login.
    pub fn shrink(&mut self) -> bool {
        if self.flashes.len() > 1 {
            self.flashes.remove(0);
            return true;
        }
        if let Some(flash) = self.flashes.first_mut()
            && flash.text.len() > 300
        {
            let cut = flash
                .text
                .char_indices()
                .nth(200)
                .map_or(flash.text.len(), |(i, _)| i);
            flash.text.truncate(cut);
            flash.text.push('…');
            return true;
        }
        match &mut self.auth {
            AuthState::Pending { logins } if !logins.is_empty() => {
                logins.remove(0);
                if logins.is_empty() {
                    self.auth = AuthState::Anonymous;
                }
                return true;
            }
            AuthState::LoggedIn(l) if !l.user.groups.is_empty() => {
                let keep = l.user.groups.len() / 2;
                l.user.groups.truncate(keep);
                return true;
            }
            _ => {}
        }
        if !self.flashes.is_empty() {
            self.flashes.clear();
            return true;
        }
        false
    }
}

/// The cookie as it came, not yet decrypted: the session is read only when
/// a handler asks for it, so routes that never do (`/healthz`, `/metrics`,
/// the stylesheet, the API document) pay nothing for it.
struct Source {
    /// The value of the request's first `hello_oauth_session` cookie, if
    /// any, as it came.
    cookie: Option<String>,
    sealer: Arc<Sealer>,
}

#[derive(Default)]
struct Inner {
    /// `Some` until the session is first read.
    source: Option<Source>,
    data: SessionData,
    changed: bool,
    purged: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("loaded", &self.source.is_none())
            .field("data", &self.data)
            .field("changed", &self.changed)
            .field("purged", &self.purged)
            .finish()
    }
}

impl Inner {
    /// Decrypts and parses the cookie, once. A cookie that fails either is
    /// no session, and is removed with the response; an expired login is
    /// forgotten and the cookie rewritten.
    fn load(&mut self) {
        let Some(Source { cookie, sealer }) = self.source.take() else {
            return;
        };
        let Some(cookie) = cookie else {
            return;
        };
        // UTF-8 checked once, whole: `from_slice` checks it string by
        // string, a quarter slower on our cookie.
        let loaded = sealer.open(&cookie).and_then(|json| {
            let json = std::str::from_utf8(&json).ok()?;
            serde_json::from_str::<SessionData>(json).ok()
        });
        match loaded {
            Some(mut data) => {
                self.changed = data.expire(now());
                self.data = data;
            }
            None => self.purged = true,
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current request's session. Cheap to clone; all clones share state.
#[derive(Debug, Clone, Default)]
pub struct Session(Arc<Mutex<Inner>>);

impl Session {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a handler panicked mid-update; the data
        // is plain values, still usable.
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inner.load();
        inner
    }

    /// Calls `f` with the current data, without copying it. The session is
    /// locked meanwhile: `f` must not use the session itself.
    pub fn read<R>(&self, f: impl FnOnce(&SessionData) -> R) -> R {
        f(&self.lock().data)
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

    /// Replaces the whole session with a fresh one holding `auth` (a login
    /// renews the session: earlier pending logins are gone). Pending
    /// notices are kept.
    pub fn renew(&self, auth: AuthState) {
        self.update(|d| {
            d.auth = auth;
        });
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
    const FORWARDED_PROTO: header::HeaderName =
        header::HeaderName::from_static("x-forwarded-proto");
    req.headers()
        .get(FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
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
    sealer: Arc<Sealer>,
}

/// Seals the session into its cookie value and opens it again.
///
/// The format is poem's (the cookie crate's) private cookie: AES-256-GCM
/// with the key `CookieKey::derive_from` gives, a random 96-bit nonce, the
/// cookie's name as associated data, and `nonce | ciphertext | tag` in
/// base64. Only the alphabet differs: URL-safe without padding, where the
/// private jar uses the standard one, whose `/`, `+` and `=` poem
/// percent-encodes. Reading such a value meant undoing that escaping, then
/// a cookie jar, a cookie and the cipher's key schedule per request: 18k
/// instructions, a fifth of a logged-in page. Here the cipher is keyed once
/// and the value is decoded in one pass. A value in the private jar's own
/// form (a session from before this format) is still read, so an upgrade
/// logs nobody out; the differential tests check both directions against
/// the cookie crate.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer { key: [redacted] }")
    }
}

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

impl Sealer {
    fn new(key: &CookieKey) -> anyhow::Result<Self> {
        let cipher = Aes256Gcm::new_from_slice(key.encryption())
            .map_err(|_| anyhow::anyhow!("the derived cookie key has the wrong length"))?;
        Ok(Self { cipher })
    }

    /// The cookie value for `plaintext`; `None` only if the cipher refuses
    /// (a plaintext of gigabytes).
    fn seal(&self, plaintext: &[u8]) -> Option<String> {
        use rand::RngCore as _;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut data = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        data.extend_from_slice(&nonce);
        data.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                COOKIE_NAME.as_bytes(),
                &mut data[NONCE_LEN..],
            )
            .ok()?;
        data.extend_from_slice(&tag);
        Some(URL_SAFE_NO_PAD.encode(data))
    }

    /// The plaintext of a cookie value, in this format or the private
    /// jar's; `None` if it is neither, or was not sealed with this key
    /// under this cookie name, or was altered.
    fn open(&self, value: &str) -> Option<Vec<u8>> {
        let mut data = URL_SAFE_NO_PAD
            .decode(value)
            .ok()
            .or_else(|| STANDARD.decode(legacy_value(value)?).ok())?;
        if data.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        let (message, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                COOKIE_NAME.as_bytes(),
                message,
                Tag::from_slice(tag),
            )
            .ok()?;
        let end = data.len() - TAG_LEN;
        data.truncate(end);
        data.drain(..NONCE_LEN);
        Some(data)
    }
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
            sealer: Arc::new(Sealer::new(&CookieKey::derive_from(master))?),
        })
    }
}

impl<E: Endpoint> Middleware<E> for SessionMiddleware {
    type Output = SessionEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        SessionEndpoint {
            inner: ep,
            sessions: self.clone(),
        }
    }
}

/// The value of the first cookie called `name` in the request's `Cookie`
/// headers, as it came, as poem's `CookieJar` would pick it (RFC 6265 §5.4:
/// the most specific comes first). Nothing else is parsed.
fn find_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';').map(str::trim))
        .find_map(|pair| {
            let value = pair.strip_prefix(name)?.trim_start().strip_prefix('=')?;
            Some(value.trim())
        })
}

/// A cookie value as the cookie parser reads it (and so as the private jar
/// wrote our sessions before [`Sealer`]'s format): `%XX` escapes decoded,
/// a quoted value through the parser itself.
fn legacy_value(value: &str) -> Option<String> {
    if value.contains('"') {
        return Cookie::parse(format!("{COOKIE_NAME}={value}"))
            .ok()
            .map(|c| c.value_str().to_owned());
    }
    percent_decode(value)
}

/// `value` with its `%XX` escapes decoded, as `percent_encoding` and the
/// cookie crate decode it (a `%` without two hex digits after it stays as
/// it is; `None` if the result is not UTF-8), at a fraction of the cost:
/// `percent_decode_str(..).decode_utf8()` goes byte by byte through an
/// iterator (9k instructions for our cookie); this copies the runs between
/// escapes whole. `percent_decode_is_percent_encodings` compares the two.
fn percent_decode(value: &str) -> Option<String> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut rest = value.as_bytes();
    let mut out = Vec::with_capacity(rest.len());
    while let Some(i) = rest.iter().position(|&b| b == b'%') {
        out.extend_from_slice(&rest[..i]);
        let escaped = match rest.get(i + 1..i + 3) {
            Some(&[hi, lo]) => hex(hi).zip(hex(lo)),
            _ => None,
        };
        match escaped {
            Some((hi, lo)) => {
                // Two hex digits: at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                rest = &rest[i + 3..];
            }
            None => {
                out.push(b'%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    String::from_utf8(out).ok()
}

/// Endpoint produced by [`SessionMiddleware`].
pub struct SessionEndpoint<E> {
    inner: E,
    sessions: SessionMiddleware,
}

impl<E> std::fmt::Debug for SessionEndpoint<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionEndpoint { key: [redacted] }")
    }
}

/// The session attached to one request, to write back with its response.
#[derive(Debug)]
pub struct SessionBinding {
    session: Session,
    had_cookie: bool,
    secure: bool,
}

impl SessionMiddleware {
    /// Makes the request's session available to its handlers (read from the
    /// cookie on first use). `secure`: the request came over https
    /// ([`is_https`], which the caller has already asked), so a cookie
    /// written back is marked `Secure`.
    pub fn attach(&self, req: &mut Request, secure: bool) -> SessionBinding {
        let cookie = find_cookie(req.headers(), COOKIE_NAME).map(str::to_owned);
        let had_cookie = cookie.is_some();
        let session = Session(Arc::new(Mutex::new(Inner {
            source: Some(Source {
                cookie,
                sealer: self.sealer.clone(),
            }),
            ..Inner::default()
        })));
        req.extensions_mut().insert(session.clone());
        SessionBinding {
            session,
            had_cookie,
            secure,
        }
    }

    /// Writes a session that was read and changed back into its cookie (or
    /// removes the cookie), on the response to the request it came with.
    pub fn write_back(&self, binding: SessionBinding, resp: &mut Response) {
        let inner = binding.session.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.source.is_some() {
            // Never read: nothing can have changed.
            return;
        }
        let cookie = |value: String| {
            let mut cookie = Cookie::new_with_str(COOKIE_NAME, value);
            cookie.set_path("/");
            cookie.set_http_only(true);
            cookie.set_same_site(SameSite::Lax);
            cookie.set_secure(binding.secure);
            cookie.set_max_age(MAX_AGE);
            cookie
        };
        let mut set_cookie = None;
        if inner.changed && inner.data != SessionData::default() {
            let mut data = inner.data.clone();
            loop {
                let value = match serde_json::to_vec(&data) {
                    Ok(value) => value,
                    Err(e) => {
                        tracing::error!(error = %e, "could not serialise the session");
                        break;
                    }
                };
                let encrypted = self
                    .sealer
                    .seal(&value)
                    .map(|sealed| cookie(sealed).to_string());
                let size = encrypted.as_ref().map_or(0, String::len);
                set_cookie = encrypted;
                if size <= MAX_COOKIE_BYTES {
                    break;
                }
                if !data.shrink() {
                    tracing::error!(
                        bytes = size,
                        "the session cookie is over the size limit and cannot shrink further"
                    );
                    break;
                }
                tracing::warn!(
                    bytes = size,
                    limit = MAX_COOKIE_BYTES,
                    "the session cookie is too large: dropping its least useful part"
                );
            }
        } else if (inner.changed || inner.purged) && binding.had_cookie {
            let mut removal = cookie(String::new());
            removal.make_removal();
            set_cookie = Some(removal.to_string());
        }
        drop(inner);
        if let Some(value) = set_cookie.and_then(|v| HeaderValue::from_str(&v).ok()) {
            resp.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

impl<E: Endpoint> Endpoint for SessionEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let https = is_https(&req);
        let binding = self.sessions.attach(&mut req, https);
        let mut resp = self.inner.call(req).await?.into_response();
        self.sessions.write_back(binding, &mut resp);
        Ok(resp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `AuthState` as serde would derive its reader.
    #[derive(Deserialize)]
    #[serde(tag = "state", rename_all = "snake_case")]
    enum Derived {
        Anonymous,
        Pending { logins: Vec<PendingLogin> },
        LoggedIn(LoggedIn),
    }

    impl From<Derived> for AuthState {
        fn from(d: Derived) -> Self {
            match d {
                Derived::Anonymous => AuthState::Anonymous,
                Derived::Pending { logins } => AuthState::Pending { logins },
                Derived::LoggedIn(l) => AuthState::LoggedIn(l),
            }
        }
    }

    fn key() -> CookieKey {
        CookieKey::derive_from(b"a session key of at least thirty-two bytes, for tests")
    }

    /// What the private cookie jar (the cookie crate) makes of `plaintext`.
    fn jar_sealed(name: &str, plaintext: &str) -> String {
        let jar = poem::web::cookie::CookieJar::default();
        jar.private_with_key(&key())
            .add(Cookie::new_with_str(name, plaintext));
        jar.get(name).unwrap().value_str().to_owned()
    }

    /// What the private cookie jar reads from a value under our name.
    fn jar_opened(value: &str) -> Option<String> {
        let jar = poem::web::cookie::CookieJar::default();
        jar.add(Cookie::new_with_str(COOKIE_NAME, value));
        jar.private_with_key(&key())
            .get(COOKIE_NAME)
            .map(|c| c.value_str().to_owned())
    }

    const PLAINTEXTS: [&str; 4] = [
        "",
        "x",
        r#"{"auth":{"state":"anonymous"},"flashes":[]}"#,
        "é ✓ 🦀 and a longer text, past one AES block and then some more of it",
    ];

    #[test]
    fn sealed_values_are_the_private_jars_format_in_another_alphabet() {
        let sealer = Sealer::new(&key()).unwrap();
        for plaintext in PLAINTEXTS {
            // Ours, read by the cookie crate once in its alphabet.
            let ours = sealer.seal(plaintext.as_bytes()).unwrap();
            assert!(
                ours.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{ours}"
            );
            let standard = STANDARD.encode(URL_SAFE_NO_PAD.decode(&ours).unwrap());
            assert_eq!(jar_opened(&standard).as_deref(), Some(plaintext));
            assert_eq!(sealer.open(&ours).as_deref(), Some(plaintext.as_bytes()));
            // The cookie crate's, read by us: as it is, and percent-encoded
            // as poem used to send it.
            // The nonce is random, so a value may by chance hold none of
            // `/`, `+` or `=` (about one time in four for some lengths):
            // sealed again until one does, so the escaped form is read.
            let (theirs, escaped) = (0..64)
                .map(|_| {
                    let theirs = jar_sealed(COOKIE_NAME, plaintext);
                    let escaped = percent_encoding::utf8_percent_encode(
                        &theirs,
                        percent_encoding::NON_ALPHANUMERIC,
                    )
                    .to_string();
                    (theirs, escaped)
                })
                .find(|(_, escaped)| escaped.contains('%'))
                .unwrap();
            assert_eq!(sealer.open(&theirs).as_deref(), Some(plaintext.as_bytes()));
            assert_eq!(sealer.open(&escaped).as_deref(), Some(plaintext.as_bytes()));
        }
        // A fresh nonce each time.
        assert_ne!(sealer.seal(b"same"), sealer.seal(b"same"));
    }

    #[test]
    fn a_sealed_value_opens_only_whole_with_its_key_and_cookie_name() {
        let sealer = Sealer::new(&key()).unwrap();
        let plaintext = PLAINTEXTS[3].as_bytes();
        let sealed = URL_SAFE_NO_PAD
            .decode(sealer.seal(plaintext).unwrap())
            .unwrap();
        // Any one bit changed anywhere: nonce, ciphertext or tag.
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert_eq!(sealer.open(&URL_SAFE_NO_PAD.encode(&altered)), None, "{i}");
        }
        // Cut short, or nothing but a nonce and a tag.
        for len in [0, 1, NONCE_LEN, NONCE_LEN + TAG_LEN - 1, sealed.len() - 1] {
            assert_eq!(sealer.open(&URL_SAFE_NO_PAD.encode(&sealed[..len])), None);
        }
        // Another key.
        let other = Sealer::new(&CookieKey::derive_from(
            b"another session key of at least thirty-two bytes",
        ))
        .unwrap();
        assert_eq!(other.open(&URL_SAFE_NO_PAD.encode(&sealed)), None);
        // Sealed for another cookie name (the associated data).
        assert_eq!(sealer.open(&jar_sealed("another_cookie", "x")), None);
        // Not base64 in either alphabet.
        for garbage in ["", "%", "not base64!", "\"q\"", "%zz"] {
            assert_eq!(sealer.open(garbage), None, "{garbage}");
        }
        assert_eq!(
            sealer.open(&URL_SAFE_NO_PAD.encode(&sealed)).as_deref(),
            Some(plaintext)
        );
    }

    #[test]
    fn percent_decode_is_percent_encodings() {
        let mut inputs: Vec<String> = [
            "",
            "plain",
            "a%2Fb%2Bc%3D%3D",
            "%",
            "%2",
            "%zz%2f%2F",
            "100%",
            "%%41",
            "%C3%A9t%C3%A9",
            "%C3",
            "%FF%FE",
            "é%20✓",
        ]
        .map(String::from)
        .to_vec();
        // Every escape and near-escape, alone and between text.
        for b in 0u8..=255 {
            inputs.push(format!("%{b:02X}"));
            inputs.push(format!("x%{b:02x}y"));
            inputs.push(format!("%{}", char::from(b.clamp(32, 126))));
        }
        // A real cookie value's shape.
        inputs.push("Ml8FtLGxHPFx1YSvlqfbWX3Iu02F+OXTQk8wwn%2F3qK%3D".repeat(12));
        for input in &inputs {
            let expected = percent_encoding::percent_decode_str(input)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned());
            assert_eq!(percent_decode(input), expected, "{input:?}");
        }
    }

    #[test]
    fn the_flat_reader_agrees_with_the_derived_one() {
        let logged_in = AuthState::LoggedIn(LoggedIn {
            token: AccessToken::new("0123456789abcdef", "very-secret-value"),
            user: UserSummary {
                username: "Example User".into(),
                sub: "12345".into(),
                editcount: 1234,
                groups: vec!["user".into(), "autoconfirmed".into()],
                blocked: false,
                grants: vec!["basic".into()],
            },
            csrf: "csrf-token".into(),
            since: 1_700_000_000,
        });
        let pending = AuthState::Pending {
            logins: vec![pending("a", 1), pending("b", 2)],
        };
        let written: Vec<String> = [AuthState::Anonymous, pending, logged_in]
            .iter()
            .map(|s| serde_json::to_string(s).unwrap())
            .collect();
        let logged = &written[2];
        let mut inputs = written.clone();
        inputs.extend([
            // The tag last, unknown fields, fields of another variant.
            format!(
                r#"{{{},"state":"logged_in"}}"#,
                &logged[r#"{"state":"logged_in","#.len()..logged.len() - 1]
            ),
            logged.replacen('{', r#"{"extra":[1,{"x":null}],"#, 1),
            r#"{"state":"anonymous","logins":[]}"#.into(),
            r#"{"state":"pending","logins":[],"csrf":"x"}"#.into(),
            // Missing fields, each in turn.
            logged.replacen(r#","csrf":"csrf-token""#, "", 1),
            logged.replacen(r#","since":1700000000"#, "", 1),
            r#"{"state":"pending"}"#.into(),
            r#"{"state":"logged_in"}"#.into(),
            // No tag, an unknown tag, a tag of the wrong type, twice.
            r#"{"logins":[]}"#.into(),
            r#"{"state":"admin"}"#.into(),
            r#"{"state":1}"#.into(),
            r#"{"state":"anonymous","state":"anonymous"}"#.into(),
            logged.replacen(r#","since":1700000000"#, r#","since":1,"since":2"#, 1),
            // Wrong types and shapes.
            logged.replacen("1700000000", r#""soon""#, 1),
            r#"{"state":"pending","logins":{}}"#.into(),
            "[]".into(),
            "null".into(),
            r#""anonymous""#.into(),
        ]);
        assert!(
            inputs[3].ends_with(r#""state":"logged_in"}"#),
            "{}",
            inputs[3]
        );
        for input in &inputs {
            let flat = serde_json::from_str::<AuthState>(input).ok();
            let derived = serde_json::from_str::<Derived>(input)
                .ok()
                .map(AuthState::from);
            assert_eq!(flat, derived, "{input}");
        }
        for input in &written {
            assert!(serde_json::from_str::<AuthState>(input).is_ok(), "{input}");
        }
        // The one documented difference.
        let other = r#"{"state":"anonymous","logins":1}"#;
        assert!(serde_json::from_str::<Derived>(other).is_ok());
        assert!(serde_json::from_str::<AuthState>(other).is_err());
    }

    fn pending(key: &str, created: u64) -> PendingLogin {
        PendingLogin {
            token: RequestToken::new(key, "secret"),
            next: None,
            created,
        }
    }

    #[test]
    fn only_our_cookie_is_read_the_first_one_and_as_the_cookie_parser_reads_it() {
        let find = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
            }
            find_cookie(&headers, COOKIE_NAME).and_then(legacy_value)
        };
        assert_eq!(find(&[]), None);
        assert_eq!(find(&["other=1; hello_oauth_session2=x"]), None);
        assert_eq!(
            find(&["a=1; hello_oauth_session = Zm9v+/== ; b=2"]),
            Some("Zm9v+/==".into())
        );
        assert_eq!(
            find(&["hello_oauth_session=first", "hello_oauth_session=second"]),
            Some("first".into())
        );
        // Not base64: through the cookie parser, which percent-decodes.
        assert_eq!(
            find(&["hello_oauth_session=a%20b"]),
            Some(Cookie::parse("x=a%20b").unwrap().value_str().to_owned())
        );
        for value in ["QUJD", "a-b_c", "x=y=", "%41", "\"q\""] {
            let pair = format!("{COOKIE_NAME}={value}");
            let Ok(header) = HeaderValue::from_str(&pair) else {
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, header);
            assert_eq!(
                find_cookie(&headers, COOKIE_NAME).and_then(legacy_value),
                Cookie::parse(&pair).ok().map(|c| c.value_str().to_owned()),
                "{pair}"
            );
        }
    }

    #[test]
    fn pending_logins_are_keyed_single_use_and_expire() {
        let mut data = SessionData::default();
        data.add_pending(pending("a", 1000), 1000);
        data.add_pending(pending("b", 1100), 1100);

        assert!(
            matches!(data.take_pending("b", 1200), PendingLookup::Found(p) if p.token.key() == "b")
        );
        assert_eq!(
            data.take_pending("b", 1200),
            PendingLookup::Mismatch,
            "used once"
        );
        assert!(matches!(
            data.take_pending("a", 1000 + 601),
            PendingLookup::Expired(_)
        ));
        assert_eq!(data.take_pending("a", 1700), PendingLookup::NothingPending);
        assert_eq!(data.auth, AuthState::Anonymous);
    }

    #[test]
    fn a_login_older_than_the_cookie_lifetime_is_forgotten() {
        let mut data = huge_login(0);
        assert!(!data.expire(MAX_AGE.as_secs()));
        assert!(data.logged_in().is_some());
        assert!(data.expire(MAX_AGE.as_secs() + 1));
        assert_eq!(data.auth, AuthState::Anonymous);

        let mut pending = SessionData::default();
        pending.add_pending(self::pending("a", 1000), 1000);
        assert!(!pending.expire(1600));
        assert!(pending.expire(1601));
        assert_eq!(pending.auth, AuthState::Anonymous);
    }

    #[test]
    fn only_a_few_logins_may_be_pending_and_the_oldest_go_first() {
        let mut data = SessionData::default();
        for i in 0..10 {
            data.add_pending(pending(&format!("t{i}"), 1000 + i), 1000 + i);
        }
        let AuthState::Pending { logins } = &data.auth else {
            panic!("{:?}", data.auth)
        };
        assert_eq!(logins.len(), MAX_PENDING_LOGINS);
        assert_eq!(logins[0].token.key(), "t6");
    }

    fn huge_login(since: u64) -> SessionData {
        SessionData {
            flashes: vec![
                Flash {
                    level: FlashLevel::Error,
                    text: "é".repeat(1500)
                };
                5
            ],
            auth: AuthState::LoggedIn(LoggedIn {
                token: AccessToken::new("0".repeat(32), "1".repeat(40)),
                user: UserSummary {
                    username: "Ü".repeat(127),
                    sub: "123456789".into(),
                    editcount: 1,
                    groups: vec!["g".repeat(64); 20],
                    blocked: false,
                    grants: vec!["r".repeat(MAX_GRANT_CHARS); MAX_GRANTS],
                },
                csrf: "c".repeat(43),
                since,
            }),
        }
    }

    #[tokio::test]
    async fn an_oversized_session_is_cut_down_to_fit_a_cookie_and_keeps_the_login() {
        let key = SecretString::from(crate::config::generate_session_key());
        let writer = SessionMiddleware::new(&key)
            .unwrap()
            .transform(poem::endpoint::make(|req: Request| async move {
                let session = req.extensions().get::<Session>().cloned().unwrap();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                session.update(|d| *d = huge_login(now));
                "written"
            }));
        let resp = writer
            .call(Request::builder().finish())
            .await
            .unwrap()
            .into_response();
        let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set_cookie.len() <= MAX_COOKIE_BYTES,
            "{} bytes",
            set_cookie.len()
        );
        let pair = set_cookie.split(';').next().unwrap().to_owned();

        let reader = SessionMiddleware::new(&key)
            .unwrap()
            .transform(poem::endpoint::make(|req: Request| async move {
                let session = req.extensions().get::<Session>().cloned().unwrap();
                session
                    .data()
                    .logged_in()
                    .map(|l| l.user.username.clone())
                    .unwrap_or_default()
            }));
        let resp = reader
            .call(Request::builder().header("cookie", pair).finish())
            .await
            .unwrap()
            .into_response();
        let body = resp.into_body().into_string().await.unwrap();
        assert_eq!(body, "Ü".repeat(127));
    }

    #[test]
    fn shrinking_never_drops_the_login() {
        let mut data = SessionData {
            flashes: vec![
                Flash {
                    level: FlashLevel::Info,
                    text: "x".repeat(2000)
                };
                5
            ],
            auth: AuthState::LoggedIn(LoggedIn {
                token: AccessToken::new("k", "s"),
                user: UserSummary {
                    username: "U".repeat(255),
                    sub: "1".into(),
                    editcount: 1,
                    groups: vec!["g".repeat(64); 20],
                    blocked: false,
                    grants: vec!["r".repeat(MAX_GRANT_CHARS); MAX_GRANTS],
                },
                csrf: "c".into(),
                since: 0,
            }),
        };
        let mut steps = 0;
        while data.shrink() {
            steps += 1;
            assert!(steps < 100);
        }
        assert!(data.flashes.is_empty());
        assert!(
            data.logged_in()
                .is_some_and(|l| l.user.username.len() == 255)
        );
    }
}
