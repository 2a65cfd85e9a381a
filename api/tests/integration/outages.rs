//! Dependencies down. Redis down: nothing is oversold, lock-protected calls answer
//! 503, lookups fall back to MySQL, and the app heals when Redis returns (with a
//! Redis of its own, so stopping it disturbs no other test). MySQL unreachable:
//! 503, not 500.

use std::time::Duration;

use infra::testing::redis;
use reqwest::StatusCode;

use crate::broker::free_port;
use crate::helpers::{TestApp, assert_problem, until};
use crate::own_redis::OwnRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_nothing_is_oversold_and_lookups_still_work() {
    let mut redis = OwnRedis::start(free_port());
    let port = redis.port;
    let app = TestApp::spawn_with(|s| {
        s.redis_url = format!("redis://127.0.0.1:{port}").into();
        s.redis_timeout_ms = 300;
    })
    .await;
    let (concert, schedules) = app.create_concert(&[10], 100).await;
    let schedule = schedules[0];
    let ann = app.token(concert, "ann").await;
    let bob = app.token(concert, "bob").await;
    app.charge(&ann, 1_000, "c").await;
    let paid_later = app.held(&ann, schedule, 1).await;
    app.held(&bob, schedule, 2).await;
    assert_eq!(app.seat_statuses(schedule).await[..2], ["HELD", "HELD"]);

    redis.stop();

    // Lock-protected and token-checked calls fail closed, fast.
    for seat in 1..=10 {
        let started = std::time::Instant::now();
        assert_problem(
            app.hold(&bob, schedule, seat).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a 503 must come quickly"
        );
    }
    assert_problem(
        app.pay(&ann, paid_later, "p").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert_problem(
        app.join(concert, "carol").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    // Lookups are served from MySQL.
    assert_eq!(
        app.seat_statuses(schedule).await[..3],
        ["HELD", "HELD", "AVAILABLE"]
    );
    assert_eq!(app.get("/v1/concerts", None).await.status(), StatusCode::OK);
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["redis"],
        "down"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM reservations").await,
        2,
        "nothing new was held"
    );

    // Redis comes back empty (it keeps nothing on disk): the pool heals, users join
    // again, and MySQL still refuses the seats that are held.
    let _redis = OwnRedis::start(port);
    let mut healed = false;
    for _ in 0..50 {
        if app.join(concert, "bob").await.status().is_success() {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healed, "the app reconnects to Redis by itself");
    let bob = app.token(concert, "bob").await;
    assert_problem(
        app.hold(&bob, schedule, 1).await,
        StatusCode::CONFLICT,
        "SEAT_TAKEN",
    )
    .await;
    app.held(&bob, schedule, 3).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM seats WHERE status = 'HELD'")
            .await,
        3
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM reservations").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mysql_unreachable_calls_answer_503_not_500() {
    let closed = free_port();
    let app = TestApp::spawn_with(|s| {
        s.database_url = format!("mysql://root@127.0.0.1:{closed}/nowhere").into();
        s.database_timeout_ms = 300;
        s.migrate_on_start = false;
    })
    .await;
    assert_problem(
        app.get("/v1/concerts", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert_problem(
        app.get("/v1/schedules/1/seats", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert_problem(
        app.join(1, "ann").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["mysql"],
        "down"
    );
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_waiters_keep_their_places_and_sockets_hear_again() {
    use futures::StreamExt as _;

    let dir = std::env::temp_dir().join(format!("boxoffice-redis-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut redis = OwnRedis::start_persistent(port, &dir);
    let app = TestApp::spawn_with(|s| {
        s.redis_url = format!("redis://127.0.0.1:{port}").into();
        s.redis_timeout_ms = 300;
        s.queue_admission = false;
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let mut tokens = Vec::new();
    for user in ["first", "second", "third"] {
        tokens.push(app.waiting_token(concert, user).await);
    }
    let url = format!("ws://{}/v1/queue/ws?token={}", app.addr, tokens[2]);
    let mut socket = tokio_tungstenite::connect_async(&url).await.unwrap().0;
    socket.next().await.unwrap().unwrap(); // its place: 3

    redis.stop();
    assert_problem(
        app.get("/v1/queue/tokens/current", Some(&tokens[0])).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    let _redis = OwnRedis::start_persistent(port, &dir);

    // The line survived, and so did every place in it.
    for (place, token) in tokens.iter().enumerate() {
        let mut standing = None;
        for _ in 0..50 {
            let res = app.get("/v1/queue/tokens/current", Some(token)).await;
            if res.status() == StatusCode::OK {
                standing = Some(res.json::<serde_json::Value>().await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let standing = standing.expect("Redis is back");
        assert_eq!(standing["position"], u64::try_from(place).unwrap() + 1);
    }
    // The instance subscribed again: an admission reaches the socket still open.
    let channel = app.svc.keys.queue_events();
    until(
        "the instance subscribes to the waiting-room events again",
        Duration::from_secs(15),
        async || {
            let Ok(mut redis) = app.svc.redis.get().await else {
                return false;
            };
            let subscribers: redis::RedisResult<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut *redis)
                .await;
            subscribers.is_ok_and(|(_, n)| n >= 1)
        },
    )
    .await;
    infra::service::queue::tick_all(&app.svc).await.unwrap();
    let mut heard = None;
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_secs(5), socket.next()).await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            heard = Some(serde_json::from_str::<serde_json::Value>(&text).unwrap());
            break;
        }
    }
    assert_eq!(
        heard.expect("a message after the restart")["type"],
        "admitted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
