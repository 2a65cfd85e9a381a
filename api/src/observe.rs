//! HTTP metrics: every request counted by method, route template and status, timed,
//! and gauged while in flight. The route is the template of the operation
//! poem-openapi matched (see [`RouteTable`]), a fixed path for the few routes outside
//! the spec, or `unmatched`: never a raw path, so ids in URLs cannot grow the number
//! of series.

use std::sync::Arc;
use std::time::Instant;

use infra::metrics::Metrics;
use poem::http::Method;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OperationId;

use crate::route_table::{self, RouteTable};

/// The middleware; wrap the whole app in it so it sees the final status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    routes: Arc<RouteTable>,
    metrics: Metrics,
}

impl HttpMetrics {
    pub fn new(routes: Arc<RouteTable>, metrics: Metrics) -> Self {
        Self { routes, metrics }
    }
}

impl<E: Endpoint> Middleware<E> for HttpMetrics {
    type Output = HttpMetricsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        HttpMetricsEndpoint {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug)]
pub struct HttpMetricsEndpoint<E> {
    inner: E,
    layer: HttpMetrics,
}

impl<E: Endpoint> Endpoint for HttpMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let metrics = &self.layer.metrics;
        let method = method_label(req.method());
        // Worked out before the request is handed on, so no copy of the path is kept.
        let outside_spec = route_table::static_label(req.uri().path());
        let _in_flight = InFlight::enter(&metrics.http_in_flight);
        let started = Instant::now();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let elapsed = started.elapsed().as_secs_f64();
        let (status, operation) = match &result {
            Ok(resp) => (resp.status(), resp.data::<OperationId>()),
            Err(err) => (err.status(), err.data::<OperationId>()),
        };
        let route = operation
            .and_then(|op| self.layer.routes.template(op))
            .unwrap_or(outside_spec);
        metrics
            .http_requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[method, route])
            .observe(elapsed);
        result
    }
}

/// Methods outside the standard set share one label: a client may send any token.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    STANDARD
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other")
}

/// Counts a request in flight until it is answered or its client goes away.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_methods_share_a_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap_or_default()),
            "other"
        );
    }
}
