//! Instructions per request: `cargo bench --bench instructions` (or
//! `scripts/bench --instructions`).
//!
//! CPU time moves with whatever else the machine runs; the number of
//! instructions the service executes for one request does not. This runs
//! the release binary under valgrind's callgrind with instrumentation off,
//! logs in through the honest fake wiki, and for each route sends warm-up
//! requests, then switches instrumentation on for a fixed number of
//! requests on one keep-alive connection, dumps the counters, and divides.
//! All of the service's threads are counted (the log writer's too), user
//! space only: the kernel's TCP work is not in these figures. The same
//! binary and the same requests give the same figure within a fraction of a
//! per cent, on a busy machine too: this is how a hot-path change is judged
//! (docs/performance.md, "Instructions per request").
//!
//! Flags: `--requests N` (default 2000), `--warmup N` (default 300),
//! `--json PATH` (default target/bench/instructions.json; the previous file
//! is compared with and kept as instructions-previous.json). Needs valgrind
//! (`apt-get install valgrind`); says SKIPPED and exits 0 without it.
//! `HELLO_OAUTH_BIN=target/profiling/hello-oauth` measures the `profiling`
//! build instead (the same code, with symbols): its dumps in
//! target/bench/callgrind/ then break down by function with
//! `callgrind_annotate --inclusive=yes`. Only loopback is used.

// A panic is how the bench reports a broken set-up.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "../journeys/fake_wiki.rs"]
mod fake_wiki;

#[allow(dead_code)]
#[path = "common.rs"]
mod common;
use common::{Server, flag, free_port, log_in, target_dir, wiki_env};

// The load bench's minimal hyper server and bare poem, measured here too.
#[path = "reference.rs"]
mod reference;

#[allow(dead_code)]
#[path = "report.rs"]
mod report;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // This binary, run under callgrind by itself, is the reference server.
    if reference::serve_if_asked(&args) {
        return;
    }
    let requests: u64 = flag(&args, "--requests").map_or(2000, |s| s.parse().unwrap());
    let warmup: u64 = flag(&args, "--warmup").map_or(300, |s| s.parse().unwrap());
    let json_path = flag(&args, "--json")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench/instructions.json"));
    let missing = ["valgrind", "callgrind_control"]
        .into_iter()
        .find(|tool| Command::new(tool).arg("--version").output().is_err());
    if let Some(tool) = missing {
        eprintln!("{}", "!".repeat(78));
        eprintln!("SKIPPED instructions per request: {tool} not found (apt-get install valgrind)");
        eprintln!("{}", "!".repeat(78));
        return;
    }
    run(requests, warmup, &json_path);
}

/// One keep-alive connection that sends GETs and reads whole answers.
struct Client {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    /// Whether the last answer set a cookie.
    set_cookie: bool,
    /// The last answer's body.
    body: Vec<u8>,
    /// The last answer's header lines, `name: value` each.
    head: String,
}

impl Client {
    fn new(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n{cookie}\r\n")
                .into_bytes();
        Client {
            reader: BufReader::new(stream),
            request,
            set_cookie: false,
            body: Vec::new(),
            head: String::new(),
        }
    }

    /// Sends the request once; returns the status.
    fn get(&mut self) -> u16 {
        self.reader.get_mut().write_all(&self.request).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0usize;
        self.set_cookie = false;
        self.head.clear();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
            if header.to_ascii_lowercase().starts_with("set-cookie:") {
                self.set_cookie = true;
            }
            self.head.push_str(header);
            self.head.push('\n');
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).unwrap();
        status
    }
}

fn callgrind_control(args: &[&str], pid: u32) {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "callgrind_control {args:?} failed");
}

/// The event total of a callgrind dump (`totals:` or `summary:` line).
fn dump_total(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    // `summary:` in the header is 0 for a dump taken by callgrind_control;
    // `totals:` at the end has the counts.
    text.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no totals in {}", path.display()))
}

fn dumps(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
}

/// Starts `cmd` (program and arguments) under callgrind, instrumentation
/// off, dumps in `dir` as `<stem>.out.<n>`; waits until `addr` answers
/// `/healthz`.
fn start_under_callgrind(cmd: Command, dir: &Path, stem: &str, addr: SocketAddr) -> Server {
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}/{stem}.out", dir.display()))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let server = Server {
        child: valgrind.spawn().expect("valgrind starts"),
        addr,
    };
    loop {
        if TcpStream::connect(addr).is_ok() && Client::new(addr, "/healthz", None).get() == 200 {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{:?} did not answer /healthz under valgrind",
            cmd.get_program()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Instructions per request of `client`'s request to the server under
/// callgrind (`pid`, dumps in `dir`): warm-up uninstrumented, then
/// `requests` counted.
fn measure(
    pid: u32,
    dir: &Path,
    client: &mut Client,
    name: &str,
    requests: u64,
    warmup: u64,
) -> f64 {
    for _ in 0..warmup {
        assert_eq!(client.get(), 200, "{name}");
    }
    let before = dumps(dir);
    callgrind_control(&["--zero"], pid);
    callgrind_control(&["--instr=on"], pid);
    for _ in 0..requests {
        assert_eq!(client.get(), 200, "{name}");
    }
    callgrind_control(&["--instr=off"], pid);
    callgrind_control(&["--dump"], pid);
    let new: Vec<PathBuf> = dumps(dir)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert_eq!(new.len(), 1, "one new dump for {name}: {new:?}");
    dump_total(&new[0]) as f64 / requests as f64
}

/// The figure and the previous run's, with the change: two table columns.
fn with_previous(value: f64, previous: Option<f64>) -> String {
    let prev = previous.map_or("-".to_owned(), |p| {
        format!("{:.1}k ({:+.1}%)", p / 1000.0, (value / p - 1.0) * 100.0)
    });
    format!("{:>11.1}k {prev:>12}", value / 1000.0)
}

fn run(requests: u64, warmup: u64, json_path: &Path) {
    hello_oauth::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let wiki = rt.block_on(fake_wiki::FakeWiki::start());

    let dir = target_dir().join("bench/callgrind");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // `HELLO_OAUTH_BIN=target/profiling/hello-oauth` for a build with
    // symbols, whose dumps `callgrind_annotate` can break down by function.
    let bin = std::env::var_os("HELLO_OAUTH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_hello-oauth")),
        PathBuf::from,
    );
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .env("PORT", addr.port().to_string())
        .env("TOOL_BIND_ADDRESS", "127.0.0.1")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("TOOL_MAX_CONCURRENT_REQUESTS", "100000")
        .envs(wiki_env(&wiki))
        // Everything is slower under valgrind, the wiki calls of a login too.
        .env("TOOL_WIKI_TIMEOUT_SECONDS", "30");
    let server = start_under_callgrind(cmd, &dir, "callgrind", addr);
    let pid = server.child.id();
    wiki.register_callback(&format!("http://{addr}/oauth-callback"), false);
    let cookie = rt.block_on(log_in(addr, &wiki));

    let routes: [(&str, &str, Option<&str>); 5] = [
        ("GET /healthz", "/healthz", None),
        ("GET / (anonymous)", "/", None),
        ("GET / (logged in)", "/", Some(&cookie)),
        ("GET /api/v1/me", "/api/v1/me", Some(&cookie)),
        ("GET /static/style.css", "/static/style.css", None),
    ];
    println!(
        "instructions per request (callgrind, release build, {requests} requests on one \
         keep-alive connection after {warmup} warm-up requests, all threads, user space)"
    );
    let previous: Value = std::fs::read_to_string(json_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    // Counts move with the compiler and the valgrind that counts as well as
    // with the code (not with the host's CPU: the program sees valgrind's):
    // say so when those changed.
    let conditions = report::conditions(&[("valgrind", Path::new("valgrind"), "--version")]);
    if !previous.is_null() {
        for note in report::condition_notes(&previous, &conditions, &report::INSTRUCTION_CONDITIONS)
        {
            println!("  note: {note}");
        }
    }
    println!("{:<34} {:>12} {:>12}", "route", "instr/req", "previous");
    let mut results = serde_json::Map::new();
    // The bytes the reference servers answer, as the load bench captures them.
    let bodies = dir.join("bodies");
    std::fs::create_dir_all(&bodies).unwrap();
    for (name, path, cookie) in routes {
        let mut client = Client::new(addr, path, cookie);
        let per_request = measure(pid, &dir, &mut client, name, requests, warmup);
        if client.set_cookie {
            println!("  note: {name} sets a cookie on every answer");
        }
        let file = match name {
            "GET /healthz" => Some("healthz"),
            "GET / (anonymous)" => Some("home"),
            _ => None,
        };
        if let Some(file) = file {
            reference::baseline::capture(&bodies, file, &client.head, &client.body);
        }
        println!(
            "{name:<34} {}",
            with_previous(per_request, previous["routes"][name].as_f64())
        );
        results.insert(name.to_owned(), json!(per_request.round()));
    }
    drop(server);

    // The minimal hyper server and bare poem of the load bench, answering
    // the same bytes: the instruction side of the throughput budgets; and
    // bare poem on the service's own accept loop (hello_oauth::server): what
    // poem::Server costs, and the floor the service's own work sits on.
    let me = std::env::current_exe().unwrap();
    let mut references = serde_json::Map::new();
    for (label, flag, body_only, stem) in [
        ("hyper baseline", "--serve-baseline", false, "baseline"),
        (
            "hyper, body only",
            "--serve-baseline",
            true,
            "baseline-body-only",
        ),
        ("bare poem", "--serve-poem-floor", false, "poem-floor"),
        (
            "poem on hyper",
            "--serve-poem-on-hyper",
            false,
            "poem-on-hyper",
        ),
    ] {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cmd = Command::new(&me);
        cmd.arg(flag)
            .arg(addr.to_string())
            .arg(&bodies)
            .args(body_only.then_some("--body-only"));
        let server = start_under_callgrind(cmd, &dir, stem, addr);
        let pid = server.child.id();
        for (route, path) in [("GET /healthz", "/healthz"), ("GET / (anonymous)", "/")] {
            let name = format!("{label}, {route}");
            let mut client = Client::new(addr, path, None);
            let per_request = measure(pid, &dir, &mut client, &name, requests, warmup);
            println!(
                "{name:<34} {}",
                with_previous(per_request, previous["references"][&name].as_f64())
            );
            references.insert(name, json!(per_request.round()));
        }
    }
    println!(
        "instructions as a share of the service's (the budgets are in CPU time: docs/performance.md)"
    );
    for route in ["GET /healthz", "GET / (anonymous)", "GET / (logged in)"] {
        let page = if route == "GET /healthz" {
            "GET /healthz"
        } else {
            "GET / (anonymous)"
        };
        let ours = results[route].as_f64().unwrap_or(f64::NAN);
        let share = |label: &str| {
            references[&format!("{label}, {page}")]
                .as_f64()
                .unwrap_or(f64::NAN)
                / ours
                * 100.0
        };
        println!(
            "  {route:<22} hyper baseline {:>4.0}%   bare poem {:>4.0}%",
            share("hyper baseline"),
            share("bare poem")
        );
    }
    let report = json!({
        "requests": requests,
        "warmup": warmup,
        "conditions": conditions,
        "routes": results,
        "references": references,
    });
    if json_path.exists() {
        let kept = json_path.with_file_name("instructions-previous.json");
        let _ = std::fs::rename(json_path, kept);
    }
    std::fs::write(json_path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written to {}", json_path.display());
}
