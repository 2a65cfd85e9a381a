//! The use cases: each composes repository calls in one transaction, consults
//! domain rules, and keeps Redis (lock, cache, tokens) in step after commit.
//! Handlers call exactly one of these.

pub mod admin;
pub mod catalog;
pub mod expiry;
pub mod gauges;
pub mod health;
pub mod orders;
pub mod payments;
pub mod points;
pub mod queue;
pub mod relay;
pub mod reservations;
pub mod sale;
pub mod sales;
pub mod shows;
pub mod waiting_room;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use domain::{ConcertId, ScheduleId};

use crate::config::Settings;
use crate::db::{self, DbPool};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::redis::cache::Cache;
use crate::redis::{self as redis_store, Keys, RedisPool};

/// Everything a use case needs; cheap to clone (pools and maps are shared).
#[derive(Debug, Clone)]
pub struct Services {
    pub settings: Arc<Settings>,
    pub db: DbPool,
    pub redis: RedisPool,
    pub keys: Keys,
    pub cache: Cache,
    pub metrics: Metrics,
    pub relay: relay::Relay,
    /// Who joins: the login service's verified token, or (development) a trusted id.
    pub identity: Identity,
    schedules: Arc<RwLock<HashMap<ScheduleId, ScheduleInfo>>>,
    /// Each concert's sale as last read (see [`sale`]).
    sales: Arc<RwLock<HashMap<ConcertId, sale::Sale>>>,
    /// When each concert was last checked for being sold out.
    sold_out_checked: Arc<Mutex<HashMap<ConcertId, Instant>>>,
    /// Concerts whose waiting room this instance has registered (and so ticks, even
    /// if Redis lost the registry).
    queues: Arc<RwLock<HashSet<ConcertId>>>,
}

/// The facts of a schedule a booking needs. They never change once created (a
/// cancelled show is a status, read in each hold's transaction), so each instance
/// keeps them in memory after the first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleInfo {
    pub concert_id: ConcertId,
    pub seat_count: u32,
}

impl Services {
    /// Builds the pools without connecting: the first call connects.
    pub fn new(settings: Settings, metrics: Metrics) -> anyhow::Result<Self> {
        let identity = Identity::new(&settings, &metrics)?;
        let keys = Keys::new(&settings.redis_key_prefix);
        let db = db::pool(&settings);
        let redis = redis_store::pool(&settings, &metrics)?;
        let cache = Cache::new(
            redis.clone(),
            keys.clone(),
            settings.cache_ttl(),
            metrics.clone(),
        );
        Ok(Self {
            settings: Arc::new(settings),
            db,
            redis,
            keys,
            cache,
            metrics,
            relay: relay::Relay::default(),
            identity,
            schedules: Arc::default(),
            sales: Arc::default(),
            sold_out_checked: Arc::default(),
            queues: Arc::default(),
        })
    }

    /// Remembers `concert` has a waiting room; `true` the first time.
    pub(crate) fn remember_queue(&self, concert: ConcertId) -> bool {
        if self.queues.read().is_ok_and(|q| q.contains(&concert)) {
            return false;
        }
        self.queues.write().is_ok_and(|mut q| q.insert(concert))
    }

    pub(crate) fn known_queues(&self) -> Vec<ConcertId> {
        self.queues
            .read()
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    pub async fn db(&self) -> anyhow::Result<db::PooledConn<'_>> {
        let started = Instant::now();
        let conn = self.db.get().await;
        self.metrics
            .db_pool_wait
            .observe(started.elapsed().as_secs_f64());
        conn.map_err(|e| {
            anyhow::Error::new(DependencyDown("MySQL")).context(format!("no MySQL connection: {e}"))
        })
    }
}

/// Runs `job` every `period` until `shutdown` resolves. A run that overruns delays
/// the next one rather than bunching them up; a run in progress is finished first.
pub(crate) async fn every<F: Future<Output = ()>>(
    period: std::time::Duration,
    shutdown: impl Future<Output = ()>,
    mut job: impl FnMut() -> F,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        job().await;
    }
}

/// A dependency could not be reached at all: the domain tells it apart from a
/// failed query ([`domain::Ending`]), so the API answers 503, not 500.
pub use domain::DependencyDown;

/// Runs a transaction expression again (up to five times in all) when InnoDB
/// rolled it back as a deadlock victim; such a rollback undid everything, so the
/// retry is exactly a fresh attempt. Any other outcome is returned as it is.
macro_rules! retry_deadlocks {
    ($transaction:expr) => {{
        let mut attempt = 1;
        loop {
            match $transaction {
                Err($crate::service::Abort::Failed(e))
                    if attempt < 5 && $crate::db::is_retryable(&e) =>
                {
                    tracing::debug!(attempt, "transaction deadlocked; retrying");
                    // A random pause, growing with each attempt, so the victims
                    // do not collide again in the same order.
                    let pause = rand::Rng::random_range(&mut rand::rng(), 1..=5 * attempt);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    attempt += 1;
                }
                outcome => break outcome,
            }
        }
    }};
}
pub(crate) use retry_deadlocks;

/// How a use case's transaction ends other than in success. Every variant rolls
/// the transaction back.
#[derive(Debug)]
pub(crate) enum Abort<E> {
    /// A business outcome (seat taken, not enough points, ...).
    Outcome(E),
    /// The Idempotency-Key was used before: answer from the stored response.
    Replay,
    Failed(anyhow::Error),
}

/// Every failure of a transaction (its queries, its BEGIN, COMMIT or ROLLBACK) comes
/// through here, so a lost MySQL connection is [`DependencyDown`] in every use case.
impl<E> From<diesel::result::Error> for Abort<E> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Failed(db::failure(e))
    }
}

impl<E> From<anyhow::Error> for Abort<E> {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(db::classify(e))
    }
}
