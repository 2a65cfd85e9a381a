//! A concert's sale: when it opens, how fast and how many fans are let in, how many
//! seats one fan may take, and the state an operator moves it through:
//!
//! ```text
//! SCHEDULED --(opensAt reached)--> OPEN <--pause/resume--> PAUSED
//!     \                              |                        |
//!      `-----------close-------------+---------close----------'--> CLOSED
//! ```
//!
//! Fans who join before the opening wait in a pre-queue; at the opening they are
//! placed in a uniformly random order ahead of everyone who joins later.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Where a sale stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SaleState {
    /// Not open yet: fans who join wait in the pre-queue.
    Scheduled,
    /// Fans are admitted from the line.
    Open,
    /// Nobody is admitted; the line keeps its order and fans may still join.
    Paused,
    /// The line is over: joins are refused and waiting fans are sent away.
    Closed,
}

impl SaleState {
    pub const ALL: [Self; 4] = [Self::Scheduled, Self::Open, Self::Paused, Self::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Open => "OPEN",
            Self::Paused => "PAUSED",
            Self::Closed => "CLOSED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// What an operator does to a sale's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaleAction {
    Pause,
    Resume,
    Close,
}

impl SaleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Close => "close",
        }
    }

    /// The state `action` leads to from `from`, if the state machine allows it.
    pub fn apply(self, from: SaleState) -> Result<SaleState, SaleConflict> {
        use SaleState as S;
        match (self, from) {
            (Self::Pause, S::Open) => Ok(S::Paused),
            (Self::Resume, S::Paused) => Ok(S::Open),
            (Self::Close, S::Scheduled | S::Open | S::Paused) => Ok(S::Closed),
            _ => Err(SaleConflict { action: self, from }),
        }
    }
}

/// An action the sale's state does not allow (resume an open sale, pause a closed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a sale that is {}", action.as_str(), from.as_str())]
pub struct SaleConflict {
    pub action: SaleAction,
    pub from: SaleState,
}

/// A concert's sale settings, as stored. `None` for the admission rate or capacity
/// means "the server's configured default", so concerts created before sales had
/// settings (or without them) behave as they always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleSettings {
    pub state: SaleState,
    pub opens_at: Option<DateTime<Utc>>,
    pub admission_rate: Option<u64>,
    pub active_capacity: Option<u64>,
    pub max_seats_per_fan: u32,
}

/// Settings given when a concert is created or an operator changes them; `None`
/// leaves a setting as it is (or at its default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaleChanges {
    pub opens_at: Option<DateTime<Utc>>,
    pub admission_rate: Option<u64>,
    pub active_capacity: Option<u64>,
    pub max_seats_per_fan: Option<u32>,
}

/// One setting's change, for the event that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingChange {
    pub field: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

impl SaleSettings {
    pub const MAX_ADMISSION_RATE: u64 = 10_000;
    pub const MAX_ACTIVE_CAPACITY: u64 = 1_000_000;
    pub const MAX_SEATS_PER_FAN: u32 = 100;
    pub const DEFAULT_MAX_SEATS_PER_FAN: u32 = 4;

    /// A new concert's sale: SCHEDULED if it opens later, else OPEN at once.
    pub fn new(changes: SaleChanges, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        changes.validate(now)?;
        Ok(Self {
            state: if changes.opens_at.is_some() {
                SaleState::Scheduled
            } else {
                SaleState::Open
            },
            opens_at: changes.opens_at,
            admission_rate: changes.admission_rate,
            active_capacity: changes.active_capacity,
            max_seats_per_fan: changes
                .max_seats_per_fan
                .unwrap_or(Self::DEFAULT_MAX_SEATS_PER_FAN),
        })
    }

    /// The state as fans see it at `now`: a SCHEDULED sale whose time has come is
    /// OPEN, even before the opening tick has recorded it.
    pub fn state_at(&self, now: DateTime<Utc>) -> SaleState {
        match (self.state, self.opens_at) {
            (SaleState::Scheduled, Some(at)) if at <= now => SaleState::Open,
            (state, _) => state,
        }
    }

    /// These settings with `changes` applied, and what changed. The opening may
    /// move only while the sale is still SCHEDULED, and only into the future.
    pub fn change(
        &self,
        changes: SaleChanges,
        now: DateTime<Utc>,
    ) -> Result<(Self, Vec<SettingChange>), SaleChangeError> {
        changes.validate(now)?;
        if changes.opens_at.is_some() && self.state_at(now) != SaleState::Scheduled {
            return Err(SaleChangeError::AlreadyOpened(self.state_at(now)));
        }
        let mut next = *self;
        let mut recorded = Vec::new();
        let mut record = |field: &str, old: serde_json::Value, new: serde_json::Value| {
            if old != new {
                recorded.push(SettingChange {
                    field: field.to_owned(),
                    old,
                    new,
                });
            }
        };
        if let Some(at) = changes.opens_at {
            record("opensAt", json(self.opens_at), json(Some(at)));
            next.opens_at = Some(at);
        }
        if let Some(rate) = changes.admission_rate {
            record("admissionRate", json(self.admission_rate), json(rate));
            next.admission_rate = Some(rate);
        }
        if let Some(capacity) = changes.active_capacity {
            record("activeCapacity", json(self.active_capacity), json(capacity));
            next.active_capacity = Some(capacity);
        }
        if let Some(seats) = changes.max_seats_per_fan {
            record("maxSeatsPerFan", json(self.max_seats_per_fan), json(seats));
            next.max_seats_per_fan = seats;
        }
        Ok((next, recorded))
    }
}

fn json(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

impl SaleChanges {
    fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationError> {
        if self.opens_at.is_some_and(|at| at <= now) {
            return Err(ValidationError::Sale("opensAt must be in the future"));
        }
        if self
            .admission_rate
            .is_some_and(|r| r == 0 || r > SaleSettings::MAX_ADMISSION_RATE)
        {
            return Err(ValidationError::Sale(
                "admissionRate must be 1-10000 admissions per second",
            ));
        }
        if self
            .active_capacity
            .is_some_and(|c| c == 0 || c > SaleSettings::MAX_ACTIVE_CAPACITY)
        {
            return Err(ValidationError::Sale(
                "activeCapacity must be 1-1000000 fans",
            ));
        }
        if self
            .max_seats_per_fan
            .is_some_and(|n| n == 0 || n > SaleSettings::MAX_SEATS_PER_FAN)
        {
            return Err(ValidationError::Sale("maxSeatsPerFan must be 1-100 seats"));
        }
        Ok(())
    }
}

/// Why settings could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaleChangeError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the opening can only move while the sale is SCHEDULED; it is {}", .0.as_str())]
    AlreadyOpened(SaleState),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_state_machine_allows_exactly_the_drawn_transitions() {
        use SaleAction as A;
        use SaleState as S;
        let allowed = [
            (A::Pause, S::Open, S::Paused),
            (A::Resume, S::Paused, S::Open),
            (A::Close, S::Scheduled, S::Closed),
            (A::Close, S::Open, S::Closed),
            (A::Close, S::Paused, S::Closed),
        ];
        for action in [A::Pause, A::Resume, A::Close] {
            for from in S::ALL {
                let expected = allowed
                    .iter()
                    .find(|(a, f, _)| *a == action && *f == from)
                    .map(|(_, _, to)| *to);
                assert_eq!(
                    action.apply(from).ok(),
                    expected,
                    "{action:?} from {from:?}"
                );
            }
        }
        assert_eq!(
            A::Resume.apply(S::Closed).unwrap_err().to_string(),
            "cannot resume a sale that is CLOSED"
        );
    }

    #[test]
    fn a_new_sale_is_scheduled_only_with_a_future_opening() {
        let now = at(0);
        let later = SaleChanges {
            opens_at: Some(at(60)),
            ..SaleChanges::default()
        };
        let sale = SaleSettings::new(later, now).unwrap();
        assert_eq!(sale.state, SaleState::Scheduled);
        assert_eq!(sale.max_seats_per_fan, 4);
        assert_eq!(sale.state_at(at(59)), SaleState::Scheduled);
        assert_eq!(sale.state_at(at(60)), SaleState::Open);
        let now_open = SaleSettings::new(SaleChanges::default(), now).unwrap();
        assert_eq!(now_open.state, SaleState::Open);
        let past = SaleChanges {
            opens_at: Some(at(-1)),
            ..SaleChanges::default()
        };
        assert!(SaleSettings::new(past, now).is_err());
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let now = at(0);
        for bad in [
            SaleChanges {
                admission_rate: Some(0),
                ..SaleChanges::default()
            },
            SaleChanges {
                admission_rate: Some(10_001),
                ..SaleChanges::default()
            },
            SaleChanges {
                active_capacity: Some(0),
                ..SaleChanges::default()
            },
            SaleChanges {
                active_capacity: Some(1_000_001),
                ..SaleChanges::default()
            },
            SaleChanges {
                max_seats_per_fan: Some(0),
                ..SaleChanges::default()
            },
            SaleChanges {
                max_seats_per_fan: Some(101),
                ..SaleChanges::default()
            },
        ] {
            assert!(SaleSettings::new(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn changes_record_old_and_new_values_and_the_opening_moves_only_before_it() {
        let now = at(0);
        let sale = SaleSettings::new(
            SaleChanges {
                opens_at: Some(at(60)),
                ..SaleChanges::default()
            },
            now,
        )
        .unwrap();
        let (next, changed) = sale
            .change(
                SaleChanges {
                    admission_rate: Some(50),
                    max_seats_per_fan: Some(4),
                    ..SaleChanges::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(next.admission_rate, Some(50));
        assert_eq!(
            changed,
            vec![SettingChange {
                field: "admissionRate".into(),
                old: serde_json::Value::Null,
                new: serde_json::json!(50),
            }],
            "an unchanged value is not a change"
        );
        let move_opening = SaleChanges {
            opens_at: Some(at(120)),
            ..SaleChanges::default()
        };
        assert!(sale.change(move_opening, now).is_ok());
        assert_eq!(
            sale.change(move_opening, at(61)),
            Err(SaleChangeError::AlreadyOpened(SaleState::Open)),
            "its time has come: the sale is open"
        );
        let opened = SaleSettings {
            state: SaleState::Open,
            ..sale
        };
        assert_eq!(
            opened.change(move_opening, now),
            Err(SaleChangeError::AlreadyOpened(SaleState::Open))
        );
    }
}
