//! HTTP metrics: every request counted by method, route template and status, timed,
//! and gauged while in flight. The route is the template of the operation
//! poem-openapi matched (found through its operationId in the spec), a fixed path
//! for the few routes outside the spec, or `unmatched`: never a raw path, so ids in
//! URLs cannot grow the number of series.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use infra::metrics::Metrics;
use poem::http::Method;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OperationId;

/// Routes served outside the OpenAPI spec, labelled by their fixed path.
const STATIC_ROUTES: &[&str] = &["/metrics", "/openapi.json", "/waiting-room", "/v1/queue/ws"];

/// operationId -> route template, read from the generated spec.
#[derive(Debug, Default)]
pub struct RouteTemplates(HashMap<String, String>);

impl RouteTemplates {
    /// Reads every operation's path out of an OpenAPI document (JSON).
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let mut routes = HashMap::new();
        if let Some(paths) = spec.get("paths").and_then(|p| p.as_object()) {
            for (path, operations) in paths {
                let ids = operations
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.values())
                    .filter_map(|op| op.get("operationId")?.as_str());
                for id in ids {
                    routes.insert(id.to_owned(), path.clone());
                }
            }
        }
        Self(routes)
    }

    fn label(&self, operation: Option<&OperationId>, path: &str) -> &str {
        if let Some(route) = operation.and_then(|op| self.0.get(op.0)) {
            return route;
        }
        if path == "/docs" || path.starts_with("/docs/") {
            return "/docs";
        }
        STATIC_ROUTES
            .iter()
            .find(|route| **route == path)
            .copied()
            .unwrap_or("unmatched")
    }
}

/// The middleware; wrap the whole app in it so it sees the final status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    routes: Arc<RouteTemplates>,
    metrics: Metrics,
}

impl HttpMetrics {
    pub fn new(routes: RouteTemplates, metrics: Metrics) -> Self {
        Self {
            routes: Arc::new(routes),
            metrics,
        }
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
        let path = req.uri().path().to_owned();
        let _in_flight = InFlight::enter(&metrics.http_in_flight);
        let started = Instant::now();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let elapsed = started.elapsed().as_secs_f64();
        let (status, operation) = match &result {
            Ok(resp) => (resp.status(), resp.data::<OperationId>()),
            Err(err) => (err.status(), err.data::<OperationId>()),
        };
        let route = self.layer.routes.label(operation, &path);
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
    fn routes_are_templates_fixed_paths_or_unmatched() {
        let routes = RouteTemplates::from_spec(
            r#"{"paths":{"/v1/reservations/{reservationId}":{"get":{"operationId":"getReservation"},"delete":{"operationId":"releaseReservation"}}}}"#,
        );
        let op = OperationId("releaseReservation");
        assert_eq!(
            routes.label(Some(&op), "/v1/reservations/17"),
            "/v1/reservations/{reservationId}"
        );
        assert_eq!(routes.label(None, "/metrics"), "/metrics");
        assert_eq!(routes.label(None, "/docs/index.css"), "/docs");
        assert_eq!(routes.label(None, "/v1/reservations/17/x"), "unmatched");
        assert_eq!(routes.label(None, "/docsx"), "unmatched");
    }

    #[test]
    fn odd_methods_share_a_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap_or_default()),
            "other"
        );
    }
}
