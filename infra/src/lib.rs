//! How boxoffice keeps and moves state: MySQL (the truth), Redis (locks, cache,
//! tokens), Kafka (events), Prometheus metrics, configuration, and the use cases that compose them.

pub mod config;
pub mod db;
pub mod identity;
pub mod kafka;
pub mod metrics;
pub mod redis;
pub mod service;

pub use config::Settings;
pub use service::Services;

/// The current time at the precision MySQL stores (microseconds), so what a call
/// answers is exactly what a later read returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound as _;
    chrono::Utc::now().trunc_subsecs(6)
}
