//! Paying a held seat with points: one transaction, at the price of the hold.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::token::{AccessDenied, Grant};
use domain::{
    DomainEvent, IdempotencyKey, PaymentError, PaymentId, Points, QueueToken, ReservationId,
    ReservationStatus, points,
};
use serde::{Deserialize, Serialize};

use super::{Abort, Services, retry_deadlocks};
use crate::db::idempotency::{self, Scope, Stored};
use crate::db::payments::{self, Refused};
use crate::db::wallets::{self, LedgerKind};
use crate::db::{self, outbox, reservations};
use crate::metrics::Outcome as _;
use crate::redis::cache::Entry;
use crate::redis::lock;

/// What a payment answers, stored to replay for the same Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceipt {
    pub payment_id: PaymentId,
    pub reservation_id: ReservationId,
    pub amount: Points,
    pub balance_after: Points,
    pub paid_at: DateTime<Utc>,
}

/// Pays `reservation` from the token user's points, once per Idempotency-Key.
///
/// In one transaction: lock the reservation (the owner's), claim the key, check
/// it is still held, write the payment (unique per reservation and per queue token),
/// lock and debit the wallet, write the ledger row, the confirmation, the sold seat
/// and the outbox event. Afterwards the user's queue token ends and the seat map is
/// invalidated.
///
/// A queue token pays once: the first payment with it that commits ends it, and
/// every other one, concurrent or later, is refused with `AccessDenied::Expired`
/// and changes nothing. A retry with the same key replays the first answer even
/// though the token has ended by then, so the token's state is checked only for
/// new payments. Returns the receipt and whether it is a replay.
pub async fn pay(
    svc: &Services,
    token: &QueueToken,
    grant: &Grant,
    reservation: ReservationId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(PaymentReceipt, bool), PaymentError> {
    let paid = settle(svc, token, grant, reservation, key, now).await;
    let outcome = match &paid {
        Ok((_, true)) => "replayed",
        Ok((receipt, false)) => {
            svc.metrics.points_spent.inc_by(receipt.amount.0);
            "paid"
        }
        Err(e) => e.outcome(),
    };
    svc.metrics.payments.with_label_values(&[outcome]).inc();
    paid
}

impl From<Refused> for PaymentError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::ReservationPaid => Self::AlreadyPaid,
            Refused::TokenUsed => Self::Access(AccessDenied::Expired),
        }
    }
}

async fn settle(
    svc: &Services,
    token: &QueueToken,
    grant: &Grant,
    reservation: ReservationId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(PaymentReceipt, bool), PaymentError> {
    let user = &grant.user_id;
    let hash = idempotency::request_hash(&format!("payment:{reservation}"));
    let mut conn = svc.db().await?;
    let paid = retry_deadlocks!(
        conn.transaction(async |conn| {
            // The reservation's row lock comes first: it queues every payment of
            // this reservation, so retries with one key wait here one at a time
            // instead of piling up on the key's insert (where a rolled-back first
            // attempt would leave them to deadlock each other).
            let r = reservations::lock(conn, reservation)
                .await?
                .filter(|r| r.user_id == *user)
                .ok_or(Abort::Outcome(PaymentError::ReservationNotFound))?;
            if !idempotency::claim(conn, user, Scope::Payment, key, &hash, now).await? {
                return Err(Abort::Replay);
            }
            r.check_payable(now).map_err(Abort::Outcome)?;
            grant
                .require_active_for(r.concert_id)
                .map_err(|e| Abort::Outcome(e.into()))?;
            // A token pays once. Redis said it is active, but another payment with
            // it may be committing right now: the payment's unique token key decides,
            // before anything else is checked, so all but the first get TOKEN_EXPIRED.
            let payment_id = payments::insert(conn, r.id, user, r.price, token, now)
                .await?
                .map_err(|refused| Abort::Outcome(refused.into()))?;
            let before = wallets::lock(conn, user, now).await?;
            let after = points::debit(before, r.price)
                .ok_or(Abort::Outcome(PaymentError::InsufficientPoints))?;
            wallets::apply(
                conn,
                user,
                LedgerKind::Payment,
                before,
                after,
                Some(r.id),
                now,
            )
            .await?;
            reservations::set_status(conn, &[r.id], ReservationStatus::Confirmed, now).await?;
            // The reservation row says HELD and unexpired, so the seat is still ours;
            // checking again costs nothing and guards against any future bug.
            if !reservations::sell_seat(conn, &r).await? {
                return Err(Abort::Outcome(PaymentError::HoldExpired));
            }
            let event = DomainEvent::PaymentCompleted {
                payment_id,
                reservation_id: r.id,
                user_id: user.clone(),
                concert_id: r.concert_id,
                schedule_id: r.schedule_id,
                seat_no: r.seat_no,
                amount: r.price,
            };
            outbox::append(conn, vec![event], now).await?;
            let receipt = PaymentReceipt {
                payment_id,
                reservation_id: r.id,
                amount: r.price,
                balance_after: after,
                paid_at: now,
            };
            let body = serde_json::to_string(&receipt).map_err(anyhow::Error::from)?;
            idempotency::record(conn, user, Scope::Payment, key, &body).await?;
            Ok((receipt, r))
        })
        .await
    );
    match paid {
        Ok((receipt, r)) => {
            svc.relay.wake();
            super::sale::seat_sold(svc, r.concert_id);
            // Three independent Redis updates, in flight together: the answer waits
            // for one round trip, not three.
            let key = svc.keys.seat_lock(r.schedule_id, r.seat_no);
            let invalidated = [
                Entry::SeatMap(r.schedule_id),
                Entry::Schedules(r.concert_id),
            ];
            let (marked, (), ended) = tokio::join!(
                lock::mark_sold(&svc.redis, &key, r.id),
                svc.cache.invalidate(&invalidated),
                super::queue::end(svc, token, grant),
            );
            if let Err(e) = marked {
                tracing::warn!(error = %e, "seat marker not set to sold; MySQL answers for the seat");
            }
            if let Err(e) = ended {
                // The sale stands; the token lapses by itself at active-until.
                tracing::warn!(error = %e, "could not end the queue token after payment");
            }
            Ok((receipt, false))
        }
        Err(Abort::Outcome(e)) => Err(e),
        Err(Abort::Failed(e)) => Err(PaymentError::Internal(e)),
        Err(Abort::Replay) => {
            match idempotency::stored(&mut conn, user, Scope::Payment, key, &hash)
                .await
                .map_err(db::classify)?
            {
                Stored::Replay(body) => Ok((
                    serde_json::from_str(&body).map_err(anyhow::Error::from)?,
                    true,
                )),
                Stored::Mismatch => Err(PaymentError::IdempotencyKeyReused),
            }
        }
    }
}
