//! The per-seat lock: `SET NX PX` with a random value, released by a script that
//! deletes the key only if it still holds that value, so a lock that outlived its
//! TTL can never release someone else's.
//!
//! The lock turns a stampede on one seat into cheap refusals before MySQL is
//! touched. It is not what prevents overselling; the conditional seat update is.

use std::sync::LazyLock;
use std::time::Duration;

use rand::Rng as _;
use redis::Script;

use super::{RedisPool, RedisResult};

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
          end
          return 0",
    )
});

/// A lock this process holds until [`SeatLock::release`] or its TTL.
#[derive(Debug)]
#[must_use = "a lock must be released"]
pub struct SeatLock {
    key: String,
    value: String,
}

/// Tries once; `None` means someone else holds it right now.
pub async fn try_acquire(
    pool: &RedisPool,
    key: String,
    ttl: Duration,
) -> RedisResult<Option<SeatLock>> {
    let value = format!("{:032x}", rand::rng().random::<u128>());
    let mut conn = pool.get().await?;
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .arg("NX")
        .arg("PX")
        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
        .query_async(&mut *conn)
        .await?;
    Ok(set.map(|_| SeatLock { key, value }))
}

impl SeatLock {
    pub async fn release(self, pool: &RedisPool) -> RedisResult<()> {
        let mut conn = pool.get().await?;
        RELEASE
            .key(&self.key)
            .arg(&self.value)
            .invoke_async::<i64>(&mut *conn)
            .await?;
        Ok(())
    }
}
