//! MySQL: the pool, the embedded migrations, and one module of repository
//! functions per table group. Repository functions take `&mut DbConn`, so a use case
//! can compose several of them in one transaction.

pub mod catalog;
pub mod idempotency;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod reservations;
pub mod sale_settings;
pub mod sales;
pub mod schema;
pub mod stored;
pub mod wallets;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{
    AsyncConnection as _, AsyncMigrationHarness, AsyncMysqlConnection, RunQueryDsl,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};
use secrecy::ExposeSecret as _;

use crate::config::Settings;
use crate::service::DependencyDown;

pub type DbConn = AsyncMysqlConnection;
pub type DbPool = diesel_async::pooled_connection::bb8::Pool<DbConn>;
pub type PooledConn<'a> = bb8::PooledConnection<'a, AsyncDieselConnectionManager<DbConn>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

diesel::define_sql_function! {
    /// The id the last INSERT on this connection generated (MySQL has no RETURNING).
    fn last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::BigInt>;
}

/// A pool that connects lazily, so `serve` starts (and `/health/ready` says why it
/// is not ready) even while MySQL is still coming up.
///
/// A connection that died is never handed out again: one whose transaction could
/// not be rolled back is dropped when it comes back (diesel-async's `has_broken`),
/// and every other is checked with a `SELECT 1` when taken out (bb8's
/// `test_on_check_out` with the `Verified` recycling method), so after a MySQL
/// restart the idle connections are replaced, not failed on, and the app serves
/// again by itself.
pub fn pool(settings: &Settings) -> DbPool {
    let mut config = ManagerConfig::<DbConn>::default();
    config.custom_setup = Box::new(|url| Box::pin(establish(url)));
    config.recycling_method = RecyclingMethod::Verified;
    let manager = AsyncDieselConnectionManager::<DbConn>::new_with_config(
        settings.database_url.expose_secret(),
        config,
    );
    DbPool::builder()
        .max_size(settings.database_pool_size)
        .test_on_check_out(true)
        .connection_timeout(std::time::Duration::from_millis(
            settings.database_timeout_ms,
        ))
        .build_unchecked(manager)
}

/// A connection of its own, outside the pool, set up like pooled ones: for a
/// session whose state must end with it (the relay's named lock).
pub async fn connect(settings: &Settings) -> anyhow::Result<DbConn> {
    let timeout = std::time::Duration::from_millis(settings.database_timeout_ms);
    Ok(
        tokio::time::timeout(timeout, establish(settings.database_url.expose_secret()))
            .await
            .context("connecting to MySQL timed out")??,
    )
}

/// Every write path takes the row locks it relies on explicitly (`FOR UPDATE`,
/// conditional updates), so REPEATABLE READ's snapshots buy nothing, while its gap
/// locks make concurrent holds, payments and the expiry scan deadlock each other.
/// READ COMMITTED keeps only the record locks.
async fn establish(url: &str) -> diesel::ConnectionResult<DbConn> {
    let mut conn = DbConn::establish(url).await?;
    diesel::sql_query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut conn)
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// Creates the database if it is missing, then applies pending migrations.
/// Returns the versions applied.
pub async fn migrate(settings: &Settings) -> anyhow::Result<Vec<String>> {
    create_database_if_missing(settings.database_url.expose_secret()).await?;
    let conn = DbConn::establish(settings.database_url.expose_secret())
        .await
        .context("connecting to MySQL")?;
    // The harness drives diesel's synchronous migration runner on top of the async
    // connection, so it runs on a blocking thread.
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))
    })
    .await?
}

async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let (server, database) = url
        .rsplit_once('/')
        .filter(|(server, db)| server.contains("://") && !server.ends_with('/') && !db.is_empty())
        .context("database_url must end in /<database>")?;
    let database = database.split('?').next().unwrap_or(database);
    anyhow::ensure!(
        database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name must be letters, digits and '_'"
    );
    let mut conn = DbConn::establish(&format!("{server}/"))
        .await
        .context("connecting to the MySQL server")?;
    diesel::sql_query(format!(
        "CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4"
    ))
    .execute(&mut conn)
    .await
    .context("creating the database")?;
    Ok(())
}

/// MySQL DATETIME columns hold UTC without a zone.
pub(crate) fn utc(naive: NaiveDateTime) -> DateTime<Utc> {
    naive.and_utc()
}

pub(crate) fn naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

/// InnoDB picked this transaction as a deadlock victim (or gave up waiting for a
/// lock): it was rolled back whole and is safe to run again.
pub(crate) fn is_retryable(err: &anyhow::Error) -> bool {
    err.downcast_ref::<DieselError>().is_some_and(|e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            message.contains("Deadlock found") || message.contains("Lock wait timeout")
        }
        _ => false,
    })
}

/// The connection to MySQL broke under the query (reset, closed, timed out, or the
/// server shutting down or killing it): MySQL failed, not the request. Whatever the
/// transaction did is rolled back by the server with the session; a commit whose
/// answer was lost may have happened, so this is never retried here, only answered
/// with 503 (a client retries a payment or charge with its Idempotency-Key).
///
/// diesel-async keeps only the text of a `mysql_async` error (a server error's code
/// is dropped, and every I/O or driver failure becomes `DatabaseErrorKind::Unknown`
/// with the driver's message), so the text is all there is to tell by.
pub(crate) fn is_connection_lost(err: &DieselError) -> bool {
    /// `mysql_async` I/O and driver failures, then the server's and client's
    /// messages for a lost session: 1053 shutdown in progress, 1927 connection
    /// killed, 2006 gone away, 2013 lost during query, 1158-1161 reading or
    /// writing the client's packets failed or timed out, 1317 and 1969 query
    /// interrupted (by a shutdown, a KILL or `max_statement_time`), 4031 (MySQL)
    /// disconnected for inactivity.
    const LOST: [&str; 9] = [
        "input/output error",
        "connection to the server is closed",
        "server shutdown in progress",
        "connection was killed",
        "server has gone away",
        "lost connection to",
        "communication packets",
        "query execution was interrupted",
        "disconnected by the server",
    ];
    match err {
        // A rollback failed, so the session's state is unknown: the pool drops it.
        DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message().to_ascii_lowercase();
            LOST.iter().any(|lost| message.contains(lost))
        }
        _ => false,
    }
}

/// Marks `err` as [`DependencyDown`] if a lost MySQL connection is anywhere in its
/// chain, so the API answers 503 rather than 500. Every use case's transaction
/// passes its failures through here (see `service::Abort`).
pub(crate) fn classify(err: anyhow::Error) -> anyhow::Error {
    let lost = err.chain().any(|cause| {
        cause
            .downcast_ref::<DieselError>()
            .is_some_and(is_connection_lost)
    });
    if lost && err.downcast_ref::<DependencyDown>().is_none() {
        err.context(DependencyDown("MySQL"))
    } else {
        err
    }
}

/// A query's failure as a use case reports it: [`classify`]d.
pub(crate) fn failure(err: DieselError) -> anyhow::Error {
    classify(err.into())
}

pub(crate) fn is_unique_violation(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> anyhow::Error {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned())).into()
    }

    fn is_down(err: &anyhow::Error) -> bool {
        err.downcast_ref::<DependencyDown>().is_some()
    }

    #[test]
    fn a_lost_connection_is_a_dependency_failure() {
        // As diesel-async words mysql_async's errors (a server error: its message).
        for message in [
            "Input/output error: Input/output error: Driver error: `Connection to the server is closed.'",
            "Input/output error: Input/output error: Connection reset by peer (os error 104)",
            "Input/output error: Input/output error: Broken pipe (os error 32)",
            "Input/output error: Input/output error: connection closed",
            "Input/output error: Input/output error: Connection timed out (os error 110)",
            "Server shutdown in progress",
            "Connection was killed",
            "MySQL server has gone away",
            "Lost connection to MySQL server during query",
            "Got timeout reading communication packets",
            "Query execution was interrupted (max_statement_time exceeded)",
        ] {
            let err = classify(failed(message));
            assert!(is_down(&err), "{message}");
            assert!(
                err.downcast_ref::<DieselError>().is_some(),
                "the cause stays"
            );
        }
        assert!(is_down(&failure(DieselError::BrokenTransactionManager)));
        // Wherever it sits in the chain.
        assert!(is_down(&classify(
            failed("Lost connection to MySQL server during query").context("locking the wallet")
        )));
    }

    #[test]
    fn a_failed_query_stays_what_it_is() {
        for message in [
            "Duplicate entry '7' for key 'uq_payments_reservation'",
            "Deadlock found when trying to get lock; try restarting transaction",
            "Lock wait timeout exceeded; try restarting transaction",
            "You have an error in your SQL syntax",
        ] {
            assert!(!is_down(&classify(failed(message))), "{message}");
        }
        assert!(!is_down(&failure(DieselError::NotFound)));
        assert!(is_retryable(&classify(failed(
            "Deadlock found when trying to get lock; try restarting transaction"
        ))));
    }
}
