//! A folder of certificates for a plan: `ca.crt` (and `ca.key` when apim made the CA), then
//! `NAME.crt` and `NAME.key` (HAProxy finds a key beside its `.crt`) per node and balancer. A rerun keeps what is still good and
//! renews only what is missing, wrong for the plan, or expiring within `RENEW_DAYS`.

use crate::files::{create_private_dir, write_private};
use crate::inspect::{self, ProblemKind};
use crate::issue::Ca;
use apim_compiler::HostMap;
use apim_compiler::plan::{Plan, TlsFiles};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A node or a balancer: who a certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    pub identity: String,
    /// The address the others use: must be among its names.
    pub host: String,
    pub sans: Vec<String>,
    pub tls: TlsFiles,
}

/// Every node and balancer of a plan.
pub fn subjects(plan: &Plan) -> Vec<Subject> {
    subjects_mapped(plan, None)
}

/// Every node and balancer of a plan; with a host map, each also names its mapped address
/// (and is checked against it), besides its own.
pub fn subjects_mapped(plan: &Plan, hosts: Option<&HostMap>) -> Vec<Subject> {
    let mut out = plain_subjects(plan);
    if let Some(map) = hosts {
        for s in &mut out {
            let mapped = map
                .nodes
                .get(&s.name)
                .or_else(|| map.balancers.get(&s.name));
            if let Some(m) = mapped {
                if !s.sans.contains(m) {
                    s.sans.push(m.clone());
                }
                s.host = m.clone();
            }
        }
    }
    out
}

fn plain_subjects(plan: &Plan) -> Vec<Subject> {
    let nodes = plan.nodes.iter().map(|n| Subject {
        name: n.name.clone(),
        identity: n.identity.clone(),
        host: n.host.clone(),
        sans: plan.node_sans(n),
        tls: n.tls.clone(),
    });
    let balancers = plan.balancers.iter().map(|b| Subject {
        name: b.name.clone(),
        identity: b.identity.clone(),
        host: b.host.clone(),
        sans: plan.balancer_sans(b),
        tls: b.tls.clone(),
    });
    nodes.chain(balancers).collect()
}

/// What `write_dir` did with one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileAction {
    pub path: String,
    /// `created`, `renewed` or `kept`.
    pub action: &'static str,
    /// Why it was renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Written {
    pub ca: String,
    pub files: Vec<FileAction>,
}

pub const MANIFEST: &str = "apim-certs.json";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Makes or renews the certificates of `subjects` (of the deployment `deployment`) in `dir`,
/// signed by `ca` when given (its key is never written), else by the CA found in `dir`, else
/// by a new one.
pub fn write_dir(
    deployment: &str,
    subjects: &[Subject],
    dir: &Path,
    ca: Option<Ca>,
) -> Result<Written, String> {
    create_private_dir(dir)?;
    let mut written = Written::default();
    let ca_cert = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let ca = match ca {
        Some(given) => {
            let same = std::fs::read_to_string(&ca_cert).is_ok_and(|t| t == given.cert_pem);
            if !same {
                write_private(&ca_cert, &given.cert_pem, 0o644)?;
            }
            written.files.push(FileAction {
                path: path_text(&ca_cert),
                action: if same { "kept" } else { "created" },
                why: None,
            });
            given
        }
        None => match (
            std::fs::read_to_string(&ca_cert),
            std::fs::read_to_string(&ca_key),
        ) {
            (Ok(cert_pem), Ok(key_pem)) => {
                for p in [&ca_cert, &ca_key] {
                    written.files.push(FileAction {
                        path: path_text(p),
                        action: "kept",
                        why: None,
                    });
                }
                Ca { cert_pem, key_pem }
            }
            _ => {
                let ca = Ca::generate(deployment)?;
                write_private(&ca_cert, &ca.cert_pem, 0o644)?;
                write_private(&ca_key, &ca.key_pem, 0o600)?;
                for p in [&ca_cert, &ca_key] {
                    written.files.push(FileAction {
                        path: path_text(p),
                        action: "created",
                        why: None,
                    });
                }
                ca
            }
        },
    };
    written.ca = path_text(&ca_cert);
    let now = now();
    for s in subjects {
        let cert = dir.join(format!("{}.crt", s.name));
        let key = dir.join(format!("{}.key", s.name));
        let old = (
            std::fs::read_to_string(&cert),
            std::fs::read_to_string(&key),
        );
        let why = match &old {
            (Ok(c), Ok(k)) => {
                let problems = inspect::verify(s, &ca.cert_pem, c, k, now);
                let missing_name = |n: &String| {
                    inspect::pem_certs(c)
                        .ok()
                        .and_then(|d| inspect::Facts::of_der(&d[0]).ok())
                        .is_some_and(|f| !f.covers(n))
                };
                match problems.first() {
                    Some(p) => Some(p.message.clone()),
                    None => s
                        .sans
                        .iter()
                        .find(|n| missing_name(n))
                        .map(|n| format!("it does not name `{n}`")),
                }
            }
            _ => None,
        };
        let exists = matches!(old, (Ok(_), Ok(_)));
        if exists && why.is_none() {
            haproxy_key_link(dir, &s.name)?;
            for p in [&cert, &key] {
                written.files.push(FileAction {
                    path: path_text(p),
                    action: "kept",
                    why: None,
                });
            }
            continue;
        }
        let issued = ca.issue(&s.identity, &s.sans)?;
        write_private(&cert, &issued.cert_pem, 0o644)?;
        write_private(&key, &issued.key_pem, 0o600)?;
        haproxy_key_link(dir, &s.name)?;
        for p in [&cert, &key] {
            written.files.push(FileAction {
                path: path_text(p),
                action: if exists { "renewed" } else { "created" },
                why: why.clone(),
            });
        }
    }
    let manifest = serde_json::to_string_pretty(&written).unwrap_or_default();
    write_private(&dir.join(MANIFEST), &manifest, 0o644)?;
    Ok(written)
}

/// HAProxy 2.6 reads the key of `crt NAME.crt` from `NAME.crt.key`: a relative link to the
/// key, so the secret exists once.
fn haproxy_key_link(dir: &Path, name: &str) -> Result<(), String> {
    let link = dir.join(format!("{name}.crt.key"));
    if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(&format!("{name}.key"))) {
        return Ok(());
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("{name}.key"), &link)
        .map_err(|e| format!("cannot link {}: {e}", link.display()))
}

/// Reads a CA the user gives (`--ca-cert`, `--ca-key`).
pub fn read_ca(cert: &Path, key: &Path) -> Result<Ca, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let ca = Ca {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    };
    let der = inspect::pem_certs(&ca.cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    let facts = inspect::Facts::of_der(&der[0]).map_err(|e| format!("{}: {e}", cert.display()))?;
    if !facts.is_ca {
        return Err(format!("{} is not a CA certificate", cert.display()));
    }
    // Signing a throwaway proves the key is the certificate's.
    let probe = ca.issue("spiffe://probe/node/probe", &["probe".into()])?;
    let problems = inspect::verify(
        &Subject {
            name: "probe".into(),
            identity: "spiffe://probe/node/probe".into(),
            host: "probe".into(),
            sans: vec!["probe".into()],
            tls: TlsFiles::in_dir(".", "probe"),
        },
        &ca.cert_pem,
        &probe.cert_pem,
        &probe.key_pem,
        now(),
    );
    if problems.iter().any(|p| p.kind == ProblemKind::OtherCa) {
        return Err(format!(
            "{} is not the key of {}",
            key.display(),
            cert.display()
        ));
    }
    Ok(ca)
}

fn path_text(p: &Path) -> String {
    PathBuf::from(p).display().to_string()
}
