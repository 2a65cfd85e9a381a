use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_are_bounded_idempotent_and_in_the_history() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let token = app.token(concert, "ann").await;
    assert_eq!(app.balance(&token).await, 0);

    for bad in [0, -1, -50_000, 10_000_001] {
        assert_problem(
            app.charge(&token, bad, &format!("bad-{bad}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_AMOUNT",
        )
        .await;
    }
    let huge = app
        .http
        .post(app.url("/v1/points/charges"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "huge")
        .header("content-type", "application/json")
        .body(r#"{"amount": 1e30}"#)
        .send()
        .await
        .unwrap();
    assert_problem(huge, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;

    let first = app.charge(&token, 700, "c1").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let replay = app.charge(&token, 700, "c1").await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    assert_problem(
        app.charge(&token, 800, "c1").await,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    app.charge(&token, 300, "c2").await;
    assert_eq!(app.balance(&token).await, 1_000);

    let page: Value = app
        .get("/v1/points/history?limit=1", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"][0]["amount"], 300);
    assert_eq!(page["entries"][0]["balanceAfter"], 1_000);
    let before = page["nextBefore"].as_u64().unwrap();
    let older: Value = app
        .get(
            &format!("/v1/points/history?limit=5&before={before}"),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(older["entries"].as_array().unwrap().len(), 1);
    assert_eq!(older["entries"][0]["amount"], 700);
    assert!(older["nextBefore"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balance_limit_holds() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let token = app.token(concert, "rich").await;
    app.execute(
        "INSERT INTO wallets (user_id, balance, updated_at) VALUES ('rich', 999999999, NOW(6))",
    )
    .await;
    assert_problem(
        app.charge(&token, 2, "over").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BALANCE_LIMIT",
    )
    .await;
    assert_eq!(
        app.charge(&token, 1, "exact").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.balance(&token).await, 1_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_and_payments_on_one_wallet_lose_no_update() {
    let app = TestApp::spawn().await;
    // One fan buys all 40 seats.
    let (concert, schedules) = app
        .create_sale(&[40], 250, &serde_json::json!({"maxSeatsPerFan": 40}))
        .await;
    let token = app.token(concert, "ann").await;
    app.charge(&token, 10_000, "seed").await;
    let mut reservations = Vec::new();
    for seat in 1..=40 {
        reservations.push(app.held(&token, schedules[0], seat).await);
    }
    let charges = (0..60).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            app.charge(token, 100, &format!("charge-{i}"))
                .await
                .status()
        }
    });
    // A queue token pays once, so racing payments of one user retry with the new
    // token that joining again gives them (waiting a moment while it is not yet
    // admitted, or already used by another of these payments).
    let payments = reservations.iter().map(|&id| {
        let app = &app;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let fresh = app.waiting_token(concert, "ann").await;
                let res = app.pay(&fresh, id, &format!("pay-{id}")).await;
                if res.status() == StatusCode::CREATED {
                    return true;
                }
                let body: Value = res.json().await.unwrap();
                assert!(
                    body["code"] == "TOKEN_EXPIRED" || body["code"] == "TOKEN_NOT_ACTIVE",
                    "{body}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            false
        }
    });
    let (charged, paid) = tokio::join!(join_all(charges), join_all(payments));
    assert!(charged.iter().all(|s| *s == StatusCode::CREATED));
    assert!(paid.iter().all(|p| *p), "every payment went through");

    let expected = 10_000 + 60 * 100 - 40 * 250;
    assert_eq!(app.balance(&token).await, expected);
    let expected = i64::try_from(expected).unwrap();
    assert_eq!(
        app.scalar("SELECT SUM(amount) FROM point_ledger WHERE user_id = 'ann'")
            .await,
        expected
    );
    assert_eq!(
        app.scalar("SELECT balance FROM wallets WHERE user_id = 'ann'")
            .await,
        expected
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refused_charges_with_one_key_all_get_the_refusal() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let token = app.token(concert, "full").await;
    app.execute(
        "INSERT INTO wallets (user_id, balance, updated_at) VALUES ('full', 999999999, NOW(6))",
    )
    .await;
    let answers = join_all((0..100).map(|_| app.charge(&token, 10, "one-key"))).await;
    for res in answers {
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "BALANCE_LIMIT").await;
    }
    assert_eq!(app.balance(&token).await, 999_999_999);
}
