//! For tests only (feature `test-support`): what they inspect and drive beneath the
//! use cases, and the MySQL and Redis clients to do it with, at the versions infra
//! uses, so the crates above never depend on them.

pub use ::diesel;
pub use ::diesel_async;
pub use ::redis;

pub use crate::redis::{cache, conn, queue};
