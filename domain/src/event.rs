//! Events boxoffice emits. They are written to the outbox in the same transaction as
//! the state change they describe and relayed to Kafka from there, so an event exists
//! exactly when its change was committed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sale::SettingChange;
use crate::{
    CancelReason, ConcertId, OrderId, OrderSeat, PaymentId, Points, ReservationId, SaleState,
    ScheduleId, SeatNo, UserId,
};

/// The version of the event schema below; bump it on any incompatible change.
/// Version 2: holds, payments, releases and expiries are published per order
/// (`Order*`, one event with all of its seats) instead of per seat (`Reservation*`,
/// `PaymentCompleted`, which version 1 published and consumers may still replay).
pub const SCHEMA_VERSION: u16 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DomainEvent {
    /// Seats held together for a fan, at the prices fixed now.
    #[serde(rename_all = "camelCase")]
    OrderHeld {
        order_id: OrderId,
        user_id: UserId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seats: Vec<OrderSeat>,
        total: Points,
        held_until: DateTime<Utc>,
    },
    /// Given back by its holder: the seats are free.
    #[serde(rename_all = "camelCase")]
    OrderReleased {
        order_id: OrderId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seats: Vec<SeatNo>,
    },
    /// The hold ran out unpaid: the seats are free.
    #[serde(rename_all = "camelCase")]
    OrderExpired {
        order_id: OrderId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seats: Vec<SeatNo>,
    },
    /// Paid: the seats are sold.
    #[serde(rename_all = "camelCase")]
    OrderPaid {
        order_id: OrderId,
        payment_id: PaymentId,
        user_id: UserId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seats: Vec<SeatNo>,
        amount: Points,
    },
    /// A paid order cancelled (by its owner, or with its show): the seats are on sale
    /// again and `refund` went back to the owner's points.
    #[serde(rename_all = "camelCase")]
    OrderCancelled {
        order_id: OrderId,
        user_id: UserId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seats: Vec<SeatNo>,
        refund: Points,
        fee: Points,
        reason: CancelReason,
    },
    /// Points credited back for a cancelled order, net of `fee`.
    #[serde(rename_all = "camelCase")]
    PointsRefunded {
        user_id: UserId,
        order_id: OrderId,
        amount: Points,
        fee: Points,
        balance: Points,
    },
    /// An operator cancelled a show: its orders are being released and refunded.
    #[serde(rename_all = "camelCase")]
    ShowCancelled {
        concert_id: ConcertId,
        schedule_id: ScheduleId,
    },
    /// Version 1 (no longer published): one seat held.
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
    /// Version 1 (no longer published).
    #[serde(rename_all = "camelCase")]
    ReservationReleased {
        reservation_id: ReservationId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seat_no: SeatNo,
    },
    /// Version 1 (no longer published).
    #[serde(rename_all = "camelCase")]
    ReservationExpired {
        reservation_id: ReservationId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seat_no: SeatNo,
    },
    /// Version 1 (no longer published).
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
            Self::OrderHeld { .. } => "OrderHeld",
            Self::OrderReleased { .. } => "OrderReleased",
            Self::OrderExpired { .. } => "OrderExpired",
            Self::OrderPaid { .. } => "OrderPaid",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::PointsRefunded { .. } => "PointsRefunded",
            Self::ShowCancelled { .. } => "ShowCancelled",
            Self::ReservationHeld { .. } => "ReservationHeld",
            Self::ReservationReleased { .. } => "ReservationReleased",
            Self::ReservationExpired { .. } => "ReservationExpired",
            Self::PaymentCompleted { .. } => "PaymentCompleted",
            Self::PointsCharged { .. } => "PointsCharged",
            Self::SaleChanged { .. } => "SaleChanged",
        }
    }

    /// The Kafka message key: all events of one order (or one wallet, or one show)
    /// share a partition and so stay in order.
    pub fn key(&self) -> String {
        match self {
            Self::OrderHeld { order_id, .. }
            | Self::OrderReleased { order_id, .. }
            | Self::OrderExpired { order_id, .. }
            | Self::OrderPaid { order_id, .. }
            | Self::OrderCancelled { order_id, .. } => format!("order-{order_id}"),
            Self::ShowCancelled { schedule_id, .. } => format!("schedule-{schedule_id}"),
            Self::ReservationHeld { reservation_id, .. }
            | Self::ReservationReleased { reservation_id, .. }
            | Self::ReservationExpired { reservation_id, .. }
            | Self::PaymentCompleted { reservation_id, .. } => {
                format!("reservation-{reservation_id}")
            }
            Self::PointsCharged { user_id, .. } | Self::PointsRefunded { user_id, .. } => {
                format!("wallet-{user_id}")
            }
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
                "version": 2,
                "occurredAt": "2023-11-14T22:13:20Z",
                "type": "PointsCharged",
                "data": {"userId": "u1", "amount": 500, "balance": 1500}
            })
        );
        let back: EventEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn one_orders_events_share_a_key_and_a_refund_its_wallets() {
        let seats = vec![SeatNo::parse(3).unwrap()];
        let released = DomainEvent::OrderReleased {
            order_id: OrderId(9),
            concert_id: ConcertId(1),
            schedule_id: ScheduleId(2),
            seats: seats.clone(),
        };
        let cancelled = DomainEvent::OrderCancelled {
            order_id: OrderId(9),
            user_id: UserId::parse("u1").unwrap(),
            concert_id: ConcertId(1),
            schedule_id: ScheduleId(2),
            seats,
            refund: Points(90),
            fee: Points(10),
            reason: CancelReason::Owner,
        };
        assert_eq!(released.key(), "order-9");
        assert_eq!(cancelled.key(), "order-9");
        let refunded = DomainEvent::PointsRefunded {
            user_id: UserId::parse("u1").unwrap(),
            order_id: OrderId(9),
            amount: Points(90),
            fee: Points(10),
            balance: Points(90),
        };
        assert_eq!(refunded.key(), "wallet-u1");
        let json = serde_json::to_value(&cancelled).unwrap();
        assert_eq!(json["type"], "OrderCancelled");
        assert_eq!(json["data"]["reason"], "OWNER");
        assert_eq!(json["data"]["seats"], serde_json::json!([3]));
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
