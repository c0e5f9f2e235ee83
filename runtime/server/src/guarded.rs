//! The storage guard of the real world: the components' guard (`apim_components::guard`,
//! written once for both worlds) over the SQL storage, on the system clock.

use crate::storage::{Role, SqlStorage};
use apim_components::guard::{Clock, Databases};
use apim_components::world::Db;
use std::future::Future;
use std::time::Duration;

/// A node's SQL storage with a time bound per operation and a breaker per database.
pub type Guarded = apim_components::guard::Guarded<SqlStorage, SystemClock>;

/// Guards `inner`, each operation bounded by `operation`.
pub fn guard(inner: SqlStorage, operation: Duration) -> Guarded {
    let ms = u64::try_from(operation.as_millis()).unwrap_or(u64::MAX);
    Guarded::new(inner, SystemClock, ms)
}

/// Tokio's timers.
pub struct SystemClock;

impl Clock for SystemClock {
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(Duration::from_millis(ms))
    }
}

impl Databases for SqlStorage {
    fn database_of(&self, role: Role) -> Option<usize> {
        SqlStorage::database_of(self, role)
    }
    fn ping(&self, role: Role) -> impl Future<Output = Db<()>> + Send {
        SqlStorage::ping(self, role)
    }
}
