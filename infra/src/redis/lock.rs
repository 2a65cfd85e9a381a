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
//!                            |  the order is cancelled
//!                            v
//!                         (deleted)
//! ```
//!
//! An order's seats are one schedule's, whose keys share a hash tag: one script takes
//! all of their locks or none, trying them in seat order, so of two overlapping
//! orders at least one gets all of its seats.
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

const SOLD: &str = "sold";

/// A sold seat's marker spares MySQL the crowd on a seat sold in the rush. It lasts
/// an hour, not for good: a cancelled order clears it, and if that fails (Redis
/// unreachable), the seat is refused no longer than this before MySQL answers again.
const SOLD_MARKER_TTL: Duration = Duration::from_secs(3600);

// KEYS: the seat. ARGV: the expected value, then either nothing (delete) or the
// new value and its time to live in ms.
static SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
          if not ARGV[2] then return redis.call('DEL', KEYS[1]) end
          redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
          return 1",
    )
});

// KEYS: an order's seats, in seat order. ARGV: the attempt's value, its TTL in ms.
// Returns the (1-based) indexes of the seats that are taken; none = all locked.
static ACQUIRE_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local taken = {}
          for i, key in ipairs(KEYS) do
            if #taken == 0 then
              if not redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
                taken[#taken + 1] = i
              end
            elseif redis.call('EXISTS', key) == 1 then
              taken[#taken + 1] = i
            end
          end
          if #taken > 0 then
            for i = 1, taken[1] - 1 do
              if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
            end
          end
          return taken",
    )
});

// KEYS: seats. ARGV: the value each must have ('' = none), the new values' absolute
// expiry in ms, then one new value per key.
static MARK_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"for i, key in ipairs(KEYS) do
            local current = redis.call('GET', key)
            if (ARGV[1] == '' and not current) or current == ARGV[1] then
              redis.call('SET', key, ARGV[i + 2], 'PXAT', ARGV[2])
            end
          end
          return 1",
    )
});

// KEYS: seats. ARGV: the attempt's value; deletes the keys that still hold it.
static RELEASE_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"for _, key in ipairs(KEYS) do
            if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
          end
          return 1",
    )
});

/// An order's claim on its seats (all of one schedule), held until it becomes hold
/// markers or is released.
#[derive(Debug)]
#[must_use = "seat locks must be turned into hold markers or released"]
pub struct SeatLocks {
    keys: Vec<String>,
    value: String,
}

/// Tries once to lock every seat of `keys` (one schedule's, in seat order). `Err`
/// lists the positions in `keys` of the seats that are taken (or being taken).
pub async fn try_acquire_all(
    pool: &RedisPool,
    keys: Vec<String>,
    ttl: Duration,
) -> RedisResult<Result<SeatLocks, Vec<usize>>> {
    let value = attempt_value();
    let mut invocation = ACQUIRE_ALL.prepare_invoke();
    for key in &keys {
        invocation.key(key);
    }
    invocation
        .arg(&value)
        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let mut conn = super::conn(pool).await?;
    let taken: Vec<usize> = invocation.invoke_async(&mut conn).await?;
    if taken.is_empty() {
        Ok(Ok(SeatLocks { keys, value }))
    } else {
        Ok(Err(taken.into_iter().map(|i| i - 1).collect()))
    }
}

impl SeatLocks {
    /// The attempt failed: let the next one try.
    pub async fn release(self, pool: &RedisPool) -> RedisResult<()> {
        let mut invocation = RELEASE_ALL.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation.arg(&self.value);
        let mut conn = super::conn(pool).await?;
        invocation.invoke_async::<i64>(&mut conn).await?;
        Ok(())
    }

    /// The order committed: mark each seat taken by its reservation (`holds`, in the
    /// order of the keys) until the hold ends.
    pub async fn into_holds(
        self,
        pool: &RedisPool,
        holds: &[ReservationId],
        until: DateTime<Utc>,
    ) -> RedisResult<()> {
        mark_all(pool, &self.keys, &self.value, holds, until).await
    }
}

/// Marks seats taken by a hold that was made without their locks (seats picked by
/// grade in MySQL), where no marker or attempt is there yet.
pub async fn mark_holds(
    pool: &RedisPool,
    keys: &[String],
    holds: &[ReservationId],
    until: DateTime<Utc>,
) -> RedisResult<()> {
    mark_all(pool, keys, "", holds, until).await
}

async fn mark_all(
    pool: &RedisPool,
    keys: &[String],
    expected: &str,
    holds: &[ReservationId],
    until: DateTime<Utc>,
) -> RedisResult<()> {
    let mut invocation = MARK_ALL.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    invocation
        .arg(expected)
        .arg(until.timestamp_millis().max(1));
    for hold in holds {
        invocation.arg(hold_marker(*hold));
    }
    let mut conn = super::conn(pool).await?;
    invocation.invoke_async::<i64>(&mut conn).await?;
    Ok(())
}

/// The order was cancelled: its sold seats are on sale again.
pub async fn clear_sold(pool: &RedisPool, key: &str) -> RedisResult<()> {
    swap(pool, key, SOLD, None).await
}

fn attempt_value() -> String {
    format!("a:{:032x}", rand::rng().random::<u128>())
}

/// The hold ended (released or expired): the seat is free again.
pub async fn clear_hold(
    pool: &RedisPool,
    key: &str,
    reservation: ReservationId,
) -> RedisResult<()> {
    swap(pool, key, &hold_marker(reservation), None).await
}

/// The hold was paid: the seat is sold (unless its order is cancelled).
pub async fn mark_sold(pool: &RedisPool, key: &str, reservation: ReservationId) -> RedisResult<()> {
    swap(
        pool,
        key,
        &hold_marker(reservation),
        Some((SOLD, SOLD_MARKER_TTL)),
    )
    .await
}

fn hold_marker(reservation: ReservationId) -> String {
    format!("r:{reservation}")
}

async fn swap(
    pool: &RedisPool,
    key: &str,
    expected: &str,
    new: Option<(&str, Duration)>,
) -> RedisResult<()> {
    let mut invocation = SWAP.key(key);
    invocation.arg(expected);
    if let Some((value, ttl)) = new {
        invocation
            .arg(value)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    }
    let mut conn = super::conn(pool).await?;
    invocation.invoke_async::<i64>(&mut conn).await?;
    Ok(())
}
