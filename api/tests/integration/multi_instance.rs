//! Three instances of one deployment (same MySQL, Redis and Kafka, three ports) and a
//! booking rush spread across them: the line is first come, first served whichever
//! instance a user reached, everyone waiting on any instance is let in until the last
//! seat is sold and then told so, no seat is sold twice, nothing is paid twice, and
//! every event is published once.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::broker::Broker;
use crate::helpers::{TestApp, until};

const USERS: usize = 60;
const SEATS: u32 = 20;
const PRICE: u64 = 100;

/// What one user saw.
struct Outcome {
    ticket: usize,
    /// `None`: told the concert sold out before their turn came.
    active_until: Option<DateTime<Utc>>,
    bought: Option<i64>,
}

/// Waits on the socket for `admitted`; its `activeUntil` (admission time + a fixed
/// ACTIVE period, from Redis's clock: the order of admission). `None` if the socket
/// says every seat is sold first.
async fn until_admitted(app: &TestApp, token: &str) -> Option<DateTime<Utc>> {
    let url = format!("ws://{}/v1/queue/ws?token={token}", app.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("socket");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("admitted within 30 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).expect("JSON");
            if message["type"] == "admitted" {
                return Some(
                    message["activeUntil"]
                        .as_str()
                        .expect("activeUntil")
                        .parse()
                        .expect("time"),
                );
            }
            if message["type"] == "soldOut" {
                return None;
            }
        }
    }
}

/// Once admitted: try free seats until one is won (or none is left), pay it, and try
/// to pay it again under a new key. Leaves the line if no seat is won.
async fn rush(app: &TestApp, token: &str, schedule: u64, user: usize) -> Option<i64> {
    let start = user % SEATS as usize;
    for offset in 0..SEATS as usize {
        let seat = ((start + offset) % SEATS as usize) as i64 + 1;
        let res = app.hold(token, schedule, seat).await;
        match res.status() {
            StatusCode::CREATED => {
                let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
                let charged = app.charge(token, PRICE as i64, &format!("c-{user}")).await;
                assert_eq!(charged.status(), StatusCode::CREATED);
                let paid = app.pay(token, id, &format!("p-{user}")).await;
                assert_eq!(
                    paid.status(),
                    StatusCode::CREATED,
                    "user {user} pays seat {seat}"
                );
                let again = app.pay(token, id, &format!("p2-{user}")).await;
                assert_eq!(
                    again.status(),
                    StatusCode::CONFLICT,
                    "paying twice is refused"
                );
                return Some(seat);
            }
            StatusCode::CONFLICT => {}
            other => panic!("user {user}, seat {seat}: {other}"),
        }
    }
    let left = app
        .http
        .delete(app.url("/v1/queue/tokens/current"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(left.status().is_success());
    None
}

/// Everyone waiting, on every instance, was let in, in ticket order, until the last
/// seat sold; the rest were told so rather than left waiting.
fn assert_line_order(outcomes: &[Outcome]) {
    assert_eq!(outcomes.len(), USERS);
    let admitted = outcomes
        .iter()
        .take_while(|o| o.active_until.is_some())
        .count();
    assert!(
        outcomes[admitted..]
            .iter()
            .all(|o| o.active_until.is_none()),
        "those admitted are the first tickets"
    );
    assert!(admitted >= SEATS as usize);
    for pair in outcomes[..admitted].windows(2) {
        assert!(
            pair[0].active_until <= pair[1].active_until,
            "ticket {} admitted after ticket {}",
            pair[0].ticket,
            pair[1].ticket
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rush_across_three_instances_keeps_every_rule() {
    let broker = Broker::start().await;
    let topic = format!("boxoffice.test.{}", uuid::Uuid::now_v7().simple());
    let brokers = broker.bootstrap();
    // Ten at a time, twenty a second: a real line, with everyone's turn coming.
    let first = TestApp::spawn_with(|s| {
        s.queue_capacity = 10;
        s.queue_admit_rate = 20;
        s.outbox_relay = true;
        s.kafka_brokers = brokers;
        s.kafka_topic = topic.clone();
    })
    .await;
    let instances = [
        first.spawn_peer(|_| {}).await,
        first.spawn_peer(|_| {}).await,
    ];
    let instances: Vec<&TestApp> = std::iter::once(&first).chain(instances.iter()).collect();
    let (concert, schedules) = first.create_concert(&[SEATS], PRICE).await;
    let schedule = schedules[0];

    // Tickets in a known order, user i on instance i % 3.
    let mut tokens = Vec::new();
    for user in 0..USERS {
        let app = instances[user % 3];
        tokens.push(app.waiting_token(concert, &format!("rush-{user}")).await);
    }
    let outcomes = join_all(tokens.iter().enumerate().map(|(user, token)| {
        let app = instances[user % 3];
        async move {
            let active_until = until_admitted(app, token).await;
            let bought = match active_until {
                Some(_) => rush(app, token, schedule, user).await,
                None => None,
            };
            Outcome {
                ticket: user,
                active_until,
                bought,
            }
        }
    }))
    .await;

    assert_line_order(&outcomes);
    // Every seat sold once, to one of them; nothing paid twice.
    let sold: Vec<i64> = outcomes.iter().filter_map(|o| o.bought).collect();
    assert_eq!(sold.len(), SEATS as usize, "every seat sold");
    assert_eq!(
        sold.iter().collect::<HashSet<_>>().len(),
        sold.len(),
        "no seat sold twice"
    );
    assert_eq!(
        first.scalar("SELECT COUNT(*) FROM payments").await,
        i64::from(SEATS)
    );
    assert_eq!(
        first
            .scalar("SELECT COUNT(*) FROM seats WHERE status = 'SOLD'")
            .await,
        i64::from(SEATS)
    );
    assert_eq!(
        first
            .scalar("SELECT COUNT(*) FROM wallets w WHERE w.balance <> (SELECT SUM(amount) FROM point_ledger l WHERE l.user_id = w.user_id)")
            .await,
        0,
        "every wallet equals its ledger"
    );

    // One relay among the three published every event once.
    until("the outbox drains", Duration::from_secs(30), async || {
        first
            .scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .await
            == 0
    })
    .await;
    let committed = first.scalar("SELECT COUNT(*) FROM outbox").await;
    let events = broker
        .read_until(&topic, |events| events.len() as i64 >= committed)
        .await;
    let ids: HashSet<String> = events.iter().map(|(_, e)| e["id"].to_string()).collect();
    assert_eq!(
        ids.len() as i64,
        committed,
        "each committed event on the topic"
    );
    assert_eq!(events.len() as i64, committed, "and only once");
}
