//! The waiting room against real Redis and real sockets.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{SinkExt as _, StreamExt as _};
use infra::testing::redis;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, assert_problem};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(app: &TestApp, token: &str) -> Socket {
    let url = format!("ws://{}/v1/queue/ws?token={token}", app.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("socket connects")
        .0
}

/// The next JSON message, skipping pings; `None` once the server closes.
pub async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message in time")?;
        match frame.expect("frame") {
            Message::Text(text) => return Some(serde_json::from_str(&text).expect("JSON message")),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// The close frame's code, skipping anything before it.
async fn close_code(socket: &mut Socket) -> u16 {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed in time");
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn secret(token: &str) -> String {
    token.split_once('.').expect("concert.secret").1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_joiners_are_admitted_in_ticket_order() {
    let app = TestApp::spawn_with(|s| s.queue_admission = false).await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let tokens = join_all((0..1_000).map(|u| {
        let app = &app;
        async move { app.waiting_token(concert, &format!("fan-{u}")).await }
    }))
    .await;
    assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), 1_000);
    let prefix = app.svc.keys.prefix().to_owned();
    let mut redis = infra::testing::conn(&app.svc.redis).await.unwrap();
    let line = format!("{prefix}:q:{{{concert}}}:waiting");
    let mut ticket_of = std::collections::HashMap::new();
    for token in &tokens {
        // The line is scored by ticket number.
        let ticket: u64 = redis::cmd("ZSCORE")
            .arg(&line)
            .arg(secret(token))
            .query_async(&mut redis)
            .await
            .unwrap();
        ticket_of.insert(secret(token), ticket);
    }
    // Admit in growing steps, as capacity frees up, and record the order.
    let mut order = Vec::new();
    let mut policy = app.svc.settings.admission_policy();
    for capacity in [1, 7, 100, 101, 450, 999, 1_000] {
        policy.capacity = capacity;
        let tick = infra::testing::queue::tick(
            &app.svc.redis,
            &app.svc.keys,
            domain::ConcertId(concert),
            &policy,
            infra::testing::queue::LineMode::Open,
        )
        .await
        .unwrap();
        order.extend(tick.admitted);
    }
    let tickets: Vec<u64> = order.iter().map(|s| ticket_of[s]).collect();
    assert_eq!(
        tickets,
        (1..=1_000).collect::<Vec<_>>(),
        "admitted exactly in ticket order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_keeps_one_place_and_cannot_book_until_admitted() {
    let app = TestApp::spawn_with(|s| s.queue_admission = false).await;
    let (concert, schedules) = app.create_concert(&[5], 100).await;
    let first = app.waiting_token(concert, "ann").await;
    let second = app.join(concert, "bob").await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["state"], "WAITING");
    assert_eq!(second["position"], 2);
    assert!(second["etaSeconds"].is_u64());
    let again = app.join(concert, "bob").await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (&again["token"], &again["position"]),
        (&second["token"], &second["position"])
    );

    let standing = app.standing(&first).await;
    assert_eq!(
        (
            standing["state"].as_str(),
            standing["position"].as_u64(),
            standing["peopleAhead"].as_u64()
        ),
        (Some("WAITING"), Some(1), Some(0))
    );
    let refused = assert_problem(
        app.hold(second["token"].as_str().unwrap(), schedules[0], 1)
            .await,
        StatusCode::FORBIDDEN,
        "TOKEN_NOT_ACTIVE",
    )
    .await;
    assert_eq!(refused["position"], 2);

    infra::service::queue::tick_all(&app.svc).await.unwrap();
    app.until_state(&first, "ACTIVE").await;
    app.held(&first, schedules[0], 1).await;
    // Leaving frees the place: nobody is ahead of bob any more... and bob's own token ends.
    let bob = second["token"].as_str().unwrap();
    let left = app
        .http
        .delete(app.url("/v1/queue/tokens/current"))
        .bearer_auth(bob)
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.standing(bob).await["state"], "EXPIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ticking_admit_at_most_the_rate_and_nobody_twice() {
    let rate = 25;
    let a = TestApp::spawn_with(|s| s.queue_admit_rate = rate).await;
    let b = a.spawn_peer(|_| {}).await;
    let (concert, _) = a.create_concert(&[1], 100).await;
    let tokens = join_all((0..150).map(|u| {
        let app = if u % 2 == 0 { &a } else { &b };
        async move { app.waiting_token(concert, &format!("fan-{u}")).await }
    }))
    .await;
    for token in &tokens {
        a.until_state(token, "ACTIVE").await;
    }

    let admits_key = format!("{}:q:{{{concert}}}:admits", a.svc.keys.prefix());
    let mut redis = a.svc.redis.get().await.unwrap();
    let admitted: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(&admits_key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut *redis)
        .await
        .unwrap();
    let secrets: HashSet<&String> = admitted.iter().map(|(s, _)| s).collect();
    assert_eq!(admitted.len(), 150, "everyone admitted once");
    assert_eq!(secrets.len(), 150);
    let times: Vec<i64> = admitted.iter().map(|(_, t)| *t).collect();
    // Timed by the admissions' own (Redis) times, not by when this test saw them:
    // admission may begin while the last fans are still joining.
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    assert!(span > 5_000, "150 at 25/s take over 5 s, took {span} ms");
    for &t in &times {
        let in_window = times.iter().filter(|&&u| u > t - 1_000 && u <= t).count();
        assert!(
            in_window <= usize::try_from(rate).unwrap(),
            "{in_window} admitted in the second before {t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_one_instance_hears_of_an_admission_made_on_another() {
    let a = TestApp::spawn_with(|s| s.queue_admission = false).await;
    let b = a.spawn_peer(|_| {}).await;
    let (concert, _) = a.create_concert(&[1], 100).await;
    let ahead = a.waiting_token(concert, "ahead").await;
    let token = b.waiting_token(concert, "ann").await;
    let mut socket = connect(&b, &token).await;
    let first = next_message(&mut socket).await.unwrap();
    assert_eq!(
        (first["type"].as_str(), first["position"].as_u64()),
        (Some("position"), Some(2))
    );

    // A admits one (the first in line): B's waiter moves up.
    let mut policy = a.svc.settings.admission_policy();
    policy.capacity = 1;
    let tick = infra::testing::queue::tick(
        &a.svc.redis,
        &a.svc.keys,
        domain::ConcertId(concert),
        &policy,
        infra::testing::queue::LineMode::Open,
    )
    .await
    .unwrap();
    assert_eq!(tick.admitted, [secret(&ahead)]);
    infra::testing::queue::publish(
        &a.svc.redis,
        &a.svc.keys,
        &infra::testing::queue::QueueEvent {
            concert: domain::ConcertId(concert),
            admitted: tick.admitted,
            active_until: None,
            active_for_ms: None,
            ended: vec![],
            moved: true,
            line_ended: None,
        },
    )
    .await
    .unwrap();
    let moved = next_message(&mut socket).await.unwrap();
    assert_eq!(
        (moved["type"].as_str(), moved["position"].as_u64()),
        (Some("position"), Some(1))
    );

    // A admits ann; B's socket hears within a second.
    let decided = Instant::now();
    infra::service::queue::tick_all(&a.svc).await.unwrap();
    let admitted = next_message(&mut socket).await.unwrap();
    let heard = decided.elapsed();
    assert_eq!(admitted["type"], "admitted");
    assert!(admitted["activeUntil"].is_string());
    assert!(heard < Duration::from_secs(1), "heard after {heard:?}");

    // Paying or leaving ends the token: the socket is told and closed.
    let left = b
        .http
        .delete(b.url("/v1/queue/tokens/current"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), StatusCode::NO_CONTENT);
    assert_eq!(next_message(&mut socket).await.unwrap()["type"], "expired");
    assert_eq!(close_code(&mut socket).await, 4410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_waiters_stop_counting_but_connected_ones_keep_their_place() {
    let app = TestApp::spawn_with(|s| {
        s.queue_capacity = 0; // nobody is admitted: only abandonment moves the line
        s.queue_grace_seconds = 1;
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let polling = app.waiting_token(concert, "polls").await;
    let gone = app.waiting_token(concert, "walks-away").await;
    let connected = app.waiting_token(concert, "stays-connected").await;
    let mut socket = connect(&app, &connected).await;
    assert_eq!(next_message(&mut socket).await.unwrap()["position"], 3);

    // The poller polls; the connected one only keeps its socket; the other does
    // nothing, until its grace (1 s) is over and the line moves up for the socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    let moved = loop {
        assert_eq!(app.standing(&polling).await["position"], 1);
        let heard = tokio::time::timeout(Duration::from_millis(200), next_message(&mut socket));
        if let Ok(moved) = heard.await {
            break moved.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the line did not move within 10 s"
        );
    };
    assert_eq!(
        (moved["type"].as_str(), moved["position"].as_u64()),
        (Some("position"), Some(2))
    );
    assert_eq!(
        app.standing(&gone).await["state"],
        "EXPIRED",
        "the one who walked away lost the place"
    );
    assert_eq!(app.standing(&polling).await["position"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sockets_get_a_close_frame_with_a_reason() {
    let app = TestApp::spawn_with(|s| s.queue_admission = false).await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let mut forged = connect(&app, &format!("{concert}.{}", "a".repeat(64))).await;
    assert_eq!(close_code(&mut forged).await, 4401);
    let mut junk = connect(&app, "nonsense").await;
    assert_eq!(close_code(&mut junk).await, 4401);

    let token = app.waiting_token(concert, "flooder").await;
    let mut flooder = connect(&app, &token).await;
    assert_eq!(
        next_message(&mut flooder).await.unwrap()["type"],
        "position"
    );
    for i in 0..30 {
        if flooder
            .send(Message::Text(format!("spam {i}").into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut flooder).await, 1008);

    let left = app.waiting_token(concert, "leaver").await;
    app.http
        .delete(app.url("/v1/queue/tokens/current"))
        .bearer_auth(&left)
        .send()
        .await
        .unwrap();
    let mut ended = connect(&app, &left).await;
    assert_eq!(next_message(&mut ended).await.unwrap()["type"], "expired");
    assert_eq!(close_code(&mut ended).await, 4410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_or_message_over_the_limit_gets_close_1008() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let app = TestApp::spawn_with(|s| s.queue_admission = false).await;
    let (concert, _) = app.create_concert(&[1], 100).await;

    // One 1 MB frame: refused at its header, with a close frame, not a reset.
    let token = app.waiting_token(concert, "big-sender").await;
    let socket = connect(&app, &token).await;
    let (mut tx, mut rx) = socket.split();
    let sending = tokio::spawn(async move {
        let _ = tx.send(Message::Binary(vec![0u8; 1 << 20].into())).await;
        tx
    });
    let mut heard = Vec::new();
    let code = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .expect("closed in time");
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(Message::Text(text))) => heard.push(text.to_string()),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?} after {heard:?}"),
        }
    };
    assert_eq!(code, 1008);
    drop(sending.await);

    // A message of small fragments that add up to more than the limit: the same.
    let token = app.waiting_token(concert, "fragmenter").await;
    let mut socket = connect(&app, &token).await;
    assert_eq!(next_message(&mut socket).await.unwrap()["type"], "position");
    for i in 0..8 {
        let opcode = if i == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(vec![1u8; 1024], opcode, i == 7);
        if socket.send(Message::Frame(frame)).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut socket).await, 1008);

    // The server is fine afterwards.
    let mut fine = connect(&app, &token).await;
    assert_eq!(next_message(&mut fine).await.unwrap()["type"], "position");
}
