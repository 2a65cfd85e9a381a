//! Holding, reading and releasing one seat: the single-seat view (v1) of an order
//! of one seat (see [`super::orders`]).

use chrono::{DateTime, Utc};
use domain::token::Grant;
use domain::{HoldError, ReleaseError, Reservation, ReservationId, ScheduleId, SeatChoice, SeatNo};

use super::{Services, orders};
use crate::db::{self, orders as order_rows, reservations};
use crate::metrics::Outcome;

/// Holds `seat` for the token's user: an order of one seat.
pub async fn hold(
    svc: &Services,
    grant: &Grant,
    schedule: ScheduleId,
    seat: SeatNo,
    now: DateTime<Utc>,
) -> Result<Reservation, HoldError> {
    let held = orders::take_seats(svc, grant, schedule, &SeatChoice::Seats(vec![seat]), now)
        .await
        .and_then(|order| {
            let line = order.seats.first().map(|s| s.reservation_id);
            line.and_then(|id| order.reservation(id)).ok_or_else(|| {
                HoldError::Internal(anyhow::anyhow!("order {} has no seat", order.id))
            })
        });
    let outcome = held.as_ref().map_or_else(Outcome::outcome, |_| "held");
    svc.metrics.holds.with_label_values(&[outcome]).inc();
    held
}

/// One's own reservation, as of `now`. Someone else's looks like no reservation.
pub async fn get(
    svc: &Services,
    grant: &Grant,
    id: ReservationId,
    now: DateTime<Utc>,
) -> Result<Reservation, ReleaseError> {
    let mut conn = svc.db().await?;
    let mut r = reservations::find(&mut conn, id)
        .await
        .map_err(db::classify)?
        .filter(|r| r.user_id == grant.user_id)
        .ok_or(ReleaseError::NotFound)?;
    r.status = r.status_at(now);
    Ok(r)
}

/// Gives one's own hold back: its whole order (of one seat, unless the order was
/// made with `POST /v1/orders`). Releasing again, or after the hold lapsed, changes
/// nothing and answers the same.
pub async fn release(
    svc: &Services,
    grant: &Grant,
    id: ReservationId,
    now: DateTime<Utc>,
) -> Result<Reservation, ReleaseError> {
    let released = give_back(svc, grant, id, now).await;
    let outcome = released
        .as_ref()
        .map_or_else(Outcome::outcome, |_| "released");
    svc.metrics.releases.with_label_values(&[outcome]).inc();
    released
}

async fn give_back(
    svc: &Services,
    grant: &Grant,
    id: ReservationId,
    now: DateTime<Utc>,
) -> Result<Reservation, ReleaseError> {
    let order = order_of(svc, id).await?.ok_or(ReleaseError::NotFound)?;
    let order = orders::release(svc, grant, order, now)
        .await
        .map_err(|e| match e {
            ReleaseError::OrderNotFound => ReleaseError::NotFound,
            e => e,
        })?;
    order.reservation(id).ok_or(ReleaseError::NotFound)
}

/// The order a reservation is part of.
pub(crate) async fn order_of(
    svc: &Services,
    id: ReservationId,
) -> anyhow::Result<Option<domain::OrderId>> {
    let mut conn = svc.db().await?;
    order_rows::of_reservation(&mut conn, id)
        .await
        .map_err(db::failure)
}
