//! One integration-test binary: the real app against the real MariaDB and Redis.

mod helpers;

mod auth;
mod bad_input;
mod lookups;
mod openapi;
mod payments;
mod points;
mod redis_outage;
mod reservations;
