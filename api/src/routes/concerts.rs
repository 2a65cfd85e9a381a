use bytes::Bytes;
use chrono::{DateTime, Utc};
use domain::{ConcertId, ScheduleId, ScheduleStatus, SeatState};
use infra::Services;
use infra::service::catalog;
use poem_openapi::param::Path;
use poem_openapi::payload::Binary;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::Tag;
use crate::error::{Answer, PARAMETERS, failures};

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

impl From<catalog::GradeAvailability> for GradeAvailability {
    fn from(grade: catalog::GradeAvailability) -> Self {
        Self {
            seat_count: grade.seat_count(),
            name: grade.name,
            price: grade.price.0,
            first_seat: grade.first_seat,
            last_seat: grade.last_seat,
            available: grade.available,
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

failures!(ListConcertsFailures:);
failures!(ListSchedulesFailures: PARAMETERS; ConcertNotFound);
failures!(GetSeatMapFailures: PARAMETERS; ScheduleNotFound);

#[OpenApi(tag = "Tag::Concerts")]
impl ConcertsApi {
    /// List concerts
    #[oai(path = "/v1/concerts", method = "get", operation_id = "listConcerts")]
    async fn concerts(&self) -> Answer<ConcertsResponse, ListConcertsFailures> {
        let body = catalog::concerts(&self.svc, |concerts| {
            json_bytes(&ConcertList {
                concerts: concerts.into_iter().map(Concert::from).collect(),
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
    ) -> Answer<SchedulesResponse, ListSchedulesFailures> {
        let concert = ConcertId(concert_id.0);
        let body = catalog::schedules(&self.svc, concert, |schedules| {
            json_bytes(&ScheduleList {
                concert_id: concert.0,
                schedules: schedules.into_iter().map(Schedule::from).collect(),
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
    ) -> Answer<SeatMapResponse, GetSeatMapFailures> {
        let schedule = ScheduleId(schedule_id.0);
        let body = catalog::seat_map(&self.svc, schedule, |map| {
            json_bytes(&SeatMap {
                schedule_id: map.schedule_id.0,
                concert_id: map.concert_id.0,
                seats: map.seats.into_iter().map(Seat::from).collect(),
            })
        })
        .await?;
        Ok(SeatMapResponse::Ok(Binary(body)))
    }
}

fn json_bytes<T: ToJSON>(value: &T) -> Bytes {
    Bytes::from(value.to_json_string())
}

impl From<catalog::Concert> for Concert {
    fn from(concert: catalog::Concert) -> Self {
        Self {
            id: concert.id.0,
            title: concert.title,
            artist: concert.artist,
        }
    }
}

impl From<catalog::Schedule> for Schedule {
    fn from(schedule: catalog::Schedule) -> Self {
        Self {
            id: schedule.id.0,
            concert_id: schedule.concert_id.0,
            available_seats: schedule.available_seats(),
            venue: schedule.venue,
            starts_at: schedule.starts_at,
            seat_count: schedule.seat_count,
            status: match schedule.status {
                ScheduleStatus::OnSale => ScheduleState::OnSale,
                ScheduleStatus::Cancelled => ScheduleState::Cancelled,
            },
            grades: schedule.grades.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<catalog::Seat> for Seat {
    fn from(seat: catalog::Seat) -> Self {
        Self {
            seat_no: seat.seat_no,
            grade: seat.grade,
            price: seat.price.0,
            status: seat.state.into(),
        }
    }
}
