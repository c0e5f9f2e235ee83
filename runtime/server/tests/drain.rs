//! Readiness and drain on a real node: a node that is asked to stop reports unready at once,
//! keeps serving while balancers take it out, then accepts nothing more and finishes what it
//! was answering — no request in flight is lost.

use apim_components::Request;
use std::time::{Duration, Instant};

const ADMIN: &str = "drain-test-password";
/// How long the slow backend takes to answer: long enough to be in flight across the drain.
const SLOW: Duration = Duration::from_millis(1_500);

/// A backend that answers every request after `SLOW`.
async fn slow_backend() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(apim_runtime::http::serve(listener, |_req, _| async {
        tokio::time::sleep(SLOW).await;
        apim_components::Response::json(200, &serde_json::json!({"slow": true}))
    }));
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_is_unready_at_once_and_finishes_what_is_in_flight() {
    let text = apim_patterns::find("standalone").expect("pattern").template;
    let checked = apim_topology::check_str("standalone", text);
    assert_eq!(checked.errors(), 0);
    let data = tempfile::tempdir().expect("temp dir");
    let opts = apim_runtime::up::UpOptions {
        // The slow backend of this test listens on 127.0.0.1.
        backends: vec!["127.0.0.1".into()],
        loopback: apim_runtime::up::Loopback::parse("127.76.0.0/16").expect("range"),
        data: data.path().to_path_buf(),
        admin_password: ADMIN.into(),
    };
    let mut up = apim_runtime::up::start(&checked.topology, &opts)
        .await
        .expect("apim up");
    let mut e = apim_runtime::smoke::Entries::of(&up).expect("entries");
    e.backend = slow_backend().await;
    let p = apim_runtime::smoke::provision(&e, ADMIN, "drain")
        .await
        .expect("provision");
    let node = up.nodes.remove(0);
    let (host, admin) = (node.plan.host.clone(), node.plan.admin_port);
    let ca = apim_runtime::tls::client_trusting(&e.ca).expect("CA");
    let invoke = {
        let (gateway, context, token) = (e.gateway.clone(), p.context.clone(), p.token.clone());
        let ca = ca.clone();
        move || {
            // A client of its own: a connection of its own, as separate clients have.
            let client = apim_runtime::http::tls_client(ca.clone());
            let req = Request::new("GET", &format!("/{context}/v1/x"))
                .header("authorization", &format!("Bearer {token}"));
            let gateway = gateway.clone();
            async move {
                apim_runtime::http::send(
                    &client,
                    &gateway.0,
                    gateway.1,
                    req,
                    Duration::from_secs(20),
                )
                .await
            }
        }
    };
    let ready_answer = || {
        let client = apim_runtime::http::tls_client(ca.clone());
        let host = host.clone();
        async move {
            apim_runtime::http::send(
                &client,
                &host,
                admin,
                Request::new("GET", "/ready"),
                Duration::from_secs(5),
            )
            .await
        }
    };
    let before = ready_answer().await.expect("ready");
    assert_eq!(before.status, 200, "a running node is ready");
    assert_eq!(before.get_header("connection"), None, "kept alive");

    let first = tokio::spawn(invoke());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let wait = Duration::from_millis(600);
    let started = Instant::now();
    let drained = tokio::spawn(node.drain(wait, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let unready = ready_answer().await.expect("an answer");
    assert_eq!(unready.status, 503, "unready as soon as it drains");
    // Answered and its connection closed: a draining node leaves no idle connection for the
    // stop to close under a request (a write could not be sent again).
    assert_eq!(unready.get_header("connection"), Some("close"));
    // Balancers have not noticed yet: what they send now is still served.
    let second = tokio::spawn(invoke());
    tokio::time::sleep(wait).await;
    // Past the wait: nothing new is accepted.
    let late = invoke().await;
    assert!(late.is_err(), "a new request after the wait: {late:?}");
    let first = first.await.expect("task").expect("an answer");
    assert_eq!(first.status, 200, "in flight before the drain");
    let second = second.await.expect("task").expect("an answer");
    assert_eq!(second.status, 200, "sent during the wait");

    assert!(
        drained.await.expect("task"),
        "everything in flight finished"
    );
    assert!(
        started.elapsed() < wait + SLOW + Duration::from_secs(1),
        "the drain ended once the last answer was written: {:?}",
        started.elapsed()
    );
}
