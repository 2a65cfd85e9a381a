//! Cancelling a show: the schedule is closed for sale at once; its held orders are
//! released and its paid orders refunded in full by the expiry worker, a batch per
//! transaction.
//!
//! Each order changes state in the same transaction as its refund, under its row
//! lock, and the batch's orders are locked with SKIP LOCKED: a crash rolls a batch
//! back whole and the next run redoes it, several instances share the work, and no
//! order is refunded twice (a unique key on the ledger backs that up).

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::{
    AdminError, CancelReason, DomainEvent, Order, OrderStatus, Points, Refund, ScheduleId,
    SeatState,
};

use super::{Abort, Services, orders, retry_deadlocks};
use crate::db::{self, catalog, orders as order_rows, outbox, reservations};

/// Where a show's cancellation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowCancellation {
    pub schedule: ScheduleId,
    /// Held or paid orders still to release or refund.
    pub orders_to_settle: u64,
    /// Paid orders the cancellation refunded so far.
    pub orders_refunded: u64,
}

/// Cancels the show `schedule`: no more holds from now on; its orders are settled
/// in the background. Cancelling again changes nothing and answers the progress.
pub async fn cancel(
    svc: &Services,
    schedule: ScheduleId,
    now: DateTime<Utc>,
) -> Result<ShowCancellation, AdminError> {
    let mut conn = svc.db().await?;
    retry_deadlocks!(
        conn.transaction(async |conn| {
            let row = catalog::schedule(conn, schedule)
                .await?
                .ok_or(Abort::Outcome(AdminError::ScheduleNotFound))?;
            if order_rows::cancel_schedule(conn, schedule).await? {
                let event = DomainEvent::ShowCancelled {
                    concert_id: domain::ConcertId(row.concert_id),
                    schedule_id: schedule,
                };
                outbox::append(conn, vec![event], now).await?;
            }
            Ok(())
        })
        .await
    )
    .map_err(|abort| match abort {
        Abort::Outcome(e) => e,
        Abort::Replay => unreachable!("show cancellations take no Idempotency-Key"),
        Abort::Failed(e) => AdminError::Internal(e),
    })?;
    svc.relay.wake();
    progress(svc, schedule).await
}

/// How far the cancellation of `schedule` has come (`ScheduleNotFound` for an
/// unknown schedule; a show on sale has nothing to settle).
pub async fn progress(
    svc: &Services,
    schedule: ScheduleId,
) -> Result<ShowCancellation, AdminError> {
    let mut conn = svc.db().await?;
    if catalog::schedule(&mut conn, schedule)
        .await
        .map_err(db::failure)?
        .is_none()
    {
        return Err(AdminError::ScheduleNotFound);
    }
    let (to_settle, refunded) = order_rows::show_progress(&mut conn, schedule)
        .await
        .map_err(db::failure)?;
    let cancelled = order_rows::schedule_status(&mut conn, schedule)
        .await
        .map_err(db::classify)?
        == Some(domain::ScheduleStatus::Cancelled);
    Ok(ShowCancellation {
        schedule,
        orders_to_settle: if cancelled { to_settle } else { 0 },
        orders_refunded: refunded,
    })
}

/// Releases or refunds the held and paid orders of every cancelled show, one batch
/// per transaction. Returns how many orders it settled.
pub async fn settle_cancelled(svc: &Services, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let batch = svc.settings.expiry_batch_size.max(1);
    let mut total = 0;
    loop {
        let mut conn = svc.db().await?;
        let settled: Vec<Order> = retry_deadlocks!(
            conn.transaction(async |conn| {
                let mut found = order_rows::lock_of_cancelled_shows(conn, batch).await?;
                // Wallets are locked in one order by every batch, so two instances'
                // batches never wait on each other in a circle.
                found.sort_by(|a, b| a.user_id.as_str().cmp(b.user_id.as_str()));
                for o in &found {
                    settle_one(conn, o, now).await?;
                }
                Ok::<_, Abort<()>>(found)
            })
            .await
        )
        .map_err(|abort| match abort {
            Abort::Failed(e) => e,
            Abort::Outcome(()) | Abort::Replay => unreachable!("the worker has no outcomes"),
        })?;
        if settled.is_empty() {
            return Ok(total);
        }
        total += settled.len();
        svc.relay.wake();
        let (paid, held): (Vec<Order>, Vec<Order>) = settled
            .into_iter()
            .partition(|o| o.status == OrderStatus::Confirmed);
        for o in &paid {
            svc.metrics.points_refunded.inc_by(o.total.0);
        }
        svc.metrics
            .order_cancellations
            .with_label_values(&[CancelReason::ShowCancelled.as_str(), "cancelled"])
            .inc_by(paid.len() as u64);
        orders::seats_freed(svc, &held).await;
        if paid.len() + held.len() < batch as usize {
            return Ok(total);
        }
    }
}

/// Inside the batch's transaction: releases a held order, or refunds a paid one in
/// full (its seats stay closed: the show is off).
async fn settle_one(conn: &mut db::DbConn, o: &Order, now: DateTime<Utc>) -> Result<(), Abort<()>> {
    if o.status == OrderStatus::Confirmed {
        let refund = Refund {
            refund: o.total,
            fee: Points(0),
            at: now,
        };
        orders::refund_in_db(conn, o, refund, CancelReason::ShowCancelled, false).await?;
    } else {
        order_rows::set_status(conn, &[o.id], OrderStatus::Released, now).await?;
        reservations::free_seats(conn, &o.reservation_ids(), SeatState::Held).await?;
        let event = DomainEvent::OrderReleased {
            order_id: o.id,
            concert_id: o.concert_id,
            schedule_id: o.schedule_id,
            seats: o.seat_numbers(),
        };
        outbox::append(conn, vec![event], now).await?;
    }
    Ok(())
}
