//! Gauges read when Prometheus scrapes rather than kept up to date on every change:
//! pool occupancy and the outbox backlog.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Services;
use crate::db::outbox;

/// A scrape must answer even while MySQL is slow or away; the backlog gauges then
/// keep their last value.
const BACKLOG_QUERY_TIMEOUT: Duration = Duration::from_millis(500);

pub async fn refresh(svc: &Services, now: DateTime<Utc>) {
    let m = &svc.metrics;
    let db = svc.db.state();
    let redis = svc.redis.state();
    let count = |n: u32| i64::from(n);
    m.db_pool_max.set(count(svc.settings.database_pool_size));
    for (gauge, idle, all) in [
        (&m.db_pool_connections, db.idle_connections, db.connections),
        (
            &m.redis_pool_connections,
            redis.idle_connections,
            redis.connections,
        ),
    ] {
        gauge.with_label_values(&["idle"]).set(count(idle));
        gauge
            .with_label_values(&["in_use"])
            .set(count(all.saturating_sub(idle)));
    }
    let backlog = tokio::time::timeout(BACKLOG_QUERY_TIMEOUT, async {
        let mut conn = svc.db().await?;
        anyhow::Ok(outbox::backlog(&mut conn).await?)
    })
    .await;
    match backlog {
        Ok(Ok((unsent, oldest))) => {
            m.outbox_backlog.set(unsent);
            let age = oldest.map_or(0.0, |at| {
                (now - at).to_std().unwrap_or_default().as_secs_f64()
            });
            m.outbox_oldest_age.set(age);
        }
        Ok(Err(e)) => tracing::debug!(error = format!("{e:#}"), "outbox backlog not read"),
        Err(_) => tracing::debug!("outbox backlog query timed out"),
    }
}
