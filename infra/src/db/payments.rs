//! Payments: one per order and one per queue token, each enforced by a unique key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{Order, PaymentId, QueueToken, UserId};
use sha2::{Digest as _, Sha256};

use super::schema::payments;
use super::{DbConn, is_unique_violation, last_insert_id, naive};

/// Which rule refused to record a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The order has a payment already.
    OrderPaid,
    /// Another payment used this queue token: a token pays once.
    TokenUsed,
}

/// What identifies a token among payments without keeping the credential itself.
pub fn token_hash(token: &QueueToken) -> [u8; 32] {
    Sha256::digest(token.to_string().as_bytes()).into()
}

/// Records the payment of `order`'s total made with `token`, inside the caller's
/// transaction. A payment with the same token (or of the same order) that is still
/// open makes this wait until it ends: if it commits, this one is refused; if it
/// rolls back, this one goes ahead.
pub async fn insert(
    conn: &mut DbConn,
    order: &Order,
    user: &UserId,
    token: &QueueToken,
    now: DateTime<Utc>,
) -> anyhow::Result<Result<PaymentId, Refused>> {
    // The order's first seat names the payment for the reservation-based view.
    // UFCS: diesel's `RunQueryDsl::first` would shadow the slice's.
    let first = <[_]>::first(&order.seats)
        .ok_or_else(|| anyhow::anyhow!("order {} has no seats", order.id))?;
    let inserted = diesel::insert_into(payments::table)
        .values((
            payments::order_id.eq(order.id.0),
            payments::reservation_id.eq(first.reservation_id.0),
            payments::user_id.eq(user.as_str()),
            payments::amount.eq(order.total.0),
            payments::queue_token_hash.eq(Some(token_hash(token).as_slice())),
            payments::created_at.eq(naive(now)),
        ))
        .execute(conn)
        .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            // MySQL names the key only in the message's text; asking which row
            // exists is exact. The duplicate committed before this insert failed
            // (an open one makes it wait), so it is visible here.
            let refused = if count_for(conn, order).await? > 0 {
                Refused::OrderPaid
            } else {
                Refused::TokenUsed
            };
            return Ok(Err(refused));
        }
        Err(e) => return Err(e.into()),
    }
    let id = diesel::select(last_insert_id()).get_result(conn).await?;
    Ok(Ok(PaymentId(id)))
}

pub async fn count_for(conn: &mut DbConn, order: &Order) -> QueryResult<i64> {
    payments::table
        .filter(payments::order_id.eq(order.id.0))
        .count()
        .get_result(conn)
        .await
}
