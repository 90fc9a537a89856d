//! What the load and soak benches share: flags, paths, ports, the load
//! generator and a login through the fake wiki.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Child;

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

/// `$var` if set, else the first `name` on `PATH`.
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(PathBuf::from(p));
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
}

/// The oha binary: `$OHA`, on `PATH`, or in cargo's bin directory.
pub fn oha() -> PathBuf {
    if let Some(p) = tool("OHA", "oha") {
        return p;
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let p = home.join("bin/oha");
    assert!(
        p.exists(),
        "oha not found: run scripts/bench, which installs the version it pins, or set OHA"
    );
    p
}

/// The wrk binary: `$WRK` or on `PATH` (Debian's package `wrk`; scripts/bench
/// installs it).
pub fn wrk() -> PathBuf {
    tool("WRK", "wrk")
        .expect("wrk not found: `apt-get install wrk` (scripts/bench does it as root) or set WRK")
}

/// One whole login through the fake wiki (`/login` -> the wiki approves ->
/// `/oauth-callback`); checks that the home page greets the user and
/// returns the session cookie as the browser holds it after that page.
pub async fn log_in(addr: SocketAddr, wiki: &super::fake_wiki::FakeWiki) -> String {
    use reqwest::cookie::CookieStore as _;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = client
        .get(format!("http://{addr}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "/login redirects to the wiki");
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let callback = wiki.approve(&authorize).await;
    let back = client.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 303, "the callback logs in");
    let url = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
    let home = client
        .get(url.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("Hello Example User!"),
        "the login worked: {home}"
    );
    // Taken after the first home page, as a browser holds it from then on:
    // the cookie the callback set still carries its "logged in" notice, and
    // a page that shows a notice rewrites the cookie without it. Measured
    // with that cookie, every logged-in page would be a first page after
    // login (notice, layout rendered whole, session sealed again and
    // `Set-Cookie`): 124k instructions instead of the steady state's 75k.
    jar.cookies(&url)
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A server process started by a bench (hello-oauth or the baseline), killed
/// when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the service needs to log people in against the fake wiki.
pub fn wiki_env(wiki: &super::fake_wiki::FakeWiki) -> Vec<(&'static str, String)> {
    vec![
        ("TOOL_OAUTH_MWURI", wiki.index_url()),
        (
            "TOOL_OAUTH_CONSUMER_KEY",
            super::fake_wiki::CONSUMER_KEY.into(),
        ),
        (
            "TOOL_OAUTH_CONSUMER_SECRET",
            super::fake_wiki::CONSUMER_SECRET.into(),
        ),
        (
            "TOOL_SESSION_KEY",
            "bench-session-key-0123456789-abcdefghijklmnopqrstuvwxyz".into(),
        ),
        ("TOOL_WIKI_TIMEOUT_SECONDS", "5".into()),
    ]
}
