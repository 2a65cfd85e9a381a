//! Each operation answers with exactly what its spec declares (issue 19). For every
//! (operation, error code) pair the running app's spec lists, a case here makes a
//! real request that gets that status and code; every case's answer must be one its
//! operation's spec lists. The server-side `INTERNAL` and `SERVICE_UNAVAILABLE` are
//! left to the outage tests.
//!
//! The spec is read from the app at test time, so a declaration changed in
//! `api/src/routes` is held to what the handlers do now. Cases that need no state
//! are generated from the spec itself (credentials, bodies, parameters); the rest
//! set up the state their code needs, one small function per group.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, TestApp, until};
use crate::issuer;

/// Failures of our own side, possible anywhere: the outage tests provoke them.
const SERVER_SIDE: [&str; 2] = ["INTERNAL", "SERVICE_UNAVAILABLE"];

/// The edge's body limit, plus one byte.
const OVERSIZED: usize = 2 * 1024 * 1024 + 1;

/// How long a case waits for its answer (a local call takes milliseconds).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// An id no row of a fresh database has.
const MISSING_ID: u64 = 999_999;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_answer_is_given_and_no_other() {
    let app = TestApp::spawn().await;
    let mut contract = Contract::new(Spec::of(&app));
    let generic = generic_cases(&app, &contract.spec).await;
    contract.run(generic).await;
    contract.run(join_cases(&app).await).await;
    contract.run(hold_cases(&app).await).await;
    contract.run(waiting_token_cases(&app).await).await;
    contract.run(own_data_cases(&app).await).await;
    let orders = Orders::set_up(&app).await;
    contract.run(payment_cases(&app, &orders)).await;
    contract.run(cancellation_cases(&app, &orders).await).await;
    contract.run(points_cases(&app).await).await;
    contract.run(lookup_cases(&app)).await;
    contract.run(admin_cases(&app).await).await;
    contract.run(sale_control_cases(&app).await).await;
    let development = TestApp::spawn_with(|s| {
        s.identity_mode = Some(infra::config::IdentityMode::Development);
        s.join_limit_per_second = 1;
        s.join_limit_burst = 1;
    })
    .await;
    contract.run(development_cases(&development).await).await;
    contract.verdict();
}

// ---------------------------------------------------------------------------------
// The spec, as the running app states it.

/// One operation of the spec: how it is called and what it may answer.
struct Operation {
    id: String,
    method: Method,
    /// The path template (`/v1/orders/{orderId}/payment`).
    path: String,
    queue_auth: bool,
    admin_auth: bool,
    body: bool,
    path_params: Vec<String>,
    /// Path parameters that are numbers (ids).
    numeric_path_params: Vec<String>,
    numeric_query_params: Vec<String>,
    required_headers: Vec<String>,
    /// Every status it lists, with the codes its description names (none for a success).
    answers: BTreeMap<u16, BTreeSet<String>>,
}

impl Operation {
    fn parse(method: &str, path: &str, op: &Value) -> Self {
        let id = op["operationId"].as_str().expect("operationId").to_owned();
        let schemes: Vec<&str> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|s| s.keys().map(String::as_str))
            .collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let named = |place: &str, numeric: bool| -> Vec<String> {
            params
                .iter()
                .filter(|p| p["in"] == place)
                .filter(|p| !numeric || p["schema"]["type"] == "integer")
                .map(|p| p["name"].as_str().expect("parameter name").to_owned())
                .collect()
        };
        let answers = op["responses"]
            .as_object()
            .expect("responses")
            .iter()
            .map(|(status, response)| {
                let status: u16 = status.parse().expect("a numeric status");
                let description = response["description"].as_str().unwrap_or_default();
                let codes = if status >= 400 {
                    // Generated as "Conflict: `SEAT_TAKEN`, `SEAT_LIMIT`.": the codes
                    // are the backquoted words.
                    description
                        .split('`')
                        .skip(1)
                        .step_by(2)
                        .map(str::to_owned)
                        .collect()
                } else {
                    BTreeSet::new()
                };
                (status, codes)
            })
            .collect();
        Self {
            method: method.to_uppercase().parse().expect("an HTTP method"),
            path: path.to_owned(),
            queue_auth: schemes.contains(&"QueueAuth"),
            admin_auth: schemes.contains(&"AdminAuth"),
            body: op.get("requestBody").is_some(),
            path_params: named("path", false),
            numeric_path_params: named("path", true),
            numeric_query_params: named("query", true),
            required_headers: params
                .iter()
                .filter(|p| p["in"] == "header" && p["required"] == true)
                .map(|p| p["name"].as_str().expect("header name").to_owned())
                .collect(),
            answers,
            id,
        }
    }

    /// Whether the spec lists this answer: a success status it lists, or an error
    /// status whose description names `code`.
    fn lists(&self, status: u16, code: Option<&str>) -> bool {
        match self.answers.get(&status) {
            Some(_) if status < 400 => true,
            Some(codes) => code.is_some_and(|c| codes.contains(c)),
            None => false,
        }
    }
}

/// Every operation of the app's spec, by `operationId`.
struct Spec(BTreeMap<String, Operation>);

impl Spec {
    fn of(app: &TestApp) -> Self {
        let spec: Value =
            serde_json::from_str(&boxoffice::api_service(&app.svc).spec()).expect("spec JSON");
        let mut operations = BTreeMap::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let op = Operation::parse(method, path, op);
                operations.insert(op.id.clone(), op);
            }
        }
        Self(operations)
    }

    /// Every (operation, code) the spec declares that a request can provoke.
    fn declared(&self) -> BTreeSet<(String, String)> {
        self.0
            .values()
            .flat_map(|op| {
                op.answers
                    .values()
                    .flatten()
                    .filter(|code| !SERVER_SIDE.contains(&code.as_str()))
                    .map(|code| (op.id.clone(), code.clone()))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// Cases, and the record of what they showed.

enum Expect {
    /// Exactly this status and code.
    Problem(u16, String),
    /// Whatever it is, an answer the operation's spec lists.
    Listed,
}

struct Case {
    op: String,
    what: String,
    expect: Expect,
    request: RequestBuilder,
}

/// A case that claims what its request answers: `"holdSeat 409 SEAT_TAKEN: bob's
/// seat"` (operation, status, code: what the request asks for).
fn case(claim: &str, request: RequestBuilder) -> Case {
    let (answer, what) = claim.split_once(": ").expect("`op status CODE: what`");
    let mut words = answer.split(' ');
    let mut word = || words.next().expect("`op status CODE: what`");
    let (op, status, code) = (word(), word(), word());
    Case {
        op: op.to_owned(),
        what: what.to_owned(),
        expect: Expect::Problem(status.parse().expect("a status"), code.to_owned()),
        request,
    }
}

/// A table of cases, a line each: `"holdSeat 409 SEAT_TAKEN: bob's seat" => request,`.
macro_rules! cases {
    ($($claim:expr => $request:expr),* $(,)?) => {
        vec![$(case($claim, $request)),*]
    };
}

/// What came back: the status, and the problem's code for an error.
struct Answer {
    status: u16,
    code: Option<String>,
    detail: String,
}

impl Answer {
    async fn read(res: Response) -> Self {
        let status = res.status().as_u16();
        let problem = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/problem+json"));
        let text = res.text().await.unwrap_or_default();
        if status < 400 {
            return Self {
                status,
                code: None,
                detail: String::new(),
            };
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            // An error that is not problem+json has no code any spec could name.
            code: body["code"].as_str().filter(|_| problem).map(str::to_owned),
            detail: if problem {
                body["detail"].as_str().unwrap_or_default().to_owned()
            } else {
                format!(
                    "not problem+json: {}",
                    text.chars().take(120).collect::<String>()
                )
            },
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

struct Contract {
    spec: Spec,
    /// (operation, code) pairs a case produced as declared.
    covered: BTreeSet<(String, String)>,
    /// Cases whose answer was not the expected one, or not one the spec lists.
    wrong: Vec<String>,
}

impl Contract {
    fn new(spec: Spec) -> Self {
        Self {
            spec,
            covered: BTreeSet::new(),
            wrong: Vec::new(),
        }
    }

    /// Sends the cases one after another, in order: later ones may rely on the
    /// state earlier ones left.
    async fn run(&mut self, cases: Vec<Case>) {
        for case in cases {
            self.check(case).await;
        }
    }

    async fn check(&mut self, case: Case) {
        let Some(op) = self.spec.0.get(&case.op) else {
            self.wrong.push(format!(
                "{} ({}): no such operation in the spec",
                case.op, case.what
            ));
            return;
        };
        let name = format!("{} {} {} ({})", op.id, op.method, op.path, case.what);
        let answer = match tokio::time::timeout(ANSWER_WITHIN, case.request.send()).await {
            Ok(Ok(res)) => Answer::read(res).await,
            Ok(Err(e)) => {
                self.wrong.push(format!("{name}: no answer: {e}"));
                return;
            }
            Err(_) => {
                self.wrong
                    .push(format!("{name}: no answer within {ANSWER_WITHIN:?}"));
                return;
            }
        };
        let listed = op.lists(answer.status, answer.code.as_deref());
        if !listed {
            self.wrong.push(format!(
                "{name}: answered {answer}, which its spec does not list"
            ));
        }
        if let Expect::Problem(status, code) = case.expect {
            if (answer.status, answer.code.as_deref()) != (status, Some(code.as_str())) {
                self.wrong
                    .push(format!("{name}: expected {status} {code}, got {answer}"));
            } else if listed {
                self.covered.insert((op.id.clone(), code));
            }
        }
    }

    fn verdict(&self) {
        let missing: Vec<String> = self
            .spec
            .declared()
            .difference(&self.covered)
            .map(|(op, code)| {
                let status = self.spec.0[op]
                    .answers
                    .iter()
                    .find(|(_, codes)| codes.contains(code))
                    .map_or(0, |(status, _)| *status);
                format!("  {op} {status} {code}")
            })
            .collect();
        let wrong: Vec<String> = self.wrong.iter().map(|w| format!("  {w}")).collect();
        assert!(
            missing.is_empty() && wrong.is_empty(),
            "\nDeclared, but no case produced it (the spec lists what the operation cannot \
             give, or a case is missing):\n{}\n\nAnswers not as the spec declares:\n{}\n",
            missing.join("\n"),
            wrong.join("\n"),
        );
    }
}

// ---------------------------------------------------------------------------------
// Requests and the state they need.

fn anyone(app: &TestApp, method: Method, path: &str) -> RequestBuilder {
    app.http.request(method, app.url(path))
}

/// A fan's call, with their queue token.
fn fan(app: &TestApp, token: &str, method: Method, path: &str) -> RequestBuilder {
    anyone(app, method, path).bearer_auth(token)
}

/// An operator's call, with the API key.
fn operator(app: &TestApp, method: Method, path: &str) -> RequestBuilder {
    anyone(app, method, path).header("X-Api-Key", ADMIN_KEY)
}

fn fresh_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn hold_seat(app: &TestApp, token: &str, schedule: u64, seat: i64) -> RequestBuilder {
    fan(app, token, Method::POST, "/v1/reservations")
        .json(&json!({"scheduleId": schedule, "seatNo": seat}))
}

fn hold_order(app: &TestApp, token: &str, body: &Value) -> RequestBuilder {
    fan(app, token, Method::POST, "/v1/orders").json(body)
}

fn pay_reservation(app: &TestApp, token: &str, reservation: u64, key: &str) -> RequestBuilder {
    fan(app, token, Method::POST, "/v1/payments")
        .header("Idempotency-Key", key)
        .json(&json!({"reservationId": reservation}))
}

fn pay_order(app: &TestApp, token: &str, order: u64, key: &str) -> RequestBuilder {
    fan(
        app,
        token,
        Method::POST,
        &format!("/v1/orders/{order}/payment"),
    )
    .header("Idempotency-Key", key)
}

fn cancel_order(app: &TestApp, token: &str, order: u64, key: &str) -> RequestBuilder {
    fan(
        app,
        token,
        Method::POST,
        &format!("/v1/orders/{order}/cancellation"),
    )
    .header("Idempotency-Key", key)
}

fn join(app: &TestApp, body: &Value) -> RequestBuilder {
    anyone(app, Method::POST, "/v1/queue/tokens").json(body)
}

/// Sends `request`, which must answer `status`, and returns its JSON body.
async fn must(request: RequestBuilder, status: StatusCode) -> Value {
    let res = request.send().await.expect("request");
    let got = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "setup: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Creates a concert of one schedule of `seats` seats at 100 points each, starting
/// at `starts_at`, with `extra` (`sale`, `cancellation`) merged into the body.
async fn concert_at(
    app: &TestApp,
    seats: u32,
    starts_at: chrono::DateTime<chrono::Utc>,
    extra: &Value,
) -> (u64, u64) {
    let mut body = json!({
        "title": "Contract", "artist": "Test Band",
        "schedules": [{"venue": "Hall", "startsAt": starts_at.to_rfc3339(),
                       "seatCount": seats, "price": 100}],
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let created = must(
        operator(app, Method::POST, "/v1/admin/concerts").json(&body),
        StatusCode::CREATED,
    )
    .await;
    (
        created["concertId"].as_u64().expect("concert id"),
        created["scheduleIds"][0].as_u64().expect("schedule id"),
    )
}

/// [`concert_at`] a month from now.
async fn concert(app: &TestApp, seats: u32, extra: &Value) -> (u64, u64) {
    concert_at(
        app,
        seats,
        chrono::Utc::now() + chrono::Duration::days(30),
        extra,
    )
    .await
}

/// A hold of one seat: its reservation and its order.
#[derive(Clone, Copy)]
struct Hold {
    reservation: u64,
    order: u64,
}

async fn held(app: &TestApp, token: &str, schedule: u64, seat: i64) -> Hold {
    let body = must(hold_seat(app, token, schedule, seat), StatusCode::CREATED).await;
    Hold {
        reservation: body["id"].as_u64().expect("reservation id"),
        order: body["orderId"].as_u64().expect("order id"),
    }
}

async fn charged(app: &TestApp, token: &str, amount: i64) {
    let res = app.charge(token, amount, &fresh_key()).await;
    assert_eq!(res.status(), StatusCode::CREATED, "setup: charge");
}

async fn paid(app: &TestApp, token: &str, hold: Hold, key: &str) {
    must(
        pay_reservation(app, token, hold.reservation, key),
        StatusCode::CREATED,
    )
    .await;
}

/// Ends `token` (`DELETE /v1/queue/tokens/current`).
async fn leave(app: &TestApp, token: &str) {
    let res = fan(app, token, Method::DELETE, "/v1/queue/tokens/current")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NO_CONTENT, "setup: leave");
}

async fn close_sale(app: &TestApp, concert: u64) {
    let path = format!("/v1/admin/concerts/{concert}/sale/close");
    must(operator(app, Method::POST, &path), StatusCode::OK).await;
}

fn in_hours(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339()
}

// ---------------------------------------------------------------------------------
// Cases that need no state of their own: generated from the spec.

/// One way a generated request differs from a good one.
enum Change {
    NoToken,
    MadeUpToken,
    NoApiKey,
    WrongApiKey,
    BrokenJson,
    PlainText,
    Oversized,
    /// An oversized body to an operation that takes none, without credentials (so
    /// that, once the body is ignored, nothing is done).
    OversizedUninvited,
    PathParam(String, &'static str),
    QueryParam(String, &'static str),
    NoHeader(String),
    IdempotencyKey(String),
}

/// What a good request of each operation sends: a fan's ACTIVE token, ids of rows
/// that exist, and a body that parses.
struct Sample {
    concert: u64,
    schedule: u64,
    token: String,
    hold: Hold,
}

impl Sample {
    fn path_value(&self, op: &str, name: &str) -> String {
        match name {
            "concertId" => self.concert.to_string(),
            "scheduleId" => self.schedule.to_string(),
            "reservationId" => self.hold.reservation.to_string(),
            "orderId" => self.hold.order.to_string(),
            "grade" => "STANDARD".to_owned(),
            _ => panic!("no sample value for path parameter {name} of {op}: add one"),
        }
    }

    fn header_value(op: &str, name: &str) -> String {
        match name {
            "Idempotency-Key" => fresh_key(),
            _ => panic!("no sample value for header {name} of {op}: add one"),
        }
    }

    fn body(&self, op: &str) -> Value {
        let (concert, schedule) = (self.concert, self.schedule);
        match op {
            "joinQueue" => {
                json!({"concertId": concert, "idToken": issuer::default_key().0.token_for("gina")})
            }
            "holdSeat" => json!({"scheduleId": schedule, "seatNo": 2}),
            "holdOrder" => json!({"scheduleId": schedule, "seats": [3]}),
            "chargePoints" => json!({"amount": 1}),
            "payReservation" => json!({"reservationId": self.hold.reservation}),
            "createConcert" => json!({"title": "T", "artist": "A", "schedules": [
                {"venue": "V", "startsAt": in_hours(720), "seatCount": 1, "price": 1}]}),
            "changeGradePrice" => json!({"price": 100}),
            "changeSale" => json!({"admissionRate": 100}),
            _ => panic!("no sample body for {op}: add one"),
        }
    }

    /// A request of `op`, good but for `change`.
    fn request(&self, app: &TestApp, op: &Operation, change: &Change) -> RequestBuilder {
        let mut path = op.path.clone();
        for name in &op.path_params {
            let value = match change {
                Change::PathParam(changed, value) if changed == name => (*value).to_owned(),
                _ => self.path_value(&op.id, name),
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
        let mut req = anyone(app, op.method.clone(), &path);
        if let Change::QueryParam(name, value) = change {
            req = req.query(&[(name, value)]);
        }
        if op.queue_auth {
            match change {
                Change::NoToken | Change::OversizedUninvited => {}
                Change::MadeUpToken => {
                    req = req.bearer_auth(format!("{}.{}", self.concert, "f".repeat(64)));
                }
                _ => req = req.bearer_auth(&self.token),
            }
        }
        if op.admin_auth {
            match change {
                Change::NoApiKey | Change::OversizedUninvited => {}
                Change::WrongApiKey => req = req.header("X-Api-Key", "wrong"),
                _ => req = req.header("X-Api-Key", ADMIN_KEY),
            }
        }
        for name in &op.required_headers {
            match change {
                Change::NoHeader(left_out) if left_out == name => {}
                Change::IdempotencyKey(key) if name == "Idempotency-Key" => {
                    req = req.header(name, key);
                }
                _ => req = req.header(name, Self::header_value(&op.id, name)),
            }
        }
        match change {
            Change::BrokenJson => req.header("content-type", "application/json").body("{"),
            Change::PlainText => req
                .header("content-type", "text/plain")
                .body(self.body(&op.id).to_string()),
            // Only the length is declared: the body never comes. A server that
            // refuses by the length answers at once; one that read bodies this large
            // would wait, and the case's time limit reports it. (Sent, the bytes
            // would race the server's close: unread, they reset the connection,
            // sometimes before its answer is read.)
            Change::Oversized | Change::OversizedUninvited => req
                .header("content-type", "application/json")
                .header("content-length", OVERSIZED)
                .body(reqwest::Body::wrap_stream(futures::stream::pending::<
                    Result<Vec<u8>, std::io::Error>,
                >())),
            _ if op.body => req.json(&self.body(&op.id)),
            _ => req,
        }
    }
}

/// Credentials, bodies, parameters and headers, for every operation that takes them.
async fn generic_cases(app: &TestApp, spec: &Spec) -> Vec<Case> {
    let (concert_id, schedule) = concert(app, 10, &Value::Null).await;
    let token = app.token(concert_id, "gina").await;
    let hold = held(app, &token, schedule, 1).await;
    let sample = Sample {
        concert: concert_id,
        schedule,
        token,
        hold,
    };
    let mut cases = Vec::new();
    for op in spec.0.values() {
        // `add(change, "400 MALFORMED_REQUEST: broken JSON")` claims that answer of `op`.
        let mut add = |change: Change, answer: &str| {
            let claim = format!("{} {answer}", op.id);
            cases.push(case(&claim, sample.request(app, op, &change)));
        };
        if op.queue_auth {
            add(Change::NoToken, "401 MISSING_TOKEN: no Authorization");
            add(Change::MadeUpToken, "401 INVALID_TOKEN: a made-up token");
        }
        if op.admin_auth {
            add(Change::NoApiKey, "401 INVALID_API_KEY: no X-Api-Key");
            add(Change::WrongApiKey, "401 INVALID_API_KEY: a wrong key");
        }
        if op.body {
            add(Change::BrokenJson, "400 MALFORMED_REQUEST: broken JSON");
            add(Change::PlainText, "415 UNSUPPORTED_MEDIA_TYPE: text/plain");
            add(Change::Oversized, "413 PAYLOAD_TOO_LARGE: over 2 MiB");
        }
        for name in &op.numeric_path_params {
            for value in ["0", "abc"] {
                let answer = format!("400 MALFORMED_REQUEST: {name} {value}");
                add(Change::PathParam(name.clone(), value), &answer);
            }
        }
        for name in &op.numeric_query_params {
            let answer = format!("400 MALFORMED_REQUEST: ?{name}=abc");
            add(Change::QueryParam(name.clone(), "abc"), &answer);
        }
        for name in &op.required_headers {
            let answer = format!("400 MALFORMED_REQUEST: no {name}");
            add(Change::NoHeader(name.clone()), &answer);
        }
        if op.required_headers.iter().any(|h| h == "Idempotency-Key") {
            for key in ["k".repeat(65), "a b".to_owned()] {
                let answer = format!("422 INVALID_IDEMPOTENCY_KEY: Idempotency-Key {key:?}");
                add(Change::IdempotencyKey(key), &answer);
            }
        }
        if !op.body {
            cases.push(Case {
                op: op.id.clone(),
                what: "a body over 2 MiB, though it takes none".to_owned(),
                expect: Expect::Listed,
                request: sample.request(app, op, &Change::OversizedUninvited),
            });
        }
    }
    cases
}

// ---------------------------------------------------------------------------------
// Cases that need state.

/// Who may join which line (the app verifies identity tokens).
async fn join_cases(app: &TestApp) -> Vec<Case> {
    let (open, _) = concert(app, 5, &Value::Null).await;
    let (closed, _) = concert(app, 5, &Value::Null).await;
    close_sale(app, closed).await;
    // One seat, bought: the line ends for everyone once the app sees it sold out.
    let (sold_out, schedule) = concert(app, 1, &Value::Null).await;
    let buyer = app.token(sold_out, "sam").await;
    charged(app, &buyer, 100).await;
    let hold = held(app, &buyer, schedule, 1).await;
    paid(app, &buyer, hold, &fresh_key()).await;
    let public = format!("/v1/concerts/{sold_out}/sale");
    until(
        "the sale shows SOLD_OUT",
        Duration::from_secs(10),
        async || {
            let sale = must(anyone(app, Method::GET, &public), StatusCode::OK).await;
            sale["state"] == "SOLD_OUT"
        },
    )
    .await;

    let key = &issuer::default_key().0;
    let mut claims = issuer::claims("ann");
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 600);
    let expired = key.sign(&claims);
    let (ann, mallory) = (key.token_for("ann"), key.token_for("mallory"));
    let with = |concert: u64, id_token: &str| {
        join(app, &json!({"concertId": concert, "idToken": id_token}))
    };
    let mismatch = json!({"concertId": open, "idToken": mallory, "userId": "ann"});
    cases![
        "joinQueue 401 MISSING_IDENTITY: no idToken" => join(app, &json!({"concertId": open})),
        "joinQueue 401 INVALID_IDENTITY: a garbage idToken" => with(open, "not.a.jwt"),
        "joinQueue 401 IDENTITY_EXPIRED: an expired idToken" => with(open, &expired),
        "joinQueue 403 IDENTITY_MISMATCH: a userId not the subject" => join(app, &mismatch),
        "joinQueue 404 CONCERT_NOT_FOUND: an unknown concert" => with(MISSING_ID, &ann),
        "joinQueue 409 SALE_CLOSED: a closed line" => with(closed, &ann),
        "joinQueue 409 SOLD_OUT: a sold-out concert" => with(sold_out, &ann),
    ]
}

/// Holding seats, one or several, with an ACTIVE token.
async fn hold_cases(app: &TestApp) -> Vec<Case> {
    let (concert_id, schedule) = concert(app, 4, &json!({"sale": {"maxSeatsPerFan": 2}})).await;
    let ann = app.token(concert_id, "ann").await;
    let bob = app.token(concert_id, "bob").await;
    held(app, &bob, schedule, 1).await;
    // Carol holds as many seats as one fan may; seat 4 is the only one free.
    let carol = app.token(concert_id, "carol").await;
    held(app, &carol, schedule, 2).await;
    held(app, &carol, schedule, 3).await;
    let dave = app.token(concert_id, "dave").await;
    leave(app, &dave).await;
    // A show cancelled after kim was let in.
    let (other_concert, cancelled) = concert(app, 2, &Value::Null).await;
    let kim = app.token(other_concert, "kim").await;
    let path = format!("/v1/admin/schedules/{cancelled}/cancellation");
    must(operator(app, Method::POST, &path), StatusCode::ACCEPTED).await;

    let one = |token: &str, schedule: u64, seat: i64| hold_seat(app, token, schedule, seat);
    let seats = |token: &str, schedule: u64, seats: &[i64]| {
        hold_order(app, token, &json!({"scheduleId": schedule, "seats": seats}))
    };
    let grade = |grade: &str, quantity: i64| {
        let body = json!({"scheduleId": schedule, "grade": grade, "quantity": quantity});
        hold_order(app, &ann, &body)
    };
    cases![
        "holdSeat 409 SEAT_TAKEN: bob's seat" => one(&ann, schedule, 1),
        "holdOrder 409 SEAT_TAKEN: bob's seat" => seats(&ann, schedule, &[1]),
        "holdSeat 422 INVALID_SEAT_NUMBER: seat 0" => one(&ann, schedule, 0),
        "holdOrder 422 INVALID_SEAT_NUMBER: seat 0" => seats(&ann, schedule, &[0]),
        "holdOrder 422 INVALID_ORDER: no seats" => seats(&ann, schedule, &[]),
        "holdOrder 422 INVALID_GRADE: a name with spaces" => grade("no such", 1),
        "holdOrder 404 GRADE_NOT_FOUND: an unknown grade" => grade("VIP", 1),
        "holdOrder 409 NOT_ENOUGH_SEATS: 2 of 1 free" => grade("STANDARD", 2),
        "holdSeat 404 SEAT_NOT_FOUND: seat 99 of 4" => one(&ann, schedule, 99),
        "holdOrder 404 SEAT_NOT_FOUND: seat 99 of 4" => seats(&ann, schedule, &[99]),
        "holdSeat 404 SCHEDULE_NOT_FOUND: an unknown one" => one(&ann, MISSING_ID, 1),
        "holdOrder 404 SCHEDULE_NOT_FOUND: an unknown one" => seats(&ann, MISSING_ID, &[1]),
        "holdSeat 409 SEAT_LIMIT: a third seat" => one(&carol, schedule, 4),
        "holdOrder 409 SEAT_LIMIT: a third seat" => seats(&carol, schedule, &[4]),
        "holdSeat 409 SHOW_CANCELLED: a cancelled show" => one(&kim, cancelled, 1),
        "holdOrder 409 SHOW_CANCELLED: a cancelled show" => seats(&kim, cancelled, &[1]),
        "holdSeat 403 WRONG_CONCERT: another concert's" => one(&ann, cancelled, 1),
        "holdOrder 403 WRONG_CONCERT: another concert's" => seats(&ann, cancelled, &[1]),
        "holdSeat 401 TOKEN_EXPIRED: a token left" => one(&dave, schedule, 4),
        "holdOrder 401 TOKEN_EXPIRED: a token left" => seats(&dave, schedule, &[4]),
    ]
}

/// Booking with a WAITING token, by a fan who holds a seat from an earlier turn: a
/// line that lets one fan in at a time, and someone else's turn now.
async fn waiting_token_cases(app: &TestApp) -> Vec<Case> {
    let (concert_id, schedule) = concert(app, 3, &json!({"sale": {"activeCapacity": 1}})).await;
    let first_turn = app.token(concert_id, "quinn").await;
    let hold = held(app, &first_turn, schedule, 1).await;
    leave(app, &first_turn).await;
    app.token(concert_id, "frank").await;
    let id_token = issuer::default_key().0.token_for("quinn");
    let again = join(app, &json!({"concertId": concert_id, "idToken": id_token}));
    let again = must(again, StatusCode::CREATED).await;
    assert_eq!(again["state"], "WAITING", "setup: frank has the only turn");
    let waiting = again["token"].as_str().expect("token");
    let seat_2 = json!({"scheduleId": schedule, "seats": [2]});
    cases![
        "holdSeat 403 TOKEN_NOT_ACTIVE: a WAITING token" => hold_seat(app, waiting, schedule, 2),
        "holdOrder 403 TOKEN_NOT_ACTIVE: a WAITING token" => hold_order(app, waiting, &seat_2),
        "payReservation 403 TOKEN_NOT_ACTIVE: a WAITING token" =>
            pay_reservation(app, waiting, hold.reservation, &fresh_key()),
        "payOrder 403 TOKEN_NOT_ACTIVE: a WAITING token" =>
            pay_order(app, waiting, hold.order, &fresh_key()),
    ]
}

/// Reading and releasing one's own reservations and orders.
async fn own_data_cases(app: &TestApp) -> Vec<Case> {
    let (concert_id, schedule) = concert(app, 5, &Value::Null).await;
    let ann = app.token(concert_id, "ann").await;
    let bob = app.token(concert_id, "bob").await;
    let bobs = held(app, &bob, schedule, 2).await;
    charged(app, &ann, 100).await;
    let anns = held(app, &ann, schedule, 1).await;
    paid(app, &ann, anns, &fresh_key()).await;

    let reservation =
        |method: Method, id: u64| fan(app, &ann, method, &format!("/v1/reservations/{id}"));
    let order = |method: Method, id: u64| fan(app, &ann, method, &format!("/v1/orders/{id}"));
    cases![
        "getReservation 404 RESERVATION_NOT_FOUND: someone else's" =>
            reservation(Method::GET, bobs.reservation),
        "releaseReservation 404 RESERVATION_NOT_FOUND: someone else's" =>
            reservation(Method::DELETE, bobs.reservation),
        "releaseReservation 409 ALREADY_PAID: a paid one" =>
            reservation(Method::DELETE, anns.reservation),
        "getOrder 404 ORDER_NOT_FOUND: someone else's" => order(Method::GET, bobs.order),
        "releaseOrder 404 ORDER_NOT_FOUND: someone else's" => order(Method::DELETE, bobs.order),
        "releaseOrder 409 ALREADY_PAID: a paid one" => order(Method::DELETE, anns.order),
    ]
}

/// Ann's orders in every state a payment or a cancellation can meet, and fans
/// whose payments fail for reasons of their own.
struct Orders {
    /// Ann's token now (ACTIVE).
    ann: String,
    paid: Hold,
    released: Hold,
    lapsed: Hold,
    cancelled: Hold,
    /// Keys ann already used: to pay a reservation, to pay an order, to cancel one.
    paid_with: String,
    order_paid_with: String,
    cancelled_with: String,
    bobs: Hold,
    /// Pat holds a seat but has no points.
    pat: (String, Hold),
    /// Lea holds a seat and left the line.
    lea: (String, Hold),
    /// Wes holds a seat here and pays with his token for another concert.
    wes: (String, Hold),
}

impl Orders {
    async fn set_up(app: &TestApp) -> Self {
        let (concert_id, schedule) = concert(app, 10, &Value::Null).await;
        let first = app.token(concert_id, "ann").await;
        charged(app, &first, 1_000).await;
        let paid_hold = held(app, &first, schedule, 1).await;
        let released = held(app, &first, schedule, 2).await;
        let lapsed = held(app, &first, schedule, 3).await;
        let path = format!("/v1/reservations/{}", released.reservation);
        must(fan(app, &first, Method::DELETE, &path), StatusCode::OK).await;
        let paid_with = fresh_key();
        paid(app, &first, paid_hold, &paid_with).await;
        // Paying ended ann's token: she joins again for each next one.
        let second = app.token(concert_id, "ann").await;
        let cancelled = held(app, &second, schedule, 4).await;
        let order_paid_with = fresh_key();
        let pay = pay_order(app, &second, cancelled.order, &order_paid_with);
        must(pay, StatusCode::CREATED).await;
        let cancelled_with = fresh_key();
        let cancel = cancel_order(app, &second, cancelled.order, &cancelled_with);
        must(cancel, StatusCode::CREATED).await;
        // The hold runs out: moved into the past rather than waited for.
        app.execute(&format!(
            "UPDATE orders SET held_until = '2001-01-01 00:00:00' WHERE id = {}",
            lapsed.order
        ))
        .await;
        let ann = app.token(concert_id, "ann").await;

        let bob = app.token(concert_id, "bob").await;
        let bobs = held(app, &bob, schedule, 5).await;
        let pat = app.token(concert_id, "pat").await;
        let pats = held(app, &pat, schedule, 6).await;
        let lea = app.token(concert_id, "lea").await;
        let leas = held(app, &lea, schedule, 7).await;
        leave(app, &lea).await;
        let wes = app.token(concert_id, "wes").await;
        let wess = held(app, &wes, schedule, 8).await;
        let (elsewhere, _) = concert(app, 1, &Value::Null).await;
        let wes_elsewhere = app.token(elsewhere, "wes").await;
        Self {
            ann,
            paid: paid_hold,
            released,
            lapsed,
            cancelled,
            paid_with,
            order_paid_with,
            cancelled_with,
            bobs,
            pat: (pat, pats),
            lea: (lea, leas),
            wes: (wes_elsewhere, wess),
        }
    }
}

/// Paying a reservation and paying an order meet the same states.
fn payment_cases(app: &TestApp, o: &Orders) -> Vec<Case> {
    let mut cases = Vec::new();
    for op in ["payReservation", "payOrder"] {
        let by_order = op == "payOrder";
        let pay = |token: &str, hold: Hold, key: &str| {
            if by_order {
                pay_order(app, token, hold.order, key)
            } else {
                pay_reservation(app, token, hold.reservation, key)
            }
        };
        let new = &fresh_key();
        let used = if by_order {
            &o.order_paid_with
        } else {
            &o.paid_with
        };
        let not_found = if by_order {
            "ORDER_NOT_FOUND"
        } else {
            "RESERVATION_NOT_FOUND"
        };
        let ann = &o.ann;
        let claim = |rest: &str| format!("{op} {rest}");
        cases.extend(cases![
            &claim("409 ALREADY_PAID: paid") => pay(ann, o.paid, new),
            &claim("409 HOLD_EXPIRED: lapsed") => pay(ann, o.lapsed, new),
            &claim("409 RESERVATION_RELEASED: released") => pay(ann, o.released, new),
            &claim("409 ORDER_CANCELLED: cancelled") => pay(ann, o.cancelled, new),
            &claim(&format!("404 {not_found}: bob's")) => pay(ann, o.bobs, new),
            &claim("409 IDEMPOTENCY_KEY_REUSED: the key of another payment") =>
                pay(ann, o.released, used),
            &claim("422 INSUFFICIENT_POINTS: no points") => pay(&o.pat.0, o.pat.1, new),
            &claim("401 TOKEN_EXPIRED: a token left") => pay(&o.lea.0, o.lea.1, new),
            &claim("403 WRONG_CONCERT: a token for another concert") =>
                pay(&o.wes.0, o.wes.1, new),
        ]);
    }
    cases
}

/// Cancelling paid orders, and the cutoff before the show.
async fn cancellation_cases(app: &TestApp, o: &Orders) -> Vec<Case> {
    let in_two_hours = chrono::Utc::now() + chrono::Duration::hours(2);
    let cutoff = json!({"cancellation": {"cutoffHours": 3, "feePercent": 0}});
    let (soon, schedule) = concert_at(app, 1, in_two_hours, &cutoff).await;
    let late = app.token(soon, "late").await;
    charged(app, &late, 100).await;
    let lates = held(app, &late, schedule, 1).await;
    paid(app, &late, lates, &fresh_key()).await;

    let cancel = |token: &str, hold: Hold, key: &str| cancel_order(app, token, hold.order, key);
    let (ann, new) = (&o.ann, &fresh_key());
    cases![
        "cancelOrder 404 ORDER_NOT_FOUND: bob's" => cancel(ann, o.bobs, new),
        "cancelOrder 409 ORDER_NOT_PAID: lapsed" => cancel(ann, o.lapsed, new),
        "cancelOrder 409 ORDER_CANCELLED: cancelled" => cancel(ann, o.cancelled, new),
        "cancelOrder 409 IDEMPOTENCY_KEY_REUSED: the key of another cancellation" =>
            cancel(ann, o.paid, &o.cancelled_with),
        "cancelOrder 409 CANCELLATION_CLOSED: 2 hours before the show, cutoff 3" =>
            cancel(&late, lates, new),
    ]
}

/// Charging points.
async fn points_cases(app: &TestApp) -> Vec<Case> {
    let (concert_id, _) = concert(app, 1, &Value::Null).await;
    let rich = app.token(concert_id, "rich").await;
    let charge = |amount: i64, key: &str| {
        fan(app, &rich, Method::POST, "/v1/points/charges")
            .header("Idempotency-Key", key)
            .json(&json!({"amount": amount}))
    };
    // The most a wallet holds: 100 of the largest charge.
    let first_key = fresh_key();
    must(charge(10_000_000, &first_key), StatusCode::CREATED).await;
    for _ in 1..100 {
        must(charge(10_000_000, &fresh_key()), StatusCode::CREATED).await;
    }
    cases![
        "chargePoints 422 INVALID_AMOUNT: 0 points" => charge(0, &fresh_key()),
        "chargePoints 422 BALANCE_LIMIT: 1 point too many" => charge(1, &fresh_key()),
        "chargePoints 409 IDEMPOTENCY_KEY_REUSED: the key of another amount" =>
            charge(1, &first_key),
    ]
}

/// The public catalogue's lookups of what does not exist.
fn lookup_cases(app: &TestApp) -> Vec<Case> {
    let get = |path: String| anyone(app, Method::GET, &path);
    cases![
        "listSchedules 404 CONCERT_NOT_FOUND: an unknown concert" =>
            get(format!("/v1/concerts/{MISSING_ID}/schedules")),
        "getSeatMap 404 SCHEDULE_NOT_FOUND: an unknown schedule" =>
            get(format!("/v1/schedules/{MISSING_ID}/seats")),
        "getPublicSale 404 CONCERT_NOT_FOUND: an unknown concert" =>
            get(format!("/v1/concerts/{MISSING_ID}/sale")),
    ]
}

/// Creating concerts, and changing or cancelling their shows.
async fn admin_cases(app: &TestApp) -> Vec<Case> {
    let (_, schedule) = concert(app, 3, &Value::Null).await;
    let create = |grade: Value, sale: Value| {
        let mut grade_r = json!({"name": "R", "price": 10, "firstSeat": 1, "lastSeat": 5});
        for (k, v) in grade.as_object().into_iter().flatten() {
            grade_r[k] = v.clone();
        }
        let mut body = json!({"title": "T", "artist": "A", "schedules": [
            {"venue": "V", "startsAt": in_hours(720), "grades": [grade_r]}]});
        if !sale.is_null() {
            body["sale"] = sale;
        }
        operator(app, Method::POST, "/v1/admin/concerts").json(&body)
    };
    let no_schedules = json!({"title": "T", "artist": "A", "schedules": []});
    let price = |schedule: u64, grade: &str, price: i64| {
        let path = format!("/v1/admin/schedules/{schedule}/grades/{grade}");
        operator(app, Method::PATCH, &path).json(&json!({"price": price}))
    };
    let show = |method: Method| {
        operator(
            app,
            method,
            &format!("/v1/admin/schedules/{MISSING_ID}/cancellation"),
        )
    };
    let sales = operator(
        app,
        Method::GET,
        &format!("/v1/admin/concerts/{MISSING_ID}/sales"),
    );
    let null = Value::Null;
    cases![
        "createConcert 422 INVALID_CONCERT: no schedules" =>
            operator(app, Method::POST, "/v1/admin/concerts").json(&no_schedules),
        "createConcert 422 INVALID_GRADES: grades not from seat 1" =>
            create(json!({"firstSeat": 2}), null.clone()),
        "createConcert 422 INVALID_GRADE: a grade name with a space" =>
            create(json!({"name": "R R"}), null.clone()),
        "createConcert 422 INVALID_SEAT_NUMBER: seat 0" =>
            create(json!({"firstSeat": 0}), null.clone()),
        "createConcert 422 INVALID_SALE_SETTINGS: an opening in the past" =>
            create(null.clone(), json!({"opensAt": in_hours(-1)})),
        "changeGradePrice 404 SCHEDULE_NOT_FOUND: an unknown schedule" =>
            price(MISSING_ID, "STANDARD", 10),
        "changeGradePrice 404 GRADE_NOT_FOUND: an unknown grade" => price(schedule, "VIP", 10),
        "changeGradePrice 422 INVALID_GRADE: a grade name with a space" =>
            price(schedule, "R%20R", 10),
        "changeGradePrice 422 INVALID_GRADES: 0 points" => price(schedule, "STANDARD", 0),
        "cancelShow 404 SCHEDULE_NOT_FOUND: an unknown schedule" => show(Method::POST),
        "getShowCancellation 404 SCHEDULE_NOT_FOUND: an unknown schedule" => show(Method::GET),
        "getConcertSales 404 CONCERT_NOT_FOUND: an unknown concert" => sales,
    ]
}

/// A sale's settings and its state machine.
async fn sale_control_cases(app: &TestApp) -> Vec<Case> {
    let (open, _) = concert(app, 3, &Value::Null).await;
    let (closed, _) = concert(app, 3, &Value::Null).await;
    close_sale(app, closed).await;
    let sale = |concert: u64, method: Method, rest: &str| {
        operator(
            app,
            method,
            &format!("/v1/admin/concerts/{concert}/sale{rest}"),
        )
    };
    let change = |concert: u64, body: &Value| sale(concert, Method::PATCH, "").json(body);
    let unknown = MISSING_ID;
    cases![
        "getSale 404 CONCERT_NOT_FOUND: an unknown concert" => sale(unknown, Method::GET, ""),
        "changeSale 404 CONCERT_NOT_FOUND: an unknown concert" =>
            change(unknown, &json!({"admissionRate": 10})),
        "changeSale 422 INVALID_SALE_SETTINGS: an opening in the past" =>
            change(open, &json!({"opensAt": in_hours(-1)})),
        "changeSale 409 SALE_STATE_CONFLICT: moving the opening of an open sale" =>
            change(open, &json!({"opensAt": in_hours(1)})),
        "resumeSale 409 SALE_STATE_CONFLICT: an open sale" => sale(open, Method::POST, "/resume"),
        "pauseSale 409 SALE_STATE_CONFLICT: a closed sale" => sale(closed, Method::POST, "/pause"),
        "closeSale 409 SALE_STATE_CONFLICT: a closed sale" => sale(closed, Method::POST, "/close"),
        "pauseSale 404 CONCERT_NOT_FOUND: an unknown concert" =>
            sale(unknown, Method::POST, "/pause"),
        "resumeSale 404 CONCERT_NOT_FOUND: an unknown concert" =>
            sale(unknown, Method::POST, "/resume"),
        "closeSale 404 CONCERT_NOT_FOUND: an unknown concert" =>
            sale(unknown, Method::POST, "/close"),
    ]
}

/// An app in development mode, the only one that reads `userId`, letting each
/// client join once a second: the first case uses the client's one join.
async fn development_cases(app: &TestApp) -> Vec<Case> {
    let (concert_id, _) = concert(app, 1, &Value::Null).await;
    let as_user = |user: &str| join(app, &json!({"concertId": concert_id, "userId": user}));
    cases![
        "joinQueue 422 INVALID_USER_ID: a userId with a space" => as_user("has space"),
        "joinQueue 429 RATE_LIMITED: a second join within the second" => as_user("ann"),
    ]
}
