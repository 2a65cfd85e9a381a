//! The expiry worker: frees seats whose holds lapsed and records them EXPIRED.
//!
//! Holds are also reused lazily (a new hold may take a lapsed seat at once), so
//! the worker is about tidy state, the seat map and the `ReservationExpired` event,
//! never about who may book.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::{DomainEvent, ReservationId, ReservationStatus};

use super::{Abort, Services, retry_deadlocks};
use crate::db::{outbox, reservations};
use crate::redis::cache::Entry;
use crate::redis::lock;

/// Expires every hold lapsed at `now`, one batch per transaction. Returns how many.
pub async fn expire_lapsed(svc: &Services, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let batch = svc.settings.expiry_batch_size.max(1);
    let mut total = 0;
    loop {
        let mut conn = svc.db().await?;
        let expired = retry_deadlocks!(
            conn.transaction(async |conn| {
                let lapsed = reservations::lock_lapsed(conn, now, batch).await?;
                if lapsed.is_empty() {
                    return Ok::<_, Abort<()>>(lapsed);
                }
                let ids: Vec<ReservationId> = lapsed.iter().map(|r| r.id).collect();
                reservations::set_status(conn, &ids, ReservationStatus::Expired, now).await?;
                reservations::free_seats(conn, &ids).await?;
                let events = lapsed
                    .iter()
                    .map(|r| DomainEvent::ReservationExpired {
                        reservation_id: r.id,
                        concert_id: r.concert_id,
                        schedule_id: r.schedule_id,
                        seat_no: r.seat_no,
                    })
                    .collect();
                outbox::append(conn, events, now).await?;
                Ok(lapsed)
            })
            .await
        )
        .map_err(|abort| match abort {
            Abort::Failed(e) => e,
            Abort::Outcome(()) | Abort::Replay => unreachable!("the worker has no outcomes"),
        })?;
        if expired.is_empty() {
            return Ok(total);
        }
        total += expired.len();
        svc.relay.wake();
        svc.metrics.holds_expired.inc_by(expired.len() as u64);
        let markers = expired.iter().map(|r| {
            let key = svc.keys.seat_lock(r.schedule_id, r.seat_no);
            async move { lock::clear_hold(&svc.redis, &key, r.id).await }
        });
        if futures::future::join_all(markers)
            .await
            .iter()
            .any(Result::is_err)
        {
            tracing::warn!("some seat markers were not cleared; they lapse with their holds");
        }
        let stale: BTreeSet<_> = expired
            .iter()
            .flat_map(|r| [(0, r.schedule_id.0), (1, r.concert_id.0)])
            .collect();
        let entries: Vec<Entry> = stale
            .into_iter()
            .map(|(kind, id)| {
                if kind == 0 {
                    Entry::SeatMap(domain::ScheduleId(id))
                } else {
                    Entry::Schedules(domain::ConcertId(id))
                }
            })
            .collect();
        svc.cache.invalidate(&entries).await;
        if expired.len() < batch as usize {
            return Ok(total);
        }
    }
}

/// Runs [`expire_lapsed`] every `expiry_interval_ms` until `shutdown` resolves.
pub async fn run(svc: Services, shutdown: impl Future<Output = ()>) {
    let period = Duration::from_millis(svc.settings.expiry_interval_ms.max(10));
    super::every(period, shutdown, || async {
        match expire_lapsed(&svc, crate::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired lapsed holds"),
            Err(e) => tracing::error!(error = format!("{e:#}"), "expiry worker run failed"),
        }
    })
    .await;
}
