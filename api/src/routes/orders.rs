use std::borrow::Cow;

use chrono::{DateTime, Utc};
use domain::{IdempotencyKey, Order, OrderId, ScheduleId, SeatChoice};
use infra::Services;
use infra::service::orders::{self, CancelReceipt, OrderReceipt};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use super::reservations::ReservationState;
use crate::auth::QueueAuth;
use crate::error::{ACTIVE_TOKEN, Answer, JSON_BODY, PARAMETERS, QUEUE_TOKEN, failures};
use crate::text::{DistinctInts, GradeText, IdempotencyKeyText, Quantity, SeatNumbers, Text};

#[derive(Debug)]
pub struct OrdersApi {
    pub svc: Services,
}

// The spec shows these fields as `OrderRequest`, which states the either-or.
/// Seats to hold together: either `seats` by number, or `quantity` seats of `grade`
/// (the lowest-numbered free ones), and no other field.
#[derive(Debug, Object)]
#[oai(
    rename_all = "camelCase",
    example,
    deny_unknown_fields,
    skip_serializing_if_is_none
)]
pub struct OrderFields {
    #[oai(validator(minimum(value = "1"), maximum(value = "9007199254740991")))]
    pub schedule_id: u64,
    /// 1 to the sale's `maxSeatsPerFan` seat numbers, each once.
    pub seats: Option<SeatNumbers>,
    /// A grade of the schedule (see its `grades`)...
    pub grade: Option<Text<GradeText>>,
    /// ...and how many of its seats (1 to the sale's `maxSeatsPerFan`).
    pub quantity: Option<Quantity>,
}

impl poem_openapi::types::Example for OrderFields {
    fn example() -> Self {
        Self {
            schedule_id: 1,
            seats: Some(DistinctInts(vec![7, 8])),
            grade: None,
            quantity: None,
        }
    }
}

/// An order request as the spec shows it: [`OrderFields`]' schema, with the rule
/// that it gives `seats`, or `grade` and `quantity`, and nothing else, stated as
/// `oneOf` two lists of required fields (each with at most the fields of its form).
/// Generated clients keep one plain `OrderRequest` model: the `oneOf` names no
/// schema of its own, so OpenAPI Generator reads it as a constraint, not a union.
#[derive(Debug)]
pub struct OrderRequest(pub OrderFields);

impl Type for OrderRequest {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "OrderRequest".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            OrderFields::register(registry);
            let mut schema = match OrderFields::schema_ref() {
                MetaSchemaRef::Reference(name) => registry.schemas.remove(&name),
                MetaSchemaRef::Inline(schema) => Some(*schema),
            }
            .unwrap_or_else(|| MetaSchema::new("object"));
            let form = |required: Vec<&'static str>| {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    // scheduleId and the form's own fields, nothing else.
                    max_properties: Some(required.len() + 1),
                    required,
                    ..MetaSchema::ANY
                }))
            };
            schema.title = Some(Self::name().into_owned());
            schema.one_of = vec![form(vec!["seats"]), form(vec!["grade", "quantity"])];
            schema
        });
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for OrderRequest {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        OrderFields::parse_from_json(value)
            .map(Self)
            .map_err(ParseError::propagate)
    }
}

impl ToJSON for OrderRequest {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.to_json()
    }
}

/// One seat of an order, at the price it had when it was held.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct OrderSeat {
    pub seat_no: u32,
    pub grade: String,
    pub price: u64,
    /// The seat's reservation (the single-seat view of the order).
    pub reservation_id: u64,
}

/// Seats of one schedule held, paid and cancelled together.
#[derive(Debug, Object)]
#[oai(
    rename_all = "camelCase",
    example,
    rename = "Order",
    skip_serializing_if_is_none
)]
pub struct OrderBody {
    pub id: u64,
    pub concert_id: u64,
    pub schedule_id: u64,
    pub status: ReservationState,
    /// The sum of the seats' prices fixed at hold time: what payment charges.
    pub total: u64,
    /// In seat order.
    pub seats: Vec<OrderSeat>,
    pub held_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When `CANCELLED`: the points credited back (the total minus the fee)...
    pub refund: Option<u64>,
    /// ...the cancellation fee kept...
    pub fee: Option<u64>,
    /// ...and when.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl poem_openapi::types::Example for OrderBody {
    fn example() -> Self {
        Self {
            id: 3,
            concert_id: 1,
            schedule_id: 1,
            status: ReservationState::Held,
            total: 25_000,
            seats: vec![
                OrderSeat {
                    seat_no: 7,
                    grade: "VIP".into(),
                    price: 15_000,
                    reservation_id: 11,
                },
                OrderSeat {
                    seat_no: 8,
                    grade: "R".into(),
                    price: 10_000,
                    reservation_id: 12,
                },
            ],
            held_until: DateTime::from_timestamp(1_790_000_600, 0).unwrap_or_default(),
            created_at: DateTime::from_timestamp(1_790_000_300, 0).unwrap_or_default(),
            refund: None,
            fee: None,
            cancelled_at: None,
        }
    }
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        Self {
            id: o.id.0,
            concert_id: o.concert_id.0,
            schedule_id: o.schedule_id.0,
            status: o.status.into(),
            total: o.total.0,
            seats: o
                .seats
                .into_iter()
                .map(|s| OrderSeat {
                    seat_no: s.seat_no.get(),
                    grade: s.grade.to_string(),
                    price: s.price.0,
                    reservation_id: s.reservation_id.0,
                })
                .collect(),
            held_until: o.held_until,
            created_at: o.created_at,
            refund: o.refund.map(|r| r.refund.0),
            fee: o.refund.map(|r| r.fee.0),
            cancelled_at: o.refund.map(|r| r.at),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct OrderList {
    /// Newest first, at most 50.
    pub orders: Vec<OrderBody>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct OrderPayment {
    pub id: u64,
    pub order_id: u64,
    /// Points paid: the order's total.
    pub amount: u64,
    pub balance_after: u64,
    pub paid_at: DateTime<Utc>,
}

impl From<OrderReceipt> for OrderPayment {
    fn from(r: OrderReceipt) -> Self {
        Self {
            id: r.payment_id.0,
            order_id: r.order_id.0,
            amount: r.amount.0,
            balance_after: r.balance_after.0,
            paid_at: r.paid_at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Cancellation {
    pub order_id: u64,
    /// Points credited back: the total minus the fee.
    pub refund: u64,
    /// The concert's fee: its percentage of the total, rounded down.
    pub fee: u64,
    pub balance_after: u64,
    pub cancelled_at: DateTime<Utc>,
}

impl From<CancelReceipt> for Cancellation {
    fn from(r: CancelReceipt) -> Self {
        Self {
            order_id: r.order_id.0,
            refund: r.refund.0,
            fee: r.fee.0,
            balance_after: r.balance_after.0,
            cancelled_at: r.cancelled_at,
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum HoldOrderResponse {
    /// Every seat asked for is held for the caller until `heldUntil`.
    #[oai(status = 201)]
    Created(Json<OrderBody>),
}

#[derive(Debug, ApiResponse)]
pub enum PayOrderResponse {
    /// Paid: the seats are the caller's and their queue token has ended. A retry with
    /// the same Idempotency-Key answers the same, with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<OrderPayment>,
        #[oai(header = "Idempotent-Replayed")] Option<bool>,
    ),
}

#[derive(Debug, ApiResponse)]
pub enum CancelOrderResponse {
    /// Cancelled: the refund is in the caller's points and the seats are on sale
    /// again. A retry with the same Idempotency-Key answers the same, with
    /// `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<Cancellation>,
        #[oai(header = "Idempotent-Replayed")] Option<bool>,
    ),
}

failures!(HoldOrderFailures: JSON_BODY, QUEUE_TOKEN, ACTIVE_TOKEN;
    InvalidOrder, InvalidGrade, InvalidSeatNumber, ScheduleNotFound, SeatNotFound,
    GradeNotFound, SeatTaken, NotEnoughSeats, ShowCancelled, SeatLimit);
failures!(ListOrdersFailures: QUEUE_TOKEN);
failures!(GetOrderFailures: PARAMETERS, QUEUE_TOKEN; OrderNotFound);
failures!(ReleaseOrderFailures: PARAMETERS, QUEUE_TOKEN; OrderNotFound, AlreadyPaid);
failures!(PayOrderFailures: PARAMETERS, QUEUE_TOKEN, ACTIVE_TOKEN;
    InvalidIdempotencyKey, OrderNotFound, AlreadyPaid, HoldExpired, ReservationReleased,
    OrderCancelled, InsufficientPoints, IdempotencyKeyReused);
failures!(CancelOrderFailures: PARAMETERS, QUEUE_TOKEN;
    InvalidIdempotencyKey, OrderNotFound, OrderNotPaid, OrderCancelled, CancellationClosed,
    IdempotencyKeyReused);

#[OpenApi(prefix_path = "/v1/orders", tag = "Tag::Orders")]
impl OrdersApi {
    /// Hold several seats
    ///
    /// All or nothing: every seat is held for the caller until `heldUntil`, or none
    /// is and `409 SEAT_TAKEN` names the taken seats (`NOT_ENOUGH_SEATS` when a
    /// grade has too few free). Needs an ACTIVE queue token for the schedule's
    /// concert; counts against the sale's `maxSeatsPerFan` with the seats the caller
    /// already holds or bought.
    #[oai(path = "/", method = "post", operation_id = "holdOrder")]
    async fn hold(
        &self,
        auth: QueueAuth,
        body: Json<OrderRequest>,
    ) -> Answer<HoldOrderResponse, HoldOrderFailures> {
        let order = &body.0.0;
        let choice = SeatChoice::new(
            order.seats.as_ref().map(|s| s.0.as_slice()),
            order.grade.as_ref().map(|g| g.0.as_str()),
            order.quantity.map(|q| q.0),
        )?;
        let schedule = ScheduleId(order.schedule_id);
        let order = orders::hold(&self.svc, &auth.0.grant, schedule, &choice, infra::now()).await?;
        Ok(HoldOrderResponse::Created(Json(order.into())))
    }

    /// List my orders
    ///
    /// The caller's orders of their token's concert, newest first.
    #[oai(path = "/", method = "get", operation_id = "listOrders")]
    async fn list(&self, auth: QueueAuth) -> Answer<Json<OrderList>, ListOrdersFailures> {
        let found = orders::list(&self.svc, &auth.0.grant, infra::now()).await?;
        Ok(Json(OrderList {
            orders: found.into_iter().map(Into::into).collect(),
        }))
    }

    /// Get one of my orders
    #[oai(path = "/:orderId", method = "get", operation_id = "getOrder")]
    async fn get(
        &self,
        auth: QueueAuth,
        #[oai(
            name = "orderId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        order_id: Path<u64>,
    ) -> Answer<Json<OrderBody>, GetOrderFailures> {
        let order =
            orders::get(&self.svc, &auth.0.grant, OrderId(order_id.0), infra::now()).await?;
        Ok(Json(order.into()))
    }

    /// Release one of my held orders
    ///
    /// Frees its seats at once. Releasing again, or after the hold ran out, changes
    /// nothing; a paid order cannot be released (`409 ALREADY_PAID`: cancel it).
    #[oai(path = "/:orderId", method = "delete", operation_id = "releaseOrder")]
    async fn release(
        &self,
        auth: QueueAuth,
        #[oai(
            name = "orderId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        order_id: Path<u64>,
    ) -> Answer<Json<OrderBody>, ReleaseOrderFailures> {
        let order =
            orders::release(&self.svc, &auth.0.grant, OrderId(order_id.0), infra::now()).await?;
        Ok(Json(order.into()))
    }

    /// Pay a held order
    ///
    /// Debits the order's total (the prices fixed at hold time) from the caller's
    /// points, sells every seat and ends the caller's queue token, all or nothing.
    /// Needs an ACTIVE token for the concert (except to replay an earlier answer).
    #[oai(path = "/:orderId/payment", method = "post", operation_id = "payOrder")]
    async fn pay(
        &self,
        auth: QueueAuth,
        #[oai(
            name = "orderId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        order_id: Path<u64>,
        /// A unique key per payment attempt (a UUID is ideal): retrying with it
        /// never pays twice and returns the first answer.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Text<IdempotencyKeyText>>,
    ) -> Answer<PayOrderResponse, PayOrderFailures> {
        let key = IdempotencyKey::parse(&idempotency_key.0.0)?;
        let caller = &auth.0;
        let (receipt, replayed) = orders::pay(
            &self.svc,
            &caller.token,
            &caller.grant,
            OrderId(order_id.0),
            &key,
            infra::now(),
        )
        .await?;
        Ok(PayOrderResponse::Created(
            Json(receipt.into()),
            replayed.then_some(true),
        ))
    }

    /// Cancel a paid order
    ///
    /// Until the concert's cutoff before the show (`409 CANCELLATION_CLOSED` after):
    /// the total minus the concert's fee goes back to the caller's points, and the
    /// seats are on sale again at once. Any valid queue token of the order's owner
    /// will do, even one that has ended.
    #[oai(
        path = "/:orderId/cancellation",
        method = "post",
        operation_id = "cancelOrder"
    )]
    async fn cancel(
        &self,
        auth: QueueAuth,
        #[oai(
            name = "orderId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        order_id: Path<u64>,
        /// A unique key per cancellation attempt: retrying with it never refunds
        /// twice and returns the first answer.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Text<IdempotencyKeyText>>,
    ) -> Answer<CancelOrderResponse, CancelOrderFailures> {
        let key = IdempotencyKey::parse(&idempotency_key.0.0)?;
        let (receipt, replayed) = orders::cancel(
            &self.svc,
            &auth.0.grant,
            OrderId(order_id.0),
            &key,
            infra::now(),
        )
        .await?;
        Ok(CancelOrderResponse::Created(
            Json(receipt.into()),
            replayed.then_some(true),
        ))
    }
}
