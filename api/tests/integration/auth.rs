use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_is_idempotent_per_user_and_concert() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let (other, _) = app.create_concert(&[1], 100).await;

    let first = app.join(concert, "ann").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["userId"], "ann");
    assert!(
        first["token"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{concert}."))
    );

    let again = app.join(concert, "ann").await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.json::<Value>().await.unwrap()["token"],
        first["token"]
    );

    let elsewhere: Value = app.join(other, "ann").await.json().await.unwrap();
    let bob: Value = app.join(concert, "bob").await.json().await.unwrap();
    assert_ne!(elsewhere["token"], first["token"]);
    assert_ne!(bob["token"], first["token"]);

    let status = app
        .until_state(first["token"].as_str().unwrap(), "ACTIVE")
        .await;
    assert_eq!(status["concertId"], concert);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refuses_unknown_concerts_and_unusable_subjects() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    assert_problem(
        app.join(424_242, "ann").await,
        StatusCode::NOT_FOUND,
        "CONCERT_NOT_FOUND",
    )
    .await;
    // A subject that cannot be a user id (it is stored and used in Redis keys) is
    // no identity boxoffice can use. (Development mode: `identity.rs`.)
    for bad in ["", "has space", "a:b", "{tag}", &"u".repeat(65)] {
        assert_problem(
            app.join(concert, bad).await,
            StatusCode::UNAUTHORIZED,
            "INVALID_IDENTITY",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_needs_a_real_bearer_token() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[1], 100).await;
    let token = app.token(concert, "ann").await;

    let none = app
        .http
        .post(app.url("/v1/reservations"))
        .json(&json!({"scheduleId": schedules[0], "seatNo": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(none, StatusCode::UNAUTHORIZED, "MISSING_TOKEN").await;
    let forged = format!("{concert}.{}", "f".repeat(64));
    assert_problem(
        app.hold(&forged, schedules[0], 1).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    )
    .await;
    assert_problem(
        app.hold("not-a-token", schedules[0], 1).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    )
    .await;
    let mut flipped = token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_problem(
        app.hold(&flipped, schedules[0], 1).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    )
    .await;
    for path in [
        "/v1/points",
        "/v1/points/history",
        "/v1/queue/tokens/current",
        "/v1/reservations/1",
    ] {
        assert_problem(
            app.get(path, None).await,
            StatusCode::UNAUTHORIZED,
            "MISSING_TOKEN",
        )
        .await;
        assert_problem(
            app.get(path, Some(&forged)).await,
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
        )
        .await;
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM reservations").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_left_token_cannot_book_but_still_reads_its_own_data() {
    let app = TestApp::spawn_with(|s| s.token_active_seconds = 1).await;
    let (concert, schedules) = app.create_concert(&[2], 100).await;
    let token = app.token(concert, "ann").await;
    app.charge(&token, 500, "c1").await;
    app.until_state(&token, "EXPIRED").await;
    assert_problem(
        app.hold(&token, schedules[0], 1).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
    )
    .await;
    assert_eq!(
        app.balance(&token).await,
        500,
        "the token still says who the user is"
    );

    let fresh = app.token(concert, "ann").await;
    assert_ne!(
        fresh, token,
        "an expired token is replaced on joining again"
    );
    let left = app
        .http
        .delete(app.url("/v1/queue/tokens/current"))
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.hold(&fresh, schedules[0], 1).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_api_key_and_valid_concerts() {
    let app = TestApp::spawn().await;
    let concert = json!({"title": "T", "artist": "A", "schedules": [{"venue": "V", "startsAt": "2027-01-01T19:00:00Z", "seatCount": 3, "price": 10}]});
    let post = |key: Option<&str>, body: &Value| {
        let mut req = app.http.post(app.url("/v1/admin/concerts")).json(body);
        if let Some(key) = key {
            req = req.header("X-Api-Key", key);
        }
        req.send()
    };
    assert_problem(
        post(None, &concert).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "INVALID_API_KEY",
    )
    .await;
    assert_problem(
        post(Some("wrong"), &concert).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "INVALID_API_KEY",
    )
    .await;

    let mut bad = concert.clone();
    bad["schedules"][0]["seatCount"] = json!(4_000_000_000u64);
    assert_problem(
        post(Some(ADMIN_KEY), &bad).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_CONCERT",
    )
    .await;
    bad["schedules"][0]["seatCount"] = json!(3);
    bad["schedules"][0]["prices"] = json!([1, 2]);
    assert_problem(
        post(Some(ADMIN_KEY), &bad).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_CONCERT",
    )
    .await;
    bad["schedules"] = json!([]);
    assert_problem(
        post(Some(ADMIN_KEY), &bad).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_CONCERT",
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM concerts").await, 0);

    let mut tiered = concert.clone();
    tiered["schedules"][0]["prices"] = json!([300, 200, 100]);
    assert_eq!(
        post(Some(ADMIN_KEY), &tiered).await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(app.scalar("SELECT SUM(price) FROM seats").await, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_off_without_a_configured_key() {
    let app = TestApp::spawn_with(|s| s.admin_api_key = None).await;
    let res = app
        .http
        .post(app.url("/v1/admin/concerts"))
        .header("X-Api-Key", "")
        .json(&json!({"title": "T", "artist": "A", "schedules": []}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "INVALID_API_KEY").await;
}
