//! The three databases on sqlx: SQLite (embedded), PostgreSQL and MySQL/MariaDB, one pool per
//! role (pools are shared when roles share a database), with versioned migrations applied at
//! start. Statements are written once with `?` placeholders and adapted per engine.

use apim_components::world::{
    Api, Application, ClientKeys, Db, DbError, Failures, Session, Storage, Token, User,
};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    pub fn of_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            _ => None,
        }
    }

    /// `?` placeholders, numbered for PostgreSQL.
    fn sql(self, text: &str) -> String {
        if self != Dialect::Postgres {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 8);
        let mut n = 0;
        for c in text.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// An insert that does nothing when the key exists; rows affected tell which happened.
    fn insert_new(self, table: &str, columns: &str, values: &str) -> String {
        match self {
            Dialect::Mysql => format!("INSERT IGNORE INTO {table} ({columns}) VALUES ({values})"),
            _ => {
                format!("INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING")
            }
        }
    }

    /// An insert that replaces the row with the same key.
    fn upsert(self, table: &str, key: &str, columns: &[&str]) -> String {
        let values = vec!["?"; columns.len()].join(", ");
        let names = columns.join(", ");
        let rest: Vec<&&str> = columns.iter().filter(|c| **c != key).collect();
        match self {
            Dialect::Mysql => {
                let set: Vec<String> = rest.iter().map(|c| format!("{c} = VALUES({c})")).collect();
                format!(
                    "INSERT INTO {table} ({names}) VALUES ({values}) ON DUPLICATE KEY UPDATE {}",
                    set.join(", ")
                )
            }
            _ => {
                let set: Vec<String> = rest.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                format!(
                    "INSERT INTO {table} ({names}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {}",
                    set.join(", ")
                )
            }
        }
    }
}

/// The database roles: the topology's own words.
pub use apim_topology::vocab::Role;

/// The schema of each role, by version. Keys are VARCHAR(255) so MySQL can index them.
fn migrations(role: Role) -> &'static [&'static str] {
    match role {
        Role::User => &[
            "CREATE TABLE IF NOT EXISTS apim_users (name VARCHAR(255) PRIMARY KEY, password_hash TEXT NOT NULL, roles TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS apim_sessions (token_hash VARCHAR(255) PRIMARY KEY, user_name VARCHAR(255) NOT NULL, expires_ms BIGINT NOT NULL)",
            // Version 3: failed sign-ins per account and address, shared by a cluster's nodes.
            "CREATE TABLE IF NOT EXISTS apim_failures (subject VARCHAR(255) PRIMARY KEY, failures BIGINT NOT NULL, since_ms BIGINT NOT NULL)",
        ],
        Role::Apim => &[
            "CREATE TABLE IF NOT EXISTS apim_apis (id VARCHAR(255) PRIMARY KEY, data TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS apim_applications (id VARCHAR(255) PRIMARY KEY, name TEXT NOT NULL, owner VARCHAR(255) NOT NULL)",
            "CREATE TABLE IF NOT EXISTS apim_subscriptions (application VARCHAR(255) NOT NULL, api VARCHAR(255) NOT NULL, PRIMARY KEY (application, api))",
            "CREATE TABLE IF NOT EXISTS apim_clients (consumer_key VARCHAR(255) PRIMARY KEY, secret_hash TEXT NOT NULL, application VARCHAR(255) NOT NULL)",
            "CREATE TABLE IF NOT EXISTS apim_tokens (token_hash VARCHAR(255) PRIMARY KEY, consumer_key VARCHAR(255) NOT NULL, application VARCHAR(255) NOT NULL, expires_ms BIGINT NOT NULL, revoked BIGINT NOT NULL)",
            // Version 2: when a token was revoked, so gateways can catch up on revocations.
            "ALTER TABLE apim_tokens ADD COLUMN revoked_ms BIGINT NOT NULL DEFAULT 0",
        ],
        Role::Registry => &[
            "CREATE TABLE IF NOT EXISTS apim_registry (id VARCHAR(255) PRIMARY KEY, data TEXT NOT NULL)",
        ],
    }
}

#[derive(Clone)]
struct Conn {
    pool: AnyPool,
    dialect: Dialect,
    /// Which of the node's databases (distinct URLs, in order of first use) this is.
    database: usize,
}

/// The storage of one node: a connection pool per role.
#[derive(Clone)]
pub struct SqlStorage {
    conns: BTreeMap<Role, Conn>,
}

fn db_error(e: sqlx::Error) -> DbError {
    let outage = match &e {
        sqlx::Error::Database(d) => d.code().is_none_or(|c| outage_code(&c)),
        // A value that cannot be read or written as asked is the statement's fault.
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::RowNotFound => false,
        _ => true,
    };
    if outage {
        DbError::unavailable(e.to_string())
    } else {
        DbError::statement(e.to_string())
    }
}

/// Whether a database's own error code says the database (not the statement) failed:
/// SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention, shutdown),
/// 58 (system), HY000 with MySQL's server-gone codes; SQLite's busy, locked, I/O, full and
/// cannot-open results.
fn outage_code(code: &str) -> bool {
    let class = code.get(..2).unwrap_or_default();
    matches!(class, "08" | "53" | "57" | "58")
        || matches!(
            code,
            "5" | "6" | "10" | "13" | "14" | "261" | "262" | "517" | "HYT00" | "HYT01"
        )
        || code.starts_with("SQLITE_BUSY")
}

impl SqlStorage {
    /// Connects each role to its URL (roles with the same URL share a pool) and migrates.
    pub async fn connect(urls: &BTreeMap<Role, String>) -> Result<SqlStorage, String> {
        sqlx::any::install_default_drivers();
        let mut by_url: BTreeMap<&str, Conn> = BTreeMap::new();
        let mut conns = BTreeMap::new();
        for (&role, url) in urls {
            let conn = match by_url.get(url.as_str()) {
                Some(c) => c.clone(),
                None => {
                    let dialect = Dialect::of_url(url).ok_or_else(|| {
                        format!("unsupported database URL for the {} role", role.as_str())
                    })?;
                    let pool = AnyPoolOptions::new()
                        .max_connections(if dialect == Dialect::Sqlite { 4 } else { 8 })
                        .acquire_timeout(Duration::from_secs(5))
                        .connect(url)
                        .await
                        .map_err(|e| {
                            format!("cannot connect the {} database: {e}", role.as_str())
                        })?;
                    if dialect == Dialect::Sqlite {
                        // Several writers on one file: wait for the lock instead of failing.
                        for pragma in ["PRAGMA busy_timeout = 5000", "PRAGMA journal_mode = WAL"] {
                            sqlx::query(pragma)
                                .execute(&pool)
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    let c = Conn {
                        pool,
                        dialect,
                        database: by_url.len(),
                    };
                    by_url.insert(url, c.clone());
                    c
                }
            };
            migrate(&conn, role)
                .await
                .map_err(|e| format!("cannot migrate the {} database: {e}", role.as_str()))?;
            conns.insert(role, conn);
        }
        Ok(SqlStorage { conns })
    }

    /// Whether a database serves `role` on this node.
    pub fn serves(&self, role: Role) -> bool {
        self.conns.contains_key(&role)
    }

    /// The database serving `role`, as an index among this node's distinct databases: roles
    /// that share a database share its fate.
    pub fn database_of(&self, role: Role) -> Option<usize> {
        self.conns.get(&role).map(|c| c.database)
    }

    /// One statement that needs nothing but the database answering.
    pub async fn ping(&self, role: Role) -> Db<()> {
        let c = self.conn(role)?;
        sqlx::query("SELECT 1")
            .execute(&c.pool)
            .await
            .map(drop)
            .map_err(db_error)
    }

    fn conn(&self, role: Role) -> Db<&Conn> {
        self.conns.get(&role).ok_or_else(|| {
            DbError::unavailable(format!("no database serves the {} role", role.as_str()))
        })
    }
}

/// Applies the role's migrations past the version it records.
async fn migrate(c: &Conn, role: Role) -> Result<(), sqlx::Error> {
    // Nodes sharing a database start together; PostgreSQL's CREATE TABLE IF NOT EXISTS is not
    // safe against itself, so migrations take a database-wide lock on one connection. SQLite's
    // is its write lock, held by one transaction (its DDL is transactional): processes on one
    // machine sharing a file (`apim drill`) migrate one after the other.
    let mut conn = c.pool.acquire().await?;
    let (lock, unlock) = match c.dialect {
        Dialect::Postgres => (
            "SELECT pg_advisory_lock(727274)",
            "SELECT pg_advisory_unlock(727274)",
        ),
        Dialect::Mysql => (
            "SELECT GET_LOCK('apim_migrations', 60)",
            "SELECT RELEASE_LOCK('apim_migrations')",
        ),
        Dialect::Sqlite => ("BEGIN IMMEDIATE", "COMMIT"),
    };
    sqlx::query(lock).execute(&mut *conn).await?;
    let result = migrate_locked(&mut conn, c.dialect, role).await;
    let unlock = if result.is_err() && c.dialect == Dialect::Sqlite {
        "ROLLBACK"
    } else {
        unlock
    };
    sqlx::query(unlock).execute(&mut *conn).await?;
    result
}

async fn migrate_locked(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    role: Role,
) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS apim_schema (role VARCHAR(64) PRIMARY KEY, version BIGINT NOT NULL)").execute(&mut *conn).await?;
    let row = sqlx::query(&dialect.sql("SELECT version FROM apim_schema WHERE role = ?"))
        .bind(role.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let done = match row {
        Some(r) => r.try_get::<i64, _>(0)?,
        None => 0,
    };
    let steps = migrations(role);
    for step in steps.iter().skip(usize::try_from(done).unwrap_or(0)) {
        sqlx::query(step).execute(&mut *conn).await?;
    }
    let version = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    if done < version {
        let upsert = dialect.upsert("apim_schema", "role", &["role", "version"]);
        sqlx::query(&dialect.sql(&upsert))
            .bind(role.as_str())
            .bind(version)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A text column; MySQL's TEXT arrives through the Any driver as bytes.
fn text(row: &AnyRow, i: usize) -> Result<String, DbError> {
    match row.try_get::<String, _>(i) {
        Ok(s) => Ok(s),
        Err(_) => {
            let bytes: Vec<u8> = row.try_get(i).map_err(db_error)?;
            String::from_utf8(bytes)
                .map_err(|e| DbError::unavailable(format!("a stored text is not UTF-8: {e}")))
        }
    }
}

fn api_of(row: &AnyRow) -> Result<Api, DbError> {
    let data = text(row, 0)?;
    serde_json::from_str(&data)
        .map_err(|e| DbError::unavailable(format!("a stored API cannot be read: {e}")))
}

/// A row of `SELECT id, name, owner FROM apim_applications`.
fn application_of(r: &AnyRow) -> Result<Application, DbError> {
    Ok(Application {
        id: text(r, 0)?,
        name: text(r, 1)?,
        owner: text(r, 2)?,
    })
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Storage for SqlStorage {
    async fn create_user(&self, user: &User) -> Db<bool> {
        let c = self.conn(Role::User)?;
        let roles = serde_json::to_string(&user.roles).unwrap_or_default();
        let sql = c.dialect.sql(&c.dialect.insert_new(
            "apim_users",
            "name, password_hash, roles",
            "?, ?, ?",
        ));
        let r = sqlx::query(&sql)
            .bind(&user.name)
            .bind(&user.password_hash)
            .bind(roles)
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(r.rows_affected() == 1)
    }

    async fn user(&self, name: &str) -> Db<Option<User>> {
        let c = self.conn(Role::User)?;
        let row = sqlx::query(
            &c.dialect
                .sql("SELECT name, password_hash, roles FROM apim_users WHERE name = ?"),
        )
        .bind(name)
        .fetch_optional(&c.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| {
            let roles = text(&r, 2)?;
            Ok(User {
                name: text(&r, 0)?,
                password_hash: text(&r, 1)?,
                roles: serde_json::from_str(&roles).unwrap_or_default(),
            })
        })
        .transpose()
    }

    async fn create_session(&self, s: &Session) -> Db<()> {
        let c = self.conn(Role::User)?;
        let sql = c.dialect.sql(&c.dialect.upsert(
            "apim_sessions",
            "token_hash",
            &["token_hash", "user_name", "expires_ms"],
        ));
        sqlx::query(&sql)
            .bind(&s.token_hash)
            .bind(&s.user)
            .bind(ms(s.expires_ms))
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn purge_sessions(&self, now_ms: u64) -> Db<u64> {
        let c = self.conn(Role::User)?;
        let r = sqlx::query(
            &c.dialect
                .sql("DELETE FROM apim_sessions WHERE expires_ms < ?"),
        )
        .bind(ms(now_ms))
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected())
    }

    async fn purge_tokens(&self, now_ms: u64) -> Db<u64> {
        let c = self.conn(Role::Apim)?;
        let r = sqlx::query(
            &c.dialect
                .sql("DELETE FROM apim_tokens WHERE expires_ms < ?"),
        )
        .bind(ms(now_ms))
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected())
    }

    async fn delete_sessions_of(&self, user: &str) -> Db<()> {
        let c = self.conn(Role::User)?;
        sqlx::query(
            &c.dialect
                .sql("DELETE FROM apim_sessions WHERE user_name = ?"),
        )
        .bind(user)
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn set_password(&self, user: &str, hash: &str) -> Db<bool> {
        let c = self.conn(Role::User)?;
        let r = sqlx::query(
            &c.dialect
                .sql("UPDATE apim_users SET password_hash = ? WHERE name = ?"),
        )
        .bind(hash)
        .bind(user)
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected() >= 1)
    }

    async fn delete_session(&self, token_hash: &str) -> Db<()> {
        let c = self.conn(Role::User)?;
        sqlx::query(
            &c.dialect
                .sql("DELETE FROM apim_sessions WHERE token_hash = ?"),
        )
        .bind(token_hash)
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn record_failure(&self, subject: &str, now_ms: u64, window_ms: u64) -> Db<Failures> {
        let c = self.conn(Role::User)?;
        // Within the window: one more, in one statement, so concurrent failures on several
        // nodes all count. Otherwise a new window starts at this one.
        let counted = sqlx::query(&c.dialect.sql(
            "UPDATE apim_failures SET failures = failures + 1 WHERE subject = ? AND since_ms > ?",
        ))
        .bind(subject)
        .bind(ms(now_ms.saturating_sub(window_ms)))
        .execute(&c.pool)
        .await
        .map_err(db_error)?
        .rows_affected();
        if counted == 0 {
            let sql = c.dialect.sql(&c.dialect.upsert(
                "apim_failures",
                "subject",
                &["subject", "failures", "since_ms"],
            ));
            sqlx::query(&sql)
                .bind(subject)
                .bind(1_i64)
                .bind(ms(now_ms))
                .execute(&c.pool)
                .await
                .map_err(db_error)?;
        }
        self.failures(subject, now_ms, window_ms).await
    }

    async fn failures(&self, subject: &str, now_ms: u64, window_ms: u64) -> Db<Failures> {
        let c = self.conn(Role::User)?;
        let row = sqlx::query(&c.dialect.sql(
            "SELECT failures, since_ms FROM apim_failures WHERE subject = ? AND since_ms > ?",
        ))
        .bind(subject)
        .bind(ms(now_ms.saturating_sub(window_ms)))
        .fetch_optional(&c.pool)
        .await
        .map_err(db_error)?;
        match row {
            None => Ok(Failures::default()),
            Some(r) => {
                let count: i64 = r.try_get(0).map_err(db_error)?;
                let since: i64 = r.try_get(1).map_err(db_error)?;
                Ok(Failures {
                    count: u64::try_from(count).unwrap_or(0),
                    since_ms: u64::try_from(since).unwrap_or(0),
                })
            }
        }
    }

    async fn purge_failures(&self, now_ms: u64, window_ms: u64) -> Db<u64> {
        let c = self.conn(Role::User)?;
        let r = sqlx::query(
            &c.dialect
                .sql("DELETE FROM apim_failures WHERE since_ms <= ?"),
        )
        .bind(ms(now_ms.saturating_sub(window_ms)))
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected())
    }

    async fn clear_failures(&self, subject: &str) -> Db<()> {
        let c = self.conn(Role::User)?;
        sqlx::query(&c.dialect.sql("DELETE FROM apim_failures WHERE subject = ?"))
            .bind(subject)
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> Db<Option<Session>> {
        let c = self.conn(Role::User)?;
        let row = sqlx::query(&c.dialect.sql(
            "SELECT token_hash, user_name, expires_ms FROM apim_sessions WHERE token_hash = ?",
        ))
        .bind(token_hash)
        .fetch_optional(&c.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| {
            let expires: i64 = r.try_get(2).map_err(db_error)?;
            Ok(Session {
                token_hash: text(&r, 0)?,
                user: text(&r, 1)?,
                expires_ms: u64::try_from(expires).unwrap_or(0),
            })
        })
        .transpose()
    }

    async fn save_api(&self, api: &Api) -> Db<()> {
        let c = self.conn(Role::Apim)?;
        let sql = c
            .dialect
            .sql(&c.dialect.upsert("apim_apis", "id", &["id", "data"]));
        sqlx::query(&sql)
            .bind(&api.id)
            .bind(serde_json::to_string(api).unwrap_or_default())
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn api(&self, id: &str) -> Db<Option<Api>> {
        let c = self.conn(Role::Apim)?;
        let row = sqlx::query(&c.dialect.sql("SELECT data FROM apim_apis WHERE id = ?"))
            .bind(id)
            .fetch_optional(&c.pool)
            .await
            .map_err(db_error)?;
        row.map(|r| api_of(&r)).transpose()
    }

    async fn apis(&self) -> Db<Vec<Api>> {
        let c = self.conn(Role::Apim)?;
        let rows = sqlx::query("SELECT data FROM apim_apis ORDER BY id")
            .fetch_all(&c.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(api_of).collect()
    }

    async fn create_application(&self, app: &Application) -> Db<bool> {
        let c = self.conn(Role::Apim)?;
        let sql = c.dialect.sql(&c.dialect.insert_new(
            "apim_applications",
            "id, name, owner",
            "?, ?, ?",
        ));
        let r = sqlx::query(&sql)
            .bind(&app.id)
            .bind(&app.name)
            .bind(&app.owner)
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(r.rows_affected() == 1)
    }

    async fn application(&self, id: &str) -> Db<Option<Application>> {
        let c = self.conn(Role::Apim)?;
        let row = sqlx::query(
            &c.dialect
                .sql("SELECT id, name, owner FROM apim_applications WHERE id = ?"),
        )
        .bind(id)
        .fetch_optional(&c.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| application_of(&r)).transpose()
    }

    async fn applications(&self, owner: &str) -> Db<Vec<Application>> {
        let c = self.conn(Role::Apim)?;
        let rows = sqlx::query(
            &c.dialect
                .sql("SELECT id, name, owner FROM apim_applications WHERE owner = ? ORDER BY id"),
        )
        .bind(owner)
        .fetch_all(&c.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(application_of).collect()
    }

    async fn subscribe(&self, application: &str, api: &str) -> Db<bool> {
        let c = self.conn(Role::Apim)?;
        let sql = c.dialect.sql(&c.dialect.insert_new(
            "apim_subscriptions",
            "application, api",
            "?, ?",
        ));
        let r = sqlx::query(&sql)
            .bind(application)
            .bind(api)
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(r.rows_affected() == 1)
    }

    async fn unsubscribe(&self, application: &str, api: &str) -> Db<bool> {
        let c = self.conn(Role::Apim)?;
        let r = sqlx::query(
            &c.dialect
                .sql("DELETE FROM apim_subscriptions WHERE application = ? AND api = ?"),
        )
        .bind(application)
        .bind(api)
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected() == 1)
    }

    async fn subscribed(&self, application: &str, api: &str) -> Db<bool> {
        let c = self.conn(Role::Apim)?;
        let row = sqlx::query(
            &c.dialect
                .sql("SELECT api FROM apim_subscriptions WHERE application = ? AND api = ?"),
        )
        .bind(application)
        .bind(api)
        .fetch_optional(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn subscriptions(&self, application: &str) -> Db<Vec<String>> {
        let c = self.conn(Role::Apim)?;
        let rows = sqlx::query(
            &c.dialect
                .sql("SELECT api FROM apim_subscriptions WHERE application = ? ORDER BY api"),
        )
        .bind(application)
        .fetch_all(&c.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(|r| text(r, 0)).collect()
    }

    async fn all_subscriptions(&self) -> Db<Vec<(String, String)>> {
        let c = self.conn(Role::Apim)?;
        let rows = sqlx::query(
            &c.dialect
                .sql("SELECT application, api FROM apim_subscriptions ORDER BY application, api"),
        )
        .fetch_all(&c.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| Ok((text(r, 0)?, text(r, 1)?)))
            .collect()
    }

    async fn save_client(&self, k: &ClientKeys) -> Db<()> {
        let c = self.conn(Role::Apim)?;
        let sql = c.dialect.sql(&c.dialect.upsert(
            "apim_clients",
            "consumer_key",
            &["consumer_key", "secret_hash", "application"],
        ));
        sqlx::query(&sql)
            .bind(&k.consumer_key)
            .bind(&k.secret_hash)
            .bind(&k.application)
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn client(&self, consumer_key: &str) -> Db<Option<ClientKeys>> {
        let c = self.conn(Role::Apim)?;
        let row = sqlx::query(&c.dialect.sql("SELECT consumer_key, secret_hash, application FROM apim_clients WHERE consumer_key = ?")).bind(consumer_key).fetch_optional(&c.pool).await.map_err(db_error)?;
        row.map(|r| {
            Ok(ClientKeys {
                consumer_key: text(&r, 0)?,
                secret_hash: text(&r, 1)?,
                application: text(&r, 2)?,
            })
        })
        .transpose()
    }

    async fn save_token(&self, t: &Token) -> Db<()> {
        let c = self.conn(Role::Apim)?;
        let sql = c.dialect.sql(&c.dialect.upsert(
            "apim_tokens",
            "token_hash",
            &[
                "token_hash",
                "consumer_key",
                "application",
                "expires_ms",
                "revoked",
            ],
        ));
        sqlx::query(&sql)
            .bind(&t.token_hash)
            .bind(&t.consumer_key)
            .bind(&t.application)
            .bind(ms(t.expires_ms))
            .bind(i64::from(t.revoked))
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn token(&self, token_hash: &str) -> Db<Option<Token>> {
        let c = self.conn(Role::Apim)?;
        let row = sqlx::query(&c.dialect.sql("SELECT token_hash, consumer_key, application, expires_ms, revoked FROM apim_tokens WHERE token_hash = ?")).bind(token_hash).fetch_optional(&c.pool).await.map_err(db_error)?;
        row.map(|r| {
            let expires: i64 = r.try_get(3).map_err(db_error)?;
            let revoked: i64 = r.try_get(4).map_err(db_error)?;
            Ok(Token {
                token_hash: text(&r, 0)?,
                consumer_key: text(&r, 1)?,
                application: text(&r, 2)?,
                expires_ms: u64::try_from(expires).unwrap_or(0),
                revoked: revoked != 0,
            })
        })
        .transpose()
    }

    async fn revoke_token(&self, token_hash: &str, at_ms: u64) -> Db<bool> {
        let c = self.conn(Role::Apim)?;
        let r = sqlx::query(
            &c.dialect
                .sql("UPDATE apim_tokens SET revoked = 1, revoked_ms = ? WHERE token_hash = ?"),
        )
        .bind(ms(at_ms))
        .bind(token_hash)
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(r.rows_affected() >= 1)
    }

    async fn revoke_application_keys(&self, application: &str, at_ms: u64) -> Db<Vec<String>> {
        let c = self.conn(Role::Apim)?;
        // The keys first: no new token can be had once this returns.
        sqlx::query(
            &c.dialect
                .sql("DELETE FROM apim_clients WHERE application = ?"),
        )
        .bind(application)
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        let rows = sqlx::query(&c.dialect.sql(
            "SELECT token_hash FROM apim_tokens WHERE application = ? AND revoked = 0 ORDER BY token_hash",
        ))
        .bind(application)
        .fetch_all(&c.pool)
        .await
        .map_err(db_error)?;
        let hashes: Vec<String> = rows.iter().map(|r| text(r, 0)).collect::<Db<_>>()?;
        sqlx::query(&c.dialect.sql(
            "UPDATE apim_tokens SET revoked = 1, revoked_ms = ? WHERE application = ? AND revoked = 0",
        ))
        .bind(ms(at_ms))
        .bind(application)
        .execute(&c.pool)
        .await
        .map_err(db_error)?;
        Ok(hashes)
    }

    async fn revoked_since(&self, since_ms: u64) -> Db<Vec<(String, u64)>> {
        let c = self.conn(Role::Apim)?;
        let rows = sqlx::query(&c.dialect.sql("SELECT token_hash, revoked_ms FROM apim_tokens WHERE revoked = 1 AND revoked_ms >= ? ORDER BY token_hash"))
            .bind(ms(since_ms))
            .fetch_all(&c.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get(1).map_err(db_error)?;
                Ok((text(r, 0)?, u64::try_from(at).unwrap_or(0)))
            })
            .collect()
    }

    async fn register(&self, api: &Api) -> Db<()> {
        let c = self.conn(Role::Registry)?;
        let sql = c
            .dialect
            .sql(&c.dialect.upsert("apim_registry", "id", &["id", "data"]));
        sqlx::query(&sql)
            .bind(&api.id)
            .bind(serde_json::to_string(api).unwrap_or_default())
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn unregister(&self, id: &str) -> Db<()> {
        let c = self.conn(Role::Registry)?;
        sqlx::query(&c.dialect.sql("DELETE FROM apim_registry WHERE id = ?"))
            .bind(id)
            .execute(&c.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn registered(&self) -> Db<Vec<Api>> {
        let c = self.conn(Role::Registry)?;
        let rows = sqlx::query("SELECT data FROM apim_registry ORDER BY id")
            .fetch_all(&c.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(api_of).collect()
    }
}
