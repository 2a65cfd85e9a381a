//! Configuration: one typed struct, layered as defaults (which run against a local
//! MariaDB and Redis), then an optional `boxoffice.toml`, then `BOXOFFICE_*`
//! environment variables (`BOXOFFICE_DATABASE_URL`, `BOXOFFICE_HOLD_SECONDS`, ...).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use domain::HoldDuration;
use domain::queue::AdmissionPolicy;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "a flat configuration: each bool is an operator's switch"
)]
pub struct Settings {
    /// Where `serve` listens.
    pub listen: SocketAddr,
    /// Where `serve` answers `/metrics` instead, if set (so the API port need not
    /// expose it; `listen` then answers it 404). Unset: `/metrics` is on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// How long a client has to send a request's head (ms): from connecting, and
    /// again from the end of the previous response on a kept-alive connection, so
    /// it is also the idle keep-alive timeout. On HTTP/2 (h2c) it runs whenever no
    /// request is in flight, and the connection then ends with GOAWAY.
    pub http_header_timeout_ms: u64,
    /// Keep HTTP/1.1 connections open between requests.
    pub http_keep_alive: bool,
    /// Open client connections at most (WebSockets included, until they close); one
    /// more is answered `503` (`SERVICE_UNAVAILABLE`, `Retry-After: 1`) and closed.
    pub http_max_connections: u32,
    /// Joins (`POST /v1/queue/tokens`) one client may make per second, on average,
    /// on this instance; past it the join is answered `429 RATE_LIMITED` with
    /// `Retry-After`. A client is its socket address (an IPv6 one by its /64), or
    /// from a trusted proxy the address it forwards. `0` turns the limit off.
    pub join_limit_per_second: u32,
    /// Joins one client may make at once before the per-second rate applies (the
    /// bucket's size; at least 1 while the limit is on).
    pub join_limit_burst: u32,
    /// The proxies whose `X-Forwarded-For` names the client: comma-separated IP
    /// addresses or CIDR ranges (`10.0.0.7, 10.1.0.0/16, fd00::/8`). From any other
    /// peer the header is ignored. Checked when `serve` starts; a bad entry stops it.
    pub trusted_proxies: String,
    /// Who the fans are: `jwt` (verify the login service's signed token at join) or
    /// `development` (trust a plain `userId`; demos and local tests only). Unset:
    /// `serve` refuses to start.
    pub identity_mode: Option<IdentityMode>,
    /// `jwt`: the required `iss` claim.
    pub identity_issuer: Option<String>,
    /// `jwt`: the required `aud` claim (boxoffice's client id at the login service).
    pub identity_audience: Option<String>,
    /// `jwt`: where the issuer publishes its keys (a JWKS document over HTTP(S)).
    pub identity_jwks_url: Option<String>,
    /// `jwt`: a JWKS document on disk; read at start and again on an unknown key id.
    /// With `identity_jwks_url` too, its keys are used beside the fetched ones (and
    /// alone while the URL is unreachable).
    pub identity_jwks_file: Option<PathBuf>,
    /// `jwt`: clock skew allowed on `exp` and `nbf` (seconds).
    pub identity_leeway_seconds: u64,
    /// `jwt`: how long fetched keys are trusted before they are fetched again
    /// (seconds); a token with an unknown key id refetches at once (at most every
    /// `identity_jwks_min_refresh_seconds`).
    pub identity_jwks_max_age_seconds: u64,
    /// `jwt`: the least time between two fetches caused by unknown key ids, so forged
    /// key ids cannot turn joins into a flood on the issuer (seconds).
    pub identity_jwks_min_refresh_seconds: u64,
    /// MySQL / MariaDB URL, e.g. `mysql://user:pass@host:3306/boxoffice`.
    pub database_url: SecretString,
    /// Connections the MySQL pool keeps at most.
    pub database_pool_size: u32,
    /// How long a call waits for a MySQL connection before answering 503 (ms).
    pub database_timeout_ms: u64,
    /// Redis URL, e.g. `redis://127.0.0.1:6379`.
    pub redis_url: SecretString,
    /// Multiplexed Redis connections in the pool.
    pub redis_pool_size: u32,
    /// Prefix of every Redis key, so several deployments (or test runs) can share a Redis.
    pub redis_key_prefix: String,
    /// How long Redis may take before a call counts as failed (ms).
    pub redis_timeout_ms: u64,
    /// The API key operators send as `X-Api-Key` to admin calls. Unset: admin is off.
    pub admin_api_key: Option<SecretString>,
    /// How long a seat hold lasts (seconds, 1-3600).
    pub hold_seconds: HoldDuration,
    /// How long an admitted queue token stays ACTIVE (seconds).
    pub token_active_seconds: u64,
    /// At most this many ACTIVE tokens per concert.
    pub queue_capacity: u64,
    /// At most this many admissions per concert in any second.
    pub queue_admit_rate: u64,
    /// How often this instance runs the admission tick (ms).
    pub queue_tick_ms: u64,
    /// Whether this instance runs admission ticks at all (any number may).
    pub queue_admission: bool,
    /// A waiter neither connected nor polling for this long leaves the line (seconds).
    pub queue_grace_seconds: u64,
    /// How long cached lookups live at most (seconds); writes invalidate them sooner.
    pub cache_ttl_seconds: u64,
    /// How often the expiry worker looks for lapsed holds (ms).
    pub expiry_interval_ms: u64,
    /// How many lapsed holds the expiry worker frees per transaction.
    pub expiry_batch_size: u32,
    /// Kafka bootstrap servers, comma-separated (`host:port,...`).
    pub kafka_brokers: String,
    /// The topic every event goes to, keyed by its reservation (or wallet).
    pub kafka_topic: String,
    /// Partitions of the topic when boxoffice creates it.
    pub kafka_partitions: i32,
    /// Copies of each partition when boxoffice creates the topic: 1 for a single local
    /// broker, 3 for a real cluster (so losing a broker loses no event).
    pub kafka_replication_factor: std::num::NonZeroU16,
    /// Whether `serve` runs the outbox relay (one instance relays at a time).
    pub outbox_relay: bool,
    /// Events the relay publishes per round.
    pub outbox_batch_size: u32,
    /// How often an idle relay looks for events committed by other instances (ms);
    /// its own instance's events wake it at once.
    pub outbox_poll_ms: u64,
    /// The consumer group of `boxoffice consume` (the sales projection).
    pub kafka_consumer_group: String,
    /// How long a silent consumer keeps its partitions before the group hands them
    /// to another (ms). Kafka's default, 45 s, stalls the projection that long after
    /// a crash.
    pub kafka_session_timeout_ms: u32,
    /// Run migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// `tracing` filter, e.g. `info,boxoffice=debug`.
    pub log_filter: String,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            http_header_timeout_ms: 10_000,
            http_keep_alive: true,
            http_max_connections: 25_000,
            join_limit_per_second: 10,
            join_limit_burst: 20,
            trusted_proxies: String::new(),
            identity_mode: None,
            identity_issuer: None,
            identity_audience: None,
            identity_jwks_url: None,
            identity_jwks_file: None,
            identity_leeway_seconds: 30,
            identity_jwks_max_age_seconds: 300,
            identity_jwks_min_refresh_seconds: 10,
            database_url: "mysql://root@127.0.0.1:3306/boxoffice".into(),
            database_pool_size: 16,
            database_timeout_ms: 5_000,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_pool_size: 4,
            redis_key_prefix: "bo".into(),
            redis_timeout_ms: 1_000,
            admin_api_key: None,
            hold_seconds: HoldDuration::DEFAULT,
            token_active_seconds: 600,
            queue_capacity: 1_000,
            queue_admit_rate: 100,
            queue_tick_ms: 100,
            queue_admission: true,
            queue_grace_seconds: 120,
            cache_ttl_seconds: 60,
            expiry_interval_ms: 1_000,
            expiry_batch_size: 200,
            kafka_brokers: "127.0.0.1:9092".into(),
            kafka_topic: "boxoffice.events".into(),
            kafka_partitions: 3,
            kafka_replication_factor: std::num::NonZeroU16::MIN,
            outbox_relay: true,
            outbox_batch_size: 500,
            outbox_poll_ms: 100,
            kafka_consumer_group: "boxoffice-sales".into(),
            kafka_session_timeout_ms: 10_000,
            migrate_on_start: true,
            log_filter: "info".into(),
            log_json: false,
        }
    }
}

/// How a fan's identity is established when they join a waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityMode {
    /// A signed JWT from the operator's login service, verified against its JWKS.
    Jwt,
    /// Whatever `userId` the client sends. Anyone can act as anyone: demos only.
    Development,
}

impl Settings {
    /// Defaults (`#[serde(default)]`), then `config_file` if it exists, then the environment.
    pub fn load(config_file: &Path) -> Result<Self, Box<figment::Error>> {
        Figment::new()
            .merge(Toml::file(config_file))
            // BOXOFFICE_CONFIG names the file itself (the binary's --config), not a setting.
            .merge(Env::prefixed("BOXOFFICE_").ignore(&["config"]))
            .extract()
            .map_err(Box::new)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_seconds)
    }

    pub fn admission_policy(&self) -> AdmissionPolicy {
        AdmissionPolicy {
            capacity: self.queue_capacity,
            rate_per_second: self.queue_admit_rate,
            active_for: Duration::from_secs(self.token_active_seconds),
            grace: Duration::from_secs(self.queue_grace_seconds),
        }
    }
}
