//! The load bench's wrk parser (`tests/bench/report.rs`), held to real wrk
//! output: a report it misreads would put a wrong figure beside a budget;
//! and its comparison of a run with the previous one, which must say when a
//! budgeted figure left the previous run's spread, when a budget changed
//! sides and when the runs' conditions differ.

#[path = "../bench/report.rs"]
mod report;

use report::{
    INSTRUCTION_CONDITIONS, LOAD_CONDITIONS, Load, compare, conditions, conditions_differ,
    cpu_model, median, parse_proc_stat, parse_wrk, route_json, steal_percent,
};
use serde_json::{Value, json};

/// wrk 4.2 (Debian's), `-t1 -c4 --latency -d1s`, against the service.
const HEALTHZ: &str = "\
Running 1s test @ http://127.0.0.1:18005/healthz
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   685.22us    1.15ms   7.19ms   84.35%
    Req/Sec    24.50k    10.37k   44.38k    80.00%
  Latency Distribution
     50%   85.00us
     75%  804.00us
     90%    2.58ms
     99%    4.61ms
  24398 requests in 1.01s, 14.57MB read
Requests/sec:  24192.70
Transfer/sec:     14.44MB
";

#[test]
fn a_clean_report_gives_every_figure_but_cpu() {
    let load = parse_wrk(HEALTHZ).unwrap();
    assert_eq!(load.requests, 24398);
    assert!((load.rps - 24192.70).abs() < 1e-9, "{load:?}");
    assert!((load.p50_ms - 0.085).abs() < 1e-9, "{load:?}");
    assert!((load.p99_ms - 4.61).abs() < 1e-9, "{load:?}");
    assert_eq!((load.errors, load.non_2xx), (0, 0));
    // The CPU figure is the caller's, from the server's schedstat.
    assert!(load.cpu_us.is_nan());
}

#[test]
fn failed_answers_and_socket_errors_are_counted() {
    // The 404 run, and the line wrk adds when sockets fail
    // (`printf("  Socket errors: connect %d, read %d, write %d, timeout %d\n", ...)`).
    let text = HEALTHZ.replace(
        "Requests/sec:",
        "  Socket errors: connect 1, read 12, write 0, timeout 3\n  \
             Non-2xx or 3xx responses: 29331\nRequests/sec:",
    );
    let load = parse_wrk(&text).unwrap();
    assert_eq!(load.errors, 16);
    assert_eq!(load.non_2xx, 29331);
}

#[test]
fn latencies_in_seconds_and_minutes_are_milliseconds() {
    let text = HEALTHZ
        .replace("85.00us", "1.50s")
        .replace("4.61ms", "2.00m");
    let load = parse_wrk(&text).unwrap();
    assert!((load.p50_ms - 1500.0).abs() < 1e-9, "{load:?}");
    assert!((load.p99_ms - 120_000.0).abs() < 1e-9, "{load:?}");
}

#[test]
fn a_report_missing_a_figure_is_refused_not_read_as_zero() {
    // Without `--latency` there are no percentiles; without either of the
    // two the bench reads, the report is refused.
    for percentile in ["99%", "50%"] {
        let without: String = HEALTHZ
            .lines()
            .filter(|l| !l.trim_start().starts_with(percentile))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_wrk(&without).is_none(), "without {percentile}");
    }
    // A run that completed nothing.
    let nothing = HEALTHZ.replace("24398 requests", "0 requests");
    assert!(parse_wrk(&nothing).is_none());
    // A unit it does not know, or a figure it cannot read.
    assert!(parse_wrk(&HEALTHZ.replace("4.61ms", "4.61h")).is_none());
    assert!(parse_wrk(&HEALTHZ.replace("24192.70", "fast")).is_none());
    assert!(parse_wrk("").is_none());
}

/// `/proc/stat` of this VM (Linux 6.1), two samples ten seconds apart.
const STAT_BEFORE: &str = "cpu  485029 3539 53594 322567 2704 0 12283 11429 0 0\n\
cpu0 242514 1769 26797 161283 1352 0 6141 5714 0 0\n";
const STAT_AFTER: &str = "cpu  485530 3539 53600 324061 2704 0 12283 11929 0 0\n";

#[test]
fn host_steal_is_read_as_a_share_of_the_vms_time() {
    assert_eq!(
        parse_proc_stat(STAT_BEFORE),
        Some((11429, 485029 + 3539 + 53594 + 322567 + 2704 + 12283 + 11429))
    );
    let share = steal_percent(parse_proc_stat(STAT_BEFORE), parse_proc_stat(STAT_AFTER));
    // 2,501 ticks: 501 user, 6 system, 1,494 idle and 500 stolen.
    let expected = 500.0 * 100.0 / (501.0 + 6.0 + 1494.0 + 500.0);
    assert!(
        share.is_some_and(|s| (s - expected).abs() < 1e-9),
        "{share:?}"
    );
    // No time passed, a line that is not the total, or too few columns.
    assert_eq!(
        steal_percent(parse_proc_stat(STAT_AFTER), parse_proc_stat(STAT_AFTER)),
        None
    );
    assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8 0 0"), None);
    assert_eq!(parse_proc_stat("cpu  1 2 3 4"), None);
    assert_eq!(parse_proc_stat(""), None);
}

/// The start of an x86 `/proc/cpuinfo` (two CPUs), as this VM prints it.
const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\
model\t\t: 167\nmodel name\t: Intel(R) Xeon(R) Processor\nstepping\t: 1\n\
flags\t\t: fpu vme sse4_2 aes avx2 bmi2 erms rtm avx512f avx512vl fsrm sha_ni\n\n\
processor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\n\
model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 6\nflags\t\t: fpu\n";

#[test]
fn the_cpu_is_told_apart_by_model_and_features_not_its_name_alone() {
    assert_eq!(
        cpu_model(CPUINFO).as_deref(),
        Some(
            "Intel(R) Xeon(R) Processor (family 6, model 167, stepping 1; \
             sse4_2 avx2 bmi2 avx512f avx512vl erms fsrm aes sha_ni)"
        )
    );
    // Another host's VM with the same name is another condition.
    let other = CPUINFO.replace("model\t\t: 167", "model\t\t: 106");
    assert_ne!(cpu_model(&other), cpu_model(CPUINFO));
    let fewer = CPUINFO.replace(" avx512f avx512vl", "");
    assert_ne!(cpu_model(&fewer), cpu_model(CPUINFO));
    // aarch64 kernels print no model name.
    assert_eq!(cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n"), None);
}

#[test]
fn this_runs_conditions_are_read_and_what_cannot_be_is_left_out() {
    let c = conditions(&[("oha", std::path::Path::new("/nonexistent/oha"), "--version")]);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(c["kernel"].as_str(), Some(kernel.trim()), "{c}");
    assert!(
        c["rustc"].as_str().is_some_and(|v| v.starts_with("rustc ")),
        "{c}"
    );
    // A generator that does not run is not recorded with a made-up version.
    assert!(c.get("oha").is_none(), "{c}");
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        && out.status.success()
    {
        let head = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(c["commit"].as_str(), Some(&*head), "{c}");
        assert!(c["dirty"].is_boolean(), "{c}");
    }
}

/// A run's JSON as the load bench writes it (its routes through the bench's
/// own `route_json`), cut to one route, memory and two budgets: `/healthz`
/// with these rounds' CPU ratios to a baseline at 5.6 µs a request.
fn run(commit: &str, cpu: &str, rounds: &[f64], healthz_held: bool) -> Value {
    let share = median(rounds.to_vec());
    let sat = Load {
        rps: 120_000.0 * share / 0.7,
        cpu_us: 8.0 * 0.7 / share,
        requests: 1_000_000,
        ..Load::default()
    };
    let fixed = Load {
        rps: 1000.0,
        p99_ms: 0.45,
        requests: 10_000,
        ..Load::default()
    };
    let base = Load {
        cpu_us: 5.6,
        ..Load::default()
    };
    json!({
        "conditions": {"commit": commit, "dirty": false, "cpu_model": cpu,
                       "kernel": "6.18.0", "rustc": "rustc 1.95.0", "oha": "oha 1.16.0"},
        "routes": {
            "GET /healthz": route_json(&sat, &fixed, Some(&base), None, Some(&rounds.to_vec())),
        },
        "idle_rss_mib": 10.0, "startup_ms": 7.2,
        "budgets": {
            "/healthz >= 80% of the baseline": {"held": healthz_held, "line": "…"},
            "idle RSS <= 12 MiB": {"held": true, "line": "…"},
        },
    })
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> Option<&'a String> {
    lines.iter().find(|l| l.contains(needle))
}

#[test]
fn a_budgeted_share_is_compared_with_the_spread_of_the_previous_rounds() {
    let previous = run("e84e251", "EPYC", &[0.63, 0.70, 0.73], false);
    let inside = compare(
        &previous,
        &run("abc1234", "EPYC", &[0.71, 0.72, 0.73], false),
    );
    let healthz = line_with(&inside, "GET /healthz").unwrap();
    assert!(
        healthz.contains("70 -> 72 %") && healthz.contains("inside the previous rounds' 63–73 %"),
        "{inside:#?}"
    );
    assert!(healthz.contains("CPU 8.00 -> 7.78 µs/req"), "{inside:#?}");
    assert!(
        healthz.contains("the baseline's 5.60 -> 5.60 µs/req (+0.0%)"),
        "{inside:#?}"
    );
    assert!(
        line_with(&inside, "commit: e84e251 -> abc1234").is_some(),
        "{inside:#?}"
    );
    // Same conditions: nothing to warn of; no budget changed sides.
    assert!(
        line_with(&inside, "compare with care").is_none(),
        "{inside:#?}"
    );
    assert!(line_with(&inside, "budget now").is_none(), "{inside:#?}");

    let outside = compare(
        &previous,
        &run("abc1234", "EPYC", &[0.80, 0.81, 0.82], true),
    );
    let healthz = line_with(&outside, "GET /healthz").unwrap();
    assert!(
        healthz.contains("(+11 pts, outside the previous rounds'"),
        "{outside:#?}"
    );
    assert!(
        line_with(
            &outside,
            "budget now holding: /healthz >= 80% of the baseline"
        )
        .is_some(),
        "{outside:#?}"
    );
    let back = compare(
        &run("abc1234", "EPYC", &[0.80, 0.81, 0.82], true),
        &previous,
    );
    assert!(
        line_with(&back, "budget now failing: /healthz >= 80% of the baseline").is_some(),
        "{back:#?}"
    );
}

#[test]
fn runs_on_another_cpu_or_without_recorded_conditions_are_flagged() {
    let previous = run("e84e251", "Intel Xeon", &[0.70], false);
    let now = run("e84e251", "AMD EPYC", &[0.70], false);
    assert_eq!(
        conditions_differ(&previous, &now, &LOAD_CONDITIONS),
        ["cpu_model \"Intel Xeon\" -> \"AMD EPYC\""]
    );
    // Instruction counts do not move with the host's CPU (the program sees
    // valgrind's), but do with valgrind.
    assert!(conditions_differ(&previous, &now, &INSTRUCTION_CONDITIONS).is_empty());
    let mut counted = now.clone();
    counted["conditions"]["valgrind"] = json!("valgrind-3.24.0");
    let mut counted_before = previous.clone();
    counted_before["conditions"]["valgrind"] = json!("valgrind-3.19.0");
    assert_eq!(
        conditions_differ(&counted_before, &counted, &INSTRUCTION_CONDITIONS),
        ["valgrind \"valgrind-3.19.0\" -> \"valgrind-3.24.0\""]
    );
    let lines = compare(&previous, &now);
    assert!(
        line_with(&lines, "conditions differ, compare with care: cpu_model").is_some(),
        "{lines:#?}"
    );

    // A JSON from before the conditions were recorded (session 13's), and a
    // route it did not have.
    let mut old = run("", "", &[0.70], false);
    old.as_object_mut().unwrap().remove("conditions");
    let mut now = now;
    now["routes"]["GET /metrics"] = json!({"rps": 1.0});
    old["duration_seconds"] = json!(2);
    now["duration_seconds"] = json!(10);
    let lines = compare(&old, &now);
    assert!(
        line_with(&lines, "recorded no conditions").is_some(),
        "{lines:#?}"
    );
    assert!(
        line_with(&lines, "commit: an unrecorded commit -> e84e251").is_some(),
        "{lines:#?}"
    );
    assert!(
        line_with(&lines, "GET /metrics").is_some_and(|l| l.contains("not in the previous run")),
        "{lines:#?}"
    );
    assert!(
        line_with(
            &lines,
            "runs of another length, compare with care: 2 s -> 10 s"
        )
        .is_some(),
        "{lines:#?}"
    );
    // Conditions a run did not record are not differences.
    assert!(conditions_differ(&old, &now, &LOAD_CONDITIONS).is_empty());
}
