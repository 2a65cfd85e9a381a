//! The waiting room: joining, resolving tokens, leaving, and the admission ticks.

use std::time::Duration;

use domain::queue::AdmissionPolicy;
use domain::token::Grant;
use domain::{ConcertId, JoinError, QueueToken, TokenError, UserId};

use super::Services;
use crate::db::catalog;
use crate::metrics::Outcome as _;
use crate::redis::queue::{self, Joined, QueueEvent, Tick};

/// What a fan shows at the door: the login service's token, and/or (development
/// mode) the user id they claim.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub id_token: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

/// Establishes who the fan is, then gives them their place in the concert's line.
pub async fn join(
    svc: &Services,
    credentials: Credentials<'_>,
    concert: ConcertId,
) -> Result<(UserId, Joined), JoinError> {
    let joined: Result<_, JoinError> = async {
        let user = svc
            .identity
            .fan(credentials.id_token, credentials.user_id)
            .await?;
        let joined = enter(svc, &user, concert).await?;
        Ok((user, joined))
    }
    .await;
    let result = match &joined {
        Ok((_, j)) if j.created => "created",
        Ok(_) => "existing",
        Err(e) => e.outcome(),
    };
    svc.metrics.queue_joins.with_label_values(&[result]).inc();
    joined
}

async fn enter(svc: &Services, user: &UserId, concert: ConcertId) -> Result<Joined, JoinError> {
    if !concert_exists(svc, concert).await? {
        return Err(JoinError::ConcertNotFound);
    }
    let unavailable = |e: crate::redis::RedisCallError| JoinError::Unavailable(e.into());
    if svc.remember_queue(concert) {
        queue::register(&svc.redis, &svc.keys, concert)
            .await
            .map_err(unavailable)?;
    }
    queue::join(
        &svc.redis,
        &svc.keys,
        user,
        concert,
        &svc.settings.admission_policy(),
    )
    .await
    .map_err(unavailable)
}

/// Who a bearer token belongs to and where it stands. Malformed tokens are refused
/// without asking Redis.
pub async fn authenticate(svc: &Services, raw: &str) -> Result<(QueueToken, Grant), TokenError> {
    let token = QueueToken::parse(raw).ok_or(TokenError::Invalid)?;
    let grant = queue::resolve(
        &svc.redis,
        &svc.keys,
        &token,
        &svc.settings.admission_policy(),
    )
    .await
    .map_err(|e| TokenError::Unavailable(e.into()))?
    .ok_or(TokenError::Invalid)?;
    Ok((token, grant))
}

/// Ends a token (its user left, or paid) and tells every instance.
pub async fn end(svc: &Services, token: &QueueToken, grant: &Grant) -> Result<(), TokenError> {
    queue::end(&svc.redis, &svc.keys, token, &grant.user_id)
        .await
        .map_err(|e| TokenError::Unavailable(e.into()))?;
    let event = QueueEvent {
        concert: token.concert(),
        admitted: Vec::new(),
        active_until: None,
        ended: vec![token.secret().to_owned()],
        moved: grant.state == domain::TokenState::Waiting,
    };
    if let Err(e) = queue::publish(&svc.redis, &svc.keys, &event).await {
        tracing::warn!(error = %e, "could not announce an ended token");
    }
    Ok(())
}

/// One admission tick for every concert with a waiting room; announces what moved.
pub async fn tick_all(svc: &Services) -> anyhow::Result<()> {
    let mut concerts = queue::registered(&svc.redis, &svc.keys).await?;
    concerts.extend(svc.known_queues());
    concerts.sort_unstable();
    concerts.dedup();
    let policy = svc.settings.admission_policy();
    for concert in concerts {
        let tick = queue::tick(&svc.redis, &svc.keys, concert, &policy).await?;
        observe(svc, concert, &tick, &policy);
        if tick.admitted.is_empty() && tick.abandoned == 0 {
            continue;
        }
        if tick.abandoned > 0 {
            tracing::info!(concert = %concert, abandoned = tick.abandoned, "waiters left the line");
        }
        let event = QueueEvent {
            concert,
            active_until: tick.active_until.map(|t| t.timestamp_millis()),
            admitted: tick.admitted,
            ended: Vec::new(),
            moved: true,
        };
        queue::publish(&svc.redis, &svc.keys, &event).await?;
    }
    Ok(())
}

fn observe(svc: &Services, concert: ConcertId, tick: &Tick, policy: &AdmissionPolicy) {
    let m = &svc.metrics;
    let label = concert.to_string();
    let label = [label.as_str()];
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    m.queue_waiting
        .with_label_values(&label)
        .set(gauge(tick.waiting));
    m.queue_active
        .with_label_values(&label)
        .set(gauge(tick.active));
    m.queue_capacity
        .with_label_values(&label)
        .set(gauge(policy.capacity));
    m.queue_admissions
        .with_label_values(&label)
        .inc_by(tick.admitted.len() as u64);
    m.queue_abandoned
        .with_label_values(&label)
        .inc_by(tick.abandoned);
    for waited in &tick.waited {
        m.queue_wait.observe(waited.as_secs_f64());
    }
}

/// Ticks every `queue_tick_ms` until `shutdown` resolves.
pub async fn run_admission(svc: Services, shutdown: impl Future<Output = ()>) {
    let period = Duration::from_millis(svc.settings.queue_tick_ms.max(5));
    super::every(period, shutdown, || async {
        let ticked = tick_all(&svc).await;
        let result = if ticked.is_ok() { "ok" } else { "error" };
        svc.metrics.queue_ticks.with_label_values(&[result]).inc();
        if let Err(e) = ticked {
            tracing::warn!(error = format!("{e:#}"), "admission tick failed");
        }
    })
    .await;
}

/// Concerts are never deleted, so a concert seen once is remembered.
async fn concert_exists(svc: &Services, concert: ConcertId) -> anyhow::Result<bool> {
    if svc
        .concerts
        .read()
        .is_ok_and(|known| known.contains(&concert))
    {
        return Ok(true);
    }
    let mut conn = svc.db().await?;
    let exists = catalog::concert(&mut conn, concert).await?.is_some();
    if exists && let Ok(mut known) = svc.concerts.write() {
        known.insert(concert);
    }
    Ok(exists)
}
