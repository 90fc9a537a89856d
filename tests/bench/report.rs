//! What one load run measured ([`Load`]) and wrk's text report read into
//! it. Its own file so that the journeys binary can hold the parser to real
//! wrk output (`tests/journeys/bench_report.rs`): the bench binaries have no
//! test harness, and a `#[test]` in them would be dropped without a word.
//! Also the comparison of a run's JSON with the previous run's
//! ([`compare`]), and the run's conditions read from `/proc`, for the same
//! reason.

use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct Load {
    pub rps: f64,
    /// Server CPU time per request, in microseconds: unlike req/s, this
    /// barely moves when other work shares the machine.
    pub cpu_us: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
}

/// The median of some figures (NaN for none).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// One route's figures as the load bench writes them under `"routes"` and
/// [`compare`] reads them: the saturation run `sat`, the 1,000 req/s run
/// `fixed`, the baseline's saturation and 1,000 req/s runs when the route
/// has one, and the rounds' CPU ratios to it (their median is what the
/// route's budget is checked on).
pub fn route_json(
    sat: &Load,
    fixed: &Load,
    base: Option<&Load>,
    base_fixed: Option<&Load>,
    rounds: Option<&Vec<f64>>,
) -> Value {
    serde_json::json!({
        "rps": sat.rps, "cpu_us_per_request": sat.cpu_us,
        "p50_ms": sat.p50_ms, "p99_ms": sat.p99_ms,
        "p50_ms_at_1000rps": fixed.p50_ms, "p99_ms_at_1000rps": fixed.p99_ms,
        "requests": sat.requests + fixed.requests,
        "errors": sat.errors + sat.non_2xx + fixed.errors + fixed.non_2xx,
        "baseline_rps": base.map(|b| b.rps),
        "baseline_cpu_us_per_request": base.map(|b| b.cpu_us),
        "baseline_p99_ms_at_1000rps": base_fixed.map(|b| b.p99_ms),
        "ratio_to_baseline": base.map(|b| sat.rps / b.rps),
        "cpu_efficiency_vs_baseline": rounds.map(|r| median(r.clone())),
        "cpu_efficiency_rounds": rounds,
    })
}

/// Reads wrk's text report (`--latency`) into a [`Load`] without its CPU
/// figure; None if a figure is missing.
pub fn parse_wrk(text: &str) -> Option<Load> {
    let duration_ms = |s: &str| -> Option<f64> {
        let at = s.find(|c: char| c.is_ascii_alphabetic())?;
        let (n, unit) = s.split_at(at);
        let n: f64 = n.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => return None,
        })
    };
    let mut load = Load {
        rps: f64::NAN,
        cpu_us: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        errors: 0,
        non_2xx: 0,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", d] => load.p50_ms = duration_ms(d)?,
            ["99%", d] => load.p99_ms = duration_ms(d)?,
            [n, "requests", "in", ..] => load.requests = n.parse().ok()?,
            ["Requests/sec:", n] => load.rps = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.non_2xx = n.parse().ok()?,
            // Socket errors: connect 0, read 0, write 0, timeout 0
            ["Socket", "errors:", rest @ ..] => {
                load.errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    let read = [load.rps, load.p50_ms, load.p99_ms]
        .iter()
        .all(|figure| figure.is_finite());
    (load.requests > 0 && read).then_some(load)
}

/// The VM's CPU time from `/proc/stat`'s first line, in clock ticks:
/// `(steal, total)`. Steal is the time the host ran something else while
/// this VM had work: the noise under every CPU ratio (docs/performance.md).
/// Guest time is already counted in user and nice, so the total is the
/// first eight columns.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let mut words = text.lines().next()?.split_whitespace();
    if words.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = words
        .map(|w| w.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let columns = ticks.get(..8)?;
    Some((columns[7], columns.iter().sum()))
}

/// Steal as a share of the VM's CPU time between two `/proc/stat` samples,
/// in per cent; `None` when no time passed or a sample is missing.
pub fn steal_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((steal0, total0), (steal1, total1)) = (before?, after?);
    let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
    Some(steal1.checked_sub(steal0)? as f64 * 100.0 / total as f64)
}

/// The first CPU of `/proc/cpuinfo`, as a run's condition: its `model
/// name`, family, model and stepping, and which of [`FEATURES`] it has.
/// A VM's model name alone is often generic (`Intel(R) Xeon(R) Processor`
/// on this one), so it does not tell two hosts apart, and CPU time per
/// request moves with the host. (Instruction counts do not: under
/// valgrind the program sees valgrind's own CPU, a Haswell whatever the
/// host, so the instructions bench compares valgrind's version instead.)
/// `None` where the kernel prints no model name (aarch64).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    let first = cpuinfo.split("\n\n").next()?;
    let field = |name: &str| {
        first.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    };
    let name = field("model name")?;
    let flags: Vec<&str> = field("flags")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let features: Vec<&str> = FEATURES
        .iter()
        .copied()
        .filter(|f| flags.contains(f))
        .collect();
    let mut model = name.to_owned();
    if let (Some(family), Some(number), Some(stepping)) =
        (field("cpu family"), field("model"), field("stepping"))
    {
        model.push_str(&format!(
            " (family {family}, model {number}, stepping {stepping}; {})",
            if features.is_empty() {
                "none of the listed features".to_owned()
            } else {
                features.join(" ")
            }
        ));
    }
    Some(model)
}

/// The x86 features that code chosen at run time depends on: glibc's
/// `memcpy`, `memset` and `strlen` variants, and the AES-GCM of the
/// session cookie and the SHA-256 of the token checks (the `aes`, `ghash`
/// and `sha2` crates detect these at run time).
pub const FEATURES: [&str; 10] = [
    "sse4_2",
    "avx2",
    "bmi2",
    "avx512f",
    "avx512vl",
    "erms",
    "fsrm",
    "aes",
    "pclmulqdq",
    "sha_ni",
];

/// This run's conditions (the CPU, the kernel, the toolchain and the
/// `tools` a bench runs, each as the tool or `/proc` tells it) and its
/// commit, for the bench's JSON. `tools` are `(key, binary, the argument
/// that makes it print its version)`: oha and wrk for the load bench,
/// valgrind for the instructions bench. What cannot be read is left out
/// rather than guessed.
pub fn conditions(tools: &[(&str, &std::path::Path, &str)]) -> Value {
    use std::process::Command;
    let first_line = |cmd: &mut Command| -> Option<String> {
        let out = cmd.output().ok()?;
        // `wrk -v` prints its version and exits 1.
        let text = if out.stdout.is_empty() {
            out.stderr
        } else {
            out.stdout
        };
        let line = String::from_utf8_lossy(&text)
            .lines()
            .next()?
            .trim()
            .to_owned();
        (!line.is_empty()).then_some(line)
    };
    let mut c = serde_json::Map::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            c.insert(key.to_owned(), Value::String(v));
        }
    };
    put(
        "commit",
        first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"])),
    );
    put(
        "cpu_model",
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .as_deref()
            .and_then(cpu_model),
    );
    put(
        "kernel",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| k.trim().to_owned()),
    );
    put("rustc", first_line(Command::new("rustc").arg("-V")));
    for (key, binary, version) in tools {
        put(key, first_line(Command::new(binary).arg(version)));
    }
    if c.contains_key("commit") {
        // Uncommitted changes to tracked files make the commit a lie.
        let dirty = Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .ok()
            .map(|o| !o.stdout.is_empty());
        if let Some(dirty) = dirty {
            c.insert("dirty".to_owned(), Value::Bool(dirty));
        }
    }
    Value::Object(c)
}

/// What the load bench's figures depend on besides the code: CPU time
/// moves with the host and the kernel, req/s and latency with the load
/// generators too. A change in any of them is a reason for a figure to
/// move that is not the change being measured.
pub const LOAD_CONDITIONS: [&str; 5] = ["cpu_model", "kernel", "rustc", "oha", "wrk"];

/// What instruction counts depend on besides the code: the compiler and
/// the valgrind that counts (whose CPU the program sees, not the host's).
pub const INSTRUCTION_CONDITIONS: [&str; 2] = ["rustc", "valgrind"];

/// What both benches print before comparing figures with the previous run:
/// that it recorded no conditions (a file from before session 14), or which
/// of `keys` differ, each a reason to read the figures with care.
pub fn condition_notes(previous: &Value, now: &Value, keys: &[&str]) -> Vec<String> {
    if previous["conditions"].is_null() {
        return vec![format!(
            "the previous run recorded no conditions ({}): compare with care",
            keys.join(", ")
        )];
    }
    conditions_differ(previous, now, keys)
        .into_iter()
        .map(|difference| format!("conditions differ, compare with care: {difference}"))
        .collect()
}

/// The conditions among `keys` that differ between two runs' JSON, one line
/// each (`cpu_model "A" -> "B"`); a condition either run did not record is
/// not a difference. The commit is not a condition: it is what is compared.
pub fn conditions_differ(previous: &Value, now: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter_map(|key| {
            let a = previous["conditions"][key].as_str()?;
            let b = now["conditions"][key].as_str()?;
            (a != b).then(|| format!("{key} {a:?} -> {b:?}"))
        })
        .collect()
}

/// The load bench's comparison of a run with the previous one, in lines to
/// print: the conditions that changed, then for each route the figure its
/// budget is checked on (CPU per request as a share of the hyper
/// baseline's, the median of the rounds) with whether it left the spread of
/// the previous run's rounds, its CPU time and the baseline's, req/s and
/// p99 at 1,000 req/s, then memory and start-up, then the budgets that
/// started or stopped holding. Req/s, the noisiest figure (docs/performance.md), is no longer
/// the only one.
pub fn compare(previous: &Value, now: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let commit = |run: &Value| {
        let c = &run["conditions"];
        match (c["commit"].as_str(), c["dirty"].as_bool()) {
            (Some(commit), Some(true)) => format!("{commit} with local changes"),
            (Some(commit), _) => commit.to_owned(),
            (None, _) => "an unrecorded commit".to_owned(),
        }
    };
    lines.push(format!("commit: {} -> {}", commit(previous), commit(now)));
    lines.extend(condition_notes(previous, now, &LOAD_CONDITIONS));
    if let (Some(a), Some(b)) = (
        previous["duration_seconds"].as_u64(),
        now["duration_seconds"].as_u64(),
    ) && a != b
    {
        lines.push(format!(
            "runs of another length, compare with care: {a} s -> {b} s per run \
             (--quick runs are a smoke test of the harness)"
        ));
    }

    let change = |a: f64, b: f64| format!("{:+.1}%", (b / a - 1.0) * 100.0);
    if let Some(routes) = now["routes"].as_object() {
        for (name, route) in routes {
            let before = &previous["routes"][name];
            if before.is_null() {
                lines.push(format!("{name:<22} not in the previous run"));
                continue;
            }
            let mut parts = Vec::new();
            if let (Some(a), Some(b)) = (
                before["cpu_efficiency_vs_baseline"].as_f64(),
                route["cpu_efficiency_vs_baseline"].as_f64(),
            ) {
                let rounds: Vec<f64> = before["cpu_efficiency_rounds"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let spread = match (
                    rounds.iter().copied().reduce(f64::min),
                    rounds.iter().copied().reduce(f64::max),
                ) {
                    (Some(lo), Some(hi)) => {
                        let side = if (lo..=hi).contains(&b) {
                            "inside"
                        } else {
                            "outside"
                        };
                        format!(
                            ", {side} the previous rounds' {:.0}–{:.0} %",
                            lo * 100.0,
                            hi * 100.0
                        )
                    }
                    _ => String::new(),
                };
                parts.push(format!(
                    "share of baseline {:.0} -> {:.0} % ({:+.0} pts{spread})",
                    a * 100.0,
                    b * 100.0,
                    (b - a) * 100.0
                ));
            }
            // The baseline's own CPU time says whether the host moved: when
            // it moved as much as ours, the share did not.
            for (key, label, unit, digits) in [
                ("cpu_us_per_request", "CPU ", " µs/req", 2),
                (
                    "baseline_cpu_us_per_request",
                    "the baseline's ",
                    " µs/req",
                    2,
                ),
                ("rps", "", " req/s", 0),
            ] {
                if let (Some(a), Some(b)) = (before[key].as_f64(), route[key].as_f64()) {
                    parts.push(format!(
                        "{label}{a:.digits$} -> {b:.digits$}{unit} ({})",
                        change(a, b)
                    ));
                }
            }
            if let (Some(a), Some(b)) = (
                before["p99_ms_at_1000rps"].as_f64(),
                route["p99_ms_at_1000rps"].as_f64(),
            ) {
                parts.push(format!("p99 at 1k/s {a:.2} -> {b:.2} ms"));
            }
            lines.push(format!("{name:<22} {}", parts.join("; ")));
        }
    }

    for (key, what, unit) in [
        ("idle_rss_mib", "idle RSS", " MiB"),
        ("loaded_rss_mib", "RSS after load", " MiB"),
        ("startup_ms", "start-up", " ms"),
        ("login_cpu_us", "CPU per login", " µs"),
        ("binary_mib", "binary", " MiB"),
    ] {
        if let (Some(a), Some(b)) = (previous[key].as_f64(), now[key].as_f64()) {
            lines.push(format!(
                "{what:<22} {a:.1} -> {b:.1}{unit} ({})",
                change(a, b)
            ));
        }
    }

    // Budgets by name (`"budgets"`: name -> whether it held), so that the
    // same budget is found in both runs whatever its figure.
    if let (Some(before), Some(after)) =
        (previous["budgets"].as_object(), now["budgets"].as_object())
    {
        for (name, entry) in after {
            let held = |budget: Option<&Value>| budget.and_then(|b| b["held"].as_bool());
            match (held(before.get(name)), held(Some(entry))) {
                (Some(true), Some(false)) => lines.push(format!("budget now failing: {name}")),
                (Some(false), Some(true)) => lines.push(format!("budget now holding: {name}")),
                _ => {}
            }
        }
    }
    lines
}
