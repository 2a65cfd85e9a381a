//! Wallets and the point ledger behind them. Balances change only under the
//! wallet's row lock and always together with a ledger row.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{LedgerKind, Order, Points, UserId};

use super::schema::{point_ledger, wallets};
use super::stored::Stored;
use super::{DbConn, naive};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = point_ledger, check_for_backend(Mysql))]
pub struct LedgerRow {
    pub id: u64,
    pub kind: Stored<LedgerKind>,
    /// Positive for a charge, negative for a payment.
    pub amount: i64,
    pub balance_after: u64,
    pub reservation_id: Option<u64>,
    pub created_at: NaiveDateTime,
    pub order_id: Option<u64>,
}

pub async fn balance(conn: &mut DbConn, user: &UserId) -> QueryResult<Points> {
    wallets::table
        .find(user.as_str())
        .select(wallets::balance)
        .first(conn)
        .await
        .optional()
        .map(|b| Points(b.unwrap_or(0)))
}

/// Reads the balance and locks the wallet until the transaction ends; a wallet that
/// does not exist yet is created empty first, so there is always a row to lock.
pub async fn lock(conn: &mut DbConn, user: &UserId, now: DateTime<Utc>) -> QueryResult<Points> {
    if let Some(balance) = lock_existing(conn, user).await? {
        return Ok(Points(balance));
    }
    // Not `INSERT IGNORE`: on a duplicate it takes a *shared* lock, and two
    // transactions upgrading their shared locks to the exclusive one that
    // `FOR UPDATE` needs deadlock each other. `ON DUPLICATE KEY UPDATE` locks
    // exclusively from the start.
    diesel::insert_into(wallets::table)
        .values((
            wallets::user_id.eq(user.as_str()),
            wallets::balance.eq(0),
            wallets::updated_at.eq(naive(now)),
        ))
        .on_conflict(diesel::dsl::DuplicatedKeys)
        .do_update()
        .set(wallets::user_id.eq(wallets::user_id))
        .execute(conn)
        .await?;
    lock_existing(conn, user)
        .await
        .map(|b| Points(b.unwrap_or(0)))
}

async fn lock_existing(conn: &mut DbConn, user: &UserId) -> QueryResult<Option<u64>> {
    wallets::table
        .find(user.as_str())
        .select(wallets::balance)
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Moves a locked wallet from `old` to `new` and writes the ledger row for it.
pub async fn apply(
    conn: &mut DbConn,
    user: &UserId,
    kind: LedgerKind,
    old: Points,
    new: Points,
    order: Option<&Order>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let amount = i64::try_from(new.0)? - i64::try_from(old.0)?;
    apply_entries(conn, user, old, &[(kind, amount)], order, now).await?;
    Ok(())
}

/// Credits a cancelled `order`'s total back to a locked wallet holding `old` and
/// debits `fee`: one balance change, two ledger rows (the fee's only if there is
/// one). Returns the balance after. A refund may pass the top-up limit: it gives
/// back what was paid.
pub async fn refund(
    conn: &mut DbConn,
    user: &UserId,
    old: Points,
    order: &Order,
    fee: Points,
    now: DateTime<Utc>,
) -> anyhow::Result<Points> {
    let mut entries = vec![(LedgerKind::Refund, i64::try_from(order.total.0)?)];
    if fee.0 > 0 {
        entries.push((LedgerKind::Fee, -i64::try_from(fee.0)?));
    }
    apply_entries(conn, user, old, &entries, Some(order), now).await
}

/// Applies signed ledger `entries` to a locked wallet holding `old`, in order, in
/// one wallet update and one ledger insert. Returns the balance after.
async fn apply_entries(
    conn: &mut DbConn,
    user: &UserId,
    old: Points,
    entries: &[(LedgerKind, i64)],
    order: Option<&Order>,
    now: DateTime<Utc>,
) -> anyhow::Result<Points> {
    let mut balance = i64::try_from(old.0)?;
    let mut rows = Vec::with_capacity(entries.len());
    for &(kind, amount) in entries {
        balance = balance
            .checked_add(amount)
            .filter(|b| *b >= 0)
            .ok_or_else(|| anyhow::anyhow!("a ledger entry would make the balance negative"))?;
        rows.push((
            point_ledger::user_id.eq(user.as_str()),
            point_ledger::kind.eq(kind.as_str()),
            point_ledger::amount.eq(amount),
            point_ledger::balance_after.eq(balance.unsigned_abs()),
            point_ledger::order_id.eq(order.map(|o| o.id.0)),
            // The order's first seat, as before orders.
            point_ledger::reservation_id.eq(order
                .and_then(|o| <[_]>::first(&o.seats))
                .map(|s| s.reservation_id.0)),
            point_ledger::created_at.eq(naive(now)),
        ));
    }
    let new = Points(balance.unsigned_abs());
    // `balance = old` re-checks what the caller read under the lock; if anything
    // ever wrote past the lock this fails instead of losing an update.
    let updated = diesel::update(
        wallets::table
            .find(user.as_str())
            .filter(wallets::balance.eq(old.0)),
    )
    .set((
        wallets::balance.eq(new.0),
        wallets::updated_at.eq(naive(now)),
    ))
    .execute(conn)
    .await?;
    anyhow::ensure!(updated == 1, "wallet balance changed under its row lock");
    diesel::insert_into(point_ledger::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(new)
}

pub async fn history(
    conn: &mut DbConn,
    user: &UserId,
    before: Option<u64>,
    limit: u32,
) -> QueryResult<Vec<LedgerRow>> {
    let mut query = point_ledger::table
        .filter(point_ledger::user_id.eq(user.as_str()))
        .select(LedgerRow::as_select())
        .order(point_ledger::id.desc())
        .limit(i64::from(limit))
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(point_ledger::id.lt(before));
    }
    query.load(conn).await
}
