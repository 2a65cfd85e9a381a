use chrono::{DateTime, Utc};
use domain::{
    CancellationPolicy, ConcertId, Grade, GradeName, NewConcert, NewSchedule, Points, SaleSettings,
    SeatNo, ValidationError,
};
use infra::Services;
use infra::service::admin;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::sale::SaleSettingsInput;
use super::{Tag, absent_or_value};
use crate::auth::AdminAuth;
use crate::error::{ADMIN_KEY, Answer, JSON_BODY, PARAMETERS, failures};
use crate::text::{
    CutoffHours, FeePercent, GradePrice, GradeText, Int, NameText, SeatNumber, SeatPrice, Text,
};

#[derive(Debug)]
pub struct AdminApi {
    pub svc: Services,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example, skip_serializing_if_is_none)]
pub struct CreateConcert {
    pub title: Text<NameText>,
    pub artist: Text<NameText>,
    /// 1-100 performances.
    pub schedules: Vec<CreateSchedule>,
    /// The sale: when it opens, how fast and how many fans are let in, seats per
    /// fan. Absent: on sale at once with the server's defaults and 4 seats per fan.
    pub sale: MaybeUndefined<SaleSettingsInput>,
    /// How fans may cancel paid orders. Absent: until 24 hours before the show, for
    /// a fee of 10%.
    pub cancellation: Option<CancellationInput>,
}

/// A schedule's seats, either in grades (`grades`), or all of one grade `STANDARD`
/// (`seatCount` with `price`, or `prices`).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct CreateSchedule {
    pub venue: Text<NameText>,
    pub starts_at: DateTime<Utc>,
    /// Seats numbered 1..=seatCount (1-100000). With `grades`, optional; if given it
    /// must be the last grade's last seat.
    pub seat_count: Option<SeatNumber>,
    /// The price of each seat in points (at most 10000000)...
    pub price: Option<SeatPrice>,
    /// ...unless `prices` gives one per seat, seat 1 first (length = seatCount).
    pub prices: Option<Vec<SeatPrice>>,
    /// Grades (sections) numbering the seats from 1 in order, each with its price;
    /// instead of `price` and `prices`.
    pub grades: Option<Vec<GradeInput>>,
}

/// Seats `firstSeat..=lastSeat` of a schedule, at `price` each.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct GradeInput {
    /// 1-32 letters, digits, `-` or `_` (`VIP`, `R`, `S`...), unique per schedule.
    pub name: Text<GradeText>,
    /// Points per seat, 1-10000000.
    pub price: GradePrice,
    pub first_seat: SeatNumber,
    pub last_seat: SeatNumber,
}

/// Until when and for what fee fans may cancel paid orders.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct CancellationInput {
    /// Cancelling closes this many hours before the show (0-8760).
    pub cutoff_hours: CutoffHours,
    /// Kept from the refund, in percent of the order's total (0-100), rounded down
    /// to whole points.
    pub fee_percent: FeePercent,
}

impl poem_openapi::types::Example for CreateConcert {
    fn example() -> Self {
        Self {
            title: Text::from("Summer Tour"),
            artist: Text::from("The Rustaceans"),
            schedules: vec![CreateSchedule {
                venue: Text::from("Olympic Hall"),
                starts_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default(),
                seat_count: None,
                price: None,
                prices: None,
                grades: Some(vec![
                    GradeInput {
                        name: "VIP".into(),
                        price: Int(15_000),
                        first_seat: Int(1),
                        last_seat: Int(10),
                    },
                    GradeInput {
                        name: "R".into(),
                        price: Int(10_000),
                        first_seat: Int(11),
                        last_seat: Int(50),
                    },
                ]),
            }],
            cancellation: Some(CancellationInput {
                cutoff_hours: Int(24),
                fee_percent: Int(10),
            }),
            sale: MaybeUndefined::Value(SaleSettingsInput {
                opens_at: DateTime::from_timestamp(1_789_000_000, 0)
                    .map_or(MaybeUndefined::Undefined, MaybeUndefined::Value),
                admission_rate: MaybeUndefined::Value(200),
                active_capacity: MaybeUndefined::Value(2_000),
                max_seats_per_fan: MaybeUndefined::Value(4),
            }),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct CreatedConcert {
    pub concert_id: u64,
    /// The new schedules' ids, in the order given.
    pub schedule_ids: Vec<u64>,
}

#[derive(Debug, ApiResponse)]
pub enum CreateConcertResponse {
    /// The concert, its schedules and their seats exist and are on sale.
    #[oai(status = 201)]
    Created(Json<CreatedConcert>),
}

/// A concert's sales, as projected from the event stream by `boxoffice consume`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct ConcertSales {
    pub concert_id: u64,
    /// Seats held (each seat of each `OrderHeld`).
    pub holds: u64,
    /// Held seats given back by their owners.
    pub releases: u64,
    /// Held seats that lapsed unpaid.
    pub expirations: u64,
    /// Seats paid for, less the seats of cancelled orders.
    pub seats_sold: u64,
    /// Points paid, less the points refunded.
    pub revenue: u64,
    /// Paid orders cancelled (by their owners or with their show).
    pub cancellations: u64,
    /// Points refunded for cancelled orders.
    pub refunded: u64,
    /// When the last event for this concert was applied.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, ApiResponse)]
pub enum SalesResponse {
    /// The projection as of its last consumed event; it trails the API by the
    /// relay's and the consumer's lag.
    #[oai(status = 200)]
    Ok(Json<ConcertSales>),
}

failures!(GetConcertSalesFailures: PARAMETERS, ADMIN_KEY; ConcertNotFound);
failures!(CreateConcertFailures: JSON_BODY, ADMIN_KEY;
    InvalidConcert, InvalidGrades, InvalidGrade, InvalidSeatNumber, InvalidSaleSettings);

#[OpenApi(prefix_path = "/v1/admin", tag = "Tag::Admin")]
impl AdminApi {
    /// A concert's sales
    ///
    /// Holds, releases, expirations, seats sold and revenue, built from the Kafka
    /// event stream (each event counted once, however often it is delivered).
    #[oai(
        path = "/concerts/:concertId/sales",
        method = "get",
        operation_id = "getConcertSales"
    )]
    async fn concert_sales(
        &self,
        _auth: AdminAuth,
        #[oai(
            name = "concertId",
            validator(minimum(value = "1"), maximum(value = "9007199254740991"))
        )]
        concert_id: Path<u64>,
    ) -> Answer<SalesResponse, GetConcertSalesFailures> {
        let s = infra::service::sales::report(&self.svc, ConcertId(concert_id.0)).await?;
        Ok(SalesResponse::Ok(Json(ConcertSales {
            concert_id: s.concert_id,
            holds: s.holds,
            releases: s.releases,
            expirations: s.expirations,
            seats_sold: s.seats_sold,
            revenue: s.revenue,
            cancellations: s.cancellations,
            refunded: s.refunded,
            updated_at: s.updated_at,
        })))
    }

    /// Create a concert
    ///
    /// With its schedules and their seats, all at once.
    #[oai(path = "/concerts", method = "post", operation_id = "createConcert")]
    async fn create_concert(
        &self,
        _auth: AdminAuth,
        body: Json<CreateConcert>,
    ) -> Answer<CreateConcertResponse, CreateConcertFailures> {
        let body = body.0;
        let schedules = body
            .schedules
            .into_iter()
            .map(new_schedule)
            .collect::<Result<_, ValidationError>>()?;
        let cancellation = match body.cancellation {
            Some(c) => CancellationPolicy::new(c.cutoff_hours.0, c.fee_percent.0)?,
            None => CancellationPolicy::DEFAULT,
        };
        let concert = NewConcert::new(&body.title.0, &body.artist.0, schedules, cancellation)?;
        let now = infra::now();
        let sale = match absent_or_value(&body.sale, "sale")? {
            Some(sale) => sale.changes()?,
            None => domain::sale::SaleChanges::default(),
        };
        let sale = SaleSettings::new(sale, now)?;
        let (id, schedule_ids) = admin::create_concert(&self.svc, &concert, &sale, now).await?;
        Ok(CreateConcertResponse::Created(Json(CreatedConcert {
            concert_id: id.0,
            schedule_ids: schedule_ids.into_iter().map(|s| s.0).collect(),
        })))
    }
}

fn new_schedule(s: CreateSchedule) -> Result<NewSchedule, ValidationError> {
    let Some(grades) = s.grades else {
        let seat_count = s.seat_count.ok_or(ValidationError::Concert(
            "a schedule needs grades, or seatCount with price or prices",
        ))?;
        let prices = seat_prices(seat_count, s.price, s.prices)?;
        return NewSchedule::priced(&s.venue.0, s.starts_at, prices);
    };
    if s.price.is_some() || s.prices.is_some() {
        return Err(ValidationError::Concert(
            "give grades, or price or prices, not both",
        ));
    }
    let grades = grades
        .into_iter()
        .map(|g| {
            let price = u64::try_from(g.price.0)
                .map_err(|_| ValidationError::Grades("a grade costs 1-10000000 points"))?;
            Ok(Grade {
                name: GradeName::parse(&g.name.0)?,
                price: Points(price),
                first_seat: SeatNo::parse(g.first_seat.0)?,
                last_seat: SeatNo::parse(g.last_seat.0)?,
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    let schedule = NewSchedule::graded(&s.venue.0, s.starts_at, grades)?;
    if s.seat_count
        .is_some_and(|n| usize::try_from(n.0).ok() != Some(schedule.prices.len()))
    {
        return Err(ValidationError::Grades(
            "seatCount must be the last grade's last seat",
        ));
    }
    Ok(schedule)
}

/// One price per seat, checked before anything is allocated for them.
fn seat_prices(
    seat_count: SeatNumber,
    price: Option<SeatPrice>,
    prices: Option<Vec<SeatPrice>>,
) -> Result<Vec<Points>, ValidationError> {
    let seat_count = SeatNo::parse(seat_count.0)
        .map_err(|_| ValidationError::Concert("a schedule needs 1-100000 seats"))?
        .get() as usize;
    let points = |price: SeatPrice| {
        u64::try_from(price.0)
            .map(Points)
            .map_err(|_| ValidationError::Concert("a seat costs 0-10000000 points"))
    };
    match (price, prices) {
        (_, Some(prices)) if prices.len() == seat_count => prices.into_iter().map(points).collect(),
        (_, Some(_)) => Err(ValidationError::Concert(
            "prices must have exactly seatCount entries",
        )),
        (Some(price), None) => Ok(vec![points(price)?; seat_count]),
        (None, None) => Err(ValidationError::Concert("a schedule needs price or prices")),
    }
}
