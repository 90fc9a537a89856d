//! Logins and calls to the wiki as monitoring sees them in `/metrics`:
//! started, completed, failed by reason, and each call to the wiki by step
//! and outcome, against the honest fake wiki.

use std::time::Duration;

use crate::fake_wiki::{FakeWiki, JwtFault, Misbehaviour, Step, down_address};
use crate::helpers::TestApp;
use crate::ops::{Sample, find, scrape};

const REASONS: [&str; 11] = [
    "not_configured",
    "no_pending_login",
    "login_expired",
    "token_mismatch",
    "bad_callback",
    "user_declined",
    "wiki_refused",
    "wiki_unreachable",
    "wiki_timeout",
    "wiki_bad_answer",
    "identity_invalid",
];
const STEPS: [&str; 4] = ["initiate", "token", "identify", "api"];
const OUTCOMES: [&str; 7] = [
    "ok",
    "refused",
    "http_error",
    "timeout",
    "unreachable",
    "invalid_response",
    "cancelled",
];

/// The login and wiki-call figures of one scrape.
struct Figures(Vec<Sample>);

impl Figures {
    async fn of(app: &TestApp) -> Figures {
        Figures(scrape(app).await.1)
    }

    fn one(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = find(&self.0, name, labels);
        assert!(found.len() <= 1, "{name} {labels:?}: {found:#?}");
        found.first().map(|s| s.value)
    }

    fn started(&self) -> f64 {
        self.one("hello_oauth_login_started_total", &[]).unwrap()
    }

    fn completed(&self) -> f64 {
        self.one("hello_oauth_login_completed_total", &[]).unwrap()
    }

    fn failed(&self, reason: &str) -> f64 {
        self.one("hello_oauth_login_failed_total", &[("reason", reason)])
            .unwrap_or_else(|| panic!("no series for reason {reason}"))
    }

    /// Calls to the wiki at `step` that ended with `outcome` (0 when the
    /// series does not exist yet).
    fn calls(&self, step: &str, outcome: &str) -> f64 {
        self.one(
            "hello_oauth_wiki_call_duration_seconds_count",
            &[("step", step), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    }

    /// Every login and wiki-call figure, for comparing two scrapes.
    fn all(&self) -> Vec<(String, f64)> {
        let mut all = vec![
            ("started".to_owned(), self.started()),
            ("completed".to_owned(), self.completed()),
        ];
        for reason in REASONS {
            all.push((format!("failed {reason}"), self.failed(reason)));
        }
        for step in STEPS {
            for outcome in OUTCOMES {
                all.push((format!("{step} {outcome}"), self.calls(step, outcome)));
            }
        }
        all
    }
}

/// What changed between two scrapes, as `(figure, increase)` by name.
fn increases(before: &Figures, after: &Figures) -> Vec<(String, f64)> {
    let mut changed: Vec<(String, f64)> = before
        .all()
        .into_iter()
        .zip(after.all())
        .filter(|((_, b), (_, a))| a != b)
        .map(|((name, b), (_, a))| (name, a - b))
        .collect();
    changed.sort_by(|a, b| a.0.cmp(&b.0));
    changed
}

/// Each of `figures` up by one, by name.
fn expected(figures: &[&str]) -> Vec<(String, f64)> {
    let mut up: Vec<(String, f64)> = figures.iter().map(|f| ((*f).to_owned(), 1.0)).collect();
    up.sort_by(|a, b| a.0.cmp(&b.0));
    up
}

/// Tries to log in, whatever happens (the callback always redirects).
async fn attempt_login(app: &TestApp, wiki: &FakeWiki) {
    let resp = app.client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    if location.starts_with('/') {
        return;
    }
    let callback = wiki.approve(&location).await;
    let back = app.client.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 303);
}

#[tokio::test]
async fn every_login_figure_starts_at_zero() {
    let (app, _wiki) = TestApp::with_fake_wiki().await;

    let figures = Figures::of(&app).await;

    assert_eq!(figures.started(), 0.0);
    assert_eq!(figures.completed(), 0.0);
    for reason in REASONS {
        assert_eq!(figures.failed(reason), 0.0, "{reason}");
    }
    let reasons = find(&figures.0, "hello_oauth_login_failed_total", &[]);
    assert_eq!(
        reasons.len(),
        REASONS.len(),
        "no other reason: {reasons:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_real_login_counts_as_started_and_completed_with_each_wiki_step_ok() {
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let before = Figures::of(&app).await;

    app.log_in(&wiki).await;
    let after_login = Figures::of(&app).await;
    let resp = app
        .client
        .get(app.url("/api/v1/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let after_userinfo = Figures::of(&app).await;

    assert_eq!(
        increases(&before, &after_login),
        expected(&[
            "started",
            "completed",
            "initiate ok",
            "token ok",
            "identify ok"
        ])
    );
    assert_eq!(
        increases(&after_login, &after_userinfo),
        expected(&["api ok"])
    );
    // The durations are real: the sum of a call's histogram is positive.
    let sum = find(
        &after_login.0,
        "hello_oauth_wiki_call_duration_seconds_sum",
        &[("step", "token"), ("outcome", "ok")],
    );
    assert!(sum[0].value > 0.0, "{sum:?}");
    app.stop().await;
}

#[tokio::test]
async fn each_failed_login_counts_its_reason_and_how_the_wiki_call_ended() {
    let (app, wiki) =
        TestApp::with_fake_wiki_and(|c| c.wiki_timeout = Duration::from_secs(1)).await;
    let cases: Vec<(Step, Misbehaviour, Vec<&str>)> = vec![
        (
            Step::Initiate,
            Misbehaviour::TextError("Consumer is not approved, E005".into()),
            vec!["failed wiki_refused", "initiate refused"],
        ),
        (
            Step::Initiate,
            Misbehaviour::ServerError,
            vec!["failed wiki_bad_answer", "initiate http_error"],
        ),
        (
            Step::Initiate,
            Misbehaviour::Slow(Duration::from_secs(3)),
            vec!["failed wiki_timeout", "initiate timeout"],
        ),
        (
            Step::Token,
            Misbehaviour::Garbage,
            vec![
                "started",
                "initiate ok",
                "failed wiki_bad_answer",
                "token invalid_response",
            ],
        ),
        (
            Step::Token,
            Misbehaviour::JsonError(
                "mwoauthdatastore-request-token-already-used".into(),
                "Request token already used, E009".into(),
            ),
            vec![
                "started",
                "initiate ok",
                "failed login_expired",
                "token refused",
            ],
        ),
        (
            Step::Identify,
            Misbehaviour::Jwt(JwtFault::WrongAudience),
            vec![
                "started",
                "initiate ok",
                "token ok",
                "failed identity_invalid",
                "identify invalid_response",
            ],
        ),
        (
            Step::Identify,
            Misbehaviour::Huge(4 * 1024 * 1024),
            vec![
                "started",
                "initiate ok",
                "token ok",
                "failed wiki_bad_answer",
                "identify invalid_response",
            ],
        ),
    ];

    for (step, how, figures) in cases {
        wiki.behave();
        wiki.misbehave(step, how.clone());
        let before = Figures::of(&app).await;

        attempt_login(&app, &wiki).await;

        let after = Figures::of(&app).await;
        assert_eq!(
            increases(&before, &after),
            expected(&figures),
            "{step:?} {how:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_failure_before_any_call_to_the_wiki_counts_only_its_reason() {
    let (app, _wiki) = TestApp::with_fake_wiki().await;
    let before = Figures::of(&app).await;

    let resp = app
        .client
        .get(app.url("/oauth-callback"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 303);
    let after = Figures::of(&app).await;
    assert_eq!(
        increases(&before, &after),
        expected(&["failed bad_callback"])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wiki_that_is_down_counts_as_unreachable_once_despite_the_retry() {
    let down = down_address().await;
    let app = TestApp::spawn_with(|c| {
        c.mwuri = url::Url::parse(&format!("http://{down}/w/index.php")).unwrap();
        c.consumer = Some(hello_oauth::config::OAuthConsumer {
            key: "k".into(),
            secret: "s".to_owned().into(),
        });
    })
    .await;
    let before = Figures::of(&app).await;

    let resp = app.client.get(app.url("/login")).send().await.unwrap();

    assert_eq!(resp.headers()["location"], "/");
    let after = Figures::of(&app).await;
    assert_eq!(
        increases(&before, &after),
        expected(&["failed wiki_unreachable", "initiate unreachable"])
    );
    app.stop().await;
}

#[tokio::test]
async fn failed_userinfo_calls_are_counted_under_the_api_step() {
    let (app, wiki) =
        TestApp::with_fake_wiki_and(|c| c.wiki_timeout = Duration::from_secs(1)).await;
    app.log_in(&wiki).await;

    for (how, figure) in [
        (Misbehaviour::Slow(Duration::from_secs(3)), "api timeout"),
        (Misbehaviour::Garbage, "api invalid_response"),
        (Misbehaviour::ServerError, "api http_error"),
    ] {
        wiki.behave();
        wiki.misbehave(Step::Api, how.clone());
        let before = Figures::of(&app).await;

        app.client
            .get(app.url("/api/v1/userinfo"))
            .send()
            .await
            .unwrap();

        let after = Figures::of(&app).await;
        assert_eq!(increases(&before, &after), expected(&[figure]), "{how:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_call_abandoned_at_the_request_deadline_is_counted_as_cancelled() {
    let (app, wiki) = TestApp::with_fake_wiki_and(|c| {
        c.wiki_timeout = Duration::from_secs(5);
        c.request_timeout = Duration::from_secs(1);
    })
    .await;
    app.log_in(&wiki).await;
    wiki.misbehave(Step::Api, Misbehaviour::Slow(Duration::from_secs(3)));
    let before = Figures::of(&app).await;

    let resp = app
        .client
        .get(app.url("/api/v1/userinfo"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 503, "the request deadline answered");
    let after = Figures::of(&app).await;
    assert_eq!(increases(&before, &after), expected(&["api cancelled"]));
    let sum = |f: &Figures| {
        find(
            &f.0,
            "hello_oauth_wiki_call_duration_seconds_sum",
            &[("step", "api"), ("outcome", "cancelled")],
        )
        .first()
        .map_or(0.0, |s| s.value)
    };
    let waited = sum(&after) - sum(&before);
    assert!((0.9..3.0).contains(&waited), "waited {waited} s");
    app.stop().await;
}
