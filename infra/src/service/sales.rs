//! The sales projection (`boxoffice consume`): reads the event stream in a consumer
//! group and keeps per-concert sales in MySQL for `GET /v1/concerts/{id}/sales`.
//!
//! Each event is applied in one transaction with the record of its id, and its
//! offset is stored for commit only after that transaction: a crash replays events
//! since the last commit, and the id record makes each replay a no-op.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::{ConcertId, DomainEvent, EventEnvelope, LookupError};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};

use super::Services;
use crate::db::sales::{self, ConcertSales, SalesDelta};
use crate::db::{self, catalog};
use crate::kafka;

/// What an event adds to its concert's sales, if it concerns a concert.
pub fn delta(event: &DomainEvent) -> Option<(ConcertId, SalesDelta)> {
    let none = SalesDelta::default();
    let n = |seats: &[domain::SeatNo]| seats.len() as u64;
    match event {
        DomainEvent::OrderHeld {
            concert_id, seats, ..
        } => Some((
            *concert_id,
            SalesDelta {
                holds: seats.len() as u64,
                ..none
            },
        )),
        DomainEvent::OrderReleased {
            concert_id, seats, ..
        } => Some((
            *concert_id,
            SalesDelta {
                releases: n(seats),
                ..none
            },
        )),
        DomainEvent::OrderExpired {
            concert_id, seats, ..
        } => Some((
            *concert_id,
            SalesDelta {
                expirations: n(seats),
                ..none
            },
        )),
        DomainEvent::OrderPaid {
            concert_id,
            seats,
            amount,
            ..
        } => Some((
            *concert_id,
            SalesDelta {
                seats_sold: n(seats),
                revenue: amount.0,
                ..none
            },
        )),
        DomainEvent::OrderCancelled {
            concert_id,
            seats,
            refund,
            ..
        } => Some((
            *concert_id,
            SalesDelta {
                cancellations: 1,
                seats_returned: n(seats),
                refunded: refund.0,
                ..none
            },
        )),
        // Version 1 events, still applied when replayed.
        DomainEvent::ReservationHeld { concert_id, .. } => {
            Some((*concert_id, SalesDelta { holds: 1, ..none }))
        }
        DomainEvent::ReservationReleased { concert_id, .. } => Some((
            *concert_id,
            SalesDelta {
                releases: 1,
                ..none
            },
        )),
        DomainEvent::ReservationExpired { concert_id, .. } => Some((
            *concert_id,
            SalesDelta {
                expirations: 1,
                ..none
            },
        )),
        DomainEvent::PaymentCompleted {
            concert_id, amount, ..
        } => Some((
            *concert_id,
            SalesDelta {
                seats_sold: 1,
                revenue: amount.0,
                ..none
            },
        )),
        DomainEvent::PointsCharged { .. }
        | DomainEvent::PointsRefunded { .. }
        | DomainEvent::ShowCancelled { .. }
        | DomainEvent::SaleChanged { .. } => None,
    }
}

/// Applies one event unless it was applied before. Returns whether it was new.
pub async fn apply(
    svc: &Services,
    envelope: &EventEnvelope,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let mut conn = svc.db().await?;
    let applied = conn
        .transaction(async |conn| {
            let event = &envelope.event;
            if !sales::claim_event(conn, &envelope.id, event.event_type(), now).await? {
                return Ok::<_, anyhow::Error>(false);
            }
            if let Some((concert, d)) = delta(event) {
                sales::add(conn, concert, d, now).await?;
            }
            Ok(true)
        })
        .await
        .map_err(db::classify)?;
    Ok(applied)
}

/// A concert's sales as the projection has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesReport {
    pub concert_id: u64,
    pub holds: u64,
    pub releases: u64,
    pub expirations: u64,
    pub seats_sold: u64,
    pub revenue: u64,
    /// Paid orders cancelled, and the points refunded for them.
    pub cancellations: u64,
    pub refunded: u64,
    /// When the last event was applied (the concert's creation before the first).
    pub updated_at: DateTime<Utc>,
}

impl From<ConcertSales> for SalesReport {
    fn from(row: ConcertSales) -> Self {
        Self {
            concert_id: row.concert_id,
            holds: row.holds,
            releases: row.releases,
            expirations: row.expirations,
            seats_sold: row.seats_sold,
            revenue: row.revenue,
            cancellations: row.cancellations,
            refunded: row.refunded,
            updated_at: db::utc(row.updated_at),
        }
    }
}

/// A concert's sales as far as the projection has consumed; all zero before its
/// first event.
pub async fn report(svc: &Services, concert: ConcertId) -> Result<SalesReport, LookupError> {
    let mut conn = svc.db().await?;
    if let Some(sales) = sales::of_concert(&mut conn, concert)
        .await
        .map_err(db::failure)?
    {
        return Ok(sales.into());
    }
    let row = catalog::concert(&mut conn, concert)
        .await
        .map_err(db::failure)?
        .ok_or(LookupError::ConcertNotFound)?;
    Ok(SalesReport {
        concert_id: concert.0,
        holds: 0,
        releases: 0,
        expirations: 0,
        seats_sold: 0,
        revenue: 0,
        cancellations: 0,
        refunded: 0,
        updated_at: db::utc(row.created_at),
    })
}

/// Consumes until `shutdown` resolves. Undecodable events are logged and skipped
/// (they would block the partition forever); a failure to apply one retries it.
/// Without a broker yet (`./dev up` starts one in the background), it waits for one:
/// whatever was committed meanwhile waits in the outbox and arrives once it is there.
pub async fn consume(svc: Services, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut waiting = false;
    while let Err(e) = kafka::ensure_topic(&svc.settings).await {
        if !waiting {
            tracing::warn!(
                error = format!("{e:#}"),
                "no Kafka broker yet; waiting for one"
            );
            waiting = true;
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
    let consumer: StreamConsumer = kafka::consumer(&svc.settings)?;
    consumer.subscribe(&[svc.settings.kafka_topic.as_str()])?;
    tracing::info!(topic = %svc.settings.kafka_topic, group = %svc.settings.kafka_consumer_group, "consuming");
    loop {
        let message = tokio::select! {
            () = &mut shutdown => break,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        let envelope = message
            .payload()
            .and_then(|p| serde_json::from_slice::<EventEnvelope>(p).ok());
        let result = if let Some(envelope) = &envelope {
            // Retried until it applies (MySQL may be away), but not past a shutdown:
            // its offset is then not stored, and the next consumer gets it again.
            let applied = loop {
                match apply(&svc, envelope, crate::now()).await {
                    Ok(true) => break Some("applied"),
                    Ok(false) => break Some("duplicate"),
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "applying an event failed; retrying"
                        );
                        tokio::select! {
                            () = &mut shutdown => break None,
                            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                        }
                    }
                }
            };
            let Some(applied) = applied else { break };
            applied
        } else {
            tracing::error!(
                partition = message.partition(),
                offset = message.offset(),
                "skipping an event that does not decode"
            );
            "undecodable"
        };
        let kind = envelope
            .as_ref()
            .map_or("unknown", |e| e.event.event_type());
        svc.metrics
            .events_consumed
            .with_label_values(&[kind, result])
            .inc();
        // Fails if a rebalance took the partition away meanwhile; its new owner
        // replays the event, which the id record makes harmless.
        if let Err(e) = consumer.store_offset_from_message(&message) {
            tracing::warn!(error = %e, "offset not stored");
        }
    }
    // Commit what was applied before leaving the group.
    if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::debug!(error = %e, "final offset commit");
    }
    Ok(())
}
