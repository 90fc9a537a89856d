//! The JSON API as a script holding a session cookie uses it: who is logged
//! in (`/api/v1/me`) and their account live from the wiki
//! (`/api/v1/userinfo`), against the honest fake wiki.

use std::time::Duration;

use crate::fake_wiki::{CONSUMER_SECRET, FakeWiki, Misbehaviour, Step, down_address};
use crate::helpers::{TestApp, csrf_of};

/// `GET path` as a script would (asking for JSON): status, headers, body.
async fn get_api(
    app: &TestApp,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let resp = app
        .client
        .get(app.url(path))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON ({e}): {text}"));
    (status, headers, body)
}

/// The access token the tool got at login: the `oauth_token` it signed
/// the identify request with.
fn access_token_of(wiki: &FakeWiki) -> String {
    wiki.seen()
        .into_iter()
        .find(|s| s.step == Some(Step::Identify))
        .and_then(|s| s.oauth.get("oauth_token").cloned())
        .expect("an identify request with a token")
}

/// Asserts a 401 in the API's error format, with its challenge.
fn assert_not_logged_in(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &serde_json::Value,
) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        headers["content-type"], "application/json; charset=utf-8",
        "{body}"
    );
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Cookie ")
            && challenge.contains("form-action=\"/login\"")
            && challenge.contains("cookie-name=\"hello_oauth_session\""),
        "{challenge}"
    );
    assert_eq!(body["error"], "not_logged_in");
    assert!(body["message"].as_str().unwrap().contains("/login"));
    assert_eq!(
        body["request_id"],
        headers["x-request-id"].to_str().unwrap(),
        "the body quotes the request id"
    );
}

#[tokio::test]
async fn after_logging_in_me_tells_who_is_logged_in_without_any_token_or_secret() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;
    let home = app.home().await;
    let calls_before = wiki.seen().len();

    let resp = app.client.get(app.url("/api/v1/me")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "reading the session does not rewrite it"
    );
    let text = resp.text().await.unwrap();
    let me: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(me["username"], "Example User");
    assert_eq!(me["sub"], "4242");
    assert_eq!(me["editcount"], 1234);
    assert_eq!(me["groups"], serde_json::json!(["user", "autoconfirmed"]));
    assert_eq!(me["grants"], serde_json::json!(["mwoauth-authonly"]));
    assert_eq!(me["blocked"], false);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let since = me["logged_in_at"].as_u64().unwrap();
    assert!(now.abs_diff(since) < 60, "logged in just now: {since}");
    assert_eq!(
        me["login_expires_at"].as_u64().unwrap(),
        since + 7 * 24 * 3600
    );
    let mut secrets = wiki.secrets_issued();
    assert!(
        secrets.len() >= 3,
        "request and access token secrets, verifier"
    );
    secrets.push(CONSUMER_SECRET.to_owned());
    secrets.push(access_token_of(&wiki));
    secrets.push(csrf_of(&home));
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret} in {text}");
    }
    let keys: Vec<&String> = me.as_object().unwrap().keys().collect();
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("token") || k.contains("secret") || k.contains("csrf")),
        "{keys:?}"
    );
    assert_eq!(wiki.seen().len(), calls_before, "me never calls the wiki");
    app.stop().await;
}

#[tokio::test]
async fn anonymous_visitors_get_a_401_in_json_from_both_endpoints() {
    let (app, _wiki) = TestApp::with_fake_wiki().await;

    for path in ["/api/v1/me", "/api/v1/userinfo"] {
        let (status, headers, body) = get_api(&app, path).await;
        assert_not_logged_in(status, &headers, &body);

        // A browser asking for HTML gets the same JSON answer.
        let resp = app.get_page(path).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()["content-type"],
            "application/json; charset=utf-8"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_forged_cookie_or_a_login_in_progress_is_not_a_login() {
    let (app, wiki) = TestApp::with_fake_wiki().await;

    let forged = app
        .client
        .get(app.url("/api/v1/me"))
        .header(
            "cookie",
            "hello_oauth_session=eyJhdXRoIjp7InN0YXRlIjoibG9nZ2VkX2luIn19",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Sent to the wiki but not back yet: still nobody.
    let authorize = app.start_login("/login").await;
    let (status, headers, body) = get_api(&app, "/api/v1/me").await;
    assert_not_logged_in(status, &headers, &body);

    // Back from the wiki: logged in.
    let callback = wiki.approve(&authorize).await;
    app.client.get(&callback).send().await.unwrap();
    let (status, _, me) = get_api(&app, "/api/v1/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "Example User");
    app.stop().await;
}

#[tokio::test]
async fn another_sites_scripts_are_not_allowed_to_read_the_identity() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;

    let resp = app
        .client
        .get(app.url("/api/v1/me"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/me"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    for resp in [&resp, &preflight] {
        let cors: Vec<_> = resp
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{cors:?}");
    }
    assert_eq!(preflight.status(), 405);
    app.stop().await;
}

#[tokio::test]
async fn after_logging_out_me_answers_401_again() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;
    assert_eq!(get_api(&app, "/api/v1/me").await.0, 200);
    let out = app.log_out(&app.home().await).await;

    assert_eq!(out.status(), 303);
    let (status, headers, body) = get_api(&app, "/api/v1/me").await;
    assert_not_logged_in(status, &headers, &body);
    app.stop().await;
}

#[tokio::test]
async fn userinfo_is_fetched_live_from_the_api_signed_as_the_user() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;
    let access_token = access_token_of(&wiki);

    let (status, headers, info) = get_api(&app, "/api/v1/userinfo").await;
    let (again, _, _) = get_api(&app, "/api/v1/userinfo").await;

    assert_eq!(status, 200, "{info}");
    assert_eq!(again, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        info,
        serde_json::json!({
            "id": 4242,
            "username": "Example User",
            "editcount": 1234,
            "groups": ["user", "autoconfirmed"],
            "rights": ["read", "edit", "createpage"],
            "registration": "2015-03-14T15:09:26Z",
        })
    );
    let api_calls: Vec<_> = wiki
        .seen()
        .into_iter()
        .filter(|s| s.step == Some(Step::Api))
        .collect();
    assert_eq!(api_calls.len(), 2, "one call to the wiki per request");
    for call in &api_calls {
        assert_eq!(call.method, "GET");
        assert!(call.signature_ok, "the fake verified the signature");
        assert_eq!(
            call.oauth["oauth_token"], access_token,
            "signed with the user's access token"
        );
        assert!(call.user_agent.starts_with("hello-oauth/"));
    }
    app.stop().await;
}

#[tokio::test]
async fn userinfo_maps_each_failure_of_the_wiki_to_its_documented_answer() {
    let (app, wiki) =
        TestApp::with_fake_wiki_and(|c| c.wiki_timeout = Duration::from_secs(1)).await;
    app.log_in(&wiki).await;

    let cases = [
        (
            Misbehaviour::Slow(Duration::from_secs(3)),
            504,
            "wiki_timeout",
        ),
        (Misbehaviour::Garbage, 502, "wiki_bad_answer"),
        (Misbehaviour::ServerError, 502, "wiki_bad_answer"),
        (Misbehaviour::Redirect, 502, "wiki_bad_answer"),
        (Misbehaviour::Huge(4 * 1024 * 1024), 502, "wiki_bad_answer"),
        (
            Misbehaviour::JsonError("readonly".into(), "The wiki is in read-only mode".into()),
            502,
            "wiki_refused",
        ),
    ];
    for (how, expected_status, expected_error) in cases {
        wiki.behave();
        wiki.misbehave(Step::Api, how.clone());

        let (status, headers, body) = get_api(&app, "/api/v1/userinfo").await;

        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (expected_status, expected_error),
            "{how:?}: {body}"
        );
        assert_eq!(
            headers["content-type"], "application/json; charset=utf-8",
            "{how:?}"
        );
        assert_eq!(
            body["request_id"],
            headers["x-request-id"].to_str().unwrap()
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }

    // The user withdrew the grant on the wiki: the wiki's words, and what to do.
    wiki.behave();
    wiki.revoke_all();
    let (status, _, body) = get_api(&app, "/api/v1/userinfo").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "wiki_refused");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("No approved grant"), "{message}");
    assert!(message.contains("log in again"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn userinfo_says_504_when_the_wiki_is_down() {
    // Log in on one instance, then use the session on a replica (same
    // session key) whose wiki is down.
    let key = hello_oauth::config::generate_session_key();
    let same_key = |c: &mut hello_oauth::Config| {
        c.session_key = hello_oauth::config::SessionKey::Configured(key.clone().into());
    };
    let (up, wiki) = TestApp::with_fake_wiki_and(same_key).await;
    up.log_in(&wiki).await;
    let down = down_address().await;
    let replica = TestApp::spawn_with(|c| {
        same_key(c);
        c.mwuri = url::Url::parse(&format!("http://{down}/w/index.php")).unwrap();
        c.consumer = Some(hello_oauth::config::OAuthConsumer {
            key: crate::fake_wiki::CONSUMER_KEY.into(),
            secret: CONSUMER_SECRET.to_owned().into(),
        });
    })
    .await;
    let cookie = up.session_cookie().unwrap();

    let resp = replica
        .client
        .get(replica.url("/api/v1/userinfo"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 504);
    let text = resp.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "wiki_unreachable");
    assert!(!text.contains(&down.to_string()), "no address in {text}");

    // The replica still knows who is logged in: me needs no wiki.
    let me = replica
        .client
        .get(replica.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    up.stop().await;
    replica.stop().await;
}

#[tokio::test]
async fn userinfo_on_an_instance_without_a_consumer_says_503() {
    let key = hello_oauth::config::generate_session_key();
    let same_key = |c: &mut hello_oauth::Config| {
        c.session_key = hello_oauth::config::SessionKey::Configured(key.clone().into());
    };
    let (up, wiki) = TestApp::with_fake_wiki_and(same_key).await;
    up.log_in(&wiki).await;
    let unconfigured = TestApp::spawn_with(|c| {
        same_key(c);
        c.consumer = None;
    })
    .await;

    let resp = unconfigured
        .client
        .get(unconfigured.url("/api/v1/userinfo"))
        .header("cookie", up.session_cookie().unwrap())
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_configured");
    up.stop().await;
    unconfigured.stop().await;
}

#[tokio::test]
async fn the_document_describes_both_endpoints_with_every_answer() {
    let doc: serde_json::Value = serde_json::from_str(&hello_oauth::web::api::document()).unwrap();

    for (path, statuses) in [
        ("/api/v1/me", &["200", "401"][..]),
        ("/api/v1/userinfo", &["200", "401", "502", "503", "504"][..]),
    ] {
        let op = &doc["paths"][path]["get"];
        assert_eq!(op["tags"][0], "auth", "{path}");
        assert!(op["summary"].is_string() && op["description"].is_string());
        let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
        assert_eq!(documented, statuses, "{path}");
        assert!(
            op["responses"]["401"]["headers"]["WWW-AUTHENTICATE"].is_object(),
            "{path}"
        );
    }
    for schema in ["Identity", "UserInfo"] {
        let example = &doc["components"]["schemas"][schema]["example"];
        assert!(example.is_object(), "{schema} has an example");
        let fields = example.as_object().unwrap().keys();
        assert!(
            !fields
                .into_iter()
                .any(|k| k.contains("token") || k.contains("secret")),
            "{schema}"
        );
    }
}
