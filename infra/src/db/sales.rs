//! The sales projection `boxoffice consume` builds from the event stream.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::ConcertId;

use super::schema::{concert_sales, consumed_events};
use super::{DbConn, naive};

/// Records that `event_id` was applied; `false` if it already was (a redelivery).
pub async fn claim_event(
    conn: &mut DbConn,
    event_id: &str,
    event_type: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let inserted = diesel::insert_or_ignore_into(consumed_events::table)
        .values((
            consumed_events::event_id.eq(event_id),
            consumed_events::event_type.eq(event_type),
            consumed_events::consumed_at.eq(naive(now)),
        ))
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// What one event adds to its concert's row. A cancellation takes its seats out of
/// `seats_sold` and its refund out of `revenue` (`seats_returned`, `refunded`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SalesDelta {
    pub holds: u64,
    pub releases: u64,
    pub expirations: u64,
    pub seats_sold: u64,
    pub revenue: u64,
    pub cancellations: u64,
    pub seats_returned: u64,
    pub refunded: u64,
}

pub async fn add(
    conn: &mut DbConn,
    concert: ConcertId,
    d: SalesDelta,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    use diesel::sql_types::{BigInt, Datetime, Unsigned};
    diesel::sql_query(
        "INSERT INTO concert_sales
           (concert_id, holds, releases, expirations, seats_sold, revenue, cancellations,
            refunded, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON DUPLICATE KEY UPDATE
           holds = holds + VALUES(holds),
           releases = releases + VALUES(releases),
           expirations = expirations + VALUES(expirations),
           seats_sold = GREATEST(CAST(seats_sold AS SIGNED) + VALUES(seats_sold) - ?, 0),
           revenue = GREATEST(CAST(revenue AS SIGNED) + VALUES(revenue) - ?, 0),
           cancellations = cancellations + VALUES(cancellations),
           refunded = refunded + VALUES(refunded),
           updated_at = VALUES(updated_at)",
    )
    .bind::<Unsigned<BigInt>, _>(concert.0)
    .bind::<Unsigned<BigInt>, _>(d.holds)
    .bind::<Unsigned<BigInt>, _>(d.releases)
    .bind::<Unsigned<BigInt>, _>(d.expirations)
    .bind::<Unsigned<BigInt>, _>(d.seats_sold)
    .bind::<Unsigned<BigInt>, _>(d.revenue)
    .bind::<Unsigned<BigInt>, _>(d.cancellations)
    .bind::<Unsigned<BigInt>, _>(d.refunded)
    .bind::<Datetime, _>(naive(now))
    .bind::<Unsigned<BigInt>, _>(d.seats_returned)
    .bind::<Unsigned<BigInt>, _>(d.refunded)
    .execute(conn)
    .await?;
    Ok(())
}

/// A concert's sales as projected from the events consumed so far.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct ConcertSales {
    pub concert_id: u64,
    pub holds: u64,
    pub releases: u64,
    pub expirations: u64,
    pub seats_sold: u64,
    pub revenue: u64,
    pub updated_at: NaiveDateTime,
    /// Paid orders cancelled, and the points refunded for them.
    pub cancellations: u64,
    pub refunded: u64,
}

pub async fn of_concert(
    conn: &mut DbConn,
    concert: ConcertId,
) -> QueryResult<Option<ConcertSales>> {
    concert_sales::table
        .find(concert.0)
        .first(conn)
        .await
        .optional()
}
