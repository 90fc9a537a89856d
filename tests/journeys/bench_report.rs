//! The load bench's wrk parser (`tests/bench/report.rs`), held to real wrk
//! output: a report it misreads would put a wrong figure beside a budget.

#[path = "../bench/report.rs"]
mod report;

use report::parse_wrk;

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
