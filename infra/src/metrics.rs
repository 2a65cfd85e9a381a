//! boxoffice's own Prometheus registry, served at `/metrics`. Everything is
//! namespaced `boxoffice_` (process metrics keep their standard `process_` names) and
//! labelled only with bounded values: route templates, statuses, outcomes, cache
//! names, concert ids. Never a user, token or raw path.
//!
//! Business outcomes are counted apart from failures: in every `outcome` label only
//! `error` (a bug or a failed query) and `unavailable` (a dependency is down) are
//! failures. A taken seat or an already paid reservation is the system working.

use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Request latency, from half a millisecond (a cached read) to ten seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// One Redis or pool round trip: a tenth of a millisecond up.
const ROUND_TRIP_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];
/// Time in a waiting room: from an instant admission to an hour.
const WAIT_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

// Every outcome each use case can report. They are set to 0 at start, so a
// dashboard shows "0 errors" rather than "no data" before the first one.
const HOLD_OUTCOMES: &[&str] = &[
    "held",
    "seat_taken",
    "not_enough_seats",
    "seat_limit",
    "seat_not_found",
    "grade_not_found",
    "schedule_not_found",
    "show_cancelled",
    "token_not_active",
    "token_expired",
    "wrong_concert",
    "unavailable",
    "error",
];
/// The sizes orders are counted by: few labels, whatever the sale's limit.
pub const ORDER_SIZES: &[&str] = &["1", "2", "3", "4", "5+"];
const CANCEL_OUTCOMES: &[&str] = &[
    "cancelled",
    "replayed",
    "not_found",
    "not_paid",
    "already_cancelled",
    "closed",
    "key_reused",
    "unavailable",
    "error",
];
const RELEASE_OUTCOMES: &[&str] = &[
    "released",
    "not_found",
    "already_paid",
    "unavailable",
    "error",
];
const PAYMENT_OUTCOMES: &[&str] = &[
    "paid",
    "replayed",
    "not_found",
    "already_paid",
    "hold_expired",
    "released",
    "cancelled",
    "insufficient_points",
    "token_not_active",
    "token_expired",
    "wrong_concert",
    "key_reused",
    "unavailable",
    "error",
];
const CHARGE_OUTCOMES: &[&str] = &[
    "charged",
    "replayed",
    "balance_limit",
    "key_reused",
    "unavailable",
    "error",
];
const JOIN_RESULTS: &[&str] = &[
    "created",
    "existing",
    "unauthenticated",
    "concert_not_found",
    "sale_closed",
    "sold_out",
    "unavailable",
    "error",
    // Refused at the door by the per-client join limit (api/src/client_limit.rs).
    "rate_limited",
];
const SALE_ACTIONS: &[&str] = &["pause", "resume", "close", "update"];
const REDIS_ERROR_KINDS: &[&str] = &["connect", "io", "timeout", "dropped", "script", "other"];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Unprefixed, so the standard `process_*` names work in stock dashboards.
    process: Registry,

    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub http_connections_open: IntGaugeVec,
    pub http_max_connections: IntGaugeVec,
    pub http_connections_refused: IntCounterVec,
    pub http_accept_errors: IntCounterVec,

    pub holds: IntCounterVec,
    pub orders: IntCounterVec,
    pub order_payments: IntCounterVec,
    pub order_cancellations: IntCounterVec,
    pub points_refunded: IntCounter,
    pub cancellation_fees: IntCounter,
    pub releases: IntCounterVec,
    pub holds_expired: IntCounter,
    pub payments: IntCounterVec,
    pub point_charges: IntCounterVec,
    pub points_charged: IntCounter,
    pub points_spent: IntCounter,

    pub queue_joins: IntCounterVec,
    pub identity_verifications: IntCounterVec,
    pub identity_jwks_loads: IntCounterVec,
    pub queue_waiting: IntGaugeVec,
    pub queue_active: IntGaugeVec,
    pub queue_capacity: IntGaugeVec,
    pub queue_admissions: IntCounterVec,
    pub queue_abandoned: IntCounterVec,
    pub queue_wait: Histogram,
    pub queue_ticks: IntCounterVec,
    pub queue_prequeued: IntGaugeVec,
    pub sale_state: IntGaugeVec,
    pub sale_sold_out: IntGaugeVec,
    pub sale_controls: IntCounterVec,
    pub websockets_open: IntGauge,

    pub cache_requests: IntCounterVec,
    pub seat_lock_attempts: IntCounterVec,
    pub seat_lock_wait: Histogram,
    pub db_pool_connections: IntGaugeVec,
    pub db_pool_max: IntGauge,
    pub db_pool_wait: Histogram,
    pub redis_pool_connections: IntGaugeVec,
    pub redis_errors: IntCounterVec,
    pub outbox_backlog: IntGauge,
    pub outbox_oldest_age: Gauge,
    pub outbox_relay_leader: IntGauge,
    pub outbox_relay_lag: Histogram,
    pub kafka_publishes: IntCounterVec,
    pub events_consumed: IntCounterVec,
}

impl Metrics {
    #[expect(
        clippy::too_many_lines,
        reason = "one declaration per metric family, read top to bottom"
    )]
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("boxoffice".into()), None)
            .unwrap_or_else(|e| unreachable!("a valid namespace: {e}"));
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        if let Err(e) = process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            unreachable!("a fresh registry: {e}");
        }
        let r = &registry;
        let build_info = register(
            r,
            IntGaugeVec::new(
                Opts::new("build_info", "Always 1; the version serving."),
                &["version"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let metrics = Self {
            http_requests: counters(
                r,
                "http_requests_total",
                "HTTP requests by method, route template and status. 4xx are rejections (many expected, such as 409 SEAT_TAKEN), 5xx are errors.",
                &["method", "route", "status"],
            ),
            http_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "HTTP request latency by method and route template.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["method", "route"],
                )
                .unwrap_or_else(|e| unreachable!("{e}")),
            ),
            http_in_flight: gauge(
                r,
                "http_requests_in_flight",
                "HTTP requests being served now.",
            ),
            http_connections_open: gauges(
                r,
                "http_connections_open",
                "Client connections open per listener (api, metrics), upgraded WebSockets included.",
                &["listener"],
            ),
            http_max_connections: gauges(
                r,
                "http_max_connections",
                "The most client connections a listener keeps open (http_max_connections for api).",
                &["listener"],
            ),
            http_connections_refused: counters(
                r,
                "http_connections_refused_total",
                "Connections answered 503 and closed because the listener had its most open.",
                &["listener"],
            ),
            http_accept_errors: counters(
                r,
                "http_accept_errors_total",
                "Failed accepts (out of file descriptors or memory, ...), each followed by a pause of 5 ms doubling to 1 s.",
                &["listener"],
            ),
            holds: counters(
                r,
                "holds_total",
                "Seat hold attempts by outcome (held, seat_taken, ...; only error and unavailable are failures).",
                &["outcome"],
            ),
            orders: counters(
                r,
                "orders_total",
                "Order holds (POST /v1/orders) by outcome (held, seat_taken, not_enough_seats, ...) and size (seats asked for: 1-4, 5+).",
                &["outcome", "size"],
            ),
            order_payments: counters(
                r,
                "order_payments_total",
                "Order payments by outcome (paid, replayed, already_paid, ...).",
                &["outcome"],
            ),
            order_cancellations: counters(
                r,
                "order_cancellations_total",
                "Cancellations of paid orders by reason (owner, show) and outcome (cancelled, replayed, closed, ...).",
                &["reason", "outcome"],
            ),
            points_refunded: counter(
                r,
                "points_refunded_total",
                "Points credited back for cancelled orders (net of fees).",
            ),
            cancellation_fees: counter(
                r,
                "cancellation_fees_total",
                "Points kept as cancellation fees.",
            ),
            releases: counters(
                r,
                "releases_total",
                "Releases of a hold by its owner, by outcome.",
                &["outcome"],
            ),
            holds_expired: counter(
                r,
                "holds_expired_total",
                "Holds the expiry worker freed because they were not paid in time.",
            ),
            payments: counters(
                r,
                "payments_total",
                "Payment attempts by outcome (paid, replayed, already_paid, insufficient_points, hold_expired, ...; only error and unavailable are failures).",
                &["outcome"],
            ),
            point_charges: counters(
                r,
                "point_charges_total",
                "Point top-ups by outcome (charged, replayed, balance_limit, ...).",
                &["outcome"],
            ),
            points_charged: counter(r, "points_charged_total", "Points credited by top-ups."),
            points_spent: counter(r, "points_spent_total", "Points debited by payments."),
            queue_joins: counters(
                r,
                "queue_joins_total",
                "Waiting-room joins by result (created, existing, unauthenticated, concert_not_found, sale_closed, sold_out, rate_limited, unavailable, error).",
                &["result"],
            ),
            identity_verifications: counters(
                r,
                "identity_verifications_total",
                "Identity tokens checked at join, by result (ok, expired, invalid, unavailable).",
                &["result"],
            ),
            identity_jwks_loads: counters(
                r,
                "identity_jwks_loads_total",
                "Loads of the identity provider's keys by source (url, file) and result (ok, error).",
                &["source", "result"],
            ),
            queue_waiting: gauges(
                r,
                "queue_waiting",
                "Waiters in line per concert, as of the last admission tick.",
                &["concert"],
            ),
            queue_active: gauges(
                r,
                "queue_active",
                "ACTIVE tokens per concert, as of the last admission tick.",
                &["concert"],
            ),
            queue_capacity: gauges(
                r,
                "queue_capacity",
                "The most ACTIVE tokens a concert may have at once.",
                &["concert"],
            ),
            queue_admissions: counters(
                r,
                "queue_admissions_total",
                "Waiters admitted (made ACTIVE) by this instance's ticks, per concert.",
                &["concert"],
            ),
            queue_abandoned: counters(
                r,
                "queue_abandoned_total",
                "Waiters dropped for neither keeping a socket open nor polling for the grace period.",
                &["concert"],
            ),
            queue_wait: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "queue_wait_seconds",
                        "Time from joining a waiting room to admission.",
                    )
                    .buckets(WAIT_BUCKETS.to_vec()),
                )
                .unwrap_or_else(|e| unreachable!("{e}")),
            ),
            queue_ticks: counters(
                r,
                "queue_ticks_total",
                "Admission ticks of this instance by result (ok, error).",
                &["result"],
            ),
            queue_prequeued: gauges(
                r,
                "queue_prequeued",
                "Fans in the pre-queue of a sale not yet open, per concert, as of the last admission tick.",
                &["concert"],
            ),
            sale_state: gauges(
                r,
                "sale_state",
                "1 for each concert's sale state (scheduled, open, paused, closed), 0 for the others.",
                &["concert", "state"],
            ),
            sale_sold_out: gauges(
                r,
                "sale_sold_out",
                "1 while every seat of the concert is sold.",
                &["concert"],
            ),
            sale_controls: counters(
                r,
                "sale_controls_total",
                "Operator changes to sales by action (pause, resume, close, update).",
                &["action"],
            ),
            websockets_open: gauge(
                r,
                "websockets_open",
                "Waiting-room WebSockets open on this instance.",
            ),
            cache_requests: counters(
                r,
                "cache_requests_total",
                "Lookup cache reads by cache and result (hit, miss, error); cache=invalidate counts failed invalidations.",
                &["cache", "result"],
            ),
            seat_lock_attempts: counters(
                r,
                "seat_lock_attempts_total",
                "Redis seat lock attempts by result (acquired, contended, error).",
                &["result"],
            ),
            seat_lock_wait: round_trips(
                r,
                "seat_lock_wait_seconds",
                "Time to get a seat lock's answer from Redis.",
            ),
            db_pool_connections: gauges(
                r,
                "db_pool_connections",
                "MySQL pool connections by state (idle, in_use).",
                &["state"],
            ),
            db_pool_max: gauge(r, "db_pool_max_connections", "The MySQL pool's size limit."),
            db_pool_wait: round_trips(
                r,
                "db_pool_wait_seconds",
                "Time to check a MySQL connection out of the pool.",
            ),
            redis_pool_connections: gauges(
                r,
                "redis_pool_connections",
                "Redis pool connections by state (idle, in_use); each is multiplexed.",
                &["state"],
            ),
            redis_errors: counters(
                r,
                "redis_errors_total",
                "Failed Redis connects and commands by kind (connect, io, timeout, dropped, script, other).",
                &["kind"],
            ),
            outbox_backlog: gauge(r, "outbox_backlog", "Outbox events not yet published."),
            outbox_oldest_age: register(
                r,
                Gauge::new(
                    "outbox_oldest_unsent_age_seconds",
                    "Age of the oldest unpublished outbox event; 0 when none.",
                )
                .unwrap_or_else(|e| unreachable!("{e}")),
            ),
            outbox_relay_leader: gauge(
                r,
                "outbox_relay_leader",
                "1 while this instance is the one relaying the outbox to Kafka.",
            ),
            outbox_relay_lag: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "outbox_relay_lag_seconds",
                        "Time from an event's commit to Kafka's acknowledgement of it.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .unwrap_or_else(|e| unreachable!("{e}")),
            ),
            kafka_publishes: counters(
                r,
                "kafka_publishes_total",
                "Events published to Kafka by topic and result (ok, error).",
                &["topic", "result"],
            ),
            events_consumed: counters(
                r,
                "events_consumed_total",
                "Events the sales projection read, by type and result (applied, duplicate, undecodable).",
                &["type", "result"],
            ),
            registry,
            process,
        };
        for (family, values) in [
            (&metrics.holds, HOLD_OUTCOMES),
            (&metrics.releases, RELEASE_OUTCOMES),
            (&metrics.payments, PAYMENT_OUTCOMES),
            (&metrics.order_payments, PAYMENT_OUTCOMES),
            (&metrics.point_charges, CHARGE_OUTCOMES),
            (&metrics.queue_joins, JOIN_RESULTS),
            (&metrics.sale_controls, SALE_ACTIONS),
            (&metrics.redis_errors, REDIS_ERROR_KINDS),
            (
                &metrics.seat_lock_attempts,
                &["acquired", "contended", "error"],
            ),
            (&metrics.queue_ticks, &["ok", "error"]),
            (
                &metrics.identity_verifications,
                &["ok", "expired", "invalid", "unavailable"],
            ),
        ] {
            for value in values {
                family.with_label_values(&[value]);
            }
        }
        for outcome in HOLD_OUTCOMES {
            for size in ORDER_SIZES {
                metrics.orders.with_label_values(&[outcome, size]);
            }
        }
        for outcome in CANCEL_OUTCOMES {
            metrics
                .order_cancellations
                .with_label_values(&["owner", outcome]);
        }
        metrics
            .order_cancellations
            .with_label_values(&["show", "cancelled"]);
        for cache in ["concerts", "schedules", "seat_map"] {
            for result in ["hit", "miss", "error"] {
                metrics.cache_requests.with_label_values(&[cache, result]);
            }
        }
        metrics
            .cache_requests
            .with_label_values(&["invalidate", "error"]);
        metrics
    }

    pub fn cache_result(&self, cache: &str, result: &str) {
        self.cache_requests
            .with_label_values(&[cache, result])
            .inc();
    }

    pub fn cache_count(&self, cache: &str, result: &str) -> u64 {
        self.cache_requests
            .with_label_values(&[cache, result])
            .get()
    }

    /// The text exposition format served at `/metrics`.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "metrics could not be encoded");
                String::new()
            })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a collector defined in this file. Names are unique and fixed, so a
/// clash is a programming error caught by every test that builds `Metrics`.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    if let Err(e) = registry.register(Box::new(collector.clone())) {
        unreachable!("metric registered twice: {e}");
    }
    collector
}

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("{e}")),
    )
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{e}")),
    )
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("{e}")),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{e}")),
    )
}

fn round_trips(r: &Registry, name: &str, help: &str) -> Histogram {
    register(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(ROUND_TRIP_BUCKETS.to_vec()))
            .unwrap_or_else(|e| unreachable!("{e}")),
    )
}

/// A use case's failure as the `outcome` label: decided by the domain, on the
/// error type, for the API's answer and these metrics alike.
pub use domain::Outcome;

#[cfg(test)]
mod tests {
    use super::*;
    use domain::token::AccessDenied;
    use domain::{
        CancelError, ChargeError, DependencyDown, HoldError, JoinError, PaymentError, ReleaseError,
    };

    #[test]
    fn every_outcome_reported_is_one_preset_to_zero() {
        let internal = || anyhow::anyhow!("boom");
        let denials = || {
            [
                AccessDenied::Expired,
                AccessDenied::NotActive { position: None },
                AccessDenied::WrongConcert,
            ]
        };
        let mut holds = vec![
            HoldError::ScheduleNotFound,
            HoldError::SeatNotFound,
            HoldError::GradeNotFound,
            HoldError::SeatTaken(vec![]),
            HoldError::NotEnoughSeats { free: 1 },
            HoldError::ShowCancelled,
            HoldError::SeatLimit(4),
            HoldError::Unavailable(internal()),
            HoldError::Internal(internal()),
        ];
        holds.extend(denials().map(HoldError::Access));
        let mut payments = vec![
            PaymentError::ReservationNotFound,
            PaymentError::AlreadyPaid,
            PaymentError::HoldExpired,
            PaymentError::Released,
            PaymentError::OrderNotFound,
            PaymentError::Cancelled,
            PaymentError::InsufficientPoints,
            PaymentError::IdempotencyKeyReused,
            PaymentError::Internal(anyhow::Error::new(DependencyDown("MySQL"))),
        ];
        payments.extend(denials().map(PaymentError::Access));
        let cases: Vec<(&[&str], Vec<&'static str>)> = vec![
            (HOLD_OUTCOMES, holds.iter().map(Outcome::outcome).collect()),
            (
                PAYMENT_OUTCOMES,
                payments.iter().map(Outcome::outcome).collect(),
            ),
            (
                RELEASE_OUTCOMES,
                [
                    ReleaseError::NotFound,
                    ReleaseError::OrderNotFound,
                    ReleaseError::AlreadyPaid,
                    ReleaseError::Internal(internal()),
                ]
                .iter()
                .map(Outcome::outcome)
                .collect(),
            ),
            (
                CANCEL_OUTCOMES,
                [
                    CancelError::NotFound,
                    CancelError::NotPaid,
                    CancelError::AlreadyCancelled,
                    CancelError::Closed,
                    CancelError::IdempotencyKeyReused,
                    CancelError::Internal(internal()),
                    CancelError::Internal(anyhow::Error::new(DependencyDown("MySQL"))),
                ]
                .iter()
                .map(Outcome::outcome)
                .collect(),
            ),
            (
                CHARGE_OUTCOMES,
                [ChargeError::BalanceLimit, ChargeError::IdempotencyKeyReused]
                    .iter()
                    .map(Outcome::outcome)
                    .collect(),
            ),
            (
                JOIN_RESULTS,
                [
                    JoinError::ConcertNotFound,
                    JoinError::SaleClosed,
                    JoinError::SoldOut,
                    JoinError::Unavailable(internal()),
                ]
                .iter()
                .map(Outcome::outcome)
                .collect(),
            ),
        ];
        for (preset, reported) in cases {
            for outcome in reported {
                assert!(preset.contains(&outcome), "{outcome} is not preset");
            }
        }
    }

    #[test]
    fn every_family_is_exposed_under_its_namespace() {
        let metrics = Metrics::new();
        metrics.holds.with_label_values(&["held"]).inc();
        let text = metrics.render();
        assert!(text.contains("boxoffice_holds_total{outcome=\"held\"} 1"));
        assert!(text.contains("boxoffice_payments_total{outcome=\"error\"} 0"));
        assert!(text.contains("boxoffice_build_info{version="));
        #[cfg(target_os = "linux")]
        assert!(text.contains("\nprocess_resident_memory_bytes "));
    }
}
