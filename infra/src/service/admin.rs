//! Operator use cases: the schema, putting concerts on sale, and the demo data.

use chrono::{DateTime, Days, Utc};
use diesel_async::AsyncConnection as _;
use domain::sale::SaleChanges;
use domain::{
    AdminError, CancellationPolicy, ConcertId, Grade, GradeName, NewConcert, NewSchedule, Points,
    SaleSettings, ScheduleId, SeatNo,
};

use super::Services;
use super::catalog::GradeAvailability;
use crate::config::Settings;
use crate::db::{self, catalog, orders, sale_settings};
use crate::redis::cache::Entry;

/// Brings the database schema up to date (creating the database if it is missing),
/// before anything serves from it. Returns the migration versions applied.
pub async fn migrate(settings: &Settings) -> anyhow::Result<Vec<String>> {
    db::migrate(settings).await
}

/// Creates a concert with its schedules, their seats and its sale in one transaction.
pub async fn create_concert(
    svc: &Services,
    concert: &NewConcert,
    sale: &SaleSettings,
    now: DateTime<Utc>,
) -> Result<(ConcertId, Vec<ScheduleId>), AdminError> {
    let mut conn = svc.db().await?;
    let created = conn
        .transaction(async |conn| {
            let id = catalog::insert_concert(
                conn,
                &concert.title,
                &concert.artist,
                concert.cancellation,
                now,
            )
            .await?;
            sale_settings::insert(conn, id, sale, now).await?;
            let mut schedules = Vec::with_capacity(concert.schedules.len());
            for s in &concert.schedules {
                schedules.push(catalog::insert_schedule(conn, id, s).await?);
            }
            Ok::<_, diesel::result::Error>((id, schedules))
        })
        .await
        .map_err(db::failure)?;
    svc.cache.invalidate(&[Entry::Concerts]).await;
    Ok(created)
}

pub const DEMO_TITLE: &str = "boxoffice demo night";

/// Sets the price of a schedule's grade for holds from now on; holds made before keep
/// the price they were made at. Returns the grade with its free seats.
pub async fn set_grade_price(
    svc: &Services,
    schedule: ScheduleId,
    grade: &GradeName,
    price: Points,
    now: DateTime<Utc>,
) -> Result<GradeAvailability, AdminError> {
    let mut conn = svc.db().await?;
    let row = catalog::schedule(&mut conn, schedule)
        .await
        .map_err(db::failure)?
        .ok_or(AdminError::ScheduleNotFound)?;
    let found = conn
        .transaction(async |conn| orders::set_grade_price(conn, schedule, grade, price).await)
        .await
        .map_err(db::failure)?;
    if !found {
        return Err(AdminError::GradeNotFound);
    }
    svc.cache
        .invalidate(&[
            Entry::SeatMap(schedule),
            Entry::Schedules(ConcertId(row.concert_id)),
        ])
        .await;
    catalog::grades(&mut conn, &[schedule.0], now)
        .await
        .map_err(db::failure)?
        .into_iter()
        .find(|g| g.grade == grade.as_str())
        .map(GradeAvailability::from)
        .ok_or(AdminError::GradeNotFound)
}

/// The demo concert: 3 schedules of 50 seats in three grades (front rows dearer). Seeding twice
/// changes nothing; returns the concert either way.
pub async fn seed_demo(svc: &Services, now: DateTime<Utc>) -> Result<ConcertId, AdminError> {
    let mut conn = svc.db().await?;
    if let Some(id) = catalog::concert_by_title(&mut conn, DEMO_TITLE)
        .await
        .map_err(db::failure)?
    {
        return Ok(id);
    }
    drop(conn);
    let grade = |name: &str, price, first, last| -> Result<Grade, AdminError> {
        Ok(Grade {
            name: GradeName::parse(name)?,
            price: Points(price),
            first_seat: SeatNo::parse(first)?,
            last_seat: SeatNo::parse(last)?,
        })
    };
    let grades = vec![
        grade("VIP", 15_000, 1, 10)?,
        grade("R", 10_000, 11, 30)?,
        grade("S", 5_000, 31, 50)?,
    ];
    let schedules = (1..=3)
        .map(|week| {
            let starts_at = now.checked_add_days(Days::new(7 * week)).unwrap_or(now);
            NewSchedule::graded("Olympic Hall, Seoul", starts_at, grades.clone())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let concert = NewConcert::new(
        DEMO_TITLE,
        "The Rustaceans",
        schedules,
        CancellationPolicy::DEFAULT,
    )?;
    let sale = SaleSettings::new(SaleChanges::default(), now)?;
    Ok(create_concert(svc, &concert, &sale, now).await?.0)
}
