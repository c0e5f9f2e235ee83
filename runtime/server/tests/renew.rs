//! A node's certificate renewed in place (`Tls::renew`, what SIGHUP does): handshakes after
//! the renewal see the new certificate, a certificate of another identity is refused and the
//! one in use kept, and a certificate that runs out while in use fails every handshake after.

use apim_pki::Ca;
use apim_runtime::tls::{self, Tls};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "spiffe://renew/node/gateway-1";
const HOST: &str = "127.0.0.1";

fn material(ca: &Ca, identity: &str, expiring: Option<i64>) -> Tls {
    let sans = [HOST.to_string()];
    let issued = match expiring {
        Some(secs) => ca.issue_expiring(identity, &sans, secs),
        None => ca.issue(identity, &sans),
    }
    .expect("issued");
    Tls::from_pem(&ca.cert_pem, &issued.cert_pem, &issued.key_pem).expect("material")
}

/// A server presenting `tls` that answers each connection with one byte.
async fn serve(tls: &Tls) -> std::net::SocketAddr {
    let acceptor = tls::TlsAcceptor::from(tls.server().expect("server config"));
    let listener = tokio::net::TcpListener::bind((HOST, 0))
        .await
        .expect("bind");
    let at = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.write_all(b"!").await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    at
}

/// The certificate the server presented to a client trusting the CA, or why the handshake
/// failed.
async fn presented(ca: &Ca, at: std::net::SocketAddr) -> Result<Vec<u8>, String> {
    let connector = tls::TlsConnector::from(tls::client_trusting(&ca.cert_pem).expect("client"));
    let tcp = tokio::net::TcpStream::connect(at)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = connector
        .connect(tls::server_name(HOST).expect("name"), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    s.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
    let (_, conn) = s.get_ref();
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    Ok(cert.to_vec())
}

fn der(pem: &str) -> Vec<u8> {
    tls::certs_of(pem, "certificate").expect("pem")[0].to_vec()
}

#[tokio::test]
async fn a_renewed_certificate_is_presented_from_the_next_handshake_on() {
    let ca = Ca::generate("renew").expect("CA");
    let sans = [HOST.to_string()];
    let first = ca.issue(NODE, &sans).expect("first");
    let second = ca.issue(NODE, &sans).expect("second");
    let tls = Tls::from_pem(&ca.cert_pem, &first.cert_pem, &first.key_pem).expect("material");
    let at = serve(&tls).await;
    assert_eq!(presented(&ca, at).await, Ok(der(&first.cert_pem)));
    let fresh = Tls::from_pem(&ca.cert_pem, &second.cert_pem, &second.key_pem).expect("fresh");
    tls.renew(&fresh).expect("renewed");
    assert_eq!(presented(&ca, at).await, Ok(der(&second.cert_pem)));
    // Another node's certificate is not taken: the one in use stays.
    let other = material(&ca, "spiffe://renew/node/gateway-2", None);
    let refused = tls.renew(&other).expect_err("another identity");
    assert!(refused.contains("gateway-2"), "{refused}");
    assert_eq!(presented(&ca, at).await, Ok(der(&second.cert_pem)));
}

#[tokio::test]
async fn a_certificate_that_runs_out_while_in_use_fails_every_handshake_after() {
    let ca = Ca::generate("renew").expect("CA");
    let tls = material(&ca, NODE, None);
    let at = serve(&tls).await;
    assert!(presented(&ca, at).await.is_ok());
    tls.renew(&material(&ca, NODE, Some(1))).expect("renewed");
    // It expires within a second (certificates count whole seconds); wait past it.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let failed = presented(&ca, at).await.expect_err("expired");
    assert!(failed.to_lowercase().contains("expired"), "{failed}");
    // And back with a good one, as a drill's repair does.
    tls.renew(&material(&ca, NODE, None)).expect("renewed");
    assert!(presented(&ca, at).await.is_ok());
}

/// A handshake with `config` to `at`: whether it passed.
async fn handshake(
    config: &std::sync::Arc<rustls::ClientConfig>,
    at: std::net::SocketAddr,
) -> bool {
    let connector = tls::TlsConnector::from(config.clone());
    let Ok(tcp) = tokio::net::TcpStream::connect(at).await else {
        return false;
    };
    match connector
        .connect(tls::server_name(HOST).expect("name"), tcp)
        .await
    {
        Ok(mut s) => {
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await.is_ok()
        }
        Err(_) => false,
    }
}

/// Why the balancers' health checks make full handshakes: a client that resumes its session
/// is not shown the server's certificate again, and goes on passing after it expired; without
/// resumption every connection checks it as it is now.
#[tokio::test]
async fn only_a_client_that_does_not_resume_sees_a_certificate_that_expired() {
    let ca = Ca::generate("renew").expect("CA");
    let tls = material(&ca, NODE, Some(3));
    let at = serve(&tls).await;
    let resuming = tls::client_trusting(&ca.cert_pem).expect("client");
    let anew = tls::without_resumption(&resuming);
    assert!(handshake(&resuming, at).await, "before the expiry");
    assert!(handshake(&anew, at).await, "before the expiry");
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    assert!(
        handshake(&resuming, at).await,
        "a resumed session is not shown the certificate again"
    );
    assert!(
        !handshake(&anew, at).await,
        "a full handshake sees it expired"
    );
}
