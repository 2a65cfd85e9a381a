//! Redis losing the waiting room, with a Redis of each test's own (no persistence)
//! that the test kills, restarts empty or flushes. Sockets whose tokens Redis forgot
//! hear `expired` and close 4401 (join again), waiting and admitted alike; while
//! Redis is out of reach they get 1013 (reconnect later), never 4401.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use infra::testing::redis;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::broker::free_port;
use crate::helpers::TestApp;
use crate::own_redis::OwnRedis;
use crate::waiting_room::{Socket, connect, next_message};

/// An app on its own Redis: admission on, `capacity` ACTIVE at most.
async fn app_on(redis: &OwnRedis, capacity: u64, grace_seconds: u64) -> TestApp {
    let url = redis.url();
    TestApp::spawn_with(|s| {
        s.redis_url = url.into();
        s.redis_timeout_ms = 300;
        s.queue_capacity = capacity;
        s.queue_grace_seconds = grace_seconds;
    })
    .await
}

/// Two admitted fans and two waiting ones (capacity 2), each with an open socket
/// that has heard where it stands.
async fn four_fans(app: &TestApp, concert: u64) -> Vec<(&'static str, Socket)> {
    let mut sockets = Vec::new();
    for (fan, expected) in [
        ("ann", "admitted"),
        ("bob", "admitted"),
        ("carol", "position"),
        ("dave", "position"),
    ] {
        let token = if expected == "admitted" {
            app.token(concert, fan).await
        } else {
            app.waiting_token(concert, fan).await
        };
        let mut socket = connect(app, &token).await;
        assert_eq!(next_message(&mut socket).await.unwrap()["type"], expected);
        sockets.push((fan, socket));
    }
    sockets
}

/// The messages a socket hears until it is closed, and the close code, within
/// `bound` (`None` for a connection dropped without a close frame).
async fn last_words(socket: &mut Socket, bound: Duration) -> (Vec<Value>, Option<u16>) {
    let deadline = tokio::time::Instant::now() + bound;
    let mut heard = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("not closed within {bound:?}; heard {heard:?}"));
        match frame {
            Some(Ok(Message::Text(text))) => heard.push(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return (heard, frame.map(|f| f.code.into())),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (heard, None),
        }
    }
}

/// Joins until Redis answers again, and returns the new token.
async fn rejoin(app: &TestApp, concert: u64, fan: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.join(concert, fan).await;
        if res.status().is_success() {
            return res.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "Redis never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_empty_every_socket_hears_expired_and_4401_and_fans_rejoin() {
    let mut redis = OwnRedis::start(free_port());
    let app = app_on(&redis, 2, 120).await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let old_ann = app.token(concert, "ann").await;
    let mut sockets = four_fans(&app, concert).await;

    redis.stop();
    let restarted = Instant::now();
    let _redis = OwnRedis::start(redis.port);

    for (fan, socket) in &mut sockets {
        let (heard, code) = last_words(socket, Duration::from_secs(10)).await;
        let types: Vec<&str> = heard.iter().filter_map(|m| m["type"].as_str()).collect();
        assert_eq!(types.last(), Some(&"expired"), "{fan} heard {heard:?}");
        assert_eq!(code, Some(4401), "{fan}'s close code");
    }
    let told = restarted.elapsed();
    assert!(
        told < Duration::from_secs(5),
        "told after {told:?} of Redis back"
    );

    // The page joins again: a new token, which the socket follows to admission.
    let ann = rejoin(&app, concert, "ann").await;
    assert_ne!(ann, old_ann, "a new token");
    app.until_state(&ann, "ACTIVE").await;
    let bob = app.token(concert, "bob").await;
    let carol = app.waiting_token(concert, "carol").await;
    let mut socket = connect(&app, &carol).await;
    let first = next_message(&mut socket).await.unwrap();
    assert_eq!(
        (first["type"].as_str(), first["position"].as_u64()),
        (Some("position"), Some(1)),
        "{first}"
    );
    let left = app
        .http
        .delete(app.url("/v1/queue/tokens/current"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), StatusCode::NO_CONTENT);
    assert_eq!(next_message(&mut socket).await.unwrap()["type"], "admitted");
    // The old token is unknown to the new Redis: a fresh socket gets 4401 at once.
    let mut stale = connect(&app, &old_ann).await;
    assert_eq!(
        last_words(&mut stale, Duration::from_secs(5)).await.1,
        Some(4401)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_sockets_get_1013_not_4401() {
    let mut redis = OwnRedis::start(free_port());
    let app = app_on(&redis, 2, 120).await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let ann = app.token(concert, "ann").await;
    let mut sockets = four_fans(&app, concert).await;

    redis.stop();
    let stopped = Instant::now();
    for (fan, socket) in &mut sockets {
        let (heard, code) = last_words(socket, Duration::from_secs(15)).await;
        assert_eq!(code, Some(1013), "{fan}'s close code; heard {heard:?}");
        assert!(
            heard.iter().all(|m| m["type"] != "expired"),
            "{fan} heard {heard:?}"
        );
    }
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "a short blip is not an outage: closed after {took:?}"
    );
    // A socket opened meanwhile: 1013 at once.
    let mut later = connect(&app, &ann).await;
    assert_eq!(
        last_words(&mut later, Duration::from_secs(5)).await.1,
        Some(1013)
    );

    // Redis back, but empty: reconnecting tells the truth, 4401.
    let _redis = OwnRedis::start(redis.port);
    rejoin(&app, concert, "someone-else").await;
    let mut back = connect(&app, &ann).await;
    assert_eq!(
        last_words(&mut back, Duration::from_secs(5)).await.1,
        Some(4401)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_flushed_from_a_running_redis_are_noticed_admitted_ones_too() {
    let redis = OwnRedis::start(free_port());
    // A short grace period: the "seen" round (which counts known tokens) runs every 250 ms.
    let app = app_on(&redis, 2, 1).await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let mut sockets = four_fans(&app, concert).await;

    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    for (fan, socket) in &mut sockets {
        let (heard, code) = last_words(socket, Duration::from_secs(5)).await;
        let types: Vec<&str> = heard.iter().filter_map(|m| m["type"].as_str()).collect();
        assert_eq!(types.last(), Some(&"expired"), "{fan} heard {heard:?}");
        assert_eq!(code, Some(4401), "{fan}'s close code");
    }
}
