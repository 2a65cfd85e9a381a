//! boxoffice's own Prometheus registry. Everything is namespaced `boxoffice_` and
//! labelled only with bounded values (route templates, outcomes, cache names):
//! never a user, token or raw path.

use prometheus::{IntCounterVec, Opts, Registry, TextEncoder};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    cache_requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("boxoffice".into()), None)
            .unwrap_or_else(|_| Registry::new());
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Lookup cache reads by cache and result (hit, miss, error).",
            ),
            &["cache", "result"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        // Registering a fresh collector in a fresh registry cannot clash.
        let _ = registry.register(Box::new(cache_requests.clone()));
        Self {
            registry,
            cache_requests,
        }
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
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
