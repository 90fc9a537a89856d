//! The bodies of the fuzz targets. Each takes arbitrary bytes, feeds them to
//! a parser of untrusted input exactly as the service does, and panics when
//! a property fails (a panic inside the service is a failure too).
//!
//! Compiled twice: by cargo-fuzz (`fuzz_targets/*.rs`, one line each) and by
//! the test suite (`tests/journeys/fuzz_replay.rs`), which replays every
//! committed input in `tests/fuzz/seeds/<target>/` and
//! `tests/fuzz/regressions/<target>/` through [`TARGETS`] on every
//! `cargo test`.
//!
//! Structured inputs are split into fields at NUL bytes. The targets that run
//! the whole app point it at a stub wiki on 127.0.0.1 that refuses every
//! call at once: nothing here ever leaves loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hello_oauth::config::{Config, OAuthConsumer, SessionKey};
use hello_oauth::fuzzing as service;
use hello_oauth::mediawiki::{AccessToken, percent_decode};
use hello_oauth::web::session::{AuthState, LoggedIn, Session, UserSummary};
use hello_oauth::web::{AppState, security::CONTENT_SECURITY_POLICY};
use hmac::{Hmac, Mac as _};
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use poem::web::cookie::{Cookie, CookieJar, CookieKey};
use poem::{Endpoint, EndpointExt as _, IntoEndpoint as _, IntoResponse as _, Middleware as _};
use poem::{Request, Response};
use url::Url;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/<name>.rs`.
pub const TARGETS: &[(&str, Target)] = &[
    ("safe_next", safe_next),
    ("token_answer", token_answer),
    ("identity_jwt", identity_jwt),
    ("identity_claims", identity_claims),
    ("session_data", session_data),
    ("session_cookie", session_cookie),
    ("request_headers", request_headers),
    ("http_request", http_request),
];

/// The clock of the JWT and session targets: fixed, so every input
/// replays the same way.
pub const NOW: u64 = 1_700_000_000;
/// The consumer secret that identities are checked with.
pub const JWT_SECRET: &[u8] = b"fuzz-consumer-secret-0123456789";
const AUDIENCE: &str = "fuzz-consumer";
const WIKI_HOST: &str = "wiki.example";
const NONCE: &str = "n0nce-of-the-identify-request";
const SESSION_SECRET: &str = "fuzz-session-key-0123456789-abcdefghijklmnopqrstuvwxyz";
const CSRF: &str = "fuzz-csrf-token";

fn fields(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == 0)
}

fn text(bytes: Option<&[u8]>) -> Option<&str> {
    bytes.and_then(|b| std::str::from_utf8(b).ok())
}

// ---------------------------------------------------------------------------
// ?next= after login: the open-redirect property.

/// `safe_next` on the raw input and on every value of the input read as a
/// query string (what `/login?next=` and the Referer path go through).
pub fn safe_next(data: &[u8]) {
    if let Ok(raw) = std::str::from_utf8(data) {
        check_next(raw);
    }
    for (_, value) in url::form_urlencoded::parse(data) {
        check_next(&value);
    }
}

fn check_next(input: &str) {
    let Some(next) = service::safe_next(input) else {
        return;
    };
    let fail = |why: &str| -> ! { panic!("safe_next({input:?}) = {next:?}: {why}") };
    if !next.starts_with('/') {
        fail("not a path");
    }
    if next.starts_with("//") || next.starts_with("/\\") {
        fail("a protocol-relative URL: it leads to another host");
    }
    if next.contains('\\') || next.chars().any(|c| c.is_control() || c.is_whitespace()) {
        fail("a character that browsers strip or read as /");
    }
    let base = Url::parse("https://tool.example/a/b?c=d").unwrap();
    match base.join(&next) {
        Ok(u)
            if u.scheme() == "https"
                && u.host_str() == Some("tool.example")
                && u.port().is_none()
                && u.username().is_empty()
                && u.password().is_none() => {}
        other => fail(&format!("a browser resolves it to {other:?}")),
    }
    // Decoded by a proxy, a framework or a careless page, up to three
    // times (as far as safe_next looks), it still does not lead away.
    let mut decoded = next.clone();
    for _ in 0..3 {
        decoded = percent_decode(&decoded);
        if decoded.starts_with("//") || decoded.starts_with("/\\") || decoded.contains('\\') {
            fail(&format!("percent-decoded it is {decoded:?}"));
        }
    }
}

// ---------------------------------------------------------------------------
// The wiki's answers to initiate and token.

fn valid_token_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#039;")
}

fn check_wiki_error(err: &service::WikiError, body: &str) {
    if let service::WikiError::Wiki { message, .. } = err {
        assert!(
            message.chars().count() <= 501,
            "an unbounded message from {body:?}"
        );
    }
}

/// The input as an answer body (the wiki's error forms are looked for
/// first, then the token, as the client does); then the input's first three
/// fields as a token, a secret and a message, in each of the wiki's answer
/// forms, which must all be understood exactly.
pub fn token_answer(data: &[u8]) {
    if let Ok(body) = std::str::from_utf8(data) {
        match service::WikiError::from_body(body) {
            Some(err) => check_wiki_error(&err, body),
            None => {
                if let Ok((key, secret)) = service::parse_token(body) {
                    assert!(
                        valid_token_part(&key) && valid_token_part(&secret),
                        "{body:?} gave {key:?}"
                    );
                }
            }
        }
    }

    let mut f = fields(data);
    let (Some(key), Some(secret), Some(message)) = (text(f.next()), text(f.next()), text(f.next()))
    else {
        return;
    };
    let expected = (valid_token_part(key) && valid_token_part(secret))
        .then(|| (key.to_owned(), secret.to_owned()));
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let form = format!(
        "oauth_token={}&oauth_token_secret={}&oauth_callback_confirmed=true",
        encode(key),
        encode(secret)
    );
    let json = serde_json::json!({
        "oauth_token": key, "oauth_token_secret": secret, "key": key, "secret": secret,
    })
    .to_string();
    for body in [form, json] {
        assert!(
            service::WikiError::from_body(&body).is_none(),
            "{body:?} taken for an error"
        );
        assert_eq!(service::parse_token(&body).ok(), expected, "{body:?}");
    }

    let text_error = format!("Error: {}", html_escape(message));
    let json_error = serde_json::json!({"error": key, "message": message}).to_string();
    let api_error = serde_json::json!({"error": {"code": key, "info": message}}).to_string();
    for (body, code) in [
        (text_error, None),
        (json_error, Some(key)),
        (api_error, Some(key)),
    ] {
        match service::WikiError::from_body(&body) {
            Some(err @ service::WikiError::Wiki { .. }) => {
                check_wiki_error(&err, &body);
                if let (Some(code), service::WikiError::Wiki { code: got, .. }) = (code, &err) {
                    assert_eq!(got.as_deref(), Some(code), "{body:?}");
                }
            }
            other => panic!("{body:?} not recognised as the wiki's error: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The identity JWT.

fn expected() -> service::Expected<'static> {
    service::Expected {
        audience: AUDIENCE,
        issuer_host: WIKI_HOST,
        nonce: NONCE,
        now: NOW,
    }
}

/// The input as the body of an identify answer: whatever it is, it was not
/// signed with the consumer secret, so it must never verify.
pub fn identity_jwt(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if service::WikiError::from_body(body).is_some() {
        return;
    }
    let token = body.trim().trim_matches('"');
    let verified = service::verify_identity(token, JWT_SECRET, &expected());
    assert!(
        verified.is_err(),
        "an identity not signed with the consumer secret verified: {body:?} -> {verified:?}"
    );
}

fn sign(header: &[u8], claims: &[u8], key: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signed = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(signed.as_bytes());
    format!("{signed}.{}", b64.encode(mac.finalize().into_bytes()))
}

fn printable(bytes: Option<&[u8]>) -> Option<Vec<u8>> {
    bytes
        .filter(|b| !b.is_empty() && b.iter().all(|c| c.is_ascii_graphic()))
        .map(<[u8]>::to_vec)
}

/// Fields: JWT header, claims, the key it is signed with, another key.
/// Signed with the consumer secret, it verifies only if every check holds
/// (checked here independently); signed with any other key, never.
pub fn identity_claims(data: &[u8]) {
    let mut f = fields(data);
    let header = f.next().unwrap_or_default();
    let claims = f.next().unwrap_or_default();
    let secret = printable(f.next()).unwrap_or_else(|| JWT_SECRET.to_vec());
    let mut other = printable(f.next()).unwrap_or_else(|| b"another-secret".to_vec());
    if other == secret {
        other.push(b'x');
    }
    let token = sign(header, claims, &secret);
    if let Ok(identity) = service::verify_identity(&token, &secret, &expected()) {
        let fail = |why: &str| -> ! {
            panic!(
                "accepted an identity whose {why}: header {:?} claims {:?}",
                String::from_utf8_lossy(header),
                String::from_utf8_lossy(claims)
            )
        };
        // The service reads its claims leniently (a field it ignores may
        // hold bytes that are not UTF-8); so does this check.
        let header: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(header))
            .unwrap_or_else(|_| fail("header is not JSON"));
        if header["alg"] != "HS256" {
            fail("algorithm is not HS256");
        }
        let claims: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(claims))
            .unwrap_or_else(|_| fail("claims are not JSON"));
        let aud_ok = match &claims["aud"] {
            serde_json::Value::String(a) => a == AUDIENCE,
            serde_json::Value::Array(all) => all.iter().any(|a| a == AUDIENCE),
            _ => false,
        };
        if !aud_ok {
            fail("audience is not ours");
        }
        let iss_host = claims["iss"]
            .as_str()
            .and_then(|i| Url::parse(i).ok())
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        if iss_host.as_deref() != Some(WIKI_HOST) {
            fail("issuer is another wiki");
        }
        let now = NOW as f64;
        let iat = claims["iat"]
            .as_f64()
            .unwrap_or_else(|| fail("iat is missing"));
        if iat > now + 10.0 || iat + 310.0 < now {
            fail("iat is out of the window");
        }
        let exp = claims["exp"]
            .as_f64()
            .unwrap_or_else(|| fail("exp is missing"));
        if exp + 10.0 <= now {
            fail("exp has passed");
        }
        if claims["nonce"] != NONCE {
            fail("nonce is not ours");
        }
        if claims["username"].as_str() != Some(identity.username.as_str())
            || identity.username.trim().is_empty()
        {
            fail("user name is not the one claimed");
        }
    }
    let forged = service::verify_identity(&token, &other, &expected());
    assert!(
        forged.is_err(),
        "verified with a key it was not signed with: {forged:?}"
    );
}

// ---------------------------------------------------------------------------
// The session: its JSON, and the cookie through the real middleware.

/// The input as the session's JSON (what a decrypted cookie holds): it
/// round-trips, expires and shrinks without panicking, and shrinking never
/// drops a login.
pub fn session_data(data: &[u8]) {
    let Ok(session) = serde_json::from_slice::<service::SessionData>(data) else {
        return;
    };
    let json = serde_json::to_string(&session).expect("a session serialises");
    let back: service::SessionData = serde_json::from_str(&json).expect("its JSON reads back");
    assert_eq!(
        back, session,
        "the session changed through its JSON: {json}"
    );

    let mut expired = session.clone();
    expired.expire(NOW);
    let _ = expired.take_pending("fuzz", NOW);

    let login = session.logged_in().cloned();
    let mut shrunk = session;
    let mut steps = 0u32;
    while shrunk.shrink() {
        steps += 1;
        assert!(steps < 1_000_000, "shrinking does not end");
    }
    if let Some(login) = login {
        let kept = shrunk.logged_in().expect("shrinking dropped the login");
        assert_eq!(kept.token, login.token);
        assert_eq!(kept.user.username, login.user.username);
    }
}

/// First byte even: the rest is a raw `Cookie` header, which must never
/// give a session. Odd: the rest is encrypted with the service's key as the
/// session cookie (as if from an older or newer release), and the pages
/// that read the session are fetched with it.
pub fn session_cookie(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    if mode % 2 == 0 {
        let Ok(value) = HeaderValue::from_bytes(rest) else {
            return;
        };
        let req = Request::builder()
            .uri(Uri::from_static("/"))
            .header(header::COOKIE, value)
            .header(header::ACCEPT, "text/html")
            .finish();
        let sent = Sent::of(&req);
        let got = send(req);
        got.check(&sent);
        assert!(
            got.body_text().contains("<h1>Hello World!</h1>"),
            "a cookie not made with the key gave a session: {:?}",
            String::from_utf8_lossy(rest)
        );
        return;
    }
    let Ok(json) = std::str::from_utf8(rest) else {
        return;
    };
    let cookie = h.encrypt(json);
    let mut paths = vec!["/".to_owned(), "/logout".to_owned(), "/profile".to_owned()];
    if let Ok(data) = serde_json::from_str::<service::SessionData>(json)
        && let AuthState::Pending { logins } = &data.auth
        && let Some(first) = logins.first()
    {
        let token: String =
            url::form_urlencoded::byte_serialize(first.token.key().as_bytes()).collect();
        paths.push(format!(
            "/oauth-callback?oauth_token={token}&oauth_verifier=v"
        ));
    }
    for path in paths {
        let Ok(uri) = Uri::try_from(path.as_str()) else {
            continue;
        };
        let req = Request::builder()
            .uri(uri)
            .header(header::COOKIE, cookie.as_str())
            .header(header::ACCEPT, "text/html")
            .finish();
        let sent = Sent::of(&req);
        send(req).check(&sent);
    }
}

// ---------------------------------------------------------------------------
// Whole requests through the whole app.

/// Fields: a selector, X-Forwarded-Proto, X-Request-Id, Referer, Host,
/// Accept. `is_https` must agree with the rule, and every response must
/// carry the security headers, HSTS exactly behind https, and a request id
/// that is the incoming one when it is short and printable and a fresh one
/// otherwise.
pub fn request_headers(data: &[u8]) {
    let mut f = fields(data);
    let choice = f.next().and_then(|s| s.first().copied()).unwrap_or(0);
    let mut builder = Request::builder();
    let path = match choice % 4 {
        0 => "/healthz",
        1 => "/",
        // Logged in, /login goes back to the Referer's page if it is ours.
        2 => {
            builder = builder.header(header::COOKIE, harness().logged_in.as_str());
            "/login"
        }
        _ => "/no-such-page",
    };
    for name in [
        "x-forwarded-proto",
        "x-request-id",
        "referer",
        "host",
        "accept",
    ] {
        if let Some(value) = f.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            builder = builder.header(name, value);
        }
    }
    let req = builder.uri(Uri::from_static(path)).finish();
    let sent = Sent::of(&req);
    assert_eq!(
        service::is_https(&req),
        sent.https,
        "is_https disagrees with X-Forwarded-Proto {:?}",
        req.headers().get("x-forwarded-proto")
    );
    send(req).check(&sent);
}

/// Fields: a selector (method, cookie), the request target, a raw cookie,
/// a body, a Content-Type, X-Forwarded-Proto, X-Request-Id, Referer. No
/// request may get a 500, lose a security header, or be redirected off the
/// site; no page may carry a script.
pub fn http_request(data: &[u8]) {
    let mut f = fields(data);
    let selector = f.next().unwrap_or_default();
    let pick = |i: usize| selector.get(i).copied().unwrap_or(0);
    let method = [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ][usize::from(pick(0)) % 6]
        .clone();
    let target = f.next().filter(|t| !t.is_empty()).unwrap_or(b"/");
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    if uri.path().is_empty() || uri.authority().is_some() && uri.scheme().is_none() {
        return;
    }
    let raw_cookie = f.next();
    let mut builder = Request::builder().method(method).uri(uri);
    match pick(1) % 3 {
        1 => builder = builder.header(header::COOKIE, harness().logged_in.as_str()),
        2 => {
            if let Some(v) = raw_cookie.and_then(|c| HeaderValue::from_bytes(c).ok()) {
                builder = builder.header(header::COOKIE, v);
            }
        }
        _ => {}
    }
    let body = f.next().unwrap_or_default().to_vec();
    for name in [
        "content-type",
        "x-forwarded-proto",
        "x-request-id",
        "referer",
    ] {
        if let Some(value) = f.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            builder = builder.header(name, value);
        }
    }
    if pick(2) % 2 == 1 {
        builder = builder.header(header::ACCEPT, "text/html");
    }
    let req = builder.body(body);
    let sent = Sent::of(&req);
    send(req).check(&sent);
}

/// What the checks need to know about a request that was sent.
struct Sent {
    what: String,
    https: bool,
    request_id: Option<String>,
}

impl Sent {
    fn of(req: &Request) -> Sent {
        let forwarded = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok());
        let https = match forwarded {
            Some(v) => v
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https"),
            None => req.uri().scheme_str() == Some("https"),
        };
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| {
                !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(str::to_owned);
        Sent {
            what: format!("{} {} {:?}", req.method(), req.uri(), req.headers()),
            https,
            request_id,
        }
    }
}

/// A response, read whole.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn check(&self, sent: &Sent) {
        let what = &sent.what;
        let status = self.status;
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status} for {what}: {}",
            self.body_text()
        );
        let h = &self.headers;
        assert!(
            h.contains_key(header::CONTENT_SECURITY_POLICY),
            "no CSP for {what}"
        );
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{what}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
        assert_eq!(h[header::REFERRER_POLICY], "same-origin", "{what}");
        assert_eq!(
            h.contains_key(header::STRICT_TRANSPORT_SECURITY),
            sent.https,
            "HSTS must be sent exactly behind https: {what}"
        );
        let id = h
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no request id for {what}"));
        match &sent.request_id {
            Some(incoming) => assert_eq!(id, incoming, "{what}"),
            None => assert!(
                id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id:?} is not a fresh id, for {what}"
            ),
        }
        if let Some(location) = h.get(header::LOCATION) {
            let location = location.to_str().unwrap_or_else(|_| panic!("{what}"));
            assert!(
                location.starts_with('/')
                    && !location.starts_with("//")
                    && !location.starts_with("/\\"),
                "redirected off the site to {location:?}, for {what}"
            );
        }
        // A page (JSON may quote the input: it is never rendered).
        let html = h
            .get(header::CONTENT_TYPE)
            .and_then(|t| t.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html"));
        if html
            && h.get(header::CONTENT_SECURITY_POLICY)
                .is_some_and(|csp| csp == CONTENT_SECURITY_POLICY)
        {
            let body = self.body_text().to_ascii_lowercase();
            assert!(
                !body.contains("<script"),
                "a script in the page for {what}: {body}"
            );
        }
    }
}

fn send(req: Request) -> Got {
    let h = harness();
    h.runtime.block_on(async {
        let resp = match h.app.call(req).await {
            Ok(resp) => resp,
            Err(err) => err.into_response(),
        };
        let (parts, body) = resp.into_parts();
        let body = body.into_vec().await.unwrap_or_default();
        Got {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
}

/// The whole app, in process, with a known session key and a logged-in
/// session cookie made with it.
struct Harness {
    runtime: tokio::runtime::Runtime,
    app: BoxEndpoint<'static, Response>,
    key: CookieKey,
    logged_in: String,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Harness")
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(Harness::start)
}

impl Harness {
    fn start() -> Harness {
        hello_oauth::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = Config::for_tests();
        config.mwuri = Url::parse(&stub_wiki()).unwrap();
        config.consumer = Some(OAuthConsumer {
            key: AUDIENCE.into(),
            secret: String::from_utf8(JWT_SECRET.to_vec()).unwrap().into(),
        });
        config.session_key = SessionKey::Configured(SESSION_SECRET.to_owned().into());
        config.wiki_timeout = Duration::from_secs(2);
        let app = runtime.block_on(async {
            let state = Arc::new(AppState {
                templates: hello_oauth::web::templates::Templates::new().unwrap(),
                started: Instant::now(),
                http: hello_oauth::http::client(&config).unwrap(),
                metrics: hello_oauth::telemetry::metrics::Metrics::new("fuzz").unwrap(),
                wiki_probe: Arc::new(hello_oauth::readiness::WikiProbe::new(None)),
                config,
            });
            hello_oauth::web::app(state)
                .unwrap()
                .into_endpoint()
                .map_to_response()
                .boxed()
        });
        let logged_in = runtime.block_on(logged_in_cookie());
        Harness {
            runtime,
            app,
            key: CookieKey::derive_from(SESSION_SECRET.as_bytes()),
            logged_in,
        }
    }

    /// `value` as the session cookie, encrypted with the service's key.
    fn encrypt(&self, value: &str) -> String {
        let jar = CookieJar::default();
        jar.private_with_key(&self.key)
            .add(Cookie::new_with_str(service::COOKIE_NAME, value));
        let cookie = jar.get(service::COOKIE_NAME).unwrap();
        format!("{}={}", service::COOKIE_NAME, cookie.value_str())
    }
}

/// A `Cookie` header holding a logged-in session, made by the service's
/// own session middleware.
async fn logged_in_cookie() -> String {
    let secret = SESSION_SECRET.to_owned().into();
    let writer = service::SessionMiddleware::new(&secret)
        .unwrap()
        .transform(poem::endpoint::make(|req: Request| async move {
            let session = req.extensions().get::<Session>().cloned().unwrap();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            session.update(|d| {
                d.auth = AuthState::LoggedIn(LoggedIn {
                    token: AccessToken::new("fuzz-access-token", "fuzz-access-secret"),
                    user: UserSummary {
                        username: "Fuzz User".into(),
                        sub: "1".into(),
                        editcount: 1,
                        groups: Vec::new(),
                        blocked: false,
                        grants: Vec::new(),
                    },
                    csrf: CSRF.into(),
                    since: now,
                });
            });
            "logged in"
        }));
    let resp = writer
        .call(Request::builder().finish())
        .await
        .unwrap()
        .into_response();
    let set_cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// A wiki on loopback that refuses every call at once, the way the real
/// one refuses an unknown token (HTTP 200, `Error: ...`).
fn stub_wiki() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut chunk = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let body =
                "Error: OAuth token not found, E004 (the fuzzing stub wiki refuses everything)";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/w/index.php")
}
