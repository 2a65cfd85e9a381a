//! Identifiers. Numeric ids come from MySQL; `UserId` and `IdempotencyKey` come from
//! clients and are parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

numeric_id!(
    /// A concert: one artist's show, sold over one or more schedules.
    ConcertId
);
numeric_id!(
    /// One performance (date and venue) of a concert, with its own seats.
    ScheduleId
);
numeric_id!(
    /// A hold on a seat, which a payment turns into a sale.
    ReservationId
);
numeric_id!(
    /// An order of one or more seats of one schedule; each seat is a reservation.
    OrderId
);
numeric_id!(
    /// A completed payment.
    PaymentId
);

/// Who a queue token was issued to. Identity is asserted by an upstream login
/// service; boxoffice only insists the id is short and printable, because it is
/// stored, logged as a field and used inside Redis keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::UserId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen key that makes a money-moving request safe to retry: the same key
/// (for the same user) replays the first successful answer instead of acting twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::IdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_short_printable_and_redis_safe() {
        assert!(UserId::parse("user-42").is_ok());
        assert!(UserId::parse("ann.lee@example.com").is_ok());
        assert_eq!(UserId::parse(""), Err(ValidationError::UserId));
        assert_eq!(UserId::parse(&"a".repeat(65)), Err(ValidationError::UserId));
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "has space",
            "colon:key",
            "curly{tag}",
            "star*",
            "ünï",
            "new\nline",
        ] {
            assert_eq!(UserId::parse(bad), Err(ValidationError::UserId), "{bad:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(IdempotencyKey::parse("0195f3a4-7c1e-7e2b-9d1c-3f0a9b8c7d6e").is_ok());
        assert_eq!(
            IdempotencyKey::parse(""),
            Err(ValidationError::IdempotencyKey)
        );
        assert_eq!(
            IdempotencyKey::parse("a b"),
            Err(ValidationError::IdempotencyKey)
        );
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(65)),
            Err(ValidationError::IdempotencyKey)
        );
    }
}
