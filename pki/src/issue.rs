//! Issuing: a deployment CA and leaf certificates (ECDSA P-256: fast handshakes, small keys).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// How long a CA apim makes is valid.
pub const CA_DAYS: i64 = 3650;
/// How long a node or balancer certificate is valid.
pub const LEAF_DAYS: i64 = 365;

/// A CA that can sign: its certificate and key, PEM.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new CA for a deployment.
    pub fn generate(deployment: &str) -> Result<Ca, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot make a CA key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "apim");
        dn.push(DnType::CommonName, format!("{deployment} deployment CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(CA_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot make the CA certificate: {e}"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate for `identity` (a SPIFFE ID) and `sans` (addresses and names),
    /// valid from `not_before` for `days`; usable as a server and as a client.
    pub fn issue_at(
        &self,
        identity: &str,
        sans: &[String],
        not_before: OffsetDateTime,
        days: i64,
    ) -> Result<Issued, String> {
        let ca_key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| format!("the CA key cannot be read: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(|e| format!("the CA certificate cannot be read: {e}"))?;
        let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "apim");
        dn.push(
            DnType::CommonName,
            sans.get(1).cloned().unwrap_or_else(|| identity.to_string()),
        );
        params.distinguished_name = dn;
        let mut names = Vec::new();
        for s in sans {
            let san = match s.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    s.as_str()
                        .try_into()
                        .map_err(|e| format!("`{s}` cannot be a certificate name: {e}"))?,
                ),
            };
            if !names.contains(&san) {
                names.push(san);
            }
        }
        names.push(SanType::URI(identity.try_into().map_err(|e| {
            format!("`{identity}` cannot be a certificate URI: {e}")
        })?));
        params.subject_alt_names = names;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(days);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| format!("cannot sign the certificate of {identity}: {e}"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate that expires `secs` from now: it passes a start-up or reload check
    /// and expires while in use (a drill's certificate-expiry fault).
    pub fn issue_expiring(
        &self,
        identity: &str,
        sans: &[String],
        secs: i64,
    ) -> Result<Issued, String> {
        self.issue_at(
            identity,
            sans,
            OffsetDateTime::now_utc() + Duration::seconds(secs) - Duration::days(1),
            1,
        )
    }

    /// Issues a certificate valid from an hour ago (clocks drift) for `LEAF_DAYS`.
    pub fn issue(&self, identity: &str, sans: &[String]) -> Result<Issued, String> {
        self.issue_at(
            identity,
            sans,
            OffsetDateTime::now_utc() - Duration::hours(1),
            LEAF_DAYS,
        )
    }
}
