//! What an operator may put on sale.

use chrono::{DateTime, Utc};

use crate::{Points, SeatNo, ValidationError};

/// A concert to create, checked whole before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConcert {
    pub title: String,
    pub artist: String,
    pub schedules: Vec<NewSchedule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    /// The price of each seat, seat 1 first.
    pub prices: Vec<Points>,
}

impl NewConcert {
    pub const MAX_SCHEDULES: usize = 100;
    /// Seats over all schedules, so one request cannot write millions of rows.
    pub const MAX_TOTAL_SEATS: usize = 500_000;
    const MAX_TEXT: usize = 200;

    pub fn new(
        title: &str,
        artist: &str,
        schedules: Vec<NewSchedule>,
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
        })
    }
}

fn text(raw: &str, complaint: &'static str) -> Result<String, ValidationError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > NewConcert::MAX_TEXT {
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
            prices: vec![Points(price); seats],
        }
    }

    #[test]
    fn a_well_formed_concert_is_accepted_and_trimmed() {
        let c = NewConcert::new("  Tour ", "Band", vec![schedule(50, 100)]).unwrap();
        assert_eq!(c.title, "Tour");
        assert_eq!(c.schedules[0].prices.len(), 50);
    }

    #[test]
    fn every_limit_is_enforced() {
        let ok = || vec![schedule(1, 1)];
        assert!(NewConcert::new("", "Band", ok()).is_err());
        assert!(NewConcert::new("   ", "Band", ok()).is_err());
        assert!(NewConcert::new(&"t".repeat(201), "Band", ok()).is_err());
        assert!(NewConcert::new("Tour", "", ok()).is_err());
        assert!(NewConcert::new("Tour", "Band", vec![]).is_err());
        assert!(NewConcert::new("Tour", "Band", vec![schedule(1, 1); 101]).is_err());
        assert!(NewConcert::new("Tour", "Band", vec![schedule(0, 1)]).is_err());
        assert!(NewConcert::new("Tour", "Band", vec![schedule(100_001, 1)]).is_err());
        assert!(NewConcert::new("Tour", "Band", vec![schedule(1, 10_000_001)]).is_err());
        assert!(NewConcert::new("Tour", "Band", vec![schedule(100_000, 10_000_000)]).is_ok());
        assert!(NewConcert::new("Tour", "Band", vec![schedule(100_000, 1); 5]).is_ok());
        assert!(NewConcert::new("Tour", "Band", vec![schedule(100_000, 1); 6]).is_err());
        let mut no_venue = schedule(1, 1);
        no_venue.venue = String::new();
        assert!(NewConcert::new("Tour", "Band", vec![no_venue]).is_err());
    }
}
