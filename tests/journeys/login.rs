//! Logging in with a Wikimedia account, against the honest fake wiki: the
//! whole flow, every refusal and fault, sessions, CSRF and redirects.

use std::time::{Duration, Instant};

use hello_oauth::config::CallbackMode;

use crate::fake_wiki::{
    CONSUMER_SECRET, FakeWiki, JwtFault, Misbehaviour, Step, WikiUser, down_address,
};
use crate::helpers::{TestApp, csrf_of};

/// The flash messages on a page, as text.
fn flashes(html: &str) -> Vec<String> {
    html.split("<p class=\"flash ")
        .skip(1)
        .filter_map(|s| {
            let start = s.find('>')? + 1;
            let end = s.find("</p>")?;
            Some(s[start..end].to_owned())
        })
        .collect()
}

/// Tries to log in and returns the home page shown afterwards.
async fn attempt_login(app: &TestApp, wiki: &FakeWiki) -> String {
    let resp = app.get_page("/login").await;
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    if location == "/" {
        return app.home().await;
    }
    let callback = wiki.approve(&location).await;
    let back = app.client.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 303, "the callback always redirects");
    assert!(
        back.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with('/')
    );
    app.home().await
}

fn oauth_token_of(authorize_url: &str) -> String {
    url::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "oauth_token")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

#[tokio::test]
async fn a_user_logs_in_is_greeted_by_name_and_logs_out() {
    let (app, wiki) = TestApp::with_fake_wiki().await;

    // Start: a 303 to the wiki's authenticate page on index.php.
    let authorize = app.start_login("/login").await;
    let url = url::Url::parse(&authorize).unwrap();
    assert_eq!(url.path(), "/w/index.php");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(pairs.contains(&("title".into(), "Special:OAuth/authenticate".into())));
    assert!(
        pairs
            .iter()
            .any(|(k, v)| k == "oauth_token" && v.len() == 32)
    );
    assert!(pairs.contains(&(
        "oauth_consumer_key".into(),
        crate::fake_wiki::CONSUMER_KEY.into()
    )));

    // Approve on the wiki: it sends the browser to the registered callback.
    let callback = wiki.approve(&authorize).await;
    assert!(
        callback.starts_with(&app.url("/oauth-callback?oauth_verifier=")),
        "{callback}"
    );
    let back = app.client.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 303);
    assert_eq!(back.headers()["location"], "/");

    let home = app.home().await;
    assert!(home.contains("<h1>Hello Example User!</h1>"), "{home}");
    assert!(home.contains("1,234"), "edit count: {home}");
    assert!(home.contains("user, autoconfirmed"), "groups: {home}");
    assert!(!home.contains("<dd>*"), "the implicit * group is not shown");
    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("You are logged in as Example User"))
    );
    assert!(home.contains(r#"<form class="inline" method="post" action="/logout">"#));

    // The wiki saw correctly signed requests, a fresh nonce each, oob, and
    // a User-Agent that follows Wikimedia's policy.
    let seen = wiki.seen();
    let signed: Vec<_> = seen.iter().filter(|s| s.step.is_some()).collect();
    assert_eq!(signed.len(), 3, "initiate, token, identify: {seen:#?}");
    assert!(signed.iter().all(|s| s.signature_ok && s.method == "POST"));
    assert_eq!(signed[0].oauth["oauth_callback"], "oob");
    assert!(signed[1].oauth.contains_key("oauth_verifier"));
    assert!(
        signed
            .iter()
            .all(|s| s.user_agent.starts_with("hello-oauth/") && s.user_agent.contains("reqwest/"))
    );

    // Log out with the button.
    let out = app.log_out(&home).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/");
    let after = app.home().await;
    assert!(after.contains("<h1>Hello World!</h1>"), "{after}");
    assert!(
        flashes(&after)
            .iter()
            .any(|f| f.contains("You have logged out"))
    );
    assert!(!after.contains("Example User"));
    app.stop().await;
}

#[tokio::test]
async fn the_home_page_of_a_logged_in_user_makes_no_call_to_the_wiki() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;
    let before = wiki.seen().len();

    for _ in 0..3 {
        assert!(app.home().await.contains("Hello Example User!"));
    }

    assert_eq!(wiki.seen().len(), before);
    app.stop().await;
}

#[tokio::test]
async fn the_profile_shows_the_account_live_from_the_api_as_the_user() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;

    let resp = app.get_page("/profile").await;

    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("<h1>Example User</h1>"), "{page}");
    assert!(
        page.contains("2015-03-14T15:09:26Z"),
        "registration: {page}"
    );
    assert!(page.contains("<code>createpage</code>"), "rights: {page}");
    assert!(page.contains("1,234"));
    let api = wiki
        .seen()
        .into_iter()
        .rfind(|s| s.step == Some(Step::Api))
        .unwrap();
    assert_eq!(api.method, "GET");
    assert!(api.signature_ok, "signed with the user's access token");
    assert!(api.oauth.contains_key("oauth_token"));
    app.stop().await;
}

#[tokio::test]
async fn the_profile_still_renders_with_a_note_when_the_wiki_fails() {
    let (app, wiki) =
        TestApp::with_fake_wiki_and(|c| c.wiki_timeout = Duration::from_secs(1)).await;
    app.log_in(&wiki).await;

    wiki.misbehave(Step::Api, Misbehaviour::Slow(Duration::from_secs(3)));
    let slow = app.get_page("/profile").await;
    assert_eq!(slow.status(), 200);
    assert!(slow.text().await.unwrap().contains("took too long"));

    wiki.misbehave(Step::Api, Misbehaviour::Garbage);
    let garbage = app.get_page("/profile").await.text().await.unwrap();
    assert!(garbage.contains("could not be understood"), "{garbage}");

    wiki.behave();
    wiki.revoke_all();
    let revoked = app.get_page("/profile").await;
    assert_eq!(revoked.status(), 200);
    let page = revoked.text().await.unwrap();
    assert!(
        page.contains("The wiki refused to show your account"),
        "{page}"
    );
    assert!(page.contains("log out and log in again"));
    assert!(
        app.home().await.contains("Hello Example User!"),
        "still logged in"
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_for_logged_in_users_send_anonymous_visitors_home() {
    let (app, _wiki) = TestApp::with_fake_wiki().await;

    for path in ["/profile", "/logout"] {
        let resp = app.get_page(path).await;
        assert_eq!(resp.status(), 303, "{path}");
        assert_eq!(resp.headers()["location"], "/");
    }
    let post = app
        .client
        .post(app.url("/logout"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 303);
    let home = app.home().await;
    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("Log in to see your account"))
    );
    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("You are not logged in"))
    );
    app.stop().await;
}

#[tokio::test]
async fn after_login_the_user_returns_to_the_page_they_asked_for() {
    let (app, wiki) = TestApp::with_fake_wiki().await;

    let authorize = app.start_login("/login?next=%2Fprofile%3Ftab%3D1").await;
    let callback = wiki.approve(&authorize).await;
    let back = app.client.get(&callback).send().await.unwrap();
    assert_eq!(back.headers()["location"], "/profile?tab=1");

    // Logged out again, then from a same-origin Referer.
    let home = app.home().await;
    app.client
        .post(app.url("/logout"))
        .form(&[("csrf", csrf_of(&home))])
        .send()
        .await
        .unwrap();
    let resp = app
        .client
        .get(app.url("/login"))
        .header("referer", app.url("/profile"))
        .send()
        .await
        .unwrap();
    let authorize = resp.headers()["location"].to_str().unwrap().to_owned();
    let callback = wiki.approve(&authorize).await;
    let back = app.client.get(&callback).send().await.unwrap();
    assert_eq!(back.headers()["location"], "/profile");
    app.stop().await;
}

#[tokio::test]
async fn open_redirect_attempts_end_on_the_home_page() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let evil = [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "/%09/evil.example",
        "http:%2F%2Fevil.example",
        "javascript:alert(1)",
    ];
    for next in evil {
        let path = format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        let authorize = app.start_login(&path).await;
        let callback = wiki.approve(&authorize).await;
        let back = app.client.get(&callback).send().await.unwrap();
        assert_eq!(back.headers()["location"], "/", "next={next:?}");
        let home = app.home().await;
        app.client
            .post(app.url("/logout"))
            .form(&[("csrf", csrf_of(&home))])
            .send()
            .await
            .unwrap();
    }

    // A Referer from another site is not followed either.
    let resp = app
        .client
        .get(app.url("/login"))
        .header("referer", "https://evil.example/page")
        .send()
        .await
        .unwrap();
    let authorize = resp.headers()["location"].to_str().unwrap().to_owned();
    let back = app
        .client
        .get(wiki.approve(&authorize).await)
        .send()
        .await
        .unwrap();
    assert_eq!(back.headers()["location"], "/");
    app.stop().await;
}

#[tokio::test]
async fn a_user_name_full_of_html_is_shown_escaped() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    wiki.set_user(WikiUser {
        name: "<script>alert('x')</script> & \"Co\"".into(),
        groups: vec!["<b>bold</b>".into()],
        ..WikiUser::default()
    });

    app.log_in(&wiki).await;

    let home = app.home().await;
    assert!(
        home.contains(
            "Hello &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;Co&quot;!"
        ),
        "{home}"
    );
    assert!(
        home.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "groups are escaped too"
    );
    assert!(!home.contains("<script>"));
    assert!(!home.contains("<b>bold</b>"));
    let profile = app.get_page("/profile").await.text().await.unwrap();
    assert!(!profile.contains("<script>"));
    app.stop().await;
}

/// (step, misbehaviour, what the user is told)
fn faults() -> Vec<(Step, Misbehaviour, &'static str)> {
    let refused = "The wiki refused the login";
    let not_understood = "does not understand";
    let security = "failed a security check";
    vec![
        (
            Step::Initiate,
            Misbehaviour::TextError("Invalid consumer &amp; <b>friends</b>".into()),
            refused,
        ),
        (
            Step::Initiate,
            Misbehaviour::JsonError(
                "mwoauth-invalid-consumer".into(),
                "Consumer disabled".into(),
            ),
            "Consumer disabled",
        ),
        (Step::Initiate, Misbehaviour::Garbage, not_understood),
        (Step::Initiate, Misbehaviour::ServerError, not_understood),
        (Step::Initiate, Misbehaviour::Redirect, not_understood),
        (
            Step::Initiate,
            Misbehaviour::Huge(50 * 1024 * 1024),
            not_understood,
        ),
        (
            Step::Initiate,
            Misbehaviour::Slow(Duration::from_secs(3)),
            "took too long",
        ),
        (Step::Token, Misbehaviour::Garbage, not_understood),
        (Step::Token, Misbehaviour::ServerError, not_understood),
        (
            Step::Token,
            Misbehaviour::Slow(Duration::from_secs(3)),
            "took too long",
        ),
        (
            Step::Token,
            Misbehaviour::TextError("The verification code provided was not valid.".into()),
            "verification code",
        ),
        (
            Step::Identify,
            Misbehaviour::JsonError(
                "mwoauthdatastore-access-token-not-found".into(),
                "No approved grant was found for that authorization token.".into(),
            ),
            "No approved grant",
        ),
        (Step::Identify, Misbehaviour::Garbage, security),
        (
            Step::Identify,
            Misbehaviour::Huge(50 * 1024 * 1024),
            not_understood,
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::WrongAudience),
            "wrong audience",
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::WrongIssuer),
            "another wiki",
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::WrongNonce),
            "replay detected",
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::StaleIat),
            "stale",
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::FutureIat),
            "in the future",
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::Expired),
            "expired",
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::BadSignature),
            "signature",
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::AlgNone),
            "not HS256",
        ),
    ]
}

#[tokio::test]
async fn every_wiki_fault_during_login_is_explained_and_logs_nobody_in() {
    let (app, wiki) =
        TestApp::with_fake_wiki_and(|c| c.wiki_timeout = Duration::from_secs(1)).await;

    for (step, how, told) in faults() {
        wiki.behave();
        wiki.misbehave(step, how.clone());
        let started = Instant::now();

        let home = attempt_login(&app, &wiki).await;

        let shown = flashes(&home);
        assert!(
            shown.iter().any(|f| f.contains(told)),
            "{step:?} {how:?}: expected {told:?} in {shown:#?}"
        );
        assert!(
            home.contains("<h1>Hello World!</h1>"),
            "{step:?} {how:?}: not logged in"
        );
        assert!(!home.contains("<b>"), "the wiki's markup is not rendered");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{step:?} {how:?} took {:?}",
            started.elapsed()
        );
    }

    // And once the wiki behaves, login works again on the same session.
    wiki.behave();
    assert!(
        attempt_login(&app, &wiki)
            .await
            .contains("Hello Example User!")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_numeric_sub_from_an_older_wiki_is_accepted() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    wiki.misbehave(Step::Identify, Misbehaviour::Jwt(JwtFault::SubAsNumber));

    assert!(
        attempt_login(&app, &wiki)
            .await
            .contains("Hello Example User!")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wiki_that_is_down_is_explained() {
    let down = down_address().await;
    let app = TestApp::spawn_with(|c| {
        c.mwuri = url::Url::parse(&format!("http://{down}/w/index.php")).unwrap();
        c.consumer = Some(hello_oauth::config::OAuthConsumer {
            key: "k".into(),
            secret: "s".to_owned().into(),
        });
    })
    .await;

    let resp = app.get_page("/login").await;

    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/");
    let home = app.home().await;
    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("could not be reached")),
        "{home}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wiki_that_comes_up_a_moment_late_is_retried_once_with_a_fresh_signature() {
    let addr = down_address().await;
    let app = TestApp::spawn_with(|c| {
        c.mwuri = url::Url::parse(&format!("http://{addr}/w/index.php")).unwrap();
        c.consumer = Some(hello_oauth::config::OAuthConsumer {
            key: crate::fake_wiki::CONSUMER_KEY.into(),
            secret: CONSUMER_SECRET.to_owned().into(),
        });
    })
    .await;
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        FakeWiki::start_at(addr).await
    });

    let resp = app.get_page("/login").await;

    let wiki = late.await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("Special%3AOAuth%2Fauthenticate"),
        "{location}"
    );
    let initiates: Vec<_> = wiki
        .seen()
        .into_iter()
        .filter(|s| s.step == Some(Step::Initiate))
        .collect();
    assert_eq!(initiates.len(), 1);
    assert!(initiates[0].signature_ok);
    app.stop().await;
}

#[tokio::test]
async fn a_login_made_on_one_replica_is_honoured_by_another_with_the_same_key() {
    let key = hello_oauth::config::generate_session_key();
    let same_key = |c: &mut hello_oauth::Config| {
        c.session_key = hello_oauth::config::SessionKey::Configured(key.clone().into());
    };
    let (a, wiki) = TestApp::with_fake_wiki_and(same_key).await;
    let (b, _other_wiki) = TestApp::with_fake_wiki_and(same_key).await;
    a.log_in(&wiki).await;

    let page = b
        .client
        .get(b.url("/"))
        .header("cookie", a.session_cookie().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(page.contains("Hello Example User!"), "{page}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_clock_off_by_more_than_five_minutes_is_refused_by_the_wiki() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    wiki.advance_clock(400);

    let home = attempt_login(&app, &wiki).await;

    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("Expired timestamp")),
        "{home}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_login_finished_after_the_request_token_expired_says_try_again() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let authorize = app.start_login("/login").await;
    let callback = wiki.approve(&authorize).await;
    // Ten minutes pass on the wiki (the tool's own 10-minute limit is unit-tested).
    wiki.age_request_tokens(601);

    app.client.get(&callback).send().await.unwrap();

    let home = app.home().await;
    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("Your login expired or was already used")),
        "{home}"
    );
    assert!(home.contains("<h1>Hello World!</h1>"));
    app.stop().await;
}

#[tokio::test]
async fn reloading_the_callback_does_not_log_in_twice_and_a_stranger_cannot_use_it() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let authorize = app.start_login("/login").await;
    let callback = wiki.approve(&authorize).await;
    app.client.get(&callback).send().await.unwrap();
    assert!(app.home().await.contains("Hello Example User!"));
    let exchanges = wiki
        .seen()
        .iter()
        .filter(|s| s.step == Some(Step::Token))
        .count();

    // The same tab reloads the callback.
    let again = app.client.get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 303);
    let home = app.home().await;
    assert!(home.contains("Hello Example User!"), "still logged in");
    assert!(flashes(&home).iter().any(|f| f.contains("already used")));

    // Someone else's browser replays it.
    let stranger = crate::helpers::client_with(Default::default());
    let replay = stranger.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 303);
    let page = stranger
        .get(app.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Are cookies disabled?"), "{page}");
    assert!(page.contains("<h1>Hello World!</h1>"));

    let exchanges_after = wiki
        .seen()
        .iter()
        .filter(|s| s.step == Some(Step::Token))
        .count();
    assert_eq!(
        exchanges, exchanges_after,
        "no second exchange was attempted"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_copied_session_cannot_finish_the_same_login_twice() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let authorize = app.start_login("/login").await;
    let cookie = app.session_cookie().unwrap();
    let callback = wiki.approve(&authorize).await;

    app.client.get(&callback).send().await.unwrap();
    let twin = crate::helpers::client_with(Default::default());
    twin.get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();

    // The twin's copy still held the pending login, so the tool tried: the
    // wiki refused the used request token (E009).
    let page = twin
        .get(app.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Your login expired or was already used"),
        "{page}"
    );
    assert!(!page.contains("Example User"));
    app.stop().await;
}

#[tokio::test]
async fn two_tabs_can_log_in_in_parallel_and_either_may_finish() {
    let (app, wiki) = TestApp::with_fake_wiki().await;

    let tab_a = app.start_login("/login?next=%2Fa").await;
    let tab_b = app.start_login("/login?next=%2Fb").await;
    assert_ne!(oauth_token_of(&tab_a), oauth_token_of(&tab_b));
    let callback_b = wiki.approve(&tab_b).await;
    let callback_a = wiki.approve(&tab_a).await;

    // The older tab finishes first: it was not forgotten when B started.
    let a = app.client.get(&callback_a).send().await.unwrap();
    assert_eq!(a.headers()["location"], "/a");
    assert!(app.home().await.contains("Hello Example User!"));

    // Tab B comes back: the session was renewed at login, B is no longer pending.
    let b = app.client.get(&callback_b).send().await.unwrap();
    assert_eq!(b.headers()["location"], "/");
    let home = app.home().await;
    assert!(home.contains("Hello Example User!"));
    assert!(flashes(&home).iter().any(|f| f.contains("already used")));
    app.stop().await;
}

#[tokio::test]
async fn only_a_few_tabs_may_be_pending_and_the_cookie_stays_small() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let long_next = format!("/{}", "n".repeat(500));

    let mut tabs = Vec::new();
    for _ in 0..6 {
        tabs.push(app.start_login(&format!("/login?next={long_next}")).await);
        let cookie = app.session_cookie().unwrap();
        assert!(cookie.len() < 4000, "cookie of {} bytes", cookie.len());
    }

    // The newest tab can finish; the oldest was dropped.
    let newest = wiki.approve(tabs.last().unwrap()).await;
    let back = app.client.get(&newest).send().await.unwrap();
    assert_eq!(back.headers()["location"], long_next.as_str());
    app.stop().await;

    let (app, wiki) = TestApp::with_fake_wiki().await;
    let tabs: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(app.start_login("/login").await);
        }
        v
    };
    let oldest = wiki.approve(&tabs[0]).await;
    app.client.get(&oldest).send().await.unwrap();
    let home = app.home().await;
    assert!(
        flashes(&home).iter().any(|f| f.contains("did not start")),
        "{home}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_big_identity_never_costs_the_login() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    wiki.set_user(WikiUser {
        name: "Ü".repeat(127),
        groups: (0..80)
            .map(|i| format!("group-{i}-{}", "g".repeat(50)))
            .collect(),
        ..WikiUser::default()
    });

    app.log_in(&wiki).await;

    let cookie = app.session_cookie().unwrap();
    assert!(cookie.len() < 4000, "cookie of {} bytes", cookie.len());
    let home = app.home().await;
    assert!(home.contains(&format!("Hello {}!", "Ü".repeat(127))));
    app.stop().await;
}

#[tokio::test]
async fn a_user_who_declines_is_told_so() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let authorize = app.start_login("/login").await;

    // On the wiki, Cancel keeps the user there.
    let cancelled = wiki.decide(&authorize, "cancel").await;
    assert!(cancelled.unwrap_err().contains("cancellation"));

    // A wiki that reports the refusal (OAuth problem reporting) is understood.
    let token = oauth_token_of(&authorize);
    app.client
        .get(app.url(&format!(
            "/oauth-callback?oauth_token={token}&oauth_problem=user_refused"
        )))
        .send()
        .await
        .unwrap();
    let home = app.home().await;
    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("You did not allow")),
        "{home}"
    );
    app.stop().await;
}

#[tokio::test]
async fn callbacks_that_do_not_match_a_login_in_progress_are_explained() {
    let (app, wiki) = TestApp::with_fake_wiki().await;

    // No login in progress in this browser.
    app.client
        .get(app.url("/oauth-callback?oauth_token=abc&oauth_verifier=def"))
        .send()
        .await
        .unwrap();
    assert!(app.home().await.contains("Are cookies disabled?"));

    // A login in progress, but not this one.
    let authorize = app.start_login("/login").await;
    app.client
        .get(app.url("/oauth-callback?oauth_token=another&oauth_verifier=def"))
        .send()
        .await
        .unwrap();
    assert!(app.home().await.contains("did not start"));

    // No parameters at all.
    let resp = app.get_page("/oauth-callback").await;
    assert_eq!(resp.status(), 303);
    assert!(app.home().await.contains("without the login details"));

    // A forged verifier is refused by the wiki.
    let authorize2 = app.start_login("/login").await;
    let callback = wiki.approve(&authorize2).await;
    let forged = callback.replace("oauth_verifier=", "oauth_verifier=0");
    app.client.get(&forged).send().await.unwrap();
    let home = app.home().await;
    assert!(
        home.contains("verification code provided was not valid"),
        "{home}"
    );
    assert!(home.contains("<h1>Hello World!</h1>"));
    drop(authorize);
    app.stop().await;
}

#[tokio::test]
async fn logging_out_takes_the_button_and_its_csrf_token() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;

    // GET /logout only shows the form.
    let form = app.get_page("/logout").await;
    assert_eq!(form.status(), 200);
    let page = form.text().await.unwrap();
    assert!(page.contains("Log out of this tool?"));
    assert!(app.home().await.contains("Hello Example User!"));

    // No token, a wrong one, an empty body: refused, still logged in.
    for body in [vec![], vec![("csrf", "wrong")], vec![("csrf", "")]] {
        let resp = app
            .client
            .post(app.url("/logout"))
            .header("accept", "text/html")
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{body:?}");
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("You were not logged out")
        );
        assert!(app.home().await.contains("Hello Example User!"));
    }

    // A body that is not a form at all.
    let resp = app
        .client
        .post(app.url("/logout"))
        .header("content-type", "application/json")
        .body(r#"{"csrf":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app.client.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(app.home().await.contains("Hello Example User!"));

    // The right token logs out.
    let resp = app
        .client
        .post(app.url("/logout"))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(app.home().await.contains("<h1>Hello World!</h1>"));
    app.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_protected_and_no_secret_reaches_a_page_or_a_cookie() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let resp = app.get_page("/login").await;
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let authorize = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    assert!(set_cookie.contains("Max-Age="), "{set_cookie}");
    let callback = wiki.approve(&authorize).await;
    let back = app.client.get(&callback).send().await.unwrap();
    let login_cookie = back.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Lax"));

    let mut seen_text = vec![set_cookie, login_cookie, app.session_cookie().unwrap()];
    for path in ["/", "/profile", "/logout"] {
        seen_text.push(app.get_page(path).await.text().await.unwrap());
    }
    let mut secrets = wiki.secrets_issued();
    assert!(
        secrets.len() >= 3,
        "request secret, verifier, access secret"
    );
    secrets.push(CONSUMER_SECRET.to_owned());
    for text in &seen_text {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into {text}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn tampered_and_foreign_session_cookies_log_nobody_in() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;
    let cookie = app.session_cookie().unwrap();
    let other = crate::helpers::client_with(Default::default());
    let home_with = |cookie: String| {
        let other = other.clone();
        let url = app.url("/");
        async move {
            other
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert!(
        home_with(cookie.clone())
            .await
            .contains("Hello Example User!")
    );

    // One character changed in the middle of the encrypted value.
    let mut bytes = cookie.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(home_with(tampered).await.contains("<h1>Hello World!</h1>"));

    // A cookie from another deployment (another key).
    let (foreign_app, foreign_wiki) = TestApp::with_fake_wiki().await;
    foreign_app.log_in(&foreign_wiki).await;
    let foreign = foreign_app.session_cookie().unwrap();
    assert!(home_with(foreign).await.contains("<h1>Hello World!</h1>"));
    // Plain JSON claiming a login is not a session either.
    let forged = format!(
        "hello_oauth_session={}",
        url::form_urlencoded::byte_serialize(
            br#"{"auth":{"state":"logged_in","token":{"key":"k","secret":"s"},"user":{"username":"Admin","sub":"1"},"csrf":"c","since":0}}"#
        )
        .collect::<String>()
    );
    assert!(home_with(forged).await.contains("<h1>Hello World!</h1>"));
    foreign_app.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_explicit_callback_is_sent_when_configured_and_must_fit_the_registration() {
    let (app, wiki) =
        TestApp::with_fake_wiki_and(|c| c.oauth_callback = CallbackMode::Public).await;
    // Registered "as prefix": the explicit callback is accepted.
    wiki.register_callback(&app.url("/"), true);

    assert!(
        attempt_login(&app, &wiki)
            .await
            .contains("Hello Example User!")
    );
    let initiate = wiki
        .seen()
        .into_iter()
        .find(|s| s.step == Some(Step::Initiate))
        .unwrap();
    assert_eq!(initiate.oauth["oauth_callback"], app.url("/oauth-callback"));

    // Registered without "use as prefix": only oob is accepted, and the
    // user is told what the wiki said.
    let home = app.home().await;
    app.client
        .post(app.url("/logout"))
        .form(&[("csrf", csrf_of(&home))])
        .send()
        .await
        .unwrap();
    wiki.register_callback(&app.url("/oauth-callback"), false);
    let home = attempt_login(&app, &wiki).await;
    assert!(home.contains("must be set to &quot;oob&quot;"), "{home}");
    app.stop().await;
}

#[tokio::test]
async fn the_public_url_builds_the_explicit_callback() {
    let (app, wiki) = TestApp::with_fake_wiki_and(|c| {
        c.oauth_callback = CallbackMode::Public;
        c.public_url = Some(url::Url::parse("https://my-tool.toolforge.org/").unwrap());
    })
    .await;
    wiki.register_callback("https://my-tool.toolforge.org/oauth-callback", true);

    let authorize = app.start_login("/login").await;
    let callback = wiki.approve(&authorize).await;

    assert!(
        callback.starts_with("https://my-tool.toolforge.org/oauth-callback?oauth_verifier="),
        "{callback}"
    );
    app.stop().await;
}

#[tokio::test]
async fn logging_in_again_while_logged_in_says_so() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    app.log_in(&wiki).await;

    let resp = app.get_page("/login").await;

    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/");
    let home = app.home().await;
    assert!(
        flashes(&home)
            .iter()
            .any(|f| f.contains("already logged in as Example User"))
    );
    app.stop().await;
}
