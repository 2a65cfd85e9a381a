//! The committed `openapi.yaml` is what the handlers generate: regenerate it with
//! `cargo run -q -p boxoffice -- openapi > openapi.yaml`.

#[test]
fn the_committed_spec_matches_the_handlers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let svc =
        infra::Services::new(infra::Settings::default(), infra::metrics::Metrics::new()).unwrap();
    let generated = boxoffice::api_service(&svc).spec_yaml();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml")).unwrap();
    assert!(
        generated == committed,
        "openapi.yaml is stale: run `cargo run -q -p boxoffice -- openapi > openapi.yaml`"
    );
}

/// The server URL is relative, so Swagger UI's "Try it out" calls whatever host and
/// port served the docs (a fixed `http://localhost:8080` worked nowhere else).
#[test]
fn the_server_url_is_relative() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let svc =
        infra::Services::new(infra::Settings::default(), infra::metrics::Metrics::new()).unwrap();
    let spec: serde_json::Value =
        serde_json::from_str(&boxoffice::api_service(&svc).spec()).unwrap();
    assert_eq!(spec["servers"], serde_json::json!([{"url": "/"}]));
}

#[test]
fn every_operation_is_documented_and_lists_its_errors() {
    let spec: serde_json::Value = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let svc = infra::Services::new(infra::Settings::default(), infra::metrics::Metrics::new())
            .unwrap();
        serde_json::from_str(&boxoffice::api_service(&svc).spec()).unwrap()
    };
    let mut ids = std::collections::HashSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(op["summary"].is_string(), "{id} has no summary");
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{id} has no tag"
            );
            let responses = op["responses"].as_object().unwrap();
            if !path.starts_with("/health") {
                for status in ["400", "500", "503"] {
                    let problem = &responses[status]["content"]["application/problem+json"];
                    assert!(
                        problem.is_object(),
                        "{id} does not document {status} as problem+json"
                    );
                }
            }
        }
    }
    assert!(ids.len() >= 16);
}
