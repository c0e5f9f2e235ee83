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
    let missing = std::cell::RefCell::new(Vec::new());
    let out = apim_compiler::secrets::rewrite(text, |name| match std::env::var(name) {
        Ok(v) => v,
        Err(_) => {
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

/// A SQLite URL for `path`, creating the file when missing.
fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// The host of a network database URL; empty for a Unix socket.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

/// Whether this machine may use a database as written: SQLite, a socket, or a loopback host.
pub fn usable_here(d: &DatabasePlan) -> bool {
    match d.engine {
        Engine::Sqlite => true,
        _ => {
            let host = url_host(&d.url);
            host.is_empty()
                || host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
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
        let url = if d.engine == Engine::Sqlite {
            sqlite_under(
                &expand(&d.url).map_err(|e| format!("database `{}`: {e}", d.name))?,
                data,
            )
        } else if usable_here(d) {
            expand(&d.url).map_err(|e| format!("database `{}`: {e}", d.name))?
        } else {
            let file = data.join(format!("{}.db", d.name));
            notes.push(format!(
                "database `{}` ({} on {}) is not on this machine: using the SQLite file {}",
                d.name,
                d.engine,
                url_host(&d.url),
                file.display()
            ));
            sqlite_url(&file)
        };
        urls.insert(d.name.clone(), url);
    }
    Ok((urls, notes))
}

/// The role -> URL map of one node, from the deployment's ready URLs.
pub fn of_node(node: &NodePlan, ready: &BTreeMap<String, String>) -> BTreeMap<Role, String> {
    node.databases
        .iter()
        .filter_map(|d| Some((crate::node::role(d.role), ready.get(&d.database)?.clone())))
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
            Ok((crate::node::role(d.role), url))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(engine: Engine, url: &str) -> DatabasePlan {
        DatabasePlan {
            name: "d".into(),
            roles: Vec::new(),
            engine,
            url: url.into(),
            network: None,
        }
    }

    #[test]
    fn only_local_databases_are_used_as_written() {
        assert!(usable_here(&db(
            Engine::Postgres,
            "postgres://u:${P}@127.0.0.1:5432/x"
        )));
        assert!(usable_here(&db(Engine::Mysql, "mysql://root@localhost/x")));
        assert!(usable_here(&db(
            Engine::Postgres,
            "postgres:///x?host=/run/postgresql"
        )));
        assert!(!usable_here(&db(
            Engine::Postgres,
            "postgres://apim@10.0.9.10:5432/x"
        )));
        assert!(!usable_here(&db(Engine::Mysql, "mysql://db.example/x")));
    }
}
