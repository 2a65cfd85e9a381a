//! Whether this instance can take traffic: the readiness probe's checks.

use std::time::Duration;

use diesel_async::RunQueryDsl as _;

use super::Services;
use super::relay::RelayState;

/// A probe must answer quickly even when a dependency hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the readiness probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub mysql: bool,
    pub redis: bool,
    /// Kafka is optional for serving (events wait in the outbox), so the relay is
    /// reported but never makes the instance unready.
    pub relay: RelayState,
}

impl Readiness {
    /// MySQL and Redis both answered.
    pub fn ready(&self) -> bool {
        self.mysql && self.redis
    }
}

/// Asks MySQL and Redis at once, each for at most [`CHECK_TIMEOUT`]. A failed check
/// is logged here; the answer only says which.
pub async fn readiness(svc: &Services) -> Readiness {
    let (mysql, redis) = tokio::join!(check(mysql_up(svc)), check(redis_up(svc)));
    Readiness {
        mysql,
        redis,
        relay: svc.relay.get(),
    }
}

async fn check(probe: impl Future<Output = anyhow::Result<()>>) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "readiness check failed");
            false
        }
        Err(_) => false,
    }
}

async fn mysql_up(svc: &Services) -> anyhow::Result<()> {
    let mut conn = svc.db().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

async fn redis_up(svc: &Services) -> anyhow::Result<()> {
    let mut conn = crate::redis::conn(&svc.redis).await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(())
}
