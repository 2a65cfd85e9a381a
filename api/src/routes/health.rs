use infra::Services;
use infra::service::health;
use infra::service::relay::RelayState;
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

impl From<bool> for CheckStatus {
    fn from(up: bool) -> Self {
        if up { Self::Up } else { Self::Down }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Liveness {
    pub status: CheckStatus,
}

/// The outbox relay of this instance. Kafka is optional for serving, so a
/// degraded relay does not make the instance unready: events wait in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RelayStatus {
    /// Not run on this instance (`BOXOFFICE_OUTBOX_RELAY=false`).
    Disabled,
    /// Another instance relays; this one takes over if it goes.
    Standby,
    /// Publishing to Kafka.
    Up,
    /// Kafka (or MySQL) unreachable; retrying, events wait in the outbox.
    Degraded,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Readiness {
    /// `up` only when MySQL and Redis are.
    pub status: CheckStatus,
    pub mysql: CheckStatus,
    pub redis: CheckStatus,
    pub relay: RelayStatus,
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

#[OpenApi(prefix_path = "/health", tag = "Tag::Operations")]
impl HealthApi {
    /// Liveness probe
    ///
    /// The process is up and serving.
    #[oai(path = "/live", method = "get", operation_id = "getLiveness")]
    async fn live(&self) -> Json<Liveness> {
        Json(Liveness {
            status: CheckStatus::Up,
        })
    }

    /// Readiness probe
    ///
    /// MySQL and Redis both answer. Also says how the outbox relay is doing.
    #[oai(path = "/ready", method = "get", operation_id = "getReadiness")]
    async fn ready(&self) -> ReadyResponse {
        let readiness = health::readiness(&self.svc).await;
        let relay = match readiness.relay {
            RelayState::Off => RelayStatus::Disabled,
            RelayState::Standby => RelayStatus::Standby,
            RelayState::Up => RelayStatus::Up,
            RelayState::Degraded => RelayStatus::Degraded,
        };
        let body = Json(Readiness {
            status: readiness.ready().into(),
            mysql: readiness.mysql.into(),
            redis: readiness.redis.into(),
            relay,
        });
        if readiness.ready() {
            ReadyResponse::Ready(body)
        } else {
            ReadyResponse::NotReady(body)
        }
    }
}
