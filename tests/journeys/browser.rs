//! A real browser: headless Chromium, driven through chromedriver's
//! WebDriver HTTP API, logs in on the fake wiki and out again. Screenshots
//! of every page go to `target/screenshots/`; with `UPDATE_SCREENSHOT=1` the
//! logged-in page is also written to `docs/screenshot.png`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, ended when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    session: Option<String>,
    _profile: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = std::env::temp_dir().join(format!(
            "hello-oauth-chromium-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            session: None,
            _profile: TempDir(profile),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                && let Ok(status) = resp.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let session = self.session.as_deref().unwrap_or("");
        let url = format!("{}/session/{session}{path}", self.base);
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("chromedriver answers");
        let status = resp.status();
        let value: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {path}: {status} {value}");
        value["value"].clone()
    }

    async fn new_session(&mut self, profile: &Path) {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1100,720",
                ]
            }
        }}});
        let resp: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"));
        self.session = Some(id.to_owned());
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn text(&self) -> String {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": "return document.body.innerText", "args": []})),
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_owned()
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn wait_for_text(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} never appeared; the page at {} says:\n{text}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let element = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = element[ELEMENT].as_str().unwrap().to_owned();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    async fn screenshot(&self, path: &Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }

    async fn quit(&mut self) {
        if self.session.is_some() {
            self.call(reqwest::Method::DELETE, "", None).await;
            self.session = None;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_and_out_with_a_real_browser() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver must be installed on CI (apt-get install chromium chromium-driver)"
        );
        crate::helpers::skip_loudly(
            "chromium not installed (apt-get install chromium chromium-driver): \
             the real-browser login test did not run",
        );
        return;
    }
    let (app, wiki) = TestApp::with_fake_wiki().await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut driver = Driver::start().await;
    let profile = driver._profile.0.clone();
    driver.new_session(&profile).await;

    driver.goto(&app.url("/")).await;
    driver.wait_for_text("Hello World!").await;
    driver.screenshot(&shots.join("1-home.png")).await;

    driver.click("a.button[href='/login']").await;
    driver
        .wait_for_text("would like to verify your identity")
        .await;
    assert!(
        driver
            .url()
            .await
            .contains("title=Special%3AOAuth%2Fauthenticate")
    );
    driver.screenshot(&shots.join("2-wiki-approval.png")).await;

    driver.click("#mw-mwoauth-accept").await;
    let text = driver.wait_for_text("Hello Example User!").await;
    assert!(text.contains("1,234"), "{text}");
    assert!(text.contains("You are logged in as Example User."));
    assert_eq!(driver.url().await, app.url("/"));
    driver.screenshot(&shots.join("3-logged-in.png")).await;
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        driver
            .screenshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshot.png"))
            .await;
    }
    driver.resize(390, 844).await;
    driver
        .screenshot(&shots.join("3-logged-in-phone.png"))
        .await;

    driver.goto(&app.url("/profile")).await;
    driver.wait_for_text("Live from 127.0.0.1").await;
    driver.screenshot(&shots.join("4-profile-phone.png")).await;
    driver.resize(1100, 720).await;

    driver.click("form[action='/logout'] button").await;
    let text = driver.wait_for_text("You have logged out.").await;
    assert!(text.contains("Hello World!"));
    assert!(!text.contains("Example User"));
    driver.screenshot(&shots.join("5-logged-out.png")).await;

    driver.quit().await;
    let signed: Vec<_> = wiki
        .seen()
        .into_iter()
        .filter(|s| s.step.is_some())
        .collect();
    assert!(signed.len() >= 4 && signed.iter().all(|s| s.signature_ok));
    app.stop().await;
}
