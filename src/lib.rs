//! hello-oauth: a Toolforge tool that logs people in with their Wikimedia
//! account through MediaWiki OAuth 1.0a and greets them by name.

pub mod app;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod mediawiki;
pub mod readiness;
pub mod server;
pub mod telemetry;
pub mod web;

pub use app::App;
pub use config::Config;

/// Makes rustls use the `ring` provider (no cmake or C toolchain needed on
/// Toolforge's builder). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
