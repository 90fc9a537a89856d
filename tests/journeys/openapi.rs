//! The OpenAPI document as its readers meet it: committed, served, printed
//! by `hello-oauth openapi`, rendered by the explorer, and checked by
//! independent tools (openapi-spec-validator, schemathesis, Chromium).
//!
//! The external tools are looked up in `.venv/bin` at the repository root,
//! then on PATH. Without them a test prints a loud SKIPPED line and passes,
//! except under CI (the `CI` variable set), where a missing tool fails:
//! `.ci/run` installs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_hello-oauth");
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
const REGENERATE: &str = "cargo run -- openapi > openapi/openapi.json";
const PIP_TOOLS: &str = "python3 -m venv .venv && .venv/bin/pip install \
     -r scripts/requirements-openapi.txt -c scripts/constraints-openapi.txt";

fn committed() -> String {
    std::fs::read_to_string(COMMITTED)
        .unwrap_or_else(|e| panic!("{COMMITTED}: {e}; create it with `{REGENERATE}`"))
}

/// The path of an external tool, or `None` after a loud SKIPPED line (a
/// failure under CI).
fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    let found = if venv.is_file() {
        Some(venv)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is not installed and CI is set: install it with `{install}`");
        }
        crate::helpers::skip_loudly(&format!("{name} not installed ({install})"));
    }
    found
}

/// Runs `cmd`, killing it after `limit`; returns its output.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tool starts");
    let deadline = Instant::now() + limit;
    // Drain the pipes in threads so a chatty tool cannot block on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).ok();
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).ok();
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();

    assert!(
        generated == committed(),
        "openapi/openapi.json is out of date with the code: regenerate it with\n\n    {REGENERATE}\n\nand commit the result"
    );
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = TestApp::spawn().await;

    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), committed());
    app.stop().await;
}

#[test]
fn the_document_lists_the_ops_endpoints_with_their_errors_and_no_host() {
    let doc: serde_json::Value = serde_json::from_str(&committed()).unwrap();

    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["servers"][0]["url"], "/");
    for (path, method) in [
        ("/healthz", "get"),
        ("/healthz", "head"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["tags"][0], "ops", "{method} {path}");
        assert!(op["summary"].is_string() && op["description"].is_string());
        assert!(op["operationId"].is_string());
    }
    let readyz = &doc["paths"]["/readyz"]["get"]["responses"];
    assert!(readyz["200"].is_object() && readyz["503"].is_object());
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"];
    assert!(metrics["401"].is_object() && metrics["500"].is_object());
    for schema in ["Health", "Readiness", "ApiError"] {
        assert!(
            doc["components"]["schemas"][schema]["example"].is_object(),
            "{schema} has an example"
        );
    }
    let text = committed();
    assert!(
        !text.contains("toolforge.org"),
        "no instance's host in the document"
    );
    assert!(!text.contains("wikimedia.org"));
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = serde_json::from_str(&committed()).unwrap();

    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .client
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let documented = &doc["paths"][path][method.as_str().to_lowercase()]["responses"];
            assert!(
                documented.get(status.to_string()).is_some(),
                "{method} {path} answered {status}, which the document does not list"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_explorer_is_served_by_the_tool_and_may_load_nothing_from_elsewhere() {
    let app = TestApp::spawn().await;

    let resp = app.client.get(app.url("/api/docs")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    for directive in csp.split(';') {
        assert!(
            !directive.contains("http:")
                && !directive.contains("https:")
                && !directive.contains('*'),
            "the policy allows another host: {directive}"
        );
    }
    let html = resp.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle"), "the bundle is inline");
    for attr in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
    ] {
        assert!(!html.contains(attr), "the page loads {attr}...");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_renders_in_a_browser_without_a_blocked_request() {
    let Some(chromium) = tool("chromium", "apt-get install chromium") else {
        return;
    };
    let app = TestApp::spawn().await;
    let url = app.url("/api/docs");
    let profile = std::env::temp_dir().join(format!("hello-oauth-chromium-{}", std::process::id()));

    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--enable-logging=stderr",
            "--log-level=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url);
        let out = run_bounded(cmd, Duration::from_secs(120));
        let _ = std::fs::remove_dir_all(&profile);
        out
    })
    .await
    .unwrap();

    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "the explorer did not render {path}; browser log:\n{log}"
        );
    }
    let blocked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Content Security Policy") || l.contains("ERR_NAME_NOT_RESOLVED"))
        .collect();
    assert!(
        blocked.is_empty(),
        "the explorer tried to load:\n{blocked:#?}"
    );
    app.stop().await;
}

#[test]
fn an_independent_validator_accepts_the_committed_document() {
    let Some(validator) = tool("openapi-spec-validator", PIP_TOOLS) else {
        return;
    };
    let mut cmd = Command::new(validator);
    cmd.arg(COMMITTED);

    let out = run_bounded(cmd, Duration::from_secs(120));

    assert!(
        out.status.success(),
        "openapi-spec-validator rejected openapi/openapi.json:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A wiki stand-in on loopback that answers every request with 400, so the
/// fuzzed instance is ready (a 503 from /readyz would count as a server
/// error to the fuzzer).
async fn answering_wiki() -> (url::Url, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if socket.read(&mut buf).await.unwrap_or(0) > 0 {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = socket
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                }
            });
        }
    });
    let url = url::Url::parse(&format!("http://{addr}/w/index.php")).unwrap();
    (url, hits, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_document() {
    let Some(schemathesis) = tool("schemathesis", PIP_TOOLS) else {
        return;
    };
    let token = "fuzz-metrics-token-0123456789";
    let (mwuri, wiki_hits, wiki) = answering_wiki().await;
    let app = TestApp::spawn_with(move |c| {
        c.mwuri = mwuri;
        c.readiness_interval = Some(Duration::from_secs(3600));
        c.consumer = Some(hello_oauth::config::OAuthConsumer {
            key: "0123456789abcdef".into(),
            secret: SecretString::from("fuzz-consumer-secret"),
        });
        c.session_key = hello_oauth::config::SessionKey::Configured(SecretString::from(
            hello_oauth::config::generate_session_key(),
        ));
        c.metrics_token = Some(SecretString::from(token));
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while wiki_hits.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the readiness probe never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spec_url = app.url("/openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&committed()).unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    let workdir =
        std::env::temp_dir().join(format!("hello-oauth-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();

    // Two runs: with the token (every operation reachable), and without it
    // (the 401 answers must conform too).
    for (label, header) in [
        (
            "with the metrics token",
            Some(format!("Authorization: Bearer {token}")),
        ),
        ("without a token", None),
    ] {
        let mut cmd = Command::new(&schemathesis);
        cmd.current_dir(&workdir)
            .env("NO_COLOR", "1")
            .args(["run", &spec_url, "--checks", "all", "--max-examples", "100"])
            .args([
                "--seed",
                "20261127",
                "--workers",
                "1",
                "--request-timeout",
                "10",
            ])
            .args(["--phases", "examples,coverage,fuzzing,stateful"]);
        if let Some(h) = &header {
            cmd.args(["--header", h]);
        }
        let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(180)))
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis found problems ({label}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Tested: {operations}")),
            "schemathesis did not test all {operations} operations ({label}):\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&workdir);
    app.stop().await;
    wiki.abort();
}
