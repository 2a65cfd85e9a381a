//! MySQL: the pool, the embedded migrations, and one module of repository
//! functions per table group. Repository functions take `&mut DbConn`, so a use case
//! can compose several of them in one transaction.

pub mod catalog;
pub mod idempotency;
pub mod outbox;
pub mod payments;
pub mod reservations;
pub mod sales;
pub mod schema;
pub mod wallets;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{
    AsyncConnection as _, AsyncMigrationHarness, AsyncMysqlConnection, RunQueryDsl,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};
use secrecy::ExposeSecret as _;

use crate::config::Settings;

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
pub fn pool(settings: &Settings) -> DbPool {
    let mut config = ManagerConfig::<DbConn>::default();
    config.custom_setup = Box::new(|url| Box::pin(establish(url)));
    let manager = AsyncDieselConnectionManager::<DbConn>::new_with_config(
        settings.database_url.expose_secret(),
        config,
    );
    DbPool::builder()
        .max_size(settings.database_pool_size)
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

pub(crate) fn is_unique_violation(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}
