//! What boxoffice's business is: identifiers, amounts, seat and reservation state
//! machines, queue tokens, the errors each use case can end in, and the events the
//! system emits.
//!
//! Nothing here does I/O. Rules that depend on time take `now` as an argument, so
//! every rule is a plain function that the unit tests beside it can pin down.

pub mod catalog;
pub mod error;
pub mod event;
pub mod ids;
pub mod order;
pub mod outcome;
pub mod points;
pub mod queue;
pub mod reservation;
pub mod sale;
pub mod seat;
pub mod token;

pub use catalog::{NewConcert, NewSchedule};
pub use error::{
    AdminError, CancelError, ChargeError, HoldError, IdentityError, JoinError, LookupError,
    PaymentError, ReleaseError, TokenError, ValidationError,
};
pub use event::{DomainEvent, EventEnvelope};
pub use ids::{ConcertId, IdempotencyKey, OrderId, PaymentId, ReservationId, ScheduleId, UserId};
pub use order::{
    CancelReason, CancellationPolicy, Grade, GradeName, Order, OrderSeat, OrderStatus, Refund,
    ScheduleStatus, SeatChoice,
};
pub use outcome::{DependencyDown, Ending, Outcome};
pub use points::{ChargeAmount, LedgerKind, Points};
pub use reservation::{HoldDuration, Reservation, ReservationStatus};
pub use sale::{SaleAction, SaleSettings, SaleState};
pub use seat::{SeatNo, SeatState};
pub use token::{QueueToken, TokenState};
