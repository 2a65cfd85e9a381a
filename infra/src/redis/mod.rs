//! Redis: seat locks, the lookup cache and the token store. Redis makes boxoffice
//! fast, never correct: whatever it says is re-checked by MySQL or fails closed.

pub mod cache;
pub mod lock;
pub mod queue;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::IntCounterVec;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind,
    Value,
};
use secrecy::ExposeSecret as _;

use crate::config::Settings;
use crate::metrics::Metrics;

pub type RedisPool = bb8::Pool<RedisManager>;

/// A client for `settings.redis_url` (also what pub/sub subscribers connect with).
pub fn client(settings: &Settings) -> anyhow::Result<redis::Client> {
    // Commands are small and latency-bound: never let Nagle hold one back.
    let info = redis::IntoConnectionInfo::into_connection_info(settings.redis_url.expose_secret())?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    Ok(redis::Client::open(info)?)
}

/// Builds the pool lazily, so `serve` starts while Redis is still away.
pub fn pool(settings: &Settings, metrics: &Metrics) -> anyhow::Result<RedisPool> {
    let client = client(settings)?;
    let timeout = settings.redis_timeout();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    Ok(bb8::Pool::builder()
        .max_size(settings.redis_pool_size)
        .connection_timeout(timeout)
        // `has_broken` below retires dead connections, so no PING per checkout.
        .test_on_check_out(false)
        .build_unchecked(RedisManager {
            client,
            config,
            errors: metrics.redis_errors.clone(),
        }))
}

/// A bb8 manager for multiplexed connections that, unlike bb8-redis's (whose
/// `has_broken` is always false), notices a connection died and drops it, so the
/// pool heals by itself after a Redis restart without a PING on every checkout.
#[derive(Debug)]
pub struct RedisManager {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// `boxoffice_redis_errors_total`, by kind.
    errors: IntCounterVec,
}

/// A multiplexed connection that remembers whether it has failed, and counts how.
#[derive(Clone)]
pub struct RedisConn {
    inner: MultiplexedConnection,
    broken: Arc<AtomicBool>,
    errors: IntCounterVec,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    fn note<T>(&self, result: &Result<T, RedisError>) {
        let Err(e) = result else { return };
        // Script calls try EVALSHA first and load the script on NOSCRIPT: routine.
        if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) {
            return;
        }
        self.errors.with_label_values(&[error_kind(e)]).inc();
        if e.is_unrecoverable_error()
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
        {
            self.broken.store(true, Ordering::Relaxed);
        }
    }
}

fn error_kind(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_dropped() {
        "dropped"
    } else if e.is_io_error() {
        "io"
    } else if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ResponseError)) {
        // What a failing script (or a wrong-type command) answers.
        "script"
    } else {
        "other"
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            self.note(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.note(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let inner = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .inspect_err(|_| self.errors.with_label_values(&["connect"]).inc())?;
        Ok(RedisConn {
            inner,
            broken: Arc::default(),
            errors: self.errors.clone(),
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.broken.load(Ordering::Relaxed)
    }
}

/// A connection to send commands on. Connections are multiplexed: one carries the
/// commands of every task holding a clone of it, pipelined. So the checkout is given
/// back at once instead of held for the command: holding it would cap the commands
/// in flight at the pool size, queue every other request behind bb8, and cost Redis a
/// read and a write per command instead of one per batch. The pool's job is to keep
/// a few healthy connections; a broken one is skipped (and dropped on its return).
pub async fn conn(pool: &RedisPool) -> RedisResult<RedisConn> {
    let mut checkout = pool.get().await?;
    for _ in 0..pool.state().connections {
        if !checkout.broken.load(Ordering::Relaxed) {
            break;
        }
        checkout = pool.get().await?;
    }
    Ok(checkout.clone())
}

/// Either a checkout that timed out (Redis unreachable) or a command that failed.
pub type RedisResult<T> = Result<T, RedisCallError>;

#[derive(Debug, thiserror::Error)]
pub enum RedisCallError {
    #[error("no Redis connection: {0}")]
    Pool(#[from] bb8::RunError<RedisError>),
    #[error("Redis command failed: {0}")]
    Command(#[from] RedisError),
}

/// Every key boxoffice writes, under one prefix. Per-entity parts sit in `{…}` hash
/// tags, so a key and the keys a script touches with it share a Redis Cluster slot.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn seat_lock(&self, schedule: domain::ScheduleId, seat: domain::SeatNo) -> String {
        // One hash tag per schedule: an order's seats are locked by one script.
        format!("{}:lock:{{seats:{schedule}}}:{seat}", self.prefix)
    }

    /// Concerts with a waiting room.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// The pub/sub channel of waiting-room events.
    pub fn queue_events(&self) -> String {
        format!("{}:queue-events", self.prefix)
    }

    pub fn cache(&self, entry: &cache::Entry) -> String {
        format!("{}:cache:{{{entry}}}", self.prefix)
    }
}
