//! Test harness: starts the app in-process on a free loopback port and talks
//! to it with a cookie-keeping client that does not follow redirects.

use std::net::SocketAddr;
use std::time::Duration;

use hello_oauth::config::OAuthConsumer;
use hello_oauth::{App, Config};

use crate::fake_wiki::{CONSUMER_KEY, CONSUMER_SECRET, FakeWiki};

/// A running app and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the app with the default test configuration.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app after `tweak` has adjusted the configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        hello_oauth::telemetry::init_for_tests();
        let mut config = Config::for_tests();
        tweak(&mut config);
        let app = App::build(config).await.expect("the app builds");
        let addr = app.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        TestApp {
            addr,
            client: client_with(jar.clone()),
            jar,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts a fake wiki and the app configured to log in with it (the
    /// consumer registered with the app's `/oauth-callback`, not as prefix).
    pub async fn with_fake_wiki() -> (TestApp, FakeWiki) {
        Self::with_fake_wiki_and(|_| {}).await
    }

    /// Same, after `tweak` has adjusted the configuration.
    pub async fn with_fake_wiki_and(tweak: impl FnOnce(&mut Config)) -> (TestApp, FakeWiki) {
        let wiki = FakeWiki::start().await;
        let index = wiki.index_url();
        let app = TestApp::spawn_with(|c| {
            c.mwuri = url::Url::parse(&index).unwrap();
            c.consumer = Some(OAuthConsumer {
                key: CONSUMER_KEY.into(),
                secret: CONSUMER_SECRET.to_owned().into(),
            });
            c.wiki_timeout = Duration::from_secs(2);
            tweak(c);
        })
        .await;
        wiki.register_callback(&app.url("/oauth-callback"), false);
        (app, wiki)
    }

    /// `GET /login` and the wiki URL it sends the browser to.
    pub async fn start_login(&self, path: &str) -> String {
        let resp = self.get_page(path).await;
        assert_eq!(resp.status(), 303, "{path} redirects");
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.contains("title=Special%3AOAuth%2Fauthenticate"),
            "{path} goes to the wiki, not {location}"
        );
        location
    }

    /// The whole login: start, approve on the wiki, come back. Returns the
    /// callback's answer.
    pub async fn log_in(&self, wiki: &FakeWiki) -> reqwest::Response {
        let authorize = self.start_login("/login").await;
        let callback = wiki.approve(&authorize).await;
        self.client.get(&callback).send().await.unwrap()
    }

    /// Presses the logout button of `page` (a page with the logout form).
    pub async fn log_out(&self, page: &str) -> reqwest::Response {
        self.client
            .post(self.url("/logout"))
            .form(&[("csrf", csrf_of(page))])
            .send()
            .await
            .unwrap()
    }

    /// The home page's HTML.
    pub async fn home(&self) -> String {
        self.get_page("/").await.text().await.unwrap()
    }

    /// The session cookie as this client would send it, if any.
    pub fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore as _;
        let url = url::Url::parse(&self.url("/")).unwrap();
        self.jar
            .cookies(&url)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET path` as a browser would (asking for HTML).
    pub async fn get_page(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .expect("the request is answered")
    }

    /// Stops the app and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("the app task")
                .expect("the app stops cleanly");
        }
    }
}

/// The CSRF token of the logout form in `html`.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a logout form") + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_owned()
}

/// A client that keeps cookies in `jar` and does not follow redirects.
pub fn client_with(jar: std::sync::Arc<reqwest::cookie::Jar>) -> reqwest::Client {
    hello_oauth::install_crypto_provider();
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// Says loudly that a test did not run: written straight to the process's
/// stderr, past the test harness's output capture, so it shows in a passing
/// `cargo test` run too.
pub fn skip_loudly(what: &str) {
    use std::io::Write as _;
    let line = "=".repeat(70);
    let _ = writeln!(std::io::stderr(), "\n{line}\nSKIPPED: {what}\n{line}\n");
}
