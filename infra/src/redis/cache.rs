//! The lookup cache: concerts, schedules and seat maps, stored as the exact JSON
//! bytes the API sends, so a hit costs one Redis round trip and no serialization.
//!
//! Never stale after a write: each entry has a generation counter, and a value is
//! stored under the generation that was current when its read began. A write bumps
//! the generation *after* its transaction commits, so a reader that loaded from
//! MySQL before the commit files its result under the old generation, where nobody
//! looks any more. (Plain delete-on-write would let exactly that reader put the old
//! seat map back.) If Redis is down, lookups go straight to MySQL.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use domain::{ConcertId, ScheduleId};
use redis::Script;

use super::{Keys, RedisPool, RedisResult};
use crate::metrics::Metrics;

/// What can be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Concerts,
    Schedules(ConcertId),
    SeatMap(ScheduleId),
}

impl Entry {
    /// The cache's name in metrics: bounded, never an id.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Concerts => "concerts",
            Self::Schedules(_) => "schedules",
            Self::SeatMap(_) => "seat_map",
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Concerts => f.write_str("concerts"),
            Self::Schedules(concert) => write!(f, "schedules:{concert}"),
            Self::SeatMap(schedule) => write!(f, "seats:{schedule}"),
        }
    }
}

/// A freshly loaded value, and how long it may be served at most (a seat map
/// must go when its first hold lapses, since it would show that seat as held).
#[derive(Debug)]
pub struct Loaded {
    pub body: Bytes,
    pub max_age: Option<Duration>,
}

static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local gen = redis.call('GET', KEYS[1] .. ':gen') or '0'
          return {gen, redis.call('GET', KEYS[1] .. ':v:' .. gen)}",
    )
});

#[derive(Debug, Clone)]
pub struct Cache {
    pool: RedisPool,
    keys: Keys,
    ttl: Duration,
    metrics: Metrics,
}

impl Cache {
    pub fn new(pool: RedisPool, keys: Keys, ttl: Duration, metrics: Metrics) -> Self {
        Self {
            pool,
            keys,
            ttl,
            metrics,
        }
    }

    /// The cached bytes of `entry`, or `load`'s, which are then cached.
    pub async fn fetch<E>(
        &self,
        entry: Entry,
        load: impl Future<Output = Result<Loaded, E>>,
    ) -> Result<Bytes, E> {
        let key = self.keys.cache(&entry);
        let generation = match self.read(&key).await {
            Ok((_, Some(hit))) => {
                self.metrics.cache_result(entry.kind(), "hit");
                return Ok(hit);
            }
            Ok((generation, None)) => {
                self.metrics.cache_result(entry.kind(), "miss");
                Some(generation)
            }
            Err(e) => {
                self.metrics.cache_result(entry.kind(), "error");
                tracing::warn!(error = %e, cache = entry.kind(), "cache read failed, reading MySQL");
                None
            }
        };
        let loaded = load.await?;
        if let Some(generation) = generation {
            let ttl = loaded.max_age.map_or(self.ttl, |age| age.min(self.ttl));
            if let Err(e) = self.store(&key, &generation, &loaded.body, ttl).await {
                tracing::warn!(error = %e, cache = entry.kind(), "cache write failed");
            }
        }
        Ok(loaded.body)
    }

    /// Makes every cached copy of `entries` unreachable. Call after the write commits.
    pub async fn invalidate(&self, entries: &[Entry]) {
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.incr(format!("{}:gen", self.keys.cache(entry)), 1)
                .ignore();
        }
        let result: RedisResult<()> = async {
            let mut conn = super::conn(&self.pool).await?;
            pipe.query_async::<()>(&mut conn).await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // The entries stay at most `cache_ttl_seconds` stale; count it so it shows.
            self.metrics.cache_result("invalidate", "error");
            tracing::error!(error = %e, "cache invalidation failed");
        }
    }

    async fn read(&self, key: &str) -> RedisResult<(String, Option<Bytes>)> {
        let mut conn = super::conn(&self.pool).await?;
        let (generation, value): (String, Option<Vec<u8>>) =
            READ.key(key).invoke_async(&mut conn).await?;
        Ok((generation, value.map(Bytes::from)))
    }

    async fn store(
        &self,
        key: &str,
        generation: &str,
        body: &[u8],
        ttl: Duration,
    ) -> RedisResult<()> {
        let mut conn = super::conn(&self.pool).await?;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(format!("{key}:v:{generation}"))
            .arg(body)
            .arg("PX")
            .arg(millis)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}
