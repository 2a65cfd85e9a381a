use std::collections::HashSet;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_debits_the_held_price_confirms_the_seat_and_ends_the_token() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[5], 4_000).await;
    let token = app.token(concert, "ann").await;
    app.charge(&token, 10_000, "c1").await;
    let id = app.held(&token, schedules[0], 5).await;
    // An operator repricing the seat after the hold changes nothing for this hold.
    app.execute(&format!(
        "UPDATE seats SET price = 9999 WHERE schedule_id = {} AND seat_no = 5",
        schedules[0]
    ))
    .await;

    let res = app.pay(&token, id, "p1").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let payment: Value = res.json().await.unwrap();
    assert_eq!(payment["amount"], 4_000);
    assert_eq!(payment["balanceAfter"], 6_000);
    assert_eq!(payment["reservationId"], id);
    assert_eq!(app.balance(&token).await, 6_000);

    let r: Value = app
        .get(&format!("/v1/reservations/{id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "CONFIRMED");
    assert_eq!(app.seat_statuses(schedules[0]).await[4], "SOLD");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'PaymentCompleted'")
            .await,
        1
    );

    let status: Value = app
        .get("/v1/queue/tokens/current", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "EXPIRED", "payment ends the queue token");
    assert_problem(
        app.hold(&token, schedules[0], 1).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
    )
    .await;
    // The user can come back for another seat with a new token.
    let again = app.token(concert, "ann").await;
    assert_ne!(again, token);
    app.held(&again, schedules[0], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_payments_with_one_key_pay_once_and_answer_alike() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[1], 1_000).await;
    let token = app.token(concert, "ann").await;
    app.charge(&token, 100_000, "c1").await;
    let id = app.held(&token, schedules[0], 1).await;

    let answers = join_all((0..200).map(|_| app.pay(&token, id, "same-key"))).await;
    let mut payment_ids = HashSet::new();
    for res in answers {
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        payment_ids.insert(body["id"].as_u64().unwrap());
        assert_eq!(body["balanceAfter"], 99_000);
    }
    assert_eq!(payment_ids.len(), 1, "every retry replays the one payment");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM point_ledger WHERE kind = 'PAYMENT'")
            .await,
        1
    );
    assert_eq!(app.balance(&token).await, 99_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_payments_with_different_keys_pay_once() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[1], 1_000).await;
    let token = app.token(concert, "ann").await;
    app.charge(&token, 100_000, "c1").await;
    let id = app.held(&token, schedules[0], 1).await;

    let answers = join_all((0..200).map(|i| {
        let key = format!("key-{i}");
        let (app, token) = (&app, &token);
        async move { app.pay(token, id, &key).await }
    }))
    .await;
    let mut paid = 0;
    for res in answers {
        if res.status() == StatusCode::CREATED {
            paid += 1;
        } else {
            // The rest lost the race: either the reservation was paid already, or
            // the token was ended by the winning payment a moment before.
            let body: Value = res.json().await.unwrap();
            assert!(
                body["code"] == "ALREADY_PAID" || body["code"] == "TOKEN_EXPIRED",
                "{body}"
            );
        }
    }
    assert_eq!(paid, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM point_ledger WHERE kind = 'PAYMENT'")
            .await,
        1
    );
    assert_eq!(app.balance(&token).await, 99_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_refusals_have_their_own_codes_and_debit_nothing() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[3], 5_000).await;
    let token = app.token(concert, "ann").await;
    let id = app.held(&token, schedules[0], 1).await;

    assert_problem(
        app.pay(&token, id, "k1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INSUFFICIENT_POINTS",
    )
    .await;
    app.charge(&token, 4_999, "c1").await;
    assert_problem(
        app.pay(&token, id, "k1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INSUFFICIENT_POINTS",
    )
    .await;
    assert_eq!(app.balance(&token).await, 4_999);
    assert_problem(
        app.pay(&token, 987_654, "k2").await,
        StatusCode::NOT_FOUND,
        "RESERVATION_NOT_FOUND",
    )
    .await;

    // A refused attempt records nothing, so the same key works once the wallet is topped up.
    app.charge(&token, 1, "c2").await;
    assert_eq!(
        app.pay(&token, id, "k1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.balance(&token).await, 0);

    // The same key for another request is refused rather than replayed.
    let token2 = app.token(concert, "ann").await;
    let id2 = app.held(&token2, schedules[0], 2).await;
    assert_problem(
        app.pay(&token2, id2, "k1").await,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    for bad_key in ["", "has space", &"k".repeat(65)] {
        assert_problem(
            app.pay(&token2, id2, bad_key).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_IDEMPOTENCY_KEY",
        )
        .await;
    }
    let no_key = app
        .http
        .post(app.url("/v1/payments"))
        .bearer_auth(&token2)
        .json(&serde_json::json!({"reservationId": id2}))
        .send()
        .await
        .unwrap();
    assert_problem(no_key, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refused_payments_with_one_key_all_get_the_refusal() {
    // Every attempt rolls back, so each waiting duplicate insert of the key then
    // races the others: InnoDB's classic insert-after-rollback deadlock, which the
    // use case must retry rather than answer with a 500.
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[1], 1_000).await;
    let token = app.token(concert, "ann").await;
    let id = app.held(&token, schedules[0], 1).await;
    let answers = join_all((0..100).map(|_| app.pay(&token, id, "one-key"))).await;
    for res in answers {
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "INSUFFICIENT_POINTS").await;
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_keys").await, 0);
}
