//! Builds the application, binds the listener (port 0 allowed, for tests),
//! and serves until a shutdown signal, then drains in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::{Config, SessionKey};
use crate::readiness::{self, WikiProbe};
use crate::telemetry::metrics::Metrics;
use crate::web::auth::LoginFailure;
use crate::web::{self, AppState};

/// A bound, ready-to-run service.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Compiles the templates, builds the state and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        crate::install_crypto_provider();
        let metrics = Metrics::new(&config.tool_name).context("setting up the metrics")?;
        // Every failure reason is a series from the start, at zero.
        metrics.register_login_failure_reasons(&LoginFailure::ALL.map(LoginFailure::as_str));
        let state = Arc::new(AppState {
            templates: web::templates::Templates::new().context("compiling the templates")?,
            started: Instant::now(),
            http: crate::http::client(&config).context("building the HTTP client")?,
            metrics,
            wiki_probe: Arc::new(WikiProbe::new(config.readiness_interval)),
            config,
        });
        let listener = TcpListener::bind(state.config.bind)
            .await
            .with_context(|| format!("binding {}", state.config.bind))?;
        let addr = listener
            .local_addr()
            .context("the listener has no local address")?;
        Ok(App {
            listener,
            addr,
            state,
        })
    }

    /// The address actually bound (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish
    /// for up to the configured drain time.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let config = &self.state.config;
        if matches!(config.session_key, SessionKey::Ephemeral(_)) {
            tracing::warn!(
                "TOOL_SESSION_KEY is not set: using an ephemeral session key, so sessions end \
                 at every restart; generate one with `hello-oauth generate-key`"
            );
        }
        if !config.oauth_configured() {
            tracing::warn!(
                "no OAuth consumer configured (TOOL_OAUTH_CONSUMER_KEY, \
                 TOOL_OAUTH_CONSUMER_SECRET): login is disabled"
            );
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            address = %self.addr,
            tool = %config.tool_name,
            wiki = %config.mwuri,
            oauth_configured = config.oauth_configured(),
            session_key = if matches!(config.session_key, SessionKey::Configured(_)) { "configured" } else { "ephemeral" },
            metrics_token = if config.metrics_token.is_some() { "configured" } else { "unset" },
            readiness_interval_seconds = config.readiness_interval.map_or(0, |i| i.as_secs()),
            "hello-oauth started"
        );
        let drain = config.drain_timeout;
        let app = web::app(self.state.clone())?;
        let prober = tokio::spawn(readiness::run(
            self.state.http.clone(),
            config.mwuri.clone(),
            self.state.wiki_probe.clone(),
            self.state.metrics.clone(),
        ));
        let served = crate::server::serve(
            self.listener,
            app,
            async move {
                shutdown.await;
                tracing::info!(
                    drain_seconds = drain.as_secs(),
                    "shutting down: draining in-flight requests"
                );
            },
            drain,
        )
        .await
        .context("serving");
        if let Ok(crate::server::Drained::TimedOut) = served {
            tracing::warn!(
                drain_seconds = drain.as_secs(),
                "the drain time ran out: closing the connections still open"
            );
        }
        prober.abort();
        let _ = prober.await;
        served?;
        tracing::info!("hello-oauth stopped");
        Ok(())
    }
}

/// Listens for SIGTERM (what Kubernetes sends) and Ctrl-C from now on, and
/// returns a future that completes on the first of them. The handlers are
/// installed before this returns, so a signal that arrives while the service
/// is still starting is not lost (nor kills the process).
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for SIGINT")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "Ctrl-C", "signal received");
        }
    })
}
