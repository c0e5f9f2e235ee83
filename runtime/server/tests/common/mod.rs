//! Helpers shared by the runtime's socket-level tests.

use std::convert::Infallible;

/// A body of `size` bytes with no declared length, so that it is sent chunked.
pub fn chunked(
    size: usize,
) -> impl hyper::body::Body<Data = bytes::Bytes, Error = Infallible> + Send + Unpin {
    let chunks = (0..size).step_by(64 << 10).map(move |at| {
        Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![
            b'x';
            (size
                - at)
                .min(
                    64 << 10
                )
        ])))
    });
    http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
}

/// A throwaway deployment PKI for tests: a CA, and files per node or balancer on demand.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: apim_pki::Ca,
}

#[allow(dead_code)]
impl TestPki {
    pub fn new() -> TestPki {
        TestPki {
            dir: tempfile::tempdir().expect("temp dir"),
            ca: apim_pki::Ca::generate("test").expect("CA"),
        }
    }

    /// Writes a key and certificate for `name` (identity `spiffe://test/node/NAME`, or
    /// `.../balancer/NAME` for balancers), naming `host`.
    pub fn files(&self, name: &str, identity: &str, host: &str) -> apim_compiler::plan::TlsFiles {
        let dir = self.dir.path().display().to_string();
        let files = apim_compiler::plan::TlsFiles::in_dir(&dir, name);
        let issued = self
            .ca
            .issue(identity, &[host.to_string(), name.to_string()])
            .expect("certificate");
        std::fs::write(&files.ca, &self.ca.cert_pem).expect("write");
        std::fs::write(&files.cert, &issued.cert_pem).expect("write");
        std::fs::write(&files.key, &issued.key_pem).expect("write");
        files
    }

    pub fn tls(&self, name: &str, identity: &str, host: &str) -> apim_runtime::tls::Tls {
        apim_runtime::tls::Tls::load(&self.files(name, identity, host)).expect("TLS")
    }

    /// A client trusting this CA, as curl with `--cacert`.
    pub fn client(&self) -> apim_runtime::http::Client {
        apim_runtime::http::tls_client(
            apim_runtime::tls::client_trusting(&self.ca.cert_pem).expect("client"),
        )
    }
}
