//! Telemetry set-up. Logs: one JSON object per line on stdout in production,
//! readable text for a person at a terminal. Metrics: [`metrics::Metrics`],
//! one OpenTelemetry meter provider per app, scraped at `/metrics`. This
//! module decides where telemetry goes and how it looks, never what a
//! request does.

pub mod json;
pub mod metrics;

use std::sync::OnceLock;

use tracing_appender::non_blocking::ErrorCounter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Keeps the log writer thread alive; dropping it flushes every line still
/// queued. Hold it until the process exits.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    _worker: tracing_appender::non_blocking::WorkerGuard,
}

/// Lines queued for the writer thread before new ones are dropped rather
/// than blocking a request on a slow stdout. The queue's slots are allocated
/// and touched up front (32 bytes each), so this is resident memory from the
/// start: 8,192 lines is 256 KiB, and about 2 MiB of log lines at ~250 bytes
/// each, more than a second of the busiest burst the bench produces (the
/// writer drains it in one `write(2)` per 64 KiB). 64k lines cost 2 MiB of
/// idle RSS for nothing.
const QUEUED_LINES: usize = 8 * 1024;

/// The installed writer's count of lines it dropped, queue full: set by the
/// `init` that installs the process's subscriber (there is one per process,
/// as there is one stdout).
static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because stdout did not keep up (0 before
/// [`init`]). `hello_oauth_log_lines_dropped_total` reports it: the price of
/// never blocking a request on stdout is that a long stall loses lines, and
/// an operator reading the logs must be able to tell.
pub fn dropped_log_lines() -> u64 {
    DROPPED_LINES
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Installs the global subscriber. Log lines are formatted on the request's
/// thread but written by a dedicated thread through a buffer, so a request
/// never waits on stdout (a pipe to the container runtime) and a burst costs
/// one write(2) instead of one per line. Returns an error (instead of
/// panicking) when a subscriber is already installed, which only happens in
/// tests.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_new(filter)?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        // The same object as `.json().flatten_event(true)`, at a fraction of
        // the cost: see `json`.
        LogFormat::Json => builder.event_format(json::JsonLine).try_init(),
        LogFormat::Text => builder.with_ansi(use_colour()).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))?;
    // Only the writer that was installed counts what the process drops.
    let _ = DROPPED_LINES.set(dropped);
    Ok(LogGuard { _worker: guard })
}

fn use_colour() -> bool {
    use std::io::IsTerminal as _;
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// For tests: installs a subscriber once per process; later calls do nothing.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into());
        if let Ok(guard) = init(&filter, LogFormat::Text) {
            // The test process exits without running destructors of statics.
            std::mem::forget(guard);
        }
    });
}
