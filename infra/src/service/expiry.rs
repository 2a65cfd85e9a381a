//! The expiry worker: frees seats whose holds lapsed and records their orders
//! EXPIRED; and, on the same tick, works through the orders of cancelled shows.
//!
//! Holds are also reused lazily (a new hold may take a lapsed seat at once), so
//! the worker is about tidy state, the seat map and the `OrderExpired` event,
//! never about who may book.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::{DomainEvent, Order, OrderId, OrderStatus, SeatState};

use super::{Abort, Services, orders, retry_deadlocks, shows};
use crate::db::{orders as order_rows, outbox, reservations};

/// Expires every hold lapsed at `now`, one batch per transaction. Returns how many
/// orders.
pub async fn expire_lapsed(svc: &Services, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let batch = svc.settings.expiry_batch_size.max(1);
    let mut total = 0;
    loop {
        let mut conn = svc.db().await?;
        let expired: Vec<Order> = retry_deadlocks!(
            conn.transaction(async |conn| {
                let lapsed = order_rows::lock_lapsed(conn, now, batch).await?;
                if lapsed.is_empty() {
                    return Ok::<_, Abort<()>>(lapsed);
                }
                let ids: Vec<OrderId> = lapsed.iter().map(|o| o.id).collect();
                order_rows::set_status(conn, &ids, OrderStatus::Expired, now).await?;
                let lines: Vec<_> = lapsed.iter().flat_map(Order::reservation_ids).collect();
                reservations::free_seats(conn, &lines, SeatState::Held).await?;
                let events = lapsed
                    .iter()
                    .map(|o| DomainEvent::OrderExpired {
                        order_id: o.id,
                        concert_id: o.concert_id,
                        schedule_id: o.schedule_id,
                        seats: o.seat_numbers(),
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
        let seats: usize = expired.iter().map(|o| o.seats.len()).sum();
        svc.metrics.holds_expired.inc_by(seats as u64);
        orders::seats_freed(svc, &expired).await;
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
        match shows::settle_cancelled(&svc, crate::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(orders = n, "released or refunded orders of cancelled shows"),
            Err(e) => tracing::error!(error = format!("{e:#}"), "cancelled shows run failed"),
        }
    })
    .await;
}
