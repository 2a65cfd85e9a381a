//! MySQL lost in the middle of transactions. The app reaches MariaDB through a TCP
//! proxy the test runs: cutting every proxied connection is, from the app's side,
//! MariaDB killed (each session's socket closes mid-call, and new connections are
//! closed at once), while the test's own connections go straight to MariaDB and see
//! what was committed. Every blocked call answers 201 or 503, never 500, nothing is
//! half-written, and once the proxy forwards again the app serves by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use infra::testing::diesel;
use infra::testing::diesel_async::{self, AsyncConnection as _, AsyncMysqlConnection};
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{TestApp, assert_problem, mysql_server};

/// A loopback TCP proxy to MariaDB that can cut every connection it carries.
pub struct MysqlProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on every cut; each carried connection ends when it changes.
    cuts: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl MysqlProxy {
    pub async fn start() -> Self {
        let upstream = upstream_addr();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (up, cuts, accepted) = (up.clone(), cuts.clone(), accepted.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if !up.load(Ordering::SeqCst) {
                        // MariaDB is "down": the connection closes at once.
                        continue;
                    }
                    let mut cut = cuts.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                        // Dropping both ends closes them: the app reads EOF mid-call,
                        // and MariaDB ends the session (rolling its transaction back)
                        // as soon as it next touches the socket.
                    });
                }
            }
        });
        Self {
            addr,
            up,
            cuts,
            accepted,
            task,
        }
    }

    /// `url` (a database URL of the test MariaDB) with the proxy as its server. Over
    /// TCP to a local server, `mysql_async` switches to the server's Unix socket
    /// after the handshake unless told not to, which would bypass the proxy.
    pub fn url_for(&self, url: &str) -> String {
        let upstream = mysql_server();
        let rest = url
            .strip_prefix(&upstream)
            .unwrap_or_else(|| panic!("{url} is on {upstream}"));
        let (scheme, authority) = upstream.split_once("://").unwrap();
        let credentials = authority
            .rsplit_once('@')
            .map_or(String::new(), |(c, _)| format!("{c}@"));
        format!(
            "{scheme}://{credentials}{}{rest}?prefer_socket=false",
            self.addr
        )
    }

    /// Every carried connection closes, and new ones are closed at once.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Connections the app opened through the proxy so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for MysqlProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// Host and port of the test MariaDB (`mysql://[user@]host:port`).
fn upstream_addr() -> SocketAddr {
    let server = mysql_server();
    let authority = server.split_once("://").unwrap().1;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .unwrap()
        .next()
        .unwrap()
}

/// An app whose database URL is the test database's with `rewrite` applied.
async fn app_at(rewrite: impl FnOnce(&str) -> String) -> TestApp {
    TestApp::spawn_with(|s| {
        s.database_url = rewrite(s.database_url.expose_secret()).into();
        s.database_timeout_ms = 1_000;
        // Every blocked call keeps its own connection.
        s.database_pool_size = 40;
    })
    .await
}

/// `app`'s database on `server`, for the test's own connections.
fn direct(app: &TestApp, server: &str) -> String {
    let url = app.svc.settings.database_url.expose_secret();
    let database = url.rsplit_once('/').unwrap().1.split('?').next().unwrap();
    format!("{server}/{database}")
}

/// One number from `sql`, on a connection of the test's own to `url`.
async fn scalar(url: &str, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl as _;

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncMysqlConnection::establish(url).await.unwrap();
    let rows: Vec<Row> = diesel::sql_query(format!("SELECT CAST(({sql}) AS SIGNED) AS n"))
        .load(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows[0].n
}

/// Polls `sql` (one number) until it is `want`, for at most `within`.
async fn until_scalar(url: &str, sql: &str, want: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = scalar(url, sql).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got}, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The books balance: every payment has its debit, its confirmed reservation, its
/// sold seat and its event; every wallet is the sum of its ledger; every hold and
/// charge has its event.
async fn assert_consistent(db: &str) {
    let payments = scalar(db, "SELECT COUNT(*) FROM payments").await;
    for (what, sql) in [
        (
            "confirmed reservations",
            "SELECT COUNT(*) FROM reservations WHERE status = 'CONFIRMED'",
        ),
        (
            "ledger debits",
            "SELECT COUNT(*) FROM point_ledger WHERE kind = 'PAYMENT'",
        ),
        (
            "sold seats",
            "SELECT COUNT(*) FROM seats WHERE status = 'SOLD'",
        ),
        (
            "payment events",
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderPaid'",
        ),
    ] {
        assert_eq!(scalar(db, sql).await, payments, "{what} = payments");
    }
    let pairs = [
        (
            "every wallet is the sum of its ledger",
            "SELECT COUNT(*) FROM wallets w WHERE w.balance <> \
             (SELECT COALESCE(SUM(l.amount), 0) FROM point_ledger l WHERE l.user_id = w.user_id)",
            "SELECT 0",
        ),
        (
            "every charge has its event",
            "SELECT COUNT(*) FROM point_ledger WHERE kind = 'CHARGE'",
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'PointsCharged'",
        ),
        (
            "every hold has its event",
            "SELECT COUNT(*) FROM reservations",
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderHeld'",
        ),
        (
            "every held seat has its hold",
            "SELECT COUNT(*) FROM seats WHERE status = 'HELD'",
            "SELECT COUNT(*) FROM reservations WHERE status = 'HELD'",
        ),
    ];
    for (what, left, right) in pairs {
        assert_eq!(scalar(db, left).await, scalar(db, right).await, "{what}");
    }
}

/// 201 or a problem+json 503 `SERVICE_UNAVAILABLE`; never anything else.
async fn created_or_unavailable(res: reqwest::Response, what: &str) -> bool {
    if res.status() == StatusCode::CREATED {
        return true;
    }
    let status = res.status();
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {status} {}",
        res.text().await.unwrap_or_default()
    );
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
    false
}

const PAYERS: usize = 10;
const CHARGERS: usize = 5;
const HOLDERS: usize = 5;
/// Seats `1..=PAYERS` are the payers' holds; the holders want the next ones.
const FIRST_HOLDER_SEAT: i64 = 31;

/// Payers with points and a held seat each, and holders with an active token.
struct Scene {
    schedule: u64,
    payers: Vec<(String, u64)>,
    holders: Vec<String>,
}

async fn set_up(app: &TestApp) -> Scene {
    let (concert, schedules) = app.create_concert(&[40], 1_000).await;
    let schedule = schedules[0];
    let mut payers = Vec::new();
    for i in 0..PAYERS {
        let token = app.token(concert, &format!("payer-{i}")).await;
        assert_eq!(
            app.charge(&token, 5_000, "first").await.status(),
            StatusCode::CREATED
        );
        let reservation = app.held(&token, schedule, i as i64 + 1).await;
        payers.push((token, reservation));
    }
    let mut holders = Vec::new();
    for i in 0..HOLDERS {
        holders.push(app.token(concert, &format!("holder-{i}")).await);
    }
    Scene {
        schedule,
        payers,
        holders,
    }
}

type Call = tokio::task::JoinHandle<(&'static str, reqwest::Response)>;

/// The test's own transaction, straight to MariaDB, locks the payers' wallets and
/// the holders' seats; then every payer pays, some charge and every holder holds,
/// and each call blocks inside its transaction, in MySQL, until the test lets go.
async fn calls_blocked_in_mysql(
    app: &TestApp,
    db: &str,
    scene: &Scene,
) -> (AsyncMysqlConnection, Vec<Call>) {
    use diesel_async::RunQueryDsl as _;

    let mut blocker = AsyncMysqlConnection::establish(db).await.unwrap();
    let last_seat = FIRST_HOLDER_SEAT + HOLDERS as i64 - 1;
    for sql in [
        "START TRANSACTION".to_owned(),
        "SELECT user_id FROM wallets WHERE user_id LIKE 'payer-%' FOR UPDATE".to_owned(),
        format!(
            "SELECT seat_no FROM seats WHERE schedule_id = {} \
             AND seat_no BETWEEN {FIRST_HOLDER_SEAT} AND {last_seat} FOR UPDATE",
            scene.schedule
        ),
    ] {
        diesel::sql_query(sql).execute(&mut blocker).await.unwrap();
    }
    let mut calls: Vec<Call> = Vec::new();
    for (i, (token, reservation)) in scene.payers.iter().enumerate() {
        let (app, token, reservation) = (app.at(app.addr), token.clone(), *reservation);
        calls.push(tokio::spawn(async move {
            let key = format!("p-{i}");
            ("payment", app.pay(&token, reservation, &key).await)
        }));
    }
    for (i, (token, _)) in scene.payers.iter().take(CHARGERS).enumerate() {
        let (app, token) = (app.at(app.addr), token.clone());
        calls.push(tokio::spawn(async move {
            ("charge", app.charge(&token, 700, &format!("c-{i}")).await)
        }));
    }
    for (token, seat) in scene.holders.iter().zip(FIRST_HOLDER_SEAT..) {
        let (app, token, schedule) = (app.at(app.addr), token.clone(), scene.schedule);
        calls.push(tokio::spawn(async move {
            ("hold", app.hold(&token, schedule, seat).await)
        }));
    }
    let database = db.rsplit_once('/').unwrap().1;
    until_scalar(
        db,
        // (`INNODB_TRX` would be the obvious place to look, but MariaDB leaves
        // some of these waits out of it.)
        &format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE DB = '{database}' AND ID <> CONNECTION_ID() \
             AND (INFO LIKE '%`wallets`%FOR UPDATE' OR INFO LIKE '%`seats`%FOR UPDATE')"
        ),
        calls.len() as i64,
        Duration::from_secs(10),
    )
    .await;
    (blocker, calls)
}

/// Every blocked call answers 503 (none 500), at once, not after a timeout; and so
/// does a new call while MySQL is away.
async fn assert_all_unavailable(app: &TestApp, scene: &Scene, calls: Vec<Call>) {
    let lost_at = Instant::now();
    for answer in join_all(calls).await {
        let (what, res) = answer.unwrap();
        assert!(
            !created_or_unavailable(res, what).await,
            "no {what} could commit: each waited on a lock"
        );
    }
    assert!(
        lost_at.elapsed() < Duration::from_secs(5),
        "503s come at once: {:?}",
        lost_at.elapsed()
    );
    let (token, reservation) = &scene.payers[0];
    assert!(!created_or_unavailable(app.pay(token, *reservation, "p-0").await, "payment").await);
}

/// What the lost transactions did is gone whole: only the set-up is there.
async fn assert_nothing_written(db: &str) {
    assert_consistent(db).await;
    for (what, sql, want) in [
        ("payments", "SELECT COUNT(*) FROM payments", 0),
        (
            "claimed payment keys",
            "SELECT COUNT(*) FROM idempotency_keys WHERE scope = 'payment'",
            0,
        ),
        (
            "charges",
            "SELECT COUNT(*) FROM point_ledger WHERE kind = 'CHARGE'",
            PAYERS as i64,
        ),
        ("holds", "SELECT COUNT(*) FROM reservations", PAYERS as i64),
    ] {
        assert_eq!(scalar(db, sql).await, want, "{what}");
    }
}

/// MySQL is back: the app serves again by itself, and each payment that got a 503,
/// retried with its key, pays once.
async fn assert_serves_again(app: &TestApp, db: &str, scene: &Scene) {
    let (token, reservation) = &scene.payers[0];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = app.pay(token, *reservation, "p-0").await;
        if created_or_unavailable(res, "payment after MySQL came back").await {
            break;
        }
        assert!(Instant::now() < deadline, "the app never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, (token, reservation)) in scene.payers.iter().enumerate().skip(1) {
        let res = app.pay(token, *reservation, &format!("p-{i}")).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let res = app
        .hold(&scene.holders[0], scene.schedule, FIRST_HOLDER_SEAT)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_consistent(db).await;
    assert_eq!(
        scalar(db, "SELECT COUNT(*) FROM payments").await,
        PAYERS as i64
    );
    assert_eq!(app.balance(token).await, 4_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_lost_while_payments_wait_on_a_row_lock_answers_503_and_writes_nothing_half() {
    use diesel_async::RunQueryDsl as _;

    let proxy = MysqlProxy::start().await;
    let app = app_at(|url| proxy.url_for(url)).await;
    let db = direct(&app, &mysql_server());
    let scene = set_up(&app).await;
    let (mut blocker, calls) = calls_blocked_in_mysql(&app, &db, &scene).await;

    // MariaDB "killed": every connection of the app closes under its call.
    proxy.cut();
    assert_all_unavailable(&app, &scene, calls).await;

    // The real MariaDB ends the dead sessions, rolling them back, once the locks go.
    diesel::sql_query("COMMIT")
        .execute(&mut blocker)
        .await
        .unwrap();
    drop(blocker);
    let database = db.rsplit_once('/').unwrap().1;
    until_scalar(
        &db,
        &format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE DB = '{database}' AND ID <> CONNECTION_ID()"
        ),
        0,
        Duration::from_secs(10),
    )
    .await;
    assert_nothing_written(&db).await;

    proxy.restore();
    assert_serves_again(&app, &db, &scene).await;
}

/// A MariaDB of the test's own (a data directory in /tmp, its own port), so killing
/// it disturbs no other test.
struct OwnMariaDb {
    dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnMariaDb {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("boxoffice-mariadb-{}", uuid::Uuid::now_v7()));
        let installed = tokio::process::Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .output()
            .await
            .expect("mariadb-install-db is installed");
        assert!(
            installed.status.success(),
            "{}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let mut own = Self {
            dir,
            port: crate::broker::free_port(),
            child: None,
        };
        own.resume().await;
        own
    }

    /// Starts `mariadbd` on the data directory (recovering it after a kill) and waits
    /// until it answers.
    async fn resume(&mut self) {
        let child = std::process::Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while AsyncMysqlConnection::establish(&format!("{}/", self.server()))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "mariadbd did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn server(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no flushing; InnoDB recovers at the next start.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_killed_while_payments_wait_on_a_row_lock_answers_503_and_writes_nothing_half() {
    let mut mariadb = OwnMariaDb::start().await;
    let server = mariadb.server();
    let app = app_at(|url| url.replacen(&mysql_server(), &server, 1)).await;
    let db = direct(&app, &server);
    let scene = set_up(&app).await;
    let (blocker, calls) = calls_blocked_in_mysql(&app, &db, &scene).await;

    mariadb.kill();
    assert_all_unavailable(&app, &scene, calls).await;
    drop(blocker);

    mariadb.resume().await;
    assert_nothing_written(&db).await;
    assert_serves_again(&app, &db, &scene).await;
}
