//! Reservations: a time-limited hold on one seat, which a payment confirms.
//!
//! ```text
//!            pay (before held_until)
//!   HELD ───────────────────────────▶ CONFIRMED
//!    │  \
//!    │   \ held_until passes (worker, or a new hold takes the seat)
//!    │    ▶ EXPIRED
//!    │ owner releases
//!    ▼
//!  RELEASED
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ConcertId, PaymentError, Points, ReleaseError, ReservationId, ScheduleId, SeatNo, UserId,
    ValidationError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Released,
    Expired,
}

impl ReservationStatus {
    pub const ALL: [Self; 4] = [Self::Held, Self::Confirmed, Self::Released, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "HELD",
            Self::Confirmed => "CONFIRMED",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
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

/// What releasing a reservation has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Free the seat and mark the reservation released.
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

    /// Whether this reservation can be paid at `now`.
    pub fn check_payable(&self, now: DateTime<Utc>) -> Result<(), PaymentError> {
        match self.status_at(now) {
            ReservationStatus::Held => Ok(()),
            ReservationStatus::Confirmed => Err(PaymentError::AlreadyPaid),
            ReservationStatus::Expired => Err(PaymentError::HoldExpired),
            ReservationStatus::Released => Err(PaymentError::Released),
        }
    }

    /// What the owner releasing it at `now` means.
    pub fn release(&self, now: DateTime<Utc>) -> Result<Release, ReleaseError> {
        match self.status_at(now) {
            ReservationStatus::Held => Ok(Release::FreeSeat),
            ReservationStatus::Released | ReservationStatus::Expired => Ok(Release::AlreadyOver),
            ReservationStatus::Confirmed => Err(ReleaseError::AlreadyPaid),
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
    fn a_live_hold_is_payable_and_releasable() {
        let now = Utc::now();
        let r = held(now, 60);
        assert_eq!(r.status_at(now), ReservationStatus::Held);
        assert!(r.check_payable(now).is_ok());
        assert!(matches!(r.release(now), Ok(Release::FreeSeat)));
    }

    #[test]
    fn a_lapsed_hold_is_expired_before_the_worker_runs() {
        let now = Utc::now();
        let r = held(now, -1);
        assert_eq!(r.status_at(now), ReservationStatus::Expired);
        assert!(matches!(
            r.check_payable(now),
            Err(PaymentError::HoldExpired)
        ));
        assert!(matches!(r.release(now), Ok(Release::AlreadyOver)));
        let at_deadline = held(now, 0);
        assert!(matches!(
            at_deadline.check_payable(now),
            Err(PaymentError::HoldExpired)
        ));
    }

    #[test]
    fn each_final_state_refuses_payment_with_its_own_reason() {
        let now = Utc::now();
        let mut r = held(now, 60);
        r.status = ReservationStatus::Confirmed;
        assert!(matches!(
            r.check_payable(now),
            Err(PaymentError::AlreadyPaid)
        ));
        assert!(matches!(r.release(now), Err(ReleaseError::AlreadyPaid)));
        r.status = ReservationStatus::Released;
        assert!(matches!(r.check_payable(now), Err(PaymentError::Released)));
        assert!(matches!(r.release(now), Ok(Release::AlreadyOver)));
        r.status = ReservationStatus::Expired;
        assert!(matches!(
            r.check_payable(now),
            Err(PaymentError::HoldExpired)
        ));
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
