//! Reservations and the seat rows they hold. The seat row is the truth about who
//! has a seat: every write to it is conditional on the state it expects.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable};
use diesel_async::RunQueryDsl;
use domain::{
    ConcertId, Points, Reservation, ReservationId, ReservationStatus, ScheduleId, SeatNo,
    SeatState, UserId,
};

use super::schema::{reservations, seats};
use super::{DbConn, last_insert_id, naive, utc};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = reservations, check_for_backend(Mysql))]
struct ReservationRow {
    id: u64,
    user_id: String,
    concert_id: u64,
    schedule_id: u64,
    seat_no: u32,
    price: u64,
    status: String,
    held_until: NaiveDateTime,
    created_at: NaiveDateTime,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = anyhow::Error;

    fn try_from(row: ReservationRow) -> anyhow::Result<Self> {
        Ok(Self {
            id: ReservationId(row.id),
            user_id: UserId::parse(&row.user_id).context("stored user id")?,
            concert_id: ConcertId(row.concert_id),
            schedule_id: ScheduleId(row.schedule_id),
            seat_no: SeatNo::parse(row.seat_no.into()).context("stored seat number")?,
            price: Points(row.price),
            status: ReservationStatus::parse(&row.status)
                .with_context(|| format!("stored reservation status {:?}", row.status))?,
            held_until: utc(row.held_until),
            created_at: utc(row.created_at),
        })
    }
}

/// A seat row read under a row lock.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = seats, check_for_backend(Mysql))]
pub struct LockedSeat {
    pub price: u64,
    pub status: String,
    pub held_until: Option<NaiveDateTime>,
}

impl LockedSeat {
    pub fn can_hold(&self, now: DateTime<Utc>) -> bool {
        SeatState::parse(&self.status).is_some_and(|s| s.can_hold(self.held_until.map(utc), now))
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

/// Reads a seat and locks its row until the transaction ends.
pub async fn lock_seat(
    conn: &mut DbConn,
    schedule: ScheduleId,
    seat: SeatNo,
) -> QueryResult<Option<LockedSeat>> {
    seats::table
        .find((schedule.0, seat.get()))
        .select(LockedSeat::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A hold about to be written.
#[derive(Debug)]
pub struct NewHold<'a> {
    pub user: &'a UserId,
    pub concert: ConcertId,
    pub schedule: ScheduleId,
    pub seat: SeatNo,
    /// The seat's price now, which the payment will charge.
    pub price: Points,
    pub held_until: DateTime<Utc>,
}

/// Records a new hold. The caller has locked the seat and checked it is free.
pub async fn insert_hold(
    conn: &mut DbConn,
    hold: NewHold<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<Reservation> {
    let NewHold {
        user,
        concert,
        schedule,
        seat,
        price,
        held_until,
    } = hold;
    diesel::insert_into(reservations::table)
        .values((
            reservations::user_id.eq(user.as_str()),
            reservations::concert_id.eq(concert.0),
            reservations::schedule_id.eq(schedule.0),
            reservations::seat_no.eq(seat.get()),
            reservations::price.eq(price.0),
            reservations::status.eq(ReservationStatus::Held.as_str()),
            reservations::held_until.eq(naive(held_until)),
            reservations::created_at.eq(naive(now)),
            reservations::updated_at.eq(naive(now)),
        ))
        .execute(conn)
        .await?;
    let id = diesel::select(last_insert_id()).get_result(conn).await?;
    // The seat row is locked and its hold condition re-checked in the WHERE clause:
    // this UPDATE is what makes the hold true, so it must touch exactly one row.
    let updated = diesel::update(seats::table.find((schedule.0, seat.get())))
        .filter(seat_free_at(now))
        .set((
            seats::status.eq(SeatState::Held.as_str()),
            seats::held_until.eq(naive(held_until)),
            seats::reservation_id.eq(id),
        ))
        .execute(conn)
        .await?;
    anyhow::ensure!(
        updated == 1,
        "seat {schedule}/{seat} changed under its row lock"
    );
    Ok(Reservation {
        id: ReservationId(id),
        user_id: user.clone(),
        concert_id: concert,
        schedule_id: schedule,
        seat_no: seat,
        price,
        status: ReservationStatus::Held,
        held_until,
        created_at: now,
    })
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

/// Reads a reservation and locks its row until the transaction ends.
pub async fn lock(conn: &mut DbConn, id: ReservationId) -> anyhow::Result<Option<Reservation>> {
    let row = reservations::table
        .find(id.0)
        .select(ReservationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?;
    row.map(Reservation::try_from).transpose()
}

/// Lapsed holds, locked; rows another worker already has are skipped, so several
/// instances share the work without waiting on each other.
pub async fn lock_lapsed(
    conn: &mut DbConn,
    now: DateTime<Utc>,
    limit: u32,
) -> anyhow::Result<Vec<Reservation>> {
    let rows: Vec<ReservationRow> = reservations::table
        .filter(reservations::status.eq(ReservationStatus::Held.as_str()))
        .filter(reservations::held_until.le(naive(now)))
        .order(reservations::held_until)
        .limit(i64::from(limit))
        .select(ReservationRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    rows.into_iter().map(Reservation::try_from).collect()
}

pub async fn set_status(
    conn: &mut DbConn,
    ids: &[ReservationId],
    status: ReservationStatus,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let ids: Vec<u64> = ids.iter().map(|id| id.0).collect();
    diesel::update(reservations::table.filter(reservations::id.eq_any(ids)))
        .set((
            reservations::status.eq(status.as_str()),
            reservations::updated_at.eq(naive(now)),
        ))
        .execute(conn)
        .await
}

/// Frees the seats these reservations still hold. A seat a newer hold has taken
/// since (lazily, after the old one lapsed) belongs to that hold and is left alone.
pub async fn free_seats(conn: &mut DbConn, holds: &[ReservationId]) -> QueryResult<usize> {
    let ids: Vec<u64> = holds.iter().map(|id| id.0).collect();
    diesel::update(
        seats::table
            .filter(seats::reservation_id.eq_any(ids))
            .filter(seats::status.eq(SeatState::Held.as_str())),
    )
    .set((
        seats::status.eq(SeatState::Available.as_str()),
        seats::held_until.eq(None::<NaiveDateTime>),
        seats::reservation_id.eq(None::<u64>),
    ))
    .execute(conn)
    .await
}

/// Marks the seat sold, if this reservation still holds it. Returns whether it did.
pub async fn sell_seat(conn: &mut DbConn, r: &Reservation) -> QueryResult<bool> {
    let sold = diesel::update(
        seats::table
            .find((r.schedule_id.0, r.seat_no.get()))
            .filter(seats::reservation_id.eq(r.id.0))
            .filter(seats::status.eq(SeatState::Held.as_str())),
    )
    .set((
        seats::status.eq(SeatState::Sold.as_str()),
        seats::held_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
    .await?;
    Ok(sold == 1)
}
