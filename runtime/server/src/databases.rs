//! Where each database of a node really is: `${NAME}` references expanded from the
//! environment, and on `apim up`, databases this machine cannot use replaced by SQLite files —
//! decided from the URL alone, never by probing the network.

use crate::storage::Role;
use apim_compiler::plan::{DatabasePlan, NodePlan};
use apim_topology::vocab::Engine;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Replaces each `${NAME}` with the variable's value; names a missing variable.
pub fn expand(text: &str) -> Result<String, String> {
    expand_with(text, |name| std::env::var(name).ok())
}

/// `expand`, with the variables from `lookup`.
pub fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let missing = std::cell::RefCell::new(Vec::new());
    let out = apim_compiler::secrets::rewrite(text, |name| match lookup(name) {
        Some(v) => v,
        None => {
            missing.borrow_mut().push(name.to_string());
            String::new()
        }
    });
    match missing.into_inner().as_slice() {
        [] => Ok(out),
        names => Err(format!(
            "set the environment variable{} {}",
            if names.len() > 1 { "s" } else { "" },
            names.join(", ")
        )),
    }
}

/// A SQLite URL for `path`, creating the file when missing: owner-only (0600), as SQLite then
/// gives its journal files the database file's mode.
pub fn sqlite_url(path: &Path) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Where a network database URL connects, as its driver reads it (query-parameter hosts,
/// sockets, defaults from the environment included): `None` for a Unix socket.
fn connects_to(engine: Engine, url: &str) -> Result<Option<String>, String> {
    use std::str::FromStr;
    let bad = |e: sqlx::Error| format!("the URL cannot be read: {e}");
    match engine {
        Engine::Sqlite => Ok(None),
        Engine::Postgres => {
            let o = sqlx::postgres::PgConnectOptions::from_str(url).map_err(bad)?;
            Ok(o.get_socket()
                .is_none()
                .then(|| o.get_host().to_string())
                .filter(|h| !h.starts_with('/')))
        }
        Engine::Mysql => {
            let o = sqlx::mysql::MySqlConnectOptions::from_str(url).map_err(bad)?;
            Ok(o.get_socket()
                .is_none()
                .then(|| o.get_host().to_string())
                .filter(|h| !h.starts_with('/')))
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether this machine may use a database as written: SQLite, a socket, or a loopback host —
/// decided on the URL after its references are expanded, parsed as the driver parses it.
pub fn usable_here(engine: Engine, expanded: &str) -> bool {
    match connects_to(engine, expanded) {
        Ok(None) => true,
        Ok(Some(host)) => is_loopback(&host),
        Err(_) => false,
    }
}

/// A SQLite URL of the topology, with relative paths placed under `data`.
fn sqlite_under(url: &str, data: &Path) -> String {
    let path = url
        .split_once(':')
        .map_or(url, |(_, p)| p)
        .trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    let p = Path::new(path);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        data.join(p)
    };
    if let Some(parent) = p.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    sqlite_url(&p)
}

/// The ready URL of every database of the deployment for `apim up`, and what was replaced.
pub fn for_up(
    databases: &[DatabasePlan],
    data: &Path,
) -> Result<(BTreeMap<String, String>, Vec<String>), String> {
    let mut urls = BTreeMap::new();
    let mut notes = Vec::new();
    for d in databases {
        let expanded = expand(&d.url);
        let url = match expanded {
            Ok(url) if d.engine == Engine::Sqlite => sqlite_under(&url, data),
            Err(e) if d.engine == Engine::Sqlite => {
                return Err(format!("database `{}`: {e}", d.name));
            }
            Ok(url) if usable_here(d.engine, &url) => url,
            other => {
                // Not provably on this machine: never connected to.
                let file = data.join(format!("{}.db", d.name));
                let why = match other {
                    Ok(url) => match connects_to(d.engine, &url) {
                        Ok(Some(host)) => {
                            format!("({} on {host}) is not on this machine", d.engine)
                        }
                        Ok(None) => format!("({}) is not on this machine", d.engine),
                        Err(e) => format!("({}: {e}) cannot be used as written", d.engine),
                    },
                    Err(e) => format!(
                        "({}; to use it as written, {e}) cannot be proven to be on this machine",
                        d.engine
                    ),
                };
                notes.push(format!(
                    "database `{}` {why}: using the SQLite file {}",
                    d.name,
                    file.display()
                ));
                sqlite_url(&file)
            }
        };
        urls.insert(d.name.clone(), url);
    }
    Ok((urls, notes))
}

/// The role -> URL map of one node, from the deployment's ready URLs.
pub fn of_node(node: &NodePlan, ready: &BTreeMap<String, String>) -> BTreeMap<Role, String> {
    node.databases
        .iter()
        .filter_map(|d| Some((d.role, ready.get(&d.database)?.clone())))
        .collect()
}

/// The role -> URL map of a node run by `apim node`: its URLs as written, references expanded,
/// relative SQLite paths under `data`.
pub fn for_node(node: &NodePlan, data: &Path) -> Result<BTreeMap<Role, String>, String> {
    node.databases
        .iter()
        .map(|d| {
            let url = expand(&d.url).map_err(|e| format!("database `{}`: {e}", d.database))?;
            let url = if d.engine == Engine::Sqlite {
                sqlite_under(&url, data)
            } else {
                url
            };
            Ok((d.role, url))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_databases_are_used_as_written() {
        let pg = |url: &str| usable_here(Engine::Postgres, url);
        let my = |url: &str| usable_here(Engine::Mysql, url);
        assert!(pg("postgres://u:secret@127.0.0.1:5432/x"));
        assert!(my("mysql://root@localhost/x"));
        assert!(pg("postgres:///x?host=/run/postgresql"));
        assert!(pg("postgres://[::1]:5432/x"));
        assert!(!pg("postgres://apim@10.0.9.10:5432/x"));
        assert!(!my("mysql://db.example/x"));
        // The driver's own reading decides, query-parameter hosts included.
        assert!(!pg("postgres:///db?host=10.0.9.10"));
        assert!(!pg("postgres://localhost/db?host=10.0.9.10"));
        assert!(!pg("postgres://127.0.0.1/db?hostaddr=10.0.9.10"));
        assert!(my(
            "mysql://root@localhost/x?socket=/run/mysqld/mysqld.sock"
        ));
        assert!(!pg("not a url"));
    }

    #[test]
    fn a_reference_is_expanded_before_locality_is_decided() {
        let lookup = |name: &str| {
            (name == "DATABASE_URL").then(|| "postgres://apim@10.0.9.10:5432/prod".to_string())
        };
        let url = expand_with("${DATABASE_URL}", lookup).expect("expands");
        assert!(!usable_here(Engine::Postgres, &url));
        assert!(expand_with("${MISSING}", lookup).is_err());
    }
}

/// A database server a drill may use: PostgreSQL or MariaDB, given by a URL on this machine
/// that takes administrative statements (`CREATE SCHEMA`, `CREATE DATABASE`).
#[derive(Clone, Debug)]
pub struct Server {
    pub engine: Engine,
    admin: url::Url,
}

impl Server {
    pub fn parse(admin: &str) -> Result<Server, String> {
        let url = url::Url::parse(admin).map_err(|e| format!("`{admin}`: {e}"))?;
        let engine = match url.scheme() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            other => {
                return Err(format!(
                    "`{other}://`: a drill's database server is PostgreSQL (postgres://) or MariaDB (mysql://)"
                ));
            }
        };
        if !usable_here(engine, admin) || url.host_str().is_none() {
            return Err(format!(
                "`{admin}` is not a server on this machine's loopback: a drill uses only this machine's own"
            ));
        }
        Ok(Server { engine, admin: url })
    }

    /// The server's `host:port`.
    pub fn address(&self) -> String {
        let port = self.admin.port().unwrap_or(match self.engine {
            Engine::Mysql => 3306,
            _ => 5432,
        });
        format!("{}:{port}", self.admin.host_str().unwrap_or("127.0.0.1"))
    }

    async fn admin(&self, sql: &str) -> Result<(), String> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(self.admin.as_str())
            .await
            .map_err(|e| format!("{}: {e}", self.address()))?;
        let done = sqlx::query(sql).execute(&pool).await;
        pool.close().await;
        done.map(|_| ()).map_err(|e| format!("{sql}: {e}"))
    }

    /// Makes a place of its own named `name` (a schema in PostgreSQL, a database in MariaDB;
    /// letters, digits and `_`) and returns the URL of it reached through `via` (`host:port`,
    /// a relay in front of this server).
    pub async fn create(&self, name: &str, via: (&str, u16)) -> Result<String, String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("`{name}` is not a plain identifier"));
        }
        let mut url = self.admin.clone();
        url.set_host(Some(via.0)).map_err(|e| e.to_string())?;
        url.set_port(Some(via.1))
            .map_err(|()| format!("{} takes no port", self.admin))?;
        match self.engine {
            Engine::Mysql => {
                self.admin(&format!("CREATE DATABASE {name}")).await?;
                url.set_path(&format!("/{name}"));
            }
            _ => {
                self.admin(&format!("CREATE SCHEMA {name}")).await?;
                url.query_pairs_mut()
                    .append_pair("options", &format!("-c search_path={name}"));
            }
        }
        Ok(url.to_string())
    }

    /// Removes what `create` made.
    pub async fn drop(&self, name: &str) -> Result<(), String> {
        match self.engine {
            Engine::Mysql => self.admin(&format!("DROP DATABASE IF EXISTS {name}")).await,
            _ => {
                self.admin(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            }
        }
    }
}
