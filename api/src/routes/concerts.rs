use bytes::Bytes;
use chrono::{DateTime, Utc};
use domain::{ConcertId, LookupError, ScheduleId, SeatState};
use infra::Services;
use infra::db::catalog::{ConcertRow, GradeRow, ScheduleRow, SeatRow};
use infra::redis::cache::{Entry, Loaded};
use infra::service::catalog;
use poem_openapi::param::Path;
use poem_openapi::payload::Binary;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::Tag;
use crate::error::ApiResult;

#[derive(Debug)]
pub struct ConcertsApi {
    pub svc: Services,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Concert {
    pub id: u64,
    pub title: String,
    pub artist: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ConcertList {
    pub concerts: Vec<Concert>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Schedule {
    pub id: u64,
    pub concert_id: u64,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub seat_count: u32,
    /// Seats neither held nor sold right now.
    pub available_seats: u64,
    /// `CANCELLED` once an operator cancelled the show: nothing is on sale then.
    pub status: ScheduleState,
    /// The seats' grades in seat order, each with its price and free seats.
    pub grades: Vec<GradeAvailability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScheduleState {
    OnSale,
    Cancelled,
}

/// A grade (section) of a schedule: seats `firstSeat..=lastSeat` at `price` each.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct GradeAvailability {
    pub name: String,
    /// Points per seat for holds made now (a schedule created with a price per seat
    /// is one grade, `STANDARD`, listed at its lowest price).
    pub price: u64,
    pub first_seat: u32,
    pub last_seat: u32,
    pub seat_count: u32,
    /// Seats of this grade neither held nor sold right now.
    pub available: u64,
}

impl From<GradeRow> for GradeAvailability {
    fn from(row: GradeRow) -> Self {
        Self {
            seat_count: row.last_seat - row.first_seat + 1,
            name: row.grade,
            price: row.price,
            first_seat: row.first_seat,
            last_seat: row.last_seat,
            available: row.available.unsigned_abs(),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ScheduleList {
    pub concert_id: u64,
    pub schedules: Vec<Schedule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

impl From<SeatState> for SeatStatus {
    fn from(state: SeatState) -> Self {
        match state {
            SeatState::Available => Self::Available,
            SeatState::Held => Self::Held,
            SeatState::Sold => Self::Sold,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct Seat {
    pub seat_no: u32,
    /// The seat's grade (see the schedule's `grades`).
    pub grade: String,
    /// Price in points.
    pub price: u64,
    pub status: SeatStatus,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct SeatMap {
    pub schedule_id: u64,
    pub concert_id: u64,
    pub seats: Vec<Seat>,
}

impl poem_openapi::types::Example for SeatMap {
    fn example() -> Self {
        Self {
            schedule_id: 1,
            concert_id: 1,
            seats: vec![
                Seat {
                    seat_no: 1,
                    grade: "VIP".into(),
                    price: 15_000,
                    status: SeatStatus::Sold,
                },
                Seat {
                    seat_no: 2,
                    grade: "VIP".into(),
                    price: 15_000,
                    status: SeatStatus::Available,
                },
            ],
        }
    }
}

// Lookups answer with the cached JSON bytes as they are; `actual_type` tells the
// spec (and SDK generators) which schema those bytes follow.
#[derive(Debug, ApiResponse)]
pub enum ConcertsResponse {
    /// All concerts on sale.
    #[oai(status = 200, actual_type = "poem_openapi::payload::Json<ConcertList>")]
    Ok(Binary<Bytes>),
}

#[derive(Debug, ApiResponse)]
pub enum SchedulesResponse {
    /// The concert's schedules, soonest first.
    #[oai(
        status = 200,
        actual_type = "poem_openapi::payload::Json<ScheduleList>"
    )]
    Ok(Binary<Bytes>),
}

#[derive(Debug, ApiResponse)]
pub enum SeatMapResponse {
    /// Every seat of the schedule with its price and status.
    #[oai(status = 200, actual_type = "poem_openapi::payload::Json<SeatMap>")]
    Ok(Binary<Bytes>),
}

#[OpenApi(tag = "Tag::Concerts")]
impl ConcertsApi {
    /// List concerts
    #[oai(path = "/v1/concerts", method = "get", operation_id = "listConcerts")]
    async fn concerts(&self) -> ApiResult<ConcertsResponse> {
        let body = self
            .svc
            .cache
            .fetch(Entry::Concerts, async {
                let rows = catalog::concerts(&self.svc).await?;
                let list = ConcertList {
                    concerts: rows.into_iter().map(Concert::from).collect(),
                };
                Ok::<_, LookupError>(Loaded {
                    body: json_bytes(&list),
                    max_age: None,
                })
            })
            .await?;
        Ok(ConcertsResponse::Ok(Binary(body)))
    }

    /// List a concert's schedules
    ///
    /// With the number of seats still free on each.
    #[oai(
        path = "/v1/concerts/:concertId/schedules",
        method = "get",
        operation_id = "listSchedules"
    )]
    async fn schedules(
        &self,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
    ) -> ApiResult<SchedulesResponse> {
        let concert = ConcertId(concert_id.0);
        let body = self
            .svc
            .cache
            .fetch(Entry::Schedules(concert), async {
                let now = infra::now();
                let rows = catalog::schedules(&self.svc, concert, now).await?;
                let list = ScheduleList {
                    concert_id: concert.0,
                    schedules: rows
                        .into_iter()
                        .map(|(s, grades)| Schedule::from_row(s, grades))
                        .collect(),
                };
                Ok::<_, LookupError>(Loaded {
                    body: json_bytes(&list),
                    max_age: None,
                })
            })
            .await?;
        Ok(SchedulesResponse::Ok(Binary(body)))
    }

    /// Get a schedule's seat map
    ///
    /// Never stale: every hold, release, expiry and payment invalidates it.
    #[oai(
        path = "/v1/schedules/:scheduleId/seats",
        method = "get",
        operation_id = "getSeatMap"
    )]
    async fn seat_map(
        &self,
        #[oai(
            name = "scheduleId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        schedule_id: Path<u64>,
    ) -> ApiResult<SeatMapResponse> {
        let schedule = ScheduleId(schedule_id.0);
        let body = self
            .svc
            .cache
            .fetch(Entry::SeatMap(schedule), async {
                let now = infra::now();
                let (row, seats) = catalog::seat_map(&self.svc, schedule).await?;
                // The map shows holds as HELD, so it may live only until the first lapses.
                let max_age = seats
                    .iter()
                    .filter_map(|s| s.held_until)
                    .map(|t| t.and_utc())
                    .filter(|t| *t > now)
                    .min()
                    .and_then(|t| (t - now).to_std().ok());
                let map = SeatMap {
                    schedule_id: schedule.0,
                    concert_id: row.concert_id,
                    seats: seats
                        .iter()
                        .map(|s| Seat::from_row(s, now))
                        .collect::<anyhow::Result<_>>()?,
                };
                Ok::<_, LookupError>(Loaded {
                    body: json_bytes(&map),
                    max_age,
                })
            })
            .await?;
        Ok(SeatMapResponse::Ok(Binary(body)))
    }
}

fn json_bytes<T: ToJSON>(value: &T) -> Bytes {
    Bytes::from(value.to_json_string())
}

impl From<ConcertRow> for Concert {
    fn from(row: ConcertRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            artist: row.artist,
        }
    }
}

impl Schedule {
    fn from_row(row: ScheduleRow, grades: Vec<GradeRow>) -> Self {
        let grades: Vec<GradeAvailability> = grades.into_iter().map(Into::into).collect();
        Self {
            id: row.id,
            concert_id: row.concert_id,
            venue: row.venue,
            starts_at: row.starts_at.and_utc(),
            seat_count: row.seat_count,
            available_seats: grades.iter().map(|g| g.available).sum(),
            status: match domain::ScheduleStatus::parse(&row.status) {
                Some(domain::ScheduleStatus::Cancelled) => ScheduleState::Cancelled,
                _ => ScheduleState::OnSale,
            },
            grades,
        }
    }
}

impl Seat {
    fn from_row(row: &SeatRow, now: DateTime<Utc>) -> anyhow::Result<Self> {
        Ok(Self {
            seat_no: row.seat_no,
            grade: row.grade.clone(),
            price: row.price,
            status: row.state_at(now)?.into(),
        })
    }
}
