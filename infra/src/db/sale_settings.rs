//! Each concert's sale settings, and the per-fan counts its seat limit is kept by.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::{count_star, exists};
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{ConcertId, ReservationStatus, SaleSettings, SaleState, SeatState, UserId};

use super::schema::{reservations, sale_fans, sale_settings, schedules, seats};
use super::stored::Stored;
use super::{DbConn, naive, utc};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = sale_settings, check_for_backend(Mysql))]
struct SaleRow {
    concert_id: u64,
    state: Stored<SaleState>,
    opens_at: Option<NaiveDateTime>,
    admission_rate: Option<u32>,
    active_capacity: Option<u32>,
    max_seats_per_fan: u32,
}

impl TryFrom<SaleRow> for SaleSettings {
    type Error = anyhow::Error;

    fn try_from(row: SaleRow) -> anyhow::Result<Self> {
        Ok(Self {
            state: row.state.0,
            opens_at: row.opens_at.map(utc),
            admission_rate: row.admission_rate.map(u64::from),
            active_capacity: row.active_capacity.map(u64::from),
            max_seats_per_fan: row.max_seats_per_fan,
        })
    }
}

/// Settings as written, on creation and on every change.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = sale_settings, check_for_backend(Mysql), treat_none_as_null = true)]
struct SaleValues {
    state: &'static str,
    opens_at: Option<NaiveDateTime>,
    admission_rate: Option<u32>,
    active_capacity: Option<u32>,
    max_seats_per_fan: u32,
    updated_at: NaiveDateTime,
}

impl SaleValues {
    fn new(sale: &SaleSettings, now: DateTime<Utc>) -> Self {
        // The domain caps these far below `u32::MAX`.
        let column = |value: Option<u64>| value.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        Self {
            state: sale.state.as_str(),
            opens_at: sale.opens_at.map(naive),
            admission_rate: column(sale.admission_rate),
            active_capacity: column(sale.active_capacity),
            max_seats_per_fan: sale.max_seats_per_fan,
            updated_at: naive(now),
        }
    }
}

pub async fn insert(
    conn: &mut DbConn,
    concert: ConcertId,
    sale: &SaleSettings,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(sale_settings::table)
        .values((
            sale_settings::concert_id.eq(concert.0),
            SaleValues::new(sale, now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// `concert`'s settings, its row locked until the transaction ends.
pub async fn lock(conn: &mut DbConn, concert: ConcertId) -> anyhow::Result<Option<SaleSettings>> {
    sale_settings::table
        .find(concert.0)
        .select(SaleRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .map(SaleSettings::try_from)
        .transpose()
}

/// The settings of each of `concerts` that exists, in one query.
pub async fn load(
    conn: &mut DbConn,
    concerts: &[ConcertId],
) -> anyhow::Result<HashMap<ConcertId, SaleSettings>> {
    if concerts.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<SaleRow> = sale_settings::table
        .filter(sale_settings::concert_id.eq_any(concerts.iter().map(|c| c.0)))
        .select(SaleRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|row| Ok((ConcertId(row.concert_id), SaleSettings::try_from(row)?)))
        .collect()
}

pub async fn update(
    conn: &mut DbConn,
    concert: ConcertId,
    sale: &SaleSettings,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(sale_settings::table.find(concert.0))
        .set(SaleValues::new(sale, now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the opening of a SCHEDULED sale whose time has come; `true` for the one
/// call that did it, however many instances try.
pub async fn record_opening(
    conn: &mut DbConn,
    concert: ConcertId,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let updated = diesel::update(
        sale_settings::table
            .find(concert.0)
            .filter(sale_settings::state.eq(SaleState::Scheduled.as_str()))
            .filter(sale_settings::opens_at.le(naive(now))),
    )
    .set((
        sale_settings::state.eq(SaleState::Open.as_str()),
        sale_settings::updated_at.eq(naive(now)),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Whether every seat of every schedule of `concert` is sold. One index probe per
/// schedule (`ix_seats_status`), however many seats there are.
pub async fn sold_out(conn: &mut DbConn, concert: ConcertId) -> QueryResult<bool> {
    let concert_schedules = schedules::table
        .filter(schedules::concert_id.eq(concert.0))
        .select(schedules::id);
    let unsold = seats::table
        .filter(seats::schedule_id.eq_any(concert_schedules))
        .filter(seats::status.eq_any([SeatState::Available.as_str(), SeatState::Held.as_str()]));
    diesel::select(exists(unsold))
        .get_result::<bool>(conn)
        .await
        .map(|any_unsold| !any_unsold)
}

/// Locks the row of `user` as a fan of `concert` (creating it the first time)
/// until the transaction ends: the fan's concurrent holds queue up here, so each
/// counts the seats the one before it took.
pub async fn lock_fan(conn: &mut DbConn, concert: ConcertId, user: &UserId) -> QueryResult<()> {
    diesel::insert_into(sale_fans::table)
        .values((
            sale_fans::concert_id.eq(concert.0),
            sale_fans::user_id.eq(user.as_str()),
        ))
        .on_conflict(diesel::dsl::DuplicatedKeys)
        .do_update()
        .set(sale_fans::user_id.eq(user.as_str()))
        .execute(conn)
        .await?;
    Ok(())
}

/// The seats `user` holds (unexpired) or bought of `concert` at `now`.
pub async fn fan_seats(
    conn: &mut DbConn,
    concert: ConcertId,
    user: &UserId,
    now: DateTime<Utc>,
) -> QueryResult<u64> {
    let count: i64 = reservations::table
        .filter(reservations::user_id.eq(user.as_str()))
        .filter(reservations::concert_id.eq(concert.0))
        .filter(
            reservations::status
                .eq(ReservationStatus::Confirmed.as_str())
                .or(reservations::status
                    .eq(ReservationStatus::Held.as_str())
                    .and(reservations::held_until.gt(naive(now)))),
        )
        .select(count_star())
        .get_result(conn)
        .await?;
    Ok(count.unsigned_abs())
}
