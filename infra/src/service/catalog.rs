//! Lookups and the schedule facts bookings need.
//!
//! A lookup is answered from the cache when it can be, as the exact bytes the API
//! sends: the caller renders what was loaded (`render`), and the rendering is what is
//! cached. How long it may be kept is decided here.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use domain::{ConcertId, LookupError, Points, ScheduleId, ScheduleStatus, SeatState};

use super::{ScheduleInfo, Services};
use crate::db;
use crate::db::catalog::{self, ConcertRow, GradeRow, ScheduleRow};
use crate::redis::cache::{Entry, Loaded};

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

pub async fn concert(svc: &Services, id: ConcertId) -> Result<Concert, LookupError> {
    let mut conn = svc.db().await?;
    catalog::concert(&mut conn, id)
        .await
        .map_err(db::failure)?
        .map(Concert::from)
        .ok_or(LookupError::ConcertNotFound)
}

/// A concert on sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    pub id: ConcertId,
    pub title: String,
    pub artist: String,
}

impl From<ConcertRow> for Concert {
    fn from(row: ConcertRow) -> Self {
        Self {
            id: ConcertId(row.id),
            title: row.title,
            artist: row.artist,
        }
    }
}

/// A schedule (one show) of a concert, with what is still free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub concert_id: ConcertId,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub seat_count: u32,
    pub status: ScheduleStatus,
    /// The seats' grades in seat order.
    pub grades: Vec<GradeAvailability>,
}

impl Schedule {
    fn new(row: ScheduleRow, grades: Vec<GradeRow>) -> Self {
        Self {
            id: ScheduleId(row.id),
            concert_id: ConcertId(row.concert_id),
            venue: row.venue,
            starts_at: db::utc(row.starts_at),
            seat_count: row.seat_count,
            status: row.status.0,
            grades: grades.into_iter().map(GradeAvailability::from).collect(),
        }
    }

    /// Seats neither held nor sold.
    pub fn available_seats(&self) -> u64 {
        self.grades.iter().map(|g| g.available).sum()
    }
}

/// A grade of a schedule: seats `first_seat..=last_seat` at `price` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeAvailability {
    pub name: String,
    pub price: Points,
    pub first_seat: u32,
    pub last_seat: u32,
    /// Seats of this grade neither held nor sold.
    pub available: u64,
}

impl GradeAvailability {
    pub fn seat_count(&self) -> u32 {
        self.last_seat - self.first_seat + 1
    }
}

impl From<GradeRow> for GradeAvailability {
    fn from(row: GradeRow) -> Self {
        Self {
            name: row.grade,
            price: Points(row.price),
            first_seat: row.first_seat,
            last_seat: row.last_seat,
            available: row.available.unsigned_abs(),
        }
    }
}

/// Every seat of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatMap {
    pub schedule_id: ScheduleId,
    pub concert_id: ConcertId,
    pub seats: Vec<Seat>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub seat_no: u32,
    pub grade: String,
    pub price: Points,
    /// As a buyer sees it when the map was loaded (a lapsed hold shows as free).
    pub state: SeatState,
}

/// Every concert, as `render` writes the list.
pub async fn concerts(
    svc: &Services,
    render: impl FnOnce(Vec<Concert>) -> Bytes,
) -> Result<Bytes, LookupError> {
    svc.cache
        .fetch(Entry::Concerts, async {
            let mut conn = svc.db().await?;
            let rows = catalog::concerts(&mut conn).await.map_err(db::failure)?;
            Ok::<_, LookupError>(Loaded {
                body: render(rows.into_iter().map(Concert::from).collect()),
                max_age: None,
            })
        })
        .await
}

/// A concert's schedules, soonest first, each with its grades and their free
/// seats, as `render` writes the list.
pub async fn schedules(
    svc: &Services,
    concert: ConcertId,
    render: impl FnOnce(Vec<Schedule>) -> Bytes,
) -> Result<Bytes, LookupError> {
    svc.cache
        .fetch(Entry::Schedules(concert), async {
            let now = crate::now();
            let mut conn = svc.db().await?;
            if catalog::concert(&mut conn, concert)
                .await
                .map_err(db::failure)?
                .is_none()
            {
                return Err(LookupError::ConcertNotFound);
            }
            let rows = catalog::schedules(&mut conn, concert, now)
                .await
                .map_err(db::failure)?;
            let schedules = rows
                .into_iter()
                .map(|(row, grades)| Schedule::new(row, grades))
                .collect();
            Ok::<_, LookupError>(Loaded {
                body: render(schedules),
                max_age: None,
            })
        })
        .await
}

/// Every seat of `schedule` with its state, as `render` writes the map. Never
/// stale: every hold, release, expiry and payment invalidates it, and a map kept
/// in the cache goes when its first hold lapses.
pub async fn seat_map(
    svc: &Services,
    schedule: ScheduleId,
    render: impl FnOnce(SeatMap) -> Bytes,
) -> Result<Bytes, LookupError> {
    svc.cache
        .fetch(Entry::SeatMap(schedule), async {
            let now = crate::now();
            let mut conn = svc.db().await?;
            let row = catalog::schedule(&mut conn, schedule)
                .await
                .map_err(db::failure)?
                .ok_or(LookupError::ScheduleNotFound)?;
            let rows = catalog::seats(&mut conn, schedule)
                .await
                .map_err(db::failure)?;
            let max_age =
                until_first_lapse(rows.iter().filter_map(|s| s.held_until.map(db::utc)), now);
            let seats = rows
                .iter()
                .map(|s| Seat {
                    seat_no: s.seat_no,
                    grade: s.grade.clone(),
                    price: Points(s.price),
                    state: s.state_at(now),
                })
                .collect();
            let map = SeatMap {
                schedule_id: schedule,
                concert_id: ConcertId(row.concert_id),
                seats,
            };
            Ok::<_, LookupError>(Loaded {
                body: render(map),
                max_age,
            })
        })
        .await
}

/// How long a seat map loaded at `now` may be served: it shows live holds as held,
/// so only until the first of them lapses. `None` without a live hold.
fn until_first_lapse(
    held_until: impl Iterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    held_until
        .filter(|t| *t > now)
        .min()
        .and_then(|t| (t - now).to_std().ok())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_seat_map_lives_until_its_first_live_hold_lapses() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let at = |secs: i64| now + TimeDelta::seconds(secs);
        assert_eq!(until_first_lapse(std::iter::empty(), now), None);
        assert_eq!(
            until_first_lapse([at(300), at(40), at(90)].into_iter(), now),
            Some(Duration::from_secs(40))
        );
        // Lapsed holds already show as free: they set no limit.
        assert_eq!(
            until_first_lapse([at(-5), at(0), at(60)].into_iter(), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(until_first_lapse([at(-5), at(0)].into_iter(), now), None);
    }
}
