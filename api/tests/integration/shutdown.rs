//! SIGTERM (what Kubernetes and `docker stop` send) while requests are in flight:
//! each of them gets its answer, every waiting-room socket is told at once to
//! reconnect (close code 1012), new connections are refused, the process exits
//! cleanly, and every event the requests committed reaches Kafka.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::join_all;
use infra::testing::diesel;
use infra::testing::diesel_async::RunQueryDsl as _;
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::broker::{Broker, free_port};
use crate::helpers::{TestApp, until};
use crate::processes::process;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The close code the server ends `socket` with, within `within`.
async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        if let Ok(Message::Close(frame)) = frame {
            return frame.map(|f| f.code.into());
        }
    }
}

// One story, told in order: prepare, block, SIGTERM, check, release, check.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_requests_in_flight_finish_and_tells_sockets_to_reconnect() {
    const PAYERS: usize = 12;
    const WAITERS: usize = 6;
    let broker = Broker::start().await;
    let topic = format!("boxoffice.test.{}", uuid::Uuid::now_v7().simple());
    // This in-process instance only prepares users and holds; the process under test
    // is a real `boxoffice serve` (relaying to the broker) on a port of its own.
    let app = TestApp::spawn_with(|s| s.kafka_topic.clone_from(&topic)).await;
    let (concert, schedules) = app.create_concert(&[PAYERS as u32], 100).await;
    let port = free_port();
    let mut server = process(&app, "serve", port, &broker.bootstrap());
    let remote = app.at(SocketAddr::from(([127, 0, 0, 1], port)));
    until(
        "the process is ready",
        Duration::from_secs(20),
        async || {
            let ready = remote.http.get(remote.url("/health/ready")).send().await;
            ready.is_ok_and(|r| r.status() == StatusCode::OK)
        },
    )
    .await;

    // Payers: admitted, a seat held, points charged. Waiters: sockets, nothing else.
    let mut payers = Vec::new();
    for i in 0..PAYERS {
        let token = app.token(concert, &format!("payer-{i}")).await;
        let reservation = app.held(&token, schedules[0], i as i64 + 1).await;
        assert_eq!(
            app.charge(&token, 100, &format!("c-{i}")).await.status(),
            StatusCode::CREATED
        );
        payers.push((token, reservation));
    }
    let mut sockets = Vec::new();
    for i in 0..WAITERS {
        let token = app.waiting_token(concert, &format!("waiter-{i}")).await;
        let url = format!("ws://127.0.0.1:{port}/v1/queue/ws?token={token}");
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("socket connects");
        let first = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        assert!(
            matches!(first, Ok(Some(Ok(Message::Text(_))))),
            "socket {i} hears its standing"
        );
        sockets.push(socket);
    }

    // Hold every payer's wallet row, so each payment blocks inside the server, in its
    // transaction, until the test lets go.
    let mut blocker = app.db().await;
    diesel::sql_query("START TRANSACTION")
        .execute(&mut blocker)
        .await
        .unwrap();
    diesel::sql_query("SELECT user_id FROM wallets WHERE user_id LIKE 'payer-%' FOR UPDATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let payments = payers.iter().enumerate().map(|(i, (token, reservation))| {
        let remote = remote.at(remote.addr);
        let (token, reservation) = (token.clone(), *reservation);
        tokio::spawn(async move { remote.pay(&token, reservation, &format!("p-{i}")).await })
    });
    let payments: Vec<_> = payments.collect();
    until(
        "every payment waits on its wallet row",
        Duration::from_secs(20),
        async || app.statements_like("%`wallets`%FOR UPDATE").await >= PAYERS as i64,
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM payments").await,
        0,
        "the payments wait"
    );

    server.terminate();

    // At once, while the payments are still blocked: sockets hear 1012, and the port
    // takes no new connection.
    let codes = join_all(
        sockets
            .iter_mut()
            .map(|s| close_code(s, Duration::from_secs(3))),
    )
    .await;
    assert_eq!(
        codes,
        vec![Some(1012); WAITERS],
        "every socket is told to reconnect"
    );
    until(
        "the listener is closed",
        Duration::from_secs(3),
        async || TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err(),
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM payments").await,
        0,
        "the payments are still in flight"
    );

    // Let go: every payment in flight completes, then the process exits by itself.
    diesel::sql_query("COMMIT")
        .execute(&mut blocker)
        .await
        .unwrap();
    for (i, paid) in join_all(payments).await.into_iter().enumerate() {
        let paid = paid.expect("task");
        assert_eq!(
            paid.status(),
            StatusCode::CREATED,
            "payment {i} in flight at SIGTERM"
        );
    }
    let status = server.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "a clean exit: {status}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM payments").await,
        PAYERS as i64
    );

    // Whatever the stopped process had not relayed, the next instance does: every
    // event committed is on the topic.
    let next = process(&app, "serve", free_port(), &broker.bootstrap());
    until(
        "the outbox is drained",
        Duration::from_secs(30),
        async || {
            app.scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .await
                == 0
        },
    )
    .await;
    let committed = app.scalar("SELECT COUNT(*) FROM outbox").await;
    let events = broker
        .read_until(&topic, |events| {
            let ids: std::collections::HashSet<_> =
                events.iter().map(|(_, e)| e["id"].to_string()).collect();
            ids.len() as i64 >= committed
        })
        .await;
    let paid = events
        .iter()
        .filter(|(_, e)| e["type"] == "OrderPaid")
        .count();
    assert_eq!(paid, PAYERS, "one OrderPaid per payment in flight");
    drop(next);
}
