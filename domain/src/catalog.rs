//! What an operator may put on sale.

use chrono::{DateTime, Utc};

use crate::{CancellationPolicy, Grade, GradeName, Points, SeatNo, ValidationError};

/// A concert to create, checked whole before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConcert {
    pub title: String,
    pub artist: String,
    pub schedules: Vec<NewSchedule>,
    pub cancellation: CancellationPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    /// The seats' grades, numbering them 1..=N in order.
    pub grades: Vec<Grade>,
    /// The price of each seat, seat 1 first.
    pub prices: Vec<Points>,
}

impl NewSchedule {
    /// Seats priced by grade.
    pub fn graded(
        venue: &str,
        starts_at: DateTime<Utc>,
        grades: Vec<Grade>,
    ) -> Result<Self, ValidationError> {
        Grade::check_all(&grades)?;
        let prices = grades
            .iter()
            .flat_map(|g| std::iter::repeat_n(g.price, g.seat_count() as usize))
            .collect();
        Ok(Self {
            venue: venue.to_owned(),
            starts_at,
            grades,
            prices,
        })
    }

    /// Seats with a price each, seat 1 first: one grade, `STANDARD`, listed at the
    /// lowest of them.
    pub fn priced(
        venue: &str,
        starts_at: DateTime<Utc>,
        prices: Vec<Points>,
    ) -> Result<Self, ValidationError> {
        let seats = u32::try_from(prices.len()).unwrap_or(u32::MAX);
        let last = i64::from(seats);
        let grade = Grade {
            name: GradeName::standard(),
            price: prices.iter().min().copied().unwrap_or_default(),
            first_seat: SeatNo::parse(1)?,
            last_seat: SeatNo::parse(last)
                .map_err(|_| ValidationError::Concert("a schedule needs 1-100000 seats"))?,
        };
        Ok(Self {
            venue: venue.to_owned(),
            starts_at,
            grades: vec![grade],
            prices,
        })
    }

    /// The grade of each seat, seat 1 first.
    pub fn seat_grades(&self) -> impl Iterator<Item = &GradeName> {
        self.grades
            .iter()
            .flat_map(|g| std::iter::repeat_n(&g.name, g.seat_count() as usize))
    }
}

impl NewConcert {
    pub const MAX_SCHEDULES: usize = 100;
    /// Seats over all schedules, so one request cannot write millions of rows.
    pub const MAX_TOTAL_SEATS: usize = 500_000;
    pub const MAX_TEXT: usize = 200;

    pub fn new(
        title: &str,
        artist: &str,
        schedules: Vec<NewSchedule>,
        cancellation: CancellationPolicy,
    ) -> Result<Self, ValidationError> {
        let title = text(title, "title must be 1-200 characters")?;
        let artist = text(artist, "artist must be 1-200 characters")?;
        if schedules.is_empty() || schedules.len() > Self::MAX_SCHEDULES {
            return Err(ValidationError::Concert("a concert needs 1-100 schedules"));
        }
        for schedule in &schedules {
            text(&schedule.venue, "venue must be 1-200 characters")?;
            let seats = u32::try_from(schedule.prices.len()).unwrap_or(u32::MAX);
            if seats == 0 || seats > SeatNo::MAX {
                return Err(ValidationError::Concert("a schedule needs 1-100000 seats"));
            }
            if schedule.prices.iter().any(|p| *p > Points::MAX_PRICE) {
                return Err(ValidationError::Concert(
                    "a seat costs at most 10000000 points",
                ));
            }
        }
        if schedules.iter().map(|s| s.prices.len()).sum::<usize>() > Self::MAX_TOTAL_SEATS {
            return Err(ValidationError::Concert(
                "a concert has at most 500000 seats in all",
            ));
        }
        Ok(Self {
            title,
            artist,
            schedules,
            cancellation,
        })
    }
}

fn text(raw: &str, complaint: &'static str) -> Result<String, ValidationError> {
    // The length counts what was sent, blanks included, as the spec's maxLength does.
    let trimmed = raw.trim();
    if trimmed.is_empty() || raw.chars().count() > NewConcert::MAX_TEXT {
        Err(ValidationError::Concert(complaint))
    } else {
        Ok(trimmed.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(seats: usize, price: u64) -> NewSchedule {
        NewSchedule {
            venue: "Hall".into(),
            starts_at: Utc::now(),
            grades: vec![],
            prices: vec![Points(price); seats],
        }
    }

    #[test]
    fn graded_seats_take_their_grades_price_and_name() {
        let grade = |name: &str, price, first, last| Grade {
            name: GradeName::parse(name).unwrap(),
            price: Points(price),
            first_seat: SeatNo::parse(first).unwrap(),
            last_seat: SeatNo::parse(last).unwrap(),
        };
        let s = NewSchedule::graded(
            "Hall",
            Utc::now(),
            vec![grade("VIP", 300, 1, 2), grade("R", 100, 3, 5)],
        )
        .unwrap();
        assert_eq!(s.prices, [300, 300, 100, 100, 100].map(Points));
        let names: Vec<&str> = s.seat_grades().map(GradeName::as_str).collect();
        assert_eq!(names, ["VIP", "VIP", "R", "R", "R"]);
        let one = NewSchedule::priced("Hall", Utc::now(), vec![Points(5), Points(3)]).unwrap();
        assert_eq!(one.grades.len(), 1);
        assert_eq!(one.grades[0].price, Points(3));
        assert_eq!(one.seat_grades().count(), 2);
        assert!(NewSchedule::priced("Hall", Utc::now(), vec![]).is_err());
    }

    #[test]
    fn a_well_formed_concert_is_accepted_and_trimmed() {
        let c = NewConcert::new(
            "  Tour ",
            "Band",
            vec![schedule(50, 100)],
            CancellationPolicy::DEFAULT,
        )
        .unwrap();
        assert_eq!(c.title, "Tour");
        assert_eq!(c.schedules[0].prices.len(), 50);
    }

    #[test]
    fn every_limit_is_enforced() {
        let ok = || vec![schedule(1, 1)];
        assert!(NewConcert::new("", "Band", ok(), CancellationPolicy::DEFAULT).is_err());
        assert!(NewConcert::new("   ", "Band", ok(), CancellationPolicy::DEFAULT).is_err());
        assert!(
            NewConcert::new(&"t".repeat(201), "Band", ok(), CancellationPolicy::DEFAULT).is_err()
        );
        assert!(NewConcert::new("Tour", "", ok(), CancellationPolicy::DEFAULT).is_err());
        assert!(NewConcert::new("Tour", "Band", vec![], CancellationPolicy::DEFAULT).is_err());
        assert!(
            NewConcert::new(
                "Tour",
                "Band",
                vec![schedule(1, 1); 101],
                CancellationPolicy::DEFAULT
            )
            .is_err()
        );
        assert!(
            NewConcert::new(
                "Tour",
                "Band",
                vec![schedule(0, 1)],
                CancellationPolicy::DEFAULT
            )
            .is_err()
        );
        assert!(
            NewConcert::new(
                "Tour",
                "Band",
                vec![schedule(100_001, 1)],
                CancellationPolicy::DEFAULT
            )
            .is_err()
        );
        assert!(
            NewConcert::new(
                "Tour",
                "Band",
                vec![schedule(1, 10_000_001)],
                CancellationPolicy::DEFAULT
            )
            .is_err()
        );
        assert!(
            NewConcert::new(
                "Tour",
                "Band",
                vec![schedule(100_000, 10_000_000)],
                CancellationPolicy::DEFAULT
            )
            .is_ok()
        );
        assert!(
            NewConcert::new(
                "Tour",
                "Band",
                vec![schedule(100_000, 1); 5],
                CancellationPolicy::DEFAULT
            )
            .is_ok()
        );
        assert!(
            NewConcert::new(
                "Tour",
                "Band",
                vec![schedule(100_000, 1); 6],
                CancellationPolicy::DEFAULT
            )
            .is_err()
        );
        let mut no_venue = schedule(1, 1);
        no_venue.venue = String::new();
        assert!(
            NewConcert::new("Tour", "Band", vec![no_venue], CancellationPolicy::DEFAULT).is_err()
        );
    }
}
