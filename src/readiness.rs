//! Whether the wiki answers, checked in the background for `/readyz`.
//!
//! A tokio task sends one unsigned GET to the wiki's OAuth endpoint
//! (`index.php?title=Special:OAuth/initiate`) per interval and stores the
//! outcome in [`WikiProbe`], a handful of atomics. The readiness handler only
//! reads them: it never waits on the network or a lock. Any HTTP answer,
//! whatever its status, means the wiki is reachable (an unsigned initiate is
//! refused, and that refusal is an answer); a connection error or a timeout
//! means it is not. No web imports here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use url::Url;

use crate::telemetry::metrics::Metrics;

/// Longest time one probe may take.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

const PENDING: u8 = 0;
const REACHABLE: u8 = 1;
const TIMED_OUT: u8 = 2;
const UNREACHABLE: u8 = 3;

/// The latest probe result, readable without waiting.
#[derive(Debug)]
pub struct WikiProbe {
    epoch: Instant,
    interval: Option<Duration>,
    outcome: AtomicU8,
    http_status: AtomicU16,
    latency_us: AtomicU64,
    /// Microseconds after `epoch` when the last probe finished, plus one
    /// (0 = never).
    checked_at_us: AtomicU64,
}

/// What [`WikiProbe::read`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WikiStatus {
    /// The probe is turned off (`TOOL_READINESS_INTERVAL_SECONDS=0`).
    Disabled,
    /// No probe has finished yet.
    Pending,
    /// The wiki answered with this HTTP status.
    Reachable {
        /// The status the wiki answered with.
        http_status: u16,
        /// How long the answer took.
        latency: Duration,
        /// How long ago the probe finished.
        age: Duration,
    },
    /// The wiki did not answer within the probe timeout.
    TimedOut {
        /// How long ago the probe finished.
        age: Duration,
    },
    /// The connection failed (DNS, refused, TLS, reset).
    Unreachable {
        /// How long ago the probe finished.
        age: Duration,
    },
    /// The last result is older than three intervals: the checker is stuck.
    Stale {
        /// How long ago the last probe finished.
        age: Duration,
    },
}

/// How a single probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Any HTTP answer.
    Answered(u16),
    /// No answer within the timeout.
    TimedOut,
    /// The connection failed.
    Unreachable,
}

impl WikiProbe {
    /// A probe cell for checks every `interval` (`None`: no checks).
    pub fn new(interval: Option<Duration>) -> WikiProbe {
        WikiProbe {
            epoch: Instant::now(),
            interval,
            outcome: AtomicU8::new(PENDING),
            http_status: AtomicU16::new(0),
            latency_us: AtomicU64::new(0),
            checked_at_us: AtomicU64::new(0),
        }
    }

    /// The configured interval.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Stores the result of a probe that just finished.
    pub fn record(&self, outcome: ProbeOutcome, latency: Duration) {
        let (code, status) = match outcome {
            ProbeOutcome::Answered(s) => (REACHABLE, s),
            ProbeOutcome::TimedOut => (TIMED_OUT, 0),
            ProbeOutcome::Unreachable => (UNREACHABLE, 0),
        };
        self.http_status.store(status, Ordering::Relaxed);
        self.latency_us
            .store(duration_us(latency), Ordering::Relaxed);
        self.outcome.store(code, Ordering::Relaxed);
        // Release: whoever sees the new time also sees the fields above.
        let now = duration_us(self.epoch.elapsed()).saturating_add(1);
        self.checked_at_us.store(now, Ordering::Release);
    }

    /// The latest result. Never blocks.
    pub fn read(&self) -> WikiStatus {
        let Some(interval) = self.interval else {
            return WikiStatus::Disabled;
        };
        let checked_at = self.checked_at_us.load(Ordering::Acquire);
        if checked_at == 0 {
            return WikiStatus::Pending;
        }
        let now = duration_us(self.epoch.elapsed()).saturating_add(1);
        let age = Duration::from_micros(now.saturating_sub(checked_at));
        if age > interval * 3 + probe_timeout(interval) {
            return WikiStatus::Stale { age };
        }
        match self.outcome.load(Ordering::Relaxed) {
            REACHABLE => WikiStatus::Reachable {
                http_status: self.http_status.load(Ordering::Relaxed),
                latency: Duration::from_micros(self.latency_us.load(Ordering::Relaxed)),
                age,
            },
            TIMED_OUT => WikiStatus::TimedOut { age },
            _ => WikiStatus::Unreachable { age },
        }
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Half the interval, at most [`MAX_PROBE_TIMEOUT`]: a probe always ends
/// before the next one is due.
pub fn probe_timeout(interval: Duration) -> Duration {
    (interval / 2).min(MAX_PROBE_TIMEOUT)
}

/// The URL probed: the wiki's OAuth initiate endpoint, without a signature.
pub fn probe_url(mwuri: &Url) -> Url {
    let mut url = mwuri.clone();
    url.query_pairs_mut()
        .clear()
        .append_pair("title", "Special:OAuth/initiate");
    url
}

/// Sends one probe.
pub async fn probe_once(http: &reqwest::Client, url: &Url, timeout: Duration) -> ProbeOutcome {
    let request = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "text/html,application/json")
        .timeout(timeout)
        .send();
    // The outer timeout also covers a slow DNS lookup.
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(resp)) => ProbeOutcome::Answered(resp.status().as_u16()),
        Ok(Err(e)) if e.is_timeout() => ProbeOutcome::TimedOut,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "wiki probe failed");
            ProbeOutcome::Unreachable
        }
        Err(_) => ProbeOutcome::TimedOut,
    }
}

/// Probes the wiki every interval until the task is aborted, recording each
/// result in `probe` and in the `wiki_call` metric (step `readiness`), and
/// logging each change between reachable and not.
pub async fn run(http: reqwest::Client, mwuri: Url, probe: Arc<WikiProbe>, metrics: Metrics) {
    let Some(interval) = probe.interval() else {
        return;
    };
    let url = probe_url(&mwuri);
    let timeout = probe_timeout(interval);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<bool> = None;
    loop {
        ticker.tick().await;
        let start = Instant::now();
        let outcome = probe_once(&http, &url, timeout).await;
        let latency = start.elapsed();
        probe.record(outcome, latency);
        let label = match outcome {
            ProbeOutcome::Answered(_) => "ok",
            ProbeOutcome::TimedOut => "timeout",
            ProbeOutcome::Unreachable => "unreachable",
        };
        metrics.wiki_call("readiness", label, latency);
        let reachable = matches!(outcome, ProbeOutcome::Answered(_));
        if last != Some(reachable) {
            if reachable {
                tracing::info!(wiki = %mwuri, outcome = label, "the wiki answers");
            } else {
                tracing::warn!(
                    wiki = %mwuri,
                    outcome = label,
                    "the wiki does not answer: /readyz reports not ready, logins will fail"
                );
            }
            last = Some(reachable);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_probe_targets_special_oauth_initiate_on_index_php() {
        let mwuri = Url::parse("https://meta.wikimedia.org/w/index.php").unwrap();
        assert_eq!(
            probe_url(&mwuri).as_str(),
            "https://meta.wikimedia.org/w/index.php?title=Special%3AOAuth%2Finitiate"
        );
    }

    #[test]
    fn results_are_read_back_and_turn_stale() {
        let probe = WikiProbe::new(Some(Duration::from_secs(60)));
        assert_eq!(probe.read(), WikiStatus::Pending);
        probe.record(ProbeOutcome::Answered(400), Duration::from_millis(30));
        match probe.read() {
            WikiStatus::Reachable {
                http_status,
                latency,
                age,
            } => {
                assert_eq!(http_status, 400);
                assert_eq!(latency, Duration::from_millis(30));
                assert!(age < Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        probe.record(ProbeOutcome::TimedOut, Duration::from_secs(5));
        assert!(matches!(probe.read(), WikiStatus::TimedOut { .. }));

        let quick = WikiProbe::new(Some(Duration::from_millis(1)));
        quick.record(ProbeOutcome::Unreachable, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(quick.read(), WikiStatus::Stale { .. }));

        assert_eq!(WikiProbe::new(None).read(), WikiStatus::Disabled);
    }

    #[test]
    fn the_timeout_is_half_the_interval_up_to_five_seconds() {
        assert_eq!(probe_timeout(Duration::from_secs(60)), MAX_PROBE_TIMEOUT);
        assert_eq!(
            probe_timeout(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }
}
