//! The load bench's wrk parser (`tests/bench/report.rs`), held to real wrk
//! output: a report it misreads would put a wrong figure beside a budget.

#[path = "../bench/report.rs"]
mod report;

use report::{parse_proc_stat, parse_wrk, steal_percent};

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
