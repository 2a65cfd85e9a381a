//! One integration-test binary: the real app against the real MariaDB and Redis.

// Test code panics on purpose when something is off.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::similar_names,
    clippy::missing_panics_doc
)]

mod broker;
mod helpers;

mod auth;
mod bad_input;
mod events;
mod lookups;
mod metrics;
mod openapi;
mod outages;
mod payments;
mod points;
mod reservations;
mod waiting_room;
mod waiting_room_page;
