//! The `/waiting-room` page in a real headless Chromium, driven over the Chrome
//! DevTools Protocol: it joins with the fan's id token from the URL fragment, shows a
//! place in line, then "your turn" once admitted; it joins again by itself when the
//! server has lost its token; `?userId=` still joins in development mode. Before a
//! sale opens it counts down to the opening (on the server's clock, whatever the fan's
//! computer says), then shows the place the opening gave; a closed line and a sold-out
//! concert end the visit.
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
        self.wait_for_text_within(id, needle, Duration::from_secs(10))
            .await
    }

    async fn wait_for_text_within(&mut self, id: &str, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
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
        // A tab in the background draws nothing (its screenshot would never come).
        self.call("Page.bringToFront", json!({})).await;
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

/// An operator's change to a concert's sale: `PATCH .../sale` with `body`, or
/// `POST .../sale/{action}` (pause, resume, close) without one.
async fn control_sale(app: &TestApp, concert: u64, action: &str, body: Option<&Value>) {
    let res = match body {
        Some(_) => {
            app.admin(
                reqwest::Method::PATCH,
                &format!("/v1/admin/concerts/{concert}/sale"),
                body,
            )
            .await
        }
        None => {
            app.admin(
                reqwest::Method::POST,
                &format!("/v1/admin/concerts/{concert}/sale/{action}"),
                None,
            )
            .await
        }
    };
    assert_eq!(res.status(), reqwest::StatusCode::OK, "sale {action}");
}

/// The link the login service sends `user` to, their id token in the fragment.
fn fan_url(app: &TestApp, concert: u64, user: &str) -> String {
    let id_token = issuer::default_key().0.token_for(user);
    app.url(&format!(
        "/waiting-room?concertId={concert}#idToken={id_token}"
    ))
}

/// A fan whose computer's clock is 37 minutes fast.
const FAST_CLOCK: &str =
    "(() => { const now = Date.now; Date.now = () => now.call(Date) + 37 * 60 * 1000; })();";
/// A network on which WebSockets never connect (a proxy that drops them): the page has
/// only its polling.
const NO_SOCKETS: &str = "window.WebSocket = class { constructor() { \
     window.socketTries = (window.socketTries || 0) + 1; \
     setTimeout(() => this.onclose && this.onclose({code: 1006}), 50); } close() {} };";

/// The seconds on the countdown: "Sale opens in 1:07" -> 67.
fn countdown_seconds(status: &str) -> i64 {
    let rest = status
        .split("Sale opens in ")
        .nth(1)
        .unwrap_or_else(|| panic!("no countdown in {status:?}"));
    rest.chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect::<String>()
        .split(':')
        .fold(0, |seconds, part| {
            seconds * 60 + part.parse::<i64>().expect("digits")
        })
}

/// Polls until the JavaScript expression `condition` is true in the page.
async fn until_page(page: &mut Page, what: &str, condition: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while page.eval(condition).await != Value::Bool(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}; the page: {}",
            page.eval("document.body.innerText").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Blank tabs, each running its script (if any) in every document it loads.
async fn tabs(port: u16, scripts: &[Option<&str>]) -> Vec<Page> {
    let mut pages = Vec::new();
    for script in scripts {
        let mut page = Page::open(port, "about:blank").await;
        if let Some(script) = script {
            // (Scripts for new documents run only with the Page domain on.)
            page.call("Page.enable", json!({})).await;
            page.call(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": script }),
            )
            .await;
        }
        pages.push(page);
    }
    pages
}

/// The page counts down to `opens_at` on the server's clock (within 2 s), and the
/// fan it follows is pre-queued: waiting, no position, the opening known.
async fn assert_counting_down(
    app: &TestApp,
    page: &mut Page,
    opens_at: chrono::DateTime<chrono::Utc>,
) {
    let status = page.wait_for_text("status", "Sale opens in 0:0").await;
    let shown = countdown_seconds(&status) * 1000;
    let left = (opens_at - chrono::Utc::now()).num_milliseconds();
    assert!(
        (shown - left).abs() < 2_000,
        "the countdown shows {shown} ms, the opening is {left} ms away: {status:?}"
    );
    let token = page.eval("sessionStorage.getItem('boxoffice.token')").await;
    let standing = app.standing(token.as_str().expect("a token")).await;
    assert_eq!(standing["state"], "WAITING", "{standing}");
    assert!(standing["position"].is_null(), "pre-queued: {standing}");
    assert!(standing["opensAt"].is_string(), "pre-queued: {standing}");
}

/// The status line of every page, once exactly `turns` of them show "your turn" and
/// the others a place in line.
async fn until_placed(pages: &mut [Page], turns: usize, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut statuses = Vec::new();
        for page in &mut *pages {
            statuses.push(page.text_of("status").await);
        }
        let admitted = statuses.iter().filter(|s| s.contains("your turn")).count();
        let placed = statuses.iter().filter(|s| s.contains(" in line")).count();
        if admitted == turns && placed == statuses.len() - turns {
            return statuses;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not placed within {within:?}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_counts_down_to_the_opening_then_shows_the_place_it_gave() {
    const FAST: usize = 0;
    const USUAL: usize = 1;
    const POLLING: usize = 2;
    // Admission ticks run (every 20 ms) as in production; one fan at a time is active.
    let app = TestApp::spawn().await;
    let port = free_port();
    let _browser = launch(port);
    // Three fans: one whose computer's clock is 37 minutes fast, one as usual, one on a
    // network without WebSockets (the page has only its polling).
    let mut pages = tabs(port, &[Some(FAST_CLOCK), None, Some(NO_SOCKETS)]).await;

    // The sale opens in 8 seconds: the browser is up, the pages join well before.
    let opens_at = chrono::Utc::now() + chrono::Duration::seconds(8);
    let (concert, _) = app
        .create_sale(
            &[10],
            100,
            &json!({
                "opensAt": opens_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "activeCapacity": 1,
            }),
        )
        .await;
    for (page, fan) in pages
        .iter_mut()
        .zip(["fan-fast", "fan-usual", "fan-polling"])
    {
        page.call(
            "Page.navigate",
            json!({ "url": fan_url(&app, concert, fan) }),
        )
        .await;
    }

    // Each page counts down to the opening on the server's clock, the fast one too.
    for page in &mut pages {
        assert_counting_down(&app, page, opens_at).await;
    }
    let fast_now = pages[FAST].eval("Date.now()").await.as_i64().expect("ms");
    assert!(
        fast_now - chrono::Utc::now().timestamp_millis() > 30 * 60 * 1000,
        "the fast clock is in effect"
    );
    let detail = pages[USUAL].text_of("detail").await;
    assert!(detail.starts_with("The sale opens at "), "{detail}");
    let note = pages[USUAL].text_of("note").await;
    assert!(
        note.contains("does not get you a better place") && note.contains("random order"),
        "{note}"
    );
    pages[FAST].screenshot("waiting-room-countdown.png").await;

    // The opening gives the three a place in a random order; the one active place goes
    // to whoever is first. The page without sockets learns its place by polling.
    let statuses = until_placed(&mut pages, 1, Duration::from_secs(30)).await;
    assert!(
        chrono::Utc::now() >= opens_at,
        "nobody has a place before the opening"
    );
    // One of the two pages with a socket waits in line: the one to watch. Its place
    // counts the two still in line, once the server has told it.
    let watched = if statuses[FAST].contains(" in line") {
        FAST
    } else {
        USUAL
    };
    until_page(
        &mut pages[watched],
        "place 1 or 2",
        "/^You are number [12] in line$/.test(document.getElementById('status').textContent)",
        Duration::from_secs(5),
    )
    .await;
    pages[watched].screenshot("waiting-room-opened.png").await;

    // Room for everyone: each page shows "your turn" (the polling one at its next poll).
    control_sale(&app, concert, "update", Some(&json!({"activeCapacity": 3}))).await;
    for page in &mut pages {
        page.wait_for_text_within("status", "your turn", Duration::from_secs(30))
            .await;
    }
    pages[watched]
        .screenshot("waiting-room-opened-turn.png")
        .await;
    assert!(
        pages[POLLING].eval("window.socketTries").await.as_u64() > Some(0),
        "the polling page tried sockets and never had one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_line_ends_the_visit_and_the_page_does_not_join_again() {
    let app = TestApp::spawn().await;
    let opens_at = chrono::Utc::now() + chrono::Duration::hours(1);
    let (concert, _) = app
        .create_sale(
            &[10],
            100,
            &json!({"opensAt": opens_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
        )
        .await;
    let port = free_port();
    let _browser = launch(port);
    let mut page = Page::open(port, &fan_url(&app, concert, "page-user")).await;
    let status = page.wait_for_text("status", "Sale opens in ").await;
    assert!(countdown_seconds(&status) > 3_500, "{status:?}");

    // The operator closes the line before it opens: the page says so, forgets its token.
    control_sale(&app, concert, "close", None).await;
    page.wait_for_text("status", "The line is closed").await;
    assert!(
        page.eval("sessionStorage.getItem('boxoffice.token')")
            .await
            .is_null()
    );
    page.screenshot("waiting-room-closed.png").await;

    // The fan comes back by the link again (from another page): the join is refused,
    // the page says why and stays.
    page.call("Page.navigate", json!({ "url": "about:blank" }))
        .await;
    page.call(
        "Page.navigate",
        json!({ "url": fan_url(&app, concert, "page-user") }),
    )
    .await;
    until_page(
        &mut page,
        "a fresh page that says the line is closed",
        "document.getElementById('status').textContent === 'The line is closed'",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        page.eval("sessionStorage.getItem('boxoffice.token')")
            .await
            .is_null(),
        "no token: the line gave no place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_concert_ends_the_visit() {
    let app = TestApp::spawn().await;
    // One seat, one fan active at a time; the sale is open from the start.
    let (concert, schedules) = app
        .create_sale(&[1], 100, &json!({"activeCapacity": 1}))
        .await;
    let buyer = app.token(concert, "buyer").await;
    let port = free_port();
    let _browser = launch(port);
    let mut page = Page::open(port, &fan_url(&app, concert, "page-user")).await;
    page.wait_for_text("status", "number 1 in line").await;

    // The active fan buys the last seat: the page in line hears it is sold out.
    let reservation = app.held(&buyer, schedules[0], 1).await;
    assert!(app.charge(&buyer, 100, "c1").await.status().is_success());
    assert!(
        app.pay(&buyer, reservation, "p1")
            .await
            .status()
            .is_success()
    );
    let status = page.wait_for_text("status", "Sold out").await;
    assert_eq!(status, "Sold out");
    assert!(
        page.eval("sessionStorage.getItem('boxoffice.token')")
            .await
            .is_null()
    );
    page.screenshot("waiting-room-sold-out.png").await;
}
