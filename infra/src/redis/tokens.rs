//! The token store: which user and concert a bearer token stands for, and whether
//! it may book. One token per (user, concert) at a time; joining again returns it.
//!
//! The waiting room builds on this store; until it admits people in turn, a new
//! token is ACTIVE at once.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::token::Grant;
use domain::{ConcertId, QueueToken, TokenState, UserId};
use rand::Rng as _;
use redis::Script;

use super::{Keys, RedisPool, RedisResult};

/// An expired token is remembered this long, so its holder is told "expired"
/// rather than "never issued".
const EXPIRED_RETENTION: Duration = Duration::from_secs(24 * 3600);

// KEYS: the user's token pointer, the candidate token's record.
// ARGV: candidate, user, concert, active-until (ms), now (ms), retention (ms),
//       the token-record key prefix.
static ISSUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local current = redis.call('GET', KEYS[1])
          if current then
            local f = redis.call('HMGET', ARGV[7] .. '{' .. current .. '}', 'state', 'active_until')
            if f[1] == 'ACTIVE' and tonumber(f[2]) > tonumber(ARGV[5]) then
              return {current, f[2], 0}
            end
          end
          redis.call('HSET', KEYS[2], 'user', ARGV[2], 'concert', ARGV[3],
                     'state', 'ACTIVE', 'active_until', ARGV[4])
          local keep = tonumber(ARGV[4]) - tonumber(ARGV[5]) + tonumber(ARGV[6])
          redis.call('PEXPIRE', KEYS[2], keep)
          redis.call('SET', KEYS[1], ARGV[1], 'PX', keep)
          return {ARGV[1], ARGV[4], 1}",
    )
});

// KEYS: the token's record, its user's pointer. ARGV: the token.
static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 then
            redis.call('HSET', KEYS[1], 'state', 'EXPIRED')
          end
          if redis.call('GET', KEYS[2]) == ARGV[1] then
            redis.call('DEL', KEYS[2])
          end
          return 1",
    )
});

/// A token handed out by [`issue`].
#[derive(Debug)]
pub struct Issued {
    pub token: QueueToken,
    pub active_until: DateTime<Utc>,
    /// `false` when the user already had a live token for this concert.
    pub created: bool,
}

pub async fn issue(
    pool: &RedisPool,
    keys: &Keys,
    user: &UserId,
    concert: ConcertId,
    active_for: Duration,
    now: DateTime<Utc>,
) -> RedisResult<Issued> {
    let candidate = QueueToken::from_random_bytes(rand::rng().random());
    let active_until = now + active_for;
    let mut conn = pool.get().await?;
    let (token, until_ms, created): (String, i64, i64) = ISSUE
        .key(keys.user_token(concert, user))
        .key(keys.token(&candidate))
        .arg(candidate.as_str())
        .arg(user.as_str())
        .arg(concert.0)
        .arg(active_until.timestamp_millis())
        .arg(now.timestamp_millis())
        .arg(u64::try_from(EXPIRED_RETENTION.as_millis()).unwrap_or(u64::MAX))
        .arg(keys.token_prefix())
        .invoke_async(&mut *conn)
        .await?;
    let token = QueueToken::parse(&token).ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Parse, "malformed stored token"))
    })?;
    Ok(Issued {
        token,
        active_until: DateTime::from_timestamp_millis(until_ms).unwrap_or(active_until),
        created: created == 1,
    })
}

/// What `token` grants at `now`; `None` if it was never issued (or is long gone).
pub async fn resolve(
    pool: &RedisPool,
    keys: &Keys,
    token: &QueueToken,
    now: DateTime<Utc>,
) -> RedisResult<Option<Grant>> {
    let mut conn = pool.get().await?;
    let (user, concert, state, until): (Option<String>, Option<u64>, Option<String>, Option<i64>) =
        redis::cmd("HMGET")
            .arg(keys.token(token))
            .arg(&["user", "concert", "state", "active_until"])
            .query_async(&mut *conn)
            .await?;
    let (Some(user), Some(concert), Some(state), Some(until)) = (user, concert, state, until)
    else {
        return Ok(None);
    };
    let Ok(user_id) = UserId::parse(&user) else {
        return Ok(None);
    };
    let active_until = DateTime::from_timestamp_millis(until);
    let state = match state.as_str() {
        "ACTIVE" if active_until.is_some_and(|t| t > now) => TokenState::Active,
        "WAITING" => TokenState::Waiting,
        _ => TokenState::Expired,
    };
    Ok(Some(Grant {
        user_id,
        concert_id: ConcertId(concert),
        state,
        position: None,
        active_until,
    }))
}

/// Ends a token: after a payment, or when its user leaves. Joining again issues a
/// new one.
pub async fn end(
    pool: &RedisPool,
    keys: &Keys,
    token: &QueueToken,
    grant: &Grant,
) -> RedisResult<()> {
    let mut conn = pool.get().await?;
    END.key(keys.token(token))
        .key(keys.user_token(grant.concert_id, &grant.user_id))
        .arg(token.as_str())
        .invoke_async::<i64>(&mut *conn)
        .await?;
    Ok(())
}
