//! What monitoring and operators see: liveness, readiness with a background
//! probe of the wiki, and metrics as a Prometheus server scrapes them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::helpers::TestApp;

const METRICS_TOKEN: &str = "metrics-token-0123456789-SECRET";
const CONSUMER_SECRET: &str = "consumer-secret-do-not-show-ANYWHERE";

/// A stand-in for the wiki's `index.php` on loopback: it counts requests,
/// keeps their heads, and either answers every one with 400 (as the real
/// wiki answers an unsigned OAuth request) or never answers at all.
struct ProbeTarget {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProbeTarget {
    async fn start(answer: bool) -> ProbeTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, hd) = (hits.clone(), heads.clone());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let (h, hd) = (h.clone(), hd.clone());
                if !answer {
                    h.fetch_add(1, Ordering::SeqCst);
                    held.push(socket);
                    continue;
                }
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut len = 0;
                    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf[len..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => len += n,
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    hd.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..len]).into_owned());
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        ProbeTarget {
            addr,
            hits,
            heads,
            task,
        }
    }

    fn mwuri(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/w/index.php", self.addr)).unwrap()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for ProbeTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An app whose login is fully configured, probing `wiki` every `interval`.
async fn configured_app(wiki: &ProbeTarget, interval: Duration) -> TestApp {
    let mwuri = wiki.mwuri();
    TestApp::spawn_with(move |c| {
        c.mwuri = mwuri;
        c.readiness_interval = Some(interval);
        c.consumer = Some(hello_oauth::config::OAuthConsumer {
            key: "0123456789abcdef".into(),
            secret: SecretString::from(CONSUMER_SECRET),
        });
        c.session_key = hello_oauth::config::SessionKey::Configured(SecretString::from(
            hello_oauth::config::generate_session_key(),
        ));
    })
    .await
}

async fn get_json(app: &TestApp, path: &str) -> (u16, serde_json::Value) {
    let resp = app.client.get(app.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Waits until `f` holds, for up to five seconds.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- liveness

#[tokio::test]
async fn healthz_says_ok_with_the_version_and_uptime() {
    let app = TestApp::spawn().await;

    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].as_u64().unwrap() < 60);
    app.stop().await;
}

#[tokio::test]
async fn head_healthz_answers_200_without_a_body() {
    let app = TestApp::spawn().await;

    let resp = app.client.head(app.url("/healthz")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn healthz_and_readyz_answer_at_once_while_the_wiki_hangs() {
    let wiki = ProbeTarget::start(false).await;
    let app = configured_app(&wiki, Duration::from_secs(3600)).await;
    eventually("the probe connected", async || wiki.hits() == 1).await;

    let start = Instant::now();
    let (health, _) = get_json(&app, "/healthz").await;
    let (ready, body) = get_json(&app, "/readyz").await;
    let took = start.elapsed();

    assert_eq!(health, 200, "a hanging wiki must not fail liveness");
    assert_eq!(ready, 503);
    assert_eq!(body["checks"]["wiki_reachable"]["status"], "fail");
    assert!(
        body["checks"]["wiki_reachable"]["detail"]
            .as_str()
            .unwrap()
            .contains("not finished"),
        "{body}"
    );
    assert!(took < Duration::from_millis(500), "took {took:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_method_on_healthz_is_405_with_an_allow_header() {
    let app = TestApp::spawn().await;

    let resp = app.client.delete(app.url("/healthz")).send().await.unwrap();

    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    app.stop().await;
}

// --------------------------------------------------------------- readiness

#[tokio::test]
async fn readyz_is_ready_when_login_is_configured_and_the_wiki_answers() {
    let wiki = ProbeTarget::start(true).await;
    let app = configured_app(&wiki, Duration::from_secs(3600)).await;

    eventually("the wiki check passes", async || {
        get_json(&app, "/readyz").await.0 == 200
    })
    .await;
    let (_, body) = get_json(&app, "/readyz").await;

    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["oauth_configured"]["status"], "pass");
    let wiki_check = &body["checks"]["wiki_reachable"];
    assert_eq!(wiki_check["status"], "pass");
    assert!(
        wiki_check["detail"].as_str().unwrap().contains("HTTP 400"),
        "{body}"
    );
    assert!(wiki_check["checked_seconds_ago"].as_f64().unwrap() < 60.0);
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_503_and_names_the_failing_checks() {
    // Nothing listens on the discard port: connection refused.
    let app = TestApp::spawn_with(|c| {
        c.mwuri = url::Url::parse("http://127.0.0.1:9/w/index.php").unwrap();
        c.readiness_interval = Some(Duration::from_secs(3600));
    })
    .await;

    eventually("the probe failed", async || {
        get_json(&app, "/readyz").await.1["checks"]["wiki_reachable"]["detail"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    })
    .await;
    let (status, body) = get_json(&app, "/readyz").await;

    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["oauth_configured"]["status"], "fail");
    assert!(
        body["checks"]["oauth_configured"]["detail"]
            .as_str()
            .unwrap()
            .contains("TOOL_OAUTH_CONSUMER_KEY")
    );
    assert_eq!(body["checks"]["wiki_reachable"]["status"], "fail");
    app.stop().await;
}

#[tokio::test]
async fn head_readyz_has_the_status_and_headers_of_get_without_a_body() {
    let app = TestApp::spawn().await;

    let resp = app.client.head(app.url("/readyz")).send().await.unwrap();

    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert!(resp.bytes().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn with_the_probe_turned_off_the_wiki_check_is_skipped() {
    let app = TestApp::spawn().await;

    let (_, body) = get_json(&app, "/readyz").await;

    assert_eq!(body["checks"]["wiki_reachable"]["status"], "skipped");
    app.stop().await;
}

#[tokio::test]
async fn the_wiki_is_probed_once_per_interval_however_often_readyz_is_asked() {
    let wiki = ProbeTarget::start(true).await;
    let app = configured_app(&wiki, Duration::from_secs(3600)).await;
    eventually("the first probe", async || wiki.hits() == 1).await;

    for _ in 0..50 {
        get_json(&app, "/readyz").await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(wiki.hits(), 1, "readyz must not probe the wiki itself");
    let head = wiki.heads.lock().unwrap()[0].clone();
    assert!(
        head.starts_with("GET /w/index.php?title=Special%3AOAuth%2Finitiate HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("user-agent: hello-oauth/"),
        "the probe identifies the tool: {head}"
    );
    assert!(!head.to_ascii_lowercase().contains("authorization"));
    app.stop().await;
}

#[tokio::test]
async fn the_probe_repeats_each_interval_and_stops_with_the_app() {
    let wiki = ProbeTarget::start(true).await;
    let app = configured_app(&wiki, Duration::from_millis(100)).await;

    eventually("three probes", async || wiki.hits() >= 3).await;
    app.stop().await;
    let after_stop = wiki.hits();
    tokio::time::sleep(Duration::from_millis(400)).await;

    assert_eq!(wiki.hits(), after_stop, "the probe task outlived the app");
}

// ----------------------------------------------------------------- metrics

/// One sample of a Prometheus text scrape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A strict parser for the Prometheus text format (0.0.4): comments,
/// `# TYPE` lines, samples with escaped label values. Panics on anything
/// malformed, and on a sample whose family has no `# TYPE`.
pub(crate) fn parse_scrape(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                let (start, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("open labels: {line}"));
                if c == '}' {
                    break start + 1;
                }
                if c == ',' {
                    continue;
                }
                let mut key = String::from(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(c @ ('\\' | '"')) => value.push(c),
                            other => panic!("bad escape {other:?} in {line}"),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => panic!("unterminated label value: {line}"),
                    }
                }
                assert!(
                    labels.insert(key, value).is_none(),
                    "duplicate label: {line}"
                );
            };
            rest = &body[end..];
        }
        let value = rest.trim();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE for {name}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (types, samples)
}

pub(crate) async fn scrape(app: &TestApp) -> (BTreeMap<String, String>, Vec<Sample>) {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse_scrape(&resp.text().await.unwrap())
}

pub(crate) fn find<'a>(
    samples: &'a [Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn series(samples: &[Sample]) -> BTreeSet<(String, BTreeMap<String, String>)> {
    samples
        .iter()
        .map(|s| (s.name.clone(), s.labels.clone()))
        .collect()
}

#[tokio::test]
async fn a_scrape_has_http_build_and_process_series_under_semantic_convention_names() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.client.get(app.url("/healthz")).send().await.unwrap();
    }
    app.client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();

    let (types, samples) = scrape(&app).await;

    assert_eq!(types["http_server_request_duration_seconds"], "histogram");
    assert_eq!(types["http_server_active_requests"], "gauge");
    assert_eq!(types["hello_oauth_login_started_total"], "counter");
    assert_eq!(types["hello_oauth_build_info"], "gauge");
    assert_eq!(types["process_cpu_time_seconds_total"], "counter");
    assert_eq!(types["hello_oauth_log_lines_dropped_total"], "counter");
    let healthz = [
        ("http_request_method", "GET"),
        ("http_route", "/healthz"),
        ("http_response_status_code", "200"),
    ];
    let count = find(
        &samples,
        "http_server_request_duration_seconds_count",
        &healthz,
    );
    assert_eq!(count.len(), 1, "{samples:#?}");
    assert_eq!(count[0].value, 3.0);
    // The HTTP semantic conventions' attributes and the scope's, no more:
    // every extra label is hashed on every request and multiplies series.
    let names: Vec<&str> = count[0].labels.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "http_request_method",
            "http_response_status_code",
            "http_route",
            "otel_scope_name",
            "otel_scope_version"
        ]
    );
    let inf = find(
        &samples,
        "http_server_request_duration_seconds_bucket",
        &[("http_route", "/healthz"), ("le", "+Inf")],
    );
    assert_eq!(inf[0].value, 3.0);
    let unmatched = find(
        &samples,
        "http_server_request_duration_seconds_count",
        &[
            ("http_route", "unmatched"),
            ("http_response_status_code", "404"),
        ],
    );
    assert_eq!(unmatched.len(), 1);
    assert!(
        !samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains("no/such"))),
        "a raw path leaked into a label"
    );
    let active = find(
        &samples,
        "http_server_active_requests",
        &[("http_request_method", "GET")],
    );
    assert_eq!(active[0].value, 1.0, "the scrape itself is in flight");
    let build = find(
        &samples,
        "hello_oauth_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert_eq!(build.len(), 1);
    assert!(!build[0].labels["git_revision"].is_empty());
    assert_eq!(
        find(&samples, "hello_oauth_login_started_total", &[])[0].value,
        0.0
    );
    assert!(find(&samples, "process_memory_usage_bytes", &[])[0].value > 1e6);
    assert!(find(&samples, "process_unix_file_descriptor_count", &[])[0].value > 3.0);
    assert_eq!(
        find(&samples, "process_cpu_time_seconds_total", &[]).len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn the_metrics_endpoint_is_labelled_as_its_own_route() {
    let app = TestApp::spawn().await;
    scrape(&app).await;

    let (_, samples) = scrape(&app).await;

    let own = find(
        &samples,
        "http_server_request_duration_seconds_count",
        &[
            ("http_route", "/metrics"),
            ("http_response_status_code", "200"),
        ],
    );
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0].value, 1.0,
        "a scrape is recorded after it is rendered"
    );
    app.stop().await;
}

#[tokio::test]
async fn thousands_of_random_paths_and_methods_create_no_new_series() {
    let app = TestApp::spawn().await;
    let client = app.client.clone();
    // Warm up every label combination the burst can reach.
    client.get(app.url("/warm-up")).send().await.unwrap();
    let other = reqwest::Method::from_bytes(b"PURGE").unwrap();
    client
        .request(other.clone(), app.url("/warm-up"))
        .send()
        .await
        .unwrap();
    client
        .get(app.url("/healthz/warm-up"))
        .send()
        .await
        .unwrap();
    scrape(&app).await;
    let (_, before) = scrape(&app).await;

    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8u32 {
        let client = client.clone();
        let base = app.url("");
        let other = other.clone();
        tasks.spawn(async move {
            for i in 0..400u32 {
                let n = worker * 1000 + i;
                let path = match n % 4 {
                    0 => format!("/random/{n:x}/{}", n.wrapping_mul(2_654_435_761)),
                    1 => format!("/healthz/{n}"),
                    2 => format!("/api/v1/{n}?q={n}"),
                    _ => format!("/%F0%9F%92%A5{n}"),
                };
                let method = if n % 5 == 0 {
                    other.clone()
                } else {
                    reqwest::Method::GET
                };
                let resp = client
                    .request(method, format!("{base}{path}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 404, "{path}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let (_, after) = scrape(&app).await;

    assert_eq!(
        series(&before),
        series(&after),
        "3200 random requests changed the set of series"
    );
    let unmatched: f64 = find(
        &after,
        "http_server_request_duration_seconds_count",
        &[("http_route", "unmatched")],
    )
    .iter()
    .map(|s| s.value)
    .sum();
    assert_eq!(unmatched, 3.0 + 3200.0);
    let other_method = find(
        &after,
        "http_server_request_duration_seconds_count",
        &[("http_request_method", "_OTHER")],
    );
    assert!(!other_method.is_empty(), "PURGE is counted as _OTHER");
    app.stop().await;
}

#[tokio::test]
async fn the_background_probe_is_counted_as_a_wiki_call() {
    let wiki = ProbeTarget::start(true).await;
    let app = configured_app(&wiki, Duration::from_secs(3600)).await;
    eventually("the first probe", async || wiki.hits() == 1).await;

    let samples = {
        let mut samples = Vec::new();
        eventually("the probe is recorded", async || {
            samples = scrape(&app).await.1;
            !find(
                &samples,
                "hello_oauth_wiki_call_duration_seconds_count",
                &[],
            )
            .is_empty()
        })
        .await;
        samples
    };

    let calls = find(
        &samples,
        "hello_oauth_wiki_call_duration_seconds_count",
        &[("step", "readiness"), ("outcome", "ok")],
    );
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].value, 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_metrics_token_is_required_when_configured() {
    let app = TestApp::spawn_with(|c| {
        c.metrics_token = Some(SecretString::from(METRICS_TOKEN));
    })
    .await;
    let url = app.url("/metrics");

    let none = app.client.get(&url).send().await.unwrap();
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("metrics-token-0123456789-SECREX")
        .send()
        .await
        .unwrap();
    let basic = app
        .client
        .get(&url)
        .basic_auth("metrics", Some(METRICS_TOKEN))
        .send()
        .await
        .unwrap();
    let right = app
        .client
        .get(&url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();

    for resp in [none, wrong, basic] {
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let text = resp.text().await.unwrap();
        assert!(!text.contains(METRICS_TOKEN));
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(body["request_id"], request_id.as_str());
    }
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("http_server_"));
    app.stop().await;
}

#[tokio::test]
async fn without_a_token_the_metrics_are_open() {
    let app = TestApp::spawn().await;

    let resp = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn no_secret_shows_in_metrics_readiness_or_the_document() {
    let session_key = "session-key-0123456789-abcdefghijklmnop-SECRET";
    let wiki = ProbeTarget::start(true).await;
    let mwuri = wiki.mwuri();
    let app = TestApp::spawn_with(move |c| {
        c.mwuri = mwuri;
        c.readiness_interval = Some(Duration::from_secs(3600));
        c.consumer = Some(hello_oauth::config::OAuthConsumer {
            key: "0123456789abcdef".into(),
            secret: SecretString::from(CONSUMER_SECRET),
        });
        c.session_key =
            hello_oauth::config::SessionKey::Configured(SecretString::from(session_key));
        c.metrics_token = Some(SecretString::from(METRICS_TOKEN));
    })
    .await;
    eventually("the first probe", async || wiki.hits() == 1).await;

    let mut bodies = Vec::new();
    for path in [
        "/readyz",
        "/healthz",
        "/openapi.json",
        "/api/docs",
        "/metrics",
    ] {
        let resp = app
            .client
            .get(app.url(path))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(resp.status() == 200 || path == "/readyz", "{path}");
        bodies.push(resp.text().await.unwrap());
    }

    for body in &bodies {
        for secret in [CONSUMER_SECRET, METRICS_TOKEN, session_key] {
            assert!(!body.contains(secret), "a secret leaked: {body:.200}");
        }
    }
    app.stop().await;
}
