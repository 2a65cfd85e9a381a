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
        app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderPaid'")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_token_pays_once_even_when_ten_payments_race() {
    let app = TestApp::spawn().await;
    // One fan holds all ten seats.
    let (concert, schedules) = app
        .create_sale(&[10], 1_000, &serde_json::json!({"maxSeatsPerFan": 10}))
        .await;
    let token = app.token(concert, "ann").await;
    app.charge(&token, 100_000, "c1").await;
    let mut held = Vec::new();
    for seat in 1..=10 {
        held.push(app.held(&token, schedules[0], seat).await);
    }

    // Ten payments with the one token, each for its own held seat, all at once.
    let answers = join_all(held.iter().enumerate().map(|(i, id)| {
        let (app, token, key) = (&app, &token, format!("p-{i}"));
        async move { app.pay(token, *id, &key).await }
    }))
    .await;
    let mut paid = Vec::new();
    for (i, res) in answers.into_iter().enumerate() {
        if res.status() == StatusCode::CREATED {
            paid.push((i, res.json::<Value>().await.unwrap()));
        } else {
            assert_problem(res, StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED").await;
        }
    }
    assert_eq!(paid.len(), 1, "a queue token pays once");
    let (winner, receipt) = &paid[0];
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM point_ledger WHERE kind = 'PAYMENT'")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderPaid'")
            .await,
        1
    );
    assert_eq!(app.balance(&token).await, 99_000);
    let seats = app.seat_statuses(schedules[0]).await;
    assert_eq!(seats.iter().filter(|s| *s == "SOLD").count(), 1);
    // The refused payments changed nothing: their holds stay held.
    assert_eq!(seats.iter().filter(|s| *s == "HELD").count(), 9);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM reservations WHERE status = 'HELD'")
            .await,
        9
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM idempotency_keys WHERE scope = 'payment'")
            .await,
        1,
        "a refused payment claims no key"
    );

    // The winner's key replays its answer; every other, now or later, is refused.
    let replay = app.pay(&token, held[*winner], &format!("p-{winner}")).await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], receipt["id"]);
    for (i, id) in held.iter().enumerate().filter(|(i, _)| i != winner) {
        assert_problem(
            app.pay(&token, *id, &format!("p-{i}")).await,
            StatusCode::UNAUTHORIZED,
            "TOKEN_EXPIRED",
        )
        .await;
    }

    // Sequentially too, and in MySQL itself: a payment whose token still looked
    // ACTIVE (as if Redis had not heard the first payment end it) is refused.
    let queue_token = domain::QueueToken::parse(&token).unwrap();
    let stale = domain::token::Grant {
        user_id: domain::UserId::parse("ann").unwrap(),
        concert_id: domain::ConcertId(concert),
        state: domain::TokenState::Active,
        position: None,
        eta_seconds: None,
        active_until: None,
        active_for: None,
        prequeued: false,
    };
    let loser = held.iter().position(|id| *id != held[*winner]).unwrap();
    let refused = infra::service::payments::pay(
        &app.svc,
        &queue_token,
        &stale,
        domain::ReservationId(held[loser]),
        &domain::IdempotencyKey::parse("after").unwrap(),
        infra::now(),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(domain::PaymentError::Access(
                domain::token::AccessDenied::Expired
            ))
        ),
        "{refused:?}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(app.balance(&token).await, 99_000);

    // The fan pays for another held seat with a new token.
    let again = app.token(concert, "ann").await;
    assert_eq!(
        app.pay(&again, held[loser], "p-new").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 2);
}
