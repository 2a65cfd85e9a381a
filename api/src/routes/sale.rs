//! A concert's sale: the operator's view and live controls (admin, `X-Api-Key`), and
//! the public status a waiting-room page or a status widget shows.

use chrono::{DateTime, Utc};
use domain::sale::SaleChanges;
use domain::{ConcertId, SaleAction, SaleState};
use infra::Services;
use infra::service::sale::{self, FanView, SaleReport};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::{Tag, absent_or_value};
use crate::auth::AdminAuth;
use crate::error::{ADMIN_KEY, Answer, ApiError, ApiResult, JSON_BODY, PARAMETERS, failures};

#[derive(Debug)]
pub struct SaleApi {
    pub svc: Services,
}

/// Where a sale stands: SCHEDULED (not open yet; joins wait in the pre-queue),
/// OPEN, PAUSED (nobody admitted; the line keeps its order), CLOSED (joins refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SaleStateName {
    Scheduled,
    Open,
    Paused,
    Closed,
}

impl From<SaleState> for SaleStateName {
    fn from(state: SaleState) -> Self {
        match state {
            SaleState::Scheduled => Self::Scheduled,
            SaleState::Open => Self::Open,
            SaleState::Paused => Self::Paused,
            SaleState::Closed => Self::Closed,
        }
    }
}

/// A sale as fans see it: its state, or SOLD_OUT once every seat is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PublicSaleState {
    Scheduled,
    Open,
    Paused,
    Closed,
    SoldOut,
}

impl From<FanView> for PublicSaleState {
    fn from(view: FanView) -> Self {
        match view {
            FanView::SoldOut => Self::SoldOut,
            FanView::State(SaleState::Scheduled) => Self::Scheduled,
            FanView::State(SaleState::Open) => Self::Open,
            FanView::State(SaleState::Paused) => Self::Paused,
            FanView::State(SaleState::Closed) => Self::Closed,
        }
    }
}

/// A sale's settings, given when a concert is created or changed later. An absent
/// field stays as it is; on creation it takes its default.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct SaleSettingsInput {
    /// When the sale opens; must be in the future, and can move only while the
    /// sale is SCHEDULED. Fans who join earlier wait in a pre-queue and get places
    /// in a random order at the opening. Default: on sale at once.
    pub opens_at: MaybeUndefined<DateTime<Utc>>,
    /// Fans admitted per second, 1-10000. Default: the server's.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    pub admission_rate: MaybeUndefined<u64>,
    /// Fans admitted (ACTIVE) at once, 1-1000000. Default: the server's.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub active_capacity: MaybeUndefined<u64>,
    /// Seats one fan may hold or buy of this concert, 1-100. Default: 4.
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub max_seats_per_fan: MaybeUndefined<u32>,
}

impl SaleSettingsInput {
    /// The settings given; `null` for any of them is `400 MALFORMED_REQUEST`.
    pub fn changes(&self) -> Result<SaleChanges, ApiError> {
        Ok(SaleChanges {
            opens_at: absent_or_value(&self.opens_at, "opensAt")?.copied(),
            admission_rate: absent_or_value(&self.admission_rate, "admissionRate")?.copied(),
            active_capacity: absent_or_value(&self.active_capacity, "activeCapacity")?.copied(),
            max_seats_per_fan: absent_or_value(&self.max_seats_per_fan, "maxSeatsPerFan")?.copied(),
        })
    }
}

/// The operator's view of a sale.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct SaleStatus {
    pub concert_id: u64,
    pub state: SaleStateName,
    /// Every seat of the concert is sold (joins get `409 SOLD_OUT`).
    pub sold_out: bool,
    pub opens_at: Option<DateTime<Utc>>,
    /// Fans admitted per second at most (the server's default unless set).
    pub admission_rate: u64,
    /// Fans ACTIVE at once at most (the server's default unless set).
    pub active_capacity: u64,
    pub max_seats_per_fan: u32,
    /// Fans in the pre-queue (until the opening).
    pub pre_queued: u64,
    /// Fans in line after the opening.
    pub waiting: u64,
    /// Fans admitted whose turn has not ended.
    pub active: u64,
    pub admitted_last_minute: u64,
    /// Admissions per second, measured over the last 10 seconds.
    pub measured_rate_per_second: f64,
    /// Estimated seconds until everyone in line now is admitted; absent while
    /// nobody is admitted (paused, closed).
    pub clear_seconds: Option<u64>,
    /// Fans who left the line by neither polling nor keeping a socket open.
    pub abandoned: u64,
}

impl SaleStatus {
    fn new(concert: ConcertId, report: &SaleReport) -> Self {
        let settings = &report.sale.settings;
        let prequeued = report.line.prequeued();
        Self {
            concert_id: concert.0,
            state: settings.state_at(infra::now()).into(),
            sold_out: report.sale.sold_out,
            opens_at: settings.opens_at,
            admission_rate: report.policy.rate_per_second,
            active_capacity: report.policy.capacity,
            max_seats_per_fan: settings.max_seats_per_fan,
            pre_queued: prequeued,
            waiting: report.line.waiting - prequeued,
            active: report.line.active,
            admitted_last_minute: report.line.admitted_last_minute,
            measured_rate_per_second: report.measured_rate(),
            clear_seconds: report.clear_seconds(),
            abandoned: report.line.abandoned,
        }
    }
}

/// A sale as anyone may see it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct PublicSale {
    pub concert_id: u64,
    pub state: PublicSaleState,
    /// When the sale opens (or opened).
    pub opens_at: Option<DateTime<Utc>>,
    /// Fans in line (the pre-queue included).
    pub waiting: u64,
    /// Estimated seconds a fan joining now waits, once the sale is open; absent
    /// while nobody is admitted.
    pub estimated_wait_seconds: Option<u64>,
    /// The most seats one fan may hold or buy of this concert.
    pub max_seats_per_fan: u32,
}

#[derive(Debug, ApiResponse)]
pub enum SaleResponse {
    /// The sale now. Every instance follows a change within one admission tick.
    #[oai(status = 200)]
    Ok(Json<SaleStatus>),
}

#[derive(Debug, ApiResponse)]
pub enum PublicSaleResponse {
    #[oai(status = 200)]
    Ok(Json<PublicSale>),
}

failures!(GetSaleFailures: PARAMETERS, ADMIN_KEY; ConcertNotFound);
failures!(ChangeSaleFailures: JSON_BODY, PARAMETERS, ADMIN_KEY;
    ConcertNotFound, InvalidSaleSettings, SaleStateConflict);
failures!(
    /// Pausing, resuming and closing a sale.
    SaleControlFailures: PARAMETERS, ADMIN_KEY; ConcertNotFound, SaleStateConflict
);
failures!(GetPublicSaleFailures: PARAMETERS; ConcertNotFound);

#[OpenApi]
impl SaleApi {
    /// A sale, as its operator sees it
    ///
    /// State, settings, and the line now: pre-queued, waiting, active, admitted in
    /// the last minute, the measured rate, the time to clear the line, abandoned.
    #[oai(
        path = "/v1/admin/concerts/:concertId/sale",
        method = "get",
        operation_id = "getSale",
        tag = "Tag::Admin"
    )]
    async fn get(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
    ) -> Answer<SaleResponse, GetSaleFailures> {
        Ok(self.answer(ConcertId(concert_id.0)).await?)
    }

    /// Change a sale's settings
    ///
    /// The admission rate and capacity, the seats per fan, and (while SCHEDULED)
    /// the opening. Recorded as a `SaleChanged` event with old and new values.
    #[oai(
        path = "/v1/admin/concerts/:concertId/sale",
        method = "patch",
        operation_id = "changeSale",
        tag = "Tag::Admin"
    )]
    async fn change(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
        body: Json<SaleSettingsInput>,
    ) -> Answer<SaleResponse, ChangeSaleFailures> {
        sale::change(
            &self.svc,
            ConcertId(concert_id.0),
            body.changes()?,
            infra::now(),
        )
        .await?;
        Ok(self.answer(ConcertId(concert_id.0)).await?)
    }

    /// Pause admission
    ///
    /// Nobody is let in until the sale is resumed; the line keeps its order and
    /// fans may still join. Only an OPEN sale can be paused.
    #[oai(
        path = "/v1/admin/concerts/:concertId/sale/pause",
        method = "post",
        operation_id = "pauseSale",
        tag = "Tag::Admin"
    )]
    async fn pause(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
    ) -> Answer<SaleResponse, SaleControlFailures> {
        Ok(self
            .control(ConcertId(concert_id.0), SaleAction::Pause)
            .await?)
    }

    /// Resume admission
    ///
    /// Admission continues in line order. Only a PAUSED sale can be resumed.
    #[oai(
        path = "/v1/admin/concerts/:concertId/sale/resume",
        method = "post",
        operation_id = "resumeSale",
        tag = "Tag::Admin"
    )]
    async fn resume(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
    ) -> Answer<SaleResponse, SaleControlFailures> {
        Ok(self
            .control(ConcertId(concert_id.0), SaleAction::Resume)
            .await?)
    }

    /// Close the line
    ///
    /// New joins get `409 SALE_CLOSED`; everyone waiting is told `closed` and leaves
    /// the line. Fans already admitted keep their turn. Final.
    #[oai(
        path = "/v1/admin/concerts/:concertId/sale/close",
        method = "post",
        operation_id = "closeSale",
        tag = "Tag::Admin"
    )]
    async fn close(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
    ) -> Answer<SaleResponse, SaleControlFailures> {
        Ok(self
            .control(ConcertId(concert_id.0), SaleAction::Close)
            .await?)
    }

    /// A sale's public status
    ///
    /// State (with SOLD_OUT), the opening, how many wait, and how long a fan
    /// joining now would wait.
    #[oai(
        path = "/v1/concerts/:concertId/sale",
        method = "get",
        operation_id = "getPublicSale",
        tag = "Tag::Concerts"
    )]
    async fn public(
        &self,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
    ) -> Answer<PublicSaleResponse, GetPublicSaleFailures> {
        let concert = ConcertId(concert_id.0);
        let report = sale::public(&self.svc, concert).await?;
        let view = report.sale.fan_view(infra::now());
        let admitting =
            view == FanView::State(SaleState::Open) || view == FanView::State(SaleState::Scheduled);
        Ok(PublicSaleResponse::Ok(Json(PublicSale {
            concert_id: concert.0,
            state: view.into(),
            opens_at: report.sale.settings.opens_at,
            waiting: report.line.waiting,
            estimated_wait_seconds: admitting
                .then(|| {
                    domain::queue::eta_seconds(
                        report.line.waiting + 1,
                        report.line.admitted_in_window,
                        report.policy.rate_per_second,
                    )
                })
                .flatten(),
            max_seats_per_fan: report.sale.settings.max_seats_per_fan,
        })))
    }
}

impl SaleApi {
    async fn control(&self, concert: ConcertId, action: SaleAction) -> ApiResult<SaleResponse> {
        sale::control(&self.svc, concert, action, infra::now()).await?;
        self.answer(concert).await
    }

    async fn answer(&self, concert: ConcertId) -> ApiResult<SaleResponse> {
        let report = sale::report(&self.svc, concert).await?;
        Ok(SaleResponse::Ok(Json(SaleStatus::new(concert, &report))))
    }
}
