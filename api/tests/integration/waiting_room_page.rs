//! The `/waiting-room` page in a real headless Chromium, driven over the Chrome
//! DevTools Protocol: it joins with the fan's id token from the URL fragment, shows a
//! place in line, then "your turn" once admitted; it joins again by itself when the
//! server has lost its token; `?userId=` still joins in development mode. Before a
//! sale opens it counts down to the opening (on the server's clock, whatever the fan's
//! computer says), then shows the place the opening gave; a closed line and a sold-out
//! concert end the visit. Once let in, the fan books on the page: a seat map by grade,
//! a hold of the picked seats as one order, a top-up, a payment retried safely, and a
//! cancellation with its refund and fee.
//! Screenshots are kept in `target/test-artifacts/` (or `$BOXOFFICE_TEST_ARTIFACTS`);
//! the README's copies are in `docs/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use infra::testing::redis;
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
        let dir = std::env::var(crate::helpers::HARNESS_VARIABLES[2]).map_or_else(
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
    let mut redis = infra::testing::conn(&app.svc.redis).await.unwrap();
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

// ---- Booking on the page (issue 15) -----------------------------------------------------

/// Prices whose 10% cancellation fee is not a whole number of points (the fee rounds
/// down, in the fan's favour).
const VIP_PRICE: u64 = 33_333;
const R_PRICE: u64 = 22_222;
const FEE_PERCENT: u64 = 10;
/// The seats one fan may have of a concert when its sale does not say (the public
/// sale view the page reads does not carry `maxSeatsPerFan`: the page assumes this).
const MAX_SEATS_PER_FAN: u64 = 4;

/// A concert of one schedule in two grades: VIP seats 1-4, R seats 5-12. Returns the
/// concert and schedule ids.
async fn create_graded_concert(app: &TestApp) -> (u64, u64) {
    let body = json!({
        "title": "Graded Concert",
        "artist": "Test Band",
        "schedules": [{
            "venue": "Test Hall",
            "startsAt": "2027-01-01T19:00:00Z",
            "grades": [
                {"name": "VIP", "price": VIP_PRICE, "firstSeat": 1, "lastSeat": 4},
                {"name": "R", "price": R_PRICE, "firstSeat": 5, "lastSeat": 12},
            ],
        }],
        "cancellation": {"cutoffHours": 24, "feePercent": FEE_PERCENT},
    });
    let res = app
        .admin(reqwest::Method::POST, "/v1/admin/concerts", Some(&body))
        .await;
    let status = res.status();
    let created: Value = res.json().await.expect("json");
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    (
        created["concertId"].as_u64().expect("concert id"),
        created["scheduleIds"][0].as_u64().expect("schedule id"),
    )
}

/// The value of a JavaScript expression, through JSON (arrays and objects too).
async fn json_of(page: &mut Page, expression: &str) -> Value {
    let text = page.eval(&format!("JSON.stringify({expression})")).await;
    serde_json::from_str(text.as_str().unwrap_or("null")).expect("JSON from the page")
}

/// Clicks what `selector` names as a fan would: the mouse pressed and released on its
/// middle, where it must be visible and on top.
async fn click(page: &mut Page, selector: &str) {
    let at = json_of(
        page,
        &format!(
            "(() => {{ const e = document.querySelector({selector:?}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             const x = r.x + r.width / 2, y = r.y + r.height / 2; \
             const top = document.elementFromPoint(x, y); \
             return {{x, y, onTop: !!top && (top === e || e.contains(top))}}; }})()"
        ),
    )
    .await;
    assert!(
        at["onTop"] == true,
        "{selector} is not there to click ({at}); the page: {}",
        page.eval("document.body.innerText").await
    );
    for kind in ["mousePressed", "mouseReleased"] {
        page.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": at["x"], "y": at["y"], "button": "left", "clickCount": 1}),
        )
        .await;
    }
}

/// A screenshot of the whole page (the booking part is taller than the window), from
/// its top, without scrollbars.
async fn whole_page_screenshot(page: &mut Page, name: &str) {
    page.call("Emulation.setScrollbarsHidden", json!({"hidden": true}))
        .await;
    page.eval("window.scrollTo(0, 0)").await;
    // The page's margins are in vh: a taller window makes it a little taller too.
    let mut height = 700;
    for _ in 0..5 {
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 900, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        let needed = page
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .await
            .as_u64()
            .expect("height");
        if needed <= height {
            break;
        }
        height = needed;
    }
    let shot = page.screenshot(name).await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1_000,
        "a real screenshot"
    );
    page.call("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;
    page.call("Emulation.setScrollbarsHidden", json!({"hidden": false}))
        .await;
}

/// The code of the problem the page shows, once it shows one.
async fn problem_shown(page: &mut Page, code: &str) -> String {
    until_page(
        page,
        &format!("the page shows {code}"),
        &format!("document.getElementById('problem').dataset.code === {code:?} && !document.getElementById('problem').hidden"),
        Duration::from_secs(10),
    )
    .await;
    page.text_of("problem").await
}

async fn order_status_shown(page: &mut Page, status: &str) {
    until_page(
        page,
        &format!("the order shows {status}"),
        &format!("document.getElementById('order-status').textContent === {status:?}"),
        Duration::from_secs(10),
    )
    .await;
}

/// Records the Idempotency-Key of every payment the page sends, and loses the answer
/// of the next one when `window.loseNextPayment` is set (the request reaches the server
/// and is done; the page hears nothing).
const PAYMENT_SPY: &str = "(() => { window.payKeys = []; window.loseNextPayment = false; \
     const realFetch = window.fetch; \
     window.fetch = async (url, init) => { \
       if (String(url).endsWith('/payment')) { \
         window.payKeys.push(init.headers['idempotency-key']); \
         if (window.loseNextPayment) { window.loseNextPayment = false; \
           await realFetch(url, init); throw new TypeError('Failed to fetch'); } } \
       return realFetch(url, init); }; \
     return true; })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_let_in_the_page_books_pays_and_cancels_an_order() {
    let app = TestApp::spawn_with(|s| s.queue_admission = false).await;
    let (concert, schedule) = create_graded_concert(&app).await;
    let port = free_port();
    let _browser = launch(port);
    let mut page = Page::open(port, &fan_url(&app, concert, "page-fan")).await;
    page.wait_for_text("status", "number 1 in line").await;
    // Another fan, behind in line; both are let in at the next tick.
    let rival = app.waiting_token(concert, "rival").await;
    infra::service::queue::tick_all(&app.svc).await.unwrap();
    page.wait_for_text("status", "your turn").await;
    app.until_state(&rival, "ACTIVE").await;

    shows_the_seat_map_by_grade(&mut page).await;
    names_a_seat_taken_meanwhile(&app, &mut page, &rival, schedule).await;
    let (order, fan) = holds_the_picked_seats(&app, &mut page).await;
    tops_up_and_pays_once(&app, &mut page, order, &fan, schedule).await;
    cancels_for_a_fee(&app, &mut page, order, &fan, schedule).await;
}

/// The seat map, by grade: each seat with its grade, a colour per grade, a legend of
/// grade, price and free seats, and the sale's seat limit.
async fn shows_the_seat_map_by_grade(page: &mut Page) {
    until_page(
        page,
        "the seat map",
        "document.querySelectorAll('#seats [data-seat]').length === 12",
        Duration::from_secs(10),
    )
    .await;
    let grades = json_of(
        page,
        "[...document.querySelectorAll('#seats [data-seat]')].map(b => b.dataset.grade)",
    )
    .await;
    let expected: Vec<&str> = (1..=12).map(|n| if n <= 4 { "VIP" } else { "R" }).collect();
    assert_eq!(grades, json!(expected));
    let legend = json_of(
        page,
        "[...document.querySelectorAll('#legend li[data-grade]')]\
         .map(li => [li.dataset.grade, Number(li.dataset.price), Number(li.dataset.available)])",
    )
    .await;
    assert_eq!(legend, json!([["VIP", VIP_PRICE, 4], ["R", R_PRICE, 8]]));
    let legend = page.text_of("legend").await;
    for text in [
        format!("VIP {} · 4 free", points_text(VIP_PRICE)),
        format!("R {} · 8 free", points_text(R_PRICE)),
    ] {
        assert!(legend.contains(&text), "{text:?} in {legend:?}");
    }
    let colours = json_of(
        page,
        "[1, 5].map(n => getComputedStyle(document.querySelector(`[data-seat=\"${n}\"]`)).backgroundColor)",
    )
    .await;
    assert_ne!(colours[0], colours[1], "each grade its colour");
    let limit = page.text_of("limit").await;
    assert!(
        limit.contains(&format!("Up to {MAX_SEATS_PER_FAN} seats per fan")),
        "{limit}"
    );
    whole_page_screenshot(page, "orders-seat-map.png").await;
}

/// The rival takes seat 3 while the page still shows it free. The fan picks 3 and 6
/// and asks to hold them: nothing is held, the page names the taken seat and shows
/// the map as it is now (3 taken, 6 still picked).
async fn names_a_seat_taken_meanwhile(app: &TestApp, page: &mut Page, rival: &str, schedule: u64) {
    let res = order(app, rival, &json!({"scheduleId": schedule, "seats": [3]})).await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    click(page, "[data-seat=\"3\"]").await;
    click(page, "[data-seat=\"6\"]").await;
    assert_eq!(
        json_of(page, "document.getElementById('picked').dataset.count").await,
        "2"
    );
    click(page, "#hold").await;
    let shown = problem_shown(page, "SEAT_TAKEN").await;
    assert!(
        shown.contains("seat 3 ") || shown.contains("seats 3 "),
        "{shown}"
    );
    until_page(
        page,
        "seat 3 shown taken",
        "document.querySelector('[data-seat=\"3\"]').dataset.status === 'HELD' \
         && document.querySelector('[data-seat=\"3\"]').disabled \
         && document.querySelector('#legend li[data-grade=\"VIP\"]').dataset.available === '3'",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        json_of(
            page,
            "[...document.querySelectorAll('#seats [aria-pressed=\"true\"]')].map(b => Number(b.dataset.seat))"
        )
        .await,
        json!([6])
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM orders WHERE user_id = 'page-fan'")
            .await,
        0,
        "all or nothing"
    );
    whole_page_screenshot(page, "orders-seat-taken.png").await;
}

/// No more picks than a fan may have; then 2 (VIP) and 6 (R) held as one order, shown
/// HELD with its lines, total and a countdown to `heldUntil`. Returns the order and the
/// page's token.
async fn holds_the_picked_seats(app: &TestApp, page: &mut Page) -> (u64, String) {
    // 6 is picked already; 2, 7, 8 make four; 9 is one too many.
    for seat in [2, 7, 8, 9] {
        click(page, &format!("[data-seat=\"{seat}\"]")).await;
    }
    assert_eq!(
        json_of(
            page,
            "[Number(document.getElementById('picked').dataset.count), document.getElementById('limit').dataset.reached]"
        )
        .await,
        json!([MAX_SEATS_PER_FAN, "true"]),
        "a pick beyond the limit is refused"
    );
    for seat in [7, 8] {
        click(page, &format!("[data-seat=\"{seat}\"]")).await; // changed their mind
    }

    click(page, "#hold").await;
    order_status_shown(page, "HELD").await;
    let order = json_of(
        page,
        "Number(document.getElementById('order').dataset.orderId)",
    )
    .await
    .as_u64()
    .expect("order id");
    let total = VIP_PRICE + R_PRICE;
    let lines = json_of(
        page,
        "[...document.querySelectorAll('#order-seats tr')]\
         .map(tr => [Number(tr.dataset.seat), tr.dataset.grade, Number(tr.dataset.price)])",
    )
    .await;
    assert_eq!(lines, json!([[2, "VIP", VIP_PRICE], [6, "R", R_PRICE]]));
    assert_eq!(
        json_of(
            page,
            "Number(document.getElementById('order-total').dataset.amount)"
        )
        .await,
        json!(total)
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE id = {order} AND user_id = 'page-fan' \
             AND status = 'HELD' AND seat_count = 2 AND total = {total}"
        ))
        .await,
        1
    );
    let fan = page
        .eval("sessionStorage.getItem('boxoffice.orderToken')")
        .await
        .as_str()
        .expect("the page keeps its token")
        .to_owned();
    let held: Value = app
        .get(&format!("/v1/orders/{order}"), Some(&fan))
        .await
        .json()
        .await
        .expect("json");
    let held_until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(held["heldUntil"].clone()).expect("heldUntil");
    let countdown = page.wait_for_text("hold-left", "Held for ").await;
    let shown = clock_seconds(countdown.trim_start_matches("Held for ")) * 1000;
    let left = (held_until - chrono::Utc::now()).num_milliseconds();
    assert!(
        (shown - left).abs() < 2_000,
        "the hold countdown shows {shown} ms, heldUntil is {left} ms away"
    );
    whole_page_screenshot(page, "orders-held.png").await;
    (order, fan)
}

/// Paying with an empty wallet: INSUFFICIENT_POINTS, and the top-up offered is what is
/// missing. Then the payment goes through but its answer is lost: the page says so, and
/// paying again sends the same Idempotency-Key. The server answers the first payment
/// again: one payment, one debit, CONFIRMED.
async fn tops_up_and_pays_once(
    app: &TestApp,
    page: &mut Page,
    order: u64,
    fan: &str,
    schedule: u64,
) {
    let total = VIP_PRICE + R_PRICE;
    assert_eq!(page.eval(PAYMENT_SPY).await, true);
    click(page, "#pay").await;
    problem_shown(page, "INSUFFICIENT_POINTS").await;
    until_page(
        page,
        "the balance and the shortfall",
        &format!(
            "document.getElementById('balance').dataset.amount === '0' \
             && document.getElementById('topup-amount').value === '{total}'"
        ),
        Duration::from_secs(10),
    )
    .await;
    click(page, "#topup").await;
    until_page(
        page,
        "the topped-up balance",
        &format!("document.getElementById('balance').dataset.amount === '{total}'"),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(app.balance(fan).await, total);

    page.eval("window.loseNextPayment = true").await;
    click(page, "#pay").await;
    let shown = problem_shown(page, "NETWORK").await;
    assert!(shown.contains("not be charged twice"), "{shown}");
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE id = {order} AND status = 'CONFIRMED'"
        ))
        .await,
        1,
        "the payment whose answer was lost was made"
    );
    click(page, "#pay").await;
    order_status_shown(page, "CONFIRMED").await;
    let keys = json_of(page, "window.payKeys").await;
    let keys = keys.as_array().expect("keys");
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_ne!(keys[0], keys[1], "a new attempt after INSUFFICIENT_POINTS");
    assert_eq!(keys[1], keys[2], "the retry reuses its attempt's key");
    page.wait_for_text("status", "You're booked!").await;
    page.wait_for_text("paid", "you paid once").await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM payments WHERE order_id = {order} AND amount = {total}"
        ))
        .await,
        1
    );
    assert_eq!(app.balance(fan).await, 0);
    assert_eq!(
        app.seat_statuses(schedule).await[1..6],
        ["SOLD", "HELD", "AVAILABLE", "AVAILABLE", "SOLD"]
    );
    whole_page_screenshot(page, "orders-confirmed.png").await;
}

/// Cancelling (the turn has ended: paying ended it): the refund is the total less the
/// fee, rounded down in the fan's favour; the seats are free again, the wallet holds
/// the refund and is the sum of its ledger.
async fn cancels_for_a_fee(app: &TestApp, page: &mut Page, order: u64, fan: &str, schedule: u64) {
    let total = VIP_PRICE + R_PRICE;
    let fee = total * FEE_PERCENT / 100;
    let refund = total - fee;
    click(page, "#cancel").await;
    click(page, "#cancel-confirm").await;
    order_status_shown(page, "CANCELLED").await;
    assert_eq!(
        json_of(
            page,
            "['refund', 'fee', 'balance'].map(id => document.getElementById(id).dataset.amount)"
        )
        .await,
        json!([refund.to_string(), fee.to_string(), refund.to_string()])
    );
    let refund_box = page.text_of("refund-box").await;
    assert!(
        refund_box.contains(&points_text(refund)) && refund_box.contains(&points_text(fee)),
        "{refund_box}"
    );
    page.wait_for_text("status", "Your order is cancelled")
        .await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE id = {order} AND status = 'CANCELLED' \
             AND refund = {refund} AND fee = {fee}"
        ))
        .await,
        1
    );
    assert_eq!(
        app.seat_statuses(schedule).await[1..6],
        ["AVAILABLE", "HELD", "AVAILABLE", "AVAILABLE", "AVAILABLE"],
        "seats 2 and 6 are free again; the rival still holds 3"
    );
    assert_eq!(app.balance(fan).await, total - fee);
    assert_eq!(
        app.scalar("SELECT SUM(amount) FROM point_ledger WHERE user_id = 'page-fan'")
            .await,
        (total - fee) as i64,
        "the wallet is the sum of its ledger"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM point_ledger WHERE order_id = {order} AND kind = 'REFUND'"
        ))
        .await,
        1,
        "refunded once"
    );
    whole_page_screenshot(page, "orders-cancelled.png").await;

    // Back in the tab later: the page shows the order as the server has it.
    page.eval("window.beforeReload = true").await;
    page.call("Page.reload", json!({})).await;
    until_page(
        page,
        "the reloaded page with the cancelled order",
        "!window.beforeReload && document.getElementById('order-status').textContent === 'CANCELLED'",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        json_of(
            page,
            "['refund', 'fee'].map(id => document.getElementById(id).dataset.amount)"
        )
        .await,
        json!([refund.to_string(), fee.to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_holds_seats_of_a_grade_and_releases_them() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = create_graded_concert(&app).await;
    // Another fan holds three of the four VIP seats.
    let rival = app.token(concert, "rival").await;
    let res = order(
        &app,
        &rival,
        &json!({"scheduleId": schedule, "grade": "VIP", "quantity": 3}),
    )
    .await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let port = free_port();
    let _browser = launch(port);
    let mut page = Page::open(port, &fan_url(&app, concert, "page-fan")).await;
    page.wait_for_text("status", "your turn").await;
    until_page(
        &mut page,
        "the grades to ask for",
        "document.querySelectorAll('#grade option').length === 2",
        Duration::from_secs(10),
    )
    .await;

    // Two VIP seats: only one is free. Nothing is held; the page says why.
    set_value(&mut page, "#quantity", "2").await;
    set_value(&mut page, "#grade", "VIP").await;
    click(&mut page, "#hold-grade").await;
    let shown = problem_shown(&mut page, "NOT_ENOUGH_SEATS").await;
    assert!(shown.contains("Not enough free seats"), "{shown}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM orders WHERE user_id = 'page-fan'")
            .await,
        0
    );

    // Two R seats: the first two free ones, held as one order.
    set_value(&mut page, "#grade", "R").await;
    click(&mut page, "#hold-grade").await;
    order_status_shown(&mut page, "HELD").await;
    let lines = json_of(
        &mut page,
        "[...document.querySelectorAll('#order-seats tr')].map(tr => [Number(tr.dataset.seat), tr.dataset.grade])",
    )
    .await;
    assert_eq!(lines, json!([[5, "R"], [6, "R"]]));
    assert!(
        page.eval("document.getElementById('problem').hidden").await == true,
        "the old problem is gone"
    );

    // Released: the order says so, the seats are free, and the map is back.
    click(&mut page, "#release").await;
    order_status_shown(&mut page, "RELEASED").await;
    assert_eq!(
        app.seat_statuses(schedule).await[4..6],
        ["AVAILABLE", "AVAILABLE"]
    );
    until_page(
        &mut page,
        "the seat map, seats 5 and 6 free",
        "!document.getElementById('shop').hidden \
         && document.querySelector('[data-seat=\"5\"]').dataset.status === 'AVAILABLE' \
         && document.querySelector('[data-seat=\"6\"]').dataset.status === 'AVAILABLE'",
        Duration::from_secs(10),
    )
    .await;
}

/// Sets a form field as typing or choosing would (with its `input` and `change` events).
async fn set_value(page: &mut Page, selector: &str, value: &str) {
    let set = page
        .eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); if (!e) return false; \
             e.value = {value:?}; e.dispatchEvent(new Event('input', {{bubbles: true}})); \
             e.dispatchEvent(new Event('change', {{bubbles: true}})); return e.value === {value:?}; }})()"
        ))
        .await;
    assert_eq!(set, true, "{selector} set to {value:?}");
}

/// Points as the page writes them: "33,333 pts".
fn points_text(points: u64) -> String {
    let digits = points.to_string();
    let mut text = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    format!("{text} pts")
}

/// "4:53" -> 293.
fn clock_seconds(clock: &str) -> i64 {
    clock.split(':').fold(0, |seconds, part| {
        seconds * 60 + part.trim().parse::<i64>().expect("digits")
    })
}

/// `POST /v1/orders` as the holder of `token`.
async fn order(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/orders"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request")
}
