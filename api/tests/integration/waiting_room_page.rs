//! The `/waiting-room` page in a real headless Chromium, driven over the Chrome
//! DevTools Protocol: it joins with the fan's id token from the URL fragment, shows a
//! place in line, then "your turn" once admitted; it joins again by itself when the
//! server has lost its token; `?userId=` still joins in development mode.
//! Screenshots are kept in `target/test-artifacts/` (or `$BOXOFFICE_TEST_ARTIFACTS`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::TestApp;
use crate::issuer;

struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn launch(port: u16) -> Browser {
    let profile = std::env::temp_dir().join(format!("boxoffice-chromium-{}", uuid::Uuid::now_v7()));
    let child = Command::new(std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into()))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--remote-debugging-port={port}"),
            "about:blank",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (./dev deps installs it)");
    Browser { child, profile }
}

struct Page {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    async fn open(port: u16, url: &str) -> Self {
        let http = reqwest::Client::new();
        let mut target = None;
        for _ in 0..100 {
            if let Ok(res) = http
                .put(format!("http://127.0.0.1:{port}/json/new"))
                .send()
                .await
                && let Ok(body) = res.json::<Value>().await
            {
                target = body["webSocketDebuggerUrl"].as_str().map(str::to_owned);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let target = target.expect("chromium's DevTools endpoint answers");
        let (socket, _) = tokio_tungstenite::connect_async(target)
            .await
            .expect("DevTools socket");
        let mut page = Self { socket, next_id: 1 };
        page.call("Page.navigate", json!({ "url": url })).await;
        page
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::Text(request.into()))
            .await
            .expect("send");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("DevTools answers")
                .expect("open")
                .expect("frame");
            if let Message::Text(text) = frame {
                let message: Value = serde_json::from_str(&text).expect("JSON");
                if message["id"] == id {
                    return message["result"].clone();
                }
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call("Runtime.evaluate", json!({"expression": expression}))
            .await;
        result["result"]["value"].clone()
    }

    async fn text_of(&mut self, id: &str) -> String {
        let expression = format!("(document.getElementById('{id}') || {{}}).textContent || ''");
        let result = self
            .call("Runtime.evaluate", json!({"expression": expression}))
            .await;
        result["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn wait_for_text(&mut self, id: &str, needle: &str) -> String {
        for _ in 0..100 {
            let text = self.text_of(id).await;
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self
            .call(
                "Runtime.evaluate",
                json!({"expression": "location.href + ' | ' + document.body.innerText"}),
            )
            .await;
        panic!(
            "#{id} never showed {needle:?}; the page: {}",
            page["result"]["value"]
        );
    }

    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64");
        let dir = std::env::var("BOXOFFICE_TEST_ARTIFACTS").map_or_else(
            |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("screenshot written");
        path
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every key of this app in Redis, gone: what a Redis restarted without
/// persistence looks like to it.
async fn wipe_redis(app: &TestApp) {
    let pattern = format!("{}:*", app.svc.keys.prefix());
    let mut redis = infra::redis::conn(&app.svc.redis).await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_place_in_line_then_your_turn() {
    let app = TestApp::spawn_with(|s| s.queue_admission = false).await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    app.waiting_token(concert, "someone-ahead").await;
    let port = free_port();
    let _browser = launch(port);

    // A link without proof of who the fan is gets no place (the app verifies tokens).
    let url = app.url(&format!(
        "/waiting-room?concertId={concert}&userId=page-user"
    ));
    let mut page = Page::open(port, &url).await;
    page.wait_for_text("status", "Please sign in first").await;

    // The login service sends the fan here with their id token in the fragment.
    let id_token = issuer::default_key().0.token_for("page-user");
    let url = app.url(&format!(
        "/waiting-room?concertId={concert}#idToken={id_token}"
    ));
    page.call("Page.navigate", json!({ "url": url })).await;
    let waiting = page.wait_for_text("status", "number 2 in line").await;
    assert_eq!(waiting, "You are number 2 in line");
    assert_eq!(
        page.eval("location.href").await.as_str(),
        Some(
            app.url(&format!("/waiting-room?concertId={concert}"))
                .as_str()
        ),
        "the id token is taken out of the address bar"
    );
    let token = page.eval("sessionStorage.getItem('boxoffice.token')").await;
    assert_eq!(
        app.standing(token.as_str().unwrap()).await["position"],
        2,
        "the page follows the token it was given"
    );
    let shot = page.screenshot("waiting-room-waiting.png").await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1_000,
        "a real screenshot"
    );

    infra::service::queue::tick_all(&app.svc).await.unwrap();
    page.wait_for_text("status", "your turn").await;
    let form_hidden = page
        .call(
            "Runtime.evaluate",
            json!({"expression": "getComputedStyle(document.getElementById('join')).display"}),
        )
        .await;
    assert_eq!(
        form_hidden["result"]["value"], "none",
        "the join form is hidden when the link carries the user"
    );
    page.screenshot("waiting-room-admitted.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_joins_again_by_itself_when_its_token_is_lost() {
    let app = TestApp::spawn_with(|s| {
        s.queue_admission = false;
        // The hub counts the tokens Redis still knows every grace / 4: 500 ms.
        s.queue_grace_seconds = 2;
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    app.waiting_token(concert, "someone-ahead").await;
    let port = free_port();
    let _browser = launch(port);
    let id_token = issuer::default_key().0.token_for("page-user");
    let url = app.url(&format!(
        "/waiting-room?concertId={concert}#idToken={id_token}"
    ));
    let mut page = Page::open(port, &url).await;
    page.wait_for_text("status", "number 2 in line").await;
    let lost = page.eval("sessionStorage.getItem('boxoffice.token')").await;

    // Redis comes back empty: every token is gone. The server closes the page's socket
    // with 4401 (unknown token) and the page joins again by itself, with the id token
    // it kept (the address bar no longer has it), and follows the new token.
    wipe_redis(&app).await;
    page.wait_for_text("status", "number 1 in line").await;
    let rejoined = page.eval("sessionStorage.getItem('boxoffice.token')").await;
    assert_ne!(rejoined, lost, "a new token");
    let standing = app.standing(rejoined.as_str().unwrap()).await;
    assert_eq!(
        standing["state"], "WAITING",
        "the page follows the new token: {standing}"
    );

    // The same when the state was lost while the page was closed: back in the tab, its
    // token is refused at once, and it joins again.
    wipe_redis(&app).await;
    page.call("Page.reload", json!({})).await;
    page.wait_for_text("status", "number 1 in line").await;
    let again = page.eval("sessionStorage.getItem('boxoffice.token')").await;
    assert_ne!(again, rejoined, "another new token");
    assert_eq!(app.standing(again.as_str().unwrap()).await["position"], 1);

    infra::service::queue::tick_all(&app.svc).await.unwrap();
    page.wait_for_text("status", "your turn").await;
    page.screenshot("waiting-room-rejoined.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_development_mode_the_page_joins_with_a_user_id() {
    let app = TestApp::spawn_with(|s| {
        s.queue_admission = false;
        s.identity_mode = Some(infra::config::IdentityMode::Development);
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let port = free_port();
    let _browser = launch(port);
    let url = app.url(&format!(
        "/waiting-room?concertId={concert}&userId=dev-user"
    ));
    let mut page = Page::open(port, &url).await;
    page.wait_for_text("status", "number 1 in line").await;
    let token = page.eval("sessionStorage.getItem('boxoffice.token')").await;
    assert_eq!(app.standing(token.as_str().unwrap()).await["position"], 1);
}
