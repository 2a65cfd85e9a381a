//! How boxoffice keeps and moves state: MySQL (the truth), Redis (locks, cache,
//! tokens), Kafka (events), Prometheus metrics, configuration, and the use cases that compose them.

pub mod config;
// The stores are infra's own: everything outside reaches them through `service`.
pub(crate) mod db;
pub mod identity;
pub mod kafka;
pub mod metrics;
pub(crate) mod redis;
pub mod service;
#[cfg(feature = "test-support")]
pub mod testing;

pub use config::Settings;
pub use service::Services;

use std::sync::atomic::{AtomicI64, Ordering};

/// How far this instance's clock is set off the system's (ms): 0 in every deployment.
/// Only [`skew_clock`] changes it, for tests that play an instance whose clock runs
/// behind or ahead of Redis's and MySQL's. It is process-wide, so such a test needs a
/// process of its own (nextest runs every test in one).
static CLOCK_SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// The current time at the precision MySQL stores (microseconds), so what a call
/// answers is exactly what a later read returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound as _;
    let skew = chrono::TimeDelta::milliseconds(CLOCK_SKEW_MS.load(Ordering::Relaxed));
    (chrono::Utc::now() + skew).trunc_subsecs(6)
}

/// Test seam (feature `test-support`): sets [`now`] `skew` off the system clock
/// (negative: behind), as on an instance whose clock has drifted. Redis's and
/// MySQL's clocks stay where they are.
#[cfg(feature = "test-support")]
pub fn skew_clock(skew: chrono::TimeDelta) {
    CLOCK_SKEW_MS.store(skew.num_milliseconds(), Ordering::Relaxed);
}
