//! Reservations (the seats of orders, see [`super::orders`]) and the seat rows they
//! hold. The seat row is the truth about who has a seat: every write to it is
//! conditional on the state it expects.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable};
use diesel_async::RunQueryDsl;
use domain::{
    ConcertId, OrderId, Points, Reservation, ReservationId, ReservationStatus, ScheduleId, SeatNo,
    SeatState, UserId,
};

use super::schema::{reservations, seats};
use super::stored::Stored;
use super::{DbConn, naive, utc};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = reservations, check_for_backend(Mysql))]
struct ReservationRow {
    id: u64,
    order_id: u64,
    user_id: String,
    concert_id: u64,
    schedule_id: u64,
    seat_no: u32,
    price: u64,
    status: Stored<ReservationStatus>,
    held_until: NaiveDateTime,
    created_at: NaiveDateTime,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = anyhow::Error;

    fn try_from(row: ReservationRow) -> anyhow::Result<Self> {
        Ok(Self {
            id: ReservationId(row.id),
            order_id: OrderId(row.order_id),
            user_id: UserId::parse(&row.user_id).context("stored user id")?,
            concert_id: ConcertId(row.concert_id),
            schedule_id: ScheduleId(row.schedule_id),
            seat_no: SeatNo::parse(row.seat_no.into()).context("stored seat number")?,
            price: Points(row.price),
            status: row.status.0,
            held_until: utc(row.held_until),
            created_at: utc(row.created_at),
        })
    }
}

/// SQL for [`SeatState::can_hold`]: free, or held by a hold that lapsed by `now`.
pub(crate) fn seat_free_at(
    now: DateTime<Utc>,
) -> Box<dyn BoxableExpression<seats::table, Mysql, SqlType = Nullable<Bool>>> {
    Box::new(
        seats::status
            .eq(SeatState::Available.as_str())
            .or(seats::status
                .eq(SeatState::Held.as_str())
                .and(seats::held_until.le(naive(now)))),
    )
}

pub async fn find(conn: &mut DbConn, id: ReservationId) -> anyhow::Result<Option<Reservation>> {
    let row = reservations::table
        .find(id.0)
        .select(ReservationRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(Reservation::try_from).transpose()
}

/// Frees the seats these reservations still have in state `from` (`HELD` for an
/// ended hold, `SOLD` for a cancelled sale). Returns how many. A seat a newer hold
/// has taken since (lazily, after the old one lapsed) belongs to that hold and is
/// left alone.
pub async fn free_seats(
    conn: &mut DbConn,
    lines: &[ReservationId],
    from: SeatState,
) -> QueryResult<usize> {
    let ids: Vec<u64> = lines.iter().map(|id| id.0).collect();
    diesel::update(
        seats::table
            .filter(seats::reservation_id.eq_any(ids))
            .filter(seats::status.eq(from.as_str())),
    )
    .set((
        seats::status.eq(SeatState::Available.as_str()),
        seats::held_until.eq(None::<NaiveDateTime>),
        seats::reservation_id.eq(None::<u64>),
    ))
    .execute(conn)
    .await
}
