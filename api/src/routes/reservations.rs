use chrono::{DateTime, Utc};
use domain::{Reservation, ReservationId, ReservationStatus, ScheduleId, SeatNo};
use infra::Services;
use infra::service::reservations;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::Tag;
use crate::auth::QueueAuth;
use crate::error::{ACTIVE_TOKEN, Answer, JSON_BODY, PARAMETERS, QUEUE_TOKEN, failures};
use crate::text::{Int, SeatNumber};

#[derive(Debug)]
pub struct ReservationsApi {
    pub svc: Services,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct HoldRequest {
    #[oai(validator(minimum(value = "1"), maximum(value = "9007199254740991")))]
    pub schedule_id: u64,
    /// The seat to hold, from 1 to the schedule's seat count.
    pub seat_no: SeatNumber,
}

impl poem_openapi::types::Example for HoldRequest {
    fn example() -> Self {
        Self {
            schedule_id: 1,
            seat_no: Int(7),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationState {
    /// Held until `heldUntil`; pay before then.
    Held,
    /// Paid: the seat is sold to its holder.
    Confirmed,
    /// Given back by its holder.
    Released,
    /// The hold ran out unpaid.
    Expired,
    /// Paid, then cancelled (by its owner, or with its show) and refunded.
    Cancelled,
}

impl From<ReservationStatus> for ReservationState {
    fn from(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Held => Self::Held,
            ReservationStatus::Confirmed => Self::Confirmed,
            ReservationStatus::Released => Self::Released,
            ReservationStatus::Expired => Self::Expired,
            ReservationStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// A hold on one seat.
#[derive(Debug, Object)]
#[oai(
    rename_all = "camelCase",
    example,
    rename = "Reservation",
    skip_serializing_if_is_none
)]
pub struct ReservationBody {
    pub id: u64,
    /// The order this seat is part of (an order of one seat for `POST /v1/reservations`).
    pub order_id: u64,
    pub concert_id: u64,
    pub schedule_id: u64,
    pub seat_no: u32,
    /// The price fixed when the seat was held: what payment will charge.
    pub price: u64,
    pub status: ReservationState,
    pub held_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl poem_openapi::types::Example for ReservationBody {
    fn example() -> Self {
        Self {
            id: 17,
            order_id: 17,
            concert_id: 1,
            schedule_id: 1,
            seat_no: 7,
            price: 15_000,
            status: ReservationState::Held,
            held_until: DateTime::from_timestamp(1_790_000_600, 0).unwrap_or_default(),
            created_at: DateTime::from_timestamp(1_790_000_300, 0).unwrap_or_default(),
        }
    }
}

impl From<Reservation> for ReservationBody {
    fn from(r: Reservation) -> Self {
        Self {
            id: r.id.0,
            order_id: r.order_id.0,
            concert_id: r.concert_id.0,
            schedule_id: r.schedule_id.0,
            seat_no: r.seat_no.get(),
            price: r.price.0,
            status: r.status.into(),
            held_until: r.held_until,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum HoldResponse {
    /// The seat is held for the caller until `heldUntil`.
    #[oai(status = 201)]
    Created(Json<ReservationBody>),
}

failures!(HoldSeatFailures: JSON_BODY, QUEUE_TOKEN, ACTIVE_TOKEN;
    InvalidSeatNumber, ScheduleNotFound, SeatNotFound, SeatTaken, ShowCancelled, SeatLimit);
failures!(GetReservationFailures: PARAMETERS, QUEUE_TOKEN; ReservationNotFound);
failures!(ReleaseReservationFailures: PARAMETERS, QUEUE_TOKEN; ReservationNotFound, AlreadyPaid);

#[OpenApi(prefix_path = "/v1/reservations", tag = "Tag::Reservations")]
impl ReservationsApi {
    /// Hold a seat
    ///
    /// Needs an ACTIVE queue token for the schedule's concert. The seat is the
    /// caller's until `heldUntil` (5 minutes by default); pay before then.
    /// `409 SEAT_TAKEN` when someone else holds or bought it: an expected answer
    /// in a rush, not a failure.
    #[oai(path = "/", method = "post", operation_id = "holdSeat")]
    async fn hold(
        &self,
        auth: QueueAuth,
        body: Json<HoldRequest>,
    ) -> Answer<HoldResponse, HoldSeatFailures> {
        let seat = SeatNo::parse(body.seat_no.0)?;
        let schedule = ScheduleId(body.schedule_id);
        let r = reservations::hold(&self.svc, &auth.0.grant, schedule, seat, infra::now()).await?;
        Ok(HoldResponse::Created(Json(r.into())))
    }

    /// Get one of my reservations
    #[oai(
        path = "/:reservationId",
        method = "get",
        operation_id = "getReservation"
    )]
    async fn get(
        &self,
        auth: QueueAuth,
        #[oai(
            name = "reservationId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        reservation_id: Path<u64>,
    ) -> Answer<Json<ReservationBody>, GetReservationFailures> {
        let r = reservations::get(
            &self.svc,
            &auth.0.grant,
            ReservationId(reservation_id.0),
            infra::now(),
        )
        .await?;
        Ok(Json(r.into()))
    }

    /// Release one of my holds
    ///
    /// Frees the seat at once. Releasing again, or after the hold ran out, changes
    /// nothing; a paid reservation cannot be released (`409 ALREADY_PAID`).
    #[oai(
        path = "/:reservationId",
        method = "delete",
        operation_id = "releaseReservation"
    )]
    async fn release(
        &self,
        auth: QueueAuth,
        #[oai(
            name = "reservationId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        reservation_id: Path<u64>,
    ) -> Answer<Json<ReservationBody>, ReleaseReservationFailures> {
        let r = reservations::release(
            &self.svc,
            &auth.0.grant,
            ReservationId(reservation_id.0),
            infra::now(),
        )
        .await?;
        Ok(Json(r.into()))
    }
}
