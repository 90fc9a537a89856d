//! The load bench's reference servers (`tests/bench/reference.rs`), held to
//! their one promise: they answer the bytes captured from the service, the
//! body and every header but those hyper writes itself. A reference that
//! sent fewer headers than the service would charge the service with
//! hyper's work on headers the reference never sent, and one that sent
//! others would measure something else; either would move every ratio the
//! budgets read.

#[allow(dead_code)]
#[path = "../bench/reference.rs"]
mod reference;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::helpers::TestApp;

/// An answer's header lines (`name: value`, in the order they came) and body.
async fn fetch(url: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let resp = reqwest::get(url).await.unwrap();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    (headers, resp.bytes().await.unwrap().to_vec())
}

/// Starts one of the references on a free loopback port, on a thread of
/// its own (it runs its own runtime and never returns), and waits until
/// it answers.
async fn start(serve: fn(&str, &Path, bool), dir: &Path, body_only: bool) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (a, d) = (addr.clone(), dir.to_owned());
    std::thread::spawn(move || serve(&a, &d, body_only));
    let started = Instant::now();
    while reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{addr} never answered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    format!("http://{addr}")
}

fn without(headers: &[(String, String)], names: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !names.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_references_answer_the_services_bytes_headers_included() {
    let app = TestApp::spawn().await;
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "hello-oauth-bench-reference-{}",
        std::process::id()
    )));
    let dir = &scratch.0;
    std::fs::create_dir_all(dir).unwrap();
    let mut captured = Vec::new();
    for (name, path) in [("healthz", "/healthz"), ("home", "/")] {
        let (headers, body) = fetch(&app.url(path)).await;
        let lines: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        reference::baseline::capture(dir, name, &lines, &body);
        captured.push((path, headers, body));
    }

    let hyper = start(reference::baseline::serve, dir, false).await;
    let poem = start(reference::poem_on_hyper::serve, dir, false).await;
    let body_only = start(reference::baseline::serve, dir, true).await;
    for (path, service_headers, service_body) in &captured {
        // The service's own headers, security headers and request id
        // included; `date` is the moment's, written by hyper for all.
        let expected = without(service_headers, &["date"]);
        // What makes the comparison worth having: headers the body-only
        // answer never sent.
        for name in ["content-security-policy", "cache-control", "x-request-id"] {
            assert!(
                expected.iter().any(|(k, _)| k == name),
                "{path}: the service sent no {name}: {expected:?}"
            );
        }
        for base in [&hyper, &poem] {
            let (headers, body) = fetch(&format!("{base}{path}")).await;
            assert_eq!(&body, service_body, "{base}{path}");
            assert_eq!(without(&headers, &["date"]), expected, "{base}{path}");
        }
        // The yardstick before session 13: the body, `content-type` alone.
        let (headers, body) = fetch(&format!("{body_only}{path}")).await;
        assert_eq!(&body, service_body);
        let content_type = service_headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .unwrap();
        assert_eq!(
            without(&headers, &["date", "content-length"]),
            vec![content_type.clone()],
            "{body_only}{path}"
        );
    }
    app.stop().await;
}

/// The captured answers' directory, removed when the test ends, an
/// assertion's panic included (the reference servers read it at start).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
