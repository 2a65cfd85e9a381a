//! Seats: numbered 1..=N within a schedule, each available, held or sold.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A seat number within one schedule, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeatNo(u32);

impl SeatNo {
    /// The largest hall boxoffice will sell; a schedule has at most this many seats.
    pub const MAX: u32 = 100_000;

    /// Accepts the raw JSON number so zero, negative and absurd input get one clear error.
    pub fn parse(raw: i64) -> Result<Self, ValidationError> {
        match u32::try_from(raw) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(ValidationError::SeatNo),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SeatNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A seat's state as stored. A hold carries its end time; once that passes the seat
/// is available again even before the expiry worker has cleaned it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatState {
    Available,
    Held,
    Sold,
}

impl SeatState {
    pub const ALL: [Self; 3] = [Self::Available, Self::Held, Self::Sold];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Held => "HELD",
            Self::Sold => "SOLD",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// What a stored state means at `now`: a lapsed hold no longer blocks anyone.
    pub fn at(self, held_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        match (self, held_until) {
            (Self::Held, Some(until)) if until <= now => Self::Available,
            (state, _) => state,
        }
    }

    /// Whether a new hold may take a seat in this stored state at `now`.
    pub fn can_hold(self, held_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        self.at(held_until, now) == Self::Available
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn seat_numbers_start_at_one_and_are_bounded() {
        assert_eq!(SeatNo::parse(1).map(SeatNo::get), Ok(1));
        assert_eq!(SeatNo::parse(100_000).map(SeatNo::get), Ok(100_000));
        for bad in [0, -1, 100_001, i64::from(u32::MAX) + 1, i64::MIN] {
            assert_eq!(SeatNo::parse(bad), Err(ValidationError::SeatNo), "{bad}");
        }
    }

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for state in SeatState::ALL {
            assert_eq!(SeatState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(SeatState::parse(""), None);
    }

    #[test]
    fn a_lapsed_hold_is_available_again() {
        let now = Utc::now();
        let later = now + TimeDelta::seconds(1);
        let earlier = now - TimeDelta::seconds(1);
        assert!(SeatState::Available.can_hold(None, now));
        assert!(!SeatState::Held.can_hold(Some(later), now));
        assert!(SeatState::Held.can_hold(Some(earlier), now));
        assert!(
            SeatState::Held.can_hold(Some(now), now),
            "a hold ends at its deadline"
        );
        assert!(!SeatState::Sold.can_hold(None, now));
        assert!(
            !SeatState::Sold.can_hold(Some(earlier), now),
            "a sale never lapses"
        );
        assert_eq!(SeatState::Held.at(Some(earlier), now), SeatState::Available);
    }
}
