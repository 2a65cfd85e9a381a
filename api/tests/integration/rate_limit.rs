//! The per-client join limit (`api/src/client_limit.rs`): past
//! `join_limit_burst` joins at once and `join_limit_per_second` after, a client's
//! joins are answered `429 RATE_LIMITED` with `Retry-After`; other clients are not
//! touched. Several clients are played from loopback through a trusted proxy's
//! `X-Forwarded-For`; a peer at 127.0.0.2 is an untrusted one.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, until};
use crate::issuer;

const PER_SECOND: u32 = 10;
const BURST: u32 = 20;

/// An app limiting joins to 10 a second, 20 at once, that trusts 127.0.0.1 as a proxy.
async fn limited_app() -> TestApp {
    TestApp::spawn_with(|s| {
        s.join_limit_per_second = PER_SECOND;
        s.join_limit_burst = BURST;
        s.trusted_proxies = "127.0.0.1".into();
    })
    .await
}

/// Other spellings of the join's path do not join around the limit. One join a second
/// and a burst of one: a refill cannot slip in between the drained bucket and the
/// tries, however slow the machine (at 10 a second one did, in CI).
#[tokio::test]
async fn other_spellings_of_the_join_path_do_not_join_around_the_limit() {
    let app = TestApp::spawn_with(|s| {
        s.join_limit_per_second = 1;
        s.join_limit_burst = 1;
        s.trusted_proxies = "127.0.0.1".into();
    })
    .await;
    let (concert, _) = app.create_concert(&[10], 100).await;
    let client = Some("203.0.113.1");
    for path in [
        "/v1/queue/tokens/",
        "//v1/queue/tokens",
        "/v1/queue//tokens",
        "/v1/queue/%74okens",
        "/v1/queue/tokens?again=1",
    ] {
        // Drain the client's bucket: a join that is refused shows it empty.
        let mut drained = false;
        for n in 0..5 {
            let user = format!("drain-{n}");
            let res = join_via(&app, &app.http, "/v1/queue/tokens", concert, &user, client).await;
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                drained = true;
                break;
            }
        }
        assert!(drained, "the bucket never ran dry");
        let res = join_via(&app, &app.http, path, concert, "sneaky", client).await;
        assert!(!res.status().is_success(), "{path}: {}", res.status());
    }
}

/// A join as `user`, sent with these `X-Forwarded-For` values (if any) by `http`.
async fn join_via(
    app: &TestApp,
    http: &reqwest::Client,
    path: &str,
    concert: u64,
    user: &str,
    forwarded: Option<&str>,
) -> Response {
    let token = issuer::default_key().0.token_for(user);
    let mut req = http
        .post(app.url(path))
        .json(&json!({"concertId": concert, "idToken": token}));
    if let Some(forwarded) = forwarded {
        req = req.header("X-Forwarded-For", forwarded);
    }
    req.send().await.expect("request")
}

/// What came back from a batch of joins.
#[derive(Debug, Default)]
struct Tally {
    created: u64,
    limited: u64,
    other: Vec<StatusCode>,
}

impl Tally {
    async fn add(&mut self, res: Response) {
        match res.status() {
            StatusCode::CREATED => self.created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after: u64 = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("Retry-After in whole seconds");
                assert!(retry_after >= 1, "Retry-After {retry_after}");
                assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
                self.limited += 1;
            }
            status => self.other.push(status),
        }
    }
}

/// `n` joins of distinct fans, 64 at a time, each with the `X-Forwarded-For` that
/// `forwarded(i)` gives; returns what came back and how long it took.
async fn burst(
    app: &TestApp,
    http: &reqwest::Client,
    concert: u64,
    fans: &str,
    n: usize,
    forwarded: impl Fn(usize) -> Option<String>,
) -> (Tally, Duration) {
    let started = Instant::now();
    let responses: Vec<Response> = futures::stream::iter(0..n)
        .map(|i| {
            let forwarded = forwarded(i);
            async move {
                let user = format!("{fans}-{i}");
                join_via(
                    app,
                    http,
                    "/v1/queue/tokens",
                    concert,
                    &user,
                    forwarded.as_deref(),
                )
                .await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut tally = Tally::default();
    for res in responses {
        tally.add(res).await;
    }
    (tally, elapsed)
}

/// The most joins one client can get through in `elapsed`: the burst, and the rate.
fn at_most(elapsed: Duration) -> u64 {
    let millis = u64::try_from(elapsed.as_millis()).unwrap();
    u64::from(BURST) + millis * u64::from(PER_SECOND) / 1_000 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_client_is_limited_and_other_clients_are_not() {
    let app = limited_app().await;
    let (concert, _) = app.create_concert(&[10], 100).await;
    let http = &app.http;

    // 1,000 joins from 203.0.113.1 while 203.0.113.2 and the proxy itself (no
    // header: 127.0.0.1 is the client) join 20 each (their whole burst).
    let one = burst(&app, http, concert, "one", 1_000, |_| {
        Some("203.0.113.1".into())
    });
    let two = burst(&app, http, concert, "two", BURST as usize, |_| {
        Some("198.51.100.7, 203.0.113.2".into())
    });
    let direct = burst(&app, http, concert, "direct", BURST as usize, |_| None);
    let ((one, elapsed), (two, _), (direct, _)) = tokio::join!(one, two, direct);

    assert!(one.other.is_empty(), "{:?}", one.other);
    assert_eq!(one.created + one.limited, 1_000);
    assert!(
        one.created >= u64::from(BURST) && one.created <= at_most(elapsed),
        "{} joins passed in {elapsed:?}",
        one.created
    );
    assert_eq!(two.created, u64::from(BURST), "{two:?}");
    assert_eq!(direct.created, u64::from(BURST), "{direct:?}");

    // Every refusal is counted, as a join and as an HTTP answer of the join's route.
    let metrics = &app.svc.metrics;
    assert_eq!(
        metrics
            .queue_joins
            .with_label_values(&["rate_limited"])
            .get(),
        one.limited
    );
    assert_eq!(
        metrics
            .http_requests
            .with_label_values(&["POST", "/v1/queue/tokens", "429"])
            .get(),
        one.limited
    );

    // The limit is on the join alone: the same client still reads and polls.
    assert_eq!(app.get("/v1/concerts", None).await.status(), StatusCode::OK);
    // The bucket refills at the rate: a join of the limited client passes again.
    let mut n = 0;
    until(
        "203.0.113.1 joins again",
        Duration::from_secs(5),
        async || {
            n += 1;
            let user = format!("later-{n}");
            let res = join_via(
                &app,
                http,
                "/v1/queue/tokens",
                concert,
                &user,
                Some("203.0.113.1"),
            )
            .await;
            res.status() == StatusCode::CREATED
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarded_for_gains_nothing() {
    let app = limited_app().await;
    let (concert, _) = app.create_concert(&[10], 100).await;

    // From 127.0.0.2, not a trusted proxy, each join claims another client: the
    // header is ignored and they are all 127.0.0.2.
    let untrusted = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let (forged, elapsed) = burst(&app, &untrusted, concert, "forged", 300, |i| {
        Some(format!("198.51.{}.{}", i / 250, i % 250))
    })
    .await;
    assert!(forged.other.is_empty(), "{:?}", forged.other);
    assert!(
        forged.created <= at_most(elapsed) && forged.limited > 0,
        "{forged:?} in {elapsed:?}"
    );

    // Through the trusted proxy, what the client wrote left of the address the
    // proxy saw is never read: all of these are 203.0.113.50.
    let (prefixed, elapsed) = burst(&app, &app.http, concert, "prefixed", 300, |i| {
        Some(format!("198.51.100.{}, 203.0.113.50", i % 250))
    })
    .await;
    assert!(prefixed.other.is_empty(), "{:?}", prefixed.other);
    assert!(
        prefixed.created <= at_most(elapsed) && prefixed.limited > 0,
        "{prefixed:?} in {elapsed:?}"
    );
    // And a malformed entry there ends the walk at the proxy: 127.0.0.1 itself.
    let (malformed, elapsed) = burst(&app, &app.http, concert, "malformed", 300, |i| {
        Some(format!("198.51.100.{}, unknown", i % 250))
    })
    .await;
    assert!(
        malformed.created <= at_most(elapsed) && malformed.limited > 0,
        "{malformed:?} in {elapsed:?}"
    );

    // An IPv6 client is limited by its /64: other addresses in it are the same client.
    let (six, elapsed) = burst(&app, &app.http, concert, "six", 300, |i| {
        Some(format!("2001:db8:1:2::{i:x}"))
    })
    .await;
    assert!(
        six.created <= at_most(elapsed) && six.limited > 0,
        "{six:?} in {elapsed:?}"
    );
    let (next_net, _) = burst(&app, &app.http, concert, "next-net", BURST as usize, |_| {
        Some("[2001:db8:1:3::1]:443".into())
    })
    .await;
    assert_eq!(next_net.created, u64::from(BURST), "{next_net:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_bad_limit_setting() {
    for (name, value, says) in [
        (
            "BOXOFFICE_TRUSTED_PROXIES",
            "10.0.0.7, 10.0.0.0/33",
            "BOXOFFICE_TRUSTED_PROXIES: `10.0.0.0/33` needs a prefix length from 0 to 32",
        ),
        (
            "BOXOFFICE_TRUSTED_PROXIES",
            "proxy.internal",
            "`proxy.internal` is not an IP address or CIDR range",
        ),
        (
            "BOXOFFICE_TRUSTED_PROXIES",
            "10.1.2.3/16",
            "did you mean 10.1.0.0/16",
        ),
        (
            "BOXOFFICE_JOIN_LIMIT_BURST",
            "0",
            "BOXOFFICE_JOIN_LIMIT_BURST must be at least 1",
        ),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .arg("serve")
            .env("BOXOFFICE_LISTEN", "127.0.0.1:0")
            .env("BOXOFFICE_MIGRATE_ON_START", "false")
            .env("BOXOFFICE_IDENTITY_MODE", "development")
            .env(name, value)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .expect("serve stops at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}={value}: {stderr}");
        assert!(stderr.contains(says), "{name}={value}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_of_zero_turns_the_limit_off() {
    let app = TestApp::spawn_with(|s| {
        s.join_limit_per_second = 0;
        s.join_limit_burst = 0;
        s.trusted_proxies = "127.0.0.1".into();
    })
    .await;
    let (concert, _) = app.create_concert(&[10], 100).await;
    let (tally, _) = burst(&app, &app.http, concert, "free", 200, |_| {
        Some("203.0.113.1".into())
    })
    .await;
    assert_eq!(tally.created, 200, "{tally:?}");
}
