//! The built-in balancer over real connections: a request whose first node cannot be reached
//! goes, body and all, to the next; bodies stream both ways; the client's address and the
//! sticky node travel as headers and a cookie; a refusal reaches the client whatever the size of
//! the upload.

mod common;

use apim_compiler::plan::{
    BalancerPlan, BalancerRoute, HealthCheck, RouteListener, Timeouts, Upstream,
};
use apim_components::{Request, Response};
use apim_runtime::{balancer, http};
use apim_topology::vocab::{BalancerKind, Component};
use std::time::Duration;

const BALANCER: &str = "127.61.0.1";

fn upstream(node: &str, host: &str) -> Upstream {
    Upstream {
        node: node.into(),
        host: host.into(),
        port: 8080,
        admin_port: 9090,
        identity: format!("spiffe://test/node/{node}"),
    }
}

fn plan(pki: &common::TestPki, component: Component, sticky: bool) -> BalancerPlan {
    BalancerPlan {
        name: "lb".into(),
        kind: BalancerKind::External,
        network: "lan".into(),
        host: BALANCER.into(),
        identity: "spiffe://test/balancer/lb".into(),
        tls: pki.files("lb", "spiffe://test/balancer/lb", BALANCER),
        edge: None,
        routes: vec![BalancerRoute {
            component,
            port: 8280,
            listener: RouteListener::Public,
            sticky,
            // The first node has nothing listening; only a request's own failure finds out,
            // as checks are too rare to.
            upstream: vec![upstream("down", "127.61.0.2"), upstream("up", "127.61.0.3")],
            health: HealthCheck {
                path: "/health".into(),
                interval_ms: 60_000,
                timeout_ms: 500,
                fall: 3,
                rise: 2,
            },
            timeouts: Timeouts {
                connect_ms: 1_000,
                read_ms: 10_000,
            },
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_be_reached_is_skipped_with_the_body_intact() {
    // The node that is up answers with the size of the body it got and the headers it saw.
    let pki = common::TestPki::new();
    let node = pki.tls("up", "spiffe://test/node/up", "127.61.0.3");
    let listener = http::bind("127.61.0.3", 8080).await.expect("bind");
    let serving = http::Serving::tls(node.server().expect("server"));
    let _node = tokio::spawn(http::serve_connections(
        listener,
        serving,
        |req, _| async move {
            let forwarded = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let received = http::read_all(req.into_body()).await.map_or(0, |b| b.len());
            let mut body = format!("{received} {forwarded}\n").into_bytes();
            body.resize(body.len() + (2 << 20), b'y');
            http::write(Response {
                status: 200,
                headers: Vec::new(),
                body,
            })
        },
    ));
    let _lb = balancer::start(plan(&pki, Component::Store, true), BALANCER)
        .await
        .expect("balancer starts");
    let client = pki.client();
    for round in 0..2 {
        let mut upload = Request::new("POST", "/api/upload").header("x-forwarded-for", "10.9.9.9");
        upload.body = vec![b'x'; 3 << 20];
        let r = http::send(&client, BALANCER, 8280, upload, Duration::from_secs(10))
            .await
            .expect("answer");
        assert_eq!(r.status, 200, "round {round}");
        let head = String::from_utf8_lossy(
            &r.body[..r.body.iter().position(|&b| b == b'\n').unwrap_or(0)],
        )
        .to_string();
        assert_eq!(
            head,
            format!("{} 10.9.9.9, 127.0.0.1", 3 << 20),
            "round {round}"
        );
        assert_eq!(r.body.len(), head.len() + 1 + (2 << 20), "round {round}");
        assert_eq!(
            r.get_header("set-cookie"),
            Some("APIM_NODE=up; Path=/; HttpOnly; Secure"),
            "round {round}: the client is kept on the node that answered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_node_reachable_the_answer_is_503() {
    let pki = common::TestPki::new();
    let mut plan = plan(&pki, Component::Gateway, false);
    plan.host = "127.61.1.1".into();
    plan.tls = pki.files("lb", "spiffe://test/balancer/lb", "127.61.1.1");
    for u in &mut plan.routes[0].upstream {
        u.host = u.host.replace("127.61.0.", "127.61.1.");
    }
    let _lb = balancer::start(plan, "127.61.1.1")
        .await
        .expect("balancer starts");
    // The body none of which could be sent is read and dropped: the client gets the 503, not a
    // reset connection, however large the upload.
    for size in [1 << 20, 8 << 20, 8 << 20, 8 << 20] {
        let mut post = Request::new("POST", "/ctx/v1/x");
        post.body = vec![b'x'; size];
        let r = http::send(
            &pki.client(),
            "127.61.1.1",
            8280,
            post,
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{size} bytes: no answer: {e}"));
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(&r.body).contains("no gateway node can be reached"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_413_reaches_the_client_declared_or_chunked() {
    // A node as a component listens: bodies over 1 MiB are refused.
    let pki = common::TestPki::new();
    let node = pki.tls("up", "spiffe://test/node/up", "127.61.2.3");
    let listener = http::bind("127.61.2.3", 8080).await.expect("bind");
    let serving = http::Serving::tls(node.server().expect("server"));
    let _node = tokio::spawn(http::serve_tls(listener, serving, |_req, _| async {
        Response::new(200)
    }));
    let mut plan = plan(&pki, Component::Publisher, false);
    plan.host = "127.61.2.1".into();
    plan.tls = pki.files("lb", "spiffe://test/balancer/lb", "127.61.2.1");
    for u in &mut plan.routes[0].upstream {
        u.host = u.host.replace("127.61.0.", "127.61.2.");
    }
    let _lb = balancer::start(plan, "127.61.2.1")
        .await
        .expect("balancer starts");
    let client = apim_runtime::upstream::Upstreams::with_tls(
        apim_runtime::tls::client_trusting(&pki.ca.cert_pem).expect("client"),
    );
    let authority = "127.61.2.1:8280";
    // Refused with most of the body unread: the node reads and drops the rest, so the
    // balancer gets the 413 to pass on rather than a reset.
    for (size, status) in [
        (1 << 10, 200),
        (8 << 20, 413),
        (8 << 20, 413),
        (8 << 20, 413),
    ] {
        let streamed = hyper::Request::post("/api/apis")
            .header("host", authority)
            .body(common::chunked(size))
            .expect("request");
        let declared = hyper::Request::post("/api/apis")
            .header("host", authority)
            .header("content-length", size)
            .body(common::chunked(size))
            .expect("request");
        for request in [streamed, declared] {
            let response = client
                .send(authority, request)
                .await
                .unwrap_or_else(|e| panic!("{size} bytes: no answer: {e}"));
            assert_eq!(response.status().as_u16(), status, "{size} bytes");
        }
    }
}

/// Stopping (SIGTERM for `apim balancer`): a request in flight is answered, and a new
/// connection is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_balancer_finishes_what_is_in_flight_and_accepts_nothing_more() {
    let pki = common::TestPki::new();
    let (lb_host, up_host) = ("127.61.9.1", "127.61.9.3");
    let node = pki.tls("up", "spiffe://test/node/up", up_host);
    let listener = http::bind(up_host, 8080).await.expect("bind");
    let serving = http::Serving::tls(node.server().expect("server"));
    // The node answers after a second: the request is in flight when the balancer stops.
    let _node = tokio::spawn(http::serve_connections(
        listener,
        serving,
        |_req, _| async {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            http::write(Response::json(200, &serde_json::json!({"slow": true})))
        },
    ));
    let mut plan = plan(&pki, Component::Gateway, false);
    plan.host = lb_host.into();
    plan.tls = pki.files("lb", "spiffe://test/balancer/lb", lb_host);
    plan.routes[0].upstream = vec![upstream("up", up_host)];
    let lb = balancer::start(plan, lb_host)
        .await
        .expect("balancer starts");
    let client = pki.client();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            http::send(
                &client,
                lb_host,
                8280,
                Request::new("GET", "/ctx/v1/x"),
                Duration::from_secs(10),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(lb.stop(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::net::TcpStream::connect((lb_host, 8280)).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted while stopping"
    );
    let r = in_flight
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert_eq!(r.status, 200);
    assert!(
        stopping.await.expect("task"),
        "everything in flight finished"
    );
}

/// A node that takes a request and closes the connection without an answer — a node killed
/// with the request in flight, or a kept-alive connection it closed as the request went out.
/// An idempotent request goes on to the next node; a POST is not sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_broken_in_flight_is_sent_again_only_when_idempotent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt as _;
    let pki = common::TestPki::new();
    let mut plan = plan(&pki, Component::Gateway, false);
    plan.host = "127.61.3.1".into();
    plan.tls = pki.files("lb", "spiffe://test/balancer/lb", "127.61.3.1");
    for u in &mut plan.routes[0].upstream {
        u.host = u.host.replace("127.61.0.", "127.61.3.");
    }
    // "down" reads what it is sent, then closes.
    let breaking = pki.tls("down", "spiffe://test/node/down", "127.61.3.2");
    let acceptor = tokio_rustls::TlsAcceptor::from(breaking.server().expect("server"));
    let listener = tokio::net::TcpListener::bind("127.61.3.2:8080")
        .await
        .expect("bind");
    let broken = Arc::new(AtomicUsize::new(0));
    let counted = broken.clone();
    let _down = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut head = [0u8; 512];
                    if tls.read(&mut head).await.is_ok_and(|n| n > 0) {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    // "up" answers with the method it got.
    let node = pki.tls("up", "spiffe://test/node/up", "127.61.3.3");
    let listener = http::bind("127.61.3.3", 8080).await.expect("bind");
    let answered = Arc::new(AtomicUsize::new(0));
    let counted = answered.clone();
    let _up = tokio::spawn(http::serve_connections(
        listener,
        http::Serving::tls(node.server().expect("server")),
        move |req, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            let method = req.method().to_string();
            async move {
                http::write(Response {
                    status: 200,
                    headers: Vec::new(),
                    body: method.into_bytes(),
                })
            }
        },
    ));
    let _lb = balancer::start(plan, "127.61.3.1")
        .await
        .expect("balancer starts");
    let client = pki.client();
    let send = |req: Request| http::send(&client, "127.61.3.1", 8280, req, Duration::from_secs(10));
    // Round robin starts with "down": the GET breaks there and is answered by "up".
    let r = send(Request::new("GET", "/ctx/v1/items"))
        .await
        .expect("answer");
    assert_eq!((r.status, r.body.as_slice()), (200, b"GET".as_slice()));
    assert_eq!(
        broken.load(Ordering::SeqCst),
        1,
        "the GET went to the breaking node first"
    );
    // The next request starts with "down" again: a POST broken there must not reach "up".
    let before = answered.load(Ordering::SeqCst);
    let mut post = Request::new("POST", "/ctx/v1/orders");
    post.body = b"{\"item\":1}".to_vec();
    let r = send(post).await.expect("answer");
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(broken.load(Ordering::SeqCst), 2);
    assert_eq!(
        answered.load(Ordering::SeqCst),
        before,
        "the POST was sent twice"
    );
}
