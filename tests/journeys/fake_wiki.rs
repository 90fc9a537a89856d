//! An honest fake of a MediaWiki wiki with Extension:OAuth, on loopback.
//!
//! It verifies HMAC-SHA1 signatures with its own RFC 5849 implementation
//! (base string, percent-encoding, key) written here, not with the code
//! under test; refuses timestamps outside 300 s and reused nonces; issues
//! single-use request tokens that expire after 600 s; checks the verifier;
//! answers errors with HTTP 200 in both of the wiki's forms; signs real
//! HS256 JWTs; shows an approval form a browser can submit; redirects to the
//! registered callback after `oob`; and serves `api.php` userinfo as the
//! user. It can be told to misbehave, one step at a time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use poem::http::{StatusCode, header};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, Request, Response, Server};
use rand::Rng as _;

/// The consumer the fake knows, and that the tool under test is given.
pub const CONSUMER_KEY: &str = "f4ke0c0nsumer0key0000000000000001";
/// Its secret.
pub const CONSUMER_SECRET: &str = "fake-consumer-SECRET-0123456789abcdef";

/// A step of the protocol, to aim a misbehaviour at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Initiate,
    Token,
    Identify,
    Api,
}

/// Ways the identity JWT can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFault {
    WrongAudience,
    WrongIssuer,
    WrongNonce,
    StaleIat,
    FutureIat,
    Expired,
    BadSignature,
    AlgNone,
    /// A suppressed user: only `sub` and `blocked`, no `username`.
    Suppressed,
    /// Not a fault: older wikis send `sub` as a number.
    SubAsNumber,
}

/// What a step does instead of behaving.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// Answers after this long.
    Slow(Duration),
    /// Answers 200 with a body that means nothing.
    Garbage,
    /// Answers HTTP 500.
    ServerError,
    /// Answers 200 with this many bytes, streamed without a length.
    Huge(u64),
    /// Answers 200 declaring this many bytes in `Content-Length`, and
    /// streams them.
    HugeDeclared(u64),
    /// Reads the request and never answers (for at most a minute).
    Hang,
    /// Sends the headers at once, then one byte every 100 ms.
    Trickle,
    /// Answers 200 with what looks like a whole token answer, but 100
    /// bytes short of its `Content-Length`: the connection breaks off.
    Truncated,
    /// Answers 200 with bytes that are not UTF-8 text.
    Binary,
    /// Answers `Error: <text>` (HTML-escaped), HTTP 200.
    TextError(String),
    /// Answers `{"error": key, "message": text}`, HTTP 200.
    JsonError(String, String),
    /// A redirect, which a signed request must not follow.
    Redirect,
    /// The identity JWT is wrong this way.
    Jwt(JwtFault),
}

/// A user of the wiki.
#[derive(Debug, Clone)]
pub struct WikiUser {
    pub name: String,
    pub sub: u64,
    pub editcount: u64,
    pub groups: Vec<String>,
    pub rights: Vec<String>,
    pub registration: String,
}

impl Default for WikiUser {
    fn default() -> Self {
        WikiUser {
            name: "Example User".into(),
            sub: 4242,
            editcount: 1234,
            groups: vec!["*".into(), "user".into(), "autoconfirmed".into()],
            rights: vec!["read".into(), "edit".into(), "createpage".into()],
            registration: "2015-03-14T15:09:26Z".into(),
        }
    }
}

/// One request the fake answered, for assertions.
#[derive(Debug, Clone)]
pub struct Seen {
    pub step: Option<Step>,
    pub method: String,
    pub user_agent: String,
    pub oauth: HashMap<String, String>,
    pub signature_ok: bool,
}

#[derive(Debug)]
struct RequestTokenRecord {
    secret: String,
    callback: String,
    created: u64,
    used: bool,
    approved: Option<(String, WikiUser)>,
}

#[derive(Debug)]
struct AccessRecord {
    secret: String,
    user: WikiUser,
}

#[derive(Debug)]
struct State {
    base: String,
    registered_callback: String,
    use_as_prefix: bool,
    clock_offset: i64,
    user: WikiUser,
    faults: HashMap<Step, Misbehaviour>,
    nonces: HashSet<(String, String, String)>,
    request_tokens: HashMap<String, RequestTokenRecord>,
    access_tokens: HashMap<String, AccessRecord>,
    seen: Vec<Seen>,
    secrets_issued: Vec<String>,
    secret_marker: String,
    refuse_signatures: bool,
}

/// A running fake wiki.
pub struct FakeWiki {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    streamed: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeWiki {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl FakeWiki {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> FakeWiki {
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_at(addr: SocketAddr) -> FakeWiki {
        let acceptor = TcpListener::bind(addr.to_string())
            .into_acceptor()
            .await
            .unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        let state = Arc::new(Mutex::new(State {
            base: format!("http://{addr}"),
            registered_callback: "http://tool.invalid/oauth-callback".into(),
            use_as_prefix: false,
            clock_offset: 0,
            user: WikiUser::default(),
            faults: HashMap::new(),
            nonces: HashSet::new(),
            request_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            seen: Vec::new(),
            secrets_issued: Vec::new(),
            secret_marker: String::new(),
            refuse_signatures: false,
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let streamed = Arc::new(AtomicU64::new(0));
        let endpoint = Wiki {
            state: state.clone(),
            streamed: streamed.clone(),
        };
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    endpoint,
                    async {
                        let _ = rx.await;
                    },
                    Some(Duration::from_millis(100)),
                )
                .await;
        });
        FakeWiki {
            addr,
            state,
            streamed,
            shutdown: Some(tx),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The wiki's `index.php`, for `TOOL_OAUTH_MWURI`.
    pub fn index_url(&self) -> String {
        format!("http://{}/w/index.php", self.addr)
    }

    /// Registers the consumer's callback URL.
    pub fn register_callback(&self, url: &str, use_as_prefix: bool) {
        let mut s = self.lock();
        s.registered_callback = url.to_owned();
        s.use_as_prefix = use_as_prefix;
    }

    /// The user who is logged in on the wiki and approves.
    pub fn set_user(&self, user: WikiUser) {
        self.lock().user = user;
    }

    /// Makes `step` misbehave from now on.
    pub fn misbehave(&self, step: Step, how: Misbehaviour) {
        self.lock().faults.insert(step, how);
    }

    /// Makes every step behave again.
    pub fn behave(&self) {
        self.lock().faults.clear();
    }

    /// Moves the wiki's clock.
    pub fn advance_clock(&self, seconds: i64) {
        self.lock().clock_offset += seconds;
    }

    /// Makes every request token `seconds` older.
    pub fn age_request_tokens(&self, seconds: u64) {
        for record in self.lock().request_tokens.values_mut() {
            record.created -= seconds;
        }
    }

    /// Every request answered so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Every secret the wiki handed out: token secrets and verifiers.
    pub fn secrets_issued(&self) -> Vec<String> {
        self.lock().secrets_issued.clone()
    }

    /// Makes every secret handed out from now on start with `marker` and
    /// carry characters that change under percent-encoding, JSON and HTML
    /// escaping, so that a leak test can recognise it in any form.
    pub fn mark_secrets(&self, marker: &str) {
        self.lock().secret_marker = marker.to_owned();
    }

    /// Makes the wiki refuse every signature from now on, as it does when
    /// a token secret does not match: its message echoes the signature base
    /// string, which holds every `oauth_*` parameter the tool sent.
    pub fn refuse_signatures(&self, refuse: bool) {
        self.lock().refuse_signatures = refuse;
    }

    /// Bytes of huge answers handed to the connection so far (what the
    /// client could have read, at most).
    pub fn bytes_streamed(&self) -> u64 {
        self.streamed.load(Ordering::Relaxed)
    }

    /// Withdraws every access token (the user revoked the grant).
    pub fn revoke_all(&self) {
        self.lock().access_tokens.clear();
    }

    /// Plays the user on the wiki: opens the approval page the tool sent
    /// the browser to, submits its form with `button`, and returns where the
    /// wiki then sends the browser (or the page it shows instead).
    pub async fn decide(&self, authorize_url: &str, button: &str) -> Result<String, String> {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = browser.get(authorize_url).send().await.unwrap();
        let status = page.status();
        let html = page.text().await.unwrap();
        if status != 200 || !html.contains("<form") {
            return Err(html);
        }
        let token = between(&html, "name=\"oauth_token\" value=\"", "\"").unwrap();
        let action = between(&html, "action=\"", "\"")
            .unwrap()
            .replace("&amp;", "&");
        let answer = browser
            .post(format!("http://{}{}", self.addr, action))
            .form(&[("oauth_token", token.as_str()), (button, "1")])
            .send()
            .await
            .unwrap();
        match answer.headers().get(header::LOCATION) {
            Some(location) => Ok(location.to_str().unwrap().to_owned()),
            None => Err(answer.text().await.unwrap()),
        }
    }

    /// Approves, and returns the callback URL the browser is sent to.
    pub async fn approve(&self, authorize_url: &str) -> String {
        self.decide(authorize_url, "accept").await.unwrap()
    }
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].to_owned())
}

// ---------------------------------------------------------------------------
// RFC 5849, written here on purpose (not the code under test).

/// Percent-encodes as RFC 5849 §3.6 says: everything but unreserved characters.
pub fn rfc3986(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unpercent(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Authorization: OAuth ...` parameters, decoded.
fn parse_oauth_header(value: &str) -> Option<HashMap<String, String>> {
    let rest = value.strip_prefix("OAuth ")?;
    let mut params = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v = v.strip_prefix('"')?.strip_suffix('"')?;
        if k != "realm" {
            params.insert(unpercent(k), unpercent(v));
        }
    }
    Some(params)
}

/// The signature base string of RFC 5849 §3.4.1.
pub fn base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .map(|(k, v)| (rfc3986(k), rfc3986(v)))
        .collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        rfc3986(base_uri),
        rfc3986(&normalized)
    )
}

/// HMAC-SHA1 signature of RFC 5849 §3.4.2, base64.
pub fn hmac_sha1(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!("{}&{}", rfc3986(consumer_secret), rfc3986(token_secret));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hs256_jwt(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let h = b64.encode(header.to_string());
    let c = b64.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// A new secret: random hex, or, once [`FakeWiki::mark_secrets`] was
/// called, the marker, the kind of secret, characters that every encoding
/// changes, and random hex.
fn new_secret(state: &State, kind: &str) -> String {
    if state.secret_marker.is_empty() {
        random_hex(20)
    } else {
        format!("{}-{kind}+/=&\"<x>%{}", state.secret_marker, random_hex(8))
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.r#gen::<u8>()))
        .collect()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#039;")
}

// ---------------------------------------------------------------------------
// The endpoint.

struct Wiki {
    state: Arc<Mutex<State>>,
    streamed: Arc<AtomicU64>,
}

/// An OAuth failure, as Extension:OAuth names it.
struct Refusal {
    key: &'static str,
    text: String,
}

fn refusal(key: &'static str, text: impl Into<String>) -> Refusal {
    Refusal {
        key,
        text: text.into(),
    }
}

fn e004() -> Refusal {
    refusal(
        "mwoauthdatastore-request-token-not-found",
        "Sorry, something went wrong connecting this application.\nGo back and try to connect \
         your account again, or contact the application author.\n\n<span class=\"plainlinks \
         mw-mwoautherror-details\">OAuth token not found, \
         [https://www.mediawiki.org/wiki/Help:OAuth/Errors#E004 E004]</span>",
    )
}

fn e009() -> Refusal {
    refusal(
        "mwoauthdatastore-request-token-already-used",
        "Sorry, something went wrong connecting this application.\n\n<span class=\"plainlinks \
         mw-mwoautherror-details\">Request token already used, \
         [https://www.mediawiki.org/wiki/Help:OAuth/Errors#E009 E009]</span>",
    )
}

fn text_response(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type(content_type)
        .header(
            header::CACHE_CONTROL,
            "no-cache, no-store, max-age=0, must-revalidate",
        )
        .body(body)
}

fn raw_error(r: &Refusal) -> Response {
    text_response(
        StatusCode::OK,
        "text/plain",
        format!("Error: {}", html_escape(&r.text)),
    )
}

fn json_error(r: &Refusal) -> Response {
    text_response(
        StatusCode::OK,
        "application/json",
        serde_json::json!({"error": r.key, "message": r.text}).to_string(),
    )
}

fn api_error(code: &str, info: &str) -> Response {
    text_response(
        StatusCode::OK,
        "application/json; charset=utf-8",
        serde_json::json!({"error": {"code": code, "info": info}}).to_string(),
    )
}

/// What the OAuth layer established about a signed request.
struct Verified {
    oauth: HashMap<String, String>,
    token_secret_owner: Option<String>,
}

impl Wiki {
    fn now(state: &State) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (real + state.clock_offset) as u64
    }

    /// Checks the request's OAuth signature and rules. `token_kind` says
    /// which token must sign it (none, a request token, an access token).
    fn verify(
        state: &mut State,
        req: &Request,
        form: &[(String, String)],
        token_kind: Option<&str>,
    ) -> Result<Verified, Refusal> {
        let header = req
            .header(header::AUTHORIZATION)
            .ok_or_else(|| refusal("mwoauth-oauth-exception", "No OAuth header"))?;
        let oauth = parse_oauth_header(header)
            .ok_or_else(|| refusal("mwoauth-oauth-exception", "Malformed OAuth header"))?;
        let get = |k: &str| oauth.get(k).cloned().unwrap_or_default();

        if get("oauth_consumer_key") != CONSUMER_KEY {
            return Err(refusal(
                "mwoauthserver-bad-consumer-key",
                "Invalid consumer key, E001",
            ));
        }
        if get("oauth_signature_method") != "HMAC-SHA1" {
            return Err(refusal(
                "mwoauth-oauth-exception",
                "Signature method not supported",
            ));
        }
        if oauth.get("oauth_version").is_some_and(|v| v != "1.0") {
            return Err(refusal(
                "mwoauth-oauth-exception",
                "OAuth version not supported",
            ));
        }
        let timestamp: i64 = get("oauth_timestamp").parse().unwrap_or(0);
        let now = Self::now(state) as i64;
        if (now - timestamp).abs() > 300 {
            return Err(refusal(
                "mwoauth-oauth-exception",
                format!("Expired timestamp, yours {timestamp}, ours {now}"),
            ));
        }

        let token = oauth.get("oauth_token").cloned();
        let token_secret = match (token_kind, &token) {
            (None, _) => String::new(),
            (Some("request"), Some(t)) => match state.request_tokens.get(t) {
                Some(r) => r.secret.clone(),
                None => return Err(e004()),
            },
            (Some("access"), Some(t)) => match state.access_tokens.get(t) {
                Some(a) => a.secret.clone(),
                None => {
                    return Err(refusal(
                        "mwoauthdatastore-access-token-not-found",
                        "No approved grant was found for that authorization token.",
                    ));
                }
            },
            _ => return Err(refusal("mwoauth-oauth-exception", "Missing token")),
        };

        let mut params: Vec<(String, String)> =
            oauth.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(query) = req.uri().query() {
            params.extend(
                url::form_urlencoded::parse(query.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        params.extend(form.iter().cloned());
        let base_uri = format!("{}{}", state.base, req.uri().path());
        let base = base_string(req.method().as_str(), &base_uri, &params);
        let expected = hmac_sha1(&base, CONSUMER_SECRET, &token_secret);
        let signature_ok = expected == get("oauth_signature") && !state.refuse_signatures;
        if let Some(last) = state.seen.last_mut() {
            last.oauth = oauth.clone();
            last.signature_ok = signature_ok;
        }
        if !signature_ok {
            return Err(refusal(
                "mwoauth-oauth-exception",
                format!("Invalid signature; expected signature base string: {base}"),
            ));
        }
        let nonce_key = (
            CONSUMER_KEY.to_owned(),
            token.clone().unwrap_or_default(),
            get("oauth_nonce"),
        );
        if get("oauth_nonce").is_empty() || !state.nonces.insert(nonce_key) {
            return Err(refusal("mwoauth-oauth-exception", "Nonce already used"));
        }
        Ok(Verified {
            oauth,
            token_secret_owner: token,
        })
    }

    fn callback_allowed(state: &State, callback: &str) -> bool {
        if callback == "oob" {
            return true;
        }
        if !state.use_as_prefix {
            return false;
        }
        let (Ok(sent), Ok(registered)) = (
            url::Url::parse(callback),
            url::Url::parse(&state.registered_callback),
        ) else {
            return false;
        };
        let scheme_ok = sent.scheme() == registered.scheme()
            || (registered.scheme() == "http" && sent.scheme() == "https");
        let port_ok = registered.port() == Some(1)
            || sent.port_or_known_default() == registered.port_or_known_default();
        scheme_ok
            && port_ok
            && sent.host_str() == registered.host_str()
            && sent.path().starts_with(registered.path())
    }

    fn initiate(state: &mut State, req: &Request, form: &[(String, String)]) -> Response {
        let verified = match Self::verify(state, req, form, None) {
            Ok(v) => v,
            Err(r) => return raw_error(&r),
        };
        let callback = verified
            .oauth
            .get("oauth_callback")
            .cloned()
            .unwrap_or_default();
        if !Self::callback_allowed(state, &callback) {
            return raw_error(&refusal(
                "mwoauth-callback-not-oob",
                "oauth_callback must be set, and must be set to \"oob\" (case-sensitive), or \
                 the configured callback must be a prefix of the supplied callback",
            ));
        }
        let key = random_hex(16);
        let secret = new_secret(state, "request-secret");
        state.secrets_issued.push(secret.clone());
        state.request_tokens.insert(
            key.clone(),
            RequestTokenRecord {
                secret: secret.clone(),
                callback,
                created: Self::now(state),
                used: false,
                approved: None,
            },
        );
        text_response(
            StatusCode::OK,
            "text/plain",
            format!(
                "oauth_token={}&oauth_token_secret={}&oauth_callback_confirmed=true",
                rfc3986(&key),
                rfc3986(&secret)
            ),
        )
    }

    fn token(state: &mut State, req: &Request, form: &[(String, String)]) -> Response {
        let verified = match Self::verify(state, req, form, Some("request")) {
            Ok(v) => v,
            Err(r) => return raw_error(&r),
        };
        let now = Self::now(state);
        let key = verified.token_secret_owner.unwrap_or_default();
        let Some(record) = state.request_tokens.get_mut(&key) else {
            return raw_error(&e004());
        };
        if now.saturating_sub(record.created) > 600 {
            state.request_tokens.remove(&key);
            return raw_error(&e004());
        }
        if record.used {
            return raw_error(&e009());
        }
        let Some((verifier, user)) = record.approved.clone() else {
            return raw_error(&refusal(
                "mwoauthdatastore-bad-verifier",
                "The verification code provided was not valid.",
            ));
        };
        if verified.oauth.get("oauth_verifier") != Some(&verifier) {
            return raw_error(&refusal(
                "mwoauthdatastore-bad-verifier",
                "The verification code provided was not valid.",
            ));
        }
        record.used = true;
        let access = random_hex(16);
        let secret = new_secret(state, "access-secret");
        state.secrets_issued.push(secret.clone());
        state.access_tokens.insert(
            access.clone(),
            AccessRecord {
                secret: secret.clone(),
                user,
            },
        );
        text_response(
            StatusCode::OK,
            "text/plain",
            format!(
                "oauth_token={}&oauth_token_secret={}",
                rfc3986(&access),
                rfc3986(&secret)
            ),
        )
    }

    fn identify(
        state: &mut State,
        req: &Request,
        form: &[(String, String)],
        fault: Option<JwtFault>,
    ) -> Response {
        let verified = match Self::verify(state, req, form, Some("access")) {
            Ok(v) => v,
            Err(r) => return json_error(&r),
        };
        let key = verified.token_secret_owner.unwrap_or_default();
        let Some(access) = state.access_tokens.get(&key) else {
            return json_error(&refusal(
                "mwoauthdatastore-access-token-not-found",
                "No approved grant was found for that authorization token.",
            ));
        };
        let now = Self::now(state);
        let user = &access.user;
        let mut claims = serde_json::json!({
            "iss": state.base,
            "sub": user.sub.to_string(),
            "aud": CONSUMER_KEY,
            "exp": now + 100,
            "iat": now,
            "username": user.name,
            "editcount": user.editcount,
            "confirmed_email": true,
            "blocked": false,
            "registered": "20150314150926",
            "groups": user.groups,
            "rights": user.rights,
            "grants": ["mwoauth-authonly"],
            "nonce": verified.oauth.get("oauth_nonce").cloned().unwrap_or_default(),
        });
        let mut header = serde_json::json!({"typ": "JWT", "alg": "HS256"});
        let mut key = CONSUMER_SECRET.as_bytes().to_vec();
        match fault {
            None => {}
            Some(JwtFault::WrongAudience) => claims["aud"] = "someone-else".into(),
            Some(JwtFault::WrongIssuer) => claims["iss"] = "https://evil.example".into(),
            Some(JwtFault::WrongNonce) => claims["nonce"] = "an-older-nonce".into(),
            Some(JwtFault::StaleIat) => claims["iat"] = (now - 3600).into(),
            Some(JwtFault::FutureIat) => {
                claims["iat"] = (now + 3600).into();
                claims["exp"] = (now + 3700).into();
            }
            Some(JwtFault::Expired) => {
                claims["iat"] = (now - 200).into();
                claims["exp"] = (now - 100).into();
            }
            Some(JwtFault::BadSignature) => key = b"not-the-consumer-secret".to_vec(),
            Some(JwtFault::AlgNone) => header["alg"] = "none".into(),
            Some(JwtFault::Suppressed) => {
                let kept = ["iss", "sub", "aud", "exp", "iat", "nonce"];
                if let Some(map) = claims.as_object_mut() {
                    map.retain(|k, _| kept.contains(&k.as_str()));
                }
                claims["blocked"] = true.into();
            }
            Some(JwtFault::SubAsNumber) => claims["sub"] = user.sub.into(),
        }
        let jwt = if fault == Some(JwtFault::AlgNone) {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.",
                b64.encode(header.to_string()),
                b64.encode(claims.to_string())
            )
        } else {
            hs256_jwt(&header, &claims, &key)
        };
        text_response(StatusCode::OK, "application/json", jwt)
    }

    fn api(state: &mut State, req: &Request, form: &[(String, String)]) -> Response {
        let verified = match Self::verify(state, req, form, Some("access")) {
            Ok(v) => v,
            Err(r) => {
                return api_error(
                    "mwoauth-invalid-authorization",
                    &format!(
                        "The authorization headers in your request are not valid: {}",
                        r.text
                    ),
                );
            }
        };
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let q = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
        if q("format") != "json" || q("formatversion") != "2" {
            return api_error(
                "badformat",
                "This fake answers format=json&formatversion=2 only.",
            );
        }
        if q("action") != "query" || q("meta") != "userinfo" {
            return api_error(
                "badvalue",
                "This fake knows action=query&meta=userinfo only.",
            );
        }
        let key = verified.token_secret_owner.unwrap_or_default();
        let Some(access) = state.access_tokens.get(&key) else {
            return api_error(
                "mwoauth-invalid-authorization",
                "The authorization headers in your request are not valid: No approved grant \
                 was found for that authorization token.",
            );
        };
        let user = &access.user;
        let props: Vec<&str> = q("uiprop").split('|').collect();
        let mut info = serde_json::json!({"id": user.sub, "name": user.name});
        if props.contains(&"editcount") {
            info["editcount"] = user.editcount.into();
        }
        if props.contains(&"groups") {
            info["groups"] = user.groups.clone().into();
        }
        if props.contains(&"rights") {
            info["rights"] = user.rights.clone().into();
        }
        if props.contains(&"registration") {
            info["registration"] = user.registration.clone().into();
        }
        text_response(
            StatusCode::OK,
            "application/json; charset=utf-8",
            serde_json::json!({"batchcomplete": true, "query": {"userinfo": info}}).to_string(),
        )
    }

    /// The approval page a browser lands on.
    fn approval_page(state: &State, token: &str) -> Response {
        if !state.request_tokens.contains_key(token) {
            return text_response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                format!(
                    "<!DOCTYPE html><title>OAuth error</title><p>{}</p>",
                    html_escape(&e004().text)
                ),
            );
        }
        let user = html_escape(&state.user.name);
        let token = html_escape(token);
        let body = format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow access? - Fake Wiki</title>
<style>body{{font-family:sans-serif;background:#eaecf0;margin:0;padding:2rem}}
.dialog{{max-width:32rem;margin:auto;background:#fff;border:1px solid #a2a9b1;padding:1.5rem;border-radius:2px}}
button{{font:inherit;padding:.5rem 1rem;margin-right:.5rem}} #mw-mwoauth-accept{{background:#36c;color:#fff;border:1px solid #36c}}</style>
</head><body><div class="dialog" id="mw-mwoauth-authorize-dialog">
<h1>Fake Wiki</h1>
<p>Hi {user}, <strong>hello-oauth</strong> would like to verify your identity on this wiki.
It will not be able to edit on your behalf.</p>
<form method="post" action="/w/index.php?title=Special:OAuth/authorize">
<input type="hidden" name="oauth_token" value="{token}">
<button type="submit" name="accept" value="1" id="mw-mwoauth-accept">Allow</button>
<button type="submit" name="cancel" value="1" id="mw-mwoauth-cancel">Cancel</button>
</form></div></body></html>"#
        );
        text_response(StatusCode::OK, "text/html; charset=utf-8", body)
    }

    /// The approval form's submission.
    fn decide(state: &mut State, form: &[(String, String)]) -> Response {
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let token = field("oauth_token").unwrap_or_default();
        if field("cancel").is_some() {
            // The real wiki keeps the user on the wiki: the tool is not told.
            return text_response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                "<!DOCTYPE html><title>Fake Wiki</title><p>Received request for a form \
                 cancellation.</p>"
                    .into(),
            );
        }
        let user = state.user.clone();
        let registered = state.registered_callback.clone();
        let verifier = if state.secret_marker.is_empty() {
            random_hex(16)
        } else {
            format!(
                "{}-verifier+/=&\"<x>%{}",
                state.secret_marker,
                random_hex(8)
            )
        };
        let Some(record) = state.request_tokens.get_mut(&token) else {
            return text_response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                html_escape(&e004().text),
            );
        };
        record.approved = Some((verifier.clone(), user));
        let target = if record.callback == "oob" {
            registered
        } else {
            record.callback.clone()
        };
        state.secrets_issued.push(verifier.clone());
        let mut url = url::Url::parse(&target).unwrap();
        url.query_pairs_mut()
            .append_pair("oauth_verifier", &verifier)
            .append_pair("oauth_token", &token);
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, url.as_str())
            .finish()
    }
}

impl Endpoint for Wiki {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let is_form = req
            .header(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let form: Vec<(String, String)> = if is_form {
            url::form_urlencoded::parse(&body).into_owned().collect()
        } else {
            Vec::new()
        };
        let title = req
            .uri()
            .query()
            .and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "title")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
        let path = req.uri().path().to_owned();
        let step = match (path.as_str(), title.as_str()) {
            ("/w/index.php", "Special:OAuth/initiate") => Some(Step::Initiate),
            ("/w/index.php", "Special:OAuth/token") => Some(Step::Token),
            ("/w/index.php", "Special:OAuth/identify") => Some(Step::Identify),
            ("/w/api.php", _) => Some(Step::Api),
            _ => None,
        };

        let fault = {
            let mut state = self.state.lock().unwrap();
            state.seen.push(Seen {
                step,
                method: req.method().to_string(),
                user_agent: req.header(header::USER_AGENT).unwrap_or("").to_owned(),
                oauth: HashMap::new(),
                signature_ok: false,
            });
            step.and_then(|s| state.faults.get(&s).cloned())
        };
        let mut jwt_fault = None;
        match fault {
            Some(Misbehaviour::Slow(d)) => tokio::time::sleep(d).await,
            Some(Misbehaviour::Garbage) => {
                return Ok(text_response(
                    StatusCode::OK,
                    "text/html",
                    "<html><body>Wikimedia Error: our servers are experiencing a technical \
                     problem</body></html>"
                        .into(),
                ));
            }
            Some(Misbehaviour::ServerError) => {
                return Ok(text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/html",
                    "<html>Internal error</html>".into(),
                ));
            }
            Some(Misbehaviour::Huge(bytes)) => {
                let reader = Counted::new(bytes, self.streamed.clone());
                return Ok(Response::builder()
                    .content_type("text/plain")
                    .body(poem::Body::from_async_read(reader)));
            }
            Some(Misbehaviour::HugeDeclared(bytes)) => {
                let reader = Counted::new(bytes, self.streamed.clone());
                return Ok(Response::builder()
                    .content_type("text/plain")
                    .header(header::CONTENT_LENGTH, bytes)
                    .body(poem::Body::from_async_read(reader)));
            }
            Some(Misbehaviour::Hang) => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return Ok(text_response(StatusCode::OK, "text/plain", String::new()));
            }
            Some(Misbehaviour::Trickle) => {
                return Ok(Response::builder()
                    .content_type("text/plain")
                    .body(poem::Body::from_async_read(Trickle::new())));
            }
            Some(Misbehaviour::Truncated) => {
                let whole: &[u8] = b"oauth_token=0123456789abcdef&oauth_token_secret=\
                      0123456789abcdef&oauth_callback_confirmed=true";
                return Ok(Response::builder()
                    .content_type("text/plain")
                    .header(header::CONTENT_LENGTH, whole.len() + 100)
                    .body(poem::Body::from_async_read(BreaksOff::new(whole))));
            }
            Some(Misbehaviour::Binary) => {
                return Ok(Response::builder()
                    .content_type("application/octet-stream")
                    .body(vec![0xff, 0xfe, 0x00, 0xc3, 0x28, b'o', b'a', 0x80, 0x81]));
            }

            Some(Misbehaviour::TextError(text)) => {
                return Ok(raw_error(&refusal("fake", text)));
            }
            Some(Misbehaviour::JsonError(key, text)) => {
                return Ok(text_response(
                    StatusCode::OK,
                    "application/json",
                    serde_json::json!({"error": key, "message": text}).to_string(),
                ));
            }
            Some(Misbehaviour::Redirect) => {
                return Ok(Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header(header::LOCATION, "https://evil.example/steal")
                    .finish());
            }
            Some(Misbehaviour::Jwt(f)) => jwt_fault = Some(f),
            None => {}
        }

        let mut state = self.state.lock().unwrap();
        let response = match (step, req.method().as_str(), title.as_str()) {
            (Some(Step::Initiate), "POST", _) => Wiki::initiate(&mut state, &req, &form),
            (Some(Step::Token), "POST", _) => Wiki::token(&mut state, &req, &form),
            (Some(Step::Identify), "POST", _) => Wiki::identify(&mut state, &req, &form, jwt_fault),
            (Some(Step::Api), _, _) => Wiki::api(&mut state, &req, &form),
            (None, "GET", "Special:OAuth/authenticate" | "Special:OAuth/authorize") => {
                let token = req
                    .uri()
                    .query()
                    .and_then(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "oauth_token")
                            .map(|(_, v)| v.into_owned())
                    })
                    .unwrap_or_default();
                if req.header(header::AUTHORIZATION).is_some() {
                    json_error(&refusal(
                        "mwoauth-not-api",
                        "OAuth header on a non-API page",
                    ))
                } else {
                    Wiki::approval_page(&state, &token)
                }
            }
            (None, "POST", "Special:OAuth/authorize") => Wiki::decide(&mut state, &form),
            (Some(_), _, _) => raw_error(&refusal("mwoauth-bad-request", "Use POST.")),
            _ => text_response(
                StatusCode::NOT_FOUND,
                "text/html",
                "<html>No such page on the fake wiki</html>".into(),
            ),
        };
        Ok(response)
    }
}

/// A huge answer body: `left` bytes of `a`, each counted as it is handed
/// to the connection.
struct Counted {
    left: u64,
    sent: Arc<AtomicU64>,
}

impl Counted {
    fn new(bytes: u64, sent: Arc<AtomicU64>) -> Counted {
        Counted { left: bytes, sent }
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(64 * 1024) as usize;
        buf.put_slice(&vec![b'a'; n]);
        self.left -= n as u64;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

/// One byte every 100 ms, 600 in all.
struct Trickle {
    left: usize,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new() -> Trickle {
        Trickle {
            left: 600,
            pause: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Ok(()));
        }
        if std::future::Future::poll(self.pause.as_mut(), cx).is_pending() {
            return Poll::Pending;
        }
        buf.put_slice(b"o");
        self.left -= 1;
        let next = tokio::time::Instant::now() + Duration::from_millis(100);
        self.pause.as_mut().reset(next);
        Poll::Ready(Ok(()))
    }
}

/// An answer that looks whole but is shorter than its declared length:
/// after a pause (so that what was sent reaches the client), the stream
/// ends, and the server must break the connection.
struct BreaksOff {
    start: Vec<u8>,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl BreaksOff {
    fn new(start: &[u8]) -> BreaksOff {
        BreaksOff {
            start: start.to_vec(),
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
        }
    }
}

impl tokio::io::AsyncRead for BreaksOff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.start.is_empty() {
            let start = std::mem::take(&mut self.start);
            buf.put_slice(&start);
            return Poll::Ready(Ok(()));
        }
        if std::future::Future::poll(self.pause.as_mut(), cx).is_pending() {
            return Poll::Pending;
        }
        // The end of the stream, short of the declared length.
        Poll::Ready(Ok(()))
    }
}

/// A wiki that accepts connections and never reads from or answers any of
/// them, until dropped.
/// With [`Blackhole::hanging_up`], it reads each request and closes the
/// connection without a word instead.
pub struct Blackhole {
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        Self::start_with(false).await
    }

    /// A wiki that hangs up on every request.
    pub async fn hanging_up() -> Blackhole {
        Self::start_with(true).await
    }

    async fn start_with(hang_up: bool) -> Blackhole {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            // Bounded: a test makes a handful of connections at most.
            while held.len() < 1000 {
                let next = listener.accept().await;
                if next.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                match next {
                    Ok((mut stream, _)) if hang_up => {
                        let mut buf = [0u8; 4096];
                        let _ = stream.read(&mut buf).await;
                        drop(stream);
                        held.push(None);
                    }
                    Ok((stream, _)) => held.push(Some(stream)),
                    Err(_) => break,
                }
            }
            std::future::pending::<()>().await;
        });
        Blackhole {
            addr,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Its `index.php`.
    pub fn index_url(&self) -> String {
        format!("http://{}/w/index.php", self.addr)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address where nothing listens: a wiki that is down.
pub async fn down_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[test]
fn the_fakes_own_signing_matches_rfc5849s_example() {
    // RFC 5849 §3.4.1.1, with the example's parameters (c2&a3=2+q decoded).
    let params: Vec<(String, String)> = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
        ("c2", ""),
        ("a3", "2 q"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let base = base_string("POST", "http://example.com/request", &params);
    assert_eq!(
        base,
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
    );
}
