//! Prepaid points: the only currency. Amounts are whole points, never negative.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// An amount of points (a balance, a price, a debit).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Points(pub u64);

impl Points {
    /// No wallet may hold more than this; it keeps every sum far from overflow and
    /// caps what a stolen token could park in an account.
    pub const MAX_BALANCE: Self = Self(1_000_000_000);
    /// The most a single seat may cost.
    pub const MAX_PRICE: Self = Self(10_000_000);
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A top-up of a wallet: positive and at most [`ChargeAmount::MAX`] in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeAmount(Points);

impl ChargeAmount {
    pub const MAX: Points = Points(10_000_000);

    /// Accepts the raw signed JSON number so negative input gets its own clear error.
    pub fn parse(raw: i64) -> Result<Self, ValidationError> {
        match u64::try_from(raw) {
            Ok(amount) if amount > 0 && amount <= Self::MAX.0 => Ok(Self(Points(amount))),
            _ => Err(ValidationError::Amount),
        }
    }

    pub fn points(self) -> Points {
        self.0
    }
}

/// Why a wallet's balance moved: one ledger row each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Charge,
    Payment,
    /// A cancelled order's total, credited back.
    Refund,
    /// The cancellation fee, kept from the refund.
    Fee,
}

impl LedgerKind {
    pub const ALL: [Self; 4] = [Self::Charge, Self::Payment, Self::Refund, Self::Fee];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "CHARGE",
            Self::Payment => "PAYMENT",
            Self::Refund => "REFUND",
            Self::Fee => "FEE",
        }
    }
}

/// The balance after crediting `amount`, or `None` when it would pass
/// [`Points::MAX_BALANCE`].
pub fn credit(balance: Points, amount: ChargeAmount) -> Option<Points> {
    balance
        .0
        .checked_add(amount.points().0)
        .filter(|&total| total <= Points::MAX_BALANCE.0)
        .map(Points)
}

/// The balance after paying `price`, or `None` when the wallet holds too little.
pub fn debit(balance: Points, price: Points) -> Option<Points> {
    balance.0.checked_sub(price.0).map(Points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_amounts_are_positive_and_bounded() {
        assert_eq!(
            ChargeAmount::parse(1).map(ChargeAmount::points),
            Ok(Points(1))
        );
        assert_eq!(
            ChargeAmount::parse(10_000_000).map(ChargeAmount::points),
            Ok(Points(10_000_000))
        );
        for bad in [0, -1, -10_000, 10_000_001, i64::MAX, i64::MIN] {
            assert_eq!(
                ChargeAmount::parse(bad),
                Err(ValidationError::Amount),
                "{bad}"
            );
        }
    }

    #[test]
    fn credit_stops_at_the_balance_limit() {
        let hundred = ChargeAmount::parse(100).unwrap();
        assert_eq!(credit(Points(0), hundred), Some(Points(100)));
        assert_eq!(
            credit(Points(Points::MAX_BALANCE.0 - 100), hundred),
            Some(Points::MAX_BALANCE)
        );
        assert_eq!(credit(Points(Points::MAX_BALANCE.0 - 99), hundred), None);
        assert_eq!(credit(Points(u64::MAX), hundred), None);
    }

    #[test]
    fn ledger_kinds_read_back_as_stored() {
        for kind in LedgerKind::ALL {
            assert_eq!(LedgerKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(LedgerKind::parse("charge"), None);
        assert_eq!(LedgerKind::parse(""), None);
    }

    #[test]
    fn debit_never_goes_below_zero() {
        assert_eq!(debit(Points(100), Points(40)), Some(Points(60)));
        assert_eq!(debit(Points(100), Points(100)), Some(Points(0)));
        assert_eq!(debit(Points(99), Points(100)), None);
    }
}
