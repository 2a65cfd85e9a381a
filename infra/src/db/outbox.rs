//! The transactional outbox: events are inserted in the transaction that makes
//! them true; the Kafka relay publishes them later.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::event::SCHEMA_VERSION;
use domain::{DomainEvent, EventEnvelope};

use super::schema::outbox;
use super::{DbConn, naive};

pub async fn append(
    conn: &mut DbConn,
    events: Vec<DomainEvent>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = events
        .into_iter()
        .map(|event| {
            let event_type = event.event_type();
            let key = event.key();
            let envelope = EventEnvelope {
                id: uuid::Uuid::now_v7().to_string(),
                version: SCHEMA_VERSION,
                occurred_at: now,
                event,
            };
            Ok((
                outbox::event_id.eq(envelope.id.clone()),
                outbox::event_type.eq(event_type),
                outbox::event_key.eq(key),
                outbox::payload.eq(serde_json::to_string(&envelope)?),
                outbox::occurred_at.eq(naive(now)),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    diesel::insert_into(outbox::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many events are written but not yet published, and when the oldest of them
/// happened.
pub async fn backlog(conn: &mut DbConn) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    let (count, oldest): (i64, Option<chrono::NaiveDateTime>) = outbox::table
        .filter(outbox::published_at.is_null())
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(outbox::occurred_at),
        ))
        .get_result(conn)
        .await?;
    Ok((count, oldest.map(super::utc)))
}

/// An event waiting for the relay.
#[derive(Debug, Clone, Queryable)]
pub struct Unsent {
    pub id: u64,
    pub event_id: String,
    pub event_type: String,
    pub key: String,
    pub payload: String,
    pub occurred_at: chrono::NaiveDateTime,
}

/// The oldest `limit` unpublished events, in commit order.
pub async fn unsent(conn: &mut DbConn, limit: u32) -> QueryResult<Vec<Unsent>> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .order(outbox::id)
        .limit(i64::from(limit))
        .select((
            outbox::id,
            outbox::event_id,
            outbox::event_type,
            outbox::event_key,
            outbox::payload,
            outbox::occurred_at,
        ))
        .load(conn)
        .await
}

pub async fn mark_published(
    conn: &mut DbConn,
    ids: &[u64],
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::published_at.eq(naive(now)))
        .execute(conn)
        .await
}
