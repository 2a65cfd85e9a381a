//! Status columns: each stored as its name (`HELD`, `ON_SALE`, `CHARGE`, ...) and
//! read straight into its domain enum here, the one place a stored status becomes a
//! Rust value. A row whose status is not a known name fails to load.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::mysql::{Mysql, MysqlValue};
use diesel::sql_types::Text;
use domain::{LedgerKind, ReservationStatus, SaleState, ScheduleStatus, SeatState};

/// A status column's value, as its domain enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub struct Stored<T>(pub T);

/// A domain enum stored by its name.
pub trait StatusName: Sized {
    fn from_name(name: &str) -> Option<Self>;
}

macro_rules! status_names {
    ($($status:ty),* $(,)?) => {$(
        impl StatusName for $status {
            fn from_name(name: &str) -> Option<Self> {
                <$status>::parse(name)
            }
        }
    )*};
}
status_names!(
    LedgerKind,
    ReservationStatus,
    SaleState,
    ScheduleStatus,
    SeatState
);

impl<T: StatusName> FromSql<Text, Mysql> for Stored<T> {
    fn from_sql(bytes: MysqlValue<'_>) -> deserialize::Result<Self> {
        let name = <String as FromSql<Text, Mysql>>::from_sql(bytes)?;
        T::from_name(&name).map(Stored).ok_or_else(|| {
            format!(
                "unknown stored {} {name:?}",
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("status")
            )
            .into()
        })
    }
}
