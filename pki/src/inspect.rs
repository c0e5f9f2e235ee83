//! Reading certificates: what names and identity one carries, and whether the files of a node
//! or balancer are what the plan needs (chain to the CA, key, validity, names).

use crate::dir::Subject;
use rcgen::{KeyPair, PublicKeyData};
use std::net::IpAddr;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate expiring within this many days is reported (a warning, not an error).
pub const RENEW_DAYS: i64 = 30;

/// What a certificate says about its subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub spiffe: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
}

impl Facts {
    pub fn of_der(der: &[u8]) -> Result<Facts, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut f = Facts {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
            ..Facts::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::URI(u) => f.spiffe.push((*u).to_string()),
                    GeneralName::DNSName(d) => f.dns.push((*d).to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            f.ips.push(IpAddr::from(a));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            f.ips.push(IpAddr::from(a));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(f)
    }

    /// Whether a host (an address or a name) is among the certificate's names.
    pub fn covers(&self, host: &str) -> bool {
        match host.parse::<IpAddr>() {
            Ok(ip) => self.ips.contains(&ip),
            Err(_) => self.dns.iter().any(|d| d.eq_ignore_ascii_case(host)),
        }
    }
}

/// The SPIFFE ID (`spiffe://` URI SAN) of a DER certificate, if it has exactly one.
pub fn spiffe_id(der: &[u8]) -> Option<String> {
    let f = Facts::of_der(der).ok()?;
    let mut ids = f.spiffe.into_iter().filter(|u| u.starts_with("spiffe://"));
    let id = ids.next()?;
    ids.next().is_none().then_some(id)
}

/// The certificates of a PEM text, as DER.
pub fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for p in Pem::iter_from_buffer(pem.as_bytes()) {
        let p = p.map_err(|e| format!("not PEM: {e}"))?;
        if p.label == "CERTIFICATE" {
            out.push(p.contents);
        }
    }
    if out.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(out)
}

/// Something wrong with the files of a node or balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A file is missing or cannot be read.
    Unreadable,
    /// Not signed by the deployment's CA.
    OtherCa,
    /// The key is not the certificate's.
    KeyMismatch,
    Expired,
    NotYetValid,
    /// Valid, but not for long: a warning.
    ExpiresSoon,
    /// A host or name the plan needs is not among its SANs.
    NameMissing(String),
    /// It carries another SPIFFE ID than the plan's.
    WrongIdentity,
}

impl ProblemKind {
    pub fn is_warning(&self) -> bool {
        matches!(self, ProblemKind::ExpiresSoon)
    }
}

fn problem(kind: ProblemKind, message: String) -> Problem {
    Problem { kind, message }
}

/// Checks the CA certificate, certificate and key (PEM texts) of `subject` at `now` (seconds
/// since the Unix epoch): the certificate chains to the CA, the key is its own, it is valid now
/// (a warning within `RENEW_DAYS` of its end), it carries the subject's SPIFFE ID and its host.
pub fn verify(subject: &Subject, ca: &str, cert: &str, key: &str, now: i64) -> Vec<Problem> {
    let name = &subject.name;
    let mut out = Vec::new();
    let cert_der = match pem_certs(cert) {
        Ok(c) => c[0].clone(),
        Err(e) => {
            return vec![problem(
                ProblemKind::Unreadable,
                format!("the certificate of {name}: {e}"),
            )];
        }
    };
    let ca_ders = match pem_certs(ca) {
        Ok(c) => c,
        Err(e) => {
            return vec![problem(
                ProblemKind::Unreadable,
                format!("the CA certificate: {e}"),
            )];
        }
    };
    let Ok((_, leaf)) = X509Certificate::from_der(&cert_der) else {
        return vec![problem(
            ProblemKind::Unreadable,
            format!("the certificate of {name} is not X.509"),
        )];
    };
    let signed = ca_ders.iter().any(|d| {
        X509Certificate::from_der(d)
            .is_ok_and(|(_, ca)| ca.is_ca() && leaf.verify_signature(Some(ca.public_key())).is_ok())
    });
    if !signed {
        out.push(problem(
            ProblemKind::OtherCa,
            format!("the certificate of {name} is not signed by the deployment CA"),
        ));
    }
    match KeyPair::from_pem(key) {
        Ok(k) => {
            if k.subject_public_key_info() != leaf.public_key().raw {
                out.push(problem(
                    ProblemKind::KeyMismatch,
                    format!("the key of {name} does not belong to its certificate"),
                ));
            }
        }
        Err(e) => out.push(problem(
            ProblemKind::Unreadable,
            format!("the key of {name} cannot be read: {e}"),
        )),
    }
    let facts = match Facts::of_der(&cert_der) {
        Ok(f) => f,
        Err(e) => {
            out.push(problem(ProblemKind::Unreadable, e));
            return out;
        }
    };
    if now >= facts.not_after {
        out.push(problem(
            ProblemKind::Expired,
            format!(
                "the certificate of {name} expired {} ago",
                span_text(now - facts.not_after)
            ),
        ));
    } else if now < facts.not_before {
        out.push(problem(
            ProblemKind::NotYetValid,
            format!(
                "the certificate of {name} is valid only in {}",
                span_text(facts.not_before - now)
            ),
        ));
    } else if facts.not_after - now < RENEW_DAYS * 86_400 {
        out.push(problem(
            ProblemKind::ExpiresSoon,
            format!(
                "the certificate of {name} expires in {}",
                span_text(facts.not_after - now)
            ),
        ));
    }
    if !facts.spiffe.contains(&subject.identity) {
        out.push(problem(
            ProblemKind::WrongIdentity,
            format!(
                "the certificate of {name} does not carry its identity {} (it has: {})",
                subject.identity,
                if facts.spiffe.is_empty() {
                    "none".to_string()
                } else {
                    facts.spiffe.join(", ")
                }
            ),
        ));
    }
    if !facts.covers(&subject.host) {
        let mut has: Vec<String> = facts.dns.clone();
        has.extend(facts.ips.iter().map(ToString::to_string));
        out.push(problem(
            ProblemKind::NameMissing(subject.host.clone()),
            format!(
                "the certificate of {name} does not name its host `{}` (it names: {})",
                subject.host,
                has.join(", ")
            ),
        ));
    }
    out
}

fn span_text(seconds: i64) -> String {
    match seconds {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 7200 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}
