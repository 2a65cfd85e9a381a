use chrono::{DateTime, Utc};
use domain::{ConcertId, TokenState};
use infra::Services;
use infra::service::queue::Credentials;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::sale::PublicSaleState;
use super::{Tag, absent_or_value};
use crate::auth::QueueAuth;
use crate::error::{Answer, ApiResult, JSON_BODY, QUEUE_TOKEN, failures};
use crate::text::{Text, UserIdText};

#[derive(Debug)]
pub struct QueueApi {
    pub svc: Services,
}

/// Who joins which concert's line. The fan proves who they are with `idToken`;
/// `userId` is only trusted on a server in development mode.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct JoinRequest {
    #[oai(validator(minimum(value = "1"), maximum(value = "9007199254740991")))]
    pub concert_id: u64,
    /// The fan's identity token: a JWT (RS256, ES256 or EdDSA) from the operator's
    /// login service, for boxoffice's audience, unexpired. The fan is its `sub`
    /// (1-64 letters, digits, `-`, `_`, `.` or `@`). Required unless the server runs
    /// in development mode.
    #[oai(validator(max_length = 16384))]
    pub id_token: MaybeUndefined<Text>,
    /// With `idToken`: optional, and must equal its `sub`. In development mode
    /// (`BOXOFFICE_IDENTITY_MODE=development`, demos only): the user, trusted as
    /// sent; 1-64 letters, digits, `-`, `_`, `.` or `@`.
    pub user_id: MaybeUndefined<Text<UserIdText>>,
}

impl poem_openapi::types::Example for JoinRequest {
    fn example() -> Self {
        Self {
            concert_id: 1,
            id_token: MaybeUndefined::Value(Text::from(
                "eyJhbGciOiJFUzI1NiIsImtpZCI6ImxvZ2luLTEiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2xvZ2luLmV4YW1wbGUuY29tIiwiYXVkIjoiYm94b2ZmaWNlIiwic3ViIjoidXNlci00MiIsImV4cCI6MTc5MDAwMDAwMH0.c2lnbmF0dXJl",
            )),
            user_id: MaybeUndefined::Undefined,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueState {
    /// In line, not admitted yet.
    Waiting,
    /// Admitted: may hold seats and pay until `activeUntil`.
    Active,
    /// Over: timed out, left, or used by a payment. Join again for a new token.
    Expired,
}

impl From<TokenState> for QueueState {
    fn from(state: TokenState) -> Self {
        match state {
            TokenState::Waiting => Self::Waiting,
            TokenState::Active => Self::Active,
            TokenState::Expired => Self::Expired,
        }
    }
}

/// A place in a concert's waiting room.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct QueueTicket {
    /// The bearer token for every later call. Keep it secret.
    pub token: String,
    pub concert_id: u64,
    pub user_id: String,
    pub state: QueueState,
    /// Place in line (1 = next) while WAITING; absent in the pre-queue.
    pub position: Option<u64>,
    /// Estimated seconds until admission while WAITING.
    pub eta_seconds: Option<u64>,
    /// Until when an ACTIVE token may book.
    pub active_until: Option<DateTime<Utc>>,
    /// In the pre-queue of a sale not yet open: when it opens. Everyone in the
    /// pre-queue gets a place in a random order at the opening, ahead of everyone
    /// who joins later; joining earlier gives no better place.
    pub opens_at: Option<DateTime<Utc>>,
}

impl poem_openapi::types::Example for QueueTicket {
    fn example() -> Self {
        Self {
            token: "1.9f2c4e0b7a1d3c5e8f6a2b4d6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4".into(),
            concert_id: 1,
            user_id: "user-42".into(),
            state: QueueState::Waiting,
            position: Some(12),
            eta_seconds: Some(6),
            active_until: None,
            opens_at: None,
        }
    }
}

/// Where the caller stands.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct QueueStatus {
    pub concert_id: u64,
    pub state: QueueState,
    /// Place in line (1 = next) while WAITING; absent in the pre-queue.
    pub position: Option<u64>,
    /// People ahead while WAITING (`position - 1`).
    pub people_ahead: Option<u64>,
    /// Estimated seconds until admission while WAITING.
    pub eta_seconds: Option<u64>,
    /// Until when an ACTIVE token may book.
    pub active_until: Option<DateTime<Utc>>,
    /// In the pre-queue of a sale not yet open: when it opens.
    pub opens_at: Option<DateTime<Utc>>,
    /// The concert's sale. A fan sent away because the line closed or every seat
    /// sold is EXPIRED with `saleState` CLOSED or SOLD_OUT.
    pub sale_state: Option<PublicSaleState>,
}

impl poem_openapi::types::Example for QueueStatus {
    fn example() -> Self {
        Self {
            concert_id: 1,
            state: QueueState::Active,
            position: None,
            people_ahead: None,
            eta_seconds: None,
            active_until: Some(DateTime::from_timestamp(1_790_000_600, 0).unwrap_or_default()),
            opens_at: None,
            sale_state: Some(PublicSaleState::Open),
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum JoinResponse {
    /// A new place in line.
    #[oai(status = 201)]
    Created(Json<QueueTicket>),
    /// The caller already had a live token for this concert: the same token and place.
    #[oai(status = 200)]
    Existing(Json<QueueTicket>),
}

#[derive(Debug, ApiResponse)]
pub enum LeaveResponse {
    /// The token is ended.
    #[oai(status = 204)]
    Left,
}

failures!(JoinQueueFailures: JSON_BODY;
    MissingIdentity, InvalidIdentity, IdentityExpired, IdentityMismatch, InvalidUserId,
    ConcertNotFound, SaleClosed, SoldOut, RateLimited);
failures!(
    /// Reading or ending one's own queue token.
    QueueTokenFailures: QUEUE_TOKEN
);

#[OpenApi(prefix_path = "/v1/queue", tag = "Tag::Queue")]
impl QueueApi {
    /// Join a concert's waiting room
    ///
    /// Verifies who the fan is (`idToken`, signed by the operator's login service)
    /// and issues the bearer token that every booking call needs, bound to this fan
    /// and concert. Idempotent per (fan, concert): joining again returns the same
    /// token and place while it is live.
    #[oai(path = "/tokens", method = "post", operation_id = "joinQueue")]
    async fn join(&self, body: Json<JoinRequest>) -> Answer<JoinResponse, JoinQueueFailures> {
        let credentials = Credentials {
            id_token: absent_or_value(&body.id_token, "idToken")?.map(|t| t.0.as_str()),
            user_id: absent_or_value(&body.user_id, "userId")?.map(|t| t.0.as_str()),
        };
        let concert = ConcertId(body.concert_id);
        let (user, joined) = infra::service::queue::join(&self.svc, credentials, concert).await?;
        let grant = &joined.grant;
        let opens_at = if grant.prequeued {
            opening(&self.svc, concert).await?
        } else {
            None
        };
        let ticket = QueueTicket {
            token: joined.token.to_string(),
            concert_id: grant.concert_id.0,
            user_id: user.to_string(),
            state: grant.state.into(),
            position: grant.position,
            eta_seconds: grant.eta_seconds,
            active_until: grant.active_until,
            opens_at,
        };
        Ok(if joined.created {
            JoinResponse::Created(Json(ticket))
        } else {
            JoinResponse::Existing(Json(ticket))
        })
    }

    /// Where am I in line?
    ///
    /// The polling fallback for the waiting-room WebSocket `GET /v1/queue/ws?token=`.
    /// Asking counts as being present: a waiter who neither polls nor keeps the
    /// socket open for the grace period (2 minutes by default) leaves the line.
    #[oai(
        path = "/tokens/current",
        method = "get",
        operation_id = "getQueueStatus"
    )]
    async fn status(&self, auth: QueueAuth) -> Answer<Json<QueueStatus>, QueueTokenFailures> {
        let grant = &auth.0.grant;
        let sale = infra::service::sale::current(&self.svc, grant.concert_id).await?;
        Ok(Json(QueueStatus {
            concert_id: grant.concert_id.0,
            state: grant.state.into(),
            position: grant.position,
            people_ahead: grant.position.map(|p| p.saturating_sub(1)),
            eta_seconds: grant.eta_seconds,
            active_until: grant
                .active_until
                .filter(|_| grant.state == TokenState::Active),
            opens_at: sale
                .and_then(|s| s.settings.opens_at)
                .filter(|_| grant.prequeued),
            sale_state: sale.map(|s| s.fan_view(infra::now()).into()),
        }))
    }

    /// Leave the waiting room
    ///
    /// Ends the token at once (ACTIVE or WAITING), freeing the place for others.
    #[oai(
        path = "/tokens/current",
        method = "delete",
        operation_id = "leaveQueue"
    )]
    async fn leave(&self, auth: QueueAuth) -> Answer<LeaveResponse, QueueTokenFailures> {
        infra::service::queue::end(&self.svc, &auth.0.token, &auth.0.grant).await?;
        Ok(LeaveResponse::Left)
    }
}

/// When `concert`'s sale opens, for a fan in its pre-queue.
async fn opening(svc: &Services, concert: ConcertId) -> ApiResult<Option<DateTime<Utc>>> {
    Ok(infra::service::sale::current(svc, concert)
        .await?
        .and_then(|s| s.settings.opens_at))
}
