//! The app's routes, read once from the generated spec (plus the few routes served
//! outside it): the route template HTTP metrics label a request with, the methods
//! a 405 lists in its `Allow` header (RFC 9110 requires it), and which operations
//! take a body (only they refuse an oversized one).

use std::collections::HashMap;

use poem::http::HeaderValue;
use poem_openapi::OperationId;

/// Routes served outside the OpenAPI spec, all GET, labelled by their fixed path
/// (`/docs` also serves files below it).
const STATIC_ROUTES: &[&str] = &[
    "/metrics",
    "/openapi.json",
    "/waiting-room",
    "/v1/queue/ws",
    "/docs",
];

#[derive(Debug, Default)]
pub struct RouteTable {
    /// operationId -> route template.
    templates: HashMap<String, String>,
    /// Route shape -> its methods, as an `Allow` value.
    allowed: Vec<(Vec<Segment>, HeaderValue)>,
    /// Route shape and method of every operation that takes a request body.
    with_body: Vec<(Vec<Segment>, String)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

fn segments(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                Segment::Param
            } else {
                Segment::Literal(s.to_owned())
            }
        })
        .collect()
}

impl RouteTable {
    /// Reads every path, its methods and their operationIds out of an OpenAPI
    /// document (JSON).
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let mut table = Self::default();
        let paths = spec.get("paths").and_then(|p| p.as_object());
        for (path, operations) in paths.into_iter().flatten() {
            let Some(operations) = operations.as_object() else {
                continue;
            };
            for id in operations
                .values()
                .filter_map(|op| op.get("operationId")?.as_str())
            {
                table.templates.insert(id.to_owned(), path.clone());
            }
            for (method, op) in operations {
                if op.get("requestBody").is_some() {
                    table
                        .with_body
                        .push((segments(path), method.to_uppercase()));
                }
            }
            let methods: Vec<String> = operations.keys().map(|m| m.to_uppercase()).collect();
            if let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) {
                table.allowed.push((segments(path), allow));
            }
        }
        for path in STATIC_ROUTES {
            table
                .allowed
                .push((segments(path), HeaderValue::from_static("GET")));
        }
        table
    }

    /// The route template of the operation that answered.
    pub fn template(&self, operation: &OperationId) -> Option<&str> {
        self.templates.get(operation.0).map(String::as_str)
    }

    /// The `Allow` value for `path`, if some route has that shape.
    pub fn allowed(&self, path: &str) -> Option<&HeaderValue> {
        let parts = parts(path);
        self.allowed
            .iter()
            .find_map(|(template, allow)| fits(template, &parts).then_some(allow))
    }

    /// Whether `method` on `path` is an operation that takes a request body. Any
    /// other request's body is never read, so its size does not matter.
    pub fn takes_body(&self, method: &str, path: &str) -> bool {
        let parts = parts(path);
        self.with_body
            .iter()
            .any(|(template, m)| m == method && fits(template, &parts))
    }
}

fn parts(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn fits(template: &[Segment], parts: &[&str]) -> bool {
    template.len() == parts.len()
        && template.iter().zip(parts).all(|(t, p)| match t {
            Segment::Param => true,
            Segment::Literal(l) => l == p,
        })
}

/// A path outside the spec: its fixed route, or `unmatched`. Never the raw path.
pub fn static_label(path: &str) -> &'static str {
    if path.starts_with("/docs/") {
        return "/docs";
    }
    STATIC_ROUTES
        .iter()
        .find(|route| **route == path)
        .copied()
        .unwrap_or("unmatched")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates_fixed_paths_or_unmatched() {
        let routes = RouteTable::from_spec(
            r#"{"paths":{"/v1/reservations/{reservationId}":{"get":{"operationId":"getReservation"},"delete":{"operationId":"releaseReservation"}}}}"#,
        );
        let op = OperationId("releaseReservation");
        assert_eq!(
            routes.template(&op),
            Some("/v1/reservations/{reservationId}")
        );
        assert_eq!(static_label("/metrics"), "/metrics");
        assert_eq!(static_label("/docs/index.css"), "/docs");
        assert_eq!(static_label("/v1/reservations/17/x"), "unmatched");
        assert_eq!(static_label("/docsx"), "unmatched");
    }

    #[test]
    fn only_operations_with_a_request_body_take_one() {
        let routes = RouteTable::from_spec(
            r#"{"paths":{"/v1/orders":{"post":{"requestBody":{}},"get":{}},"/v1/orders/{orderId}/payment":{"post":{}}}}"#,
        );
        assert!(routes.takes_body("POST", "/v1/orders"));
        assert!(!routes.takes_body("GET", "/v1/orders"));
        assert!(!routes.takes_body("POST", "/v1/orders/7/payment"));
        assert!(!routes.takes_body("POST", "/v1/nowhere"));
    }

    #[test]
    fn a_path_gets_the_methods_of_its_template() {
        let allowed = RouteTable::from_spec(
            r#"{"paths":{"/v1/reservations/{reservationId}":{"get":{},"delete":{}},"/v1/reservations":{"post":{}}}}"#,
        );
        assert_eq!(
            allowed
                .allowed("/v1/reservations/7")
                .map(HeaderValue::as_bytes),
            Some(&b"DELETE, GET"[..])
        );
        assert_eq!(
            allowed
                .allowed("/v1/reservations")
                .map(HeaderValue::as_bytes),
            Some(&b"POST"[..])
        );
        assert_eq!(
            allowed.allowed("/metrics").map(HeaderValue::as_bytes),
            Some(&b"GET"[..])
        );
        assert!(allowed.allowed("/v1/nothing").is_none());
    }
}
