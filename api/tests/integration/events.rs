//! Events through the transactional outbox to a real broker (tansu) and into the
//! sales projection: nothing lost, nothing counted twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use infra::testing::{diesel, diesel_async};
use reqwest::StatusCode;
use serde_json::Value;

use crate::broker::{Broker, free_port};
use crate::helpers::{ADMIN_KEY, TestApp};
use crate::processes::{process, sigkill};

/// An app that relays to `broker`, on a topic of its own.
async fn relaying_app(broker: &Broker) -> TestApp {
    let topic = format!("boxoffice.test.{}", uuid::Uuid::now_v7().simple());
    let brokers = broker.bootstrap();
    TestApp::spawn_with(move |s| {
        s.outbox_relay = true;
        s.kafka_brokers = brokers;
        s.kafka_topic = topic;
        s.kafka_consumer_group = format!("sales-{}", uuid::Uuid::now_v7().simple());
    })
    .await
}

/// Joins, holds `seat`, tops up and pays: one sale, four events.
async fn buy(app: &TestApp, concert: u64, schedule: u64, user: &str, seat: i64) {
    let token = app.token(concert, user).await;
    let reservation = app.held(&token, schedule, seat).await;
    let charged = app.charge(&token, 1_000, &format!("c-{user}")).await;
    assert_eq!(charged.status(), StatusCode::CREATED);
    let paid = app.pay(&token, reservation, &format!("p-{user}")).await;
    assert_eq!(paid.status(), StatusCode::CREATED, "{user} pays");
}

async fn buy_many(
    app: &TestApp,
    concert: u64,
    schedule: u64,
    prefix: &str,
    seats: std::ops::Range<i64>,
) {
    futures::stream::iter(seats)
        .for_each_concurrent(32, |seat| async move {
            buy(app, concert, schedule, &format!("{prefix}-{seat}"), seat).await;
        })
        .await;
}

async fn until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {secs} s");
}

async fn unpublished(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .await
}

async fn sales(app: &TestApp, concert: u64) -> Value {
    let res = app
        .http
        .get(app.url(&format!("/v1/admin/concerts/{concert}/sales")))
        .header("X-Api-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The projection must say exactly what MySQL says.
async fn assert_projection_matches_mysql(app: &TestApp, concert: u64) {
    let s = sales(app, concert).await;
    let sold = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id WHERE r.concert_id = {concert}"
        ))
        .await;
    let revenue = app
        .scalar(&format!(
            "SELECT COALESCE(SUM(p.amount), 0) FROM payments p JOIN reservations r ON r.id = p.reservation_id WHERE r.concert_id = {concert}"
        ))
        .await;
    let holds = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM reservations WHERE concert_id = {concert}"
        ))
        .await;
    assert_eq!(s["seatsSold"], sold, "{s}");
    assert_eq!(s["revenue"], revenue, "{s}");
    assert_eq!(s["holds"], holds, "{s}");
}

/// Runs the projection consumer of `app`'s deployment in this process.
fn consume_in_background(app: &TestApp) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let svc = app.svc.clone();
    tokio::spawn(async move {
        infra::service::sales::consume(svc, async {
            let _ = stopped.await;
        })
        .await
        .expect("consumer runs");
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_payments_are_published_once_each_in_order() {
    let broker = Broker::start().await;
    let app = relaying_app(&broker).await;
    let (concert, schedules) = app.create_concert(&[1_000], 1_000).await;
    let stop = consume_in_background(&app);
    buy_many(&app, concert, schedules[0], "fan", 1..1_001).await;
    until("the outbox drains", 120, async || {
        unpublished(&app).await == 0
    })
    .await;

    let topic = app.svc.settings.kafka_topic.clone();
    let paid_ids = |events: &[(String, Value)]| {
        events
            .iter()
            .filter(|(_, e)| e["type"] == "OrderPaid")
            .map(|(_, e)| e["id"].as_str().unwrap().to_owned())
            .collect::<HashSet<_>>()
    };
    let events = broker
        .read_until(&topic, |e| paid_ids(e).len() >= 1_000)
        .await;
    assert_eq!(paid_ids(&events).len(), 1_000, "each payment published");
    let paid_in_mysql = app.scalar("SELECT COUNT(*) FROM payments").await;
    assert_eq!(paid_in_mysql, 1_000);
    // Per order (the key), the hold comes before the payment.
    let mut seen: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, event) in &events {
        seen.entry(key)
            .or_default()
            .push(event["type"].as_str().unwrap());
    }
    for (key, types) in &seen {
        if key.starts_with("order-") {
            assert_eq!(types.first(), Some(&"OrderHeld"), "{key}: {types:?}");
        }
    }

    until("the projection catches up", 120, async || {
        sales(&app, concert).await["seatsSold"] == 1_000
    })
    .await;
    assert_projection_matches_mysql(&app, concert).await;
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_loses_nothing() {
    let mut broker = Broker::start().await;
    let app = relaying_app(&broker).await;
    let (concert, schedules) = app.create_concert(&[400], 1_000).await;
    let stop = consume_in_background(&app);
    buy_many(&app, concert, schedules[0], "before", 1..21).await;
    until("the outbox drains", 30, async || {
        unpublished(&app).await == 0
    })
    .await;

    broker.stop();
    // Sales go on for 30 s without a broker; the outbox keeps every event.
    let started = tokio::time::Instant::now();
    let mut seat = 21;
    while started.elapsed() < Duration::from_secs(30) {
        buy_many(&app, concert, schedules[0], "during", seat..seat + 5).await;
        seat += 5;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ready: Value = app.get("/health/ready", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "up", "the app serves without Kafka");
    assert_eq!(ready["relay"], "degraded", "{ready}");
    assert!(unpublished(&app).await > 0);

    broker.resume().await;
    until(
        "the outbox drains after the broker is back",
        60,
        async || unpublished(&app).await == 0,
    )
    .await;
    let sold = seat - 1;
    until("the projection catches up", 120, async || {
        sales(&app, concert).await["seatsSold"] == sold
    })
    .await;
    assert_projection_matches_mysql(&app, concert).await;
    let _ = stop.send(());
}

/// A first `./dev up`: the API and the sales consumer start before there is any
/// broker (it is still being built); sales go on, and once a broker is there the
/// projection learns of every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_broker_yet_the_app_serves_and_the_projection_catches_up_when_one_comes() {
    let mut broker = Broker::start().await;
    broker.stop();
    let app = relaying_app(&broker).await;
    let stop = consume_in_background(&app);
    let (concert, schedules) = app.create_concert(&[10], 1_000).await;
    buy_many(&app, concert, schedules[0], "early", 1..6).await;
    let ready: Value = app.get("/health/ready", None).await.json().await.unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["relay"].as_str()),
        (Some("up"), Some("degraded")),
        "{ready}"
    );
    assert!(unpublished(&app).await > 0);
    assert_eq!(sales(&app, concert).await["seatsSold"], 0);

    broker.resume().await;
    until("the projection catches up", 120, async || {
        sales(&app, concert).await["seatsSold"] == 5
    })
    .await;
    assert_eq!(unpublished(&app).await, 0);
    assert_projection_matches_mysql(&app, concert).await;
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_committed_before_a_crash_is_published_after_restart() {
    let mut broker = Broker::start().await;
    // The test's own instance only creates the data; it does not relay.
    let app = TestApp::spawn_with(|s| {
        s.kafka_topic = format!("boxoffice.test.{}", uuid::Uuid::now_v7().simple());
    })
    .await;
    let (concert, schedules) = app.create_concert(&[5], 1_000).await;
    broker.stop();
    // An instance that relays, while the broker is away: the payment commits, its
    // event cannot be published; then the process is killed outright.
    let port = free_port();
    let doomed = process(&app, "serve", port, &broker.bootstrap());
    let peer = app.at(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    until("the process serves", 30, async || {
        peer.http.get(peer.url("/health/live")).send().await.is_ok()
    })
    .await;
    buy(&peer, concert, schedules[0], "crash", 1).await;
    sigkill(doomed);
    let payment_events =
        "SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderPaid' AND published_at IS NULL";
    assert_eq!(
        app.scalar(payment_events).await,
        1,
        "committed, not published"
    );

    broker.resume().await;
    let revived = process(&app, "serve", port, &broker.bootstrap());
    until("the event is published after the restart", 60, async || {
        app.scalar(payment_events).await == 0
    })
    .await;
    let topic = app.svc.settings.kafka_topic.clone();
    let events = broker
        .read_until(&topic, |e| e.iter().any(|(_, e)| e["type"] == "OrderPaid"))
        .await;
    assert!(
        events
            .iter()
            .any(|(k, e)| e["type"] == "OrderPaid" && k.starts_with("order-"))
    );
    sigkill(revived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_stream_counts_nothing_twice() {
    let broker = Broker::start().await;
    let app = relaying_app(&broker).await;
    let (concert, schedules) = app.create_concert(&[300], 1_000).await;
    buy_many(&app, concert, schedules[0], "fan", 1..301).await;
    until("the outbox drains", 120, async || {
        unpublished(&app).await == 0
    })
    .await;

    let port = free_port();
    let consumer = process(&app, "consume", port, &broker.bootstrap());
    until("the consumer is mid-stream", 120, async || {
        sales(&app, concert).await["holds"].as_u64().unwrap_or(0) >= 50
    })
    .await;
    // Killed before it commits its offsets: the next one is handed events again.
    sigkill(consumer);
    let before = sales(&app, concert).await;
    assert!(
        before["seatsSold"].as_u64().unwrap() < 300,
        "stopped mid-stream: {before}"
    );

    let consumer = process(&app, "consume", port, &broker.bootstrap());
    until("the projection catches up", 120, async || {
        sales(&app, concert).await["seatsSold"] == 300
    })
    .await;
    // Redelivered duplicates must change nothing: wait until the consumer has applied
    // every event on the topic, duplicates included, then compare.
    let (topic, group) = (
        &app.svc.settings.kafka_topic,
        &app.svc.settings.kafka_consumer_group,
    );
    until(
        "the consumer commits the end of the topic",
        60,
        async || broker.caught_up(topic, group).await,
    )
    .await;
    assert_projection_matches_mysql(&app, concert).await;
    let applied = app.scalar("SELECT COUNT(*) FROM consumed_events").await;
    let written = app.scalar("SELECT COUNT(*) FROM outbox").await;
    assert_eq!(applied, written, "every event applied exactly once");
    sigkill(consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_relay_one_at_a_time_and_publish_each_event_once() {
    let broker = Broker::start().await;
    let a = relaying_app(&broker).await;
    let b = a.spawn_peer(|_| {}).await;
    let (concert, schedules) = a.create_concert(&[100], 1_000).await;
    let (half, rest) = (1..51, 51..101);
    tokio::join!(
        buy_many(&a, concert, schedules[0], "a", half),
        buy_many(&b, concert, schedules[0], "b", rest),
    );
    until("the outbox drains", 120, async || {
        unpublished(&a).await == 0
    })
    .await;
    let leaders = a.svc.metrics.outbox_relay_leader.get() + b.svc.metrics.outbox_relay_leader.get();
    assert_eq!(leaders, 1, "exactly one instance relays");

    let written = usize::try_from(a.scalar("SELECT COUNT(*) FROM outbox").await).unwrap();
    let topic = a.svc.settings.kafka_topic.clone();
    // The outbox is drained, so the topic holds all it ever will: every copy of every
    // event is in it.
    let events = broker.read_all(&topic).await;
    let ids: HashSet<&str> = events
        .iter()
        .map(|(_, e)| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), written);
    assert_eq!(events.len(), written, "each event published once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_relay_waits_on_one_connection_and_takes_over_on_it() {
    use diesel_async::{AsyncMysqlConnection, RunQueryDsl as _};
    use infra::service::relay::{LEADER_LOCK_NAME_SQL, RelayState};
    use secrecy::ExposeSecret as _;

    #[derive(diesel::QueryableByName)]
    struct Got {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
        got: Option<i32>,
    }
    // Another session (the test's own, straight to MariaDB, in the deployment's
    // database) is the relay.
    let deployment = TestApp::spawn().await;
    let mut leader: AsyncMysqlConnection = deployment.db().await;
    let locked: Got = diesel::sql_query(format!(
        "SELECT GET_LOCK({LEADER_LOCK_NAME_SQL}, 30) AS got"
    ))
    .get_result(&mut leader)
    .await
    .unwrap();
    assert_eq!(locked.got, Some(1));

    // The instance reaches MariaDB through a proxy that counts its connections.
    let broker = Broker::start().await;
    let proxy = crate::mysql_loss::MysqlProxy::start().await;
    let topic = format!("boxoffice.test.{}", uuid::Uuid::now_v7().simple());
    let app = deployment
        .spawn_peer(|s| {
            s.database_url = proxy.url_for(s.database_url.expose_secret()).into();
            s.outbox_relay = true;
            s.kafka_brokers = broker.bootstrap();
            s.kafka_topic = topic;
        })
        .await;
    until("the instance stands by", 10, async || {
        app.svc.relay.get() == RelayState::Standby
    })
    .await;

    // Several of its once-a-second lock attempts: a fixed window, since what is
    // measured is that nothing happens in it.
    let before = proxy.accepted();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let opened = proxy.accepted() - before;
    assert_eq!(app.svc.relay.get(), RelayState::Standby);
    assert!(
        opened <= 1,
        "a standby opened {opened} MySQL connections in 4.5 s"
    );

    // The lock is free: the standby takes over on the connection it kept.
    let before = proxy.accepted();
    diesel::sql_query(format!("SELECT RELEASE_LOCK({LEADER_LOCK_NAME_SQL})"))
        .execute(&mut leader)
        .await
        .unwrap();
    until("the standby takes over", 10, async || {
        app.svc.relay.get() == RelayState::Up
    })
    .await;
    assert_eq!(app.svc.metrics.outbox_relay_leader.get(), 1);
    assert!(
        proxy.accepted() - before <= 1,
        "taking over needs no new connection"
    );
}

/// Named locks belong to the MySQL server, not to a database: two deployments (or
/// test runs) on one server each relay their own outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_deployments_on_one_mysql_server_each_relay_their_own_events() {
    use infra::service::relay::RelayState;

    let broker = Broker::start().await;
    let first = relaying_app(&broker).await;
    let second = relaying_app(&broker).await;
    for app in [&first, &second] {
        let (concert, schedules) = app.create_concert(&[5], 1_000).await;
        buy(app, concert, schedules[0], "fan", 1).await;
    }
    for app in [&first, &second] {
        until("each deployment relays", 30, async || {
            app.svc.relay.get() == RelayState::Up && unpublished(app).await == 0
        })
        .await;
    }
}

/// The projection consumer retries an event whose transaction failed until it applies;
/// a shutdown during that (MySQL gone) still ends it promptly, storing no offset for
/// the unapplied event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_stuck_on_a_mysql_outage_still_shuts_down() {
    let broker = Broker::start().await;
    let app = relaying_app(&broker).await;
    let proxy = crate::mysql_loss::MysqlProxy::start().await;
    let mut settings = (*app.svc.settings).clone();
    let direct = secrecy::ExposeSecret::expose_secret(&settings.database_url).to_owned();
    settings.database_url = proxy.url_for(&direct).into();
    let svc = infra::Services::new(settings, infra::metrics::Metrics::new()).unwrap();
    proxy.cut();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(infra::service::sales::consume(svc, async {
        let _ = stopped.await;
    }));
    let (concert, schedules) = app.create_concert(&[1], 1_000).await;
    buy(&app, concert, schedules[0], "fan", 1).await;
    // An event arrived and its transaction is being retried: the consumer keeps
    // asking the (cut) proxy for connections.
    until("the consumer retries against the outage", 60, async || {
        proxy.accepted() >= 3
    })
    .await;
    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), consumer).await;
    assert!(
        ended.is_ok(),
        "the consumer ignored the shutdown while retrying"
    );
    ended.unwrap().unwrap().unwrap();
    assert_eq!(
        sales(&app, concert).await["seatsSold"],
        0,
        "nothing was applied"
    );
}
