//! Orders of several seats: all-or-nothing holds under contention, grades and their
//! prices, payment of the total, cancellation with a refund, and a cancelled show
//! refunded through a crash; against real MariaDB and Redis.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt as _;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, until};
use crate::processes::{process_with, sigkill};

/// A concert of one schedule with these grades (`[name, price, first, last]`),
/// starting at `starts_at`, with `extra` merged into the body (a `cancellation`,
/// a `sale`). Returns the concert and the schedule.
async fn graded_concert(
    app: &TestApp,
    grades: &[(&str, u64, u32, u32)],
    starts_at: &str,
    extra: &Value,
) -> (u64, u64) {
    let grades: Vec<Value> = grades
        .iter()
        .map(|(name, price, first, last)| {
            json!({"name": name, "price": price, "firstSeat": first, "lastSeat": last})
        })
        .collect();
    let mut body = json!({
        "title": "Graded Concert", "artist": "Test Band",
        "schedules": [{"venue": "Hall", "startsAt": starts_at, "grades": grades}],
    });
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            body[k] = v.clone();
        }
    }
    let res = app
        .admin(Method::POST, "/v1/admin/concerts", Some(&body))
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["concertId"].as_u64().unwrap(),
        body["scheduleIds"][0].as_u64().unwrap(),
    )
}

const NEXT_YEAR: &str = "2027-06-01T19:00:00Z";

async fn order(app: &TestApp, token: &str, body: &Value) -> Response {
    app.http
        .post(app.url("/v1/orders"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Holds these seats, which must be free; returns the order.
async fn held(app: &TestApp, token: &str, schedule: u64, seats: &[u32]) -> Value {
    let res = order(app, token, &json!({"scheduleId": schedule, "seats": seats})).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn pay(app: &TestApp, token: &str, order: u64, key: &str) -> Response {
    app.http
        .post(app.url(&format!("/v1/orders/{order}/payment")))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap()
}

async fn cancel(app: &TestApp, token: &str, order: u64, key: &str) -> Response {
    app.http
        .post(app.url(&format!("/v1/orders/{order}/cancellation")))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap()
}

/// A fan with `points` who holds and pays `seats`; returns their token and the
/// paid order's id.
async fn paid_fan(
    app: &TestApp,
    concert: u64,
    schedule: u64,
    user: &str,
    points: i64,
    seats: &[u32],
) -> (String, u64) {
    let token = app.token(concert, user).await;
    assert_eq!(
        app.charge(&token, points, &format!("{user}-charge"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let id = held(app, &token, schedule, seats).await["id"]
        .as_u64()
        .unwrap();
    let res = pay(app, &token, id, &format!("{user}-pay")).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    (token, id)
}

/// Every wallet equals the sum of its ledger, and no order was refunded twice.
async fn assert_books_balance(app: &TestApp) {
    let off = app
        .scalar(
            "SELECT COUNT(*) FROM wallets w WHERE w.balance <> \
             (SELECT COALESCE(SUM(amount), 0) FROM point_ledger l WHERE l.user_id = w.user_id)",
        )
        .await;
    assert_eq!(off, 0, "wallets that differ from their ledger");
    let twice = app
        .scalar(
            "SELECT COUNT(*) FROM (SELECT order_id FROM point_ledger WHERE kind = 'REFUND' \
             GROUP BY order_id HAVING COUNT(*) > 1) t",
        )
        .await;
    assert_eq!(twice, 0, "orders refunded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_orders_of_500_fans_never_share_a_seat() {
    let app = TestApp::spawn_with(|s| s.database_pool_size = 32).await;
    let (concert, schedule) =
        graded_concert(&app, &[("R", 100, 1, 200)], NEXT_YEAR, &json!({})).await;
    let fans: Vec<String> = (0..500).map(|i| format!("fan-{i}")).collect();
    let tokens: Vec<String> = futures::stream::iter(&fans)
        .map(|user| app.token(concert, user))
        .buffered(64)
        .collect()
        .await;
    // Each fan wants 2-4 seats: a run of neighbours starting anywhere, so most
    // orders overlap several others.
    let wanted: Vec<Vec<u32>> = (0..500u32)
        .map(|i| {
            let start = (i * 37) % 197 + 1;
            (start..start + 2 + i % 3).collect()
        })
        .collect();
    let app = &app;
    let answers: Vec<(StatusCode, Value)> = futures::stream::iter(tokens.iter().zip(&wanted))
        .map(|(token, seats)| async move {
            let res = order(app, token, &json!({"scheduleId": schedule, "seats": seats})).await;
            (res.status(), res.json::<Value>().await.unwrap())
        })
        .buffer_unordered(500)
        .collect()
        .await;
    let mut taken_by: HashMap<u64, u64> = HashMap::new();
    let mut held_orders = 0;
    for (status, body) in &answers {
        match *status {
            StatusCode::CREATED => {
                held_orders += 1;
                let id = body["id"].as_u64().unwrap();
                for seat in body["seats"].as_array().unwrap() {
                    let seat = seat["seatNo"].as_u64().unwrap();
                    assert!(
                        taken_by.insert(seat, id).is_none(),
                        "seat {seat} in two orders"
                    );
                }
            }
            StatusCode::CONFLICT => assert_eq!(body["code"], "SEAT_TAKEN", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(held_orders > 20, "only {held_orders} orders held");
    assert!(
        held_orders < 500,
        "no order was refused: the test lost its overlap"
    );
    // MySQL agrees: every held seat belongs to exactly one held order, each order
    // has all of its seats, and no refused order left anything behind.
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM orders").await,
        held_orders,
        "orders in MySQL"
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM orders o WHERE o.seat_count <> \
             (SELECT COUNT(*) FROM reservations r JOIN seats s \
                ON s.schedule_id = r.schedule_id AND s.seat_no = r.seat_no \
                AND s.reservation_id = r.id AND s.status = 'HELD' \
              WHERE r.order_id = o.id)"
        )
        .await,
        0,
        "orders missing a seat"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM seats WHERE schedule_id = {schedule} AND status = 'HELD'"
        ))
        .await,
        i64::try_from(taken_by.len()).unwrap()
    );
}

#[tokio::test]
async fn an_order_costs_what_its_grades_cost_when_it_was_held() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = graded_concert(
        &app,
        &[("VIP", 300, 1, 2), ("R", 100, 3, 10)],
        NEXT_YEAR,
        &json!({}),
    )
    .await;
    let token = app.token(concert, "fan").await;
    let held_order = held(&app, &token, schedule, &[3, 1]).await;
    assert_eq!(held_order["total"], 400);
    let seats: Vec<(u64, &str, u64)> = held_order["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["seatNo"].as_u64().unwrap(),
                s["grade"].as_str().unwrap(),
                s["price"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seats, [(1, "VIP", 300), (3, "R", 100)], "in seat order");
    // The operator raises VIP before the fan pays.
    let res = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/schedules/{schedule}/grades/VIP"),
            Some(&json!({"price": 500})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let grade: Value = res.json().await.unwrap();
    assert_eq!(
        (grade["price"].as_u64(), grade["available"].as_u64()),
        (Some(500), Some(1))
    );
    app.charge(&token, 1_000, "charge").await;
    let id = held_order["id"].as_u64().unwrap();
    let res = pay(&app, &token, id, "pay").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let paid: Value = res.json().await.unwrap();
    assert_eq!(
        (paid["amount"].as_u64(), paid["balanceAfter"].as_u64()),
        (Some(400), Some(600))
    );
    // New holds pay the new price, and the maps show it.
    let map: Value = app
        .get(&format!("/v1/schedules/{schedule}/seats"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(map["seats"][1]["price"], 500);
    assert_eq!(map["seats"][1]["grade"], "VIP");
    let list: Value = app
        .get(&format!("/v1/concerts/{concert}/schedules"), None)
        .await
        .json()
        .await
        .unwrap();
    let grades = &list["schedules"][0]["grades"];
    assert_eq!(grades[0]["name"], "VIP");
    assert_eq!(
        (grades[0]["price"].as_u64(), grades[0]["available"].as_u64()),
        (Some(500), Some(1))
    );
    assert_eq!(
        (grades[1]["name"].as_str(), grades[1]["available"].as_u64()),
        (Some("R"), Some(7))
    );
    let other = app.token(concert, "second-fan").await;
    let second = order(
        &app,
        &other,
        &json!({"scheduleId": schedule, "grade": "VIP", "quantity": 1}),
    )
    .await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        (
            second["seats"][0]["seatNo"].as_u64(),
            second["total"].as_u64()
        ),
        (Some(2), Some(500))
    );
}

#[tokio::test]
async fn seats_by_grade_are_the_lowest_numbered_free_ones() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = graded_concert(
        &app,
        &[("VIP", 300, 1, 4), ("R", 100, 5, 10)],
        NEXT_YEAR,
        &json!({}),
    )
    .await;
    let first = app.token(concert, "first").await;
    held(&app, &first, schedule, &[2, 6]).await;
    let second = app.token(concert, "second").await;
    let res = order(
        &app,
        &second,
        &json!({"scheduleId": schedule, "grade": "VIP", "quantity": 3}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let seats: Vec<u64> = body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seatNo"].as_u64().unwrap())
        .collect();
    assert_eq!(seats, [1, 3, 4]);
    let third = app.token(concert, "third").await;
    let res = order(
        &app,
        &third,
        &json!({"scheduleId": schedule, "grade": "VIP", "quantity": 1}),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT, "NOT_ENOUGH_SEATS").await;
    let res = order(
        &app,
        &third,
        &json!({"scheduleId": schedule, "grade": "GOLD", "quantity": 1}),
    )
    .await;
    assert_problem(res, StatusCode::NOT_FOUND, "GRADE_NOT_FOUND").await;
    // The grade's free seats come back when an order is released.
    let released = app
        .http
        .delete(app.url(&format!("/v1/orders/{}", body["id"])))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), StatusCode::OK);
    assert_eq!(
        released.json::<Value>().await.unwrap()["status"],
        "RELEASED"
    );
    let res = order(
        &app,
        &third,
        &json!({"scheduleId": schedule, "grade": "VIP", "quantity": 3}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_orders_get_clear_errors_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (concert, schedule) =
        graded_concert(&app, &[("R", 100, 1, 10)], NEXT_YEAR, &json!({})).await;
    let token = app.token(concert, "fan").await;
    for (body, status, code) in [
        (
            json!({"scheduleId": schedule, "seats": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ORDER",
        ),
        (
            json!({"scheduleId": schedule, "seats": [1, 1]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ORDER",
        ),
        (
            json!({"scheduleId": schedule}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ORDER",
        ),
        (
            json!({"scheduleId": schedule, "seats": [1], "grade": "R", "quantity": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ORDER",
        ),
        (
            json!({"scheduleId": schedule, "seats": (1..=101).collect::<Vec<_>>()}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ORDER",
        ),
        (
            json!({"scheduleId": schedule, "grade": "R", "quantity": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ORDER",
        ),
        (
            json!({"scheduleId": schedule, "grade": "R R", "quantity": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_GRADE",
        ),
        (
            json!({"scheduleId": schedule, "seats": [0]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_SEAT_NUMBER",
        ),
        (
            json!({"scheduleId": schedule, "seats": [1, 11]}),
            StatusCode::NOT_FOUND,
            "SEAT_NOT_FOUND",
        ),
        (
            json!({"scheduleId": schedule, "seats": [1, 2, 3, 4, 5]}),
            StatusCode::CONFLICT,
            "SEAT_LIMIT",
        ),
        (
            json!({"scheduleId": 999_999, "seats": [1]}),
            StatusCode::NOT_FOUND,
            "SCHEDULE_NOT_FOUND",
        ),
        // A field the schema does not name: the spec allows none (its `oneOf` caps
        // each form's fields), so the server refuses rather than ignores it.
        (
            json!({"scheduleId": schedule, "seats": [1], "seat": 2}),
            StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
    ] {
        let res = order(&app, &token, &body).await;
        assert_problem(res, status, code).await;
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM reservations").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn taken_foreign_and_unpaid_orders_get_clear_errors_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (concert, schedule) =
        graded_concert(&app, &[("R", 100, 1, 10)], NEXT_YEAR, &json!({})).await;
    let token = app.token(concert, "fan").await;
    // One order held: an overlapping one names the taken seats and changes nothing.
    let mine = held(&app, &token, schedule, &[2, 3]).await;
    let other = app.token(concert, "other").await;
    let res = order(
        &app,
        &other,
        &json!({"scheduleId": schedule, "seats": [1, 2, 3]}),
    )
    .await;
    let problem = assert_problem(res, StatusCode::CONFLICT, "SEAT_TAKEN").await;
    assert_eq!(
        problem["detail"], "seats 2, 3 are held or sold",
        "{problem}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(
        app.seat_statuses(schedule).await[0],
        "AVAILABLE",
        "seat 1 stays free"
    );

    // Someone else's order does not exist for them; an unpaid one cannot be cancelled.
    let id = mine["id"].as_u64().unwrap();
    assert_problem(
        cancel(&app, &other, id, "k1").await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_problem(
        pay(&app, &other, id, "k2").await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    let res = app.get(&format!("/v1/orders/{id}"), Some(&other)).await;
    assert_problem(res, StatusCode::NOT_FOUND, "ORDER_NOT_FOUND").await;
    assert_problem(
        cancel(&app, &token, id, "k3").await,
        StatusCode::CONFLICT,
        "ORDER_NOT_PAID",
    )
    .await;
    let res = app
        .http
        .post(app.url(&format!("/v1/orders/{id}/cancellation")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM point_ledger").await, 0);
    let listed: Value = app
        .get("/v1/orders", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["orders"][0]["id"], id);
    assert_eq!(listed["orders"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_concert_with_bad_grades_is_refused() {
    let app = TestApp::spawn().await;
    let schedule = |grades: Value| json!({"title": "T", "artist": "A", "schedules": [{"venue": "V", "startsAt": NEXT_YEAR, "grades": grades}]});
    for (body, code) in [
        (
            schedule(json!([{"name": "A", "price": 1, "firstSeat": 2, "lastSeat": 3}])),
            "INVALID_GRADES",
        ),
        (
            schedule(
                json!([{"name": "A", "price": 1, "firstSeat": 1, "lastSeat": 3}, {"name": "A", "price": 1, "firstSeat": 4, "lastSeat": 5}]),
            ),
            "INVALID_GRADES",
        ),
        (
            schedule(
                json!([{"name": "A", "price": 1, "firstSeat": 1, "lastSeat": 3}, {"name": "B", "price": 1, "firstSeat": 3, "lastSeat": 5}]),
            ),
            "INVALID_GRADES",
        ),
        (
            schedule(json!([{"name": "A", "price": 0, "firstSeat": 1, "lastSeat": 3}])),
            "INVALID_GRADES",
        ),
        (
            schedule(json!([{"name": "", "price": 1, "firstSeat": 1, "lastSeat": 3}])),
            "INVALID_GRADE",
        ),
        (schedule(json!([])), "INVALID_GRADES"),
        (
            json!({"title": "T", "artist": "A", "schedules": [{"venue": "V", "startsAt": NEXT_YEAR, "price": 5,
                "grades": [{"name": "A", "price": 1, "firstSeat": 1, "lastSeat": 3}]}]}),
            "INVALID_CONCERT",
        ),
        (
            json!({"title": "T", "artist": "A", "schedules": [{"venue": "V", "startsAt": NEXT_YEAR, "seatCount": 3, "price": 5}],
                "cancellation": {"cutoffHours": 24, "feePercent": 101}}),
            "INVALID_CONCERT",
        ),
    ] {
        let res = app
            .admin(Method::POST, "/v1/admin/concerts", Some(&body))
            .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM concerts").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_cancels_refund_once() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = graded_concert(
        &app,
        &[("VIP", 333, 1, 5), ("R", 111, 6, 20)],
        NEXT_YEAR,
        &json!({"cancellation": {"cutoffHours": 24, "feePercent": 10}}),
    )
    .await;
    let (token, id) = paid_fan(&app, concert, schedule, "fan", 1_000, &[1, 6]).await;
    // Half retry one key, half bring their own.
    let answers: Vec<(StatusCode, Option<String>, Value)> = futures::stream::iter(0..50)
        .map(|i| {
            let key = if i % 2 == 0 {
                "same-key".to_owned()
            } else {
                format!("key-{i}")
            };
            let (app, token) = (&app, &token);
            async move {
                let res = cancel(app, token, id, &key).await;
                let replayed = res
                    .headers()
                    .get("Idempotent-Replayed")
                    .map(|v| v.to_str().unwrap().to_owned());
                (res.status(), replayed, res.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let fresh: Vec<&Value> = answers
        .iter()
        .filter(|(status, replayed, _)| *status == StatusCode::CREATED && replayed.is_none())
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(
        fresh.len(),
        1,
        "exactly one cancellation refunds: {answers:?}"
    );
    // 444 total, fee 10% = 44.4, rounded down to 44: 400 back.
    assert_eq!(
        (fresh[0]["refund"].as_u64(), fresh[0]["fee"].as_u64()),
        (Some(400), Some(44))
    );
    for (status, replayed, body) in &answers {
        match (*status, replayed) {
            (StatusCode::CREATED, Some(_)) => assert_eq!(body, fresh[0]),
            (StatusCode::CREATED, None) => {}
            (StatusCode::CONFLICT, None) => assert_eq!(body["code"], "ORDER_CANCELLED"),
            other => panic!("unexpected {other:?}: {body}"),
        }
    }
    assert_eq!(app.balance(&token).await, 1_000 - 444 + 400);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM point_ledger WHERE order_id = {id} AND kind = 'REFUND'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM point_ledger WHERE order_id = {id} AND kind = 'FEE'"
        ))
        .await,
        1
    );
    assert_books_balance(&app).await;
    let order: Value = app
        .get(&format!("/v1/orders/{id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            order["status"].as_str(),
            order["refund"].as_u64(),
            order["fee"].as_u64()
        ),
        (Some("CANCELLED"), Some(400), Some(44))
    );
    assert_eq!(
        app.seat_statuses(schedule).await[0],
        "AVAILABLE",
        "back on sale at once"
    );
    let ledger: Value = app
        .get("/v1/points/history", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["FEE", "REFUND", "PAYMENT", "CHARGE"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_a_new_hold_of_its_seats() {
    let app = TestApp::spawn().await;
    let (concert, schedule) =
        graded_concert(&app, &[("R", 100, 1, 10)], NEXT_YEAR, &json!({})).await;
    let (owner, id) = paid_fan(&app, concert, schedule, "owner", 500, &[5, 6]).await;
    let buyer = app.token(concert, "buyer").await;
    // The buyer tries for the seats while their owner cancels; a refused try is
    // SEAT_TAKEN, and the seats are theirs soon after the cancellation commits.
    let grab = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let res = order(
                &app,
                &buyer,
                &json!({"scheduleId": schedule, "seats": [5, 6]}),
            )
            .await;
            match res.status() {
                StatusCode::CREATED => return res.json::<Value>().await.unwrap(),
                StatusCode::CONFLICT => {
                    assert_eq!(res.json::<Value>().await.unwrap()["code"], "SEAT_TAKEN");
                }
                other => panic!("unexpected {other}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the seats never came back"
            );
        }
    };
    let (bought, cancelled) = tokio::join!(grab, cancel(&app, &owner, id, "cancel"));
    assert_eq!(cancelled.status(), StatusCode::CREATED);
    assert_eq!(bought["status"], "HELD");
    // The new order stands; the canceller was refunded once.
    let again = cancel(&app, &owner, id, "cancel-again").await;
    assert_problem(again, StatusCode::CONFLICT, "ORDER_CANCELLED").await;
    assert_eq!(app.balance(&owner).await, 500 - 200 + 180);
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM seats WHERE schedule_id = {schedule} AND status = 'HELD' AND reservation_id IN (SELECT id FROM reservations WHERE order_id = {})", bought["id"])).await,
        2
    );
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn cancelling_closes_at_the_cutoff() {
    let app = TestApp::spawn().await;
    let soon = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (concert, schedule) = graded_concert(
        &app,
        &[("R", 100, 1, 10)],
        &soon,
        &json!({"cancellation": {"cutoffHours": 3, "feePercent": 0}}),
    )
    .await;
    let (token, id) = paid_fan(&app, concert, schedule, "late", 100, &[1]).await;
    assert_problem(
        cancel(&app, &token, id, "k").await,
        StatusCode::CONFLICT,
        "CANCELLATION_CLOSED",
    )
    .await;
    assert_eq!(app.balance(&token).await, 0);
    assert_eq!(app.seat_statuses(schedule).await[0], "SOLD");
}

#[tokio::test]
async fn single_seat_calls_are_orders_of_one() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[5], 100).await;
    let token = app.token(concert, "fan").await;
    let res = app.hold(&token, schedules[0], 3).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let reservation: Value = res.json().await.unwrap();
    let order_id = reservation["orderId"].as_u64().unwrap();
    let order: Value = app
        .get(&format!("/v1/orders/{order_id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["seats"][0]["reservationId"], reservation["id"]);
    assert_eq!(order["seats"][0]["grade"], "STANDARD");
    app.charge(&token, 100, "c").await;
    let paid = app
        .pay(&token, reservation["id"].as_u64().unwrap(), "p")
        .await;
    assert_eq!(paid.status(), StatusCode::CREATED);
    // Paying the reservation paid its order: paying the order again is a conflict
    // (the token has ended with the payment, so a new one is needed).
    let order: Value = app
        .get(&format!("/v1/orders/{order_id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "CONFIRMED");
    let (c, r) = (
        order["concertId"].as_u64().unwrap(),
        order["seats"][0]["reservationId"].as_u64().unwrap(),
    );
    assert_eq!(c, concert);
    let res = cancel(&app, &token, order_id, "cancel").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let reservation: Value = app
        .get(&format!("/v1/reservations/{r}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reservation["status"], "CANCELLED");
}

/// A show with 1,000 paid orders is cancelled; the instance refunding them is
/// killed midway and started again: every order is refunded once, in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_show_refunds_every_order_once_through_a_crash() {
    // The in-process app only takes the orders; the processes below refund them.
    let app = TestApp::spawn_with(|s| {
        s.expiry_interval_ms = 3_600_000;
        s.database_pool_size = 32;
    })
    .await;
    let (concert, schedule) =
        graded_concert(&app, &[("R", 100, 1, 1_200)], NEXT_YEAR, &json!({})).await;
    let fans: Vec<String> = (0..1_000).map(|i| format!("show-fan-{i}")).collect();
    let paid: Vec<(String, u64)> = futures::stream::iter(fans.iter().enumerate())
        .map(|(i, user)| {
            let app = &app;
            async move {
                let seat = u32::try_from(i).unwrap() + 1;
                paid_fan(app, concert, schedule, user, 100, &[seat]).await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    // A few held orders too: they are released, not refunded.
    let holder = app.token(concert, "holder").await;
    held(&app, &holder, schedule, &[1_101, 1_102]).await;

    let res = app
        .admin(
            Method::POST,
            &format!("/v1/admin/schedules/{schedule}/cancellation"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let progress: Value = res.json().await.unwrap();
    assert_eq!(progress["ordersToSettle"], 1_001);
    let res = order(
        &app,
        &holder,
        &json!({"scheduleId": schedule, "seats": [1_150]}),
    )
    .await;
    assert_problem(res, StatusCode::CONFLICT, "SHOW_CANCELLED").await;

    let refunded = || app.scalar("SELECT COUNT(*) FROM point_ledger WHERE kind = 'REFUND'");
    let progress = async || -> Value {
        let path = format!("/v1/admin/schedules/{schedule}/cancellation");
        let res = app.admin(Method::GET, &path, None).await;
        res.json().await.unwrap()
    };
    let env = [
        ("BOXOFFICE_EXPIRY_INTERVAL_MS", "20"),
        ("BOXOFFICE_EXPIRY_BATCH_SIZE", "25"),
    ];
    let port = crate::broker::free_port();
    let worker = process_with(&app, "serve", port, "127.0.0.1:1", &env);
    until("the first refunds", Duration::from_secs(60), async || {
        refunded().await >= 100
    })
    .await;
    sigkill(worker);
    let at_kill = refunded().await;
    assert!(
        at_kill < 1_000,
        "the kill came too late to cut the work: {at_kill}"
    );
    let port = crate::broker::free_port();
    let _worker = process_with(&app, "serve", port, "127.0.0.1:1", &env);
    until(
        "every order settled",
        Duration::from_secs(120),
        async || progress().await["ordersToSettle"] == 0,
    )
    .await;

    assert_eq!(refunded().await, 1_000, "one refund per paid order");
    assert_books_balance(&app).await;
    for (token, id) in paid.iter().step_by(97) {
        assert_eq!(app.balance(token).await, 100, "refunded in full");
        let order: Value = app
            .get(&format!("/v1/orders/{id}"), Some(token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (order["status"].as_str(), order["fee"].as_u64()),
            (Some("CANCELLED"), Some(0))
        );
    }
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE schedule_id = {schedule} AND status = 'RELEASED'"
        ))
        .await,
        1
    );
    assert_eq!(progress().await["ordersRefunded"], 1_000);
    let seats: BTreeSet<String> = app.seat_statuses(schedule).await.into_iter().collect();
    assert!(
        !seats.contains("HELD"),
        "held seats of a cancelled show are freed: {seats:?}"
    );
}
