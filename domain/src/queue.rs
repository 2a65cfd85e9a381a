//! The waiting room's rules: who gets in, how fast, and how long a wait looks.

use std::time::Duration;

/// How a concert's waiting room admits people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// At most this many ACTIVE tokens per concert at once.
    pub capacity: u64,
    /// At most this many admissions in any one second.
    pub rate_per_second: u64,
    /// How long an admitted token stays ACTIVE.
    pub active_for: Duration,
    /// A waiter neither connected nor polling for this long leaves the line.
    pub grace: Duration,
}

impl AdmissionPolicy {
    /// How many to admit now, given how many are active and how many were admitted
    /// in the last second.
    pub fn admissible(&self, active: u64, admitted_last_second: u64) -> u64 {
        let free_places = self.capacity.saturating_sub(active);
        let rate_left = self.rate_per_second.saturating_sub(admitted_last_second);
        free_places.min(rate_left)
    }
}

/// The window over which the admission rate is measured for estimates.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Seconds until someone at `position` is admitted: from the rate measured over
/// [`RATE_WINDOW`] while there is one, else from the configured rate. `None` when
/// nobody is being admitted at all (capacity full and no rate configured).
pub fn eta_seconds(position: u64, admitted_in_window: u64, configured_rate: u64) -> Option<u64> {
    let window = RATE_WINDOW.as_secs();
    let (admitted, seconds) = if admitted_in_window > 0 {
        (admitted_in_window, window)
    } else {
        (configured_rate, 1)
    };
    (admitted > 0).then(|| (position * seconds).div_ceil(admitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(capacity: u64, rate: u64) -> AdmissionPolicy {
        AdmissionPolicy {
            capacity,
            rate_per_second: rate,
            active_for: Duration::from_secs(600),
            grace: Duration::from_secs(120),
        }
    }

    #[test]
    fn admission_is_bounded_by_free_places_and_the_rate() {
        assert_eq!(policy(100, 10).admissible(0, 0), 10);
        assert_eq!(policy(100, 10).admissible(95, 0), 5);
        assert_eq!(policy(100, 10).admissible(100, 0), 0);
        assert_eq!(
            policy(100, 10).admissible(120, 0),
            0,
            "over capacity after a config change"
        );
        assert_eq!(policy(100, 10).admissible(0, 7), 3);
        assert_eq!(policy(100, 10).admissible(0, 12), 0);
    }

    #[test]
    fn eta_follows_the_measured_rate_then_the_configured_one() {
        // 50 admitted in 10 s = 5/s: 20th in line waits 4 s.
        assert_eq!(eta_seconds(20, 50, 100), Some(4));
        assert_eq!(eta_seconds(21, 50, 100), Some(5), "rounded up");
        assert_eq!(
            eta_seconds(20, 0, 10),
            Some(2),
            "nothing measured yet: configured rate"
        );
        assert_eq!(eta_seconds(20, 0, 0), None);
        assert_eq!(eta_seconds(1, 1, 0), Some(10));
    }
}
