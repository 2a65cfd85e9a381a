//! `/metrics`: business outcomes counted apart from failures, and label sets that do
//! not grow with users, tokens or ids.

use std::collections::BTreeSet;

use reqwest::StatusCode;

use crate::helpers::TestApp;

async fn scrape(app: &TestApp) -> String {
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// The value of one integer series, written exactly as exposed (`name{label="v",...}`).
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// Every series's identity: its name and labels, without the value.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.rsplit_once(' ').unwrap().0.to_owned())
        .collect()
}

#[tokio::test]
async fn expected_conflicts_are_outcomes_not_errors() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[3], 1_000).await;
    let schedule = schedules[0];
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(app.token(concert, &format!("fan-{i}")).await);
    }
    let holds = futures::future::join_all(tokens.iter().map(|t| app.hold(t, schedule, 1))).await;
    let winner = holds
        .iter()
        .position(|r| r.status() == StatusCode::CREATED)
        .unwrap();
    let reservation = app.held(&tokens[winner], schedule, 2).await;
    let poor = app.held(&tokens[(winner + 1) % 6], schedule, 3).await;
    assert_eq!(
        app.charge(&tokens[winner], 5_000, "c1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.pay(&tokens[winner], reservation, "p1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.pay(&tokens[winner], reservation, "p1").await.status(),
        StatusCode::CREATED,
        "a replay answers as the first time"
    );
    assert_eq!(
        app.pay(&tokens[winner], reservation, "p2").await.status(),
        StatusCode::CONFLICT
    );
    let short = app.pay(&tokens[(winner + 1) % 6], poor, "p3").await;
    assert!(short.status().is_client_error());

    let text = scrape(&app).await;
    let holds_of = |outcome: &str| {
        value(
            &text,
            &format!("boxoffice_holds_total{{outcome=\"{outcome}\"}}"),
        )
    };
    let payments_of = |outcome: &str| {
        value(
            &text,
            &format!("boxoffice_payments_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(holds_of("held"), 3);
    assert_eq!(holds_of("seat_taken"), 5);
    assert_eq!(holds_of("error"), 0);
    assert_eq!(payments_of("paid"), 1);
    assert_eq!(payments_of("replayed"), 1);
    assert_eq!(payments_of("already_paid"), 1);
    assert_eq!(payments_of("insufficient_points"), 1);
    assert_eq!(payments_of("error"), 0);
    assert_eq!(payments_of("unavailable"), 0);
    assert_eq!(
        value(
            &text,
            "boxoffice_http_requests_total{method=\"POST\",route=\"/v1/reservations\",status=\"409\"}"
        ),
        5
    );
    assert_eq!(value(&text, "boxoffice_points_spent_total"), 1_000);
    assert_eq!(
        value(
            &text,
            "boxoffice_seat_lock_attempts_total{result=\"contended\"}"
        ) + value(
            &text,
            "boxoffice_seat_lock_attempts_total{result=\"acquired\"}"
        ),
        8
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("boxoffice_http_requests_total") && l.contains("status=\"5")),
        "no 5xx: {text}"
    );
}

/// One user's whole visit, plus the kinds of noise a crowd brings: a lost race, an
/// unknown path with an id in it, a forged token.
async fn visit(app: &TestApp, concert: u64, schedule: u64, user: &str, seat: i64) {
    let token = app.token(concert, user).await;
    let reservation = app.held(&token, schedule, seat).await;
    assert_eq!(
        app.hold(&token, schedule, seat).await.status(),
        StatusCode::CONFLICT
    );
    app.get(&format!("/v1/reservations/{reservation}"), Some(&token))
        .await;
    app.charge(&token, 1_000, &format!("charge-{user}")).await;
    app.pay(&token, reservation, &format!("pay-{user}")).await;
    app.get(&format!("/v1/no-such-thing/{user}"), None).await;
    app.get(
        "/v1/queue/tokens/current",
        Some(&format!("{concert}.{user}")),
    )
    .await;
}

#[tokio::test]
async fn series_do_not_grow_with_users() {
    let app = TestApp::spawn().await;
    let (concert, schedules) = app.create_concert(&[40], 1_000).await;
    // A scrape counts itself only once answered: let the next ones see it.
    scrape(&app).await;
    for i in 0..3 {
        visit(&app, concert, schedules[0], &format!("early-{i}"), i + 1).await;
    }
    let before = series(&scrape(&app).await);
    for i in 3..30 {
        visit(&app, concert, schedules[0], &format!("later-{i}"), i + 1).await;
    }
    let after = series(&scrape(&app).await);
    assert_eq!(
        after.difference(&before).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "27 more users added series"
    );
    assert_eq!(before.len(), after.len());
}
