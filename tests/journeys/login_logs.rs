//! What an operator sees in the logs of the real executable during logins:
//! one `login` event per start, completion and failure, with the request id
//! and a reason code, and never a secret.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fake_wiki::{CONSUMER_KEY, CONSUMER_SECRET, FakeWiki};

const BIN: &str = env!("CARGO_BIN_EXE_hello-oauth");
const SESSION_KEY: &str = "Zq3vN8xR1pL6tY0wK4sD9hF2jG7bC5mA-session-key-for-tests";

fn json_lines(rx: &mpsc::Receiver<String>, wait: Duration) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(wait) {
        lines.push(serde_json::from_str(&line).expect("every stdout line is JSON"));
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_outcome_is_logged_with_its_request_id_and_reason_and_no_secret() {
    let wiki = FakeWiki::start().await;
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
            ("LOG_FORMAT", "json"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all_lines: Vec<String> = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the service logs its start-up");
        all_lines.push(line.clone());
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["message"] == "hello-oauth started" {
            break json["address"].as_str().unwrap().to_owned();
        }
    };
    let base = format!("http://{addr}");
    wiki.register_callback(&format!("{base}/oauth-callback"), false);
    let browser = crate::helpers::client_with(Default::default());

    // A failure: a callback with no login in progress.
    let failed = browser
        .get(format!(
            "{base}/oauth-callback?oauth_token=abc&oauth_verifier=def"
        ))
        .send()
        .await
        .unwrap();
    let failed_id = failed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // A success.
    let start = browser.get(format!("{base}/login")).send().await.unwrap();
    let start_id = start.headers()["x-request-id"].to_str().unwrap().to_owned();
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let callback = wiki.approve(&authorize).await;
    let done = browser.get(&callback).send().await.unwrap();
    let done_id = done.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(done.headers()["location"], "/");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let lines = json_lines(&rx, Duration::from_secs(2));
    let _ = child.wait();

    let login: Vec<&serde_json::Value> = lines.iter().filter(|l| l["target"] == "login").collect();
    let find = |outcome: &str, id: &str| {
        login
            .iter()
            .find(|l| l["outcome"] == outcome && l["request_id"] == id)
            .unwrap_or_else(|| panic!("no {outcome} event for {id} in {login:#?}"))
    };
    assert_eq!(find("failed", &failed_id)["reason"], "no_pending_login");
    assert_eq!(find("failed", &failed_id)["level"], "INFO");
    find("started", &start_id);
    find("completed", &done_id);

    let mut secrets = wiki.secrets_issued();
    secrets.push(CONSUMER_SECRET.to_owned());
    secrets.push(SESSION_KEY.to_owned());
    all_lines.extend(lines.iter().map(|l| l.to_string()));
    for line in &all_lines {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "secret in log line {line}");
        }
    }
}
