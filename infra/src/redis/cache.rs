//! The lookup cache: concerts, schedules and seat maps, stored as the exact JSON
//! bytes the API sends, so a hit costs one Redis round trip and no serialization.
//!
//! Never stale after a write: each entry has a generation counter, which a write
//! bumps *after* its transaction commits, and the entry's value is stored tagged with
//! the generation that was current when the read that loaded it began. A read takes
//! the counter and the value together (one `MGET`) and serves the value only if its
//! tag is the current generation; a store lands only if the counter has not moved
//! since that read (checked and written by one script). So a reader that loaded from
//! MySQL before a commit can neither be served its result nor put it back. (Plain
//! delete-on-write would let exactly that reader put the old seat map back.) If Redis
//! is down, lookups go straight to MySQL.
//!
//! Ready for Redis Cluster: an entry's two keys share its hash tag (one slot), and
//! every key a command or script touches is passed to it (in `KEYS` for a script),
//! never built inside it.

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

/// What separates a stored value's generation from its body.
const TAG_END: u8 = b'|';

// Stores a freshly loaded value, unless a write bumped the generation during the load.
// KEYS: the entry's generation, its value.
// ARGV: the generation the load began under, the value tagged with it, time to live (ms).
const STORE_SOURCE: &str = r"if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1";

static STORE: LazyLock<Script> = LazyLock::new(|| Script::new(STORE_SOURCE));

/// The keys of one entry. They share the entry's hash tag, so they sit in one slot.
#[derive(Debug)]
struct EntryKeys {
    /// The generation counter.
    generation: String,
    /// The value, as `<generation>|<body>`.
    value: String,
}

impl EntryKeys {
    fn new(keys: &Keys, entry: &Entry) -> Self {
        let base = keys.cache(entry);
        Self {
            generation: format!("{base}:gen"),
            value: format!("{base}:v"),
        }
    }
}

/// The body of `stored` if it was loaded under `generation`.
fn current_body(stored: &Bytes, generation: &str) -> Option<Bytes> {
    let end = stored.iter().position(|&b| b == TAG_END)?;
    (&stored[..end] == generation.as_bytes()).then(|| stored.slice(end + 1..))
}

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
        let keys = EntryKeys::new(&self.keys, &entry);
        let generation = match self.read(&keys).await {
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
            if let Err(e) = self.store(&keys, &generation, &loaded.body, ttl).await {
                tracing::warn!(error = %e, cache = entry.kind(), "cache write failed");
            }
        }
        Ok(loaded.body)
    }

    /// Makes every cached copy of `entries` unreachable. Call after the write commits.
    pub async fn invalidate(&self, entries: &[Entry]) {
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.incr(EntryKeys::new(&self.keys, entry).generation, 1)
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

    /// The entry's current generation, and its body if that was loaded under it.
    async fn read(&self, keys: &EntryKeys) -> RedisResult<(String, Option<Bytes>)> {
        let mut conn = super::conn(&self.pool).await?;
        let (generation, stored): (Option<String>, Option<Vec<u8>>) = redis::cmd("MGET")
            .arg(&keys.generation)
            .arg(&keys.value)
            .query_async(&mut conn)
            .await?;
        // Never bumped: generation 0, as `INCR` and the store script both take it.
        let generation = generation.unwrap_or_else(|| "0".to_owned());
        let body = stored.and_then(|stored| current_body(&Bytes::from(stored), &generation));
        Ok((generation, body))
    }

    /// Stores `body` as loaded under `generation`, unless a write has bumped it since.
    async fn store(
        &self,
        keys: &EntryKeys,
        generation: &str,
        body: &[u8],
        ttl: Duration,
    ) -> RedisResult<()> {
        let mut tagged = Vec::with_capacity(generation.len() + 1 + body.len());
        tagged.extend_from_slice(generation.as_bytes());
        tagged.push(TAG_END);
        tagged.extend_from_slice(body);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = super::conn(&self.pool).await?;
        STORE
            .key(&keys.generation)
            .key(&keys.value)
            .arg(generation)
            .arg(tagged)
            .arg(millis)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script of this file, so that the test below checks them all.
    const SCRIPTS: [&str; 1] = [STORE_SOURCE];

    /// Redis Cluster routes a script by the keys it is given: one it builds itself may
    /// live in another slot, or on another node. So every `redis.call` must name its
    /// key as `KEYS[n]`, as it was passed, with nothing joined to it.
    #[test]
    fn every_script_touches_only_keys_it_is_given() {
        // Split so that this test's own text does not count as a script.
        let declared = include_str!("cache.rs")
            .matches(concat!("LazyLock<", "Script>"))
            .count();
        assert_eq!(declared, SCRIPTS.len(), "a script is missing from SCRIPTS");
        for script in SCRIPTS {
            let calls: Vec<&str> = script.split("redis.call(").skip(1).collect();
            assert!(!calls.is_empty(), "{script}");
            for call in calls {
                let key = call
                    .split([',', ')'])
                    .nth(1)
                    .map(str::trim)
                    .unwrap_or_default();
                let index = key
                    .strip_prefix("KEYS[")
                    .and_then(|rest| rest.strip_suffix(']'));
                assert!(
                    index.is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())),
                    "a key that is not passed in KEYS: `{key}` in redis.call({call}"
                );
            }
            assert!(
                !script.contains("] .."),
                "a key built inside the script: {script}"
            );
        }
    }

    #[test]
    fn a_value_is_served_only_under_the_generation_it_was_loaded_under() {
        let stored = Bytes::from_static(b"12|{\"seats\":[]}");
        assert_eq!(
            current_body(&stored, "12").as_deref(),
            Some(&b"{\"seats\":[]}"[..])
        );
        assert_eq!(current_body(&stored, "13"), None);
        assert_eq!(current_body(&stored, "1"), None);
        assert_eq!(current_body(&Bytes::from_static(b"12"), "12"), None);
        assert_eq!(
            current_body(&Bytes::from_static(b"0|a|b"), "0").as_deref(),
            Some(&b"a|b"[..])
        );
    }
}
