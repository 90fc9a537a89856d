//! The benchmark: `cargo bench --bench load` (or `scripts/bench`).
//!
//! Runs the release build of hello-oauth pinned to one core and the load
//! generators (wrk at saturation, oha at a fixed rate) pinned to the other,
//! next to a minimal hyper server built from this file that answers the
//! same bytes, and prints every figure both absolute and as a ratio to that
//! baseline. Budgets from docs/performance.md are checked at the end; the
//! exit status says whether they held. Only loopback is used.
//!
//! Flags: `--quick` (short runs, for a smoke test), `--duration SECS`,
//! `--json PATH` (default target/bench/latest.json; the previous file is
//! kept as previous.json and compared), `--no-flask`. `scripts/bench
//! --cold-build` also times a release build from an empty target directory
//! and leaves the figure in target/bench/cold-build.json, which the report
//! prints and copies.

// A panic is how the bench reports a broken set-up.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// The same honest fake wiki the journeys log in against, for the logged-in
// routes and the login round trip.
#[allow(dead_code)]
#[path = "../journeys/fake_wiki.rs"]
mod fake_wiki;

#[path = "common.rs"]
mod common;

// The minimal hyper server and bare poem, answering the captured bytes.
#[path = "reference.rs"]
mod reference;
// What a run measured, and wrk's report read into it.
#[allow(dead_code)]
#[path = "report.rs"]
mod report;
use common::{Server, flag, free_port, log_in, oha, target_dir, wiki_env};
use reference::baseline;
use report::{Load, median, parse_proc_stat, parse_wrk, route_json, steal_percent};

// The Flask/uWSGI tutorial, measured in the same run (`--no-flask` skips it).
#[path = "flask.rs"]
mod flask;

const SERVER_CPU: &str = "0";
const LOAD_CPU: &str = "1";
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if reference::serve_if_asked(&args) {
        return;
    }
    // `cargo bench` passes `--bench`; ignore it and anything unknown.
    let quick = args.iter().any(|a| a == "--quick");
    let duration = flag(&args, "--duration")
        .map(|s| s.parse::<u64>().expect("--duration takes seconds"))
        .unwrap_or(if quick { 2 } else { 10 });
    let json_path = flag(&args, "--json")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench/latest.json"));
    let code = run(duration, &json_path);
    std::process::exit(code);
}

fn pinned(cpu: &str, program: &Path) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpu).arg(program);
    cmd
}

/// One HTTP/1.1 GET over a fresh connection; returns (status, headers, body).
fn http_get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Option<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{cookie}\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, raw[split + 4..].to_vec()))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Starts hello-oauth and measures exec -> first 200 on /healthz.
fn start_service(extra_env: &[(&str, String)]) -> (Server, Duration) {
    start_service_probe(extra_env, "/healthz")
}

/// Starts hello-oauth and measures exec -> first 200 on `probe`.
fn start_service_probe(extra_env: &[(&str, String)], probe: &str) -> (Server, Duration) {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_hello-oauth"));
    let mut cmd = pinned(SERVER_CPU, &bin);
    cmd.arg("serve")
        .env_clear()
        .env("PORT", port.to_string())
        .env("TOOL_BIND_ADDRESS", "127.0.0.1")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("TOOL_MAX_CONCURRENT_REQUESTS", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let child = cmd.spawn().expect("taskset and the release binary start");
    let server = Server { child, addr };
    loop {
        if let Some((200, _, _)) = http_get(addr, probe, None) {
            return (server, start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "hello-oauth did not become healthy"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Starts this bench's own server: `--serve-baseline` (hyper) or
/// `--serve-poem-on-hyper` (bare poem's `Route` on the service's accept loop), answering
/// the bytes in `dir`; with `body_only`, the body and `content-type` alone.
fn start_baseline(dir: &Path, which: &str, body_only: bool) -> Server {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let me = std::env::current_exe().unwrap();
    let child = pinned(SERVER_CPU, &me)
        .arg(which)
        .arg(addr.to_string())
        .arg(dir)
        .args(body_only.then_some("--body-only"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while http_get(addr, "/healthz", None).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "baseline did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Server { child, addr }
}

/// CPU time the process has spent on a core, in nanoseconds
/// (`/proc/<pid>/task/*/schedstat`, first field, summed over threads and
/// over child processes: uWSGI's workers).
fn cpu_ns(pid: u32) -> u64 {
    let mut sum = 0;
    for pid in flask::process_tree(pid) {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                sum += std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    sum
}

/// Loads the server `pid`: at a fixed `rate` with oha (16 connections,
/// latency corrected for coordinated omission), or, `rate` None, at
/// saturation with wrk (32 connections).
///
/// Why two generators: on this 2-core machine oha, on its one core, tops
/// out near 110k requests a second, below what the hyper baseline answers
/// (wrk, written in C, drives it to 130k and more), so at saturation by oha
/// the req/s column measured oha, not the server (92 % of the baseline by
/// req/s against 82 % by CPU in one run of session 7). Under wrk the two
/// columns agree. The CPU ratio, which the budgets use, came out the same
/// under both in an interleaved A/B (docs/performance.md, "Why wrk at
/// saturation").
fn load(pid: u32, url: &str, cookie: Option<&str>, secs: u64, rate: Option<u32>) -> Load {
    match rate {
        Some(_) => load_args(pid, url, cookie, secs, rate, &[]),
        None => saturate(pid, url, cookie, secs),
    }
}

/// Runs a load generator, reading the server `pid`'s CPU time (ns) around it.
fn run_measured(pid: u32, mut cmd: Command, what: &str) -> (std::process::Output, u64) {
    let cpu_before = cpu_ns(pid);
    let out = cmd.output().unwrap_or_else(|e| panic!("{what} runs: {e}"));
    let cpu_after = cpu_ns(pid);
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, cpu_after.saturating_sub(cpu_before))
}

/// Server CPU µs per request, from the nanoseconds spent over a run.
fn cpu_us_per_request(cpu_ns: u64, requests: u64) -> f64 {
    cpu_ns as f64 / 1000.0 / requests.max(1) as f64
}

/// Saturation with wrk (one thread, 32 keep-alive connections), pinned to
/// the load CPU; see [`load`].
fn saturate(pid: u32, url: &str, cookie: Option<&str>, secs: u64) -> Load {
    let mut cmd = pinned(LOAD_CPU, &common::wrk());
    cmd.args(["-t1", "-c32", "--latency", "-d", &format!("{secs}s")]);
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    cmd.arg(url);
    let (out, cpu) = run_measured(pid, cmd, "wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut load = parse_wrk(&text).unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"));
    load.cpu_us = cpu_us_per_request(cpu, load.requests);
    load
}

/// `load` with extra oha arguments.
fn load_args(
    pid: u32,
    url: &str,
    cookie: Option<&str>,
    secs: u64,
    rate: Option<u32>,
    extra: &[&str],
) -> Load {
    let mut cmd = pinned(LOAD_CPU, &oha());
    cmd.args([
        "--no-tui",
        "--output-format",
        "json",
        "--wait-ongoing-requests-after-deadline",
        "-z",
        &format!("{secs}s"),
    ]);
    match rate {
        Some(q) => cmd.args(["-c", "16", "-q", &q.to_string(), "--latency-correction"]),
        None => cmd.args(["-c", "32"]),
    };
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    cmd.args(extra).arg(url);
    let (out, cpu) = run_measured(pid, cmd, "oha");
    let v: Value = serde_json::from_slice(&out.stdout).expect("oha prints JSON");
    let summary = &v["summary"];
    let pct = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let codes = v["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut total = 0;
    let mut non_2xx = 0;
    for (code, n) in &codes {
        let n = n.as_u64().unwrap_or(0);
        total += n;
        if !code.starts_with('2') {
            non_2xx += n;
        }
    }
    let errors = v["errorDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    Load {
        rps: summary["requestsPerSec"].as_f64().unwrap_or(0.0),
        cpu_us: cpu_us_per_request(cpu, total),
        p50_ms: pct("p50"),
        p99_ms: pct("p99"),
        requests: total,
        errors,
        non_2xx,
    }
}

/// The better of two runs: highest throughput, lowest CPU per request
/// (the Flask comparison's saturation runs, `flask.rs`).
fn best(a: Load, b: Load) -> Load {
    let cpu_us = a.cpu_us.min(b.cpu_us);
    let mut best = if b.rps > a.rps { b } else { a };
    best.cpu_us = cpu_us;
    best
}

/// Saturation rounds per route with a reference: each round runs the
/// service and the hyper baseline (and, the first time a page's bytes come
/// up, bare poem) back to back, `2 * secs / ROUNDS` seconds each. A change
/// in the host's speed, which on a shared VM comes and goes within seconds,
/// then hits the runs of one round alike, and the ratio of each round is
/// taken before the median. Two runs of `secs` each, the best of each kept,
/// gave ratios 20 points apart in two runs of the same build (49 and 70 %).
const ROUNDS: u64 = 10;

/// Several runs of one server as one: the median of each figure, the sums
/// of the counts.
fn combine(runs: &[Load]) -> Load {
    let of = |f: fn(&Load) -> f64| median(runs.iter().map(f).collect());
    Load {
        rps: of(|l| l.rps),
        cpu_us: of(|l| l.cpu_us),
        p50_ms: of(|l| l.p50_ms),
        p99_ms: of(|l| l.p99_ms),
        requests: runs.iter().map(|l| l.requests).sum(),
        errors: runs.iter().map(|l| l.errors).sum(),
        non_2xx: runs.iter().map(|l| l.non_2xx).sum(),
    }
}

/// A reference server's figures, by the baseline path it answered.
fn reference_json(
    results: &BTreeMap<&str, Load>,
    efficiencies: &BTreeMap<&str, Vec<f64>>,
) -> serde_json::Map<String, Value> {
    results
        .iter()
        .map(|(path, r)| {
            let rounds = efficiencies.get(path);
            (
                path.to_string(),
                json!({
                    "rps": r.rps, "cpu_us_per_request": r.cpu_us,
                    "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                    "cpu_efficiency_vs_baseline": rounds.map(|r| median(r.clone())),
                    "cpu_efficiency_rounds": rounds,
                }),
            )
        })
        .collect()
}

/// `reference CPU per request / ours`, round by round.
fn round_ratios(ours: &[Load], reference: &[Load]) -> Vec<f64> {
    ours.iter()
        .zip(reference)
        .map(|(o, r)| r.cpu_us / o.cpu_us)
        .collect()
}

struct Route {
    name: &'static str,
    path: &'static str,
    cookie: Option<String>,
    baseline: Option<&'static str>,
    /// Whether its p99 at 1,000 req/s has the 5 ms budget: `/metrics`,
    /// scraped every few seconds, does not (one scrape costs 0.2 ms of
    /// CPU, so a thousand a second keep the core a quarter busy and its
    /// p99 is the queue the host's hiccups leave; docs/performance.md,
    /// "Budgets"). Its figure is printed all the same.
    latency_budget: bool,
}

fn run(secs: u64, json_path: &Path) -> i32 {
    println!(
        "hello-oauth benchmark: server on CPU {SERVER_CPU}, wrk (saturation) and oha (fixed rate) on CPU {LOAD_CPU}, {secs} s per run"
    );
    // What the figures depend on besides the code, printed and recorded so
    // that a comparison with another run can tell (`report::compare`).
    let conditions = report::conditions(&[
        ("oha", &oha(), "--version"),
        // wrk prints its version for `-v`, and exits 1.
        ("wrk", &common::wrk(), "-v"),
    ]);
    if let Some(c) = conditions.as_object() {
        let listed: Vec<String> = c.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("conditions: {}", listed.join(", "));
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_hello-oauth"));
    let binary_mib = std::fs::metadata(&bin)
        .map(|m| m.len() as f64 / MIB)
        .unwrap_or(f64::NAN);

    // Start-up time: the best of five cold starts (the first pays page-cache misses).
    let mut startups = Vec::new();
    for _ in 0..5 {
        let (server, t) = start_service(&[]);
        startups.push(t);
        drop(server);
    }
    let startup_ms = startups.iter().min().unwrap().as_secs_f64() * 1000.0;

    hello_oauth::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let wiki = rt.block_on(fake_wiki::FakeWiki::start());
    let (service, _) = start_service(&wiki_env(&wiki));
    wiki.register_callback(&format!("http://{}/oauth-callback", service.addr), false);
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = rss_mib(service.child.id());
    let idle_pss = flask::pss_mib(service.child.id());

    // The login round trip: the service's own CPU time per login (the
    // wiki's time is excluded), and the wall time a user waits on loopback.
    let logins: u32 = if secs < 5 { 50 } else { 300 };
    let cpu_before = cpu_ns(service.child.id());
    let started = Instant::now();
    let mut cookie = String::new();
    for _ in 0..logins {
        cookie = rt.block_on(log_in(service.addr, &wiki));
    }
    let login_wall_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(logins);
    let login_cpu_us =
        cpu_ns(service.child.id()).saturating_sub(cpu_before) as f64 / 1000.0 / f64::from(logins);

    // Capture the exact bytes the baseline must answer: the body and the
    // header lines (`reference::baseline::parse_head` leaves out what hyper
    // writes itself).
    let dir = target_dir().join("bench/baseline-bodies");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, path) in [("healthz", "/healthz"), ("home", "/")] {
        let (status, head, body) = http_get(service.addr, path, None).unwrap();
        assert_eq!(status, 200, "{path}");
        let lines = head.split_once('\n').map_or("", |(_, rest)| rest);
        baseline::capture(&dir, name, lines, &body);
    }
    let baseline = start_baseline(&dir, "--serve-baseline", false);
    let floor = start_baseline(&dir, "--serve-poem-on-hyper", false);
    // The yardstick until session 13: the body with `content-type` alone.
    let body_only = start_baseline(&dir, "--serve-baseline", true);

    let routes = [
        Route {
            name: "GET /healthz",
            path: "/healthz",
            cookie: None,
            baseline: Some("/healthz"),
            latency_budget: true,
        },
        Route {
            name: "GET / (anonymous)",
            path: "/",
            cookie: None,
            baseline: Some("/"),
            latency_budget: true,
        },
        Route {
            name: "GET / (logged in)",
            path: "/",
            cookie: Some(cookie.clone()),
            baseline: Some("/"),
            latency_budget: true,
        },
        Route {
            name: "GET /api/v1/me",
            path: "/api/v1/me",
            cookie: Some(cookie.clone()),
            baseline: None,
            latency_budget: true,
        },
        Route {
            name: "GET /metrics",
            path: "/metrics",
            cookie: None,
            baseline: None,
            latency_budget: false,
        },
    ];

    // The host's steal over the load runs, printed with the figures.
    let proc_stat = || {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_proc_stat(&text))
    };
    let stat_before = proc_stat();
    let mut results = BTreeMap::new();
    let mut base_results = BTreeMap::new();
    let mut base_fixed: BTreeMap<&str, Load> = BTreeMap::new();
    let mut floor_results: BTreeMap<&str, Load> = BTreeMap::new();
    // CPU ratios to the baseline, round by round (see ROUNDS).
    let mut efficiencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut floor_efficiencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut body_only_results: BTreeMap<&str, Load> = BTreeMap::new();
    let mut body_only_efficiencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for route in &routes {
        let url = format!("http://{}{}", service.addr, route.path);
        if http_get(service.addr, route.path, route.cookie.as_deref()).map(|r| r.0) != Some(200) {
            println!(
                "  skipping {}: it does not answer 200 on this build",
                route.name
            );
            continue;
        }
        let cookie = route.cookie.as_deref();
        let pid = service.child.id();
        let fixed = load(pid, &url, cookie, secs, Some(1000));
        let Some(bpath) = route.baseline else {
            results.insert(route.name, (load(pid, &url, cookie, secs, None), fixed));
            continue;
        };
        let round_secs = (2 * secs / ROUNDS).max(1);
        let burl = format!("http://{}{}", baseline.addr, bpath);
        // The baseline at the same rate, right after: a p99 at 1,000 req/s
        // that the hyper server shares was the host's, not the service's.
        base_fixed.insert(
            route.name,
            load(baseline.child.id(), &burl, None, secs, Some(1000)),
        );
        let furl = format!("http://{}{}", floor.addr, bpath);
        let body_only_url = format!("http://{}{}", body_only.addr, bpath);
        let with_floor = !floor_results.contains_key(bpath);
        let (mut ours, mut base, mut bare, mut plain) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Every other round in the other order (ABBA): whatever the
            // first run of a round leaves behind, in the caches or in the
            // host's scheduling, falls on each server as often.
            let service_first = round % 2 == 0;
            if service_first {
                ours.push(load(pid, &url, cookie, round_secs, None));
            }
            base.push(load(baseline.child.id(), &burl, None, round_secs, None));
            // Bare poem answering the same bytes, once per page: what the
            // framework alone costs on this machine; and the body-only
            // baseline, what the service's eight other headers cost hyper.
            if with_floor {
                bare.push(load(floor.child.id(), &furl, None, round_secs, None));
                plain.push(load(
                    body_only.child.id(),
                    &body_only_url,
                    None,
                    round_secs,
                    None,
                ));
            }
            if !service_first {
                ours.push(load(pid, &url, cookie, round_secs, None));
            }
        }
        efficiencies.insert(route.name, round_ratios(&ours, &base));
        if with_floor {
            floor_efficiencies.insert(bpath, round_ratios(&bare, &base));
            floor_results.insert(bpath, combine(&bare));
            body_only_efficiencies.insert(bpath, round_ratios(&plain, &base));
            body_only_results.insert(bpath, combine(&plain));
        }
        base_results.insert(route.name, combine(&base));
        let sat = combine(&ours);
        results.insert(route.name, (sat, fixed));
    }
    let stat_after = proc_stat();
    let loaded_rss = rss_mib(service.child.id());
    let loaded_pss = flask::pss_mib(service.child.id());

    // Report.
    println!();
    println!(
        "{:<20} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "route", "req/s", "vs base", "CPU us/r", "vs base", "p50 ms", "p99 ms", "p99@1k", "errors"
    );
    let pct = |r: Option<f64>| {
        r.map(|r| format!("{:.0}%", r * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    let mut json_routes = serde_json::Map::new();
    for route in &routes {
        let Some((sat, fixed)) = results.get(route.name) else {
            continue;
        };
        let base = base_results.get(route.name);
        let ratio = base.map(|b| sat.rps / b.rps);
        let rounds = efficiencies.get(route.name);
        let efficiency = rounds.map(|r| median(r.clone()));
        let errors = sat.errors + sat.non_2xx + fixed.errors + fixed.non_2xx;
        println!(
            "{:<20} {:>9.0} {:>8} {:>9.2} {:>8} {:>8.3} {:>8.3} {:>8.3} {:>6}",
            route.name,
            sat.rps,
            pct(ratio),
            sat.cpu_us,
            pct(efficiency),
            sat.p50_ms,
            sat.p99_ms,
            fixed.p99_ms,
            errors
        );
        json_routes.insert(
            route.name.into(),
            route_json(sat, fixed, base, base_fixed.get(route.name), rounds),
        );
    }
    for (name, b) in &base_results {
        let at_1k = base_fixed
            .get(name)
            .map_or_else(|| "-".into(), |f| format!("{:.3}", f.p99_ms));
        println!(
            "{:<20} {:>9.0} {:>8} {:>9.2} {:>8} {:>8.3} {:>8.3} {:>8}   (minimal hyper server, same bytes as {name})",
            "  baseline", b.rps, "", b.cpu_us, "", b.p50_ms, b.p99_ms, at_1k
        );
    }
    for route in &routes {
        let (Some(bpath), Some(base)) = (route.baseline, base_results.get(route.name)) else {
            continue;
        };
        if route.cookie.is_some() {
            continue; // each page's references once, with its anonymous route
        }
        for (label, results, efficiencies, what) in [
            (
                "  poem floor",
                &floor_results,
                &floor_efficiencies,
                "bare poem on the service's accept loop, no middleware, same bytes as",
            ),
            (
                "  body only",
                &body_only_results,
                &body_only_efficiencies,
                "the minimal hyper server, content-type its only header (the yardstick until \
                 session 13), same body as",
            ),
        ] {
            if let Some(r) = results.get(bpath) {
                println!(
                    "{label:<20} {:>9.0} {:>8} {:>9.2} {:>8}   ({what} {bpath})",
                    r.rps,
                    pct(Some(r.rps / base.rps)),
                    r.cpu_us,
                    pct(efficiencies.get(bpath).map(|r| median(r.clone())))
                );
            }
        }
    }
    println!(
        "\nThe second 'vs base' is the baseline's CPU time per request over ours: the \
         throughput ratio on a quiet, dedicated core. The budgets use it, because req/s moves \
         with whatever else shares the machine. It is the median of {ROUNDS} rounds, each the \
         service and its references back to back; the rounds' own ratios:"
    );
    let spread = |name: &str, rounds: &[f64]| {
        let each: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.0}%", r * 100.0))
            .collect();
        println!("  {name:<36} {}", each.join(" "));
    };
    for route in &routes {
        if let Some(rounds) = efficiencies.get(route.name) {
            spread(route.name, rounds);
        }
    }
    for (bpath, rounds) in &floor_efficiencies {
        spread(&format!("poem floor, same bytes as {bpath}"), rounds);
    }
    for (bpath, rounds) in &body_only_efficiencies {
        spread(&format!("body only, same body as {bpath}"), rounds);
    }
    let host_steal = steal_percent(stat_before, stat_after);
    if let Some(steal) = host_steal {
        println!(
            "  host steal during the load runs: {steal:.1} % of the VM's CPU time (/proc/stat): the \
             more, the wider the rounds spread"
        );
    }
    println!();
    println!(
        "login round trip ({logins} logins through the fake wiki): {login_cpu_us:.0} us of \
         service CPU per login, {login_wall_ms:.2} ms wall per login"
    );
    println!("start-up to first healthy answer: {startup_ms:.1} ms (best of 5)");
    println!(
        "resident memory: idle {idle_rss:.1} MiB, after the saturated runs {loaded_rss:.1} MiB \
         (PSS {idle_pss:.1} / {loaded_pss:.1} MiB)"
    );
    println!("release binary: {binary_mib:.1} MiB ({})", bin.display());
    // Measured by `scripts/bench --cold-build`, which writes this file.
    let cold_build: Option<Value> = std::fs::read(target_dir().join("bench/cold-build.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match &cold_build {
        Some(c) => println!(
            "cold release build: {} s on {} cores (measured {}; scripts/bench --cold-build measures it again)",
            c["seconds"],
            c["cores"],
            c["measured"].as_str().unwrap_or("?")
        ),
        None => println!(
            "cold release build: not measured yet (scripts/bench --cold-build measures it, about five minutes)"
        ),
    }

    let flask_report = flask::run(
        secs,
        &flask::Ours {
            env: &wiki_env(&wiki),
            pid: service.child.id(),
            addr: service.addr,
            keep_alive: results.get("GET / (anonymous)").map(|(sat, _)| sat),
            idle_rss,
            idle_pss,
        },
    );

    // Budgets (docs/performance.md).
    // Each budget under a name that does not change with its figure, so
    // that the next run's comparison finds it (`report::compare`), with
    // whether it held and the line printed for it.
    let mut checked: Vec<(String, bool, String)> = Vec::new();
    let mut check = |name: String, ok: bool, what: String| {
        println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
        checked.push((name, ok, what));
    };
    println!("\nbudgets:");
    let ratio = |name: &str| efficiencies.get(name).map(|r| median(r.clone()));
    if let Some(r) = ratio("GET /healthz") {
        check(
            "/healthz >= 80% of the baseline".into(),
            r >= 0.8,
            format!("/healthz at {:.0}% of the baseline (>= 80%)", r * 100.0),
        );
    }
    if let Some(r) = ratio("GET / (logged in)") {
        check(
            "logged-in / >= 40% of the baseline".into(),
            r >= 0.4,
            format!(
                "logged-in / at {:.0}% of the static page baseline (>= 40%)",
                r * 100.0
            ),
        );
    }
    if let Some(r) = ratio("GET / (anonymous)") {
        check(
            "anonymous / >= 60% of the baseline".into(),
            r >= 0.6,
            format!("anonymous / at {:.0}% of the baseline (>= 60%)", r * 100.0),
        );
    }
    check(
        "idle RSS <= 12 MiB".into(),
        idle_rss <= 12.0,
        format!("idle RSS {idle_rss:.1} MiB (<= 12 MiB)"),
    );
    check(
        "RSS after saturation <= 32 MiB".into(),
        loaded_rss <= 32.0,
        format!("RSS after saturation {loaded_rss:.1} MiB (<= 32 MiB)"),
    );
    check(
        "start-up <= 100 ms".into(),
        startup_ms <= 100.0,
        format!("start-up {startup_ms:.1} ms (<= 100 ms)"),
    );
    for route in &routes {
        let name = route.name;
        let Some((sat, fixed)) = results.get(name) else {
            continue;
        };
        if route.latency_budget {
            let beside = base_fixed.get(name).map_or_else(String::new, |b| {
                format!("; the hyper baseline's, right after: {:.2} ms", b.p99_ms)
            });
            check(
                format!("{name}: p99 at 1,000 req/s <= 5 ms"),
                fixed.p99_ms <= 5.0,
                format!(
                    "{name}: p99 at 1,000 req/s {:.2} ms (<= 5 ms){beside}",
                    fixed.p99_ms
                ),
            );
        } else {
            println!(
                "  [ -- ] {name}: p99 at 1,000 req/s {:.2} ms (no latency budget)",
                fixed.p99_ms
            );
        }
        check(
            format!("{name}: no errors"),
            sat.errors + sat.non_2xx + fixed.errors + fixed.non_2xx == 0,
            format!("{name}: no errors and no non-2xx answers"),
        );
    }

    let failed: Vec<&String> = checked
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(_, _, what)| what)
        .collect();
    let budgets: serde_json::Map<String, Value> = checked
        .iter()
        .map(|(name, ok, what)| (name.clone(), json!({ "held": ok, "line": what })))
        .collect();

    // A route's CPU per request as a share of a reference's, through the
    // baseline both were measured against. Not budgets. Against bare poem
    // on the same accept loop: what the service's own work costs on top of
    // the framework, the figure the budget decision in docs/performance.md
    // ("What would close the gaps") turns on. Against the body-only
    // baseline: a run read beside those before session 13 ("The
    // yardstick's bytes").
    let shares_of = |reference: &BTreeMap<&str, Vec<f64>>| -> BTreeMap<&'static str, f64> {
        routes
            .iter()
            .filter_map(|route| {
                let ours = ratio(route.name)?;
                let theirs = median(reference.get(route.baseline?)?.clone());
                Some((route.name, ours / theirs))
            })
            .collect()
    };
    let floor_shares = shares_of(&floor_efficiencies);
    let body_only_shares = shares_of(&body_only_efficiencies);
    for (title, shares) in [
        (
            "the body-only baseline, the yardstick until session 13 (CPU per request; not a budget)",
            &body_only_shares,
        ),
        (
            "bare poem on the same accept loop (CPU per request; not a budget, \
             docs/performance.md \"What would close the gaps\")",
            &floor_shares,
        ),
    ] {
        if !shares.is_empty() {
            println!("\nshare of {title}:");
            for (name, share) in shares {
                println!("  {name:<20} {}", pct(Some(*share)));
            }
        }
    }

    let report = json!({
        "conditions": conditions,
        "duration_seconds": secs,
        "host_steal_percent": host_steal,
        "share_of_poem_floor": floor_shares,
        "share_of_body_only_baseline": body_only_shares,
        "routes": json_routes,
        "startup_ms": startup_ms,
        "login_cpu_us": login_cpu_us,
        "login_wall_ms": login_wall_ms,
        "idle_rss_mib": idle_rss,
        "loaded_rss_mib": loaded_rss,
        "idle_pss_mib": idle_pss,
        "loaded_pss_mib": loaded_pss,
        "binary_mib": binary_mib,
        "cold_build": cold_build,
        "failed_budgets": failed,
        "budgets": budgets,
        "flask": flask_report.clone(),
        "poem_floor": reference_json(&floor_results, &floor_efficiencies),
        "body_only_baseline": reference_json(&body_only_results, &body_only_efficiencies),
    });
    if let Some(dir) = json_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if json_path.exists() {
        let previous = json_path.with_file_name("previous.json");
        let _ = std::fs::rename(json_path, &previous);
        if let Ok(prev) = std::fs::read_to_string(&previous)
            .map_err(|_| ())
            .and_then(|s| serde_json::from_str::<Value>(&s).map_err(|_| ()))
        {
            println!("\ncompared with the previous run ({}):", previous.display());
            for line in report::compare(&prev, &report) {
                println!("  {line}");
            }
        }
    }
    std::fs::write(json_path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    println!("\nfigures written to {}", json_path.display());
    if let Some(why) = flask_report["skipped"]
        .as_str()
        .filter(|w| *w != "--no-flask")
    {
        println!("SKIPPED Flask/uWSGI comparison: {why}");
    }
    if failed.is_empty() {
        println!("all budgets held");
        0
    } else {
        println!("{} budget(s) failed", failed.len());
        1
    }
}
