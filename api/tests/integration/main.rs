//! One integration-test binary: the real app against the real MariaDB and Redis.

// Test code panics on purpose when something is off.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::similar_names,
    clippy::missing_panics_doc,
    // Counts in tests are small.
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation
)]

mod broker;
mod helpers;
mod issuer;
mod own_redis;
mod processes;

mod asyncapi;
mod auth;
mod bad_input;
mod cache_keys;
mod clock_skew;
mod contract;
mod deploy_files;
mod events;
mod identity;
mod lookups;
mod metrics;
mod multi_instance;
mod mysql_loss;
mod openapi;
mod orders;
mod outages;
mod payments;
mod points;
mod protocol_limits;
mod rate_limit;
mod redis_loss;
mod reservations;
mod sale;
mod shutdown;
mod waiting_room;
mod waiting_room_page;
