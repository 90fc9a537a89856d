//! What the load and soak benches share: flags, paths, ports and the load
//! generator.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The value after `name` on the command line.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Cargo's target directory, found from the release binary's path
/// (`target/<profile>/hello-oauth`).
pub fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_hello-oauth"));
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The oha binary: `$OHA`, on `PATH`, or in cargo's bin directory.
pub fn oha() -> PathBuf {
    if let Ok(p) = std::env::var("OHA") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("oha");
        if p.exists() {
            return p;
        }
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let p = home.join("bin/oha");
    assert!(
        p.exists(),
        "oha not found: install it with `cargo install oha --locked` or set OHA"
    );
    p
}
