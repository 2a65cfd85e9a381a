//! How boxoffice keeps and moves state: MySQL (the truth), Redis (locks, cache,
//! tokens), Prometheus metrics, configuration, and the use cases that compose them.

pub mod config;
pub mod db;
pub mod metrics;
pub mod redis;
pub mod service;

pub use config::Settings;
pub use service::Services;
