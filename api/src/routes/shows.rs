//! Operator calls on one schedule (a show): its grades' prices and its cancellation.

use domain::{GradeName, Points, ScheduleId, ValidationError};
use infra::Services;
use infra::service::{admin, shows};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use super::concerts::GradeAvailability;
use crate::auth::AdminAuth;
use crate::error::{ADMIN_KEY, Answer, JSON_BODY, PARAMETERS, failures};
use crate::text::{GradePrice, GradeText, Text};

#[derive(Debug)]
pub struct ShowsApi {
    pub svc: Services,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct GradePriceChange {
    /// Points per seat for holds from now on (1-10000000); holds made before keep
    /// their price.
    pub price: GradePrice,
}

/// Where a show's cancellation stands.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ShowCancellation {
    pub schedule_id: u64,
    /// Held or paid orders still to release or refund (0 when done).
    pub orders_to_settle: u64,
    /// Paid orders refunded in full so far.
    pub orders_refunded: u64,
}

impl From<shows::ShowCancellation> for ShowCancellation {
    fn from(c: shows::ShowCancellation) -> Self {
        Self {
            schedule_id: c.schedule.0,
            orders_to_settle: c.orders_to_settle,
            orders_refunded: c.orders_refunded,
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum CancelShowResponse {
    /// The show is cancelled: no more holds; its held orders are being released and
    /// its paid orders refunded in full, in the background (poll the same path with
    /// GET). Cancelling again changes nothing.
    #[oai(status = 202)]
    Accepted(Json<ShowCancellation>),
}

failures!(ChangeGradePriceFailures: JSON_BODY, PARAMETERS, ADMIN_KEY;
    InvalidGrade, InvalidGrades, ScheduleNotFound, GradeNotFound);
failures!(
    /// Cancelling a show, and reading how far that has come.
    ShowFailures: PARAMETERS, ADMIN_KEY; ScheduleNotFound
);

#[OpenApi(prefix_path = "/v1/admin/schedules", tag = "Tag::Admin")]
impl ShowsApi {
    /// Change a grade's price
    ///
    /// For holds from now on: orders already held keep the prices they were held at.
    #[oai(
        path = "/:scheduleId/grades/:grade",
        method = "patch",
        operation_id = "changeGradePrice"
    )]
    async fn change_price(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "scheduleId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        schedule_id: Path<u64>,
        grade: Path<Text<GradeText>>,
        body: Json<GradePriceChange>,
    ) -> Answer<Json<GradeAvailability>, ChangeGradePriceFailures> {
        let grade = GradeName::parse(&grade.0.0)?;
        let price = u64::try_from(body.price.0)
            .ok()
            .filter(|p| (1..=Points::MAX_PRICE.0).contains(p))
            .ok_or(ValidationError::Grades("a grade costs 1-10000000 points"))?;
        let row = admin::set_grade_price(
            &self.svc,
            ScheduleId(schedule_id.0),
            &grade,
            Points(price),
            infra::now(),
        )
        .await?;
        Ok(Json(row.into()))
    }

    /// Cancel a show
    ///
    /// Closes the schedule for sale at once, releases its held orders and refunds
    /// every paid one in full (no fee), in batches that survive a crash and restart
    /// without refunding anyone twice.
    #[oai(
        path = "/:scheduleId/cancellation",
        method = "post",
        operation_id = "cancelShow"
    )]
    async fn cancel(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "scheduleId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        schedule_id: Path<u64>,
    ) -> Answer<CancelShowResponse, ShowFailures> {
        let progress = shows::cancel(&self.svc, ScheduleId(schedule_id.0), infra::now()).await?;
        Ok(CancelShowResponse::Accepted(Json(progress.into())))
    }

    /// A show cancellation's progress
    #[oai(
        path = "/:scheduleId/cancellation",
        method = "get",
        operation_id = "getShowCancellation"
    )]
    async fn progress(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "scheduleId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        schedule_id: Path<u64>,
    ) -> Answer<Json<ShowCancellation>, ShowFailures> {
        let progress = shows::progress(&self.svc, ScheduleId(schedule_id.0)).await?;
        Ok(Json(progress.into()))
    }
}
