//! Lookups and the schedule facts bookings need.

use chrono::{DateTime, Utc};
use domain::{ConcertId, LookupError, ScheduleId};

use super::{ScheduleInfo, Services};
use crate::db;
use crate::db::catalog::{self, ConcertRow, GradeRow, ScheduleRow, SeatRow};

/// A schedule's concert and size, from memory after the first read.
pub async fn schedule_info(svc: &Services, id: ScheduleId) -> anyhow::Result<Option<ScheduleInfo>> {
    if let Some(info) = svc.schedules.read().ok().and_then(|m| m.get(&id).copied()) {
        return Ok(Some(info));
    }
    let mut conn = svc.db().await?;
    let Some(row) = catalog::schedule(&mut conn, id)
        .await
        .map_err(db::failure)?
    else {
        return Ok(None);
    };
    let info = ScheduleInfo {
        concert_id: ConcertId(row.concert_id),
        seat_count: row.seat_count,
    };
    if let Ok(mut memo) = svc.schedules.write() {
        memo.insert(id, info);
    }
    Ok(Some(info))
}

pub async fn concerts(svc: &Services) -> Result<Vec<ConcertRow>, LookupError> {
    let mut conn = svc.db().await?;
    Ok(catalog::concerts(&mut conn).await.map_err(db::failure)?)
}

pub async fn concert(svc: &Services, id: ConcertId) -> Result<ConcertRow, LookupError> {
    let mut conn = svc.db().await?;
    catalog::concert(&mut conn, id)
        .await
        .map_err(db::failure)?
        .ok_or(LookupError::ConcertNotFound)
}

/// A concert's schedules, each with its grades and their free seats at `now`.
pub async fn schedules(
    svc: &Services,
    concert: ConcertId,
    now: DateTime<Utc>,
) -> Result<Vec<(ScheduleRow, Vec<GradeRow>)>, LookupError> {
    let mut conn = svc.db().await?;
    if catalog::concert(&mut conn, concert)
        .await
        .map_err(db::failure)?
        .is_none()
    {
        return Err(LookupError::ConcertNotFound);
    }
    Ok(catalog::schedules(&mut conn, concert, now)
        .await
        .map_err(db::failure)?)
}

pub async fn seat_map(
    svc: &Services,
    schedule: ScheduleId,
) -> Result<(ScheduleRow, Vec<SeatRow>), LookupError> {
    let mut conn = svc.db().await?;
    let row = catalog::schedule(&mut conn, schedule)
        .await
        .map_err(db::failure)?
        .ok_or(LookupError::ScheduleNotFound)?;
    let seats = catalog::seats(&mut conn, schedule)
        .await
        .map_err(db::failure)?;
    Ok((row, seats))
}
