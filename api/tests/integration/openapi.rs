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

fn spec() -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let svc =
        infra::Services::new(infra::Settings::default(), infra::metrics::Metrics::new()).unwrap();
    serde_json::from_str(&boxoffice::api_service(&svc).spec()).unwrap()
}

/// The statuses an operation's spec lists, in order.
fn statuses(spec: &serde_json::Value, path: &str, method: &str) -> Vec<String> {
    spec["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("no {method} {path}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn every_operation_is_documented_and_lists_its_errors() {
    let spec = spec();
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
            if path.starts_with("/health") {
                continue;
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('2') {
                    continue;
                }
                let problem = &response["content"]["application/problem+json"];
                assert!(
                    problem.is_object(),
                    "{id} does not document {status} as problem+json"
                );
                let description = response["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains('`'),
                    "{id}'s {status} names no error code: {description:?}"
                );
            }
        }
    }
    assert!(ids.len() >= 16);
}

/// Each operation lists only what it can answer: a catalogue read cannot conflict
/// or be refused, and a hold lists what a rush gives it.
#[test]
fn each_operation_lists_only_its_own_answers() {
    let spec = spec();
    assert_eq!(
        statuses(&spec, "/v1/concerts", "get"),
        ["200", "500", "503"]
    );
    assert_eq!(
        statuses(&spec, "/v1/concerts/{concertId}/schedules", "get"),
        ["200", "400", "404", "500", "503"]
    );
    let hold = &spec["paths"]["/v1/orders"]["post"]["responses"];
    let conflict = hold["409"]["description"].as_str().unwrap();
    for code in [
        "SEAT_TAKEN",
        "NOT_ENOUGH_SEATS",
        "SHOW_CANCELLED",
        "SEAT_LIMIT",
    ] {
        assert!(conflict.contains(&format!("`{code}`")), "{conflict}");
    }
    assert!(!conflict.contains("ALREADY_PAID"), "{conflict}");
    let pay = &spec["paths"]["/v1/payments"]["post"]["responses"];
    assert!(
        pay["409"]["description"]
            .as_str()
            .unwrap()
            .contains("`ALREADY_PAID`")
    );
    // Only the join is rate limited, and only it says when to come back.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let limited = op["responses"].get("429").is_some();
            assert_eq!(
                limited,
                op["operationId"] == "joinQueue",
                "{method} {path}: 429 listed: {limited}"
            );
        }
    }
    assert!(
        spec["paths"]["/v1/queue/tokens"]["post"]["responses"]["429"]["headers"]["Retry-After"]
            .is_object()
    );
}
