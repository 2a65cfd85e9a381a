//! Operator use cases: putting concerts on sale, and the demo data.

use chrono::{DateTime, Days, Utc};
use diesel_async::AsyncConnection as _;
use domain::sale::SaleChanges;
use domain::{AdminError, ConcertId, NewConcert, NewSchedule, Points, SaleSettings, ScheduleId};

use super::Services;
use crate::db::{self, catalog, sale_settings};
use crate::redis::cache::Entry;

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
            let id = catalog::insert_concert(conn, &concert.title, &concert.artist, now).await?;
            sale_settings::insert(conn, id, sale, now).await?;
            let mut schedules = Vec::with_capacity(concert.schedules.len());
            for s in &concert.schedules {
                schedules.push(
                    catalog::insert_schedule(conn, id, &s.venue, s.starts_at, &s.prices).await?,
                );
            }
            Ok::<_, diesel::result::Error>((id, schedules))
        })
        .await
        .map_err(db::failure)?;
    svc.cache.invalidate(&[Entry::Concerts]).await;
    Ok(created)
}

pub const DEMO_TITLE: &str = "boxoffice demo night";

/// The demo concert: 3 schedules of 50 seats (front rows dearer). Seeding twice
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
    let prices: Vec<Points> = (1..=50)
        .map(|seat| match seat {
            1..=10 => Points(15_000),
            11..=30 => Points(10_000),
            _ => Points(5_000),
        })
        .collect();
    let schedules = (1..=3)
        .map(|week| NewSchedule {
            venue: "Olympic Hall, Seoul".into(),
            starts_at: now.checked_add_days(Days::new(7 * week)).unwrap_or(now),
            prices: prices.clone(),
        })
        .collect();
    let concert = NewConcert::new(DEMO_TITLE, "The Rustaceans", schedules)?;
    let sale = SaleSettings::new(SaleChanges::default(), now)?;
    Ok(create_concert(svc, &concert, &sale, now).await?.0)
}
