//! Queue tokens: the bearer credential a user gets on joining a concert's waiting
//! room. A token names one user and one concert, and only an ACTIVE token may hold
//! seats or pay, and only for its own concert.

use std::fmt;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ConcertId, UserId};

/// An opaque, unguessable bearer token: 32 random bytes as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct QueueToken(String);

impl QueueToken {
    const BYTES: usize = 32;

    /// Makes a token from fresh random bytes (the caller owns the randomness).
    pub fn from_random_bytes(bytes: [u8; Self::BYTES]) -> Self {
        let mut hex = String::with_capacity(Self::BYTES * 2);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        Self(hex)
    }

    /// Anything that is not 64 lowercase hex digits cannot be a token we issued, so
    /// it is refused without a Redis round trip.
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = raw.len() == Self::BYTES * 2
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tokens are credentials: never print one whole.
impl fmt::Debug for QueueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueToken({}…)", &self.0[..6])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenState {
    /// In the waiting room, not yet admitted.
    Waiting,
    /// Admitted: may hold seats and pay until `active_until`.
    Active,
    /// Over: it ran out, its user left, or its user paid.
    Expired,
}

/// What a valid token grants, as read from the waiting room. Any valid token, even
/// an expired one, says who its user is (to read their own reservations and points,
/// or to replay a payment); only an ACTIVE one may hold seats or pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_id: UserId,
    pub concert_id: ConcertId,
    pub state: TokenState,
    /// Place in line (1 = next) while waiting.
    pub position: Option<u64>,
    pub active_until: Option<DateTime<Utc>>,
}

/// Why a valid token may not book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    #[error("the queue token has expired")]
    Expired,
    #[error("the queue token is not active yet")]
    NotActive { position: Option<u64> },
    #[error("the queue token was issued for another concert")]
    WrongConcert,
}

impl Grant {
    /// Booking for `concert` needs an ACTIVE token issued for that concert.
    pub fn require_active_for(&self, concert: ConcertId) -> Result<(), AccessDenied> {
        if self.concert_id != concert {
            return Err(AccessDenied::WrongConcert);
        }
        match self.state {
            TokenState::Active => Ok(()),
            TokenState::Waiting => Err(AccessDenied::NotActive {
                position: self.position,
            }),
            TokenState::Expired => Err(AccessDenied::Expired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_anything_else() {
        let token = QueueToken::from_random_bytes([0xab; 32]);
        assert_eq!(token.as_str().len(), 64);
        assert_eq!(QueueToken::parse(token.as_str()), Some(token.clone()));
        assert_eq!(QueueToken::parse(""), None);
        assert_eq!(QueueToken::parse(&token.as_str()[1..]), None);
        assert_eq!(QueueToken::parse(&token.as_str().to_uppercase()), None);
        assert_eq!(QueueToken::parse(&"g".repeat(64)), None);
        assert!(
            !format!("{token:?}").contains(token.as_str()),
            "Debug must not leak it"
        );
    }

    fn grant(state: TokenState) -> Grant {
        Grant {
            user_id: UserId::parse("u1").unwrap(),
            concert_id: ConcertId(7),
            state,
            position: (state == TokenState::Waiting).then_some(12),
            active_until: None,
        }
    }

    #[test]
    fn only_an_active_token_for_the_same_concert_may_book() {
        assert_eq!(
            grant(TokenState::Active).require_active_for(ConcertId(7)),
            Ok(())
        );
        assert_eq!(
            grant(TokenState::Active).require_active_for(ConcertId(8)),
            Err(AccessDenied::WrongConcert)
        );
        assert_eq!(
            grant(TokenState::Waiting).require_active_for(ConcertId(7)),
            Err(AccessDenied::NotActive { position: Some(12) })
        );
        assert_eq!(
            grant(TokenState::Expired).require_active_for(ConcertId(7)),
            Err(AccessDenied::Expired)
        );
    }
}
