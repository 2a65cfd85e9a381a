use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_cached_and_never_stale_after_a_write() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[4], 100).await;
    let schedule = schedules[0];
    let metrics = &app.svc.metrics;

    assert_eq!(app.seat_statuses(schedule).await, ["AVAILABLE"; 4]);
    assert_eq!(app.seat_statuses(schedule).await, ["AVAILABLE"; 4]);
    assert_eq!(metrics.cache_count("seat_map", "miss"), 1);
    assert_eq!(metrics.cache_count("seat_map", "hit"), 1);

    let token = app.token(concert, "ann").await;
    app.charge(&token, 1_000, "c").await;
    let id = app.held(&token, schedule, 2).await;
    assert_eq!(
        app.seat_statuses(schedule).await,
        ["AVAILABLE", "HELD", "AVAILABLE", "AVAILABLE"]
    );
    let schedules_page: Value = app
        .get(&format!("/v1/concerts/{concert}/schedules"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(schedules_page["schedules"][0]["availableSeats"], 3);

    app.pay(&token, id, "p").await;
    assert_eq!(
        app.seat_statuses(schedule).await,
        ["AVAILABLE", "SOLD", "AVAILABLE", "AVAILABLE"]
    );

    let token = app.token(concert, "ann").await;
    let id = app.held(&token, schedule, 4).await;
    assert_eq!(app.seat_statuses(schedule).await[3], "HELD");
    app.http
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(app.seat_statuses(schedule).await[3], "AVAILABLE");
    let schedules_page: Value = app
        .get(&format!("/v1/concerts/{concert}/schedules"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(schedules_page["schedules"][0]["availableSeats"], 3);

    let before: Value = app.get("/v1/concerts", None).await.json().await.unwrap();
    app.create_concert(&[1], 1).await;
    let after: Value = app.get("/v1/concerts", None).await.json().await.unwrap();
    assert_eq!(
        after["concerts"].as_array().unwrap().len(),
        before["concerts"].as_array().unwrap().len() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_racing_writers_never_leave_an_old_seat_map_behind() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[50], 100).await;
    let schedule = schedules[0];
    let tokens = join_all((0..50).map(|u| {
        let app = &app;
        async move { app.token(concert, &format!("fan-{u}")).await }
    }))
    .await;
    let readers = join_all((0..300).map(|_| {
        let (app, path) = (&app, format!("/v1/schedules/{schedule}/seats"));
        async move { app.get(&path, None).await }
    }));
    let writers = join_all(
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| app.hold(t, schedule, i64::try_from(i).unwrap() + 1)),
    );
    let (reads, writes) = tokio::join!(readers, writers);
    assert!(reads.iter().all(|r| r.status() == StatusCode::OK));
    assert!(writes.iter().all(|w| w.status() == StatusCode::CREATED));
    assert_eq!(
        app.seat_statuses(schedule).await,
        ["HELD"; 50],
        "the last writes are visible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_concerts_and_schedules_are_404s() {
    let app = TestApp::spawn().await;
    assert_problem(
        app.get("/v1/concerts/77/schedules", None).await,
        StatusCode::NOT_FOUND,
        "CONCERT_NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get("/v1/schedules/77/seats", None).await,
        StatusCode::NOT_FOUND,
        "SCHEDULE_NOT_FOUND",
    )
    .await;
    let empty: Value = app.get("/v1/concerts", None).await.json().await.unwrap();
    assert_eq!(empty["concerts"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_docs_and_metrics_are_served() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK);
    let ready: Value = app.get("/health/ready", None).await.json().await.unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"status": "up", "mysql": "up", "redis": "up", "relay": "disabled"})
    );
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "boxoffice");
    app.get("/v1/concerts", None).await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("boxoffice_cache_requests_total{cache=\"concerts\",result=\"miss\"} 1"),
        "{metrics}"
    );
}
