//! `TestApp`: the real server on a free port, against the real MariaDB and Redis,
//! isolated per test by a fresh database and a fresh Redis key prefix.

use std::net::SocketAddr;

use infra::config::IdentityMode;
use infra::testing::diesel;
use infra::testing::diesel_async::{AsyncConnection as _, AsyncMysqlConnection, RunQueryDsl as _};
use infra::{Services, Settings};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::issuer;

pub const ADMIN_KEY: &str = "test-admin-key";

/// The test harness's own settings. Their prefix is not `BOXOFFICE_`, whose every
/// variable the binary takes for one of its settings (and refuses if unknown): a shell
/// that exports these can still run `boxoffice`.
pub const HARNESS_VARIABLES: [&str; 3] = ["BOXTEST_MYSQL", "BOXTEST_REDIS", "BOXTEST_ARTIFACTS"];

/// The MySQL server tests create their databases on (`BOXTEST_MYSQL`).
pub fn mysql_server() -> String {
    std::env::var(HARNESS_VARIABLES[0]).unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// The Redis tests use, each under its own key prefix (`BOXTEST_REDIS`).
pub fn redis_url() -> String {
    std::env::var(HARNESS_VARIABLES[1]).unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub svc: Services,
    settings: Settings,
    database: String,
    /// Peers share the first instance's database and leave dropping it to it.
    owns_database: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let database = format!("boxoffice_test_{id}");
        let mut settings = Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: format!("{}/{database}", mysql_server()).into(),
            redis_url: redis_url().into(),
            redis_key_prefix: format!("bt:{id}"),
            admin_api_key: Some(ADMIN_KEY.into()),
            expiry_interval_ms: 200,
            // Admission is near-instant unless a test says otherwise.
            queue_tick_ms: 20,
            queue_admit_rate: 100_000,
            queue_capacity: 100_000,
            log_filter: "warn".into(),
            // Fans join with tokens signed by the tests' login service.
            identity_mode: Some(IdentityMode::Jwt),
            identity_issuer: Some(issuer::ISSUER.into()),
            identity_audience: Some(issuer::AUDIENCE.into()),
            identity_jwks_file: Some(issuer::default_key().1.clone()),
            // Only the event tests run a broker (and turn the relay on).
            outbox_relay: false,
            // Every test fan comes from 127.0.0.1: only the limit's own tests limit.
            join_limit_per_second: 0,
            ..Settings::default()
        };
        configure(&mut settings);
        Self::start(settings, database, true).await
    }

    /// A second instance of the same deployment: same database, same Redis keys,
    /// its own port (and whatever `configure` changes).
    pub async fn spawn_peer(&self, configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        Self::start(settings, self.database.clone(), false).await
    }

    async fn start(settings: Settings, database: String, owns_database: bool) -> Self {
        // `RUST_LOG=warn cargo nextest run ...` shows the server's logs of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let server = boxoffice::Server::bind(settings.clone())
            .await
            .expect("server binds");
        let addr = server.local_addr();
        let svc = server.services().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .expect("client"),
            svc,
            settings,
            database,
            owns_database,
            shutdown: Some(tx),
        }
    }

    /// The same deployment reached at another address (an instance run as a process
    /// of its own). Dropping it stops and drops nothing.
    pub fn at(&self, addr: SocketAddr) -> Self {
        Self {
            addr,
            http: self.http.clone(),
            svc: self.svc.clone(),
            settings: self.settings.clone(),
            database: self.database.clone(),
            owns_database: false,
            shutdown: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn db(&self) -> AsyncMysqlConnection {
        AsyncMysqlConnection::establish(&format!("{}/{}", mysql_server(), self.database))
            .await
            .expect("test connects to MySQL")
    }

    /// One number from the test database (`SELECT COUNT(*) ...` and the like).
    pub async fn scalar(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Row> = diesel::sql_query(format!("SELECT CAST(({sql}) AS SIGNED) AS n"))
            .load(&mut self.db().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows[0].n
    }

    /// How many sessions on this test's database (the asking one aside) are running a
    /// statement `LIKE pattern` now: while the test holds the rows it locks, the ones
    /// waiting for them. (Not `INNODB_TRX`: InnoDB refreshes that snapshot only once
    /// nobody has read it for 100 ms, so a poll keeps reading its first one.)
    pub async fn statements_like(&self, pattern: &str) -> i64 {
        self.scalar(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO LIKE '{pattern}'"
        ))
        .await
    }

    pub async fn execute(&self, sql: &str) {
        diesel::sql_query(sql)
            .execute(&mut self.db().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Creates a concert with one schedule per entry of `seat_counts`, every seat
    /// at `price`. Returns the concert and schedule ids.
    pub async fn create_concert(&self, seat_counts: &[u32], price: u64) -> (u64, Vec<u64>) {
        self.create_sale(seat_counts, price, &Value::Null).await
    }

    /// [`Self::create_concert`] with sale settings (`{"opensAt": ..., ...}`; `null`
    /// for none).
    pub async fn create_sale(
        &self,
        seat_counts: &[u32],
        price: u64,
        sale: &Value,
    ) -> (u64, Vec<u64>) {
        let schedules: Vec<Value> = seat_counts
            .iter()
            .map(|n| json!({"venue": "Test Hall", "startsAt": "2027-01-01T19:00:00Z", "seatCount": n, "price": price}))
            .collect();
        let mut body =
            json!({"title": "Test Concert", "artist": "Test Band", "schedules": schedules});
        if !sale.is_null() {
            body["sale"] = sale.clone();
        }
        let res = self
            .admin(reqwest::Method::POST, "/v1/admin/concerts", Some(&body))
            .await;
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let ids = body["scheduleIds"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id"))
            .collect();
        (body["concertId"].as_u64().expect("concert id"), ids)
    }

    /// An admin call (`X-Api-Key`), with a JSON body if given.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("X-Api-Key", ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    /// Joins as `user`, proven by a token from the tests' login service (or, on an
    /// app in development mode, asserted).
    pub async fn join(&self, concert: u64, user: &str) -> Response {
        let body = match self.settings.identity_mode {
            Some(IdentityMode::Jwt) => {
                json!({"concertId": concert, "idToken": issuer::default_key().0.token_for(user)})
            }
            _ => json!({"concertId": concert, "userId": user}),
        };
        self.join_with(&body).await
    }

    /// `POST /v1/queue/tokens` with this body.
    pub async fn join_with(&self, body: &Value) -> Response {
        self.http
            .post(self.url("/v1/queue/tokens"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Joins, waits until admitted, and returns the bearer token.
    pub async fn token(&self, concert: u64, user: &str) -> String {
        let token = self.waiting_token(concert, user).await;
        self.until_state(&token, "ACTIVE").await;
        token
    }

    /// Joins and returns the bearer token, whatever its state.
    pub async fn waiting_token(&self, concert: u64, user: &str) -> String {
        let res = self.join(concert, user).await;
        assert!(res.status().is_success(), "join: {}", res.status());
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Where `token` stands (`GET /v1/queue/tokens/current`).
    pub async fn standing(&self, token: &str) -> Value {
        let res = self.get("/v1/queue/tokens/current", Some(token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("json")
    }

    /// Polls until `token` is in `state` (at most 10 s).
    pub async fn until_state(&self, token: &str, state: &str) -> Value {
        for _ in 0..1_000 {
            let standing = self.standing(token).await;
            if standing["state"] == state {
                return standing;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("token never became {state}");
    }

    pub async fn hold(&self, token: &str, schedule: u64, seat: i64) -> Response {
        self.http
            .post(self.url("/v1/reservations"))
            .bearer_auth(token)
            .json(&json!({"scheduleId": schedule, "seatNo": seat}))
            .send()
            .await
            .expect("request")
    }

    /// Holds a seat that must be free and returns the reservation id.
    pub async fn held(&self, token: &str, schedule: u64, seat: i64) -> u64 {
        let res = self.hold(token, schedule, seat).await;
        assert_eq!(res.status(), StatusCode::CREATED, "hold seat {seat}");
        res.json::<Value>().await.expect("json")["id"]
            .as_u64()
            .expect("id")
    }

    pub async fn charge(&self, token: &str, amount: i64, key: &str) -> Response {
        self.http
            .post(self.url("/v1/points/charges"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"amount": amount}))
            .send()
            .await
            .expect("request")
    }

    pub async fn pay(&self, token: &str, reservation: u64, key: &str) -> Response {
        self.http
            .post(self.url("/v1/payments"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"reservationId": reservation}))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request")
    }

    pub async fn balance(&self, token: &str) -> u64 {
        let body: Value = self
            .get("/v1/points", Some(token))
            .await
            .json()
            .await
            .expect("json");
        body["balance"].as_u64().expect("balance")
    }

    pub async fn seat_statuses(&self, schedule: u64) -> Vec<String> {
        let res = self
            .get(&format!("/v1/schedules/{schedule}/seats"), None)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("json");
        body["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| s["status"].as_str().expect("status").to_owned())
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if !self.owns_database {
            return;
        }
        let database = self.database.clone();
        // Drop runs inside the test's runtime, so clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) =
                    AsyncMysqlConnection::establish(&format!("{}/", mysql_server())).await
                {
                    // The app may be frozen mid-transaction (a current-thread test's
                    // runtime is blocked right here), holding locks DROP DATABASE
                    // would wait for forever: end its sessions first.
                    let _ = kill_sessions_of(&mut conn, &database).await;
                    let _ = diesel::sql_query("SET SESSION lock_wait_timeout = 30")
                        .execute(&mut conn)
                        .await;
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS `{database}`"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Kills every MySQL session whose default database is `database`.
async fn kill_sessions_of(
    conn: &mut AsyncMysqlConnection,
    database: &str,
) -> diesel::QueryResult<()> {
    #[derive(diesel::QueryableByName)]
    struct Session {
        #[diesel(sql_type = diesel::sql_types::Unsigned<diesel::sql_types::BigInt>)]
        id: u64,
    }
    let sessions: Vec<Session> = diesel::sql_query(
        "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
    )
    .bind::<diesel::sql_types::Text, _>(database)
    .load(conn)
    .await?;
    for session in sessions {
        let _ = diesel::sql_query(format!("KILL {}", session.id))
            .execute(conn)
            .await;
    }
    Ok(())
}

/// Asserts a problem+json answer with `status` and `code`, and returns its body.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status for expected {code}");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content-type {content_type}"
    );
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    let detail = body["detail"].as_str().unwrap_or("").to_lowercase();
    for leak in ["diesel", "mysql", "redis", "sql", "panicked", "backtrace"] {
        assert!(!detail.contains(leak), "internal text leaked: {detail}");
    }
    body
}

/// Polls `check` until it holds, failing the test after `within`.
pub async fn until(what: &str, within: std::time::Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
