//! The one place errors become HTTP. Every failure is `application/problem+json`
//! (RFC 9457) with a stable machine `code`. Each operation declares the codes it can
//! answer with ([`failures!`]); its spec lists exactly their statuses, each naming its
//! codes, so generated clients get typed errors per call. Internal causes are logged
//! here, once, and never sent.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{LazyLock, Mutex};

use domain::token::AccessDenied;
use domain::{
    AdminError, CancelError, ChargeError, Ending, HoldError, IdentityError, JoinError, LookupError,
    PaymentError, ReleaseError, TokenError, ValidationError,
};
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type as _;
use poem_openapi::{ApiResponse, Enum, Object};

/// A problem detail (RFC 9457). Branch on `code`; `title` and `detail` are for people.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct Problem {
    /// A URI naming the problem type.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// The stable machine-readable code.
    pub code: ErrorCode,
    /// For `TOKEN_NOT_ACTIVE`: the place in line (1 = next).
    #[oai(skip_serializing_if_is_none)]
    pub position: Option<u64>,
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        ApiError::new(ErrorCode::SeatTaken, "seat 7 of schedule 1 is held or sold").into_problem()
    }
}

/// Stable error codes. New codes may be added; existing ones never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The body is not valid JSON for this operation, or a parameter is missing or malformed.
    MalformedRequest,
    /// `Content-Type` is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than 2 MiB.
    PayloadTooLarge,
    /// `seatNo` is not a whole number from 1 to 100000.
    InvalidSeatNumber,
    /// `amount` is not a whole number of points from 1 to 10000000.
    InvalidAmount,
    /// `userId` is not 1-64 letters, digits, `-`, `_`, `.` or `@`.
    InvalidUserId,
    /// `Idempotency-Key` is not 1-64 visible ASCII characters.
    InvalidIdempotencyKey,
    /// A concert to create breaks a limit (see `detail`).
    InvalidConcert,
    /// Sale settings out of range, or an opening not in the future (see `detail`).
    InvalidSaleSettings,
    /// An order asks for no seats, too many, a seat twice, or both seats and a grade
    /// (see `detail`).
    InvalidOrder,
    /// A grade name is not 1-32 letters, digits, `-` or `_`.
    InvalidGrade,
    /// A schedule's grades do not number its seats from 1 without gaps, or a grade
    /// is named twice or priced out of range (see `detail`).
    InvalidGrades,
    /// `POST /v1/queue/tokens` without `idToken` (or, in development mode, `userId`).
    MissingIdentity,
    /// The identity token is not one the login service signed for boxoffice: bad
    /// signature, unsigned, another issuer or audience, unknown key, malformed.
    InvalidIdentity,
    /// The identity token has expired: sign in again.
    IdentityExpired,
    /// `userId` is not the identity token's subject.
    IdentityMismatch,
    /// No `Authorization: Bearer` token was sent.
    MissingToken,
    /// The bearer token was never issued (or is long gone).
    InvalidToken,
    /// The queue token ran out, was left, or was used up by a payment: join again.
    TokenExpired,
    /// The queue token is still waiting; `position` says where.
    TokenNotActive,
    /// The queue token was issued for another concert.
    WrongConcert,
    /// The admin API key is missing or wrong.
    InvalidApiKey,
    ConcertNotFound,
    ScheduleNotFound,
    /// The schedule has no seat with this number.
    SeatNotFound,
    /// No such reservation among the caller's own.
    ReservationNotFound,
    /// No such order among the caller's own.
    OrderNotFound,
    /// The schedule has no seats of this grade.
    GradeNotFound,
    /// No such route.
    NotFound,
    MethodNotAllowed,
    /// Someone else holds or bought the seat (for an order: `detail` names every
    /// taken seat): pick another. An expected outcome in a rush.
    SeatTaken,
    /// The grade has fewer free seats than the order asks for.
    NotEnoughSeats,
    /// The show was cancelled: nothing of it is on sale.
    ShowCancelled,
    /// The reservation is already paid.
    AlreadyPaid,
    /// The hold ran out before payment; the seat may be someone else's now.
    HoldExpired,
    /// The reservation (or order) was released by its owner.
    ReservationReleased,
    /// Only a paid order can be cancelled.
    OrderNotPaid,
    /// The order is cancelled: it can no longer be paid, and is not cancelled twice.
    OrderCancelled,
    /// Cancelling closed at the concert's cutoff before the show.
    CancellationClosed,
    /// The fan already holds or bought the most seats of this concert one fan may
    /// (the sale's `maxSeatsPerFan`).
    SeatLimit,
    /// The concert's line is closed: nobody may join any more.
    SaleClosed,
    /// Every seat of the concert is sold: nobody may join any more.
    SoldOut,
    /// The sale's state does not allow this change (resume an open sale, pause a
    /// closed one, move the opening of a sale that has opened).
    SaleStateConflict,
    /// The wallet holds fewer points than the price.
    InsufficientPoints,
    /// The balance would pass 1000000000 points.
    BalanceLimit,
    /// This `Idempotency-Key` was already used for a different request.
    IdempotencyKeyReused,
    /// Too many joins from this client address: wait `Retry-After` seconds.
    RateLimited,
    /// A dependency needed to do this safely is down; retry shortly.
    ServiceUnavailable,
    /// Something failed on our side; it has been logged.
    Internal,
}

impl ErrorCode {
    fn status(self) -> StatusCode {
        use ErrorCode as C;
        match self {
            C::MalformedRequest => StatusCode::BAD_REQUEST,
            C::MissingIdentity
            | C::InvalidIdentity
            | C::IdentityExpired
            | C::MissingToken
            | C::InvalidToken
            | C::TokenExpired
            | C::InvalidApiKey => StatusCode::UNAUTHORIZED,
            C::TokenNotActive | C::WrongConcert | C::IdentityMismatch => StatusCode::FORBIDDEN,
            C::ConcertNotFound
            | C::ScheduleNotFound
            | C::SeatNotFound
            | C::ReservationNotFound
            | C::OrderNotFound
            | C::GradeNotFound
            | C::NotFound => StatusCode::NOT_FOUND,
            C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            C::SeatTaken
            | C::NotEnoughSeats
            | C::ShowCancelled
            | C::OrderNotPaid
            | C::OrderCancelled
            | C::CancellationClosed
            | C::SeatLimit
            | C::SaleClosed
            | C::SoldOut
            | C::SaleStateConflict
            | C::AlreadyPaid
            | C::HoldExpired
            | C::ReservationReleased
            | C::IdempotencyKeyReused => StatusCode::CONFLICT,
            C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            C::InvalidSeatNumber
            | C::InvalidAmount
            | C::InvalidUserId
            | C::InvalidIdempotencyKey
            | C::InvalidConcert
            | C::InvalidSaleSettings
            | C::InvalidOrder
            | C::InvalidGrade
            | C::InvalidGrades
            | C::InsufficientPoints
            | C::BalanceLimit => StatusCode::UNPROCESSABLE_ENTITY,
            C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            C::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(self) -> String {
        self.to_json_string().to_lowercase().replace('_', "-")
    }

    fn to_json_string(self) -> String {
        use poem_openapi::types::ToJSON as _;
        self.to_json()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Every problem boxoffice answers with, by status. An operation answers through
/// [`Failure`], whose spec lists only the statuses of the codes it declares.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request: unparsable JSON, a missing field, parameter or header.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No valid bearer token (`MISSING_TOKEN`, `INVALID_TOKEN`, `TOKEN_EXPIRED`), identity
    /// token (`MISSING_IDENTITY`, `INVALID_IDENTITY`, `IDENTITY_EXPIRED`) or admin key.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The token may not do this yet (`TOKEN_NOT_ACTIVE`) or here (`WRONG_CONCERT`), or
    /// `userId` is not the identity token's subject (`IDENTITY_MISMATCH`).
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such concert, schedule, seat, grade or (own) reservation or order.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The method is not allowed on this path.
    #[oai(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Json<Problem>),
    /// The state forbids it: `SEAT_TAKEN`, `ALREADY_PAID`, `HOLD_EXPIRED`, ... Expected in a rush.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body is larger than 2 MiB.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body must be `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// Well-formed but invalid values, or a rule like `INSUFFICIENT_POINTS`.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many joins from this client (`RATE_LIMITED`): try again after
    /// `Retry-After` seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    RateLimited(
        Json<Problem>,
        /// Whole seconds to wait before trying again (at least 1).
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Something failed on our side.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// A dependency needed to do this safely is down; retry shortly.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What an operation answers: its success responses, or a [`Failure`] of one of
/// the codes `F` declares.
pub type Answer<T, F> = Result<T, Failure<F>>;

/// Groups of error codes; an operation's codes are the union of its groups.
pub type Codes = &'static [&'static [ErrorCode]];

/// The error codes one operation can answer with, declared with [`failures!`].
pub trait Failures: 'static {
    const CODES: Codes;
}

/// Declares an operation's failures: a type naming them, whose codes are the
/// union of the groups and the codes listed after `;`. A server-side failure
/// (`INTERNAL`, `SERVICE_UNAVAILABLE`) is possible everywhere and implied.
///
/// `failures!(HoldOrderFailures: JSON_BODY, QUEUE_TOKEN; SEAT_TAKEN, ...);`
macro_rules! failures {
    ($(#[$doc:meta])* $name:ident: $($group:expr),* $(; $($code:ident),* $(,)?)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {}

        impl $crate::error::Failures for $name {
            const CODES: $crate::error::Codes = &[
                $($group,)*
                $(&[$($crate::error::ErrorCode::$code),*])?
            ];
        }
    };
}
pub(crate) use failures;

/// The body could not be read as the operation's JSON.
pub const JSON_BODY: &[ErrorCode] = &[
    ErrorCode::MalformedRequest,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::PayloadTooLarge,
];
/// A path, query or header parameter is missing or malformed.
pub const PARAMETERS: &[ErrorCode] = &[ErrorCode::MalformedRequest];
/// The call takes a queue token (`Authorization: Bearer`): none, or one never issued.
pub const QUEUE_TOKEN: &[ErrorCode] = &[ErrorCode::MissingToken, ErrorCode::InvalidToken];
/// The call books: the token must be ACTIVE, and for the concert booked.
pub const ACTIVE_TOKEN: &[ErrorCode] = &[
    ErrorCode::TokenExpired,
    ErrorCode::TokenNotActive,
    ErrorCode::WrongConcert,
];
/// An operator call (`X-Api-Key`).
pub const ADMIN_KEY: &[ErrorCode] = &[ErrorCode::InvalidApiKey];
/// A failure on our side: possible in every operation.
const SERVER: &[ErrorCode] = &[ErrorCode::Internal, ErrorCode::ServiceUnavailable];

/// An operation's failure: a problem with one of the codes `F` declares. A code it
/// does not declare is a bug in the handler: it is logged and answered as 500, so
/// the spec never lies to a client (and the tests, which never expect a 500, fail).
pub struct Failure<F>(ApiError, PhantomData<fn() -> F>);

impl<F> std::fmt::Debug for Failure<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<F: Failures> Failure<F> {
    /// Every code `F` can answer with, the server's included, each once (for the spec).
    fn codes() -> Vec<ErrorCode> {
        let mut codes: Vec<ErrorCode> = Vec::new();
        for &code in Self::groups().flatten() {
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        codes
    }

    /// Whether `F` can answer with `code`: looked up in place, on every failure.
    fn declares(code: ErrorCode) -> bool {
        Self::groups().any(|group| group.contains(&code))
    }

    fn groups() -> impl Iterator<Item = &'static [ErrorCode]> {
        F::CODES.iter().copied().chain([SERVER])
    }
}

impl<F: Failures> From<ApiError> for Failure<F> {
    fn from(error: ApiError) -> Self {
        let code = error.code();
        if Self::declares(code) {
            return Self(error, PhantomData);
        }
        tracing::error!(
            ?code,
            operation = std::any::type_name::<F>(),
            "an answer the operation does not declare; sent as 500"
        );
        Self(
            ApiError::new(
                ErrorCode::Internal,
                "an internal error occurred; it has been logged",
            ),
            PhantomData,
        )
    }
}

/// Every error a handler meets converts with `?`, through [`ApiError`].
macro_rules! failure_from {
    ($($error:ty),* $(,)?) => {$(
        impl<F: Failures> From<$error> for Failure<F> {
            fn from(error: $error) -> Self {
                ApiError::from(error).into()
            }
        }
    )*};
}
failure_from!(
    anyhow::Error,
    ValidationError,
    AccessDenied,
    TokenError,
    IdentityError,
    JoinError,
    LookupError,
    HoldError,
    ReleaseError,
    ChargeError,
    PaymentError,
    CancelError,
    AdminError,
);

impl<F: Failures> ApiResponse for Failure<F> {
    fn meta() -> MetaResponses {
        let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
        for code in Self::codes() {
            by_status
                .entry(code.status().as_u16())
                .or_default()
                .push(code);
        }
        let responses = by_status
            .into_iter()
            .map(|(status, codes)| MetaResponse {
                description: describe(status, &codes),
                status: Some(status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/problem+json",
                    schema: Problem::schema_ref(),
                }],
                headers: if status == StatusCode::TOO_MANY_REQUESTS.as_u16() {
                    vec![MetaHeader {
                        name: "Retry-After".into(),
                        description: Some(
                            "Whole seconds to wait before trying again (at least 1).".into(),
                        ),
                        required: true,
                        deprecated: false,
                        schema: u64::schema_ref(),
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

impl<F: Failures> poem::IntoResponse for Failure<F> {
    fn into_response(self) -> poem::Response {
        self.0.into_response()
    }
}

impl<F: Failures> From<Failure<F>> for poem::Error {
    fn from(failure: Failure<F>) -> Self {
        use poem::IntoResponse as _;
        poem::Error::from_response(failure.into_response())
    }
}

/// A response's description in the spec: the status and the codes it carries
/// here ("Conflict: `SEAT_TAKEN`, `NOT_ENOUGH_SEATS`."). The spec's metadata wants
/// `&'static str`, so each distinct text is made once and kept.
fn describe(status: u16, codes: &[ErrorCode]) -> &'static str {
    static TEXTS: LazyLock<Mutex<Vec<&'static str>>> = LazyLock::new(Mutex::default);
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let names: Vec<String> = codes
        .iter()
        .map(|c| format!("`{}`", c.to_json_string()))
        .collect();
    let text = format!("{reason}: {}.", names.join(", "));
    let mut texts = TEXTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = texts.iter().find(|t| **t == text) {
        return known;
    }
    let kept: &'static str = Box::leak(text.into_boxed_str());
    texts.push(kept);
    kept
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::with_position(code, detail, None)
    }

    fn with_position(code: ErrorCode, detail: impl Into<String>, position: Option<u64>) -> Self {
        let status = code.status();
        let problem = Json(Problem {
            kind: format!("urn:boxoffice:problem:{}", code.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            position,
        });
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest(problem),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem),
            StatusCode::FORBIDDEN => Self::Forbidden(problem),
            StatusCode::NOT_FOUND => Self::NotFound(problem),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(problem),
            StatusCode::CONFLICT => Self::Conflict(problem),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(problem),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(problem),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(problem),
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited(problem, 1),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem),
            _ => Self::Internal(problem),
        }
    }

    /// `429 RATE_LIMITED`, to try again after `retry_after` (whole seconds, at least 1).
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after
            .as_secs()
            .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
            .max(1);
        let mut error = Self::new(
            ErrorCode::RateLimited,
            format!("too many joins from this client; try again in {seconds} s"),
        );
        if let Self::RateLimited(_, retry) = &mut error {
            *retry = seconds;
        }
        error
    }

    pub fn code(&self) -> ErrorCode {
        self.problem().code
    }

    fn problem(&self) -> &Problem {
        match self {
            Self::BadRequest(p)
            | Self::Unauthorized(p)
            | Self::Forbidden(p)
            | Self::NotFound(p)
            | Self::MethodNotAllowed(p)
            | Self::Conflict(p)
            | Self::PayloadTooLarge(p)
            | Self::UnsupportedMediaType(p)
            | Self::Unprocessable(p)
            | Self::RateLimited(p, _)
            | Self::Internal(p)
            | Self::Unavailable(p) => &p.0,
        }
    }

    pub fn into_problem(self) -> Problem {
        self.problem().clone()
    }

    /// Answers a failure as the domain classifies it ([`Ending::of`]): 503 for a
    /// dependency down, else 500. The cause is logged (once, here) and never sent.
    fn internal(cause: &anyhow::Error) -> Self {
        if let Ending::Unavailable(cause) = Ending::of(cause) {
            return Self::unavailable(cause);
        }
        tracing::error!(error = format!("{cause:#}"), "request failed");
        Self::new(
            ErrorCode::Internal,
            "an internal error occurred; it has been logged",
        )
    }

    fn unavailable(cause: &anyhow::Error) -> Self {
        tracing::warn!(error = format!("{cause:#}"), "dependency unavailable");
        Self::new(
            ErrorCode::ServiceUnavailable,
            "a dependency is unavailable; retry shortly",
        )
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(&e)
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let code = match e {
            ValidationError::SeatNo => ErrorCode::InvalidSeatNumber,
            ValidationError::Amount => ErrorCode::InvalidAmount,
            ValidationError::UserId => ErrorCode::InvalidUserId,
            ValidationError::IdempotencyKey => ErrorCode::InvalidIdempotencyKey,
            ValidationError::HoldDuration | ValidationError::Concert(_) => {
                ErrorCode::InvalidConcert
            }
            ValidationError::Sale(_) => ErrorCode::InvalidSaleSettings,
            ValidationError::Order(_) => ErrorCode::InvalidOrder,
            ValidationError::Grade => ErrorCode::InvalidGrade,
            ValidationError::Grades(_) => ErrorCode::InvalidGrades,
        };
        Self::new(code, e.to_string())
    }
}

impl From<AccessDenied> for ApiError {
    fn from(e: AccessDenied) -> Self {
        match e {
            AccessDenied::Expired => Self::new(ErrorCode::TokenExpired, e.to_string()),
            AccessDenied::NotActive { position } => Self::with_position(
                ErrorCode::TokenNotActive,
                "the queue token is not admitted yet; wait for your turn",
                position,
            ),
            AccessDenied::WrongConcert => Self::new(ErrorCode::WrongConcert, e.to_string()),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid => Self::new(ErrorCode::InvalidToken, e.to_string()),
            TokenError::Unavailable(cause) => Self::unavailable(&cause),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        let code = match e {
            IdentityError::Missing => ErrorCode::MissingIdentity,
            IdentityError::Invalid(_) => ErrorCode::InvalidIdentity,
            IdentityError::Expired => ErrorCode::IdentityExpired,
            IdentityError::Mismatch => ErrorCode::IdentityMismatch,
            IdentityError::UserId(invalid) => return invalid.into(),
            IdentityError::Unavailable(cause) => return Self::unavailable(&cause),
        };
        Self::new(code, e.to_string())
    }
}

impl From<JoinError> for ApiError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Identity(denied) => denied.into(),
            JoinError::ConcertNotFound => Self::new(ErrorCode::ConcertNotFound, e.to_string()),
            JoinError::SaleClosed => Self::new(ErrorCode::SaleClosed, e.to_string()),
            JoinError::SoldOut => Self::new(ErrorCode::SoldOut, e.to_string()),
            JoinError::Unavailable(cause) => Self::unavailable(&cause),
            JoinError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::ConcertNotFound => Self::new(ErrorCode::ConcertNotFound, e.to_string()),
            LookupError::ScheduleNotFound => Self::new(ErrorCode::ScheduleNotFound, e.to_string()),
            LookupError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<HoldError> for ApiError {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::ScheduleNotFound => Self::new(ErrorCode::ScheduleNotFound, e.to_string()),
            HoldError::SeatNotFound => Self::new(ErrorCode::SeatNotFound, e.to_string()),
            HoldError::SeatTaken(_) => Self::new(ErrorCode::SeatTaken, e.to_string()),
            HoldError::GradeNotFound => Self::new(ErrorCode::GradeNotFound, e.to_string()),
            HoldError::NotEnoughSeats { .. } => Self::new(ErrorCode::NotEnoughSeats, e.to_string()),
            HoldError::ShowCancelled => Self::new(ErrorCode::ShowCancelled, e.to_string()),
            HoldError::SeatLimit(_) => Self::new(ErrorCode::SeatLimit, e.to_string()),
            HoldError::Access(denied) => denied.into(),
            HoldError::Unavailable(cause) => Self::unavailable(&cause),
            HoldError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        match e {
            ReleaseError::NotFound => Self::new(ErrorCode::ReservationNotFound, e.to_string()),
            ReleaseError::OrderNotFound => Self::new(ErrorCode::OrderNotFound, e.to_string()),
            ReleaseError::AlreadyPaid => Self::new(ErrorCode::AlreadyPaid, e.to_string()),
            ReleaseError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<ChargeError> for ApiError {
    fn from(e: ChargeError) -> Self {
        match e {
            ChargeError::BalanceLimit => Self::new(ErrorCode::BalanceLimit, e.to_string()),
            ChargeError::IdempotencyKeyReused => {
                Self::new(ErrorCode::IdempotencyKeyReused, e.to_string())
            }
            ChargeError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::ReservationNotFound => {
                Self::new(ErrorCode::ReservationNotFound, e.to_string())
            }
            PaymentError::AlreadyPaid => Self::new(ErrorCode::AlreadyPaid, e.to_string()),
            PaymentError::HoldExpired => Self::new(ErrorCode::HoldExpired, e.to_string()),
            PaymentError::Released => Self::new(ErrorCode::ReservationReleased, e.to_string()),
            PaymentError::OrderNotFound => Self::new(ErrorCode::OrderNotFound, e.to_string()),
            PaymentError::Cancelled => Self::new(ErrorCode::OrderCancelled, e.to_string()),
            PaymentError::InsufficientPoints => {
                Self::new(ErrorCode::InsufficientPoints, e.to_string())
            }
            PaymentError::Access(denied) => denied.into(),
            PaymentError::IdempotencyKeyReused => {
                Self::new(ErrorCode::IdempotencyKeyReused, e.to_string())
            }
            PaymentError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        let code = match e {
            CancelError::NotFound => ErrorCode::OrderNotFound,
            CancelError::NotPaid => ErrorCode::OrderNotPaid,
            CancelError::AlreadyCancelled => ErrorCode::OrderCancelled,
            CancelError::Closed => ErrorCode::CancellationClosed,
            CancelError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            CancelError::Internal(cause) => return Self::internal(&cause),
        };
        Self::new(code, e.to_string())
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(invalid) => invalid.into(),
            AdminError::ConcertNotFound => Self::new(ErrorCode::ConcertNotFound, e.to_string()),
            AdminError::ScheduleNotFound => Self::new(ErrorCode::ScheduleNotFound, e.to_string()),
            AdminError::GradeNotFound => Self::new(ErrorCode::GradeNotFound, e.to_string()),
            AdminError::SaleConflict(_) | AdminError::AlreadyOpened(_) => {
                Self::new(ErrorCode::SaleStateConflict, e.to_string())
            }
            AdminError::Internal(cause) => Self::internal(&cause),
        }
    }
}

/// Turns the framework's own errors (bad JSON, missing header or token, unknown
/// route, wrong method or media type) into problems, so *every* error a client
/// sees has the same shape.
/// `admin`: the call was to an admin route, where the missing credential is the API key.
pub fn framework_error(err: poem::Error, admin: bool) -> poem::Response {
    use poem::IntoResponse as _;
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParseRequestPayloadError,
    };

    if err.is_from_response() {
        // Already a complete response: one of ours, from a handler or a checker.
        return err.into_response();
    }
    let api_error = if err.is::<AuthorizationError>() && admin {
        ApiError::new(ErrorCode::InvalidApiKey, "missing or wrong X-Api-Key")
    } else if err.is::<AuthorizationError>() {
        ApiError::new(
            ErrorCode::MissingToken,
            "send the queue token as `Authorization: Bearer <token>`",
        )
    } else if err.is::<ContentTypeError>() {
        ApiError::new(ErrorCode::UnsupportedMediaType, err.to_string())
    } else if err.is::<ParseRequestPayloadError>() || err.is::<ParseParamError>() {
        ApiError::new(ErrorCode::MalformedRequest, err.to_string())
    } else {
        match err.status() {
            StatusCode::NOT_FOUND => ApiError::new(ErrorCode::NotFound, "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed here")
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(ErrorCode::PayloadTooLarge, err.to_string())
            }
            StatusCode::BAD_REQUEST | StatusCode::LENGTH_REQUIRED => {
                ApiError::new(ErrorCode::MalformedRequest, err.to_string())
            }
            _ => return err.into_response(),
        }
    };
    api_error.into_response()
}
