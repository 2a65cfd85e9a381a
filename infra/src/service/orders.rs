//! Orders: holding several seats of one schedule all or nothing, paying them in one
//! payment, releasing them, and cancelling a paid order for a refund.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::reservation::Release;
use domain::token::{AccessDenied, Grant};
use domain::{
    CancelError, CancelReason, DomainEvent, HoldError, IdempotencyKey, LedgerKind, Order, OrderId,
    OrderStatus, PaymentError, PaymentId, Points, QueueToken, ReleaseError, ScheduleId,
    ScheduleStatus, SeatChoice, SeatNo, SeatState, points,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Abort, Services, catalog, retry_deadlocks};
use crate::db::idempotency::{self, Scope, Stored};
use crate::db::orders::{self, LockedSeat, NewOrder};
use crate::db::payments::{self, Refused};
use crate::db::wallets;
use crate::db::{self, DbConn, catalog as catalog_rows, outbox, reservations, sale_settings};
use crate::metrics::{ORDER_SIZES, Outcome};
use crate::redis::cache::Entry;
use crate::redis::lock::{self, SeatLocks};

/// Longer than a hold transaction ever takes; only matters if this process dies
/// holding the locks.
const SEAT_LOCK_TTL: Duration = Duration::from_secs(5);

/// The most orders `GET /v1/orders` lists.
pub const LIST_LIMIT: u32 = 50;

/// Holds the seats of `choice` for the token's user, all or none.
pub async fn hold(
    svc: &Services,
    grant: &Grant,
    schedule: ScheduleId,
    choice: &SeatChoice,
    now: DateTime<Utc>,
) -> Result<Order, HoldError> {
    let held = take_seats(svc, grant, schedule, choice, now).await;
    let outcome = held.as_ref().map_or_else(Outcome::outcome, |_| "held");
    let size = ORDER_SIZES[(choice.count().max(1) as usize - 1).min(ORDER_SIZES.len() - 1)];
    svc.metrics.orders.with_label_values(&[outcome, size]).inc();
    held
}

/// The hold itself, uncounted (the single-seat call counts it as its own).
///
/// Seats asked for by number are locked in Redis first, all in one script in seat
/// order, which turns a crowd on taken seats into quick 409s; the locked,
/// conditional seat updates in MySQL decide. Seats asked for by grade are picked in
/// MySQL, skipping rows other holds are taking.
pub(crate) async fn take_seats(
    svc: &Services,
    grant: &Grant,
    schedule: ScheduleId,
    choice: &SeatChoice,
    now: DateTime<Utc>,
) -> Result<Order, HoldError> {
    let info = catalog::schedule_info(svc, schedule)
        .await?
        .ok_or(HoldError::ScheduleNotFound)?;
    grant.require_active_for(info.concert_id)?;
    let locks = match choice {
        SeatChoice::Seats(seats) => {
            if seats.iter().any(|s| s.get() > info.seat_count) {
                return Err(HoldError::SeatNotFound);
            }
            Some(lock_seats(svc, schedule, seats).await?)
        }
        SeatChoice::Grade { .. } => None,
    };
    let order = match hold_in_db(svc, grant, info.concert_id, schedule, choice, now).await {
        Ok(order) => order,
        Err(e) => {
            if let Some(locks) = locks
                && let Err(e) = locks.release(&svc.redis).await
            {
                tracing::warn!(error = %e, "seat locks release failed; they lapse by their TTL");
            }
            return Err(e);
        }
    };
    svc.relay.wake();
    // From now on a crowd on these seats gets its 409 from Redis alone. Both in
    // flight together: the answer waits for one Redis round trip, not two.
    let keys: Vec<String> = order
        .seats
        .iter()
        .map(|s| svc.keys.seat_lock(schedule, s.seat_no))
        .collect();
    let holds = order.reservation_ids();
    let marked = async {
        match locks {
            Some(locks) => locks.into_holds(&svc.redis, &holds, order.held_until).await,
            None => lock::mark_holds(&svc.redis, &keys, &holds, order.held_until).await,
        }
    };
    let invalidated = [Entry::SeatMap(schedule), Entry::Schedules(info.concert_id)];
    let (marked, ()) = tokio::join!(marked, svc.cache.invalidate(&invalidated));
    if let Err(e) = marked {
        tracing::warn!(error = %e, "seat markers not set; they lapse by their TTL");
    }
    Ok(order)
}

async fn lock_seats(
    svc: &Services,
    schedule: ScheduleId,
    seats: &[SeatNo],
) -> Result<SeatLocks, HoldError> {
    let keys = seats
        .iter()
        .map(|s| svc.keys.seat_lock(schedule, *s))
        .collect();
    let started = Instant::now();
    let attempt = lock::try_acquire_all(&svc.redis, keys, SEAT_LOCK_TTL).await;
    svc.metrics
        .seat_lock_wait
        .observe(started.elapsed().as_secs_f64());
    let result = match &attempt {
        Ok(Ok(_)) => "acquired",
        Ok(Err(_)) => "contended",
        Err(_) => "error",
    };
    svc.metrics
        .seat_lock_attempts
        .with_label_values(&[result])
        .inc();
    // Fail closed: without the locks we could still not oversell, but we would send
    // the whole crowd to MySQL; refusing is the safer overload behaviour.
    attempt
        .map_err(|e| HoldError::Unavailable(e.into()))?
        .map_err(|taken| HoldError::SeatTaken(taken.into_iter().map(|i| seats[i]).collect()))
}

async fn hold_in_db(
    svc: &Services,
    grant: &Grant,
    concert: domain::ConcertId,
    schedule: ScheduleId,
    choice: &SeatChoice,
    now: DateTime<Utc>,
) -> Result<Order, HoldError> {
    let held_until = svc.settings.hold_seconds.ends_at(now);
    let seats_per_fan = super::sale::current(svc, concert)
        .await?
        .map_or(domain::SaleSettings::DEFAULT_MAX_SEATS_PER_FAN, |s| {
            s.settings.max_seats_per_fan
        });
    let wanted = choice.count();
    let mut conn = svc.db().await?;
    retry_deadlocks!(
        conn.transaction(async |conn| {
            if orders::schedule_status(conn, schedule).await? == Some(ScheduleStatus::Cancelled) {
                return Err(Abort::Outcome(HoldError::ShowCancelled));
            }
            // The fan's row first: their concurrent holds count one after another.
            sale_settings::lock_fan(conn, concert, &grant.user_id).await?;
            let taken = sale_settings::fan_seats(conn, concert, &grant.user_id, now).await?;
            if taken + u64::from(wanted) > u64::from(seats_per_fan) {
                return Err(Abort::Outcome(HoldError::SeatLimit(seats_per_fan)));
            }
            let seats = pick_seats(conn, schedule, choice, now).await?;
            let order = orders::insert(
                conn,
                NewOrder {
                    user: &grant.user_id,
                    concert,
                    schedule,
                    seats: &seats,
                    held_until,
                },
                now,
            )
            .await?;
            let event = DomainEvent::OrderHeld {
                order_id: order.id,
                user_id: order.user_id.clone(),
                concert_id: concert,
                schedule_id: schedule,
                seats: order.seats.clone(),
                total: order.total,
                held_until,
            };
            outbox::append(conn, vec![event], now).await?;
            Ok(order)
        })
        .await
    )
    .map_err(|abort| match abort {
        Abort::Outcome(e) => e,
        Abort::Replay => unreachable!("holds take no Idempotency-Key"),
        Abort::Failed(e) => HoldError::Internal(e),
    })
}

/// The seat rows of `choice`, locked and free at `now`, in seat order.
async fn pick_seats(
    conn: &mut DbConn,
    schedule: ScheduleId,
    choice: &SeatChoice,
    now: DateTime<Utc>,
) -> Result<Vec<LockedSeat>, Abort<HoldError>> {
    match choice {
        SeatChoice::Seats(numbers) => {
            let seats = orders::lock_seats(conn, schedule, numbers).await?;
            if seats.len() != numbers.len() {
                return Err(Abort::Outcome(HoldError::SeatNotFound));
            }
            let taken: Vec<SeatNo> = seats
                .iter()
                .zip(numbers)
                .filter(|(seat, _)| !seat.can_hold(now))
                .map(|(_, n)| *n)
                .collect();
            if taken.is_empty() {
                Ok(seats)
            } else {
                Err(Abort::Outcome(HoldError::SeatTaken(taken)))
            }
        }
        SeatChoice::Grade { grade, quantity } => {
            let seats = orders::lock_free_of_grade(conn, schedule, grade, *quantity, now).await?;
            if seats.len() == *quantity as usize {
                Ok(seats)
            } else if !orders::grade_exists(conn, schedule, grade).await? {
                Err(Abort::Outcome(HoldError::GradeNotFound))
            } else {
                let free = u32::try_from(seats.len()).unwrap_or(u32::MAX);
                Err(Abort::Outcome(HoldError::NotEnoughSeats { free }))
            }
        }
    }
}

/// One's own order, as of `now`. Someone else's looks like no order.
pub async fn get(
    svc: &Services,
    grant: &Grant,
    id: OrderId,
    now: DateTime<Utc>,
) -> Result<Order, ReleaseError> {
    let mut conn = svc.db().await?;
    let mut order = orders::find(&mut conn, id)
        .await
        .map_err(db::classify)?
        .filter(|o| o.user_id == grant.user_id)
        .ok_or(ReleaseError::OrderNotFound)?;
    order.status = order.status_at(now);
    Ok(order)
}

/// The token user's orders of the token's concert, newest first (at most
/// [`LIST_LIMIT`]).
pub async fn list(svc: &Services, grant: &Grant, now: DateTime<Utc>) -> anyhow::Result<Vec<Order>> {
    let mut conn = svc.db().await?;
    let mut found = orders::of_fan(&mut conn, &grant.user_id, grant.concert_id, LIST_LIMIT)
        .await
        .map_err(db::classify)?;
    for order in &mut found {
        order.status = order.status_at(now);
    }
    Ok(found)
}

/// Gives one's own held order back. Releasing again, or after the hold lapsed,
/// changes nothing and answers the same.
pub async fn release(
    svc: &Services,
    grant: &Grant,
    id: OrderId,
    now: DateTime<Utc>,
) -> Result<Order, ReleaseError> {
    let mut conn = svc.db().await?;
    let (order, freed) = retry_deadlocks!(
        conn.transaction(async |conn| {
            let mut order = orders::lock(conn, id)
                .await?
                .filter(|o| o.user_id == grant.user_id)
                .ok_or(Abort::Outcome(ReleaseError::OrderNotFound))?;
            match order.release(now).map_err(Abort::Outcome)? {
                Release::AlreadyOver => {
                    order.status = order.status_at(now);
                    Ok((order, false))
                }
                Release::FreeSeat => {
                    orders::set_status(conn, &[order.id], OrderStatus::Released, now).await?;
                    reservations::free_seats(conn, &order.reservation_ids(), SeatState::Held)
                        .await?;
                    let event = DomainEvent::OrderReleased {
                        order_id: order.id,
                        concert_id: order.concert_id,
                        schedule_id: order.schedule_id,
                        seats: order.seat_numbers(),
                    };
                    outbox::append(conn, vec![event], now).await?;
                    order.status = OrderStatus::Released;
                    Ok((order, true))
                }
            }
        })
        .await
    )
    .map_err(|abort| match abort {
        Abort::Outcome(e) => e,
        Abort::Replay => unreachable!("releases take no Idempotency-Key"),
        Abort::Failed(e) => ReleaseError::Internal(e),
    })?;
    if freed {
        svc.relay.wake();
        seats_freed(svc, std::slice::from_ref(&order)).await;
    }
    Ok(order)
}

/// After held orders ended (released, expired, their show cancelled): clears their
/// seats' markers and the cached views of them.
pub(crate) async fn seats_freed(svc: &Services, ended: &[Order]) {
    let markers = ended.iter().flat_map(|o| {
        o.seats.iter().map(|s| {
            let key = svc.keys.seat_lock(o.schedule_id, s.seat_no);
            async move { lock::clear_hold(&svc.redis, &key, s.reservation_id).await }
        })
    });
    if futures::future::join_all(markers)
        .await
        .iter()
        .any(Result::is_err)
    {
        tracing::warn!("some seat markers were not cleared; they lapse with their holds");
    }
    invalidate(svc, ended).await;
}

async fn invalidate(svc: &Services, changed: &[Order]) {
    let mut entries: Vec<Entry> = Vec::new();
    for o in changed {
        for entry in [
            Entry::SeatMap(o.schedule_id),
            Entry::Schedules(o.concert_id),
        ] {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
    }
    svc.cache.invalidate(&entries).await;
}

/// What paying an order answers, stored to replay for the same Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReceipt {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Points,
    pub balance_after: Points,
    pub paid_at: DateTime<Utc>,
}

/// Pays `order` from the token user's points, once per Idempotency-Key: its total
/// (the prices fixed at hold time), all seats at once. Afterwards the user's queue
/// token ends. See [`settle`] for the rules.
pub async fn pay(
    svc: &Services,
    token: &QueueToken,
    grant: &Grant,
    order: OrderId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(OrderReceipt, bool), PaymentError> {
    let hash = idempotency::request_hash(&format!("order-payment:{order}"));
    let paying = Paying {
        token,
        grant,
        key,
        scope: Scope::OrderPayment,
        hash: &hash,
    };
    let paid = settle(svc, &paying, order, now, |order, payment_id, after| {
        OrderReceipt {
            payment_id,
            order_id: order.id,
            amount: order.total,
            balance_after: after,
            paid_at: now,
        }
    })
    .await
    .map_err(|e| match e {
        PaymentError::ReservationNotFound => PaymentError::OrderNotFound,
        e => e,
    });
    let outcome = match &paid {
        Ok((_, true)) => "replayed",
        Ok((receipt, false)) => {
            svc.metrics.points_spent.inc_by(receipt.amount.0);
            "paid"
        }
        Err(e) => e.outcome(),
    };
    svc.metrics
        .order_payments
        .with_label_values(&[outcome])
        .inc();
    paid
}

/// Who pays, with which key, for which kind of answer.
pub(crate) struct Paying<'a> {
    pub token: &'a QueueToken,
    pub grant: &'a Grant,
    pub key: &'a IdempotencyKey,
    pub scope: Scope,
    /// The request's hash: the same key for another request is refused.
    pub hash: &'a str,
}

impl From<Refused> for PaymentError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::OrderPaid => Self::AlreadyPaid,
            Refused::TokenUsed => Self::Access(AccessDenied::Expired),
        }
    }
}

/// Pays an order in one transaction and answers with `receipt` (or, for a key used
/// before, with the answer stored then; `true` says it is a replay).
///
/// In one transaction: lock the order (the owner's), claim the key, check it is
/// still held, write the payment (unique per order and per queue token), lock and
/// debit the wallet, write the ledger row, the confirmation, the sold seats and the
/// outbox event. Afterwards the user's queue token ends and the seat map is
/// invalidated.
///
/// A queue token pays once: the first payment with it that commits ends it, and
/// every other one, concurrent or later, is refused with `AccessDenied::Expired`
/// and changes nothing. A retry with the same key replays the first answer even
/// though the token has ended by then, so the token's state is checked only for
/// new payments. An unknown order is `ReservationNotFound`: callers name it.
pub(crate) async fn settle<R: Serialize + DeserializeOwned + Send>(
    svc: &Services,
    paying: &Paying<'_>,
    order: OrderId,
    now: DateTime<Utc>,
    receipt: impl Fn(&Order, PaymentId, Points) -> R + Send + Sync,
) -> Result<(R, bool), PaymentError> {
    let user = &paying.grant.user_id;
    let mut conn = svc.db().await?;
    let paid = retry_deadlocks!(
        conn.transaction(async |conn| {
            // The order's row lock comes first: it queues every payment of this
            // order, so retries with one key wait here one at a time instead of
            // piling up on the key's insert (where a rolled-back first attempt
            // would leave them to deadlock each other).
            let o = orders::lock(conn, order)
                .await?
                .filter(|o| o.user_id == *user)
                .ok_or(Abort::Outcome(PaymentError::ReservationNotFound))?;
            if !idempotency::claim(conn, user, paying.scope, paying.key, paying.hash, now).await? {
                return Err(Abort::Replay);
            }
            o.check_payable(now).map_err(Abort::Outcome)?;
            paying
                .grant
                .require_active_for(o.concert_id)
                .map_err(|e| Abort::Outcome(e.into()))?;
            // A token pays once. Redis said it is active, but another payment with
            // it may be committing right now: the payment's unique token key decides,
            // before anything else is checked, so all but the first get TOKEN_EXPIRED.
            let payment_id = payments::insert(conn, &o, user, paying.token, now)
                .await?
                .map_err(|refused| Abort::Outcome(refused.into()))?;
            let before = wallets::lock(conn, user, now).await?;
            let after = points::debit(before, o.total)
                .ok_or(Abort::Outcome(PaymentError::InsufficientPoints))?;
            wallets::apply(
                conn,
                user,
                LedgerKind::Payment,
                before,
                after,
                Some(&o),
                now,
            )
            .await?;
            orders::set_status(conn, &[o.id], OrderStatus::Confirmed, now).await?;
            // The order says HELD and unexpired, so the seats are still its own;
            // checking again costs nothing and guards against any future bug.
            if orders::sell_seats(conn, &o.reservation_ids()).await? != o.seats.len() {
                return Err(Abort::Outcome(PaymentError::HoldExpired));
            }
            let event = DomainEvent::OrderPaid {
                order_id: o.id,
                payment_id,
                user_id: user.clone(),
                concert_id: o.concert_id,
                schedule_id: o.schedule_id,
                seats: o.seat_numbers(),
                amount: o.total,
            };
            outbox::append(conn, vec![event], now).await?;
            let answer = receipt(&o, payment_id, after);
            let body = serde_json::to_string(&answer).map_err(anyhow::Error::from)?;
            idempotency::record(conn, user, paying.scope, paying.key, &body).await?;
            Ok((answer, o))
        })
        .await
    );
    match paid {
        Ok((answer, o)) => {
            svc.relay.wake();
            super::sale::seat_sold(svc, o.concert_id);
            // Independent Redis updates, in flight together: the answer waits for
            // one round trip, not several.
            let sold = o.seats.iter().map(|s| {
                let key = svc.keys.seat_lock(o.schedule_id, s.seat_no);
                async move { lock::mark_sold(&svc.redis, &key, s.reservation_id).await }
            });
            let (marked, (), ended) = tokio::join!(
                futures::future::join_all(sold),
                invalidate(svc, std::slice::from_ref(&o)),
                super::queue::end(svc, paying.token, paying.grant),
            );
            if marked.iter().any(Result::is_err) {
                tracing::warn!("seat markers not set to sold; MySQL answers for the seats");
            }
            if let Err(e) = ended {
                // The sale stands; the token lapses by itself at active-until.
                tracing::warn!(error = %e, "could not end the queue token after payment");
            }
            Ok((answer, false))
        }
        Err(Abort::Outcome(e)) => Err(e),
        Err(Abort::Failed(e)) => Err(PaymentError::Internal(e)),
        Err(Abort::Replay) => {
            match replay(
                &mut conn,
                paying.grant,
                paying.scope,
                paying.key,
                paying.hash,
            )
            .await?
            {
                Some(answer) => Ok((answer, true)),
                None => Err(PaymentError::IdempotencyKeyReused),
            }
        }
    }
}

/// The stored answer for a key used before; `None` if it was used for another request.
async fn replay<R: DeserializeOwned>(
    conn: &mut DbConn,
    grant: &Grant,
    scope: Scope,
    key: &IdempotencyKey,
    hash: &str,
) -> anyhow::Result<Option<R>> {
    match idempotency::stored(conn, &grant.user_id, scope, key, hash)
        .await
        .map_err(db::classify)?
    {
        Stored::Replay(body) => Ok(Some(serde_json::from_str(&body)?)),
        Stored::Mismatch => Ok(None),
    }
}

/// What cancelling an order answers, stored to replay for the same Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelReceipt {
    pub order_id: OrderId,
    pub refund: Points,
    pub fee: Points,
    pub balance_after: Points,
    pub cancelled_at: DateTime<Utc>,
}

/// Cancels one's own paid order before the concert's cutoff, once per
/// Idempotency-Key: the total minus the concert's fee goes back to the owner's
/// points and the seats go back on sale at once.
///
/// Any valid token of the owner will do (paying ended theirs). The order's row lock
/// queues concurrent cancellations: the first one refunds, the rest find it
/// cancelled (and a unique key allows one refund per order, whatever the code does).
pub async fn cancel(
    svc: &Services,
    grant: &Grant,
    id: OrderId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(CancelReceipt, bool), CancelError> {
    let cancelled = refund_to_owner(svc, grant, id, key, now).await;
    let outcome = match &cancelled {
        Ok((_, true)) => "replayed",
        Ok((receipt, false)) => {
            svc.metrics.points_refunded.inc_by(receipt.refund.0);
            svc.metrics.cancellation_fees.inc_by(receipt.fee.0);
            "cancelled"
        }
        Err(e) => e.outcome(),
    };
    svc.metrics
        .order_cancellations
        .with_label_values(&[CancelReason::Owner.as_str(), outcome])
        .inc();
    cancelled
}

async fn refund_to_owner(
    svc: &Services,
    grant: &Grant,
    id: OrderId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(CancelReceipt, bool), CancelError> {
    let user = &grant.user_id;
    let hash = idempotency::request_hash(&format!("cancel:{id}"));
    let mut conn = svc.db().await?;
    let cancelled = retry_deadlocks!(
        conn.transaction(async |conn| {
            let o = orders::lock(conn, id)
                .await?
                .filter(|o| o.user_id == *user)
                .ok_or(Abort::Outcome(CancelError::NotFound))?;
            if !idempotency::claim(conn, user, Scope::Cancellation, key, &hash, now).await? {
                return Err(Abort::Replay);
            }
            let (policy, show_starts) = catalog_rows::cancellation_terms(conn, o.schedule_id)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("schedule {} of order {id} is gone", o.schedule_id)
                })?;
            let refund = o
                .owner_refund(policy, show_starts, now)
                .map_err(Abort::Outcome)?;
            let balance = refund_in_db(conn, &o, refund, CancelReason::Owner, true).await?;
            let receipt = CancelReceipt {
                order_id: o.id,
                refund: refund.refund,
                fee: refund.fee,
                balance_after: balance,
                cancelled_at: now,
            };
            let body = serde_json::to_string(&receipt).map_err(anyhow::Error::from)?;
            idempotency::record(conn, user, Scope::Cancellation, key, &body).await?;
            Ok((receipt, o))
        })
        .await
    );
    match cancelled {
        Ok((receipt, o)) => {
            svc.relay.wake();
            seats_back_on_sale(svc, std::slice::from_ref(&o)).await;
            Ok((receipt, false))
        }
        Err(Abort::Outcome(e)) => Err(e),
        Err(Abort::Failed(e)) => Err(CancelError::Internal(e)),
        Err(Abort::Replay) => {
            match replay(&mut conn, grant, Scope::Cancellation, key, &hash).await? {
                Some(receipt) => Ok((receipt, true)),
                None => Err(CancelError::IdempotencyKeyReused),
            }
        }
    }
}

/// Inside the caller's transaction, with `o` locked and CONFIRMED: credits the
/// refund to the owner's wallet (two ledger rows: the total back, the fee kept),
/// marks the order cancelled, puts its seats back on sale if `reopen` (a cancelled
/// show's stay closed) and writes the events. Returns the owner's balance after.
pub(crate) async fn refund_in_db(
    conn: &mut DbConn,
    o: &Order,
    refund: domain::Refund,
    reason: CancelReason,
    reopen: bool,
) -> Result<Points, anyhow::Error> {
    let before = wallets::lock(conn, &o.user_id, refund.at).await?;
    let balance = wallets::refund(conn, &o.user_id, before, o, refund.fee, refund.at).await?;
    orders::set_cancelled(conn, o.id, refund, reason).await?;
    if reopen {
        let reopened =
            reservations::free_seats(conn, &o.reservation_ids(), SeatState::Sold).await?;
        anyhow::ensure!(
            reopened == o.seats.len(),
            "order {} had {} of its {} seats sold",
            o.id,
            reopened,
            o.seats.len()
        );
    }
    let events = vec![
        DomainEvent::OrderCancelled {
            order_id: o.id,
            user_id: o.user_id.clone(),
            concert_id: o.concert_id,
            schedule_id: o.schedule_id,
            seats: o.seat_numbers(),
            refund: refund.refund,
            fee: refund.fee,
            reason,
        },
        DomainEvent::PointsRefunded {
            user_id: o.user_id.clone(),
            order_id: o.id,
            amount: refund.refund,
            fee: refund.fee,
            balance,
        },
    ];
    outbox::append(conn, events, refund.at).await?;
    Ok(balance)
}

/// After paid orders were cancelled by their owners: their seats' sold markers go,
/// so the next hold asks MySQL, and the cached views show the seats free.
async fn seats_back_on_sale(svc: &Services, cancelled: &[Order]) {
    let markers = cancelled.iter().flat_map(|o| {
        o.seats.iter().map(|s| {
            let key = svc.keys.seat_lock(o.schedule_id, s.seat_no);
            async move { lock::clear_sold(&svc.redis, &key).await }
        })
    });
    if futures::future::join_all(markers)
        .await
        .iter()
        .any(Result::is_err)
    {
        tracing::warn!("some sold markers were not cleared; MySQL answers once they lapse");
    }
    invalidate(svc, cancelled).await;
}
