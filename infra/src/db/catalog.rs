//! Concerts, schedules and seats: the catalogue that lookups show and admins create.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{CancellationPolicy, ConcertId, NewSchedule, ScheduleId, ScheduleStatus, SeatState};

use super::schema::{concerts, schedules, seat_grades, seats};
use super::stored::Stored;
use super::{DbConn, last_insert_id, naive};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = concerts, check_for_backend(Mysql))]
pub struct ConcertRow {
    pub id: u64,
    pub title: String,
    pub artist: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = schedules, check_for_backend(Mysql))]
pub struct ScheduleRow {
    pub id: u64,
    pub concert_id: u64,
    pub venue: String,
    pub starts_at: NaiveDateTime,
    pub seat_count: u32,
    pub status: Stored<ScheduleStatus>,
}

/// A grade of a schedule, with how many of its seats are free.
#[derive(Debug, Clone, QueryableByName)]
pub struct GradeRow {
    #[diesel(sql_type = diesel::sql_types::Unsigned<diesel::sql_types::BigInt>)]
    pub schedule_id: u64,
    #[diesel(sql_type = diesel::sql_types::Varchar)]
    pub grade: String,
    #[diesel(sql_type = diesel::sql_types::Unsigned<diesel::sql_types::BigInt>)]
    pub price: u64,
    #[diesel(sql_type = diesel::sql_types::Unsigned<diesel::sql_types::Integer>)]
    pub first_seat: u32,
    #[diesel(sql_type = diesel::sql_types::Unsigned<diesel::sql_types::Integer>)]
    pub last_seat: u32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub available: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = seats, check_for_backend(Mysql))]
pub struct SeatRow {
    pub seat_no: u32,
    pub grade: String,
    pub price: u64,
    pub status: Stored<SeatState>,
    pub held_until: Option<NaiveDateTime>,
}

impl SeatRow {
    /// The seat's state as a buyer sees it at `now` (a lapsed hold shows as free).
    pub fn state_at(&self, now: DateTime<Utc>) -> SeatState {
        self.status.0.at(self.held_until.map(|t| t.and_utc()), now)
    }
}

pub async fn concerts(conn: &mut DbConn) -> QueryResult<Vec<ConcertRow>> {
    concerts::table
        .select(ConcertRow::as_select())
        .order(concerts::id)
        .load(conn)
        .await
}

pub async fn concert(conn: &mut DbConn, id: ConcertId) -> QueryResult<Option<ConcertRow>> {
    concerts::table
        .find(id.0)
        .select(ConcertRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn concert_by_title(conn: &mut DbConn, title: &str) -> QueryResult<Option<ConcertId>> {
    concerts::table
        .filter(concerts::title.eq(title))
        .select(concerts::id)
        .first(conn)
        .await
        .optional()
        .map(|id| id.map(ConcertId))
}

/// A concert's schedules, each with its grades and how many seats of each are free
/// at `now`.
pub async fn schedules(
    conn: &mut DbConn,
    concert: ConcertId,
    now: DateTime<Utc>,
) -> QueryResult<Vec<(ScheduleRow, Vec<GradeRow>)>> {
    let rows: Vec<ScheduleRow> = schedules::table
        .filter(schedules::concert_id.eq(concert.0))
        .select(ScheduleRow::as_select())
        .order((schedules::starts_at, schedules::id))
        .load(conn)
        .await?;
    let ids: Vec<u64> = rows.iter().map(|s| s.id).collect();
    let mut grades = grades(conn, &ids, now).await?;
    Ok(rows
        .into_iter()
        .map(|s| {
            let (mine, rest) = grades.drain(..).partition(|g| g.schedule_id == s.id);
            grades = rest;
            (s, mine)
        })
        .collect())
}

/// The grades of these schedules in seat order, each with its free seats at `now`.
pub async fn grades(
    conn: &mut DbConn,
    schedules: &[u64],
    now: DateTime<Utc>,
) -> QueryResult<Vec<GradeRow>> {
    if schedules.is_empty() {
        return Ok(Vec::new());
    }
    let list = schedules
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    diesel::sql_query(format!(
        "SELECT g.schedule_id, g.grade, g.price, g.first_seat, g.last_seat,
                COUNT(s.seat_no) AS available
         FROM seat_grades g
         LEFT JOIN seats s ON s.schedule_id = g.schedule_id AND s.grade = g.grade
              AND (s.status = ? OR (s.status = ? AND s.held_until <= ?))
         WHERE g.schedule_id IN ({list})
         GROUP BY g.schedule_id, g.grade, g.price, g.first_seat, g.last_seat
         ORDER BY g.schedule_id, g.first_seat"
    ))
    .bind::<diesel::sql_types::Varchar, _>(SeatState::Available.as_str())
    .bind::<diesel::sql_types::Varchar, _>(SeatState::Held.as_str())
    .bind::<diesel::sql_types::Datetime, _>(naive(now))
    .load(conn)
    .await
}

/// The concert's cancellation policy and when the show starts.
pub async fn cancellation_terms(
    conn: &mut DbConn,
    schedule: ScheduleId,
) -> anyhow::Result<Option<(CancellationPolicy, DateTime<Utc>)>> {
    let row: Option<(u32, u8, NaiveDateTime)> = schedules::table
        .inner_join(concerts::table)
        .filter(schedules::id.eq(schedule.0))
        .select((
            concerts::cancellation_cutoff_hours,
            concerts::cancellation_fee_percent,
            schedules::starts_at,
        ))
        .first(conn)
        .await
        .optional()?;
    row.map(|(hours, percent, starts)| {
        let policy = CancellationPolicy::new(hours.into(), percent.into())
            .map_err(|e| anyhow::anyhow!("stored cancellation policy: {e}"))?;
        Ok((policy, starts.and_utc()))
    })
    .transpose()
}

pub async fn schedule(conn: &mut DbConn, id: ScheduleId) -> QueryResult<Option<ScheduleRow>> {
    schedules::table
        .find(id.0)
        .select(ScheduleRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn seats(conn: &mut DbConn, schedule: ScheduleId) -> QueryResult<Vec<SeatRow>> {
    seats::table
        .filter(seats::schedule_id.eq(schedule.0))
        .select(SeatRow::as_select())
        .order(seats::seat_no)
        .load(conn)
        .await
}

pub async fn insert_concert(
    conn: &mut DbConn,
    title: &str,
    artist: &str,
    cancellation: CancellationPolicy,
    now: DateTime<Utc>,
) -> QueryResult<ConcertId> {
    diesel::insert_into(concerts::table)
        .values((
            concerts::title.eq(title),
            concerts::artist.eq(artist),
            concerts::created_at.eq(naive(now)),
            concerts::cancellation_cutoff_hours.eq(cancellation.cutoff_hours),
            concerts::cancellation_fee_percent.eq(cancellation.fee_percent),
        ))
        .execute(conn)
        .await?;
    diesel::select(last_insert_id())
        .get_result(conn)
        .await
        .map(ConcertId)
}

/// Inserts a schedule, its grades and its seats, numbered 1.. in the order of
/// `schedule.prices`.
pub async fn insert_schedule(
    conn: &mut DbConn,
    concert: ConcertId,
    schedule: &NewSchedule,
) -> QueryResult<ScheduleId> {
    let seat_count = u32::try_from(schedule.prices.len()).unwrap_or(u32::MAX);
    diesel::insert_into(schedules::table)
        .values((
            schedules::concert_id.eq(concert.0),
            schedules::venue.eq(&schedule.venue),
            schedules::starts_at.eq(naive(schedule.starts_at)),
            schedules::seat_count.eq(seat_count),
        ))
        .execute(conn)
        .await?;
    let id: u64 = diesel::select(last_insert_id()).get_result(conn).await?;
    let grades: Vec<_> = schedule
        .grades
        .iter()
        .map(|g| {
            (
                seat_grades::schedule_id.eq(id),
                seat_grades::grade.eq(g.name.as_str()),
                seat_grades::price.eq(g.price.0),
                seat_grades::first_seat.eq(g.first_seat.get()),
                seat_grades::last_seat.eq(g.last_seat.get()),
            )
        })
        .collect();
    diesel::insert_into(seat_grades::table)
        .values(grades)
        .execute(conn)
        .await?;
    let seats: Vec<_> = schedule.prices.iter().zip(schedule.seat_grades()).collect();
    // Batches keep each statement well under max_allowed_packet for big halls.
    for (chunk_index, chunk) in seats.chunks(1_000).enumerate() {
        let first_no = chunk_index * 1_000 + 1;
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, (price, grade))| {
                (
                    seats::schedule_id.eq(id),
                    seats::seat_no.eq(u32::try_from(first_no + i).unwrap_or(u32::MAX)),
                    seats::price.eq(price.0),
                    seats::grade.eq(grade.as_str()),
                    seats::status.eq(SeatState::Available.as_str()),
                )
            })
            .collect();
        diesel::insert_into(seats::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(ScheduleId(id))
}
