//! TLS for every listener and every call between apim's own parts (rustls, ring).
//!
//! Servers present the node's or balancer's certificate; the internal listener also demands a
//! client certificate from the deployment CA. apim's own clients check a peer by its chain to
//! the deployment CA and its SPIFFE ID, not by host name: a call through an internal balancer
//! reaches whichever node the balancer picks, so the name dialled is not the node's.

use apim_compiler::plan::TlsFiles;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::{Arc, RwLock};

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PKI material of one node or balancer, ready for servers and clients. Its clones share
/// the certificate they present: [`Tls::renew`] changes it for every server and client made
/// from any of them, from their next handshake on.
#[derive(Clone)]
pub struct Tls {
    roots: Arc<RootCertStore>,
    presented: Arc<Presented>,
    /// The SPIFFE ID of this node or balancer, from its own certificate.
    pub identity: String,
}

/// The certificate and key presented, to clients and to servers alike; swapped in place.
#[derive(Debug)]
struct Presented(RwLock<Arc<CertifiedKey>>);

impl Presented {
    fn current(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for Presented {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for Presented {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("identity", &self.identity)
            .finish()
    }
}

/// The certificates of a PEM text.
pub fn certs_of(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate in it"));
    }
    Ok(certs)
}

/// A root store holding the deployment CA (a PEM text).
pub fn roots_of(ca_pem: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in certs_of(ca_pem, "the CA certificate")? {
        roots
            .add(c)
            .map_err(|e| format!("the CA certificate cannot be used: {e}"))?;
    }
    Ok(Arc::new(roots))
}

impl Tls {
    /// Reads the files a plan names.
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        let read =
            |p: &str| std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
        Tls::from_pem(&read(&files.ca)?, &read(&files.cert)?, &read(&files.key)?)
    }

    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Tls, String> {
        let chain = certs_of(cert, "the certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| format!("the key cannot be read: {e}"))?;
        let identity = apim_pki::spiffe_id(&chain[0])
            .ok_or("the certificate carries no single spiffe:// identity")?;
        let certified = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
        Ok(Tls {
            roots: roots_of(ca)?,
            presented: Arc::new(Presented(RwLock::new(Arc::new(certified)))),
            identity,
        })
    }

    /// Presents `fresh`'s certificate from now on, in every server and client made from this
    /// material (connections open keep theirs). The identity must stay the same: a node does
    /// not become another one by reloading its files; nor does the CA it trusts change.
    pub fn renew(&self, fresh: &Tls) -> Result<(), String> {
        if fresh.identity != self.identity {
            return Err(format!(
                "the new certificate is {}, not {}: kept the one in use",
                fresh.identity, self.identity
            ));
        }
        let next = fresh.presented.current();
        *self.presented.0.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// A server presenting this certificate, asking nothing of clients (public and admin
    /// listeners, balancers' public side).
    pub fn server(&self) -> Result<Arc<ServerConfig>, String> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(self.presented.clone());
        Ok(Arc::new(with_http1(config)))
    }

    /// A node's public listener: clients need no certificate, but a balancer of the deployment
    /// shows its own (the one it proves itself with to nodes), and only then is its
    /// `X-Forwarded-For` believed.
    pub fn public_server(&self) -> Result<Arc<ServerConfig>, String> {
        self.server_asking(false)
    }

    /// The internal listener's server: a client certificate from the deployment CA is required
    /// (the handshake fails without one); which identities may call what is decided after.
    pub fn internal_server(&self) -> Result<Arc<ServerConfig>, String> {
        self.server_asking(true)
    }

    /// A server asking clients for a certificate from the deployment CA, `required` or not.
    fn server_asking(&self, required: bool) -> Result<Arc<ServerConfig>, String> {
        let builder = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider());
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let verifier = builder
            .build()
            .map_err(|e| format!("cannot check client certificates: {e}"))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.presented.clone());
        Ok(Arc::new(with_http1(config)))
    }

    /// A client presenting this certificate, accepting servers whose certificate chains to the
    /// deployment CA and carries one of `accept` (SPIFFE IDs).
    pub fn client(&self, accept: Vec<String>) -> Result<Arc<ClientConfig>, String> {
        let verifier = Arc::new(IdentityVerifier {
            roots: self.roots.clone(),
            accept,
            algorithms: provider().signature_verification_algorithms,
        });
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.presented.clone());
        Ok(Arc::new(config))
    }
}

/// A server presenting a certificate that is not from the deployment CA: the public
/// certificate of an external balancer (`[tls] edge`).
pub fn server_of_files(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
    let chain = certs_of(&read(cert)?, cert)?;
    let key = PrivateKeyDer::from_pem_slice(read(key)?.as_bytes())
        .map_err(|e| format!("{key}: the key cannot be read: {e}"))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{cert}: the certificate and key do not go together: {e}"))?;
    Ok(Arc::new(with_http1(config)))
}

fn with_http1(mut config: ServerConfig) -> ServerConfig {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A client for people and tools: trusts the deployment CA and checks the host name, as curl
/// with `--cacert` does.
pub fn client_trusting(ca_pem: &str) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots_of(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `config` without session resumption: every connection a full handshake, which checks the
/// peer's certificate as it is now. A health check needs that (a resumed session would go on
/// passing for a node whose certificate expired), and so does a drill's client, which stands
/// for clients that connect anew.
pub fn without_resumption(config: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::clone(config);
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A client that presents `cert` (with `key`) and trusts `ca_pem`, checking host names: how a
/// tool holding a certificate connects (and how tests try foreign ones).
pub fn client_with_identity(
    ca_pem: &str,
    cert: &str,
    key: &str,
) -> Result<Arc<ClientConfig>, String> {
    let chain = certs_of(cert, "the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| format!("the key cannot be read: {e}"))?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots_of(ca_pem)?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    Ok(Arc::new(config))
}

/// The name a client dials, for SNI and (with `client_trusting`) the certificate check.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("`{host}` is not a host name: {e}"))
}

/// Checks a server by its chain to the deployment CA and its SPIFFE ID.
#[derive(Debug)]
struct IdentityVerifier {
    roots: Arc<RootCertStore>,
    accept: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let id = apim_pki::spiffe_id(end_entity).ok_or_else(|| {
            rustls::Error::General("the peer's certificate carries no spiffe:// identity".into())
        })?;
        if !self.accept.contains(&id) {
            return Err(rustls::Error::General(format!(
                "the peer is {id}, which is not one this call may reach"
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Reads and checks the PKI files of a node or balancer (`what` names it): they must chain to
/// the CA, carry `identity` and name `host`. A certificate expiring soon is only a warning,
/// returned with the material.
pub fn load_checked(
    what: &str,
    identity: &str,
    host: &str,
    files: &TlsFiles,
) -> Result<(Tls, Vec<String>), String> {
    let read =
        |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{what}: cannot read {p}: {e}"));
    let (ca, cert, key) = (read(&files.ca)?, read(&files.cert)?, read(&files.key)?);
    let subject = apim_pki::Subject {
        name: what.to_string(),
        identity: identity.to_string(),
        host: host.to_string(),
        sans: Vec::new(),
        tls: files.clone(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (warnings, errors): (Vec<_>, Vec<_>) = apim_pki::verify(&subject, &ca, &cert, &key, now)
        .into_iter()
        .partition(|p| p.kind.is_warning());
    if !errors.is_empty() {
        let list: Vec<String> = errors.into_iter().map(|p| p.message).collect();
        return Err(format!(
            "{} ({}); `apim certs` makes files that fit the plan",
            list.join("; "),
            files.cert
        ));
    }
    let tls = Tls::from_pem(&ca, &cert, &key).map_err(|e| format!("{what}: {e}"))?;
    Ok((tls, warnings.into_iter().map(|p| p.message).collect()))
}

/// On each SIGHUP, reads the files of `what` (a node or balancer at `host`) again and presents
/// the certificate they hold from then on — a renewed certificate needs no restart. The files
/// are checked as at start; files that fail the check leave the certificate in use, and say
/// why.
pub async fn renew_on_hangup(tls: Tls, what: String, host: String, files: TlsFiles) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangups.recv().await.is_some() {
        let renewed = load_checked(&what, &tls.identity, &host, &files)
            .and_then(|(fresh, warnings)| tls.renew(&fresh).map(|()| warnings));
        match renewed {
            Ok(warnings) => {
                eprintln!("{what}: presenting the certificate in {} now", files.cert);
                for w in warnings {
                    eprintln!("{what}: warning: {w}");
                }
            }
            Err(e) => eprintln!("{what}: the certificate was not renewed: {e}"),
        }
    }
}
