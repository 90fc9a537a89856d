//! Attacks and abuse as an outsider would try them: framing, sniffing,
//! oversized requests, and what every response says about caching.

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
