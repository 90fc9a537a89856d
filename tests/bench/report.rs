//! What one load run measured ([`Load`]) and wrk's text report read into
//! it. Its own file so that the journeys binary can hold the parser to real
//! wrk output (`tests/journeys/bench_report.rs`): the bench binaries have no
//! test harness, and a `#[test]` in them would be dropped without a word.

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
