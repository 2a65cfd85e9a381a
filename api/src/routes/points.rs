use chrono::{DateTime, Utc};
use domain::{ChargeAmount, IdempotencyKey};
use infra::Services;
use infra::service::points;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::Tag;
use crate::auth::QueueAuth;
use crate::error::{Answer, JSON_BODY, PARAMETERS, QUEUE_TOKEN, failures};
use crate::text::{IdempotencyKeyText, Int, Text, TopUp};

#[derive(Debug)]
pub struct PointsApi {
    pub svc: Services,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct Balance {
    pub user_id: String,
    /// Points available to pay with.
    pub balance: u64,
}

impl poem_openapi::types::Example for Balance {
    fn example() -> Self {
        Self {
            user_id: "user-42".into(),
            balance: 35_000,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct ChargeRequest {
    /// Points to add: a whole number from 1 to 10000000.
    pub amount: TopUp,
}

impl poem_openapi::types::Example for ChargeRequest {
    fn example() -> Self {
        Self {
            amount: Int(50_000),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct Charge {
    pub amount: u64,
    /// The balance right after this charge.
    pub balance: u64,
    pub charged_at: DateTime<Utc>,
}

impl poem_openapi::types::Example for Charge {
    fn example() -> Self {
        Self {
            amount: 50_000,
            balance: 50_000,
            charged_at: DateTime::from_timestamp(1_790_000_600, 0).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerKind {
    Charge,
    Payment,
    /// A cancelled order's total, credited back.
    Refund,
    /// The cancellation fee kept from a refund.
    Fee,
}

impl From<domain::LedgerKind> for LedgerKind {
    fn from(kind: domain::LedgerKind) -> Self {
        match kind {
            domain::LedgerKind::Charge => Self::Charge,
            domain::LedgerKind::Payment => Self::Payment,
            domain::LedgerKind::Refund => Self::Refund,
            domain::LedgerKind::Fee => Self::Fee,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct LedgerEntry {
    pub id: u64,
    pub kind: LedgerKind,
    /// Positive for a charge or refund, negative for a payment or fee.
    pub amount: i64,
    pub balance_after: u64,
    /// For a payment, refund or fee: the order's first seat's reservation.
    pub reservation_id: Option<u64>,
    /// For a payment, refund or fee: the order.
    pub order_id: Option<u64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct LedgerPage {
    /// Newest first.
    pub entries: Vec<LedgerEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<u64>,
}

#[derive(Debug, ApiResponse)]
pub enum ChargeResponse {
    /// Charged. A retry with the same Idempotency-Key answers the same, with
    /// `Idempotent-Replayed: true`, and charges nothing more.
    #[oai(status = 201)]
    Created(
        Json<Charge>,
        #[oai(header = "Idempotent-Replayed")] Option<bool>,
    ),
}

failures!(GetBalanceFailures: QUEUE_TOKEN);
failures!(ChargePointsFailures: JSON_BODY, PARAMETERS, QUEUE_TOKEN;
    InvalidIdempotencyKey, InvalidAmount, BalanceLimit, IdempotencyKeyReused);
failures!(GetPointsHistoryFailures: PARAMETERS, QUEUE_TOKEN);

#[OpenApi(prefix_path = "/v1/points", tag = "Tag::Points")]
impl PointsApi {
    /// Get my balance
    #[oai(path = "/", method = "get", operation_id = "getBalance")]
    async fn balance(&self, auth: QueueAuth) -> Answer<Json<Balance>, GetBalanceFailures> {
        let user = &auth.0.grant.user_id;
        let balance = points::balance(&self.svc, user).await?;
        Ok(Json(Balance {
            user_id: user.to_string(),
            balance: balance.0,
        }))
    }

    /// Charge points
    ///
    /// Adds points to the caller's wallet, once per `Idempotency-Key`.
    #[oai(path = "/charges", method = "post", operation_id = "chargePoints")]
    async fn charge(
        &self,
        auth: QueueAuth,
        /// A unique key per charge (a UUID is ideal): retrying with it never charges twice.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Text<IdempotencyKeyText>>,
        body: Json<ChargeRequest>,
    ) -> Answer<ChargeResponse, ChargePointsFailures> {
        let key = IdempotencyKey::parse(&idempotency_key.0.0)?;
        let amount = ChargeAmount::parse(body.amount.0)?;
        let (receipt, replayed) =
            points::charge(&self.svc, &auth.0.grant.user_id, amount, &key, infra::now()).await?;
        let charge = Charge {
            amount: receipt.amount.0,
            balance: receipt.balance.0,
            charged_at: receipt.charged_at,
        };
        Ok(ChargeResponse::Created(
            Json(charge),
            replayed.then_some(true),
        ))
    }

    /// Get my points history
    ///
    /// Every charge and payment, newest first, a page at a time.
    #[oai(path = "/history", method = "get", operation_id = "getPointsHistory")]
    async fn history(
        &self,
        auth: QueueAuth,
        /// Entries per page, 1-100.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        /// Only entries older than this id (from `nextBefore`).
        #[oai(validator(minimum(value = "1"), maximum(value = "9007199254740991")))]
        before: Query<Option<u64>>,
    ) -> Answer<Json<LedgerPage>, GetPointsHistoryFailures> {
        let limit = limit.0;
        let rows = points::history(&self.svc, &auth.0.grant.user_id, before.0, limit).await?;
        let next_before = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let entries = rows
            .into_iter()
            .map(|r| LedgerEntry {
                id: r.id,
                kind: r.kind.into(),
                amount: r.amount,
                balance_after: r.balance_after,
                reservation_id: r.reservation_id,
                order_id: r.order_id,
                created_at: r.created_at,
            })
            .collect();
        Ok(Json(LedgerPage {
            entries,
            next_before,
        }))
    }
}

fn default_limit() -> u32 {
    20
}
