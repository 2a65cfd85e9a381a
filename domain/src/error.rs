//! The ways each use case can end other than in success. The API maps each variant
//! to one HTTP status and one stable machine code, in one place (`api/src/error.rs`).
//!
//! `Unavailable` means a dependency needed to do the job *safely* is down (Redis for
//! the seat lock or the token store): the request is refused rather than risked.
//! `Internal` carries the cause for the log; clients never see it.

use crate::token::AccessDenied;

/// Client input that does not parse into a domain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("seatNo must be a whole number from 1 to 100000")]
    SeatNo,
    #[error("amount must be a whole number of points from 1 to 10000000")]
    Amount,
    #[error("userId must be 1-64 characters of letters, digits, '-', '_', '.' or '@'")]
    UserId,
    #[error("Idempotency-Key must be 1-64 visible ASCII characters")]
    IdempotencyKey,
    #[error("hold duration must be from 1 to 3600 seconds")]
    HoldDuration,
    #[error("{0}")]
    Concert(&'static str),
    #[error("{0}")]
    Sale(&'static str),
    #[error("a grade is 1-32 letters, digits, '-' or '_'")]
    Grade,
    #[error("{0}")]
    Grades(&'static str),
    #[error("{0}")]
    Order(&'static str),
}

/// Resolving a bearer token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token, or one that boxoffice never issued")]
    Invalid,
    #[error("the token store is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Establishing who joins: the login service's token (or, in development mode,
/// the asserted user id).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("send the login service's token as idToken (or userId in development mode)")]
    Missing,
    #[error("the identity token is not valid: {0}")]
    Invalid(&'static str),
    #[error("the identity token has expired; sign in again")]
    Expired,
    #[error("userId is not the subject of the identity token")]
    Mismatch,
    #[error(transparent)]
    UserId(#[from] ValidationError),
    #[error("the identity provider's keys are unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Joining a concert's waiting room.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("no such concert")]
    ConcertNotFound,
    #[error("the line for this concert is closed")]
    SaleClosed,
    #[error("every seat of this concert is sold")]
    SoldOut,
    #[error("the waiting room is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Reading concerts, schedules and seat maps.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no such concert")]
    ConcertNotFound,
    #[error("no such schedule")]
    ScheduleNotFound,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Holding a seat.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("no such schedule")]
    ScheduleNotFound,
    #[error("this schedule has no such seat")]
    SeatNotFound,
    #[error("this schedule has no such grade")]
    GradeNotFound,
    /// The seats (of those asked for) that someone else holds or bought.
    #[error("{} held or sold", seat_list(.0))]
    SeatTaken(Vec<crate::SeatNo>),
    #[error("only {free} seats of this grade are free")]
    NotEnoughSeats { free: u32 },
    #[error("this show was cancelled")]
    ShowCancelled,
    #[error("you already hold or bought {0} seats of this concert, its limit per fan")]
    SeatLimit(u32),
    #[error(transparent)]
    Access(#[from] AccessDenied),
    #[error("the seat lock is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Reading or releasing one's own reservation.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Also what someone else's reservation looks like: its existence is not told.
    #[error("no such reservation")]
    NotFound,
    /// Also what someone else's order looks like.
    #[error("no such order")]
    OrderNotFound,
    #[error("the reservation is paid and can no longer be released")]
    AlreadyPaid,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Topping up points.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error("the balance would pass the limit of 1000000000 points")]
    BalanceLimit,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Paying a reservation.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no such reservation")]
    ReservationNotFound,
    #[error("the reservation is already paid")]
    AlreadyPaid,
    #[error("the hold expired before payment")]
    HoldExpired,
    #[error("the reservation was released")]
    Released,
    #[error("no such order")]
    OrderNotFound,
    #[error("the order was cancelled")]
    Cancelled,
    #[error("not enough points")]
    InsufficientPoints,
    #[error(transparent)]
    Access(#[from] AccessDenied),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Cancelling one's own paid order.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// Also what someone else's order looks like.
    #[error("no such order")]
    NotFound,
    #[error("only a paid order can be cancelled")]
    NotPaid,
    #[error("the order is already cancelled")]
    AlreadyCancelled,
    #[error("cancelling closed at the concert's cutoff before the show")]
    Closed,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// "seat 7 is" or "seats 7, 8 are".
fn seat_list(seats: &[crate::SeatNo]) -> String {
    let numbers: Vec<String> = seats.iter().map(ToString::to_string).collect();
    match numbers.as_slice() {
        [one] => format!("seat {one} is"),
        _ => format!("seats {} are", numbers.join(", ")),
    }
}

/// Operator calls.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no such concert")]
    ConcertNotFound,
    #[error("no such schedule")]
    ScheduleNotFound,
    #[error("this schedule has no such grade")]
    GradeNotFound,
    #[error(transparent)]
    SaleConflict(#[from] crate::sale::SaleConflict),
    #[error("the opening can only move while the sale is SCHEDULED; it is {}", .0.as_str())]
    AlreadyOpened(crate::SaleState),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}
