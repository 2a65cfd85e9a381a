//! Orders: one to `maxSeatsPerFan` seats of one schedule, held, paid, released,
//! expired and cancelled together. Each seat of an order is a [`Reservation`] line
//! with the order's status, so an order moves through the same states:
//!
//! ```text
//!            pay (before held_until)                owner cancels (before the
//!   HELD ───────────────────────────▶ CONFIRMED ───▶ cutoff), or the show is
//!    │  \                                            cancelled: CANCELLED
//!    │   ▶ EXPIRED (held_until passes)
//!    ▼ owner releases
//!  RELEASED
//! ```
//!
//! [`Reservation`]: crate::Reservation

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::reservation::Release;
use crate::{
    CancelError, ConcertId, OrderId, PaymentError, Points, ReleaseError, ReservationId,
    ReservationStatus, ScheduleId, SeatNo, UserId, ValidationError,
};

/// An order and its reservations share one status.
pub use crate::ReservationStatus as OrderStatus;

/// A grade (section) of a schedule's seats: `VIP`, `R`, `S`...
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GradeName(String);

impl GradeName {
    /// What seats of a schedule created with one price (or a price per seat) are.
    pub const STANDARD: &str = "STANDARD";
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::Grade)
        }
    }

    pub fn standard() -> Self {
        Self(Self::STANDARD.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GradeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A grade of a schedule: seats `first_seat..=last_seat` at `price` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grade {
    pub name: GradeName,
    pub price: Points,
    pub first_seat: SeatNo,
    pub last_seat: SeatNo,
}

impl Grade {
    pub fn seat_count(&self) -> u32 {
        self.last_seat.get() - self.first_seat.get() + 1
    }

    /// Checks a schedule's grades: one or more, each named once, priced within
    /// limits, and together numbering the seats 1..=N in order without gaps.
    /// Returns N.
    pub fn check_all(grades: &[Self]) -> Result<u32, ValidationError> {
        const COMPLAINT: &str = "grades must be 1-100, named once each, priced 1-10000000, \
             and number the seats from 1 in order without gaps or overlaps";
        let bad = ValidationError::Grades(COMPLAINT);
        if grades.is_empty() || grades.len() > 100 {
            return Err(bad);
        }
        let mut next = 1;
        for (i, g) in grades.iter().enumerate() {
            let unique = grades[..i].iter().all(|other| other.name != g.name);
            let priced = g.price.0 >= 1 && g.price <= Points::MAX_PRICE;
            if !unique || !priced || g.first_seat.get() != next || g.last_seat < g.first_seat {
                return Err(bad);
            }
            next = g.last_seat.get() + 1;
        }
        Ok(next - 1)
    }
}

/// Which seats a fan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatChoice {
    /// These seats, in ascending order (the one order every lock is taken in).
    Seats(Vec<SeatNo>),
    /// The lowest-numbered free seats of a grade.
    Grade { grade: GradeName, quantity: u32 },
}

impl SeatChoice {
    /// The most seats one request may list, whatever the sale's limit.
    pub const MAX_SEATS: usize = 100;

    /// Either `seats`, or `grade` with `quantity`; never both, never neither.
    pub fn new(
        seats: Option<&[i64]>,
        grade: Option<&str>,
        quantity: Option<i64>,
    ) -> Result<Self, ValidationError> {
        match (seats, grade, quantity) {
            (Some(seats), None, None) => {
                if seats.is_empty() || seats.len() > Self::MAX_SEATS {
                    return Err(ValidationError::Order("list 1-100 seats"));
                }
                let mut parsed = seats
                    .iter()
                    .map(|&n| SeatNo::parse(n))
                    .collect::<Result<Vec<_>, _>>()?;
                parsed.sort_unstable();
                if parsed.windows(2).any(|w| w[0] == w[1]) {
                    return Err(ValidationError::Order("a seat is listed twice"));
                }
                Ok(Self::Seats(parsed))
            }
            (None, Some(grade), Some(quantity)) => {
                let grade = GradeName::parse(grade)?;
                match u32::try_from(quantity) {
                    Ok(q) if (1..=100).contains(&q) => Ok(Self::Grade { grade, quantity: q }),
                    _ => Err(ValidationError::Order("quantity must be from 1 to 100")),
                }
            }
            _ => Err(ValidationError::Order(
                "give either seats, or grade and quantity",
            )),
        }
    }

    pub fn count(&self) -> u32 {
        match self {
            Self::Seats(seats) => u32::try_from(seats.len()).unwrap_or(u32::MAX),
            Self::Grade { quantity, .. } => *quantity,
        }
    }
}

/// One seat of an order, at the price it had when it was held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSeat {
    pub reservation_id: ReservationId,
    pub seat_no: SeatNo,
    pub grade: GradeName,
    pub price: Points,
}

/// What cancelling a paid order gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    /// Points credited back: the total minus the fee.
    pub refund: Points,
    pub fee: Points,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub concert_id: ConcertId,
    pub schedule_id: ScheduleId,
    pub status: OrderStatus,
    /// In seat order.
    pub seats: Vec<OrderSeat>,
    /// The sum of the seats' prices at hold time: what payment charges.
    pub total: Points,
    pub held_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Set once the order is cancelled.
    pub refund: Option<Refund>,
}

impl Order {
    /// The status at `now`: a hold whose time ran out is expired even before the
    /// expiry worker has written that down.
    pub fn status_at(&self, now: DateTime<Utc>) -> OrderStatus {
        match self.status {
            OrderStatus::Held if self.held_until <= now => OrderStatus::Expired,
            status => status,
        }
    }

    /// One seat of the order seen as a reservation (the single-seat view of v1).
    pub fn reservation(&self, id: ReservationId) -> Option<crate::Reservation> {
        let seat = self.seats.iter().find(|s| s.reservation_id == id)?;
        Some(crate::Reservation {
            id,
            order_id: self.id,
            user_id: self.user_id.clone(),
            concert_id: self.concert_id,
            schedule_id: self.schedule_id,
            seat_no: seat.seat_no,
            price: seat.price,
            status: self.status,
            held_until: self.held_until,
            created_at: self.created_at,
        })
    }

    pub fn seat_numbers(&self) -> Vec<SeatNo> {
        self.seats.iter().map(|s| s.seat_no).collect()
    }

    pub fn reservation_ids(&self) -> Vec<ReservationId> {
        self.seats.iter().map(|s| s.reservation_id).collect()
    }

    /// Whether this order can be paid at `now`.
    pub fn check_payable(&self, now: DateTime<Utc>) -> Result<(), PaymentError> {
        match self.status_at(now) {
            OrderStatus::Held => Ok(()),
            OrderStatus::Confirmed => Err(PaymentError::AlreadyPaid),
            OrderStatus::Expired => Err(PaymentError::HoldExpired),
            OrderStatus::Released => Err(PaymentError::Released),
            OrderStatus::Cancelled => Err(PaymentError::Cancelled),
        }
    }

    /// What the owner releasing it at `now` means.
    pub fn release(&self, now: DateTime<Utc>) -> Result<Release, ReleaseError> {
        match self.status_at(now) {
            OrderStatus::Held => Ok(Release::FreeSeat),
            OrderStatus::Released | OrderStatus::Expired | OrderStatus::Cancelled => {
                Ok(Release::AlreadyOver)
            }
            OrderStatus::Confirmed => Err(ReleaseError::AlreadyPaid),
        }
    }

    /// The refund its owner gets for cancelling at `now`, under `policy`, for a show
    /// starting at `show_starts`.
    pub fn owner_refund(
        &self,
        policy: CancellationPolicy,
        show_starts: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Refund, CancelError> {
        match self.status_at(now) {
            OrderStatus::Confirmed => {}
            OrderStatus::Cancelled => return Err(CancelError::AlreadyCancelled),
            OrderStatus::Held | OrderStatus::Released | OrderStatus::Expired => {
                return Err(CancelError::NotPaid);
            }
        }
        if now >= policy.closes_at(show_starts) {
            return Err(CancelError::Closed);
        }
        let fee = policy.fee(self.total);
        Ok(Refund {
            refund: Points(self.total.0 - fee.0),
            fee,
            at: now,
        })
    }
}

/// How a concert's paid orders may be cancelled by their owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancellationPolicy {
    /// Cancelling closes this many hours before the show starts.
    pub cutoff_hours: u32,
    /// Kept from the refund, as a percentage of the order's total.
    pub fee_percent: u8,
}

impl CancellationPolicy {
    pub const DEFAULT: Self = Self {
        cutoff_hours: 24,
        fee_percent: 10,
    };
    pub const MAX_CUTOFF_HOURS: u32 = 8_760;

    pub fn new(cutoff_hours: i64, fee_percent: i64) -> Result<Self, ValidationError> {
        let complaint = ValidationError::Concert(
            "cancellation needs cutoffHours from 0 to 8760 and feePercent from 0 to 100",
        );
        let cutoff_hours = u32::try_from(cutoff_hours)
            .ok()
            .filter(|h| *h <= Self::MAX_CUTOFF_HOURS)
            .ok_or(complaint)?;
        let fee_percent = u8::try_from(fee_percent)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or(complaint)?;
        Ok(Self {
            cutoff_hours,
            fee_percent,
        })
    }

    /// The fee on `total`, rounded down (any fraction of a point goes to the fan).
    pub fn fee(self, total: Points) -> Points {
        let fee = u128::from(total.0) * u128::from(self.fee_percent) / 100;
        Points(u64::try_from(fee).unwrap_or(total.0))
    }

    /// When owners can no longer cancel.
    pub fn closes_at(self, show_starts: DateTime<Utc>) -> DateTime<Utc> {
        show_starts - TimeDelta::hours(i64::from(self.cutoff_hours))
    }
}

impl Default for CancellationPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a paid order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelReason {
    /// Its owner cancelled it, for the concert's fee.
    Owner,
    /// The operator cancelled the show: refunded in full.
    ShowCancelled,
}

impl CancelReason {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::ShowCancelled => "show",
        }
    }

    /// The stored and published name.
    pub fn as_stored(self) -> &'static str {
        match self {
            Self::Owner => "OWNER",
            Self::ShowCancelled => "SHOW_CANCELLED",
        }
    }
}

/// A schedule is on sale until an operator cancels the show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScheduleStatus {
    OnSale,
    Cancelled,
}

impl ScheduleStatus {
    pub const ALL: [Self; 2] = [Self::OnSale, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnSale => "ON_SALE",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl ReservationStatus {
    /// Whether seats in this state are the holder's (for the seat limit and for who
    /// may take them): a live hold or a sale.
    pub fn keeps_seats(self) -> bool {
        matches!(self, Self::Held | Self::Confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(n: i64) -> SeatNo {
        SeatNo::parse(n).unwrap()
    }

    fn grade(name: &str, price: u64, first: i64, last: i64) -> Grade {
        Grade {
            name: GradeName::parse(name).unwrap(),
            price: Points(price),
            first_seat: seat(first),
            last_seat: seat(last),
        }
    }

    fn paid(total: u64, now: DateTime<Utc>) -> Order {
        Order {
            id: OrderId(1),
            user_id: UserId::parse("u1").unwrap(),
            concert_id: ConcertId(1),
            schedule_id: ScheduleId(1),
            status: OrderStatus::Confirmed,
            seats: vec![],
            total: Points(total),
            held_until: now,
            created_at: now,
            refund: None,
        }
    }

    fn held(now: DateTime<Utc>, seconds_left: i64) -> Order {
        Order {
            status: OrderStatus::Held,
            held_until: now + TimeDelta::seconds(seconds_left),
            ..paid(100, now)
        }
    }

    #[test]
    fn a_live_hold_is_payable_and_releasable() {
        let now = Utc::now();
        let o = held(now, 60);
        assert_eq!(o.status_at(now), OrderStatus::Held);
        assert!(o.check_payable(now).is_ok());
        assert!(matches!(o.release(now), Ok(Release::FreeSeat)));
    }

    #[test]
    fn a_lapsed_hold_is_expired_before_the_worker_runs() {
        let now = Utc::now();
        let o = held(now, -1);
        assert_eq!(o.status_at(now), OrderStatus::Expired);
        assert!(matches!(
            o.check_payable(now),
            Err(PaymentError::HoldExpired)
        ));
        assert!(matches!(o.release(now), Ok(Release::AlreadyOver)));
        assert!(matches!(
            held(now, 0).check_payable(now),
            Err(PaymentError::HoldExpired)
        ));
    }

    #[test]
    fn each_final_state_refuses_payment_with_its_own_reason() {
        let now = Utc::now();
        let mut o = held(now, 60);
        o.status = OrderStatus::Confirmed;
        assert!(matches!(
            o.check_payable(now),
            Err(PaymentError::AlreadyPaid)
        ));
        assert!(matches!(o.release(now), Err(ReleaseError::AlreadyPaid)));
        o.status = OrderStatus::Released;
        assert!(matches!(o.check_payable(now), Err(PaymentError::Released)));
        assert!(matches!(o.release(now), Ok(Release::AlreadyOver)));
        o.status = OrderStatus::Expired;
        assert!(matches!(
            o.check_payable(now),
            Err(PaymentError::HoldExpired)
        ));
        o.status = OrderStatus::Cancelled;
        assert!(matches!(o.check_payable(now), Err(PaymentError::Cancelled)));
        assert!(matches!(o.release(now), Ok(Release::AlreadyOver)));
    }

    #[test]
    fn a_choice_of_seats_is_sorted_and_checked() {
        let choice = SeatChoice::new(Some(&[9, 2, 5]), None, None).unwrap();
        assert_eq!(choice, SeatChoice::Seats(vec![seat(2), seat(5), seat(9)]));
        assert_eq!(choice.count(), 3);
        let bad = [
            SeatChoice::new(Some(&[]), None, None),
            SeatChoice::new(Some(&[3, 3]), None, None),
            SeatChoice::new(Some(&[0]), None, None),
            SeatChoice::new(Some(&(1..=101).collect::<Vec<_>>()), None, None),
            SeatChoice::new(None, None, None),
            SeatChoice::new(Some(&[1]), Some("VIP"), Some(1)),
            SeatChoice::new(None, Some("VIP"), None),
            SeatChoice::new(None, Some("VIP"), Some(0)),
            SeatChoice::new(None, Some("VIP"), Some(101)),
            SeatChoice::new(None, Some("V I P"), Some(1)),
        ];
        for (i, b) in bad.iter().enumerate() {
            assert!(b.is_err(), "case {i}: {b:?}");
        }
        assert_eq!(
            SeatChoice::new(None, Some("VIP"), Some(2)).unwrap().count(),
            2
        );
    }

    #[test]
    fn grades_number_the_seats_from_one_without_gaps() {
        let ok = [grade("VIP", 300, 1, 10), grade("R", 200, 11, 50)];
        assert_eq!(Grade::check_all(&ok), Ok(50));
        let gap = [grade("VIP", 300, 1, 10), grade("R", 200, 12, 50)];
        let overlap = [grade("VIP", 300, 1, 10), grade("R", 200, 10, 50)];
        let twice = [grade("VIP", 300, 1, 10), grade("VIP", 200, 11, 50)];
        let late_start = [grade("VIP", 300, 2, 10)];
        let free = [grade("VIP", 0, 1, 10)];
        let dear = [grade("VIP", 10_000_001, 1, 10)];
        let backwards = [
            grade("VIP", 300, 1, 10),
            grade("R", 200, 11, 11),
            grade("S", 1, 12, 12),
        ];
        for bad in [&gap[..], &overlap, &twice, &late_start, &free, &dear, &[]] {
            assert!(Grade::check_all(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Grade::check_all(&backwards), Ok(12));
        assert!(GradeName::parse(&"x".repeat(33)).is_err());
        assert!(GradeName::parse("R-1_b").is_ok());
    }

    #[test]
    fn the_fee_rounds_down_and_the_refund_is_the_rest() {
        let now = Utc::now();
        let policy = CancellationPolicy::new(24, 10).unwrap();
        let show = now + TimeDelta::days(3);
        let refund = paid(999, now).owner_refund(policy, show, now).unwrap();
        assert_eq!((refund.refund, refund.fee), (Points(900), Points(99)));
        let free = CancellationPolicy::new(24, 0).unwrap();
        let refund = paid(999, now).owner_refund(free, show, now).unwrap();
        assert_eq!((refund.refund, refund.fee), (Points(999), Points(0)));
        let all = CancellationPolicy::new(24, 100).unwrap();
        let refund = paid(999, now).owner_refund(all, show, now).unwrap();
        assert_eq!((refund.refund, refund.fee), (Points(0), Points(999)));
    }

    #[test]
    fn cancelling_closes_at_the_cutoff_and_needs_a_paid_order() {
        let now = Utc::now();
        let policy = CancellationPolicy::new(24, 10).unwrap();
        let order = paid(100, now);
        let just_before = now + TimeDelta::hours(24) + TimeDelta::seconds(1);
        assert!(order.owner_refund(policy, just_before, now).is_ok());
        let at_cutoff = now + TimeDelta::hours(24);
        assert!(matches!(
            order.owner_refund(policy, at_cutoff, now),
            Err(CancelError::Closed)
        ));
        let show = now + TimeDelta::days(3);
        for (status, expected) in [
            (OrderStatus::Held, "NotPaid"),
            (OrderStatus::Released, "NotPaid"),
            (OrderStatus::Expired, "NotPaid"),
            (OrderStatus::Cancelled, "AlreadyCancelled"),
        ] {
            let mut o = paid(100, now);
            o.status = status;
            o.held_until = now + TimeDelta::minutes(5);
            let e = o.owner_refund(policy, show, now).unwrap_err();
            assert!(format!("{e:?}").starts_with(expected), "{status:?}: {e:?}");
        }
    }

    #[test]
    fn policies_are_bounded() {
        assert!(CancellationPolicy::new(-1, 10).is_err());
        assert!(CancellationPolicy::new(8_761, 10).is_err());
        assert!(CancellationPolicy::new(24, 101).is_err());
        assert!(CancellationPolicy::new(24, -1).is_err());
        assert!(CancellationPolicy::new(0, 0).is_ok());
    }
}
