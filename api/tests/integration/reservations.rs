use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use infra::testing::redis;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_holds_on_fifty_seats_sell_each_seat_once() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[50], 1_000).await;
    let schedule = schedules[0];
    let tokens = join_all((0..200).map(|u| {
        let app = &app;
        async move { app.token(concert, &format!("fan-{u}")).await }
    }))
    .await;

    // 1,000 attempts: every user tries five seats, chosen so each seat is wanted 20 times.
    let attempts = (0..1_000).map(|i| {
        let token = tokens[i % 200].clone();
        let seat = i64::try_from((i * 7) % 50 + 1).unwrap();
        let app = &app;
        async move { (seat, app.hold(&token, schedule, seat).await) }
    });
    let mut held: HashMap<i64, usize> = HashMap::new();
    let mut taken = 0;
    for (seat, res) in join_all(attempts).await {
        if res.status() == StatusCode::CREATED {
            *held.entry(seat).or_default() += 1;
        } else {
            assert_problem(res, StatusCode::CONFLICT, "SEAT_TAKEN").await;
            taken += 1;
        }
    }
    assert_eq!(held.len(), 50, "every seat held");
    assert!(
        held.values().all(|&n| n == 1),
        "no seat held twice: {held:?}"
    );
    assert_eq!(taken, 950);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM reservations WHERE status = 'HELD'")
            .await,
        50
    );
    assert_eq!(
        app.scalar("SELECT COUNT(DISTINCT schedule_id, seat_no) FROM reservations")
            .await,
        50
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM seats WHERE status = 'HELD' AND reservation_id IS NOT NULL"
        )
        .await,
        50
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderHeld'")
            .await,
        50
    );
    assert!(
        app.seat_statuses(schedule)
            .await
            .iter()
            .all(|s| s == "HELD")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_fixes_the_price_and_the_owner_can_read_and_release_it() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[10], 2_500).await;
    let token = app.token(concert, "ann").await;
    let res = app.hold(&token, schedules[0], 3).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["status"], "HELD");
    assert_eq!(r["price"], 2_500);
    assert_eq!(r["seatNo"], 3);
    assert_eq!(r["concertId"], concert);
    let id = r["id"].as_u64().unwrap();

    let read: Value = app
        .get(&format!("/v1/reservations/{id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, r, "a read returns exactly what the hold answered");

    let released = app
        .http
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), StatusCode::OK);
    assert_eq!(
        released.json::<Value>().await.unwrap()["status"],
        "RELEASED"
    );
    assert_eq!(app.seat_statuses(schedules[0]).await[2], "AVAILABLE");

    // Releasing again is a no-op with the same answer.
    let again = app
        .http
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderReleased'")
            .await,
        1
    );

    // The seat is free for the next person, and paying the released hold is refused.
    let bob = app.token(concert, "bob").await;
    app.held(&bob, schedules[0], 3).await;
    assert_problem(
        app.pay(&token, id, "pay-released").await,
        StatusCode::CONFLICT,
        "RESERVATION_RELEASED",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_reads_releases_or_pays_someone_elses_hold() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[5], 100).await;
    let ann = app.token(concert, "ann").await;
    let eve = app.token(concert, "eve").await;
    let id = app.held(&ann, schedules[0], 1).await;
    app.charge(&eve, 1_000, "eve-charge").await;

    let path = format!("/v1/reservations/{id}");
    assert_problem(
        app.get(&path, Some(&eve)).await,
        StatusCode::NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    )
    .await;
    let res = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&eve)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "RESERVATION_NOT_FOUND").await;
    assert_problem(
        app.pay(&eve, id, "eve-pays").await,
        StatusCode::NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    )
    .await;
    assert_eq!(app.balance(&eve).await, 1_000, "nothing was debited");
    assert_eq!(
        app.seat_statuses(schedules[0]).await[0],
        "HELD",
        "ann still holds it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_name_a_real_seat_of_the_tokens_concert() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[10], 100).await;
    let (other_concert, other_schedules) = app.create_concert(&[10], 100).await;
    let token = app.token(concert, "ann").await;

    assert_problem(
        app.hold(&token, schedules[0], 11).await,
        StatusCode::NOT_FOUND,
        "SEAT_NOT_FOUND",
    )
    .await;
    assert_problem(
        app.hold(&token, 999_999, 1).await,
        StatusCode::NOT_FOUND,
        "SCHEDULE_NOT_FOUND",
    )
    .await;
    for seat in [0, -1, 100_001, i64::MAX] {
        assert_problem(
            app.hold(&token, schedules[0], seat).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_SEAT_NUMBER",
        )
        .await;
    }
    assert_problem(
        app.hold(&token, other_schedules[0], 1).await,
        StatusCode::FORBIDDEN,
        "WRONG_CONCERT",
    )
    .await;
    let _ = other_concert;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM reservations").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_hold_is_freed_by_the_worker_and_cannot_be_paid() {
    let app =
        TestApp::spawn_with(|s| s.hold_seconds = domain::HoldDuration::from_secs(1).unwrap()).await;
    let (concert, schedules) = app.create_concert(&[5], 300).await;
    let ann = app.token(concert, "ann").await;
    app.charge(&ann, 1_000, "ann-charge").await;
    let id = app.held(&ann, schedules[0], 2).await;
    assert_eq!(app.seat_statuses(schedules[0]).await[1], "HELD");

    // The worker (every 200 ms here) marks it EXPIRED and frees the seat.
    let mut expired = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app
            .scalar(&format!(
                "SELECT COUNT(*) FROM reservations WHERE id = {id} AND status = 'EXPIRED'"
            ))
            .await
            == 1
        {
            expired = true;
            break;
        }
    }
    assert!(expired, "the worker expired the hold");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM seats WHERE status = 'AVAILABLE'")
            .await,
        5
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderExpired'")
            .await,
        1
    );
    assert_eq!(
        app.seat_statuses(schedules[0]).await[1],
        "AVAILABLE",
        "the seat map was invalidated"
    );

    assert_problem(
        app.pay(&ann, id, "late").await,
        StatusCode::CONFLICT,
        "HOLD_EXPIRED",
    )
    .await;
    assert_eq!(app.balance(&ann).await, 1_000);
    let bob = app.token(concert, "bob").await;
    app.held(&bob, schedules[0], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_hold_is_reused_at_once_even_before_the_worker_runs() {
    let app = TestApp::spawn_with(|s| {
        s.hold_seconds = domain::HoldDuration::from_secs(2).unwrap();
        s.expiry_interval_ms = 3_600_000; // the worker stays out of this test
    })
    .await;
    let (concert, schedules) = app.create_concert(&[3], 300).await;
    let ann = app.token(concert, "ann").await;
    let bob = app.token(concert, "bob").await;
    app.charge(&ann, 1_000, "ann-charge").await;
    let ann_hold = app.held(&ann, schedules[0], 1).await;
    assert_problem(
        app.hold(&bob, schedules[0], 1).await,
        StatusCode::CONFLICT,
        "SEAT_TAKEN",
    )
    .await;
    // Bob is refused until ann's hold lapses (2 s), then gets the seat: the worker is
    // off, so only the hold itself can have reused it.
    let mut bob_hold = None;
    until(
        "bob holds the seat once ann's hold lapsed",
        Duration::from_secs(10),
        async || {
            let res = app.hold(&bob, schedules[0], 1).await;
            if res.status() == StatusCode::CREATED {
                bob_hold = res.json::<Value>().await.unwrap()["id"].as_u64();
                return true;
            }
            assert_problem(res, StatusCode::CONFLICT, "SEAT_TAKEN").await;
            false
        },
    )
    .await;
    let bob_hold = bob_hold.expect("the new hold's id");
    assert_ne!(ann_hold, bob_hold);
    let ann_view: Value = app
        .get(&format!("/v1/reservations/{ann_hold}"), Some(&ann))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ann_view["status"], "EXPIRED");
    assert_problem(
        app.pay(&ann, ann_hold, "too-late").await,
        StatusCode::CONFLICT,
        "HOLD_EXPIRED",
    )
    .await;

    // When the worker does run, it leaves bob's hold on the seat alone.
    infra::service::expiry::expire_lapsed(&app.svc, infra::now())
        .await
        .unwrap();
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM seats WHERE reservation_id = {bob_hold} AND status = 'HELD'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_seat_is_refused_by_its_redis_marker_and_by_mysql_without_it() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[3], 100).await;
    let schedule = schedules[0];
    let ann = app.token(concert, "ann").await;
    let bob = app.token(concert, "bob").await;
    let held = app.held(&ann, schedule, 1).await;
    let marker = app.svc.keys.seat_lock(
        domain::ScheduleId(schedule),
        domain::SeatNo::parse(1).unwrap(),
    );
    let mut redis = app.svc.redis.get().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg(&marker)
        .query_async(&mut *redis)
        .await
        .unwrap();
    assert_eq!(value, format!("r:{held}"), "the hold marks its seat");

    // The marker alone answers: even with MySQL (artificially) saying free, no new hold.
    app.execute(&format!(
        "UPDATE seats SET status = 'AVAILABLE' WHERE schedule_id = {schedule} AND seat_no = 1"
    ))
    .await;
    assert_problem(
        app.hold(&bob, schedule, 1).await,
        StatusCode::CONFLICT,
        "SEAT_TAKEN",
    )
    .await;
    app.execute(&format!(
        "UPDATE seats SET status = 'HELD' WHERE schedule_id = {schedule} AND seat_no = 1"
    ))
    .await;

    // Without the marker (Redis lost it), MySQL still refuses.
    redis::cmd("DEL")
        .arg(&marker)
        .query_async::<()>(&mut *redis)
        .await
        .unwrap();
    assert_problem(
        app.hold(&bob, schedule, 1).await,
        StatusCode::CONFLICT,
        "SEAT_TAKEN",
    )
    .await;

    // Paying turns the marker into "sold"; releasing would have removed it.
    app.charge(&ann, 100, "c").await;
    let id = app.held(&ann, schedule, 2).await;
    assert_eq!(app.pay(&ann, id, "p").await.status(), StatusCode::CREATED);
    let sold_key = app.svc.keys.seat_lock(
        domain::ScheduleId(schedule),
        domain::SeatNo::parse(2).unwrap(),
    );
    let sold: String = redis::cmd("GET")
        .arg(&sold_key)
        .query_async(&mut *redis)
        .await
        .unwrap();
    assert_eq!(sold, "sold");
    assert_problem(
        app.hold(&bob, schedule, 2).await,
        StatusCode::CONFLICT,
        "SEAT_TAKEN",
    )
    .await;
    let id = app.held(&bob, schedule, 3).await;
    app.http
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let gone: Option<String> = redis::cmd("GET")
        .arg(app.svc.keys.seat_lock(
            domain::ScheduleId(schedule),
            domain::SeatNo::parse(3).unwrap(),
        ))
        .query_async(&mut *redis)
        .await
        .unwrap();
    assert_eq!(gone, None, "a release clears the marker");
}
