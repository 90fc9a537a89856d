//! Attacks and abuse as an outsider would try them: framing, sniffing,
//! oversized requests, floods, slow requests, and what every response says
//! about caching.

use std::time::{Duration, Instant};

use hello_oauth::config::OAuthConsumer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::fake_wiki::{Blackhole, CONSUMER_KEY, CONSUMER_SECRET};
use crate::helpers::TestApp;

fn assert_hardened(resp: &reqwest::Response) {
    let h = resp.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
}

#[tokio::test]
async fn every_page_forbids_framing_sniffing_and_third_party_resources() {
    let app = TestApp::spawn().await;

    let home = app.get_page("/").await;
    assert_hardened(&home);
    assert_eq!(home.headers()["cache-control"], "no-store");

    let missing = app.get_page("/nope").await;
    assert_eq!(missing.status(), 404);
    assert_hardened(&missing);

    let json_error = app.client.delete(app.url("/")).send().await.unwrap();
    assert_hardened(&json_error);
    assert_eq!(json_error.headers()["cache-control"], "no-store");

    let css = app
        .client
        .get(app.url("/static/style.css"))
        .send()
        .await
        .unwrap();
    assert_hardened(&css);
    assert!(
        css.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    app.stop().await;
}

#[tokio::test]
async fn hsts_is_sent_only_behind_https() {
    let app = TestApp::spawn().await;

    let plain = app.client.get(app.url("/")).send().await.unwrap();
    assert!(plain.headers().get("strict-transport-security").is_none());
    let https = app
        .client
        .get(app.url("/"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(https.headers().get("strict-transport-security").is_some());
    app.stop().await;
}

#[tokio::test]
async fn a_body_larger_than_the_limit_is_refused_before_it_is_read() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;

    let resp = app
        .client
        .post(app.url("/login"))
        .header("accept", "text/html")
        .body(vec![b'a'; 100_000])
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 413);
    assert_hardened(&resp);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("The request body is too large")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_header_block_gets_a_431_that_says_what_to_do() {
    let app = TestApp::spawn().await;

    let resp = app
        .client
        .get(app.url("/"))
        .header("cookie", format!("junk={}", "x".repeat(40_000)))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 431);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "headers_too_large");
    assert!(body["message"].as_str().unwrap().contains("cookies"));
    app.stop().await;
}

/// An app whose wiki accepts connections and never answers.
async fn app_with_a_silent_wiki(
    wiki: &Blackhole,
    tweak: impl FnOnce(&mut hello_oauth::Config),
) -> TestApp {
    let index = wiki.index_url();
    TestApp::spawn_with(|c| {
        c.mwuri = url::Url::parse(&index).unwrap();
        c.consumer = Some(OAuthConsumer {
            key: CONSUMER_KEY.into(),
            secret: CONSUMER_SECRET.to_owned().into(),
        });
        c.drain_timeout = Duration::from_secs(1);
        tweak(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_concurrency_limit_a_request_gets_a_quick_503_and_healthz_still_answers() {
    let wiki = Blackhole::start().await;
    let app = app_with_a_silent_wiki(&wiki, |c| {
        c.max_concurrent = 2;
        c.wiki_timeout = Duration::from_secs(20);
    })
    .await;

    // Two logins wait on the wiki, holding both places.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = crate::helpers::client_with(Default::default());
            let url = app.url("/login");
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for _ in 0..200 {
        if wiki.connections() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(wiki.connections(), 2, "both logins reached the wiki");

    // A third request is turned away at once.
    let started = Instant::now();
    let third = app.get_page("/").await;
    let took = started.elapsed();
    assert_eq!(third.status(), 503);
    assert!(took < Duration::from_millis(500), "the 503 took {took:?}");
    assert_eq!(third.headers()["retry-after"], "1");
    assert_hardened(&third);
    assert!(third.text().await.unwrap().contains("The tool is busy"));

    // Kubernetes' health check still gets through.
    for _ in 0..3 {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }

    // The wiki hangs up: the two logins end with a message, the places free up.
    drop(wiki);
    for login in held {
        let status = tokio::time::timeout(Duration::from_secs(5), login)
            .await
            .expect("the held logins end once the wiki hangs up")
            .unwrap()
            .unwrap();
        assert_eq!(status, 303);
    }
    assert_eq!(app.get_page("/").await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_a_503_about_when_the_deadline_passes() {
    let wiki = Blackhole::start().await;
    let app = app_with_a_silent_wiki(&wiki, |c| {
        c.request_timeout = Duration::from_secs(1);
        c.wiki_timeout = Duration::from_secs(20);
    })
    .await;

    let started = Instant::now();
    let resp = app.get_page("/login").await;
    let took = started.elapsed();

    assert_eq!(resp.status(), 503);
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(2),
        "answered after {took:?}"
    );
    assert_hardened(&resp);
    assert!(resp.text().await.unwrap().contains("took too long"));
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_without_being_read_to_its_end() {
    let (app, wiki) = TestApp::with_fake_wiki_and(|c| c.max_body_bytes = 4096).await;
    app.log_in(&wiki).await;
    let home = app.home().await;
    let marker = "name=\"csrf\" value=\"";
    let start = home.find(marker).unwrap() + marker.len();
    let csrf = &home[start..start + home[start..].find('"').unwrap()];
    let cookie = app.session_cookie().unwrap();

    // The right CSRF token, then 64 MiB of padding, chunked, as fast as
    // the service takes it.
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut from_service, mut to_service) = stream.into_split();
    let head = format!(
        "POST /logout HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n",
        app.addr
    );
    let first = format!("csrf={csrf}&pad=");
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "a".repeat(16 * 1024));
        let mut parts = vec![head, format!("{:x}\r\n{first}\r\n", first.len())];
        parts.extend(std::iter::repeat_n(chunk, 4096));
        for part in parts {
            let write = to_service.write_all(part.as_bytes());
            match tokio::time::timeout(Duration::from_secs(2), write).await {
                Ok(Ok(())) => sent += part.len() as u64,
                // Refused (reset), or no longer read: either way, stopped.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        sent
    });

    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), from_service.read(&mut buf))
            .await
            .expect("the service answers before the body ends")
            .unwrap();
        assert!(n > 0, "the connection closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let took = started.elapsed();
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let sent = writer.await.unwrap();

    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert!(
        sent < 32 << 20,
        "the service took {sent} bytes of a 64 MiB body: it read on"
    );
    assert!(
        app.home().await.contains("Hello Example User!"),
        "not logged out by an oversized form"
    );
    println!(
        "refused with {status_line:?} after {took:?}; {sent} bytes got out before the service stopped reading"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_return_path_whose_dot_segments_fold_into_another_host_ends_on_the_home_page() {
    // Found by the fuzzer (tests/fuzz/regressions/safe_next): `/.//host`
    // resolves to `//host`, a link to another site.
    let (app, wiki) = TestApp::with_fake_wiki().await;
    for next in [
        "/.//evil.example",
        "/..//evil.example/x",
        "/a/../..//evil.example",
    ] {
        let query: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let authorize = app.start_login(&format!("/login?next={query}")).await;
        let back = app
            .client
            .get(wiki.approve(&authorize).await)
            .send()
            .await
            .unwrap();
        assert_eq!(back.headers()["location"], "/", "next={next:?}");

        // Logged in, /login sends the user straight to `next`: home, too.
        let again = app.get_page(&format!("/login?next={query}")).await;
        assert_eq!(again.headers()["location"], "/", "next={next:?}");
        let home = app.home().await;
        let marker = "name=\"csrf\" value=\"";
        let start = home.find(marker).unwrap() + marker.len();
        let csrf = home[start..start + home[start..].find('"').unwrap()].to_owned();
        app.client
            .post(app.url("/logout"))
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap();
    }
    app.stop().await;
}
