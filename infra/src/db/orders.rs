//! Orders and the seat rows their reservations hold. An order's status is written
//! on the order and on each of its reservations in one statement, so the two never
//! disagree; the seat rows say who has a seat, and every write to them is
//! conditional on the state it expects.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Unsigned, Varchar};
use diesel_async::RunQueryDsl;
use domain::{
    CancelReason, ConcertId, GradeName, Order, OrderId, OrderSeat, OrderStatus, Points, Refund,
    ReservationId, ScheduleId, ScheduleStatus, SeatNo, SeatState, UserId,
};

use super::schema::{orders, reservations, schedules, seats};
use super::stored::Stored;
use super::{DbConn, last_insert_id, naive, utc};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(Mysql))]
struct OrderRow {
    id: u64,
    user_id: String,
    concert_id: u64,
    schedule_id: u64,
    status: Stored<OrderStatus>,
    total: u64,
    held_until: NaiveDateTime,
    refund: Option<u64>,
    fee: Option<u64>,
    cancelled_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = reservations, check_for_backend(Mysql))]
struct LineRow {
    id: u64,
    order_id: u64,
    seat_no: u32,
    grade: String,
    price: u64,
}

impl OrderRow {
    fn with_lines(self, lines: &[LineRow]) -> anyhow::Result<Order> {
        let seats = lines
            .iter()
            .filter(|l| l.order_id == self.id)
            .map(|l| {
                Ok(OrderSeat {
                    reservation_id: ReservationId(l.id),
                    seat_no: SeatNo::parse(l.seat_no.into()).context("stored seat number")?,
                    grade: GradeName::parse(&l.grade).context("stored grade")?,
                    price: Points(l.price),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refund = match (self.refund, self.fee, self.cancelled_at) {
            (Some(refund), Some(fee), Some(at)) => Some(Refund {
                refund: Points(refund),
                fee: Points(fee),
                at: utc(at),
            }),
            _ => None,
        };
        Ok(Order {
            id: OrderId(self.id),
            user_id: UserId::parse(&self.user_id).context("stored user id")?,
            concert_id: ConcertId(self.concert_id),
            schedule_id: ScheduleId(self.schedule_id),
            status: self.status.0,
            seats,
            total: Points(self.total),
            held_until: utc(self.held_until),
            created_at: utc(self.created_at),
            refund,
        })
    }
}

/// Reads these orders' seats (one statement) and puts each order together.
async fn assemble(conn: &mut DbConn, rows: Vec<OrderRow>) -> anyhow::Result<Vec<Order>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<u64> = rows.iter().map(|o| o.id).collect();
    let lines: Vec<LineRow> = reservations::table
        .filter(reservations::order_id.eq_any(&ids))
        .order((reservations::order_id, reservations::seat_no))
        .select(LineRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter().map(|o| o.with_lines(&lines)).collect()
}

/// A seat row read under a row lock.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = seats, check_for_backend(Mysql))]
pub struct LockedSeat {
    pub seat_no: u32,
    pub grade: String,
    pub price: u64,
    pub status: Stored<SeatState>,
    pub held_until: Option<NaiveDateTime>,
}

impl LockedSeat {
    pub fn can_hold(&self, now: DateTime<Utc>) -> bool {
        self.status.0.can_hold(self.held_until.map(utc), now)
    }
}

/// Whether the show is on sale (plain read: a cancellation committed just after it
/// is caught by the worker that cancels the show's orders).
pub async fn schedule_status(
    conn: &mut DbConn,
    schedule: ScheduleId,
) -> anyhow::Result<Option<ScheduleStatus>> {
    let status: Option<Stored<ScheduleStatus>> = schedules::table
        .find(schedule.0)
        .select(schedules::status)
        .first(conn)
        .await
        .optional()?;
    Ok(status.map(|s| s.0))
}

/// Reads these seats and locks their rows until the transaction ends, in seat order
/// (the primary key's), the one order every transaction locks seats in.
pub async fn lock_seats(
    conn: &mut DbConn,
    schedule: ScheduleId,
    numbers: &[SeatNo],
) -> QueryResult<Vec<LockedSeat>> {
    let numbers: Vec<u32> = numbers.iter().map(|n| n.get()).collect();
    seats::table
        .filter(seats::schedule_id.eq(schedule.0))
        .filter(seats::seat_no.eq_any(numbers))
        .order(seats::seat_no)
        .select(LockedSeat::as_select())
        .for_update()
        .load(conn)
        .await
}

/// The lowest-numbered seats of `grade` free at `now`, at most `quantity`, locked;
/// seats another transaction is taking right now are skipped, not waited for.
pub async fn lock_free_of_grade(
    conn: &mut DbConn,
    schedule: ScheduleId,
    grade: &GradeName,
    quantity: u32,
    now: DateTime<Utc>,
) -> QueryResult<Vec<LockedSeat>> {
    seats::table
        .filter(seats::schedule_id.eq(schedule.0))
        .filter(seats::grade.eq(grade.as_str()))
        .filter(super::reservations::seat_free_at(now))
        .order(seats::seat_no)
        .limit(i64::from(quantity))
        .select(LockedSeat::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
}

/// Whether the schedule has seats of this grade.
pub async fn grade_exists(
    conn: &mut DbConn,
    schedule: ScheduleId,
    grade: &GradeName,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        super::schema::seat_grades::table.find((schedule.0, grade.as_str())),
    ))
    .get_result(conn)
    .await
}

/// An order about to be written: seats locked and checked free by the caller.
#[derive(Debug)]
pub struct NewOrder<'a> {
    pub user: &'a UserId,
    pub concert: ConcertId,
    pub schedule: ScheduleId,
    /// In seat order.
    pub seats: &'a [LockedSeat],
    pub held_until: DateTime<Utc>,
}

/// Records an order, its reservations and the seats they hold.
pub async fn insert(
    conn: &mut DbConn,
    new: NewOrder<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<Order> {
    let total: u64 = new.seats.iter().map(|s| s.price).sum();
    let count = u32::try_from(new.seats.len())?;
    diesel::insert_into(orders::table)
        .values((
            orders::user_id.eq(new.user.as_str()),
            orders::concert_id.eq(new.concert.0),
            orders::schedule_id.eq(new.schedule.0),
            orders::status.eq(OrderStatus::Held.as_str()),
            orders::seat_count.eq(count),
            orders::total.eq(total),
            orders::held_until.eq(naive(new.held_until)),
            orders::created_at.eq(naive(now)),
            orders::updated_at.eq(naive(now)),
        ))
        .execute(conn)
        .await?;
    let id: u64 = diesel::select(last_insert_id()).get_result(conn).await?;
    let lines: Vec<_> = new
        .seats
        .iter()
        .map(|s| {
            (
                reservations::order_id.eq(id),
                reservations::user_id.eq(new.user.as_str()),
                reservations::concert_id.eq(new.concert.0),
                reservations::schedule_id.eq(new.schedule.0),
                reservations::seat_no.eq(s.seat_no),
                reservations::grade.eq(s.grade.as_str()),
                reservations::price.eq(s.price),
                reservations::status.eq(OrderStatus::Held.as_str()),
                reservations::held_until.eq(naive(new.held_until)),
                reservations::created_at.eq(naive(now)),
                reservations::updated_at.eq(naive(now)),
            )
        })
        .collect();
    diesel::insert_into(reservations::table)
        .values(lines)
        .execute(conn)
        .await?;
    // The seat rows are locked and their hold condition re-checked here: this UPDATE
    // is what makes the hold true, so it must take every seat.
    let taken = diesel::sql_query(
        "UPDATE seats s JOIN reservations r
            ON r.schedule_id = s.schedule_id AND r.seat_no = s.seat_no
         SET s.status = ?, s.held_until = ?, s.reservation_id = r.id
         WHERE r.order_id = ?
           AND (s.status = ? OR (s.status = ? AND s.held_until <= ?))",
    )
    .bind::<Varchar, _>(SeatState::Held.as_str())
    .bind::<Datetime, _>(naive(new.held_until))
    .bind::<Unsigned<BigInt>, _>(id)
    .bind::<Varchar, _>(SeatState::Available.as_str())
    .bind::<Varchar, _>(SeatState::Held.as_str())
    .bind::<Datetime, _>(naive(now))
    .execute(conn)
    .await?;
    anyhow::ensure!(
        taken == new.seats.len(),
        "seats of order {id} changed under their row locks"
    );
    // The order row is what was just written; only its lines' ids are new to us.
    let written = OrderRow {
        id,
        user_id: new.user.as_str().to_owned(),
        concert_id: new.concert.0,
        schedule_id: new.schedule.0,
        status: Stored(OrderStatus::Held),
        total,
        held_until: naive(new.held_until),
        refund: None,
        fee: None,
        cancelled_at: None,
        created_at: naive(now),
    };
    assemble(conn, vec![written])
        .await?
        .pop()
        .context("the order just written")
}

pub async fn find(conn: &mut DbConn, id: OrderId) -> anyhow::Result<Option<Order>> {
    let rows: Vec<OrderRow> = orders::table
        .find(id.0)
        .select(OrderRow::as_select())
        .load(conn)
        .await?;
    Ok(assemble(conn, rows).await?.pop())
}

/// Reads an order and locks its row until the transaction ends.
pub async fn lock(conn: &mut DbConn, id: OrderId) -> anyhow::Result<Option<Order>> {
    let rows: Vec<OrderRow> = orders::table
        .find(id.0)
        .select(OrderRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    Ok(assemble(conn, rows).await?.pop())
}

/// The order a reservation is part of.
pub async fn of_reservation(
    conn: &mut DbConn,
    reservation: ReservationId,
) -> QueryResult<Option<OrderId>> {
    reservations::table
        .find(reservation.0)
        .select(reservations::order_id)
        .first(conn)
        .await
        .optional()
        .map(|id| id.map(OrderId))
}

/// A fan's orders of a concert, newest first.
pub async fn of_fan(
    conn: &mut DbConn,
    user: &UserId,
    concert: ConcertId,
    limit: u32,
) -> anyhow::Result<Vec<Order>> {
    let rows: Vec<OrderRow> = orders::table
        .filter(orders::user_id.eq(user.as_str()))
        .filter(orders::concert_id.eq(concert.0))
        .order(orders::id.desc())
        .limit(i64::from(limit))
        .select(OrderRow::as_select())
        .load(conn)
        .await?;
    assemble(conn, rows).await
}

/// Lapsed holds, locked; orders another worker already has are skipped, so several
/// instances share the work without waiting on each other.
pub async fn lock_lapsed(
    conn: &mut DbConn,
    now: DateTime<Utc>,
    limit: u32,
) -> anyhow::Result<Vec<Order>> {
    let rows: Vec<OrderRow> = orders::table
        .filter(orders::status.eq(OrderStatus::Held.as_str()))
        .filter(orders::held_until.le(naive(now)))
        .order(orders::held_until)
        .limit(i64::from(limit))
        .select(OrderRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    assemble(conn, rows).await
}

/// Held or paid orders of cancelled shows, locked, skipping those another worker has.
pub async fn lock_of_cancelled_shows(conn: &mut DbConn, limit: u32) -> anyhow::Result<Vec<Order>> {
    let cancelled = schedules::table
        .filter(schedules::status.eq(ScheduleStatus::Cancelled.as_str()))
        .select(schedules::id);
    let rows: Vec<OrderRow> = orders::table
        .filter(orders::schedule_id.eq_any(cancelled))
        .filter(
            orders::status.eq_any([OrderStatus::Held.as_str(), OrderStatus::Confirmed.as_str()]),
        )
        .order(orders::id)
        .limit(i64::from(limit))
        .select(OrderRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    assemble(conn, rows).await
}

/// Sets the status of these orders and of all their reservations, in one statement.
pub async fn set_status(
    conn: &mut DbConn,
    ids: &[OrderId],
    status: OrderStatus,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let list = id_list(ids.iter().map(|id| id.0));
    diesel::sql_query(format!(
        "UPDATE orders o JOIN reservations r ON r.order_id = o.id
         SET o.status = ?, o.updated_at = ?, r.status = ?, r.updated_at = ?
         WHERE o.id IN ({list})"
    ))
    .bind::<Varchar, _>(status.as_str())
    .bind::<Datetime, _>(naive(now))
    .bind::<Varchar, _>(status.as_str())
    .bind::<Datetime, _>(naive(now))
    .execute(conn)
    .await
}

/// Records a cancellation: the order and its reservations CANCELLED, with the refund.
pub async fn set_cancelled(
    conn: &mut DbConn,
    id: OrderId,
    refund: Refund,
    reason: CancelReason,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE orders o JOIN reservations r ON r.order_id = o.id
         SET o.status = ?, o.cancel_reason = ?, o.refund = ?, o.fee = ?, o.cancelled_at = ?,
             o.updated_at = ?, r.status = ?, r.updated_at = ?
         WHERE o.id = ?",
    )
    .bind::<Varchar, _>(OrderStatus::Cancelled.as_str())
    .bind::<Varchar, _>(reason.as_stored())
    .bind::<Unsigned<BigInt>, _>(refund.refund.0)
    .bind::<Unsigned<BigInt>, _>(refund.fee.0)
    .bind::<Datetime, _>(naive(refund.at))
    .bind::<Datetime, _>(naive(refund.at))
    .bind::<Varchar, _>(OrderStatus::Cancelled.as_str())
    .bind::<Datetime, _>(naive(refund.at))
    .bind::<Unsigned<BigInt>, _>(id.0)
    .execute(conn)
    .await
}

/// Marks these reservations' seats sold, if they still hold them. Returns how many.
pub async fn sell_seats(conn: &mut DbConn, lines: &[ReservationId]) -> QueryResult<usize> {
    let ids: Vec<u64> = lines.iter().map(|id| id.0).collect();
    diesel::update(
        seats::table
            .filter(seats::reservation_id.eq_any(ids))
            .filter(seats::status.eq(SeatState::Held.as_str())),
    )
    .set((
        seats::status.eq(SeatState::Sold.as_str()),
        seats::held_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
    .await
}

/// Marks a show cancelled. Returns whether it was on sale until now.
pub async fn cancel_schedule(conn: &mut DbConn, schedule: ScheduleId) -> QueryResult<bool> {
    let changed = diesel::update(
        schedules::table
            .find(schedule.0)
            .filter(schedules::status.eq(ScheduleStatus::OnSale.as_str())),
    )
    .set(schedules::status.eq(ScheduleStatus::Cancelled.as_str()))
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// A cancelled show's progress: its orders still to cancel (held or paid), and
/// those its cancellation refunded.
pub async fn show_progress(conn: &mut DbConn, schedule: ScheduleId) -> QueryResult<(u64, u64)> {
    let remaining: i64 = orders::table
        .filter(orders::schedule_id.eq(schedule.0))
        .filter(
            orders::status.eq_any([OrderStatus::Held.as_str(), OrderStatus::Confirmed.as_str()]),
        )
        .count()
        .get_result(conn)
        .await?;
    let refunded: i64 = orders::table
        .filter(orders::schedule_id.eq(schedule.0))
        .filter(orders::cancel_reason.eq(CancelReason::ShowCancelled.as_stored()))
        .count()
        .get_result(conn)
        .await?;
    Ok((remaining.unsigned_abs(), refunded.unsigned_abs()))
}

/// Sets a grade's price for holds from now on (existing holds keep theirs).
/// Returns whether the grade exists.
pub async fn set_grade_price(
    conn: &mut DbConn,
    schedule: ScheduleId,
    grade: &GradeName,
    price: Points,
) -> QueryResult<bool> {
    use super::schema::seat_grades;
    let found = diesel::update(seat_grades::table.find((schedule.0, grade.as_str())))
        .set(seat_grades::price.eq(price.0))
        .execute(conn)
        .await?;
    if found == 0 {
        // MySQL counts changed rows: an unchanged price is found, not missing.
        let exists = grade_exists(conn, schedule, grade).await?;
        if !exists {
            return Ok(false);
        }
    }
    diesel::update(
        seats::table
            .filter(seats::schedule_id.eq(schedule.0))
            .filter(seats::grade.eq(grade.as_str())),
    )
    .set(seats::price.eq(price.0))
    .execute(conn)
    .await?;
    Ok(true)
}

fn id_list(ids: impl Iterator<Item = u64>) -> String {
    ids.map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}
