//! The HTTP API, one file per resource. Handlers are thin: extract, parse into
//! domain types, call one use case, map the result.

pub mod admin;
pub mod concerts;
pub mod health;
pub mod orders;
pub mod payments;
pub mod points;
pub mod queue;
pub mod reservations;
pub mod sale;
pub mod shows;

use poem_openapi::Tags;
use poem_openapi::types::MaybeUndefined;

use crate::error::{ApiError, ErrorCode};

#[derive(Debug, Tags)]
pub enum Tag {
    /// Join a concert's waiting room. The token it returns is the bearer credential
    /// for every call after it.
    Queue,
    /// Concerts, schedules and seat maps, served from cache and never stale after a
    /// hold, release, expiry or payment.
    Concerts,
    /// Hold a seat for a limited time, read or release one's own holds.
    Reservations,
    /// Hold several seats at once (by number or by grade), pay them in one payment,
    /// cancel a paid order for a refund.
    Orders,
    /// Prepaid points: balance, top-ups and history.
    Points,
    /// Pay a held seat with points.
    Payments,
    /// Operator calls, with the `X-Api-Key` header.
    Admin,
    /// Liveness and readiness probes.
    Operations,
}

/// An optional body field: absent is fine, `null` is not (the spec says it is a
/// value when present, so a client sending `null` has a bug worth hearing about).
pub(crate) fn absent_or_value<'a, T>(
    field: &'a MaybeUndefined<T>,
    name: &str,
) -> Result<Option<&'a T>, ApiError> {
    match field {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Value(value) => Ok(Some(value)),
        MaybeUndefined::Null => Err(ApiError::new(
            ErrorCode::MalformedRequest,
            format!("{name} must be left out or given a value, not null"),
        )),
    }
}
