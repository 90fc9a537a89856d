//! No secret leaves the service. The real executable runs with
//! recognisable secrets (consumer secret, session key, metrics token) and
//! logs at `debug`, against a fake wiki whose request-token secrets,
//! access-token secrets and verifiers are recognisable too, and full of
//! characters that every encoding changes. The test goes through the whole
//! login and every failure path it can trigger, fetches every page and JSON
//! body (`/api/v1/me`, `/api/v1/userinfo` included), `/metrics`,
//! `/openapi.json` and `/readyz`, captures stdout and
//! stderr, and looks for every secret in every form it could take there:
//! raw, percent-encoded (once or twice), JSON- or HTML-escaped (which all
//! keep the secret's marker), or base64 (standard or URL-safe, at any
//! alignment). Response headers are searched too, so the session cookie
//! must not carry a secret in plain text.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::fake_wiki::{CONSUMER_KEY, CONSUMER_SECRET, FakeWiki, JwtFault, Misbehaviour, Step};

const BIN: &str = env!("CARGO_BIN_EXE_hello-oauth");
const MARKER: &str = "LEAKCANARY";
const SESSION_KEY: &str = "LEAKCANARY-session-key-Zq3vN8xR1pL6tY0wK4sD9hF2jG7bC5mA";
const METRICS_TOKEN: &str = "LEAKCANARY-metrics-token-0123456789";

/// A secret and the patterns that give it away.
struct Secret {
    name: String,
    marker: String,
    patterns: Vec<String>,
}

impl Secret {
    /// `marker` is a part of the secret that percent-encoding, JSON and
    /// HTML escaping leave as it is; base64 is looked for at every
    /// alignment, in both alphabets.
    fn new(name: &str, value: &str, marker: &str) -> Secret {
        assert!(value.contains(marker));
        let mut patterns = vec![value.to_owned(), marker.to_owned()];
        let bytes = value.as_bytes();
        for skip in 0..3 {
            let rest = &bytes[skip..];
            let whole = rest.len() / 3 * 3;
            for engine in [
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                patterns.push(engine.encode(&rest[..whole]));
            }
        }
        Secret {
            name: name.to_owned(),
            marker: marker.to_owned(),
            patterns,
        }
    }

    fn found_in(&self, text: &str) -> Option<&str> {
        self.patterns
            .iter()
            .find(|p| text.contains(p.as_str()))
            .map(String::as_str)
    }
}

/// Every place where `secrets` show up in `outputs` (secrets that share a
/// marker are named once per place by their marker).
fn leaks(secrets: &[Secret], outputs: &[(String, String)]) -> Vec<String> {
    let mut found = std::collections::BTreeSet::new();
    for (place, text) in outputs {
        for secret in secrets {
            if let Some(pattern) = secret.found_in(text) {
                let name = if pattern == secret.marker {
                    format!("{:?}", secret.marker)
                } else {
                    secret.name.clone()
                };
                let at = text.find(pattern).unwrap_or(0);
                let from = text[..at]
                    .char_indices()
                    .rev()
                    .nth(80)
                    .map_or(0, |(i, _)| i);
                let excerpt: String = text[from..].chars().take(240).collect();
                found.insert(format!("{name} in {place}: …{excerpt}…"));
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn the_leak_scanner_recognises_a_secret_in_every_form() {
    let value = format!("{MARKER}-verifier+/=&\"<x>%0123abcd");
    let secret = Secret::new("verifier", &value, &format!("{MARKER}-verifier"));
    let percent = crate::fake_wiki::rfc3986(&value);
    let forms = [
        value.clone(),
        percent.clone(),
        crate::fake_wiki::rfc3986(&percent),
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        serde_json::to_string(&value).unwrap(),
        value.replace('&', "&amp;").replace('<', "&lt;"),
    ];
    for form in forms {
        let text = format!("before {form} after");
        assert!(secret.found_in(&text).is_some(), "{form}");
    }
    for prefix in ["", "a", "ab", "abc"] {
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let text = engine.encode(format!("{prefix}{{\"secret\":\"{value}\"}}"));
            assert!(secret.found_in(&text).is_some(), "base64 after {prefix:?}");
        }
    }
    assert!(secret.found_in("nothing to see here").is_none());
}

/// A browser that keeps cookies, and everything the service said to it.
struct Browser {
    client: reqwest::Client,
    base: String,
    outputs: Vec<(String, String)>,
}

impl Browser {
    async fn send(&mut self, what: &str, request: reqwest::RequestBuilder) -> reqwest::Response {
        let resp = request.send().await.unwrap();
        let mut head = format!("{:?} {}\n", resp.version(), resp.status());
        for (name, value) in resp.headers() {
            head.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        self.outputs.push((format!("the headers of {what}"), head));
        resp
    }

    /// Sends, keeps the whole answer, and returns it with its status and
    /// `Location`.
    async fn fetch(
        &mut self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> (u16, String, String) {
        let resp = self.send(what, request).await;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned();
        self.outputs
            .push((format!("the body of {what}"), body.clone()));
        (status, location, body)
    }

    async fn get(&mut self, path: &str) -> (u16, String, String) {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("accept", "text/html");
        self.fetch(&format!("GET {path}"), request).await
    }

    /// Logs in as far as it goes; returns the home page afterwards.
    async fn log_in(&mut self, wiki: &FakeWiki) -> String {
        let (_, location, _) = self.get("/login").await;
        if location.starts_with("http") {
            let callback = wiki.approve(&location).await;
            let request = self.client.get(&callback);
            self.fetch("the callback", request).await;
        }
        self.get("/").await.2
    }

    async fn log_out(&mut self) {
        let home = self.get("/").await.2;
        let marker = "name=\"csrf\" value=\"";
        if let Some(start) = home.find(marker).map(|i| i + marker.len()) {
            let csrf = home[start..start + home[start..].find('"').unwrap()].to_owned();
            let request = self
                .client
                .post(format!("{}/logout", self.base))
                .form(&[("csrf", csrf)]);
            self.fetch("POST /logout", request).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_page_a_header_a_cookie_or_a_log_line() {
    let wiki = FakeWiki::start().await;
    wiki.mark_secrets(MARKER);
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .envs([
            ("PORT", "0"),
            ("TOOL_BIND_ADDRESS", "127.0.0.1"),
            ("TOOL_OAUTH_MWURI", wiki.index_url().as_str()),
            ("TOOL_OAUTH_CONSUMER_KEY", CONSUMER_KEY),
            ("TOOL_OAUTH_CONSUMER_SECRET", CONSUMER_SECRET),
            ("TOOL_SESSION_KEY", SESSION_KEY),
            ("TOOL_METRICS_TOKEN", METRICS_TOKEN),
            ("TOOL_WIKI_TIMEOUT_SECONDS", "1"),
            ("TOOL_READINESS_INTERVAL_SECONDS", "1"),
            ("TOOL_MAX_BODY_BYTES", "1024"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let errors = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the service logs its start-up");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["message"] == "hello-oauth started" {
            break json["address"].as_str().unwrap().to_owned();
        }
    };
    let base = format!("http://{addr}");
    wiki.register_callback(&format!("{base}/oauth-callback"), false);
    let mut b = Browser {
        client: crate::helpers::client_with(Default::default()),
        base: base.clone(),
        outputs: Vec::new(),
    };

    // Every page and document, before and after a login.
    let pages = [
        "/",
        "/api/v1/me",
        "/api/v1/userinfo",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/api/docs",
        "/static/style.css",
        "/metrics",
        "/no-such-page",
    ];
    for path in pages {
        b.get(path).await;
    }
    // A wrong metrics token is refused without echoing anything.
    let request = b
        .client
        .get(format!("{base}/metrics"))
        .bearer_auth("LEAKCANARY-wrong-token-0123456789");
    b.fetch("/metrics with a wrong token", request).await;

    // The whole journey: log in, look around, log out.
    assert!(b.log_in(&wiki).await.contains("Hello Example User!"));
    for path in [
        "/",
        "/profile",
        "/api/v1/me",
        "/api/v1/userinfo",
        "/logout",
        "/login",
    ] {
        b.get(path).await;
    }
    // The JSON API as a script calls it.
    for path in ["/api/v1/me", "/api/v1/userinfo"] {
        let request = b
            .client
            .get(format!("{base}{path}"))
            .header("accept", "application/json");
        b.fetch(&format!("GET {path} (JSON)"), request).await;
    }
    let metrics = b
        .client
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN);
    let (status, _, _) = b.fetch("/metrics with the token", metrics).await;
    assert_eq!(status, 200);
    // A logout form from elsewhere, then a body too large, then the real one.
    let forged = b
        .client
        .post(format!("{base}/logout"))
        .form(&[("csrf", "forged")]);
    assert_eq!(b.fetch("a forged logout", forged).await.0, 403);
    let big = b
        .client
        .post(format!("{base}/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 4096]);
    assert_eq!(b.fetch("an oversized logout", big).await.0, 413);
    let headers = b
        .client
        .get(format!("{base}/"))
        .header("x-junk", "j".repeat(40_000));
    assert_eq!(b.fetch("oversized headers", headers).await.0, 431);
    b.log_out().await;

    // The profile when the wiki fails, and when the grant was withdrawn.
    b.log_in(&wiki).await;
    for how in [
        Misbehaviour::Garbage,
        Misbehaviour::Hang,
        Misbehaviour::ServerError,
        Misbehaviour::Truncated,
    ] {
        wiki.misbehave(Step::Api, how);
        b.get("/profile").await;
        b.get("/api/v1/userinfo").await;
    }
    wiki.behave();
    wiki.revoke_all();
    b.get("/profile").await;
    b.get("/api/v1/userinfo").await;
    b.log_out().await;

    // Every way a login can fail at the wiki.
    let faults = [
        (
            Step::Initiate,
            Misbehaviour::TextError("Invalid consumer".into()),
        ),
        (Step::Initiate, Misbehaviour::ServerError),
        (Step::Initiate, Misbehaviour::Truncated),
        (Step::Token, Misbehaviour::Hang),
        (Step::Token, Misbehaviour::Garbage),
        (Step::Token, Misbehaviour::Binary),
        (Step::Token, Misbehaviour::Redirect),
        (
            Step::Token,
            Misbehaviour::JsonError("mwoauthdatastore-bad-verifier".into(), "Bad".into()),
        ),
        (Step::Token, Misbehaviour::Huge(8 << 20)),
        (Step::Identify, Misbehaviour::Trickle),
        (Step::Identify, Misbehaviour::Garbage),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::BadSignature)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::AlgNone)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::WrongAudience)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::WrongIssuer)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::WrongNonce)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::StaleIat)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::FutureIat)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::Expired)),
        (Step::Identify, Misbehaviour::Jwt(JwtFault::Suppressed)),
    ];
    for (step, how) in faults {
        wiki.behave();
        wiki.misbehave(step, how);
        let home = b.log_in(&wiki).await;
        assert!(!home.contains("Hello Example User!"), "{home}");
    }
    wiki.behave();

    // The wiki refuses the token step's signature, echoing its base string.
    let (_, location, _) = b.get("/login").await;
    let callback = wiki.approve(&location).await;
    wiki.refuse_signatures(true);
    let request = b.client.get(&callback);
    b.fetch("the callback, signature refused", request).await;
    b.get("/").await;
    wiki.refuse_signatures(false);

    // A forged verifier, a stranger replaying a finished callback, a
    // callback for a login never started, a user who declined, a login
    // that took too long, and a clock five minutes off.
    let (_, location, _) = b.get("/login").await;
    let callback = wiki.approve(&location).await;
    let forged = callback.replace("oauth_verifier=", "oauth_verifier=0");
    b.fetch("a forged verifier", b.client.get(&forged)).await;
    b.get("/").await;
    let (_, location, _) = b.get("/login").await;
    let callback = wiki.approve(&location).await;
    b.fetch("the callback", b.client.get(&callback)).await;
    let stranger = crate::helpers::client_with(Default::default());
    b.fetch("a replayed callback", stranger.get(&callback))
        .await;
    b.fetch("the callback again", b.client.get(&callback)).await;
    b.log_out().await;
    b.get("/oauth-callback?oauth_token=nope&oauth_verifier=nope")
        .await;
    let (_, location, _) = b.get("/login").await;
    let token = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "oauth_token")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    b.get(&format!(
        "/oauth-callback?oauth_token={token}&oauth_problem=user_refused"
    ))
    .await;
    let (_, location, _) = b.get("/login").await;
    let callback = wiki.approve(&location).await;
    wiki.age_request_tokens(601);
    b.fetch("a late callback", b.client.get(&callback)).await;
    wiki.advance_clock(400);
    b.log_in(&wiki).await;
    wiki.advance_clock(-400);
    // A tampered cookie.
    let tampered = b
        .client
        .get(format!("{base}/"))
        .header("cookie", "hello_oauth_session=AAAAtampered");
    b.fetch("a tampered cookie", tampered).await;
    // The readiness probe has talked to the wiki by now.
    b.get("/readyz").await;
    b.get("/metrics").await;

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let stdout = reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert!(
        stdout.iter().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "the service logged at debug"
    );
    let mut outputs = b.outputs;
    outputs.extend(
        stdout
            .into_iter()
            .enumerate()
            .map(|(i, l)| (format!("stdout line {}", i + 1), l)),
    );
    outputs.push(("stderr".into(), stderr));

    let mut secrets = vec![
        Secret::new("the consumer secret", CONSUMER_SECRET, CONSUMER_SECRET),
        Secret::new("the session key", SESSION_KEY, SESSION_KEY),
        Secret::new("the metrics token", METRICS_TOKEN, METRICS_TOKEN),
    ];
    let issued = wiki.secrets_issued();
    for kind in ["request-secret", "access-secret", "verifier"] {
        let marker = format!("{MARKER}-{kind}");
        let of_kind: Vec<_> = issued.iter().filter(|s| s.starts_with(&marker)).collect();
        assert!(of_kind.len() >= 2, "the wiki issued {kind}s: {issued:?}");
        for (i, value) in of_kind.into_iter().enumerate() {
            secrets.push(Secret::new(&format!("{kind} {i}"), value, &marker));
        }
    }
    assert!(outputs.len() > 150, "{} outputs searched", outputs.len());
    let found = leaks(&secrets, &outputs);
    assert!(
        found.is_empty(),
        "{} leaks:\n{}",
        found.len(),
        found.join("\n")
    );
}
