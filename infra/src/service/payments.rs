//! Paying a held seat with points: the single-seat view (v1) of paying its order
//! (see [`super::orders::settle`]).

use chrono::{DateTime, Utc};
use domain::token::Grant;
use domain::{IdempotencyKey, PaymentError, PaymentId, Points, QueueToken, ReservationId};
use serde::{Deserialize, Serialize};

use super::orders::{self, Paying};
use super::{Services, reservations};
use crate::db::idempotency::{self, Scope};
use crate::metrics::Outcome as _;

/// What a payment answers, stored to replay for the same Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceipt {
    pub payment_id: PaymentId,
    pub reservation_id: ReservationId,
    pub amount: Points,
    pub balance_after: Points,
    pub paid_at: DateTime<Utc>,
}

/// Pays `reservation`'s order from the token user's points, once per
/// Idempotency-Key, at the price fixed at hold time. Returns the receipt and whether
/// it is a replay. An order of several seats is paid whole: `amount` is its total.
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

async fn settle(
    svc: &Services,
    token: &QueueToken,
    grant: &Grant,
    reservation: ReservationId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(PaymentReceipt, bool), PaymentError> {
    let order = reservations::order_of(svc, reservation)
        .await?
        .ok_or(PaymentError::ReservationNotFound)?;
    let hash = idempotency::request_hash(&format!("payment:{reservation}"));
    let paying = Paying {
        token,
        grant,
        key,
        scope: Scope::Payment,
        hash: &hash,
    };
    orders::settle(svc, &paying, order, now, |order, payment_id, after| {
        PaymentReceipt {
            payment_id,
            reservation_id: reservation,
            amount: order.total,
            balance_after: after,
            paid_at: now,
        }
    })
    .await
}
