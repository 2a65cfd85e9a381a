//! Idempotency records: the first successful answer to a money-moving request,
//! stored in the same transaction as the change it reports.
//!
//! A retry with the same key inserts the same primary key. InnoDB makes that insert
//! wait while the first request's transaction is open, then fail once it commits,
//! so two concurrent requests with one key can never both act.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{IdempotencyKey, UserId};
use sha2::{Digest as _, Sha256};

use super::schema::idempotency_keys as keys;
use super::{DbConn, is_unique_violation, naive};

/// What a key stands for: one user's one kind of request.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Payment,
    Charge,
    /// Paying an order (`POST /v1/orders/{id}/payment`): its answer has its own shape.
    OrderPayment,
    Cancellation,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Charge => "charge",
            Self::OrderPayment => "order_payment",
            Self::Cancellation => "cancellation",
        }
    }
}

/// Hashes the request a key is used for, so reusing a key for another request is
/// told apart from a retry.
pub fn request_hash(request: &str) -> String {
    let digest = Sha256::digest(request.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// Claims `key` inside the caller's transaction. `false`: the key was used before
/// (and that request has committed); read it with [`stored`] after rolling back.
pub async fn claim(
    conn: &mut DbConn,
    user: &UserId,
    scope: Scope,
    key: &IdempotencyKey,
    hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(keys::table)
        .values((
            keys::user_id.eq(user.as_str()),
            keys::scope.eq(scope.as_str()),
            keys::idempotency_key.eq(key.as_str()),
            keys::request_hash.eq(hash),
            keys::created_at.eq(naive(now)),
        ))
        .execute(conn)
        .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Stores the answer of the request that claimed `key`.
pub async fn record(
    conn: &mut DbConn,
    user: &UserId,
    scope: Scope,
    key: &IdempotencyKey,
    body: &str,
) -> QueryResult<()> {
    diesel::update(keys::table.find((user.as_str(), scope.as_str(), key.as_str())))
        .set(keys::response_body.eq(body))
        .execute(conn)
        .await
        .map(drop)
}

/// What an earlier request with `key` answered.
#[derive(Debug)]
pub enum Stored {
    /// The same request: replay this body.
    Replay(String),
    /// The key was used for a different request.
    Mismatch,
}

pub async fn stored(
    conn: &mut DbConn,
    user: &UserId,
    scope: Scope,
    key: &IdempotencyKey,
    hash: &str,
) -> anyhow::Result<Stored> {
    let (stored_hash, body): (String, Option<String>) = keys::table
        .find((user.as_str(), scope.as_str(), key.as_str()))
        .select((keys::request_hash, keys::response_body))
        .first(conn)
        .await?;
    if stored_hash != hash {
        return Ok(Stored::Mismatch);
    }
    // Claim and record commit together, so a visible claim always has its body.
    body.map(Stored::Replay)
        .ok_or_else(|| anyhow::anyhow!("idempotency record without a response"))
}
