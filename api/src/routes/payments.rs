use chrono::{DateTime, Utc};
use domain::{IdempotencyKey, ReservationId};
use infra::Services;
use infra::service::payments;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::auth::QueueAuth;
use crate::error::{ACTIVE_TOKEN, Answer, JSON_BODY, PARAMETERS, QUEUE_TOKEN, failures};
use crate::text::{IdempotencyKeyText, Text};

#[derive(Debug)]
pub struct PaymentsApi {
    pub svc: Services,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct PayRequest {
    /// One of the caller's HELD reservations.
    #[oai(validator(minimum(value = "1"), maximum(value = "9007199254740991")))]
    pub reservation_id: u64,
}

impl poem_openapi::types::Example for PayRequest {
    fn example() -> Self {
        Self { reservation_id: 1 }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct Payment {
    pub id: u64,
    pub reservation_id: u64,
    /// Points paid: the price fixed when the seat was held.
    pub amount: u64,
    pub balance_after: u64,
    pub paid_at: DateTime<Utc>,
}

impl poem_openapi::types::Example for Payment {
    fn example() -> Self {
        Self {
            id: 5,
            reservation_id: 17,
            amount: 15_000,
            balance_after: 35_000,
            paid_at: DateTime::from_timestamp(1_790_000_600, 0).unwrap_or_default(),
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum PayResponse {
    /// Paid: the seat is the caller's and their queue token has ended. A retry with
    /// the same Idempotency-Key answers the same, with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<Payment>,
        #[oai(header = "Idempotent-Replayed")] Option<bool>,
    ),
}

failures!(PayReservationFailures: JSON_BODY, PARAMETERS, QUEUE_TOKEN, ACTIVE_TOKEN;
    InvalidIdempotencyKey, ReservationNotFound, AlreadyPaid, HoldExpired, ReservationReleased,
    OrderCancelled, InsufficientPoints, IdempotencyKeyReused);

#[OpenApi(prefix_path = "/v1/payments", tag = "Tag::Payments")]
impl PaymentsApi {
    /// Pay a held seat
    ///
    /// Debits the price fixed at hold time from the caller's points, confirms the
    /// seat and ends the caller's queue token, all or nothing. Needs an ACTIVE
    /// token for the concert (except to replay an earlier answer).
    #[oai(path = "/", method = "post", operation_id = "payReservation")]
    async fn pay(
        &self,
        auth: QueueAuth,
        /// A unique key per payment attempt (a UUID is ideal): retrying with it
        /// never pays twice and returns the first answer.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Text<IdempotencyKeyText>>,
        body: Json<PayRequest>,
    ) -> Answer<PayResponse, PayReservationFailures> {
        let key = IdempotencyKey::parse(&idempotency_key.0.0)?;
        let caller = &auth.0;
        let (receipt, replayed) = payments::pay(
            &self.svc,
            &caller.token,
            &caller.grant,
            ReservationId(body.reservation_id),
            &key,
            infra::now(),
        )
        .await?;
        let payment = Payment {
            id: receipt.payment_id.0,
            reservation_id: receipt.reservation_id.0,
            amount: receipt.amount.0,
            balance_after: receipt.balance_after.0,
            paid_at: receipt.paid_at,
        };
        Ok(PayResponse::Created(
            Json(payment),
            replayed.then_some(true),
        ))
    }
}
