//! A concert's sale as this instance runs it (the sales *projection* is
//! `service::sales`). MySQL holds the settings; each instance keeps a copy that
//! every admission tick refreshes in one query, so an operator's change reaches
//! every instance within one tick, and a join reads no MySQL at all. Whether a
//! concert is sold out is checked at most once a second per concert, and on the
//! next tick after this instance sold a seat of it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::queue::{AdmissionPolicy, eta_seconds};
use domain::sale::{SaleChangeError, SaleChanges};
use domain::{
    AdminError, ConcertId, DomainEvent, LookupError, SaleAction, SaleSettings, SaleState,
};

use super::{Abort, Services};
use crate::db::{self, outbox, sale_settings};
use crate::redis::queue::{self, LineMode, LineReport};

/// How often each instance asks MySQL whether a concert is sold out.
const SOLD_OUT_EVERY: Duration = Duration::from_secs(1);

/// A concert's sale as this instance last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sale {
    pub settings: SaleSettings,
    pub sold_out: bool,
}

/// A sale as fans see it: its state, unless every seat is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanView {
    State(SaleState),
    SoldOut,
}

impl Sale {
    pub fn fan_view(&self, now: DateTime<Utc>) -> FanView {
        match self.settings.state_at(now) {
            SaleState::Closed => FanView::State(SaleState::Closed),
            _ if self.sold_out => FanView::SoldOut,
            state => FanView::State(state),
        }
    }

    /// What the admission tick may do with the line.
    pub fn line_mode(&self) -> LineMode {
        if self.sold_out {
            return LineMode::Ended;
        }
        match (self.settings.state, self.settings.opens_at) {
            (SaleState::Scheduled, Some(opens_at)) => LineMode::Scheduled { opens_at },
            (SaleState::Scheduled | SaleState::Open, _) => LineMode::Open,
            (SaleState::Paused, _) => LineMode::Paused,
            (SaleState::Closed, _) => LineMode::Ended,
        }
    }

    /// A fan who joins now waits in the pre-queue (unless the line has opened).
    pub fn opens_later(&self) -> bool {
        self.settings.state == SaleState::Scheduled
    }
}

/// The admission policy of a sale: its own rate and capacity, else the server's.
pub fn policy(svc: &Services, settings: &SaleSettings) -> AdmissionPolicy {
    let mut policy = svc.settings.admission_policy();
    if let Some(rate) = settings.admission_rate {
        policy.rate_per_second = rate;
    }
    if let Some(capacity) = settings.active_capacity {
        policy.capacity = capacity;
    }
    policy
}

/// `concert`'s sale, from this instance's copy or else from MySQL; `None` if the
/// concert does not exist.
pub async fn current(svc: &Services, concert: ConcertId) -> anyhow::Result<Option<Sale>> {
    if let Some(sale) = svc.sales.read().ok().and_then(|s| s.get(&concert).copied()) {
        return Ok(Some(sale));
    }
    let mut conn = svc.db().await?;
    let Some(settings) = sale_settings::load(&mut conn, &[concert])
        .await
        .map_err(db::classify)?
        .remove(&concert)
    else {
        return Ok(None);
    };
    let sold_out = settings.state != SaleState::Scheduled
        && sale_settings::sold_out(&mut conn, concert)
            .await
            .map_err(db::failure)?;
    let sale = Sale { settings, sold_out };
    remember(svc, concert, sale, Some(Instant::now()));
    Ok(Some(sale))
}

fn remember(svc: &Services, concert: ConcertId, sale: Sale, sold_out_checked: Option<Instant>) {
    if let Ok(mut sales) = svc.sales.write() {
        sales.insert(concert, sale);
    }
    if let Some(at) = sold_out_checked
        && let Ok(mut checked) = svc.sold_out_checked.lock()
    {
        checked.insert(concert, at);
    }
}

/// A seat of `concert` was just sold here: look again at the next tick whether
/// any is left, rather than within the second.
pub fn seat_sold(svc: &Services, concert: ConcertId) {
    if let Ok(mut checked) = svc.sold_out_checked.lock() {
        checked.remove(&concert);
    }
}

/// Another instance found `concert` sold out (and sent its line home): believe it
/// now rather than at this instance's next check, so joins here are refused at once.
pub fn sold_out_heard(svc: &Services, concert: ConcertId) {
    if let Ok(mut sales) = svc.sales.write()
        && let Some(sale) = sales.get_mut(&concert)
    {
        sale.sold_out = true;
    }
}

/// Rereads the settings of `concerts` (one query) and, where due, whether they are
/// sold out. On failure the copies in memory stay as they were.
pub(crate) async fn refresh(svc: &Services, concerts: &[ConcertId]) -> anyhow::Result<()> {
    if concerts.is_empty() {
        // An instance with no line to tick asks MySQL nothing.
        return Ok(());
    }
    let mut conn = svc.db().await?;
    let settings = sale_settings::load(&mut conn, concerts)
        .await
        .map_err(db::classify)?;
    let now = Instant::now();
    for (concert, settings) in settings {
        let known = svc.sales.read().ok().and_then(|s| s.get(&concert).copied());
        let due = svc.sold_out_checked.lock().map_or(true, |checked| {
            checked
                .get(&concert)
                .is_none_or(|at| now.duration_since(*at) >= SOLD_OUT_EVERY)
        });
        let (sold_out, checked) = if settings.state == SaleState::Scheduled {
            (false, None)
        } else if due {
            let sold_out = sale_settings::sold_out(&mut conn, concert)
                .await
                .map_err(db::failure)?;
            (sold_out, Some(now))
        } else {
            (known.is_some_and(|k| k.sold_out), None)
        };
        remember(svc, concert, Sale { settings, sold_out }, checked);
    }
    Ok(())
}

/// The opening tick opened `concert`'s line: record it (once, whichever instance
/// gets here first) with its event.
pub(crate) async fn record_opening(
    svc: &Services,
    concert: ConcertId,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut conn = svc.db().await?;
    let opened = conn
        .transaction(async |conn| {
            if !sale_settings::record_opening(conn, concert, now).await? {
                return Ok::<_, anyhow::Error>(false);
            }
            let event = DomainEvent::SaleChanged {
                concert_id: concert,
                action: "open".into(),
                state: SaleState::Open,
                changes: Vec::new(),
            };
            outbox::append(conn, vec![event], now).await?;
            Ok(true)
        })
        .await
        .map_err(db::classify)?;
    if opened {
        tracing::info!(concert = %concert, "the sale opened");
        svc.relay.wake();
    }
    Ok(())
}

/// Moves a sale through its state machine (pause, resume, close), with its event.
pub async fn control(
    svc: &Services,
    concert: ConcertId,
    action: SaleAction,
    now: DateTime<Utc>,
) -> Result<Sale, AdminError> {
    write(svc, concert, action.as_str(), now, |settings| {
        let from = settings.state_at(now);
        let to = action.apply(from)?;
        let changes = vec![domain::sale::SettingChange {
            field: "state".into(),
            old: serde_json::json!(from.as_str()),
            new: serde_json::json!(to.as_str()),
        }];
        Ok((
            SaleSettings {
                state: to,
                ..*settings
            },
            changes,
        ))
    })
    .await
}

/// Changes a sale's settings (rate, capacity, seats per fan, the opening).
pub async fn change(
    svc: &Services,
    concert: ConcertId,
    changes: SaleChanges,
    now: DateTime<Utc>,
) -> Result<Sale, AdminError> {
    write(svc, concert, "update", now, |settings| {
        settings.change(changes, now).map_err(|e| match e {
            SaleChangeError::Invalid(e) => AdminError::Invalid(e),
            SaleChangeError::AlreadyOpened(state) => AdminError::AlreadyOpened(state),
        })
    })
    .await
}

/// One operator change: the settings row locked, changed, written with its event
/// in one transaction; then this instance's copy (others follow within a tick).
async fn write(
    svc: &Services,
    concert: ConcertId,
    action: &'static str,
    now: DateTime<Utc>,
    change: impl Fn(
        &SaleSettings,
    ) -> Result<(SaleSettings, Vec<domain::sale::SettingChange>), AdminError>
    + Sync,
) -> Result<Sale, AdminError> {
    let mut conn = svc.db().await?;
    let written = conn
        .transaction(async |conn| {
            let settings = sale_settings::lock(conn, concert)
                .await?
                .ok_or(Abort::Outcome(AdminError::ConcertNotFound))?;
            let (next, changes) = change(&settings).map_err(Abort::Outcome)?;
            if !changes.is_empty() {
                sale_settings::update(conn, concert, &next, now).await?;
                let event = DomainEvent::SaleChanged {
                    concert_id: concert,
                    action: action.to_owned(),
                    state: next.state_at(now),
                    changes,
                };
                outbox::append(conn, vec![event], now).await?;
            }
            Ok(next)
        })
        .await;
    let settings = match written {
        Ok(settings) => settings,
        Err(Abort::Outcome(e)) => return Err(e),
        Err(Abort::Failed(e)) => return Err(AdminError::Internal(e)),
        Err(Abort::Replay) => unreachable!("sale changes take no idempotency key"),
    };
    svc.relay.wake();
    svc.metrics.sale_controls.with_label_values(&[action]).inc();
    let sold_out = svc
        .sales
        .read()
        .ok()
        .and_then(|s| s.get(&concert).map(|k| k.sold_out))
        .unwrap_or(false);
    let sale = Sale { settings, sold_out };
    remember(svc, concert, sale, None);
    tracing::info!(concert = %concert, action, state = settings.state.as_str(), "sale changed");
    Ok(sale)
}

/// The operator's view of a sale: its settings, and its line now.
#[derive(Debug, Clone, Copy)]
pub struct SaleReport {
    pub sale: Sale,
    pub policy: AdmissionPolicy,
    pub line: LineReport,
}

impl SaleReport {
    /// Admissions per second over the last [`domain::queue::RATE_WINDOW`].
    pub fn measured_rate(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "a rate for people to read")]
        let rate = self.line.admitted_in_window as f64 / domain::queue::RATE_WINDOW.as_secs_f64();
        rate
    }

    /// Seconds until everyone waiting now is let in, at the measured rate (else
    /// the configured one); `None` while nobody is let in (paused, or no rate).
    pub fn clear_seconds(&self) -> Option<u64> {
        if self.line.waiting == 0 {
            return Some(0);
        }
        let state = self.sale.settings.state;
        if matches!(state, SaleState::Paused | SaleState::Closed) {
            return None;
        }
        eta_seconds(
            self.line.waiting,
            self.line.admitted_in_window,
            self.policy.rate_per_second,
        )
    }
}

pub async fn report(svc: &Services, concert: ConcertId) -> Result<SaleReport, AdminError> {
    read(svc, concert).await?.ok_or(AdminError::ConcertNotFound)
}

/// The public view: the operator's, less what only operators see.
pub async fn public(svc: &Services, concert: ConcertId) -> Result<SaleReport, LookupError> {
    read(svc, concert)
        .await?
        .ok_or(LookupError::ConcertNotFound)
}

/// `concert`'s sale and its line now; `None` if the concert does not exist.
async fn read(svc: &Services, concert: ConcertId) -> anyhow::Result<Option<SaleReport>> {
    let Some(sale) = current(svc, concert).await? else {
        return Ok(None);
    };
    let line = queue::report(&svc.redis, &svc.keys, concert)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Some(SaleReport {
        sale,
        policy: policy(svc, &sale.settings),
        line,
    }))
}

fn unavailable(e: &crate::redis::RedisCallError) -> anyhow::Error {
    anyhow::Error::new(super::DependencyDown("Redis")).context(e.to_string())
}

/// The sales this instance knows, for the tick loop.
pub(crate) fn known(svc: &Services) -> HashMap<ConcertId, Sale> {
    svc.sales.read().map(|s| s.clone()).unwrap_or_default()
}
