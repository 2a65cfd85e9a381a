//! Running a sale: a scheduled opening with a fair pre-queue, live operator
//! controls, limits per fan, closing and selling out; against real MariaDB, Redis
//! and sockets, with two instances where it matters.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::future::join_all;
use infra::testing::redis;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, until};
use crate::waiting_room::{connect, next_message};

fn secret(token: &str) -> String {
    token.split_once('.').expect("concert.secret").1.to_owned()
}

fn in_seconds(seconds: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

async fn sale(app: &TestApp, concert: u64) -> Value {
    let res = app
        .admin(
            Method::GET,
            &format!("/v1/admin/concerts/{concert}/sale"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn control(app: &TestApp, concert: u64, action: &str) -> reqwest::Response {
    app.admin(
        Method::POST,
        &format!("/v1/admin/concerts/{concert}/sale/{action}"),
        None,
    )
    .await
}

async fn change(app: &TestApp, concert: u64, body: &Value) -> reqwest::Response {
    app.admin(
        Method::PATCH,
        &format!("/v1/admin/concerts/{concert}/sale"),
        Some(body),
    )
    .await
}

/// Joins `users` (at most 64 at a time, alternating between `apps`), in the order
/// their answers came: the order of arrival. Returns (user, token) pairs.
async fn join_many(apps: &[&TestApp], concert: u64, users: &[String]) -> Vec<(String, Value)> {
    futures::stream::iter(users.iter().enumerate())
        .map(|(i, user)| {
            let app = apps[i % apps.len()];
            async move {
                let res = app.join(concert, user).await;
                assert_eq!(res.status(), StatusCode::CREATED, "join {user}");
                (user.clone(), res.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
}

/// The line of `concert` as Redis holds it: the secrets in place order.
async fn line(app: &TestApp, concert: u64) -> Vec<String> {
    let prefix = app.svc.keys.prefix().to_owned();
    let mut redis = infra::testing::conn(&app.svc.redis).await.unwrap();
    redis::cmd("ZRANGE")
        .arg(format!("{prefix}:q:{{{concert}}}:waiting"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap()
}

/// Spearman's rank correlation of two orderings of the same n items (no ties).
#[expect(clippy::cast_precision_loss, reason = "ranks of a few thousand")]
fn spearman(ranks_a: &[usize], ranks_b: &[usize]) -> f64 {
    let n = ranks_a.len() as f64;
    let d2: f64 = ranks_a
        .iter()
        .zip(ranks_b)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// One sale's pre-queue of `fans`, opened: returns each fan's place (0-based) in
/// arrival order, and checks what must hold of any opening.
async fn open_a_sale(a: &TestApp, b: &TestApp, fans: &[String]) -> Vec<usize> {
    // Far off, then moved close once everyone is in: the pre-queue forms however
    // slowly this machine joins.
    let (concert, _) = a
        .create_sale(
            &[10],
            100,
            &json!({"opensAt": in_seconds(3_600), "activeCapacity": 1}),
        )
        .await;
    let arrived = join_many(&[a, b], concert, fans).await;
    for (user, ticket) in &arrived {
        assert_eq!(ticket["state"], "WAITING", "{user}");
        assert!(ticket["position"].is_null(), "no place before the opening");
        assert!(ticket["opensAt"].is_string());
    }
    let before = sale(a, concert).await;
    assert_eq!(
        (
            before["state"].as_str(),
            before["preQueued"].as_u64(),
            before["active"].as_u64()
        ),
        (Some("SCHEDULED"), Some(fans.len() as u64), Some(0)),
        "{before}"
    );
    let res = change(a, concert, &json!({"opensAt": in_seconds(1)})).await;
    assert_eq!(res.status(), StatusCode::OK);
    until("the sale opens", Duration::from_secs(10), async || {
        sale(b, concert).await["state"] == "OPEN" && sale(a, concert).await["active"] == 1
    })
    .await;
    // Fans who come after the opening line up behind every pre-queued one.
    let late: Vec<String> = (0..50).map(|i| format!("late-{i}")).collect();
    let late = join_many(&[b, a], concert, &late).await;
    for (_, ticket) in &late {
        assert!(ticket["position"].as_u64().unwrap() > fans.len() as u64 - 1);
    }
    // Exactly one opening, however many ticks of two instances saw it come.
    assert_eq!(
        a.scalar(&format!(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'SaleChanged' \
             AND payload LIKE '%\"action\":\"open\"%' AND event_key = 'sale-{concert}'"
        ))
        .await,
        1
    );
    // The one admitted (capacity 1) stood first; the line holds everyone else.
    let prefix = a.svc.keys.prefix().to_owned();
    let mut redis = infra::testing::conn(&a.svc.redis).await.unwrap();
    let active: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}:q:{{{concert}}}:active"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut order = active;
    order.extend(line(a, concert).await);
    let place: HashMap<String, usize> = order.iter().cloned().zip(0..).collect();
    assert_eq!(place.len(), order.len(), "nobody placed twice");
    assert_eq!(order.len(), fans.len() + late.len(), "nobody lost");
    let fan_places: Vec<usize> = arrived
        .iter()
        .map(|(_, t)| place[&secret(t["token"].as_str().unwrap())])
        .collect();
    let late_places: Vec<usize> = late
        .iter()
        .map(|(_, t)| place[&secret(t["token"].as_str().unwrap())])
        .collect();
    assert!(
        fan_places.iter().max() < late_places.iter().min(),
        "every pre-queued fan is ahead of every later one"
    );
    // By arrival: the place each fan got, as a fan's name says who they are.
    let by_name: HashMap<&str, usize> = arrived
        .iter()
        .map(|(user, _)| user.as_str())
        .zip(fan_places)
        .collect();
    fans.iter().map(|f| by_name[f.as_str()]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_pre_queued_fans_get_random_places_ahead_of_later_ones_at_one_opening() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer(|_| {}).await;
    let fans: Vec<String> = (0..2_000).map(|i| format!("fan-{i}")).collect();
    let first = open_a_sale(&a, &b, &fans).await;
    let arrival: Vec<usize> = (0..fans.len()).collect();
    let rho = spearman(&arrival, &first);
    assert!(rho.abs() < 0.1, "places follow arrival: rho = {rho}");
    // The same fans arriving the same way at the next sale get another order.
    let second = open_a_sale(&a, &b, &fans).await;
    let between = spearman(&first, &second);
    assert_ne!(first, second);
    assert!(
        between.abs() < 0.1,
        "two sales' orders agree: rho = {between}"
    );
}

/// Waits on the socket for `admitted` and returns when Redis let the fan in (its
/// `activeUntil`, less the ACTIVE period).
async fn admitted_at(app: &TestApp, token: &str, active_for: chrono::Duration) -> DateTime<Utc> {
    let mut socket = connect(app, token).await;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), next_message(&mut socket))
            .await
            .expect("admitted in time")
            .expect("socket open");
        if message["type"] == "admitted" {
            let until: DateTime<Utc> = message["activeUntil"].as_str().unwrap().parse().unwrap();
            return until - active_for;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_is_admitted_before_the_opening_on_any_instance() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer(|_| {}).await;
    let opens_at = Utc::now() + chrono::Duration::seconds(3);
    let (concert, _) = a
        .create_sale(&[10], 100, &json!({"opensAt": opens_at.to_rfc3339()}))
        .await;
    let fans: Vec<String> = (0..40).map(|i| format!("early-{i}")).collect();
    let joined = join_many(&[&a, &b], concert, &fans).await;
    assert!(
        Utc::now() < opens_at,
        "the joins took too long for this test"
    );
    // Sockets on both instances hear `prequeue` with the opening, then their place.
    let mut socket = connect(&b, joined[0].1["token"].as_str().unwrap()).await;
    let first = next_message(&mut socket).await.unwrap();
    assert_eq!(first["type"], "prequeue");
    assert_eq!(
        first["opensAt"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        opens_at.trunc_subsecs_micros()
    );
    let active_for = chrono::Duration::seconds(a.svc.settings.token_active_seconds as i64);
    let admitted = join_all(joined.iter().enumerate().map(|(i, (_, t))| {
        let app = if i % 2 == 0 { &a } else { &b };
        admitted_at(app, t["token"].as_str().unwrap(), active_for)
    }))
    .await;
    for at in admitted {
        assert!(
            at >= opens_at,
            "admitted at {at}, before the opening at {opens_at}"
        );
    }
}

trait TruncMicros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl TruncMicros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        chrono::DurationRound::duration_trunc(self, chrono::Duration::microseconds(1)).unwrap()
    }
}

/// Admissions so far (the ACTIVE set; nobody's turn ends during these tests).
async fn admitted(app: &TestApp, concert: u64) -> Vec<String> {
    let prefix = app.svc.keys.prefix().to_owned();
    let mut redis = infra::testing::conn(&app.svc.redis).await.unwrap();
    redis::cmd("ZRANGE")
        .arg(format!("{prefix}:q:{{{concert}}}:admits"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap()
}

/// Redis's clock (ms): the admission ticks' clock.
async fn redis_ms(app: &TestApp) -> i64 {
    let mut redis = infra::testing::conn(&app.svc.redis).await.unwrap();
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut redis).await.unwrap();
    seconds * 1_000 + micros / 1_000
}

/// Admissions of `concert` in Redis's clock window (`after`, `until`] (ms), from the
/// admission record the ticks keep: exact however late this test looks.
async fn admitted_between(app: &TestApp, concert: u64, after: i64, until: i64) -> u64 {
    let prefix = app.svc.keys.prefix().to_owned();
    let mut redis = infra::testing::conn(&app.svc.redis).await.unwrap();
    redis::cmd("ZCOUNT")
        .arg(format!("{prefix}:q:{{{concert}}}:admits"))
        .arg(format!("({after}"))
        .arg(until)
        .query_async(&mut redis)
        .await
        .unwrap()
}

/// Waits until Redis's clock has passed `at` (ms).
async fn until_redis_time(app: &TestApp, at: i64) {
    until(
        "Redis's clock moves on",
        Duration::from_secs(10),
        async || redis_ms(app).await > at,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_stops_every_instance_resume_keeps_line_order_and_a_new_rate_applies_at_once() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer(|_| {}).await;
    let (concert, _) = a
        .create_sale(&[10], 100, &json!({"admissionRate": 10}))
        .await;
    // Fans join one after another: the line's order is known.
    let mut order = Vec::new();
    for i in 0..400 {
        let app = if i % 2 == 0 { &a } else { &b };
        order.push(secret(
            &app.waiting_token(concert, &format!("fan-{i}")).await,
        ));
    }
    // Over three seconds at 10/s, then the rate goes to 50/s. A tick admits a
    // second's worth at once, so a window of 3 s holds two or three seconds' worth.
    until("forty admitted", Duration::from_secs(10), async || {
        admitted(&a, concert).await.len() >= 40
    })
    .await;
    // The change commits somewhere between these two readings of Redis's clock.
    let before_change = redis_ms(&a).await;
    let res = change(&b, concert, &json!({"admissionRate": 50})).await;
    let changed = redis_ms(&a).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["admissionRate"], 50);
    let at_ten = admitted_between(&a, concert, before_change - 3_000, before_change).await;
    assert!(
        (20..=30).contains(&at_ten),
        "10/s: {at_ten} in the 3 s before the change"
    );
    // From one tick after the change (20 ms here), 50 a second on both instances.
    until_redis_time(&a, changed + 3_100).await;
    let at_fifty = admitted_between(&a, concert, changed + 100, changed + 3_100).await;
    assert!(
        (90..=150).contains(&at_fifty),
        "50/s: {at_fifty} in the 3 s after the change"
    );

    let res = control(&a, concert, "pause").await;
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "PAUSED");
    // Within a tick both instances have stopped; then nobody, for two seconds.
    until(
        "the other instance sees the pause",
        Duration::from_secs(2),
        async || sale(&b, concert).await["state"] == "PAUSED",
    )
    .await;
    let paused = redis_ms(&a).await;
    until_redis_time(&a, paused + 2_000).await;
    assert_eq!(
        admitted_between(&a, concert, paused, paused + 2_000).await,
        0,
        "admitted while paused"
    );

    let res = control(&b, concert, "resume").await;
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "OPEN");
    let resumed = admitted(&a, concert).await.len();
    until("admission resumes", Duration::from_secs(5), async || {
        admitted(&a, concert).await.len() > resumed + 20
    })
    .await;
    // Everyone admitted is a prefix of the line: nobody jumped anybody.
    let admitted: HashSet<String> = admitted(&a, concert).await.into_iter().collect();
    let prefix: HashSet<String> = order[..admitted.len()].iter().cloned().collect();
    assert_eq!(
        admitted, prefix,
        "admission kept line order across the pause"
    );

    // Every change is an event with what changed, old and new.
    let rate_change = a
        .scalar(&format!(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'SaleChanged' AND event_key = 'sale-{concert}' \
             AND payload LIKE '%\"field\":\"admissionRate\",\"old\":10,\"new\":50%'"
        ))
        .await;
    assert_eq!(rate_change, 1);
    let controls = a
        .scalar(&format!(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'SaleChanged' AND event_key = 'sale-{concert}'"
        ))
        .await;
    assert_eq!(controls, 3, "update, pause, resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_fan_sending_twenty_concurrent_holds_gets_exactly_their_limit() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app
        .create_sale(&[30], 100, &json!({"maxSeatsPerFan": 4}))
        .await;
    let token = app.token(concert, "greedy").await;
    let answers = join_all((1..=20).map(|seat| app.hold(&token, schedules[0], seat))).await;
    let mut held = 0;
    for res in answers {
        match res.status() {
            StatusCode::CREATED => held += 1,
            _ => {
                assert_problem(res, StatusCode::CONFLICT, "SEAT_LIMIT").await;
            }
        }
    }
    assert_eq!(held, 4);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM reservations WHERE user_id = 'greedy' AND status = 'HELD'"
        )
        .await,
        4
    );
    // A seat given back may be taken again; another fan has a limit of their own.
    let mine = app
        .scalar("SELECT MIN(id) FROM reservations WHERE user_id = 'greedy'")
        .await;
    let res = app
        .http
        .delete(app.url(&format!("/v1/reservations/{mine}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(
        app.hold(&token, schedules[0], 25).await.status(),
        StatusCode::CREATED
    );
    assert_problem(
        app.hold(&token, schedules[0], 26).await,
        StatusCode::CONFLICT,
        "SEAT_LIMIT",
    )
    .await;
    let other = app.token(concert, "modest").await;
    assert_eq!(
        app.hold(&other, schedules[0], 27).await.status(),
        StatusCode::CREATED
    );
}

/// A waiter's socket (after its first message) and its bearer token.
async fn waiting_socket(
    app: &TestApp,
    concert: u64,
    user: &str,
) -> (crate::waiting_room::Socket, String) {
    let token = app.waiting_token(concert, user).await;
    let mut socket = connect(app, &token).await;
    let first = next_message(&mut socket).await.unwrap();
    assert_eq!(first["type"], "position", "{first}");
    (socket, token)
}

/// The socket's last word (its final message, then the close) within a second;
/// places and admissions on the way are skipped.
async fn last_word(socket: &mut crate::waiting_room::Socket) -> (Value, Option<u16>) {
    let message = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let message = next_message(socket)
                .await
                .expect("a message before the close");
            if !matches!(message["type"].as_str(), Some("position" | "admitted")) {
                return message;
            }
        }
    })
    .await
    .expect("told within a second");
    let close = tokio::time::timeout(Duration::from_secs(1), socket.next())
        .await
        .unwrap_or_else(|_| panic!("closed within a second after {message}"));
    let code = match close {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
            Some(u16::from(frame.code))
        }
        _ => None,
    };
    (message, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_the_line_reaches_every_waiting_socket_within_a_second_and_refuses_joins() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer(|_| {}).await;
    let (concert, _) = a
        .create_sale(&[10], 100, &json!({"activeCapacity": 1}))
        .await;
    let lucky = a.token(concert, "lucky").await;
    let mut sockets = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        sockets.push(waiting_socket(app, concert, &format!("waiter-{i}")).await);
    }
    let res = control(&b, concert, "close").await;
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "CLOSED");
    for (socket, _) in &mut sockets {
        let (message, code) = last_word(socket).await;
        assert_eq!(message["type"], "closed");
        assert_eq!(code, Some(4410));
    }
    // Polling says so too, on every instance within a tick.
    let (_, token) = &sockets[0];
    for app in [&a, &b] {
        until("polling says CLOSED", Duration::from_secs(1), async || {
            let standing = app.standing(token).await;
            (standing["state"].as_str(), standing["saleState"].as_str())
                == (Some("EXPIRED"), Some("CLOSED"))
        })
        .await;
    }
    assert_problem(
        a.join(concert, "too-late").await,
        StatusCode::CONFLICT,
        "SALE_CLOSED",
    )
    .await;
    assert_problem(
        b.join(concert, "waiter-1").await,
        StatusCode::CONFLICT,
        "SALE_CLOSED",
    )
    .await;
    // The fan already let in keeps their turn.
    assert_eq!(a.standing(&lucky).await["state"], "ACTIVE");
    let public: Value = a
        .get(&format!("/v1/concerts/{concert}/sale"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (public["state"].as_str(), public["waiting"].as_u64()),
        (Some("CLOSED"), Some(0))
    );
    // Closed is final.
    assert_problem(
        control(&a, concert, "resume").await,
        StatusCode::CONFLICT,
        "SALE_STATE_CONFLICT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn selling_the_last_seat_sends_the_line_home_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer(|_| {}).await;
    let (concert, schedules) = a
        .create_sale(&[2], 100, &json!({"activeCapacity": 2}))
        .await;
    let buyers = [
        a.token(concert, "buyer-1").await,
        a.token(concert, "buyer-2").await,
    ];
    let mut sockets = Vec::new();
    for i in 0..4 {
        let app = if i % 2 == 0 { &a } else { &b };
        sockets.push(waiting_socket(app, concert, &format!("hopeful-{i}")).await);
    }
    for (seat, token) in buyers.iter().enumerate() {
        let reservation = a.held(token, schedules[0], seat as i64 + 1).await;
        assert!(
            a.charge(token, 100, &format!("c{seat}"))
                .await
                .status()
                .is_success()
        );
        assert!(
            a.pay(token, reservation, &format!("p{seat}"))
                .await
                .status()
                .is_success()
        );
    }
    for (socket, _) in &mut sockets {
        let (message, code) = last_word(socket).await;
        assert_eq!(message["type"], "soldOut");
        assert_eq!(code, Some(4410));
    }
    assert_problem(
        b.join(concert, "latecomer").await,
        StatusCode::CONFLICT,
        "SOLD_OUT",
    )
    .await;
    let public: Value = b
        .get(&format!("/v1/concerts/{concert}/sale"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["state"], "SOLD_OUT");
    let standing = b.standing(&sockets[1].1).await;
    assert_eq!(standing["saleState"], "SOLD_OUT");
    assert!(sale(&a, concert).await["soldOut"].as_bool().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_controls_are_refused_with_a_code_and_change_nothing() {
    let app = TestApp::spawn().await;
    let create = |sale: Value| {
        let app = &app;
        async move {
            let body = json!({"title": "T", "artist": "A", "schedules": [
                {"venue": "V", "startsAt": "2027-01-01T19:00:00Z", "seatCount": 5, "price": 1}
            ], "sale": sale});
            app.admin(Method::POST, "/v1/admin/concerts", Some(&body))
                .await
        }
    };
    assert_problem(
        create(json!({"opensAt": in_seconds(-60)})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_SALE_SETTINGS",
    )
    .await;
    for bad in [
        json!({"admissionRate": 0}),
        json!({"admissionRate": 10_001}),
        json!({"activeCapacity": 0}),
        json!({"maxSeatsPerFan": 101}),
        json!({"maxSeatsPerFan": -1}),
        json!({"opensAt": "tomorrow"}),
        json!({"opensAt": null}),
        json!({"admissionRate": null}),
    ] {
        let res = create(bad.clone()).await;
        assert!(res.status().is_client_error(), "{bad}: {}", res.status());
        let problem: Value = res.json().await.unwrap();
        assert!(problem["code"].is_string(), "{bad}: {problem}");
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM concerts").await,
        0,
        "nothing created"
    );

    let (concert, _) = app
        .create_sale(
            &[5],
            100,
            &json!({"opensAt": in_seconds(600), "admissionRate": 20}),
        )
        .await;
    let before = sale(&app, concert).await;
    assert_problem(
        control(&app, concert, "pause").await,
        StatusCode::CONFLICT,
        "SALE_STATE_CONFLICT",
    )
    .await;
    assert_problem(
        control(&app, concert, "resume").await,
        StatusCode::CONFLICT,
        "SALE_STATE_CONFLICT",
    )
    .await;
    assert_problem(
        change(&app, concert, &json!({"opensAt": in_seconds(-5)})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_SALE_SETTINGS",
    )
    .await;
    let res = change(&app, concert, &json!({"admissionRate": 20_000})).await;
    assert!(res.status().is_client_error());
    let res = change(&app, concert, &json!({"maxSeatsPerFan": null})).await;
    assert_problem(res, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    assert_eq!(sale(&app, concert).await, before, "nothing changed");
    assert_problem(
        control(&app, 999_999, "pause").await,
        StatusCode::NOT_FOUND,
        "CONCERT_NOT_FOUND",
    )
    .await;
    assert_problem(
        change(&app, 999_999, &json!({"admissionRate": 5})).await,
        StatusCode::NOT_FOUND,
        "CONCERT_NOT_FOUND",
    )
    .await;
    let res = app.get("/v1/concerts/999999/sale", None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "CONCERT_NOT_FOUND").await;
    let res = app
        .http
        .post(app.url(&format!("/v1/admin/concerts/{concert}/sale/close")))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "INVALID_API_KEY").await;
    assert_eq!(sale(&app, concert).await, before, "nothing changed");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'SaleChanged'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_at_the_opening_the_sale_opens_when_it_is_back_and_not_before() {
    use crate::own_redis::OwnRedis;

    let dir = std::env::temp_dir().join(format!("boxoffice-redis-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = crate::broker::free_port();
    let mut redis = OwnRedis::start_persistent(port, &dir);
    let app = TestApp::spawn_with(|s| {
        s.redis_url = format!("redis://127.0.0.1:{port}").into();
        s.redis_timeout_ms = 300;
    })
    .await;
    let opens_at = Utc::now() + chrono::Duration::seconds(2);
    let (concert, _) = app
        .create_sale(&[10], 100, &json!({"opensAt": opens_at.to_rfc3339()}))
        .await;
    let fans: Vec<String> = (0..5).map(|i| format!("patient-{i}")).collect();
    let joined = join_many(&[&app], concert, &fans).await;

    redis.stop();
    until(
        "the opening time passes",
        Duration::from_secs(10),
        async || Utc::now() > opens_at + chrono::Duration::seconds(1),
    )
    .await;
    let scheduled = "SELECT COUNT(*) FROM sale_settings WHERE state = 'SCHEDULED'";
    assert_eq!(
        app.scalar(scheduled).await,
        1,
        "nothing opened without Redis"
    );

    let back = Utc::now();
    let _redis = OwnRedis::start_persistent(port, &dir);
    let active_for = chrono::Duration::seconds(app.svc.settings.token_active_seconds as i64);
    for (_, ticket) in &joined {
        let token = ticket["token"].as_str().unwrap();
        let admitted = admitted_at(&app, token, active_for).await;
        assert!(
            admitted >= back,
            "admitted at {admitted}, before Redis was back at {back}"
        );
    }
    assert_eq!(app.scalar(scheduled).await, 0);
    let openings = format!(
        "SELECT COUNT(*) FROM outbox WHERE event_key = 'sale-{concert}' AND payload LIKE '%\"action\":\"open\"%'"
    );
    assert_eq!(app.scalar(&openings).await, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pre_queued_socket_hears_its_place_within_a_second_of_the_opening() {
    let a = TestApp::spawn().await;
    let b = a.spawn_peer(|_| {}).await;
    let opens_at = Utc::now() + chrono::Duration::seconds(3);
    let (concert, _) = a
        .create_sale(
            &[10],
            100,
            &json!({"opensAt": opens_at.to_rfc3339(), "activeCapacity": 1}),
        )
        .await;
    let fans: Vec<String> = (0..40).map(|i| format!("socket-{i}")).collect();
    let joined = join_many(&[&a, &b], concert, &fans).await;
    let mut sockets = Vec::new();
    for (i, (_, ticket)) in joined.iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        let mut socket = connect(app, ticket["token"].as_str().unwrap()).await;
        assert_eq!(next_message(&mut socket).await.unwrap()["type"], "prequeue");
        sockets.push(socket);
    }
    assert!(
        Utc::now() < opens_at,
        "the sockets took too long for this test"
    );
    let heard = join_all(sockets.iter_mut().map(|socket| async move {
        loop {
            let message = next_message(socket).await.expect("open");
            if matches!(message["type"].as_str(), Some("position" | "admitted")) {
                return (Utc::now(), message);
            }
        }
    }))
    .await;
    let mut positions = HashSet::new();
    for (at, message) in heard {
        assert!(
            at < opens_at + chrono::Duration::seconds(1),
            "heard {message} at {at}, over a second after the opening at {opens_at}"
        );
        positions.insert(message["position"].as_u64().unwrap_or(0));
    }
    assert_eq!(positions.len(), fans.len(), "every socket its own place");
}
