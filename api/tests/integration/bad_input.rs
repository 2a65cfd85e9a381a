use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_problems_never_500s() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let token = app.token(concert, "ann").await;
    let post = |path: &str, content_type: &str, body: &'static str| {
        app.http
            .post(app.url(path))
            .bearer_auth(&token)
            .header("Idempotency-Key", "k")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let json = "application/json";
    for (path, body) in [
        ("/v1/reservations", "{"),
        ("/v1/reservations", ""),
        ("/v1/reservations", "[]"),
        ("/v1/reservations", r#"{"scheduleId": "one", "seatNo": 1}"#),
        ("/v1/reservations", r#"{"scheduleId": -1, "seatNo": 1}"#),
        ("/v1/reservations", r#"{"scheduleId": 1, "seatNo": 1.5}"#),
        ("/v1/reservations", r#"{"seatNo": 1}"#),
        ("/v1/points/charges", r#"{"amount": "100"}"#),
        (
            "/v1/points/charges",
            r#"{"amount": 99999999999999999999999}"#,
        ),
        ("/v1/payments", r#"{"reservationId": null}"#),
        ("/v1/queue/tokens", r#"{"idToken": "x"}"#),
    ] {
        let res = post(path, json, body).await.unwrap();
        assert_problem(res, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    }
    assert_problem(
        post("/v1/reservations", "text/plain", "{}").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    assert_problem(
        app.get("/v1/schedules/abc/seats", None).await,
        StatusCode::BAD_REQUEST,
        "MALFORMED_REQUEST",
    )
    .await;
    assert_problem(
        app.get("/v1/reservations/-3", Some(&token)).await,
        StatusCode::BAD_REQUEST,
        "MALFORMED_REQUEST",
    )
    .await;
    assert_problem(
        app.get("/v1/points/history?limit=lots", Some(&token)).await,
        StatusCode::BAD_REQUEST,
        "MALFORMED_REQUEST",
    )
    .await;
    assert_problem(
        app.get("/v1/nowhere", None).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let put = app.http.put(app.url("/v1/concerts")).send().await.unwrap();
    assert_problem(put, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM reservations").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let big = format!(r#"{{"title": "{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let res = app
        .http
        .post(app.url("/v1/admin/concerts"))
        .header("X-Api-Key", crate::helpers::ADMIN_KEY)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;

    // Without a Content-Length the body is cut off at the limit and fails to parse.
    // The server answers before the client has sent everything, and closing a socket
    // with unread data resets it, so the client may see the reset instead of the 400:
    // either way the body was refused, and never with a 2xx or 5xx.
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let res = app
        .http
        .post(app.url("/v1/admin/concerts"))
        .header("X-Api-Key", crate::helpers::ADMIN_KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match res {
        Ok(res) => {
            assert_problem(res, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
        }
        Err(e) => assert!(e.is_request() && !e.is_timeout(), "{e:?}"),
    }
}

#[tokio::test]
async fn a_wrong_json_type_is_refused_not_converted() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let id_token = crate::issuer::default_key().0.token_for("ann");
    for (field, value) in ["false", "42", "null", "[\"ann\"]", "{}"]
        .into_iter()
        .flat_map(|v| [("userId", v), ("idToken", v)])
    {
        let res = app
            .http
            .post(app.url("/v1/queue/tokens"))
            .header("content-type", "application/json")
            .body(format!(
                "{{\"concertId\":{concert},\"idToken\":\"{id_token}\",\"{field}\":{value}}}"
            ))
            .send()
            .await
            .unwrap();
        assert_problem(res, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    }
}

#[tokio::test]
async fn a_wrong_method_says_what_is_allowed() {
    let app = TestApp::spawn().await;
    for (method, path, allowed) in [
        ("PUT", "/v1/reservations/7", "DELETE, GET"),
        ("DELETE", "/v1/payments", "POST"),
        ("POST", "/metrics", "GET"),
    ] {
        let res = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["allow"], allowed, "{method} {path}");
        assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").await;
    }
}
