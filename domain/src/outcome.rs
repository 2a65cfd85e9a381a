//! How a use case ended when it did not succeed, decided once, on the error type:
//! an outcome the business expects (a taken seat, too few points: the caller is
//! told, and it is no fault), a dependency that could not be reached (retry
//! shortly), or a failure (a bug or a broken query: logged). The API's answer
//! (`api/src/error.rs`: its code, or 503, or 500) and the metrics' `outcome` label
//! (`infra/src/metrics.rs`) both read it from here.

use crate::error::{CancelError, ChargeError, HoldError, JoinError, PaymentError, ReleaseError};
use crate::{IdentityError, token::AccessDenied};

/// A dependency could not be reached at all (as opposed to a query that failed).
/// It travels inside `Internal` errors; [`Ending::of`] tells it apart.
#[derive(Debug, thiserror::Error)]
#[error("{0} is unreachable")]
pub struct DependencyDown(pub &'static str);

#[derive(Debug)]
pub enum Ending<'a> {
    /// A business outcome, by its metric label (`seat_taken`, ...).
    Expected(&'static str),
    /// A dependency needed to do the job safely is down.
    Unavailable(&'a anyhow::Error),
    /// Anything else that went wrong.
    Failed(&'a anyhow::Error),
}

impl<'a> Ending<'a> {
    /// An internal error's ending: [`Ending::Unavailable`] if a [`DependencyDown`]
    /// is anywhere in its chain, else [`Ending::Failed`].
    pub fn of(cause: &'a anyhow::Error) -> Self {
        if cause.downcast_ref::<DependencyDown>().is_some() {
            Self::Unavailable(cause)
        } else {
            Self::Failed(cause)
        }
    }

    /// The `outcome` label: the business outcome's name, or `unavailable` / `error`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Expected(name) => name,
            Self::Unavailable(_) => "unavailable",
            Self::Failed(_) => "error",
        }
    }

    /// Whether the caller should be told a server-side failure (503 or 500).
    pub fn is_failure(&self) -> bool {
        !matches!(self, Self::Expected(_))
    }
}

/// A use case's error, classified.
pub trait Outcome {
    fn ending(&self) -> Ending<'_>;

    /// The `outcome` label of the use case's metrics.
    fn outcome(&self) -> &'static str {
        self.ending().label()
    }
}

fn denied(e: &AccessDenied) -> Ending<'static> {
    Ending::Expected(match e {
        AccessDenied::Expired => "token_expired",
        AccessDenied::NotActive { .. } => "token_not_active",
        AccessDenied::WrongConcert => "wrong_concert",
    })
}

impl Outcome for HoldError {
    fn ending(&self) -> Ending<'_> {
        Ending::Expected(match self {
            Self::ScheduleNotFound => "schedule_not_found",
            Self::SeatNotFound => "seat_not_found",
            Self::GradeNotFound => "grade_not_found",
            Self::SeatTaken(_) => "seat_taken",
            Self::NotEnoughSeats { .. } => "not_enough_seats",
            Self::ShowCancelled => "show_cancelled",
            Self::SeatLimit(_) => "seat_limit",
            Self::Access(e) => return denied(e),
            Self::Unavailable(cause) => return Ending::Unavailable(cause),
            Self::Internal(cause) => return Ending::of(cause),
        })
    }
}

impl Outcome for ReleaseError {
    fn ending(&self) -> Ending<'_> {
        Ending::Expected(match self {
            Self::NotFound | Self::OrderNotFound => "not_found",
            Self::AlreadyPaid => "already_paid",
            Self::Internal(cause) => return Ending::of(cause),
        })
    }
}

impl Outcome for CancelError {
    fn ending(&self) -> Ending<'_> {
        Ending::Expected(match self {
            Self::NotFound => "not_found",
            Self::NotPaid => "not_paid",
            Self::AlreadyCancelled => "already_cancelled",
            Self::Closed => "closed",
            Self::IdempotencyKeyReused => "key_reused",
            Self::Internal(cause) => return Ending::of(cause),
        })
    }
}

impl Outcome for PaymentError {
    fn ending(&self) -> Ending<'_> {
        Ending::Expected(match self {
            Self::ReservationNotFound | Self::OrderNotFound => "not_found",
            Self::AlreadyPaid => "already_paid",
            Self::HoldExpired => "hold_expired",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
            Self::InsufficientPoints => "insufficient_points",
            Self::Access(e) => return denied(e),
            Self::IdempotencyKeyReused => "key_reused",
            Self::Internal(cause) => return Ending::of(cause),
        })
    }
}

impl Outcome for ChargeError {
    fn ending(&self) -> Ending<'_> {
        Ending::Expected(match self {
            Self::BalanceLimit => "balance_limit",
            Self::IdempotencyKeyReused => "key_reused",
            Self::Internal(cause) => return Ending::of(cause),
        })
    }
}

impl Outcome for JoinError {
    fn ending(&self) -> Ending<'_> {
        Ending::Expected(match self {
            Self::Identity(IdentityError::Unavailable(cause)) | Self::Unavailable(cause) => {
                return Ending::Unavailable(cause);
            }
            Self::Identity(_) => "unauthenticated",
            Self::ConcertNotFound => "concert_not_found",
            Self::SaleClosed => "sale_closed",
            Self::SoldOut => "sold_out",
            Self::Internal(cause) => return Ending::of(cause),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_down_anywhere_in_the_chain_is_unavailable() {
        let down = anyhow::Error::new(DependencyDown("MySQL")).context("no connection");
        assert_eq!(PaymentError::Internal(down).outcome(), "unavailable");
        let broken = PaymentError::Internal(anyhow::anyhow!("syntax error"));
        assert_eq!(broken.outcome(), "error");
        assert!(broken.ending().is_failure());
        assert_eq!(PaymentError::AlreadyPaid.outcome(), "already_paid");
        assert!(!PaymentError::AlreadyPaid.ending().is_failure());
        assert_eq!(HoldError::SeatTaken(vec![]).outcome(), "seat_taken");
        assert_eq!(
            HoldError::Access(AccessDenied::NotActive { position: Some(3) }).outcome(),
            "token_not_active"
        );
        assert_eq!(
            JoinError::Identity(IdentityError::Unavailable(anyhow::anyhow!("jwks"))).outcome(),
            "unavailable"
        );
    }
}
