//! The home page and the generic pages, as a visitor sees them.

use crate::helpers::TestApp;

#[tokio::test]
async fn an_anonymous_visitor_sees_the_greeting_and_no_login_link_without_a_consumer() {
    let app = TestApp::spawn().await;

    let resp = app.get_page("/").await;

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let body = resp.text().await.unwrap();
    assert!(body.contains("<h1>Hello World!</h1>"), "{body}");
    assert!(body.contains(r#"<html lang="en">"#));
    assert!(body.contains(r#"name="viewport""#));
    assert!(body.contains("no OAuth consumer is configured"));
    assert!(!body.contains(r#"href="/login""#));
    app.stop().await;
}

#[tokio::test]
async fn the_greeting_is_configurable_and_html_escaped() {
    let app =
        TestApp::spawn_with(|c| c.greeting = "Bonjour <script>alert(1)</script> & co".into()).await;

    let body = app.get_page("/").await.text().await.unwrap();

    assert!(
        body.contains("Bonjour &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
        "{body}"
    );
    assert!(!body.contains("<script>"));
    app.stop().await;
}

#[tokio::test]
async fn login_without_a_consumer_explains_what_the_operator_must_set_once() {
    let app = TestApp::spawn().await;

    let resp = app.get_page("/login").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http must not get a Secure cookie: {cookie}"
    );

    let first = app.get_page("/").await.text().await.unwrap();
    assert!(
        first.contains(r#"<p class="flash flash-error" role="alert">Login is not available"#),
        "{first}"
    );
    assert!(first.contains("TOOL_OAUTH_CONSUMER_KEY"));

    let second = app.get_page("/").await.text().await.unwrap();
    assert!(!second.contains("flash-error"), "a flash is shown once");
    app.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_an_https_proxy() {
    let app = TestApp::spawn().await;

    let resp = app
        .client
        .get(app.url("/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();

    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    app.stop().await;
}

#[tokio::test]
async fn a_tampered_or_foreign_session_cookie_is_ignored_and_replaced() {
    let app = TestApp::spawn().await;

    let resp = app
        .client
        .get(app.url("/"))
        .header("cookie", "hello_oauth_session=eyJmbGFzaGVzIjpbXX0%3D")
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    let removal = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(removal.starts_with("hello_oauth_session=;"), "{removal}");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    app.stop().await;
}

#[tokio::test]
async fn a_session_written_by_one_replica_is_read_by_another_with_the_same_key() {
    let key = hello_oauth::config::generate_session_key();
    let same_key = |c: &mut hello_oauth::Config| {
        c.session_key = hello_oauth::config::SessionKey::Configured(key.clone().into());
    };
    let a = TestApp::spawn_with(same_key).await;
    let b = TestApp::spawn_with(same_key).await;
    let other = TestApp::spawn().await;

    let resp = a.client.get(a.url("/login")).send().await.unwrap();
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let on_b = b
        .client
        .get(b.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(on_b.text().await.unwrap().contains("flash-error"));
    let on_other = other
        .client
        .get(other.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(!on_other.text().await.unwrap().contains("flash-error"));
    a.stop().await;
    b.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn a_browser_gets_an_html_404_and_a_script_gets_json() {
    let app = TestApp::spawn().await;

    let page = app.get_page("/no/such/page").await;
    assert_eq!(page.status(), 404);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = page.text().await.unwrap();
    assert!(body.contains("There is no page at this address"), "{body}");

    let json = app
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 404);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_method_is_a_clear_405() {
    let app = TestApp::spawn().await;

    let resp = app.client.delete(app.url("/")).send().await.unwrap();

    assert_eq!(resp.status(), 405);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    app.stop().await;
}

/// RFC 9110: a 405 carries `Allow`, the methods the path does take. On
/// every page, each method is refused with 405 exactly when `Allow` leaves
/// it out.
#[tokio::test]
async fn every_page_names_its_methods_on_a_405_and_takes_exactly_those() {
    let app = TestApp::spawn().await;
    let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    let mut allows = Vec::new();
    for path in [
        "/",
        "/login",
        "/oauth-callback",
        "/logout",
        "/profile",
        "/static/style.css",
    ] {
        let refused = app.client.delete(app.url(path)).send().await.unwrap();
        assert_eq!(refused.status(), 405, "DELETE {path}");
        let allow = refused.headers()["allow"].to_str().unwrap().to_owned();
        let listed: Vec<&str> = allow.split(", ").collect();
        for method in methods {
            let resp = app
                .client
                .request(method.parse().unwrap(), app.url(path))
                .send()
                .await
                .unwrap();
            if listed.contains(&method) {
                assert_ne!(resp.status(), 405, "{method} {path}: Allow is {allow}");
            } else {
                assert_eq!(resp.status(), 405, "{method} {path}: Allow is {allow}");
                assert_eq!(resp.headers()["allow"], allow.as_str(), "{method} {path}");
                // A HEAD answer has no body, the error's neither.
                if method != "HEAD" {
                    let body: serde_json::Value = resp.json().await.unwrap();
                    assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
                }
            }
        }
        allows.push((path, allow));
    }
    assert_eq!(allows[0], ("/", "GET, HEAD".to_owned()));
    assert_eq!(allows[1], ("/login", "GET".to_owned()));
    assert_eq!(allows[2], ("/oauth-callback", "GET".to_owned()));
    assert_eq!(allows[3], ("/logout", "GET, HEAD, POST".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn the_stylesheet_is_served_by_the_tool_itself() {
    let app = TestApp::spawn().await;

    let page = app.get_page("/").await.text().await.unwrap();
    assert!(page.contains(r#"href="/static/style.css""#));
    assert!(!page.contains("https://cdn"), "no third-party resources");
    let css = app
        .client
        .get(app.url("/static/style.css"))
        .send()
        .await
        .unwrap();

    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.text().await.unwrap().contains(".flash-error"));
    app.stop().await;
}

#[tokio::test]
async fn a_short_printable_request_id_is_kept_and_anything_else_replaced() {
    let app = TestApp::spawn().await;

    let kept = app
        .client
        .get(app.url("/"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123");

    let long = "x".repeat(65);
    let replaced = app
        .client
        .get(app.url("/"))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, long);
    assert_eq!(id.len(), 16);

    let spaced = app
        .client
        .get(app.url("/"))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    assert_ne!(spaced.headers()["x-request-id"], "a b");

    let fresh = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(fresh.headers()["x-request-id"].len(), 16);
    app.stop().await;
}

/// The anonymous page is rendered once and then served as the same bytes:
/// what comes after it (a notice, a login, a logout) must still be rendered
/// for that visitor, and the shared page must not pick any of it up.
#[tokio::test]
async fn the_shared_anonymous_page_never_carries_one_visitors_notice_or_name() {
    let (app, wiki) = TestApp::with_fake_wiki().await;

    let first = app.home().await;
    assert!(first.contains("<h1>Hello World!</h1>"), "{first}");
    assert!(first.contains(r#"href="/login""#), "{first}");

    // A stranger's page, with its own notice, then the shared page again.
    let stranger = crate::helpers::client_with(Default::default());
    let stranger_home = || async {
        let resp = stranger.get(app.url("/")).send().await.unwrap();
        resp.text().await.unwrap()
    };
    let resp = stranger
        .get(app.url("/oauth-callback?oauth_verifier=x&oauth_token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let noticed = stranger_home().await;
    assert!(noticed.contains(r#"<p class="flash "#), "{noticed}");
    assert_eq!(app.home().await, first);

    // Logged in: greeted by name; the shared page is unchanged.
    assert_eq!(app.log_in(&wiki).await.status(), 303);
    let home = app.home().await;
    assert!(home.contains("<h1>Hello Example User!</h1>"), "{home}");
    assert_eq!(stranger_home().await, first);

    // Logged out: the notice once, then the shared page.
    assert_eq!(app.log_out(&home).await.status(), 303);
    let after = app.home().await;
    assert!(after.contains("You have logged out"), "{after}");
    assert_eq!(app.home().await, first);
    app.stop().await;
}

/// A HEAD to `/login` (a link checker, an uptime monitor) would start a
/// login at the wiki like a GET, with nothing to show for it: it is refused,
/// and the wiki hears nothing. The same for the callback.
#[tokio::test]
async fn head_on_the_login_steps_is_refused_and_never_reaches_the_wiki() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    for path in ["/login", "/oauth-callback?oauth_token=t&oauth_verifier=v"] {
        let resp = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 405, "HEAD {path}");
        assert_eq!(resp.headers()["allow"], "GET", "HEAD {path}");
        assert!(resp.headers().get("set-cookie").is_none(), "HEAD {path}");
    }
    assert!(wiki.seen().is_empty(), "{:?}", wiki.seen().len());
    // GET still logs in.
    let done = app.log_in(&wiki).await;
    assert_eq!(done.status(), 303);
    app.stop().await;
}
