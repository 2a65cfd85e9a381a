//! The waiting room: joining, resolving tokens, leaving, and the admission ticks.

use std::time::Duration;

use domain::queue::AdmissionPolicy;
use domain::token::Grant;
use domain::{ConcertId, JoinError, QueueToken, SaleState, TokenError, UserId};

use super::Services;
use super::sale::{self, FanView, Sale};
use crate::metrics::Outcome as _;
use crate::redis::queue::{self, Joined, LineEnd, QueueEvent, Tick};

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
    let sale = sale::current(svc, concert)
        .await?
        .ok_or(JoinError::ConcertNotFound)?;
    match sale.fan_view(crate::now()) {
        FanView::SoldOut => return Err(JoinError::SoldOut),
        FanView::State(SaleState::Closed) => return Err(JoinError::SaleClosed),
        FanView::State(_) => {}
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
        &sale::policy(svc, &sale.settings),
        sale.opens_later(),
    )
    .await
    .map_err(unavailable)
}

/// The admission policy of `concert`'s sale (the server's defaults if it is gone).
pub async fn policy(svc: &Services, concert: ConcertId) -> anyhow::Result<AdmissionPolicy> {
    Ok(match sale::current(svc, concert).await? {
        Some(sale) => sale::policy(svc, &sale.settings),
        None => svc.settings.admission_policy(),
    })
}

/// Who a bearer token belongs to and where it stands. Malformed tokens are refused
/// without asking Redis.
pub async fn authenticate(svc: &Services, raw: &str) -> Result<(QueueToken, Grant), TokenError> {
    let token = QueueToken::parse(raw).ok_or(TokenError::Invalid)?;
    let policy = policy(svc, token.concert())
        .await
        .map_err(TokenError::Unavailable)?;
    let grant = queue::resolve(&svc.redis, &svc.keys, &token, &policy)
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
        active_for_ms: None,
        ended: vec![token.secret().to_owned()],
        moved: grant.state == domain::TokenState::Waiting,
        line_ended: None,
    };
    if let Err(e) = queue::publish(&svc.redis, &svc.keys, &event).await {
        tracing::warn!(error = %e, "could not announce an ended token");
    }
    Ok(())
}

/// One admission tick for every concert with a waiting room; announces what moved.
/// Each concert's tick stands alone: one that fails is logged and counted, and the
/// others still tick.
pub async fn tick_all(svc: &Services) -> anyhow::Result<()> {
    let mut concerts = queue::registered(&svc.redis, &svc.keys).await?;
    concerts.extend(svc.known_queues());
    concerts.sort_unstable();
    concerts.dedup();
    if let Err(e) = sale::refresh(svc, &concerts).await {
        // The copies in memory stay as they were: a MySQL outage neither opens,
        // pauses nor closes anything it did not already.
        tracing::warn!(
            error = format!("{e:#}"),
            "could not reread the sales; ticking as before"
        );
    }
    let sales = sale::known(svc);
    let mut failed = None;
    for concert in concerts {
        let Some(sale) = sales.get(&concert) else {
            continue;
        };
        if let Err(e) = tick_one(svc, concert, sale).await {
            tracing::warn!(concert = %concert, error = format!("{e:#}"), "admission tick failed");
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn tick_one(svc: &Services, concert: ConcertId, sale: &Sale) -> anyhow::Result<()> {
    let policy = sale::policy(svc, &sale.settings);
    let tick = queue::tick(&svc.redis, &svc.keys, concert, &policy, sale.line_mode()).await?;
    observe(svc, concert, &tick, &policy, sale);
    if tick.abandoned > 0 {
        tracing::info!(concert = %concert, abandoned = tick.abandoned, "waiters left the line");
    }
    let line_ended = (tick.sent_away > 0).then_some(if sale.sold_out {
        LineEnd::SoldOut
    } else {
        LineEnd::Closed
    });
    let opened = tick.opened && sale.settings.state == SaleState::Scheduled;
    if !tick.admitted.is_empty() || tick.abandoned > 0 || tick.opened_now || line_ended.is_some() {
        let event = QueueEvent {
            concert,
            active_until: tick.active_until.map(|t| t.timestamp_millis()),
            active_for_ms: tick
                .active_until
                .map(|_| u64::try_from(policy.active_for.as_millis()).unwrap_or(u64::MAX)),
            admitted: tick.admitted,
            ended: Vec::new(),
            moved: true,
            line_ended,
        };
        queue::publish(&svc.redis, &svc.keys, &event).await?;
    }
    // Redis opened the line; MySQL records it (and its event) once, after the fans
    // have heard: a MySQL outage delays the record, not the opening.
    if opened {
        sale::record_opening(svc, concert, crate::now()).await?;
    }
    Ok(())
}

fn observe(svc: &Services, concert: ConcertId, tick: &Tick, policy: &AdmissionPolicy, sale: &Sale) {
    let m = &svc.metrics;
    let label = concert.to_string();
    let label = [label.as_str()];
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    m.queue_waiting
        .with_label_values(&label)
        .set(gauge(tick.waiting.saturating_sub(tick.prequeued())));
    m.queue_prequeued
        .with_label_values(&label)
        .set(gauge(tick.prequeued()));
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
    let state = sale.settings.state_at(crate::now());
    for each in SaleState::ALL {
        let name = each.as_str().to_lowercase();
        m.sale_state
            .with_label_values(&[label[0], name.as_str()])
            .set(i64::from(each == state));
    }
    m.sale_sold_out
        .with_label_values(&label)
        .set(i64::from(sale.sold_out));
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
    })
    .await;
}
