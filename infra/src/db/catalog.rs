//! Concerts, schedules and seats: the catalogue that lookups show and admins create.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::count_star;
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{ConcertId, Points, ScheduleId, SeatState};

use super::schema::{concerts, schedules, seats};
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
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = seats, check_for_backend(Mysql))]
pub struct SeatRow {
    pub seat_no: u32,
    pub price: u64,
    pub status: String,
    pub held_until: Option<NaiveDateTime>,
}

impl SeatRow {
    /// The seat's state as a buyer sees it at `now` (a lapsed hold shows as free).
    pub fn state_at(&self, now: DateTime<Utc>) -> anyhow::Result<SeatState> {
        let stored = SeatState::parse(&self.status)
            .ok_or_else(|| anyhow::anyhow!("unknown seat status {:?}", self.status))?;
        Ok(stored.at(self.held_until.map(|t| t.and_utc()), now))
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

/// A concert's schedules with how many seats each has free at `now`.
pub async fn schedules(
    conn: &mut DbConn,
    concert: ConcertId,
    now: DateTime<Utc>,
) -> QueryResult<Vec<(ScheduleRow, u64)>> {
    let rows: Vec<ScheduleRow> = schedules::table
        .filter(schedules::concert_id.eq(concert.0))
        .select(ScheduleRow::as_select())
        .order((schedules::starts_at, schedules::id))
        .load(conn)
        .await?;
    let ids: Vec<u64> = rows.iter().map(|s| s.id).collect();
    let free: Vec<(u64, i64)> = seats::table
        .filter(seats::schedule_id.eq_any(&ids))
        .filter(super::reservations::seat_free_at(now))
        .group_by(seats::schedule_id)
        .select((seats::schedule_id, count_star()))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| {
            let available = free
                .iter()
                .find(|(id, _)| *id == s.id)
                .map_or(0, |(_, n)| n.unsigned_abs());
            (s, available)
        })
        .collect())
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
    now: DateTime<Utc>,
) -> QueryResult<ConcertId> {
    diesel::insert_into(concerts::table)
        .values((
            concerts::title.eq(title),
            concerts::artist.eq(artist),
            concerts::created_at.eq(naive(now)),
        ))
        .execute(conn)
        .await?;
    diesel::select(last_insert_id())
        .get_result(conn)
        .await
        .map(ConcertId)
}

/// Inserts a schedule and its seats, numbered 1.. in the order of `prices`.
pub async fn insert_schedule(
    conn: &mut DbConn,
    concert: ConcertId,
    venue: &str,
    starts_at: DateTime<Utc>,
    prices: &[Points],
) -> QueryResult<ScheduleId> {
    let seat_count = u32::try_from(prices.len()).unwrap_or(u32::MAX);
    diesel::insert_into(schedules::table)
        .values((
            schedules::concert_id.eq(concert.0),
            schedules::venue.eq(venue),
            schedules::starts_at.eq(naive(starts_at)),
            schedules::seat_count.eq(seat_count),
        ))
        .execute(conn)
        .await?;
    let schedule: u64 = diesel::select(last_insert_id()).get_result(conn).await?;
    // Batches keep each statement well under max_allowed_packet for big halls.
    for (chunk_index, chunk) in prices.chunks(1_000).enumerate() {
        let first_no = chunk_index * 1_000 + 1;
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, price)| {
                (
                    seats::schedule_id.eq(schedule),
                    seats::seat_no.eq(u32::try_from(first_no + i).unwrap_or(u32::MAX)),
                    seats::price.eq(price.0),
                    seats::status.eq(SeatState::Available.as_str()),
                )
            })
            .collect();
        diesel::insert_into(seats::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(ScheduleId(schedule))
}
