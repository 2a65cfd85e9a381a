//! The waiting room in Redis, per concert: a ticket counter, the waiting line
//! (a sorted set by ticket), when each waiter was last seen, the ACTIVE set (scored
//! by when each token's turn ends) and the recent admissions (for the rate limit
//! and the ETA). Every key of a concert shares one hash tag, so each script below
//! touches one Redis Cluster slot. Every time stored in Redis or compared with one
//! stored there is Redis's own clock (`TIME`, read inside the script that uses it),
//! never this instance's: an instance whose clock runs behind would otherwise drop the
//! connected waiters it marks seen, and one that runs ahead keep absent ones.
//!
//! Tokens are `<concert>.<secret>`; a token's record (`<joined at ms>:<user>`) lives
//! beside its concert's queue. Its state is where it stands: in the ACTIVE set with
//! time left, in the line, or neither (EXPIRED).
//!
//! A sale that opens later has a pre-queue: until the concert's `opened` marker
//! exists, a fan who joins goes into the line with a secret random score in [0, 1)
//! drawn from the app's CSPRNG, and is told no position. Tickets of those who join
//! after the opening start at 1, so at the opening (one tick sets the marker, once,
//! in one script) every pre-queued fan stands ahead of every later one, in a
//! uniformly random order that no fan could see or predict, and nothing has to
//! move: the opening costs the same for a hundred fans as for a hundred thousand.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::queue::{AdmissionPolicy, RATE_WINDOW, eta_seconds};
use domain::token::Grant;
use domain::{ConcertId, QueueToken, TokenState, UserId};
use rand::Rng as _;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::{Keys, RedisPool, RedisResult};

/// A token's record outlives any wait, so its holder hears "expired", not "unknown".
const RECORD_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Redis's clock, in ms, inside a script.
const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

// KEYS: user pointer, seq, waiting, seen, active, admits, the new token's record,
// the opened marker.
// ARGV: new secret, user, retention ms, window ms, 1 if the sale opens later
// (else it is open now), the pre-queue score (a random number in [0, 1)).
static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW}
        local recent = redis.call('ZCOUNT', KEYS[6], now - tonumber(ARGV[4]), '+inf')
        local opened = redis.call('EXISTS', KEYS[8]) == 1
        if not opened and ARGV[5] == '0' then
          redis.call('SET', KEYS[8], now)
          opened = true
        end
        local waiting = opened and 'WAITING' or 'PREQUEUE'
        local current = redis.call('GET', KEYS[1])
        if current then
          local active_until = redis.call('ZSCORE', KEYS[5], current)
          if active_until and tonumber(active_until) > now then
            return {{current, 0, 'ACTIVE', tonumber(active_until), recent, now}}
          end
          local rank = redis.call('ZRANK', KEYS[3], current)
          if rank then
            redis.call('ZADD', KEYS[4], now, current)
            return {{current, 0, waiting, rank, recent, now}}
          end
        end
        local score = ARGV[6]
        if opened then score = redis.call('INCR', KEYS[2]) end
        redis.call('SET', KEYS[7], now .. ':' .. ARGV[2], 'PX', ARGV[3])
        redis.call('ZADD', KEYS[3], score, ARGV[1])
        redis.call('ZADD', KEYS[4], now, ARGV[1])
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
        return {{ARGV[1], 1, waiting, redis.call('ZRANK', KEYS[3], ARGV[1]), recent, now}}"
    ))
});

// KEYS: the token's record, waiting, seen, active, admits, the opened marker.
// ARGV: secret, window ms.
static RESOLVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW}
        local record = redis.call('GET', KEYS[1])
        if not record then return false end
        local user = string.match(record, ':(.*)$')
        local active_until = redis.call('ZSCORE', KEYS[4], ARGV[1])
        if active_until and tonumber(active_until) > now then
          return {{user, 'ACTIVE', tonumber(active_until), 0, now}}
        end
        local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
        if rank then
          redis.call('ZADD', KEYS[3], 'XX', now, ARGV[1])
          if redis.call('EXISTS', KEYS[6]) == 0 then return {{user, 'PREQUEUE', 0, 0, now}} end
          return {{user, 'WAITING', rank, redis.call('ZCOUNT', KEYS[5], now - tonumber(ARGV[2]), '+inf'), now}}
        end
        return {{user, 'EXPIRED', 0, 0, now}}"
    ))
});

// KEYS: waiting, seen, active, the user's pointer. ARGV: secret.
static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('ZREM', KEYS[1], ARGV[1])
          redis.call('ZREM', KEYS[2], ARGV[1])
          redis.call('ZREM', KEYS[3], ARGV[1])
          if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
          return 1",
    )
});

// Marks waiters seen now, by Redis's clock (the one the tick's grace period reads):
// those no longer waiting (not in `seen`) stay out.
// KEYS: seen. ARGV: secrets.
static SEEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW}
        local members = {{'XX'}}
        for i = 1, #ARGV do
          members[#members + 1] = now
          members[#members + 1] = ARGV[i]
        end
        return redis.call('ZADD', KEYS[1], unpack(members))"
    ))
});

// Where waiters stand in line, and the admissions of the last window by Redis's clock
// (for the ETA).
// KEYS: waiting, admits, opened. ARGV: window ms, then the secrets.
// Returns: opened (0/1), admissions in the window, then each secret's rank (false:
// not waiting).
static POSITIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW}
        local found = {{redis.call('EXISTS', KEYS[3]),
                       redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[1]), '+inf')}}
        for i = 2, #ARGV do
          found[#found + 1] = redis.call('ZRANK', KEYS[1], ARGV[i])
        end
        return found"
    ))
});

// Where tokens stand, in any state; unlike RESOLVE, asking does not count as being
// seen. Every time compared is Redis's.
// KEYS: waiting, active, admits, opened, then each secret's record (in ARGV's order).
// ARGV: window ms, then the secrets.
// Returns: opened (0/1), admissions in the window, Redis's now (ms), then per secret: whether its
// record exists (0/1), when its turn ends if it is ACTIVE now (else false), its rank
// in line (false: not waiting).
static STANDINGS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW}
        local found = {{redis.call('EXISTS', KEYS[4]),
                       redis.call('ZCOUNT', KEYS[3], now - tonumber(ARGV[1]), '+inf'), now}}
        for i = 2, #ARGV do
          local active_until = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[i]))
          if active_until and active_until <= now then active_until = nil end
          found[#found + 1] = redis.call('EXISTS', KEYS[3 + i])
          found[#found + 1] = active_until or false
          found[#found + 1] = redis.call('ZRANK', KEYS[1], ARGV[i])
        end
        return found"
    ))
});

// One admission tick. Mirrors `AdmissionPolicy::admissible`, inside Redis so that
// however many instances tick, admissions happen as if one did. The sale's mode
// decides what else it does: a scheduled sale opens once Redis's clock reaches its
// opening (the one run that sets the marker reports it), a paused one admits
// nobody, an ended one (closed, sold out) sends its whole line away.
// KEYS: waiting, seen, active, admits, opened, abandoned.
// ARGV: capacity, rate per second, active ms, grace ms, admits kept ms, max per
// tick, mode (scheduled | open | paused | ended), opening ms (scheduled).
static TICK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW}
        local mode = ARGV[7]
        redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
        local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]), 'LIMIT', 0, 1000)
        if #stale > 0 then
          redis.call('ZREM', KEYS[1], unpack(stale))
          redis.call('ZREM', KEYS[2], unpack(stale))
          redis.call('INCRBY', KEYS[6], #stale)
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[5]))
        local opened = redis.call('EXISTS', KEYS[5]) == 1
        local opened_now = 0
        if not opened and (mode == 'open' or mode == 'paused' or (mode == 'scheduled' and now >= tonumber(ARGV[8]))) then
          redis.call('SET', KEYS[5], now)
          opened = true
          opened_now = 1
        end
        local sent_away = 0
        if mode == 'ended' then
          sent_away = redis.call('ZCARD', KEYS[1])
          redis.call('DEL', KEYS[1], KEYS[2])
        end
        local admitted = {{}}
        local active_until = now + tonumber(ARGV[3])
        if mode == 'open' and opened then
          local last_second = redis.call('ZCOUNT', KEYS[4], '(' .. (now - 1000), '+inf')
          local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[3])
          local n = math.min(free, tonumber(ARGV[2]) - last_second, tonumber(ARGV[6]))
          if n > 0 then
            local popped = redis.call('ZPOPMIN', KEYS[1], n)
            for i = 1, #popped, 2 do
              local secret = popped[i]
              redis.call('ZADD', KEYS[3], active_until, secret)
              redis.call('ZADD', KEYS[4], now, secret)
              redis.call('ZREM', KEYS[2], secret)
              admitted[#admitted + 1] = secret
            end
          end
        end
        return {{admitted, #stale, active_until, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[3]), now,
                 opened and 1 or 0, opened_now, sent_away}}"
    ))
});

/// The keys of one concert's waiting room.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    base: String,
}

impl QueueKeys {
    pub fn new(keys: &Keys, concert: ConcertId) -> Self {
        Self {
            base: format!("{}:q:{{{concert}}}", keys.prefix()),
        }
    }

    fn record(&self, secret: &str) -> String {
        format!("{}:t:{secret}", self.base)
    }

    fn user(&self, user: &UserId) -> String {
        format!("{}:u:{user}", self.base)
    }

    fn part(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }
}

/// A token handed out by [`join`].
#[derive(Debug)]
pub struct Joined {
    pub token: QueueToken,
    pub grant: Grant,
    /// `false` when the user already had a live token for this concert.
    pub created: bool,
}

fn window_ms() -> u64 {
    millis(RATE_WINDOW)
}

/// Admissions are remembered this long: the operator's view counts the last minute.
const ADMITS_KEPT: Duration = Duration::from_secs(60);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What is left of a turn that ends at `until` (ms) when Redis's clock reads `now`.
fn millis_left(until: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(until - now).unwrap_or(0))
}

/// A token's grant from a script's answer: its state, and `value` (its turn's end,
/// or its rank) with Redis's clock when it answered.
fn standing(
    user_id: UserId,
    concert: ConcertId,
    state: &str,
    (value, now): (i64, i64),
    recent: u64,
    policy: &AdmissionPolicy,
) -> Grant {
    let (state, position, active_until) = match state {
        "ACTIVE" => (
            TokenState::Active,
            None,
            DateTime::from_timestamp_millis(value),
        ),
        "WAITING" => (TokenState::Waiting, Some(value.unsigned_abs() + 1), None),
        "PREQUEUE" => (TokenState::Waiting, None, None),
        _ => (TokenState::Expired, None, None),
    };
    Grant {
        user_id,
        concert_id: concert,
        state,
        position,
        eta_seconds: position.and_then(|p| eta_seconds(p, recent, policy.rate_per_second)),
        active_until,
        active_for: (state == TokenState::Active).then(|| millis_left(value, now)),
        prequeued: state == TokenState::Waiting && position.is_none(),
    }
}

/// Joins `user` to `concert`'s line, or returns their live token and place. While
/// the sale `opens_later` and has not opened, a new fan goes into the pre-queue.
pub async fn join(
    pool: &RedisPool,
    keys: &Keys,
    user: &UserId,
    concert: ConcertId,
    policy: &AdmissionPolicy,
    opens_later: bool,
) -> RedisResult<Joined> {
    let q = QueueKeys::new(keys, concert);
    let candidate = QueueToken::new(concert, rand::rng().random());
    // 53 random bits: every double in [0, 1) this can make is distinct and exact.
    #[expect(
        clippy::cast_precision_loss,
        reason = "53-bit integers are exact in an f64"
    )]
    let prequeue_score = (rand::rng().random::<u64>() >> 11) as f64 / (1u64 << 53) as f64;
    let mut conn = super::conn(pool).await?;
    let (secret, created, state, value, recent, now): (String, i64, String, i64, u64, i64) = JOIN
        .key(q.user(user))
        .key(q.part("seq"))
        .key(q.part("waiting"))
        .key(q.part("seen"))
        .key(q.part("active"))
        .key(q.part("admits"))
        .key(q.record(candidate.secret()))
        .key(q.part("opened"))
        .arg(candidate.secret())
        .arg(user.as_str())
        .arg(millis(RECORD_RETENTION))
        .arg(window_ms())
        .arg(u8::from(opens_later))
        .arg(format!("{prequeue_score:.17}"))
        .invoke_async(&mut conn)
        .await?;
    let token = QueueToken::from_parts(concert, &secret).ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Parse, "malformed stored token"))
    })?;
    let grant = standing(user.clone(), concert, &state, (value, now), recent, policy);
    Ok(Joined {
        token,
        grant,
        created: created == 1,
    })
}

/// What `token` grants now; `None` if it was never issued (or is long gone).
/// Asking counts as being seen, so a polling waiter keeps their place.
pub async fn resolve(
    pool: &RedisPool,
    keys: &Keys,
    token: &QueueToken,
    policy: &AdmissionPolicy,
) -> RedisResult<Option<Grant>> {
    let q = QueueKeys::new(keys, token.concert());
    let mut conn = super::conn(pool).await?;
    let found: Option<(String, String, i64, u64, i64)> = RESOLVE
        .key(q.record(token.secret()))
        .key(q.part("waiting"))
        .key(q.part("seen"))
        .key(q.part("active"))
        .key(q.part("admits"))
        .key(q.part("opened"))
        .arg(token.secret())
        .arg(window_ms())
        .invoke_async(&mut conn)
        .await?;
    Ok(found.and_then(|(user, state, value, recent, now)| {
        let user = UserId::parse(&user).ok()?;
        Some(standing(
            user,
            token.concert(),
            &state,
            (value, now),
            recent,
            policy,
        ))
    }))
}

/// Ends a token at once (its user left or paid). Joining again issues a new one.
pub async fn end(
    pool: &RedisPool,
    keys: &Keys,
    token: &QueueToken,
    user: &UserId,
) -> RedisResult<()> {
    let q = QueueKeys::new(keys, token.concert());
    let mut conn = super::conn(pool).await?;
    END.key(q.part("waiting"))
        .key(q.part("seen"))
        .key(q.part("active"))
        .key(q.user(user))
        .arg(token.secret())
        .invoke_async::<i64>(&mut conn)
        .await?;
    Ok(())
}

/// What the sale lets an admission tick do with the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineMode {
    /// Not open yet: the tick opens it once Redis's clock reaches `opens_at`.
    Scheduled {
        opens_at: DateTime<Utc>,
    },
    Open,
    /// Nobody is admitted; the line keeps its order.
    Paused,
    /// Closed or sold out: the line is sent away.
    Ended,
}

/// What one admission tick did, and the line after it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Secrets of the tokens admitted, in ticket order.
    pub admitted: Vec<String>,
    /// How long each admitted token waited, where its record says.
    pub waited: Vec<Duration>,
    /// Waiters dropped for not being seen within the grace period.
    pub abandoned: u64,
    pub active_until: Option<DateTime<Utc>>,
    pub waiting: u64,
    pub active: u64,
    /// The line has opened (now or before): its waiters have places.
    pub opened: bool,
    /// This very tick opened it.
    pub opened_now: bool,
    /// Waiters sent away because the sale ended.
    pub sent_away: u64,
}

impl Tick {
    /// Fans waiting in the pre-queue: the whole line until it opens.
    pub fn prequeued(&self) -> u64 {
        if self.opened { 0 } else { self.waiting }
    }
}

pub async fn tick(
    pool: &RedisPool,
    keys: &Keys,
    concert: ConcertId,
    policy: &AdmissionPolicy,
    mode: LineMode,
) -> RedisResult<Tick> {
    let q = QueueKeys::new(keys, concert);
    let (mode, opens_at) = match mode {
        LineMode::Scheduled { opens_at } => ("scheduled", opens_at.timestamp_millis()),
        LineMode::Open => ("open", 0),
        LineMode::Paused => ("paused", 0),
        LineMode::Ended => ("ended", 0),
    };
    let mut conn = super::conn(pool).await?;
    let (admitted, abandoned, active_until, waiting, active, now, opened, opened_now, sent_away): (
        Vec<String>,
        u64,
        i64,
        u64,
        u64,
        i64,
        u8,
        u8,
        u64,
    ) = TICK
        .key(q.part("waiting"))
        .key(q.part("seen"))
        .key(q.part("active"))
        .key(q.part("admits"))
        .key(q.part("opened"))
        .key(q.part("abandoned"))
        .arg(policy.capacity)
        .arg(policy.rate_per_second)
        .arg(millis(policy.active_for))
        .arg(millis(policy.grace))
        .arg(millis(ADMITS_KEPT))
        .arg(1_000)
        .arg(mode)
        .arg(opens_at)
        .invoke_async(&mut conn)
        .await?;
    let waited = if admitted.is_empty() {
        Vec::new()
    } else {
        let records: Vec<Option<String>> = redis::cmd("MGET")
            .arg(admitted.iter().map(|s| q.record(s)).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        records
            .iter()
            .filter_map(|r| r.as_deref()?.split_once(':')?.0.parse::<i64>().ok())
            .filter_map(|joined| u64::try_from(now - joined).ok())
            .map(Duration::from_millis)
            .collect()
    };
    Ok(Tick {
        admitted,
        waited,
        abandoned,
        active_until: DateTime::from_timestamp_millis(active_until),
        waiting,
        active,
        opened: opened == 1,
        opened_now: opened_now == 1,
        sent_away,
    })
}

/// A concert's line as the operator's and the public status views show it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineReport {
    pub opened: bool,
    /// In line, pre-queue included.
    pub waiting: u64,
    pub active: u64,
    pub admitted_last_minute: u64,
    /// Admitted within the last [`RATE_WINDOW`], the rate estimates use.
    pub admitted_in_window: u64,
    /// Dropped for absence, since the line began.
    pub abandoned: u64,
}

impl LineReport {
    /// Fans waiting in the pre-queue: the whole line until it opens.
    pub fn prequeued(&self) -> u64 {
        if self.opened { 0 } else { self.waiting }
    }
}

/// Counts `concert`'s line, in one pipelined round trip. Read-only.
pub async fn report(pool: &RedisPool, keys: &Keys, concert: ConcertId) -> RedisResult<LineReport> {
    let q = QueueKeys::new(keys, concert);
    let mut conn = super::conn(pool).await?;
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
    let now = seconds * 1_000 + micros / 1_000;
    let window = i64::try_from(window_ms()).unwrap_or(i64::MAX);
    let minute = i64::try_from(millis(ADMITS_KEPT)).unwrap_or(i64::MAX);
    let (opened, waiting, active, last_minute, in_window, abandoned): (
        bool,
        u64,
        u64,
        u64,
        u64,
        Option<u64>,
    ) = redis::pipe()
        .exists(q.part("opened"))
        .zcard(q.part("waiting"))
        .zcount(q.part("active"), format!("({now}"), "+inf")
        .zcount(q.part("admits"), now - minute, "+inf")
        .zcount(q.part("admits"), now - window, "+inf")
        .get(q.part("abandoned"))
        .query_async(&mut conn)
        .await?;
    Ok(LineReport {
        opened,
        waiting,
        active,
        admitted_last_minute: last_minute,
        admitted_in_window: in_window,
        abandoned: abandoned.unwrap_or(0),
    })
}

/// Where a token stands, as a socket follower needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Redis has no record of it: never issued, or Redis lost its data (a restart
    /// without persistence, a flush). Its holder must join again.
    Unknown,
    /// In the pre-queue of a sale not yet open: no place yet.
    PreQueued,
    Waiting {
        position: u64,
        eta_seconds: Option<u64>,
    },
    Active {
        until: Option<DateTime<Utc>>,
        /// What is left of the turn, by Redis's clock.
        left: Duration,
    },
    /// Issued, but over: its turn ran out, it left, paid or was dropped for absence.
    Expired,
}

/// At most this many tokens per round trip in [`standings`], [`positions`] and
/// [`seen`].
const STANDINGS_BATCH: usize = 1_000;

/// Where each of `secrets` (waiting in `concert`'s line) stands: its position
/// ([`Standing::Waiting`]), [`Standing::PreQueued`], or `None` if it is no longer
/// waiting. One round trip per thousand.
pub async fn positions(
    pool: &RedisPool,
    keys: &Keys,
    concert: ConcertId,
    secrets: &[String],
    policy: &AdmissionPolicy,
) -> RedisResult<Vec<Option<Standing>>> {
    let q = QueueKeys::new(keys, concert);
    let mut conn = super::conn(pool).await?;
    let mut found = Vec::with_capacity(secrets.len());
    for batch in secrets.chunks(STANDINGS_BATCH) {
        let answers: Vec<redis::Value> = POSITIONS
            .key(q.part("waiting"))
            .key(q.part("admits"))
            .key(q.part("opened"))
            .arg(window_ms())
            .arg(batch)
            .invoke_async(&mut conn)
            .await?;
        let mut answers = answers.into_iter();
        let opened: bool = next_answer(&mut answers)?;
        let recent: u64 = next_answer(&mut answers)?;
        for _ in batch {
            let rank: Option<u64> = next_answer(&mut answers)?;
            found.push(rank.map(|rank| {
                if opened {
                    Standing::Waiting {
                        position: rank + 1,
                        eta_seconds: eta_seconds(rank + 1, recent, policy.rate_per_second),
                    }
                } else {
                    Standing::PreQueued
                }
            }));
        }
    }
    Ok(found)
}

/// Where each of `secrets` (tokens of `concert`, in any state) stands, in one
/// round trip per thousand. Unlike [`resolve`], asking does not count as being
/// seen, and an error never reads as [`Standing::Unknown`].
pub async fn standings(
    pool: &RedisPool,
    keys: &Keys,
    concert: ConcertId,
    secrets: &[String],
    policy: &AdmissionPolicy,
) -> RedisResult<Vec<Standing>> {
    let q = QueueKeys::new(keys, concert);
    let mut conn = super::conn(pool).await?;
    let mut found = Vec::with_capacity(secrets.len());
    for batch in secrets.chunks(STANDINGS_BATCH) {
        let mut invocation = STANDINGS.key(q.part("waiting"));
        invocation
            .key(q.part("active"))
            .key(q.part("admits"))
            .key(q.part("opened"));
        for secret in batch {
            invocation.key(q.record(secret));
        }
        let answers: Vec<redis::Value> = invocation
            .arg(window_ms())
            .arg(batch)
            .invoke_async(&mut conn)
            .await?;
        let mut answers = answers.into_iter();
        let opened: bool = next_answer(&mut answers)?;
        let recent: u64 = next_answer(&mut answers)?;
        let now: i64 = next_answer(&mut answers)?;
        for _ in batch {
            let exists: bool = next_answer(&mut answers)?;
            let active_until: Option<i64> = next_answer(&mut answers)?;
            let rank: Option<u64> = next_answer(&mut answers)?;
            found.push(match (exists, active_until, rank) {
                (false, ..) => Standing::Unknown,
                (true, Some(ms), _) => Standing::Active {
                    until: DateTime::from_timestamp_millis(ms),
                    left: millis_left(ms, now),
                },
                (true, None, Some(_)) if !opened => Standing::PreQueued,
                (true, None, Some(rank)) => Standing::Waiting {
                    position: rank + 1,
                    eta_seconds: eta_seconds(rank + 1, recent, policy.rate_per_second),
                },
                (true, None, None) => Standing::Expired,
            });
        }
    }
    Ok(found)
}

/// The next answer of a pipeline, as a `T`.
fn next_answer<T: redis::FromRedisValue>(
    answers: &mut impl Iterator<Item = redis::Value>,
) -> Result<T, redis::RedisError> {
    let value = answers.next().ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Parse, "short pipeline answer"))
    })?;
    Ok(redis::from_redis_value(value)?)
}

/// How many of `secrets` (tokens of `concert`) Redis still has a record of: one
/// cheap command, so fewer than asked means a closer look with [`standings`].
pub async fn known(
    pool: &RedisPool,
    keys: &Keys,
    concert: ConcertId,
    secrets: &[String],
) -> RedisResult<usize> {
    if secrets.is_empty() {
        return Ok(0);
    }
    let q = QueueKeys::new(keys, concert);
    let mut conn = super::conn(pool).await?;
    let mut total = 0;
    for batch in secrets.chunks(STANDINGS_BATCH) {
        let n: usize = redis::cmd("EXISTS")
            .arg(batch.iter().map(|s| q.record(s)).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        total += n;
    }
    Ok(total)
}

/// Marks `secrets` as seen now (their holders are connected), if still waiting.
/// "Now" is Redis's clock, which the tick's grace period reads: this instance's own
/// clock may run behind (and drop connected waiters) or ahead (and keep absent ones).
pub async fn seen(
    pool: &RedisPool,
    keys: &Keys,
    concert: ConcertId,
    secrets: &[String],
) -> RedisResult<()> {
    if secrets.is_empty() {
        return Ok(());
    }
    let seen = QueueKeys::new(keys, concert).part("seen");
    let mut conn = super::conn(pool).await?;
    for batch in secrets.chunks(STANDINGS_BATCH) {
        SEEN.key(&seen)
            .arg(batch)
            .invoke_async::<i64>(&mut conn)
            .await?;
    }
    Ok(())
}

/// Concerts that have (had) a waiting room, so every instance ticks them.
pub async fn register(pool: &RedisPool, keys: &Keys, concert: ConcertId) -> RedisResult<()> {
    let mut conn = super::conn(pool).await?;
    redis::cmd("SADD")
        .arg(keys.queues())
        .arg(concert.0)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}

pub async fn registered(pool: &RedisPool, keys: &Keys) -> RedisResult<Vec<ConcertId>> {
    let mut conn = super::conn(pool).await?;
    let ids: Vec<u64> = redis::cmd("SMEMBERS")
        .arg(keys.queues())
        .query_async(&mut conn)
        .await?;
    Ok(ids.into_iter().map(ConcertId).collect())
}

/// What instances tell each other about a concert's line, over Redis pub/sub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueEvent {
    pub concert: ConcertId,
    /// Secrets admitted just now, ACTIVE until `active_until` (ms)...
    #[serde(default)]
    pub admitted: Vec<String>,
    #[serde(default)]
    pub active_until: Option<i64>,
    /// ...that is, for this long from the tick, by Redis's clock (absent from an
    /// instance of an older version: then the hearer's clock measures it).
    #[serde(default)]
    pub active_for_ms: Option<u64>,
    /// Secrets whose tokens ended (left, paid).
    #[serde(default)]
    pub ended: Vec<String>,
    /// The line moved (admissions, abandonment, leaving, the opening): positions
    /// changed.
    #[serde(default)]
    pub moved: bool,
    /// The sale ended and its line was sent away: every waiter is told why.
    #[serde(default)]
    pub line_ended: Option<LineEnd>,
}

/// Why a line was sent away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LineEnd {
    /// The operator closed the line.
    Closed,
    /// Every seat is sold.
    SoldOut,
}

pub async fn publish(pool: &RedisPool, keys: &Keys, event: &QueueEvent) -> RedisResult<()> {
    let payload = serde_json::to_string(event)
        .map_err(|e| redis::RedisError::from((redis::ErrorKind::Parse, "event", e.to_string())))?;
    let mut conn = super::conn(pool).await?;
    redis::cmd("PUBLISH")
        .arg(keys.queue_events())
        .arg(payload)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}
