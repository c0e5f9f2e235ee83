//! The security log over real sockets: each kind of event — throttled sign-ins, rate limits,
//! refused backends, refused connections, refused internal callers — is logged as a JSON line
//! under `apim::security`, without the secrets of the request that caused it. Its own test
//! binary: the log is global to a process, and its rate limit counts per process.

mod common;

use apim_components::Request;
use apim_runtime::http;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASSWORD: &str = "security-log-admin-password";

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// The logged events, as JSON values.
    fn events(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.lock().expect("log"))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["fields"]["event"] == kind)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_is_one_structured_event_without_secrets() {
    let lines = Lines::default();
    let sink = lines.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(move || sink.clone())
        .init();
    let data = tempfile::tempdir().expect("temp dir");
    let up = common::up("standalone", "127.87.0.0/16", data.path(), PASSWORD).await;
    let e = apim_runtime::smoke::Entries::of(&up).expect("entries");
    let c = http::tls_client(apim_runtime::tls::client_trusting(&up.ca_pem).expect("CA"));
    let send = |to: (String, u16), req: Request| {
        let c = c.clone();
        async move {
            http::send(&c, &to.0, to.1, req, Duration::from_secs(30))
                .await
                .expect("answer")
        }
    };
    // A refused backend.
    let r = send(
        e.publisher.clone(),
        apim_components::client::login("admin", PASSWORD),
    )
    .await;
    let session = apim_components::client::session(&r).expect("session");
    let r = send(
        e.publisher.clone(),
        apim_components::client::create_api(
            &session,
            &apim_components::client::NewApi {
                name: "Metadata",
                version: "v1",
                context: "meta",
                backend: "http://169.254.169.254/latest",
            },
        ),
    )
    .await;
    assert_eq!(r.status, 400);
    let refused = lines.of("backend_refused");
    assert_eq!(refused.len(), 1, "{:?}", lines.events());
    assert!(refused[0].to_string().contains("169.254.169.254"));
    // Throttled sign-ins: the sixth wrong password for one account from one address.
    let secret = "the-wrong-password-itself";
    for _ in 0..6 {
        send(
            e.publisher.clone(),
            apim_components::client::login("admin", secret),
        )
        .await;
    }
    let throttled = lines.of("sign_in_throttled");
    assert_eq!(throttled.len(), 1, "{:?}", lines.events());
    assert_eq!(throttled[0]["target"], apim_components::security::TARGET);
    assert_eq!(throttled[0]["level"], "WARN");
    let text = throttled[0].to_string();
    assert!(
        text.contains("admin") && text.contains("publisher"),
        "{text}"
    );
    // Rate limits: sign-ups past the burst.
    for i in 0..(apim_components::limits::SIGNUP_PER_ADDRESS.burst + 1) {
        send(
            e.store.clone(),
            apim_components::client::signup(&format!("flood-{i}"), "a-long-password"),
        )
        .await;
    }
    assert_eq!(lines.of("rate_limited").len(), 1);
    let mut cert_less = std::net::TcpStream::connect((
        up.plan.nodes[0].host.as_str(),
        up.plan.nodes[0].internal_port,
    ))
    .expect("connect");
    // Refused connections: plain bytes where a TLS handshake belongs, on the internal
    // listener, which also counts a refused internal caller.
    cert_less
        .write_all(b"GET /internal/apis HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    drop(cert_less);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lines.of("internal_refused").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !lines.of("connection_refused").is_empty(),
        "{:?}",
        lines.events()
    );
    assert!(
        !lines.of("internal_refused").is_empty(),
        "{:?}",
        lines.events()
    );
    // No secret anywhere in the log.
    let all = String::from_utf8_lossy(&lines.0.lock().expect("log")).to_string();
    assert!(!all.contains(secret) && !all.contains(PASSWORD) && !all.contains(&session));
}
