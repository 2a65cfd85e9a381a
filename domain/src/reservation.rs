//! Reservations: one seat of an order (see [`crate::order`] for the states they
//! share with it), and how long a hold lasts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ConcertId, OrderId, Points, ReservationId, ScheduleId, SeatNo, UserId, ValidationError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Released,
    Expired,
    /// Paid, then cancelled by its owner or with its show: refunded.
    Cancelled,
}

impl ReservationStatus {
    pub const ALL: [Self; 5] = [
        Self::Held,
        Self::Confirmed,
        Self::Released,
        Self::Expired,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "HELD",
            Self::Confirmed => "CONFIRMED",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    /// The order this seat is part of (an order of one for a single-seat hold).
    pub order_id: OrderId,
    pub user_id: UserId,
    pub concert_id: ConcertId,
    pub schedule_id: ScheduleId,
    pub seat_no: SeatNo,
    /// The seat's price when it was held: what the payment will charge.
    pub price: Points,
    pub status: ReservationStatus,
    pub held_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// What releasing an order has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Free the seats and mark the order released.
    FreeSeat,
    /// Already over (released or lapsed): nothing to do, releasing is idempotent.
    AlreadyOver,
}

impl Reservation {
    /// The status at `now`: a hold whose time ran out is expired even before the
    /// expiry worker has written that down.
    pub fn status_at(&self, now: DateTime<Utc>) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if self.held_until <= now => ReservationStatus::Expired,
            status => status,
        }
    }
}

/// How long a hold lasts before the seat is offered to others again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct HoldDuration(Duration);

impl HoldDuration {
    pub const DEFAULT: Self = Self(Duration::from_secs(300));
    const MAX_SECS: u64 = 3_600;

    pub fn from_secs(secs: u64) -> Result<Self, ValidationError> {
        if (1..=Self::MAX_SECS).contains(&secs) {
            Ok(Self(Duration::from_secs(secs)))
        } else {
            Err(ValidationError::HoldDuration)
        }
    }

    pub fn get(self) -> Duration {
        self.0
    }

    /// When a hold taken at `now` ends.
    pub fn ends_at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.0
    }
}

impl Default for HoldDuration {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u64> for HoldDuration {
    type Error = ValidationError;
    fn try_from(secs: u64) -> Result<Self, Self::Error> {
        Self::from_secs(secs)
    }
}

impl From<HoldDuration> for u64 {
    fn from(duration: HoldDuration) -> Self {
        duration.0.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn held(now: DateTime<Utc>, seconds_left: i64) -> Reservation {
        Reservation {
            id: ReservationId(1),
            order_id: OrderId(1),
            user_id: UserId::parse("u1").unwrap(),
            concert_id: ConcertId(1),
            schedule_id: ScheduleId(1),
            seat_no: SeatNo::parse(7).unwrap(),
            price: Points(100),
            status: ReservationStatus::Held,
            held_until: now + TimeDelta::seconds(seconds_left),
            created_at: now,
        }
    }

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        for status in ReservationStatus::ALL {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(ReservationStatus::parse("held"), None);
    }

    #[test]
    fn a_confirmed_sale_never_lapses() {
        let now = Utc::now();
        let mut r = held(now, -3600);
        r.status = ReservationStatus::Confirmed;
        assert_eq!(r.status_at(now), ReservationStatus::Confirmed);
    }

    #[test]
    fn hold_durations_are_between_a_second_and_an_hour() {
        assert_eq!(HoldDuration::default().get(), Duration::from_secs(300));
        assert!(HoldDuration::from_secs(1).is_ok());
        assert!(HoldDuration::from_secs(3600).is_ok());
        assert_eq!(
            HoldDuration::from_secs(0),
            Err(ValidationError::HoldDuration)
        );
        assert_eq!(
            HoldDuration::from_secs(3601),
            Err(ValidationError::HoldDuration)
        );
        let now = Utc::now();
        assert_eq!(
            HoldDuration::from_secs(5).unwrap().ends_at(now),
            now + TimeDelta::seconds(5)
        );
    }
}
