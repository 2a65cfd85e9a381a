//! Prepaid points: balance, top-ups and the ledger.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::{
    ChargeAmount, ChargeError, DomainEvent, IdempotencyKey, LedgerKind, Points, UserId, points,
};
use serde::{Deserialize, Serialize};

use super::{Abort, Services, retry_deadlocks};
use crate::db::idempotency::{self, Scope, Stored};
use crate::db::wallets::{self, LedgerRow};
use crate::db::{self, outbox};
use crate::metrics::Outcome as _;

/// What a top-up answers, stored to replay for the same Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReceipt {
    pub amount: Points,
    pub balance: Points,
    pub charged_at: DateTime<Utc>,
}

pub async fn balance(svc: &Services, user: &UserId) -> anyhow::Result<Points> {
    let mut conn = svc.db().await?;
    wallets::balance(&mut conn, user).await.map_err(db::failure)
}

/// Adds `amount` to the user's wallet once per Idempotency-Key. Returns the receipt
/// and whether it is a replay of an earlier identical request.
pub async fn charge(
    svc: &Services,
    user: &UserId,
    amount: ChargeAmount,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(ChargeReceipt, bool), ChargeError> {
    let charged = top_up(svc, user, amount, key, now).await;
    let outcome = match &charged {
        Ok((_, true)) => "replayed",
        Ok((receipt, false)) => {
            svc.metrics.points_charged.inc_by(receipt.amount.0);
            "charged"
        }
        Err(e) => e.outcome(),
    };
    svc.metrics
        .point_charges
        .with_label_values(&[outcome])
        .inc();
    charged
}

async fn top_up(
    svc: &Services,
    user: &UserId,
    amount: ChargeAmount,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<(ChargeReceipt, bool), ChargeError> {
    let hash = idempotency::request_hash(&format!("charge:{}", amount.points()));
    let mut conn = svc.db().await?;
    let charged = retry_deadlocks!(
        conn.transaction(async |conn| {
            // Wallet lock first, so charges with one key queue on it rather than
            // on the key's insert (see `payments::pay`).
            let before = wallets::lock(conn, user, now).await?;
            if !idempotency::claim(conn, user, Scope::Charge, key, &hash, now).await? {
                return Err(Abort::Replay);
            }
            let after =
                points::credit(before, amount).ok_or(Abort::Outcome(ChargeError::BalanceLimit))?;
            wallets::apply(conn, user, LedgerKind::Charge, before, after, None, now).await?;
            let event = DomainEvent::PointsCharged {
                user_id: user.clone(),
                amount: amount.points(),
                balance: after,
            };
            outbox::append(conn, vec![event], now).await?;
            let receipt = ChargeReceipt {
                amount: amount.points(),
                balance: after,
                charged_at: now,
            };
            idempotency::record(
                conn,
                user,
                Scope::Charge,
                key,
                &serde_json::to_string(&receipt).map_err(anyhow::Error::from)?,
            )
            .await?;
            Ok(receipt)
        })
        .await
    );
    match charged {
        Ok(receipt) => {
            svc.relay.wake();
            Ok((receipt, false))
        }
        Err(Abort::Outcome(e)) => Err(e),
        Err(Abort::Failed(e)) => Err(ChargeError::Internal(e)),
        Err(Abort::Replay) => {
            match idempotency::stored(&mut conn, user, Scope::Charge, key, &hash)
                .await
                .map_err(db::classify)?
            {
                Stored::Replay(body) => Ok((
                    serde_json::from_str(&body).map_err(anyhow::Error::from)?,
                    true,
                )),
                Stored::Mismatch => Err(ChargeError::IdempotencyKeyReused),
            }
        }
    }
}

/// One line of a wallet's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: u64,
    pub kind: LedgerKind,
    /// Positive for a charge or refund, negative for a payment or fee.
    pub amount: i64,
    pub balance_after: u64,
    pub reservation_id: Option<u64>,
    pub order_id: Option<u64>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<LedgerRow> for LedgerEntry {
    type Error = anyhow::Error;

    fn try_from(row: LedgerRow) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.id,
            kind: row.kind.0,
            amount: row.amount,
            balance_after: row.balance_after,
            reservation_id: row.reservation_id,
            order_id: row.order_id,
            created_at: db::utc(row.created_at),
        })
    }
}

/// The user's ledger, newest first: up to `limit` entries older than `before`.
pub async fn history(
    svc: &Services,
    user: &UserId,
    before: Option<u64>,
    limit: u32,
) -> anyhow::Result<Vec<LedgerEntry>> {
    let mut conn = svc.db().await?;
    wallets::history(&mut conn, user, before, limit)
        .await
        .map_err(db::failure)?
        .into_iter()
        .map(LedgerEntry::try_from)
        .collect()
}
