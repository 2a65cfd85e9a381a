//! The per-seat lock in Redis, which also marks taken seats so that a crowd on a
//! taken seat gets its 409 from Redis alone.
//!
//! A key per seat moves through these values:
//!
//! ```text
//!   (none) --SET NX PX--> "a:<random>"  an attempt in flight (short TTL)
//!                            |  the MySQL hold commits
//!                            v
//!                         "r:<id>"      held by reservation <id>, until its held_until
//!                            |  paid            \  released or expired
//!                            v                   v
//!                         "sold"              (deleted)
//! ```
//!
//! Every change is a compare-and-set on the value, so nobody ever releases a
//! marker they do not own. MySQL stays the truth: a missing marker (Redis restarted,
//! a delete failed) only sends the next attempt to MySQL, which answers correctly,
//! and a stale one lasts no longer than the hold it marks.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::ReservationId;
use rand::Rng as _;
use redis::Script;

use super::{RedisPool, RedisResult};

/// A sold seat's marker outlives any sale; it only saves MySQL a read.
const SOLD_MARKER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

// KEYS: the seat. ARGV: the expected value, then either nothing (delete) or the
// new value and its absolute expiry in ms (0 = the given TTL in ARGV[4] ms).
static SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
          if not ARGV[2] then return redis.call('DEL', KEYS[1]) end
          if tonumber(ARGV[3]) > 0 then
            redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
          else
            redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
          end
          return 1",
    )
});

/// An attempt's claim on a seat, held until it becomes a hold marker or is released.
#[derive(Debug)]
#[must_use = "a seat lock must be turned into a hold marker or released"]
pub struct SeatLock {
    key: String,
    value: String,
}

/// Tries once; `None` means the seat is taken or someone is taking it right now.
pub async fn try_acquire(
    pool: &RedisPool,
    key: String,
    ttl: Duration,
) -> RedisResult<Option<SeatLock>> {
    let value = format!("a:{:032x}", rand::rng().random::<u128>());
    let mut conn = super::conn(pool).await?;
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .arg("NX")
        .arg("PX")
        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
        .query_async(&mut conn)
        .await?;
    Ok(set.map(|_| SeatLock { key, value }))
}

impl SeatLock {
    /// The attempt failed: let the next one try.
    pub async fn release(self, pool: &RedisPool) -> RedisResult<()> {
        swap(pool, &self.key, &self.value, None).await
    }

    /// The hold committed: mark the seat taken by it until the hold ends.
    pub async fn into_hold(
        self,
        pool: &RedisPool,
        reservation: ReservationId,
        until: DateTime<Utc>,
    ) -> RedisResult<()> {
        let marker = hold_marker(reservation);
        swap(
            pool,
            &self.key,
            &self.value,
            Some((&marker, Expiry::At(until))),
        )
        .await
    }
}

/// The hold ended (released or expired): the seat is free again.
pub async fn clear_hold(
    pool: &RedisPool,
    key: &str,
    reservation: ReservationId,
) -> RedisResult<()> {
    swap(pool, key, &hold_marker(reservation), None).await
}

/// The hold was paid: the seat is sold for good.
pub async fn mark_sold(pool: &RedisPool, key: &str, reservation: ReservationId) -> RedisResult<()> {
    let sold = Some(("sold", Expiry::After(SOLD_MARKER_TTL)));
    swap(pool, key, &hold_marker(reservation), sold).await
}

fn hold_marker(reservation: ReservationId) -> String {
    format!("r:{reservation}")
}

enum Expiry {
    At(DateTime<Utc>),
    After(Duration),
}

async fn swap(
    pool: &RedisPool,
    key: &str,
    expected: &str,
    new: Option<(&str, Expiry)>,
) -> RedisResult<()> {
    let mut invocation = SWAP.key(key);
    invocation.arg(expected);
    if let Some((value, expiry)) = new {
        let (at, after) = match expiry {
            Expiry::At(at) => (at.timestamp_millis().max(1), 0),
            Expiry::After(ttl) => (0, u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        invocation.arg(value).arg(at).arg(after);
    }
    let mut conn = super::conn(pool).await?;
    invocation.invoke_async::<i64>(&mut conn).await?;
    Ok(())
}
