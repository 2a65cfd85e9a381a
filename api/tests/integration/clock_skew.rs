//! An instance whose clock is off Redis's (issue 19). The waiting room keeps time by
//! Redis's clock alone, so such an instance keeps its connected waiters in line and
//! lets its absent ones go after the grace period, like any other. Each test sets the
//! app clock of its own process (`infra::skew_clock`); Redis's clock stays true.

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use domain::ConcertId;
use infra::service::waiting_room::{self, Standing};
use infra::testing::redis;

use crate::helpers::TestApp;
use crate::waiting_room::{Socket, connect, next_message};

/// Far beyond the grace period: a waiter marked seen on this instance's clock would be
/// dropped at once (behind), or kept for a minute after leaving (ahead).
fn skew() -> TimeDelta {
    TimeDelta::seconds(60)
}

const GRACE: Duration = Duration::from_secs(1);

/// Nobody is admitted (only absence moves the line) and the test runs the ticks, each
/// of which sweeps out the waiters not seen within the grace period.
async fn app() -> TestApp {
    TestApp::spawn_with(|s| {
        s.queue_capacity = 0;
        s.queue_grace_seconds = GRACE.as_secs();
        s.queue_admission = false;
    })
    .await
}

/// Redis's clock (ms): the one the sweeps read.
async fn redis_now(app: &TestApp) -> i64 {
    let mut conn = infra::testing::conn(&app.svc.redis).await.unwrap();
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    seconds * 1_000 + micros / 1_000
}

/// Where `tokens` stand, without counting as seeing them (as a poll would).
async fn standings(app: &TestApp, concert: u64, tokens: &[&str]) -> Vec<Standing> {
    let secrets: Vec<String> = tokens
        .iter()
        .map(|t| t.split_once('.').expect("concert.secret").1.to_owned())
        .collect();
    waiting_room::standings(
        &app.svc,
        ConcertId(concert),
        &secrets,
        &app.svc.settings.admission_policy(),
    )
    .await
    .unwrap()
}

/// One admission tick, and where `tokens` stand after it.
async fn sweep(app: &TestApp, concert: u64, tokens: &[&str]) -> Vec<Standing> {
    infra::service::queue::tick_all(&app.svc).await.unwrap();
    standings(app, concert, tokens).await
}

/// The gap between two sweeps of a polling loop (a poll interval, not a wait for
/// something to happen: every loop below ends on what Redis says, or its deadline).
const SWEEP_GAP: Duration = Duration::from_millis(100);

fn is_waiting(standing: &Standing) -> bool {
    matches!(standing, Standing::Waiting { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_waiter_keeps_its_place_on_an_instance_whose_clock_runs_behind() {
    infra::skew_clock(-skew());
    let app = app().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let absent = app.waiting_token(concert, "walks-away").await;
    let connected = app.waiting_token(concert, "stays-connected").await;
    let mut socket = connect(&app, &connected).await;
    assert_eq!(next_message(&mut socket).await.unwrap()["position"], 2);

    // Sweep until the absent waiter is gone and four grace periods have passed by
    // Redis's clock: all along the instance marks its connected waiter seen.
    let grace = i64::try_from(GRACE.as_millis()).unwrap();
    let since = redis_now(&app).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sweeps = 0;
    loop {
        let found = sweep(&app, concert, &[&absent, &connected]).await;
        sweeps += 1;
        let elapsed = redis_now(&app).await - since;
        assert!(
            is_waiting(&found[1]),
            "the connected waiter was dropped at sweep {sweeps}, {elapsed} ms in: {:?}",
            found[1]
        );
        if found[0] == Standing::Expired && elapsed > 4 * grace {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the absent waiter was not dropped: {:?}",
            found[0]
        );
        tokio::time::sleep(SWEEP_GAP).await;
    }
    assert!(sweeps >= 5, "only {sweeps} sweeps");
    let moved = next_message(&mut socket).await.unwrap();
    assert_eq!(
        (moved["type"].as_str(), moved["position"].as_u64()),
        (Some("position"), Some(1)),
        "{moved}"
    );
    assert_eq!(app.standing(&connected).await["position"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_who_leaves_loses_the_place_on_an_instance_whose_clock_runs_ahead() {
    infra::skew_clock(skew());
    let app = app().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let token = app.waiting_token(concert, "leaves").await;
    let mut socket = connect(&app, &token).await;
    assert_eq!(next_message(&mut socket).await.unwrap()["position"], 1);

    // Connected through three grace periods (by Redis's clock): kept, and marked seen
    // by the instance many times over.
    let grace = i64::try_from(GRACE.as_millis()).unwrap();
    let since = redis_now(&app).await;
    while redis_now(&app).await - since <= 3 * grace {
        assert!(is_waiting(&sweep(&app, concert, &[&token]).await[0]));
        tokio::time::sleep(SWEEP_GAP).await;
    }

    // Gone: dropped one grace period after the instance last saw it (it checks its
    // sockets every quarter of one), not a minute later, when its clock says so.
    socket.close(None).await.unwrap();
    let left = Instant::now();
    loop {
        let found = sweep(&app, concert, &[&token]).await;
        if found[0] == Standing::Expired {
            break;
        }
        assert!(
            left.elapsed() < GRACE * 5,
            "still in line {:?} after leaving: {:?}",
            left.elapsed(),
            found[0]
        );
        tokio::time::sleep(SWEEP_GAP).await;
    }
    assert_eq!(app.standing(&token).await["state"], "EXPIRED");
}

/// The close frame's code and reason, skipping anything before it.
async fn close_frame(socket: &mut Socket) -> (u16, String) {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed in time");
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A fan admitted on an instance whose clock runs ahead keeps the whole turn: the
/// socket times the turn by what Redis says is left of it, not by this clock (which
/// would say it ran out a minute before it began).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_fan_keeps_the_turn_on_an_instance_whose_clock_runs_ahead() {
    infra::skew_clock(skew());
    let app = TestApp::spawn_with(|s| {
        s.queue_admission = false;
        s.token_active_seconds = 30;
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let token = app.waiting_token(concert, "admitted-fan").await;
    infra::service::queue::tick_all(&app.svc).await.unwrap();
    app.until_state(&token, "ACTIVE").await;
    let mut socket = connect(&app, &token).await;
    assert_eq!(next_message(&mut socket).await.unwrap()["type"], "admitted");
    // 30 s are left by Redis's clock. Leaving ends the turn now: the socket must say
    // it ended, not that it had already run out.
    let left = app
        .http
        .delete(app.url("/v1/queue/tokens/current"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), reqwest::StatusCode::NO_CONTENT);
    assert_eq!(
        close_frame(&mut socket).await,
        (4410, "token ended".to_owned())
    );
}
