use std::time::Duration;

use diesel_async::RunQueryDsl as _;
use infra::Services;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::Tag;

#[derive(Debug)]
pub struct HealthApi {
    pub svc: Services,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum CheckStatus {
    Up,
    Down,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Liveness {
    pub status: CheckStatus,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Readiness {
    /// `up` only when every dependency is.
    pub status: CheckStatus,
    pub mysql: CheckStatus,
    pub redis: CheckStatus,
}

#[derive(Debug, ApiResponse)]
pub enum ReadyResponse {
    /// Ready to take traffic.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// A dependency is down; the body says which.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

/// A probe must answer quickly even when a dependency hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[OpenApi(prefix_path = "/health", tag = "Tag::Operations")]
impl HealthApi {
    /// Liveness probe
    ///
    /// The process is up and serving.
    #[oai(path = "/live", method = "get", operation_id = "live")]
    async fn live(&self) -> Json<Liveness> {
        Json(Liveness {
            status: CheckStatus::Up,
        })
    }

    /// Readiness probe
    ///
    /// MySQL and Redis both answer.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self) -> ReadyResponse {
        let (mysql, redis) = tokio::join!(check(mysql_up(&self.svc)), check(redis_up(&self.svc)));
        let status = if mysql == CheckStatus::Up && redis == CheckStatus::Up {
            CheckStatus::Up
        } else {
            CheckStatus::Down
        };
        let body = Json(Readiness {
            status,
            mysql,
            redis,
        });
        if status == CheckStatus::Up {
            ReadyResponse::Ready(body)
        } else {
            ReadyResponse::NotReady(body)
        }
    }
}

async fn check(probe: impl Future<Output = anyhow::Result<()>>) -> CheckStatus {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => CheckStatus::Up,
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "readiness check failed");
            CheckStatus::Down
        }
        Err(_) => CheckStatus::Down,
    }
}

async fn mysql_up(svc: &Services) -> anyhow::Result<()> {
    let mut conn = svc.db().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

async fn redis_up(svc: &Services) -> anyhow::Result<()> {
    let mut conn = infra::redis::conn(&svc.redis).await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(())
}
