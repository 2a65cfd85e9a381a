//! Queue tokens: the bearer credential a user gets on joining a concert's waiting
//! room. A token names one user and one concert, and only an ACTIVE token may hold
//! seats or pay, and only for its own concert.

use std::fmt;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ConcertId, UserId};

/// An opaque, unguessable bearer token: `<concert id>.<64 lowercase hex digits>`.
/// The secret is 32 random bytes; the concert prefix lets every key of a token live
/// beside its concert's queue (one Redis Cluster slot), so checking it is one call.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct QueueToken {
    concert: ConcertId,
    secret: String,
}

impl QueueToken {
    const BYTES: usize = 32;

    /// Makes a token from fresh random bytes (the caller owns the randomness).
    pub fn new(concert: ConcertId, random: [u8; Self::BYTES]) -> Self {
        let mut secret = String::with_capacity(Self::BYTES * 2);
        for b in random {
            let _ = write!(secret, "{b:02x}");
        }
        Self { concert, secret }
    }

    /// Rebuilds a token from its parts as stored.
    pub fn from_parts(concert: ConcertId, secret: &str) -> Option<Self> {
        Self::parse(&format!("{concert}.{secret}"))
    }

    /// Anything not of the issued form cannot be a token we issued, so it is
    /// refused without a Redis round trip.
    pub fn parse(raw: &str) -> Option<Self> {
        let (concert, secret) = raw.split_once('.')?;
        let concert_ok = !concert.is_empty()
            && concert.len() <= 20
            && concert.bytes().all(|b| b.is_ascii_digit())
            && !concert.starts_with('0');
        let secret_ok = secret.len() == Self::BYTES * 2
            && secret
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !(concert_ok && secret_ok) {
            return None;
        }
        Some(Self {
            concert: ConcertId(concert.parse().ok()?),
            secret: secret.to_owned(),
        })
    }

    pub fn concert(&self) -> ConcertId {
        self.concert
    }

    /// The random part, which names the token inside its concert's queue.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Display for QueueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.concert, self.secret)
    }
}

/// Tokens are credentials: never print one whole.
impl fmt::Debug for QueueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueToken({}.{}…)", self.concert, &self.secret[..6])
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
    /// Estimated seconds until admission while waiting.
    pub eta_seconds: Option<u64>,
    pub active_until: Option<DateTime<Utc>>,
    /// What is left of the turn when it was read, by Redis's clock: what a timer of
    /// the turn counts down (never `active_until` minus a local clock, which may be
    /// off Redis's).
    pub active_for: Option<std::time::Duration>,
    /// Waiting in the pre-queue of a sale not yet open: no position until it opens.
    pub prequeued: bool,
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
        let token = QueueToken::new(ConcertId(7), [0xab; 32]);
        let raw = token.to_string();
        assert_eq!(raw.len(), 2 + 64);
        assert!(raw.starts_with("7."));
        assert_eq!(QueueToken::parse(&raw), Some(token.clone()));
        assert_eq!(token.concert(), ConcertId(7));
        assert_eq!(
            QueueToken::from_parts(ConcertId(7), token.secret()),
            Some(token.clone())
        );
        let secret = token.secret();
        for bad in [
            String::new(),
            secret.to_owned(),
            format!("7.{}", &secret[1..]),
            format!("7.{}", secret.to_uppercase()),
            format!("7.{}", "g".repeat(64)),
            format!("07.{secret}"),
            format!(".{secret}"),
            format!("x.{secret}"),
            format!("99999999999999999999999.{secret}"),
            format!("7.{secret}.1"),
        ] {
            assert_eq!(QueueToken::parse(&bad), None, "{bad:?}");
        }
        assert!(
            !format!("{token:?}").contains(secret),
            "Debug must not leak it"
        );
    }

    fn grant(state: TokenState) -> Grant {
        Grant {
            user_id: UserId::parse("u1").unwrap(),
            concert_id: ConcertId(7),
            state,
            position: (state == TokenState::Waiting).then_some(12),
            eta_seconds: None,
            active_until: None,
            active_for: None,
            prequeued: false,
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
