//! Joining a concert's waiting room, and resolving the bearer token it hands out.

use chrono::{DateTime, Utc};
use domain::token::Grant;
use domain::{ConcertId, JoinError, QueueToken, TokenError, UserId};

use super::Services;
use crate::db::catalog;
use crate::redis::tokens::{self, Issued};

pub async fn join(
    svc: &Services,
    user: &UserId,
    concert: ConcertId,
    now: DateTime<Utc>,
) -> Result<Issued, JoinError> {
    if !concert_exists(svc, concert).await? {
        return Err(JoinError::ConcertNotFound);
    }
    tokens::issue(
        &svc.redis,
        &svc.keys,
        user,
        concert,
        svc.settings.token_active_for(),
        now,
    )
    .await
    .map_err(|e| JoinError::Unavailable(e.into()))
}

/// Who a bearer token belongs to and what it may do. Malformed tokens are refused
/// without asking Redis.
pub async fn authenticate(
    svc: &Services,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<(QueueToken, Grant), TokenError> {
    let token = QueueToken::parse(raw).ok_or(TokenError::Invalid)?;
    let grant = tokens::resolve(&svc.redis, &svc.keys, &token, now)
        .await
        .map_err(|e| TokenError::Unavailable(e.into()))?
        .ok_or(TokenError::Invalid)?;
    Ok((token, grant))
}

pub async fn leave(svc: &Services, token: &QueueToken, grant: &Grant) -> Result<(), TokenError> {
    tokens::end(&svc.redis, &svc.keys, token, grant)
        .await
        .map_err(|e| TokenError::Unavailable(e.into()))
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
