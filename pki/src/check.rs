//! `apim check --certs DIR`: the certificate files of every node and balancer checked against
//! the topology, each problem a diagnostic pointing at the host it is about.

use crate::dir::{Subject, subjects};
use crate::inspect::{self, ProblemKind};
use apim_compiler::plan::{Plan, TlsFiles};
use apim_topology::{Diagnostic, Label, Span, Topology, code};
use std::path::Path;

code!(
    CERT_INVALID,
    "E090",
    "cert-invalid",
    Error,
    "A node's or balancer's certificate files cannot be used: missing or unreadable, not signed by the deployment CA, a key that is not the certificate's, expired or not yet valid, or another SPIFFE ID than the node's.",
    "Run `apim certs TOPOLOGY -o DIR` again: it renews exactly the certificates that do not fit."
);

code!(
    CERT_NAME_MISMATCH,
    "E091",
    "cert-name-mismatch",
    Error,
    "A certificate does not name the host the topology gives its node or balancer, so every peer that checks names would refuse it (\"hostname mismatch\").",
    "Make the certificate again for the host in the topology (`apim certs` does), or correct the host."
);

code!(
    CERT_EXPIRING,
    "W090",
    "cert-expiring",
    Warning,
    "A certificate expires within 30 days.",
    "Run `apim certs` again before then: it renews certificates that expire within 30 days."
);

/// The codes of certificate checks, in documentation order.
pub static CODES: &[&apim_topology::Code] = &[&CERT_INVALID, &CERT_NAME_MISMATCH, &CERT_EXPIRING];

/// Where a node's or balancer's host is written in the topology.
fn host_span(t: &Topology, name: &str) -> Span {
    for c in t.clusters.values() {
        for (i, h) in c.hosts.iter().enumerate() {
            if c.node_name(i) == name {
                return h.span;
            }
        }
    }
    t.load_balancers
        .get(name)
        .and_then(|lb| lb.host.as_ref().map(|h| h.span))
        .unwrap_or_default()
}

/// Checks the files `apim certs` would have written in `dir` at `now` (seconds since the Unix
/// epoch) for every node and balancer of the topology.
pub fn check_dir(t: &Topology, plan: &Plan, dir: &Path, now: i64) -> Vec<Diagnostic> {
    let dir_text = dir.display().to_string();
    let mut out = Vec::new();
    for s in subjects(plan) {
        let files = TlsFiles::in_dir(&dir_text, &s.name);
        out.extend(check_one(t, &s, &files, now));
    }
    out
}

fn check_one(t: &Topology, s: &Subject, files: &TlsFiles, now: i64) -> Vec<Diagnostic> {
    let at = host_span(t, &s.name);
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let texts = (read(&files.ca), read(&files.cert), read(&files.key));
    let (ca, cert, key) = match texts {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (a, b, c) => {
            let missing: Vec<String> = [a, b, c].into_iter().filter_map(Result::err).collect();
            return vec![
                Diagnostic::new(
                    &CERT_INVALID,
                    format!(
                        "the files of {} cannot be read: {}",
                        s.name,
                        missing.join("; ")
                    ),
                    Label::new(at, format!("{} runs here", s.name)),
                )
                .with_hint("make them with `apim certs TOPOLOGY -o DIR`"),
            ];
        }
    };
    inspect::verify(s, &ca, &cert, &key, now)
        .into_iter()
        .map(|p| {
            let (code, hint) = match &p.kind {
                ProblemKind::NameMissing(_) => (
                    &CERT_NAME_MISMATCH,
                    format!(
                        "make the certificate again for `{}` (`apim certs` renews it), or correct the host",
                        s.host
                    ),
                ),
                ProblemKind::ExpiresSoon => (
                    &CERT_EXPIRING,
                    "renew it: `apim certs` renews certificates that expire within 30 days"
                        .to_string(),
                ),
                _ => (
                    &CERT_INVALID,
                    format!("{}; `apim certs` makes the files anew", files.cert),
                ),
            };
            Diagnostic::new(code, p.message, Label::new(at, format!("{}'s host", s.name)))
                .with_hint(hint)
        })
        .collect()
}
