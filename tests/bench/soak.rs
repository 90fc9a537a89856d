//! The soak run: `cargo bench --bench soak` (or `scripts/soak [MINUTES]`).
//!
//! Starts the release build of hello-oauth against the fake wiki (test code,
//! run in this process on loopback), logs in through it for a session
//! cookie, then keeps many concurrent clients (oha) on `/` anonymous, `/`
//! logged in, `/healthz` (a new connection per request) and `/api/v1/me`
//! (when this build serves it; skipped loudly otherwise) at a fixed total
//! rate for the given minutes, sampling the service's resident memory every
//! second. It fails on any transport error, any answer that is not 2xx, and
//! a memory growth trend after warm-up (least-squares slope of RSS over
//! time) above `--max-slope` KiB/min.
//!
//! Flags: `--minutes M` (default 3), `--rate R` requests/s over all routes
//! (default 2000), `--connections C` per route (default 16), `--warmup S`
//! seconds left out of the trend (default 30, at most a third of the run),
//! `--max-slope K` KiB/min (default 256; see docs/security.md for why).

// A panic is how the soak run reports a broken set-up.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../journeys/fake_wiki.rs"]
mod fake_wiki;

// Not every bench uses every helper (the soak sets its own environment).
#[allow(dead_code)]
#[path = "common.rs"]
mod common;
use common::{Server, flag, free_port, log_in, oha, target_dir};

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use fake_wiki::{CONSUMER_KEY, CONSUMER_SECRET, FakeWiki};

const SESSION_KEY: &str = "soak-session-key-Zq3vN8xR1pL6tY0wK4sD9hF2jG7bC5mA";

struct Settings {
    minutes: f64,
    rate: u32,
    connections: u32,
    warmup: u64,
    max_slope: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |name: &str, default: f64| {
        flag(&args, name)
            .map(|v| {
                v.parse::<f64>()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
            .unwrap_or(default)
    };
    let minutes = num("--minutes", 3.0);
    let settings = Settings {
        minutes,
        rate: num("--rate", 2000.0) as u32,
        connections: num("--connections", 16.0) as u32,
        warmup: (num("--warmup", 30.0) as u64).min((minutes * 20.0) as u64),
        max_slope: num("--max-slope", 256.0),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(run(&settings));
    std::process::exit(code);
}

fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn start_service(wiki: &FakeWiki) -> Server {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(env!("CARGO_BIN_EXE_hello-oauth"))
        .arg("serve")
        .env_clear()
        .envs([
            ("PORT", port.to_string().as_str()),
            ("TOOL_BIND_ADDRESS", "127.0.0.1"),
            ("TOOL_OAUTH_MWURI", wiki.index_url().as_str()),
            ("TOOL_OAUTH_CONSUMER_KEY", CONSUMER_KEY),
            ("TOOL_OAUTH_CONSUMER_SECRET", CONSUMER_SECRET),
            ("TOOL_SESSION_KEY", SESSION_KEY),
            ("TOOL_READINESS_INTERVAL_SECONDS", "10"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the release binary starts");
    let service = Server { child, addr };
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "hello-oauth did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    service
}

struct Route {
    name: &'static str,
    path: &'static str,
    cookie: Option<String>,
    new_connections: bool,
}

#[derive(Debug, Default)]
struct Outcome {
    requests: u64,
    rps: f64,
    p99_ms: f64,
    errors: u64,
    non_2xx: u64,
    codes: String,
}

fn parse_oha(out: &[u8]) -> Outcome {
    let v: Value = serde_json::from_slice(out).expect("oha prints JSON");
    let mut o = Outcome {
        rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p99_ms: v["latencyPercentiles"]["p99"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        ..Outcome::default()
    };
    let mut codes = Vec::new();
    if let Some(map) = v["statusCodeDistribution"].as_object() {
        for (code, n) in map {
            let n = n.as_u64().unwrap_or(0);
            o.requests += n;
            if !code.starts_with('2') {
                o.non_2xx += n;
            }
            codes.push(format!("{code}: {n}"));
        }
    }
    o.codes = codes.join(", ");
    if let Some(map) = v["errorDistribution"].as_object() {
        o.errors = map.values().filter_map(Value::as_u64).sum();
        for (error, n) in map {
            eprintln!("  oha error: {error}: {n}");
        }
    }
    o
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

async fn run(s: &Settings) -> i32 {
    hello_oauth::install_crypto_provider();
    let wiki = FakeWiki::start().await;
    let service = start_service(&wiki);
    let base = format!("http://{}", service.addr);
    wiki.register_callback(&format!("{base}/oauth-callback"), false);
    let cookie = log_in(service.addr, &wiki).await;

    let mut routes = vec![
        Route {
            name: "GET / (anonymous)",
            path: "/",
            cookie: None,
            new_connections: false,
        },
        Route {
            name: "GET / (logged in)",
            path: "/",
            cookie: Some(cookie.clone()),
            new_connections: false,
        },
        Route {
            name: "GET /healthz (new conn.)",
            path: "/healthz",
            cookie: None,
            new_connections: true,
        },
    ];
    let me = reqwest::Client::new()
        .get(format!("{base}/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .status();
    if me.is_success() {
        routes.push(Route {
            name: "GET /api/v1/me",
            path: "/api/v1/me",
            cookie: Some(cookie.clone()),
            new_connections: false,
        });
    } else {
        let line = "=".repeat(70);
        eprintln!("\n{line}\nSKIPPED: /api/v1/me answers {me} on this build: not soaked\n{line}\n");
    }

    let secs = (s.minutes * 60.0).round().max(10.0) as u64;
    let per_route = (s.rate / routes.len() as u32).max(1);
    println!(
        "soak: {} routes x {} connections, {per_route} req/s each, {secs} s; service pid {}",
        routes.len(),
        s.connections,
        service.child.id()
    );

    // Memory, once a second, from now until the load ends.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let pid = service.child.id();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match rss_kib(pid) {
                    Some(kib) => samples.push((start.elapsed().as_secs_f64(), kib)),
                    None => break,
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        })
    };

    let loads: Vec<_> = routes
        .iter()
        .map(|r| {
            let mut cmd = Command::new(oha());
            cmd.args([
                "--no-tui",
                "--output-format",
                "json",
                "--wait-ongoing-requests-after-deadline",
                "-z",
                &format!("{secs}s"),
                "-c",
                &s.connections.to_string(),
                "-q",
                &per_route.to_string(),
            ]);
            if r.new_connections {
                cmd.arg("--disable-keepalive");
            }
            if let Some(c) = &r.cookie {
                cmd.args(["-H", &format!("Cookie: {c}")]);
            }
            cmd.arg(format!("{base}{}", r.path))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("oha starts")
        })
        .collect();
    let outcomes: Vec<Outcome> = loads
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "oha failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            parse_oha(&out.stdout)
        })
        .collect();
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let still_running = rss_kib(service.child.id()).is_some();

    // Report.
    println!(
        "\n{:<26} {:>10} {:>8} {:>9} {:>7} {:>7}  status codes",
        "route", "requests", "req/s", "p99 ms", "errors", "non-2xx"
    );
    let mut failed = Vec::new();
    for (r, o) in routes.iter().zip(&outcomes) {
        println!(
            "{:<26} {:>10} {:>8.0} {:>9.2} {:>7} {:>7}  {}",
            r.name, o.requests, o.rps, o.p99_ms, o.errors, o.non_2xx, o.codes
        );
        if o.errors > 0 || o.non_2xx > 0 || o.requests == 0 {
            failed.push(format!(
                "{}: {} errors, {} answers not 2xx",
                r.name, o.errors, o.non_2xx
            ));
        }
    }
    let total: u64 = outcomes.iter().map(|o| o.requests).sum();
    let after: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= s.warmup as f64)
        .collect();
    let first = samples.first().map_or(f64::NAN, |p| p.1);
    let peak = samples.iter().map(|p| p.1).fold(f64::NAN, f64::max);
    let kib_per_min = slope(&after) * 60.0;
    let span = after.last().map_or(0.0, |p| p.0) - after.first().map_or(0.0, |p| p.0);
    let per_request = kib_per_min * 1024.0 / 60.0 / (total as f64 / secs as f64).max(1.0);
    println!(
        "\nresident memory: {:.1} MiB at the start, {:.1} MiB at warm-up end ({} s), {:.1} MiB at the end, peak {:.1} MiB",
        first / 1024.0,
        after.first().map_or(f64::NAN, |p| p.1) / 1024.0,
        s.warmup,
        samples.last().map_or(f64::NAN, |p| p.1) / 1024.0,
        peak / 1024.0
    );
    println!(
        "trend after warm-up: {kib_per_min:+.1} KiB/min over {span:.0} s ({} samples), {per_request:+.4} bytes per request; limit {} KiB/min",
        after.len(),
        s.max_slope
    );
    println!("requests: {total} in {secs} s");
    let csv = target_dir().join("soak/rss.csv");
    if let Some(dir) = csv.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let lines: Vec<String> = samples
        .iter()
        .map(|(t, k)| format!("{t:.1},{k:.0}"))
        .collect();
    let _ = std::fs::write(&csv, format!("seconds,rss_kib\n{}\n", lines.join("\n")));
    println!("RSS samples written to {}", csv.display());

    if !still_running {
        failed.push("the service died".into());
    }
    if after.len() < 10 {
        failed.push(format!(
            "only {} RSS samples after warm-up: run longer",
            after.len()
        ));
    } else if kib_per_min > s.max_slope {
        failed.push(format!(
            "memory grows {kib_per_min:.1} KiB/min after warm-up (limit {})",
            s.max_slope
        ));
    }
    drop(service);
    if failed.is_empty() {
        println!("soak passed: zero errors, zero non-2xx, no memory growth trend");
        0
    } else {
        println!("soak FAILED:\n  {}", failed.join("\n  "));
        1
    }
}
