//! Which methods each path takes, read from the spec, so a 405 says in its `Allow`
//! header what would have worked (RFC 9110 requires it).

use poem::http::HeaderValue;

/// Routes outside the spec; all of them are GET only.
const STATIC_GET_ROUTES: &[&str] = &[
    "/metrics",
    "/openapi.json",
    "/waiting-room",
    "/v1/queue/ws",
    "/docs",
];

#[derive(Debug, Default)]
pub struct AllowedMethods(Vec<(Vec<Segment>, HeaderValue)>);

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

impl AllowedMethods {
    /// Reads every path and its methods out of an OpenAPI document (JSON).
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let mut routes = Vec::new();
        if let Some(paths) = spec.get("paths").and_then(|p| p.as_object()) {
            for (path, operations) in paths {
                let methods: Vec<String> = operations
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .map(|m| m.to_uppercase())
                    .collect();
                if let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) {
                    routes.push((segments(path), allow));
                }
            }
        }
        for path in STATIC_GET_ROUTES {
            routes.push((segments(path), HeaderValue::from_static("GET")));
        }
        Self(routes)
    }

    /// The `Allow` value for `path`, if some route has that shape.
    pub fn for_path(&self, path: &str) -> Option<&HeaderValue> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.0.iter().find_map(|(template, allow)| {
            let fits = template.len() == parts.len()
                && template.iter().zip(&parts).all(|(t, p)| match t {
                    Segment::Param => true,
                    Segment::Literal(l) => l == p,
                });
            fits.then_some(allow)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_gets_the_methods_of_its_template() {
        let allowed = AllowedMethods::from_spec(
            r#"{"paths":{"/v1/reservations/{reservationId}":{"get":{},"delete":{}},"/v1/reservations":{"post":{}}}}"#,
        );
        assert_eq!(
            allowed
                .for_path("/v1/reservations/7")
                .map(HeaderValue::as_bytes),
            Some(&b"DELETE, GET"[..])
        );
        assert_eq!(
            allowed
                .for_path("/v1/reservations")
                .map(HeaderValue::as_bytes),
            Some(&b"POST"[..])
        );
        assert_eq!(
            allowed.for_path("/metrics").map(HeaderValue::as_bytes),
            Some(&b"GET"[..])
        );
        assert!(allowed.for_path("/v1/nothing").is_none());
    }
}
