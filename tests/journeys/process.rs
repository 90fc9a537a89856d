//! The real executable, as an operator runs it: start-up rules, `check`,
//! `--help`, JSON logs on stdout and graceful shutdown on SIGTERM.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hello-oauth");
const SECRET: &str = "s3cr3t-consumer-VALUE-do-not-print";
const KEY: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
/// A wiki on loopback where nothing listens: the service's background probe
/// of the wiki must never leave this machine during tests.
const NO_WIKI: &str = "http://127.0.0.1:9/w/index.php";

/// The executable with an empty environment plus `vars`.
fn command(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear();
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// `serve` on a free loopback port, with no wiki to reach, stdout piped,
/// plus `vars`.
fn serve_command(vars: &[(&str, &str)]) -> Command {
    let mut all = vec![
        ("PORT", "0"),
        ("TOOL_BIND_ADDRESS", "127.0.0.1"),
        ("TOOL_OAUTH_MWURI", NO_WIKI),
    ];
    all.extend_from_slice(vars);
    let mut cmd = command(&["serve"], &all);
    cmd.stdout(Stdio::piped());
    cmd
}

/// The port of the start-up line (`hello-oauth started`), None for any
/// other line; panics on a line that is not JSON.
fn started_on(line: &str) -> Option<u16> {
    let json: serde_json::Value = serde_json::from_str(line).expect("log lines are JSON");
    if json["message"] != "hello-oauth started" {
        return None;
    }
    let addr = json["address"].as_str().expect("address");
    Some(addr.rsplit(':').next().unwrap().parse().unwrap())
}

/// Sends SIGTERM, as Kubernetes does.
fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok);
}

struct Running {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// Starts `serve` on a free loopback port and waits for the start-up line.
    fn start(vars: &[(&str, &str)]) -> Running {
        let mut child = serve_command(vars)
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the service logs its start-up");
            let port = started_on(&line);
            seen.push(line);
            if let Some(port) = port {
                break port;
            }
        };
        Running {
            child,
            port,
            lines: rx,
            seen,
        }
    }

    fn sigterm(&self) {
        sigterm(&self.child);
    }

    /// Waits for the exit and returns its code plus every stdout line.
    fn wait(mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status.code(), self.seen)
    }
}

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn with_nothing_configured_the_service_starts_warns_and_serves_the_home_page() {
    let running = Running::start(&[]);

    let page = get(running.port, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Hello World!"));

    running.sigterm();
    let (code, lines) = running.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("TOOL_SESSION_KEY")),
        "a warning about the ephemeral key: {lines:#?}"
    );
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).expect("every stdout line is JSON");
        for field in ["timestamp", "level", "message", "target"] {
            assert!(json.get(field).is_some(), "{field} missing in {line}");
        }
    }
    let access = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|j| j["target"] == "access")
        .expect("an access-log line");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "/");
    assert_eq!(access["status"], 200);
    assert!(access["latency_ms"].is_number());
    assert!(access["bytes"].as_u64().unwrap() > 100);
    assert_eq!(access["request_id"].as_str().unwrap().len(), 16);
}

#[test]
fn a_consumer_without_a_session_key_refuses_to_start_and_names_the_variable() {
    let out = command(
        &["serve"],
        &[
            ("TOOL_OAUTH_CONSUMER_KEY", "abc123"),
            ("TOOL_OAUTH_CONSUMER_SECRET", SECRET),
        ],
    )
    .output()
    .unwrap();

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TOOL_SESSION_KEY: is not set"), "{stderr}");
    assert!(!stderr.contains(SECRET));
    assert!(out.stdout.is_empty(), "nothing logged, nothing bound");
}

#[test]
fn every_invalid_value_is_reported_at_once_without_echoing_secrets() {
    let short_key = "short-but-SECRET";
    let out = command(
        &["serve"],
        &[
            ("PORT", "eighty"),
            ("TOOL_OAUTH_MWURI", "meta.wikimedia.org/w/index.php"),
            ("TOOL_OAUTH_CONSUMER_SECRET", SECRET),
            ("TOOL_SESSION_KEY", short_key),
            ("LOG_FORMAT", "xml"),
            ("TOOL_DRAIN_SECONDS", "60"),
            ("TOOL_PUBLIC_URL", "ftp://example.org/"),
            ("TOOL_MAX_BODY_BYTES", "lots"),
        ],
    )
    .output()
    .unwrap();

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "PORT:",
        "TOOL_OAUTH_MWURI:",
        "TOOL_OAUTH_CONSUMER_KEY: is not set",
        "TOOL_SESSION_KEY: is too short",
        "LOG_FORMAT:",
        "TOOL_DRAIN_SECONDS:",
        "TOOL_PUBLIC_URL:",
        "TOOL_MAX_BODY_BYTES:",
    ] {
        assert!(stderr.contains(var), "{var} missing from:\n{stderr}");
    }
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert!(!stderr.contains(short_key), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

#[test]
fn check_prints_every_setting_with_its_source_and_redacts_secrets() {
    let out = command(
        &["check", "--greeting", "Hi there"],
        &[
            ("TOOL_OAUTH_CONSUMER_KEY", "abc123"),
            ("TOOL_OAUTH_CONSUMER_SECRET", SECRET),
            ("TOOL_SESSION_KEY", KEY),
            ("TOOL_DATA_DIR", "/data/project/my-tool"),
            ("PORT", "8001"),
        ],
    )
    .output()
    .unwrap();

    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from:\n{stdout}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("PORT"), "env 8001");
    assert_eq!(row("TOOL_GREETING"), "flag Hi there");
    assert_eq!(row("TOOL_BIND_ADDRESS"), "default 0.0.0.0");
    assert_eq!(row("TOOL_NAME"), "derived my-tool");
    assert_eq!(row("TOOL_OAUTH_CONSUMER_SECRET"), "env [redacted]");
    assert_eq!(row("TOOL_SESSION_KEY"), "env [redacted]");
    assert!(!stdout.contains(SECRET) && !stdout.contains(KEY));
}

#[test]
fn check_with_a_broken_environment_fails() {
    let out = command(
        &["check"],
        &[
            ("PORT", "-1"),
            (
                "TOOL_SESSION_KEY",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ),
        ],
    )
    .output()
    .unwrap();

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PORT:"), "{stderr}");
    assert!(
        stderr.contains("TOOL_SESSION_KEY: does not look random"),
        "{stderr}"
    );
}

#[test]
fn help_documents_every_variable_without_showing_secret_values() {
    let out = command(
        &["serve", "--help"],
        &[
            ("TOOL_OAUTH_CONSUMER_SECRET", SECRET),
            ("TOOL_SESSION_KEY", KEY),
        ],
    )
    .output()
    .unwrap();

    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PORT",
        "TOOL_BIND_ADDRESS",
        "TOOL_GREETING",
        "TOOL_OAUTH_MWURI",
        "TOOL_OAUTH_CONSUMER_KEY",
        "TOOL_OAUTH_CONSUMER_SECRET",
        "TOOL_SESSION_KEY",
        "TOOL_NAME",
        "TOOL_DATA_DIR",
        "TOOL_CONTACT",
        "TOOL_PUBLIC_URL",
        "RUST_LOG",
        "LOG_FORMAT",
        "TOOL_DRAIN_SECONDS",
    ] {
        assert!(help.contains(var), "{var} missing from --help");
    }
    assert!(!help.contains(SECRET) && !help.contains(KEY));
}

#[test]
fn generate_key_prints_a_key_that_check_accepts() {
    let out = command(&["generate-key"], &[]).output().unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.len() >= 32);

    let check = command(&["check"], &[("TOOL_SESSION_KEY", &key)])
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn sigterm_during_a_slow_request_lets_it_finish_then_exits_zero() {
    let running = Running::start(&[]);
    let mut slow = TcpStream::connect(("127.0.0.1", running.port)).unwrap();
    // A slow client: the request head arrives in two parts, around SIGTERM.
    write!(slow, "GET / HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    slow.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    running.sigterm();
    std::thread::sleep(Duration::from_millis(500));
    write!(slow, "Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.read_to_string(&mut response).unwrap();

    assert!(
        response.starts_with("HTTP/1.1 200"),
        "in-flight request finished: {response:?}"
    );
    assert!(response.contains("Hello World!"));
    let (code, lines) = running.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(lines.iter().any(|l| l.contains("hello-oauth stopped")));
}

#[test]
fn text_logs_are_for_people() {
    let running = Running::start_text();
    running.sigterm();
    let (code, lines) = running.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("hello-oauth started") && !l.starts_with('{')),
        "{lines:#?}"
    );
}

impl Running {
    fn start_text() -> Running {
        let mut child = serve_command(&[("LOG_FORMAT", "text")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
            let done = line.contains("hello-oauth started");
            seen.push(line);
            if done {
                break;
            }
        }
        Running {
            child,
            port: 0,
            lines: rx,
            seen,
        }
    }
}

#[test]
fn the_operations_settings_are_validated_without_echoing_the_metrics_token() {
    let short_token = "short-METRICS";
    let out = command(
        &["check"],
        &[
            ("TOOL_METRICS_TOKEN", short_token),
            ("TOOL_READINESS_INTERVAL_SECONDS", "soon"),
        ],
    )
    .output()
    .unwrap();

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TOOL_METRICS_TOKEN: is too short"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TOOL_READINESS_INTERVAL_SECONDS: must be a whole number"),
        "{stderr}"
    );
    assert!(!stderr.contains(short_token), "{stderr}");
}

#[test]
fn check_shows_the_metrics_token_redacted_and_the_readiness_interval() {
    let token = "metrics-token-0123456789-SECRET";
    let out = command(
        &["check", "--readiness-interval-seconds", "0"],
        &[("TOOL_METRICS_TOKEN", token)],
    )
    .output()
    .unwrap();

    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("TOOL_METRICS_TOKEN ") && l.ends_with("env      [redacted]")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("TOOL_READINESS_INTERVAL_SECONDS") && l.ends_with("flag     0")),
        "{stdout}"
    );
    assert!(!stdout.contains(token));

    let help = command(&["serve", "--help"], &[("TOOL_METRICS_TOKEN", token)])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("TOOL_METRICS_TOKEN") && help.contains("TOOL_READINESS_INTERVAL_SECONDS")
    );
    assert!(!help.contains(token));
}

#[test]
fn the_running_service_answers_health_and_readiness_and_serves_metrics() {
    let running = Running::start(&[]);

    let health = get(running.port, "/healthz");
    let ready = get(running.port, "/readyz");
    let metrics = get(running.port, "/metrics");

    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#""status":"ok""#));
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("http_server_request_duration_seconds_bucket"));
    assert!(metrics.contains("hello_oauth_build_info{"));
    running.sigterm();
    let (code, _) = running.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

/// Sends `n` GETs of `path` on one keep-alive connection, pipelined in
/// batches, and returns how many answers were 200.
fn get_many(port: u16, path: &str, n: usize) -> usize {
    const BATCH: usize = 500;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut ok = 0;
    let mut sent = 0;
    while sent < n {
        let batch = BATCH.min(n - sent);
        stream.write_all(request.repeat(batch).as_bytes()).unwrap();
        sent += batch;
        // Every answer to /healthz ends its body with `}`, once.
        let mut seen = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while seen.iter().filter(|&&b| b == b'}').count() < batch {
            let read = stream.read(&mut buf).expect("the answers come");
            assert!(read > 0, "the connection closed early");
            seen.extend_from_slice(&buf[..read]);
        }
        ok += String::from_utf8_lossy(&seen)
            .matches("HTTP/1.1 200 OK\r\n")
            .count();
    }
    ok
}

/// `hello_oauth_log_lines_dropped_total` from a Prometheus scrape.
fn dropped_lines(scrape: &str) -> u64 {
    scrape
        .lines()
        .find(|l| l.starts_with("hello_oauth_log_lines_dropped_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no dropped-lines series in:\n{scrape}"))
        .parse()
        .expect("a count")
}

#[test]
fn log_lines_lost_to_a_stalled_stdout_are_counted_exactly() {
    // The service never waits on stdout: when nothing reads it, lines queue
    // (8,192), then are dropped. Here nothing reads it during a flood of
    // requests; every access line missing from stdout afterwards must be in
    // the counter, and no more.
    // No wiki probe: its warnings would be lines the count below cannot
    // place.
    let mut child = serve_command(&[("TOOL_READINESS_INTERVAL_SECONDS", "0")])
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let port = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no start-up line");
        if let Some(port) = started_on(&line) {
            break port;
        }
    };
    let mut scrapes = 0;
    let mut scrape = || {
        scrapes += 1;
        dropped_lines(&get(port, "/metrics"))
    };
    assert_eq!(scrape(), 0);

    // More lines than the queue, the writer's buffer and the pipe hold.
    const FLOOD: usize = 12_000;
    assert_eq!(get_many(port, "/healthz", FLOOD), FLOOD);
    let while_stalled = scrape();
    assert!(
        while_stalled > 0,
        "{FLOOD} lines into a stalled stdout, none dropped"
    );

    // Read stdout from now on; once the queue has drained, nothing more is
    // dropped.
    let reader = std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let drained = loop {
        std::thread::sleep(Duration::from_millis(200));
        let first = scrape();
        let second = scrape();
        if first == second {
            break second;
        }
        assert!(Instant::now() < deadline, "lines are still being dropped");
    };
    assert!(drained >= while_stalled);
    let scrapes = scrapes;

    sigterm(&child);
    assert_eq!(child.wait().expect("exit").code(), Some(0));
    let lines = reader.join().expect("the reader");
    let access = |route: &str| {
        lines
            .iter()
            .filter(|l| {
                l.contains(r#""target":"access""#) && l.contains(&format!(r#""route":"{route}""#))
            })
            .count()
    };
    // Every access line of the flood and of the scrapes is either on stdout
    // or counted as dropped, to the line (the start-up lines were read
    // before, and nothing else logs meanwhile).
    let healthz = access("/healthz");
    let metrics = access("/metrics");
    assert!(healthz < FLOOD, "every line arrived: nothing was dropped");
    assert_eq!(
        healthz as u64 + metrics as u64 + drained,
        (FLOOD + scrapes) as u64,
        "{healthz} /healthz and {metrics} /metrics lines read, {drained} dropped"
    );
}
