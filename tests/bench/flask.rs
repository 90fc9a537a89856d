//! The Flask/uWSGI tutorial beside hello-oauth, in the same bench run.
//!
//! `tests/bench/flask/` holds the app of Wikitech's "My first Flask OAuth
//! tool" (hello-oauth's predecessor). `scripts/bench` installs its pinned
//! dependencies once into `target/bench/flask-venv` and exports the path as
//! `HELLO_OAUTH_FLASK_VENV`; this module runs it the way Toolforge's
//! `webservice python3.11` does (uWSGI, master + 4 workers, the flags of
//! `webservice-runner --type uwsgi-python`), pinned to the server's CPU, and
//! measures it like hello-oauth's anonymous `GET /`: the same page
//! semantics (greeting + login link). Nothing here is a budget; the figures
//! are printed and written under the report's `flask` key.
//!
//! `--no-flask` skips it. A missing or broken install is reported loudly as
//! "SKIPPED Flask/uWSGI comparison: <why>" and the rest of the bench goes on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{LOAD_CPU, Load, SERVER_CPU, best, http_get, load_args, pinned, start_service_probe};
use crate::common::{free_port, target_dir};

/// uWSGI's `--http-socket` answers one request per connection (no
/// keep-alive: it closes the connection after each answer), and oha counts a
/// keep-alive connection closed under it as an error. So the
/// comparison runs oha with one request per connection against both
/// servers; the main table's keep-alive figure is printed beside it.
const ONE_PER_CONNECTION: &[&str] = &["--disable-keepalive"];

/// The mount point Toolforge gives the app (`/<tool name>`); with
/// `--manage-script-name` the app, uWSGI's default app, answers `/` too,
/// as it does behind `<tool>.toolforge.org`.
const TOOL_NAME: &str = "hello-oauth-flask";

/// The uWSGI command line of Toolforge's Python webservice: `webservice
/// python3.11 start` runs `webservice-runner --type uwsgi-python --port
/// 8000` in the container, whose `PythonWebService.run()`
/// (operations/software/tools-webservice, toolsws/wstypes/python.py) execs
/// exactly these flags, with `--venv` when `$HOME/www/python/venv` exists.
/// Local differences: the socket is on loopback and a free port instead of
/// `:8000`, the paths are this checkout's instead of `$HOME/www/python`, and
/// the log file is under target/bench instead of `$HOME/uwsgi.log`.
/// `--plugin python,python3` is kept although PyPI's uWSGI has Python built
/// in (it then prints that the plugin files are missing, and goes on).
pub fn uwsgi_args(venv: &Path, src: &Path, port: u16, log: &Path) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    vec![
        "--plugin".into(),
        "python,python3".into(),
        "--http-socket".into(),
        format!("127.0.0.1:{port}"),
        "--chdir".into(),
        s(src),
        "--logto".into(),
        s(log),
        "--callable".into(),
        "app".into(),
        "--manage-script-name".into(),
        "--workers".into(),
        "4".into(),
        "--mount".into(),
        format!("/{TOOL_NAME}={}", src.join("app.py").display()),
        "--die-on-term".into(),
        "--strict".into(),
        "--master".into(),
        "--venv".into(),
        s(venv),
    ]
}

/// The app's directory in this checkout.
fn src_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bench/flask")
}

/// The venv to run, or why the comparison is skipped. `Err(None)`: skipped
/// on purpose (`--no-flask`), no alarm.
fn venv() -> Result<PathBuf, Option<String>> {
    if std::env::args().any(|a| a == "--no-flask") {
        return Err(None);
    }
    if let Ok(why) = std::env::var("HELLO_OAUTH_FLASK_SKIPPED") {
        return Err(Some(why));
    }
    let venv = std::env::var("HELLO_OAUTH_FLASK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("bench/flask-venv"));
    if venv.join("bin/uwsgi").exists() {
        Ok(venv)
    } else {
        Err(Some(format!(
            "no uWSGI in {} (scripts/bench installs it from tests/bench/flask/requirements.txt; \
             --no-flask skips the comparison)",
            venv.display()
        )))
    }
}

/// Every process whose parent chain leads to `pid` (uWSGI's workers), found
/// from `/proc/*/stat` (this kernel has no `/proc/<pid>/task/*/children`).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // The parent is the second field after the parenthesised name.
            let ppid = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if let Some(pp) = ppid {
                parents.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// Resident memory summed over a process and its children: (RSS, PSS) in
/// MiB from `/proc/<pid>/smaps_rollup`, and how many processes. PSS divides
/// each shared page among the processes that map it, so for uWSGI's forked
/// workers it is the fair sum; RSS counts shared pages once per process.
pub fn memory(pid: u32) -> (f64, f64, usize) {
    let tree = process_tree(pid);
    let (mut rss, mut pss) = (0.0, 0.0);
    for p in &tree {
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        let field = |name: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        rss += field("Rss:") / 1024.0;
        pss += field("Pss:") / 1024.0;
    }
    (rss, pss, tree.len())
}

/// PSS of a single-process server (hello-oauth), in MiB.
pub fn pss_mib(pid: u32) -> f64 {
    memory(pid).1
}

struct Uwsgi {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Uwsgi {
    fn drop(&mut self) {
        // The workers die with the master (uWSGI sets PR_SET_PDEATHSIG);
        // wait for them so that they cost nothing to what runs next.
        let tree = process_tree(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let start = Instant::now();
        while tree
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts the tutorial under uWSGI on the server's CPU; returns it and the
/// time from exec to the first 200 on `/`.
fn start(venv: &Path) -> Result<(Uwsgi, Duration), String> {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = target_dir().join("bench/flask-uwsgi.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = pinned(SERVER_CPU, &venv.join("bin/uwsgi"));
    cmd.args(uwsgi_args(venv, &src_dir(), port, &log))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("taskset/uwsgi did not start: {e}"))?;
    let mut server = Uwsgi { child, addr };
    loop {
        if let Some((200, _, _)) = http_get(addr, "/", None) {
            return Ok((server, start.elapsed()));
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("uWSGI exited with {status}: see {}", log.display()));
        }
        if start.elapsed() > Duration::from_secs(15) {
            return Err(format!("no 200 on / within 15 s: see {}", log.display()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn skipped(why: &str) -> Value {
    println!("\n{}", "!".repeat(78));
    println!("SKIPPED Flask/uWSGI comparison: {why}");
    println!("{}", "!".repeat(78));
    json!({ "skipped": why })
}

/// What `run` needs from the main bench.
pub struct Ours<'a> {
    /// The environment hello-oauth runs with in the bench (login available).
    pub env: &'a [(&'a str, String)],
    /// The running hello-oauth: its pid and address.
    pub pid: u32,
    pub addr: SocketAddr,
    /// The main table's anonymous `GET /` at saturation, with keep-alive.
    pub keep_alive: Option<&'a Load>,
    /// Measured at idle, next to the main table's idle RSS.
    pub idle_rss: f64,
    pub idle_pss: f64,
}

fn load_json(l: &Load) -> Value {
    json!({
        "rps": l.rps, "cpu_us_per_request": l.cpu_us, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms,
        "requests": l.requests, "errors": l.errors + l.non_2xx,
    })
}

/// Measures the tutorial and hello-oauth side by side, prints the section
/// and returns the report's `flask` value.
pub fn run(secs: u64, ours: &Ours) -> Value {
    println!("\nvs the Flask/uWSGI tutorial (tests/bench/flask, Toolforge's uWSGI flags):");
    let venv = match venv() {
        Ok(v) => v,
        Err(None) => {
            println!("  skipped (--no-flask)");
            return json!({ "skipped": "--no-flask" });
        }
        Err(Some(why)) => return skipped(&why),
    };

    // Start-up, exec to the first 200 on `/`, best of five for both.
    let mut flask_startups = Vec::new();
    let mut our_startups = Vec::new();
    for _ in 0..5 {
        match start(&venv) {
            Ok((server, t)) => {
                flask_startups.push(t);
                drop(server);
            }
            Err(why) => return skipped(&why),
        }
        let (server, t) = start_service_probe(ours.env, "/");
        our_startups.push(t);
        drop(server);
    }
    let ms = |v: &[Duration]| v.iter().min().unwrap().as_secs_f64() * 1000.0;
    let (flask_startup_ms, our_startup_ms) = (ms(&flask_startups), ms(&our_startups));

    let (uwsgi, _) = match start(&venv) {
        Ok(s) => s,
        Err(why) => return skipped(&why),
    };
    std::thread::sleep(Duration::from_millis(500));
    let pid = uwsgi.child.id();
    let (idle_rss, idle_pss, processes) = memory(pid);

    let url = format!("http://{}/", uwsgi.addr);
    let our_url = format!("http://{}/", ours.addr);
    let fixed = load_args(pid, &url, None, secs, Some(1000), ONE_PER_CONNECTION);
    let our_fixed = load_args(
        ours.pid,
        &our_url,
        None,
        secs,
        Some(1000),
        ONE_PER_CONNECTION,
    );
    // Alternating saturation runs, best of two each.
    let mut sat = load_args(pid, &url, None, secs, None, ONE_PER_CONNECTION);
    let mut our_sat = load_args(ours.pid, &our_url, None, secs, None, ONE_PER_CONNECTION);
    sat = best(
        sat,
        load_args(pid, &url, None, secs, None, ONE_PER_CONNECTION),
    );
    our_sat = best(
        our_sat,
        load_args(ours.pid, &our_url, None, secs, None, ONE_PER_CONNECTION),
    );
    let (loaded_rss, loaded_pss, _) = memory(pid);
    // hello-oauth's, after the main table's runs and these.
    let (our_loaded_rss, our_loaded_pss, _) = memory(ours.pid);
    drop(uwsgi);

    // Report.
    println!(
        "  uWSGI master + 4 workers on CPU {SERVER_CPU}, oha on CPU {LOAD_CPU}, 32 connections, \
         one request per connection for both\n  (uWSGI's --http-socket does not keep \
         connections alive)"
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>8} {:>8} {:>9} {:>10} {:>6}",
        "", "req/s", "CPU us/r", "p50 ms", "p99 ms", "p99@1k", "rate@1k", "errors"
    );
    for (name, s, f) in [
        ("Flask/uWSGI tutorial", &sat, &fixed),
        ("hello-oauth", &our_sat, &our_fixed),
    ] {
        println!(
            "  {:<22} {:>9.0} {:>9.1} {:>8.3} {:>8.3} {:>9.3} {:>10.0} {:>6}",
            name,
            s.rps,
            s.cpu_us,
            s.p50_ms,
            s.p99_ms,
            f.p99_ms,
            f.rps,
            s.errors + s.non_2xx + f.errors + f.non_2xx
        );
    }
    if let Some(k) = ours.keep_alive {
        println!(
            "  {:<22} {:>9.0} {:>9.1} {:>8.3} {:>8.3}   (the main table's anonymous /, keep-alive)",
            "hello-oauth keep-alive", k.rps, k.cpu_us, k.p50_ms, k.p99_ms
        );
    }
    if fixed.rps < 950.0 {
        println!(
            "  Flask/uWSGI did not sustain 1,000 req/s: it achieved {:.0} req/s",
            fixed.rps
        );
    }
    println!(
        "  memory, Flask/uWSGI ({processes} processes): idle RSS sum {idle_rss:.1} MiB, PSS sum \
         {idle_pss:.1} MiB; after load RSS {loaded_rss:.1} MiB, PSS {loaded_pss:.1} MiB"
    );
    println!(
        "  memory, hello-oauth (1 process): idle RSS {:.1} MiB, PSS {:.1} MiB; after load RSS \
         {:.1} MiB, PSS {:.1} MiB",
        ours.idle_rss, ours.idle_pss, our_loaded_rss, our_loaded_pss
    );
    let throughput = our_sat.rps / sat.rps;
    let cpu = sat.cpu_us / our_sat.cpu_us;
    let mem = loaded_pss / our_loaded_pss;
    let keep_alive = ours.keep_alive.map(|k| k.rps / sat.rps);
    println!(
        "  => hello-oauth is {throughput:.1}x the throughput{}, {cpu:.1}x less CPU per request, \
         {mem:.1}x less memory (PSS after load; {:.1}x idle), start-up {our_startup_ms:.1} ms vs \
         {flask_startup_ms:.1} ms (exec to first 200 on /, best of 5)",
        keep_alive
            .map(|k| format!(" ({k:.1}x with keep-alive)"))
            .unwrap_or_default(),
        idle_pss / ours.idle_pss,
    );

    let server = format!(
        "uWSGI {} (master + 4 workers), Flask app of tests/bench/flask",
        uwsgi_version(&venv)
    );
    let log = target_dir().join("bench/flask-uwsgi.log");
    let command = format!(
        "taskset -c {SERVER_CPU} {} {}",
        venv.join("bin/uwsgi").display(),
        uwsgi_args(&venv, &src_dir(), 0, &log).join(" ")
    )
    .replace("127.0.0.1:0", "127.0.0.1:<port>");
    json!({
        "server": server,
        "command": command,
        "oha": "32 connections, --disable-keepalive (both servers)",
        "flask": {
            "saturation": load_json(&sat),
            "at_1000rps": load_json(&fixed),
            "achieved_rps_at_1000": fixed.rps,
            "startup_ms": flask_startup_ms,
            "processes": processes,
            "idle_rss_mib": idle_rss, "idle_pss_mib": idle_pss,
            "loaded_rss_mib": loaded_rss, "loaded_pss_mib": loaded_pss,
        },
        "hello_oauth": {
            "saturation": load_json(&our_sat),
            "at_1000rps": load_json(&our_fixed),
            "saturation_keep_alive": ours.keep_alive.map(load_json),
            "startup_ms_to_first_200_on_root": our_startup_ms,
            "idle_rss_mib": ours.idle_rss, "idle_pss_mib": ours.idle_pss,
            "loaded_rss_mib": our_loaded_rss, "loaded_pss_mib": our_loaded_pss,
        },
        "ratios": {
            "throughput": throughput,
            "throughput_keep_alive": keep_alive,
            "cpu_per_request": cpu,
            "pss_after_load": mem,
            "pss_idle": idle_pss / ours.idle_pss,
        },
    })
}

fn uwsgi_version(venv: &Path) -> String {
    Command::new(venv.join("bin/uwsgi"))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
