//! The outbox relay: publishes committed events to Kafka in commit order and marks
//! them published.
//!
//! One instance relays at a time: the one holding MySQL's named lock
//! `boxoffice_outbox_relay.<16 hex digits of SHA-256 of the database's name>` on its
//! relay connection (named locks belong to the server, so the database's name is in
//! it: deployments sharing a server relay side by side). MySQL frees the lock when that
//! connection or its process dies, and another instance takes over within a second;
//! so several instances never race each other into publishing the same rows, and a
//! reservation's events keep their order. A standby asks for the lock once a second
//! on one connection it keeps, so waiting opens no connections (MariaDB would log
//! each one dropped as an aborted connection). Delivery is at least once: a row is marked
//! only after Kafka acknowledged it, so a crash in between publishes it again, and
//! consumers dedupe by event id.
//!
//! The relay wakes when a use case of this instance commits events ([`Relay::wake`]),
//! at most once per [`BATCH_WINDOW`] so that a burst of commits shares one round (and
//! one commit marking them published); events committed by other instances are found
//! by polling every `outbox_poll_ms`. (Polling MySQL every 20 ms instead tripled the
//! P95 of every request on a 0.5 vCPU instance at light load.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use diesel::sql_types::{Integer, Nullable};
use diesel_async::RunQueryDsl as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use chrono::{DateTime, Utc};

use super::Services;
use crate::db::DbConn;
use crate::db::outbox::{self, Unsent};
use crate::kafka;

/// The leader lock of the connection's database, as SQL. Hashed to stay within the
/// 64 characters MySQL allows a lock name.
pub const LEADER_LOCK_NAME_SQL: &str =
    "CONCAT('boxoffice_outbox_relay.', LEFT(SHA2(DATABASE(), 256), 16))";
/// How often a standby instance tries to become the relay.
const STANDBY_POLL: Duration = Duration::from_secs(1);
/// The shortest time between two rounds started by the bell.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What `/health/ready` says about the relay of this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RelayState {
    /// Not run here (`outbox_relay = false`).
    Off = 0,
    /// Another instance relays; this one takes over if it goes.
    Standby = 1,
    /// Publishing.
    Up = 2,
    /// Failing to reach Kafka (or MySQL); retrying with backoff.
    Degraded = 3,
}

impl RelayState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Standby => "standby",
            Self::Up => "up",
            Self::Degraded => "degraded",
        }
    }
}

/// What the relay task shares: its state, for the readiness probe, and a bell the
/// use cases ring after committing events.
#[derive(Debug, Default, Clone)]
pub struct Relay {
    state: Arc<AtomicU8>,
    bell: Arc<Notify>,
}

impl Relay {
    /// Tells the relay there is something new to publish. Call after the commit.
    pub fn wake(&self) {
        // A permit is kept if the relay is busy, so it looks again right after.
        self.bell.notify_one();
    }

    pub fn get(&self) -> RelayState {
        match AtomicU8::load(&self.state, Ordering::Relaxed) {
            1 => RelayState::Standby,
            2 => RelayState::Up,
            3 => RelayState::Degraded,
            _ => RelayState::Off,
        }
    }

    fn set(&self, state: RelayState) {
        AtomicU8::store(&self.state, state as u8, Ordering::Relaxed);
    }
}

/// The relay's own connection (not a pooled one: the lock lives as long as the
/// session, and a connection dropped on error must take the lock with it), kept
/// while leading and while standing by.
struct Session {
    conn: DbConn,
    leading: bool,
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Nullable<Integer>)]
    got: Option<i32>,
}

enum Round {
    Published(usize),
    Standby,
}

/// Relays until `shutdown` resolves. A round in progress is finished first, so a
/// clean stop never leaves an acknowledged event unmarked.
pub async fn run(svc: Services, shutdown: impl Future<Output = ()>) {
    for result in ["ok", "error"] {
        svc.metrics
            .kafka_publishes
            .with_label_values(&[&svc.settings.kafka_topic, result]);
    }
    tokio::pin!(shutdown);
    // Not publishing until a first round has: the first may wait a minute for a
    // broker that is not there yet (`./dev up` builds one in the background).
    svc.relay.set(RelayState::Degraded);
    let mut producer = None;
    let mut session = None;
    let mut topic_ready = false;
    let mut failures = 0u32;
    loop {
        let round_started = tokio::time::Instant::now();
        let outcome = match producer.as_ref() {
            Some(p) => round(&svc, p, &mut session, &mut topic_ready).await,
            None => match kafka::producer(&svc.settings) {
                Ok(p) => round(&svc, producer.insert(p), &mut session, &mut topic_ready).await,
                Err(e) => Err(e),
            },
        };
        // Only an idle leader answers the bell: a standby cannot publish, and a
        // failing one backs off.
        let idle = matches!(outcome, Ok(Round::Published(0)));
        let pause = match outcome {
            Ok(Round::Published(n)) => {
                failures = 0;
                svc.relay.set(RelayState::Up);
                if n == 0 {
                    Duration::from_millis(svc.settings.outbox_poll_ms)
                } else {
                    Duration::ZERO
                }
            }
            Ok(Round::Standby) => {
                failures = 0;
                svc.relay.set(RelayState::Standby);
                STANDBY_POLL
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                svc.relay.set(RelayState::Degraded);
                tracing::warn!(
                    error = format!("{e:#}"),
                    failures,
                    "outbox relay round failed"
                );
                // A fresh producer after a failure: an idempotent producer whose sends
                // timed out can be left with sequence numbers a restarted broker
                // refuses forever; a new one starts clean (and a retried event is a
                // duplicate at worst, which consumers drop by id).
                producer = None;
                backoff(failures)
            }
        };
        let leading = session.as_ref().is_some_and(|s: &Session| s.leading);
        svc.metrics.outbox_relay_leader.set(i64::from(leading));
        let rung = tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(pause) => false,
            () = svc.relay.bell.notified(), if idle => true,
        };
        if rung {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(round_started + BATCH_WINDOW) => {}
            }
        }
    }
}

/// 100 ms, doubling, at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.min(6))
        .min(MAX_BACKOFF)
}

/// One round: become the relay if nobody is, then publish a batch. Any error drops
/// the session (and the lock with it): the next round starts over.
async fn round(
    svc: &Services,
    producer: &FutureProducer,
    session: &mut Option<Session>,
    topic_ready: &mut bool,
) -> anyhow::Result<Round> {
    let mut current = match session.take() {
        Some(current) => current,
        None => Session {
            conn: crate::db::connect(&svc.settings).await?,
            leading: false,
        },
    };
    if !current.leading {
        if !try_lock(&mut current.conn).await? {
            *session = Some(current);
            return Ok(Round::Standby);
        }
        tracing::info!("this instance now relays the outbox");
        current.leading = true;
    }
    let conn = &mut current.conn;
    if !*topic_ready {
        kafka::ensure_topic(&svc.settings).await?;
        *topic_ready = true;
    }
    // A MySQL error drops the connection, and the lock with it: start over.
    let batch = outbox::unsent(conn, svc.settings.outbox_batch_size.max(1)).await?;
    let published = publish(svc, producer, &batch).await;
    let ids: Vec<u64> = batch
        .iter()
        .take(published.delivered)
        .map(|e| e.id)
        .collect();
    if !ids.is_empty() {
        outbox::mark_published(conn, &ids, published.at).await?;
    }
    *session = Some(current);
    match published.failure {
        Some(e) => Err(e),
        None => Ok(Round::Published(ids.len())),
    }
}

/// Takes the relay lock on `conn` if no other session holds it; does not wait.
async fn try_lock(conn: &mut DbConn) -> anyhow::Result<bool> {
    let locked: Locked =
        diesel::sql_query(format!("SELECT GET_LOCK({LEADER_LOCK_NAME_SQL}, 0) AS got"))
            .get_result(conn)
            .await?;
    Ok(locked.got == Some(1))
}

struct Published {
    /// How many of the batch, from its start, Kafka acknowledged.
    delivered: usize,
    at: DateTime<Utc>,
    failure: Option<anyhow::Error>,
}

async fn publish(svc: &Services, producer: &FutureProducer, batch: &[Unsent]) -> Published {
    let topic = &svc.settings.kafka_topic;
    // Enqueued in commit order (each future enqueues on its first poll, and
    // `join_all` polls them in order); the idempotent producer keeps that order.
    let sends = batch
        .iter()
        .map(|event| producer.send(record(topic, event), kafka::DELIVERY_TIMEOUT));
    let results = futures::future::join_all(sends).await;
    let at = crate::now();
    // Only the acknowledged prefix counts: whatever follows a failure is sent again,
    // so a key's events never end up published out of order.
    let delivered = results.iter().take_while(|r| r.is_ok()).count();
    let m = &svc.metrics;
    for event in &batch[..delivered] {
        let lag = (at - crate::db::utc(event.occurred_at))
            .to_std()
            .unwrap_or_default();
        m.outbox_relay_lag.observe(lag.as_secs_f64());
    }
    m.kafka_publishes
        .with_label_values(&[topic, "ok"])
        .inc_by(delivered as u64);
    let failure = results
        .get(delivered)
        .and_then(|r| r.as_ref().err())
        .map(|(e, _)| {
            m.kafka_publishes.with_label_values(&[topic, "error"]).inc();
            anyhow::anyhow!(
                "Kafka did not take event {}: {e}",
                batch[delivered].event_id
            )
        });
    Published {
        delivered,
        at,
        failure,
    }
}

fn record<'a>(topic: &'a str, event: &'a Unsent) -> FutureRecord<'a, str, str> {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "event-id",
            value: Some(event.event_id.as_str()),
        })
        .insert(Header {
            key: "event-type",
            value: Some(event.event_type.as_str()),
        });
    FutureRecord::to(topic)
        .key(event.key.as_str())
        .payload(event.payload.as_str())
        .headers(headers)
}
