//! Events boxoffice emits. They are written to the outbox in the same transaction as
//! the state change they describe and relayed to Kafka from there, so an event exists
//! exactly when its change was committed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sale::SettingChange;
use crate::{ConcertId, PaymentId, Points, ReservationId, SaleState, ScheduleId, SeatNo, UserId};

/// The version of the event schema below; bump it on any incompatible change.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DomainEvent {
    #[serde(rename_all = "camelCase")]
    ReservationHeld {
        reservation_id: ReservationId,
        user_id: UserId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seat_no: SeatNo,
        price: Points,
        held_until: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    ReservationReleased {
        reservation_id: ReservationId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seat_no: SeatNo,
    },
    #[serde(rename_all = "camelCase")]
    ReservationExpired {
        reservation_id: ReservationId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seat_no: SeatNo,
    },
    #[serde(rename_all = "camelCase")]
    PaymentCompleted {
        payment_id: PaymentId,
        reservation_id: ReservationId,
        user_id: UserId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seat_no: SeatNo,
        amount: Points,
    },
    #[serde(rename_all = "camelCase")]
    PointsCharged {
        user_id: UserId,
        amount: Points,
        balance: Points,
    },
    /// An operator changed a sale (or its opening came): what changed, old and new.
    #[serde(rename_all = "camelCase")]
    SaleChanged {
        concert_id: ConcertId,
        /// `open`, `pause`, `resume`, `close` or `update`.
        action: String,
        state: SaleState,
        changes: Vec<SettingChange>,
    },
}

impl DomainEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ReservationHeld { .. } => "ReservationHeld",
            Self::ReservationReleased { .. } => "ReservationReleased",
            Self::ReservationExpired { .. } => "ReservationExpired",
            Self::PaymentCompleted { .. } => "PaymentCompleted",
            Self::PointsCharged { .. } => "PointsCharged",
            Self::SaleChanged { .. } => "SaleChanged",
        }
    }

    /// The Kafka message key: all events of one reservation (or one wallet) share a
    /// partition and so stay in order.
    pub fn key(&self) -> String {
        match self {
            Self::ReservationHeld { reservation_id, .. }
            | Self::ReservationReleased { reservation_id, .. }
            | Self::ReservationExpired { reservation_id, .. }
            | Self::PaymentCompleted { reservation_id, .. } => {
                format!("reservation-{reservation_id}")
            }
            Self::PointsCharged { user_id, .. } => format!("wallet-{user_id}"),
            Self::SaleChanged { concert_id, .. } => format!("sale-{concert_id}"),
        }
    }
}

/// An event as published: a unique id (UUID v7, so ids sort by time), the schema
/// version and when it happened, around the event itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub id: String,
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: DomainEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_serialize_to_the_documented_shape() {
        let envelope = EventEnvelope {
            id: "0195f3a4-7c1e-7e2b-9d1c-3f0a9b8c7d6e".into(),
            version: SCHEMA_VERSION,
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            event: DomainEvent::PointsCharged {
                user_id: UserId::parse("u1").unwrap(),
                amount: Points(500),
                balance: Points(1500),
            },
        };
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "0195f3a4-7c1e-7e2b-9d1c-3f0a9b8c7d6e",
                "version": 1,
                "occurredAt": "2023-11-14T22:13:20Z",
                "type": "PointsCharged",
                "data": {"userId": "u1", "amount": 500, "balance": 1500}
            })
        );
        let back: EventEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn one_reservations_events_share_a_key() {
        let held = DomainEvent::ReservationExpired {
            reservation_id: ReservationId(9),
            concert_id: ConcertId(1),
            schedule_id: ScheduleId(2),
            seat_no: SeatNo::parse(3).unwrap(),
        };
        assert_eq!(held.key(), "reservation-9");
        assert_eq!(held.event_type(), "ReservationExpired");
    }
}
