//! Payments: one per reservation, enforced by a unique key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{PaymentId, Points, ReservationId, UserId};

use super::schema::payments;
use super::{DbConn, last_insert_id, naive};

pub async fn insert(
    conn: &mut DbConn,
    reservation: ReservationId,
    user: &UserId,
    amount: Points,
    now: DateTime<Utc>,
) -> QueryResult<PaymentId> {
    diesel::insert_into(payments::table)
        .values((
            payments::reservation_id.eq(reservation.0),
            payments::user_id.eq(user.as_str()),
            payments::amount.eq(amount.0),
            payments::created_at.eq(naive(now)),
        ))
        .execute(conn)
        .await?;
    diesel::select(last_insert_id())
        .get_result(conn)
        .await
        .map(PaymentId)
}

pub async fn count_for(conn: &mut DbConn, reservation: ReservationId) -> QueryResult<i64> {
    payments::table
        .filter(payments::reservation_id.eq(reservation.0))
        .count()
        .get_result(conn)
        .await
}
