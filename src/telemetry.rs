//! Telemetry set-up. Logs: one JSON object per line on stdout in production,
//! readable text for a person at a terminal. Metrics: [`metrics::Metrics`],
//! one OpenTelemetry meter provider per app, scraped at `/metrics`. This
//! module decides where telemetry goes and how it looks, never what a
//! request does.

pub mod metrics;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Returns an error (instead of panicking)
/// when one is already installed, which only happens in tests.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(use_colour()).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))
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
        let _ = init(&filter, LogFormat::Text);
    });
}
