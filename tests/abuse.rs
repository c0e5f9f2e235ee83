//! Abuse from the public side over real sockets, against `apim up`: floods of silent
//! connections, forged `X-Forwarded-For`, names of a megabyte, and backends that resolve where
//! no API may go.

mod common;

use apim_components::{Request, Response};
use apim_runtime::http;
use apim_runtime::smoke::Entries;
use apim_runtime::up::Up;
use std::time::{Duration, Instant};

const PASSWORD: &str = "abuse-admin-password";

use common::{client, send};

/// A component's listener on one node.
fn on(up: &Up, node: &str, component: apim_components::Peer) -> (String, u16) {
    let n = up.plan.node(node).expect("node");
    let port = n
        .listeners
        .iter()
        .find(|l| l.component == component)
        .expect("listener")
        .port;
    (n.host.clone(), port)
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_20_addresses_do_not_shut_the_store_to_a_new_client() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = common::up("external-store", "127.81.0.0/16", data.path(), PASSWORD).await;
    // The store node faces the public network itself in this pattern.
    let store = on(&up, "store-1", apim_components::Peer::Store);
    let target: std::net::SocketAddr = format!("{}:{}", store.0, store.1).parse().expect("address");
    let before = rss_kib();
    let mut silent = Vec::new();
    for a in 0..20u8 {
        let source: std::net::SocketAddr = format!("127.82.0.{}:0", a + 1).parse().expect("source");
        for _ in 0..300 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(source).expect("bind");
            if let Ok(s) = socket.connect(target).await {
                silent.push(s);
            }
        }
    }
    assert!(silent.len() >= 5_000, "only {} connected", silent.len());
    // A new client gets its answer well within the handshake time-out.
    let started = Instant::now();
    let r = send(&up, &store, Request::new("GET", "/api/apis")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        took < http::HANDSHAKE_TIMEOUT,
        "a new client waited {took:?} behind silent connections"
    );
    let after = rss_kib();
    println!(
        "6,000 silent connections: a new client answered in {took:?}; this process grew {} KiB ({before} -> {after})",
        after.saturating_sub(before)
    );
    // Bounded: the listener holds at most `MAX_CONNECTIONS` of them, whatever arrives (about
    // 9 KiB each, both ends in this process, was seen here).
    assert!(
        after.saturating_sub(before) < 128 * 1024,
        "memory grew {} KiB",
        after - before
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarded_for_sent_straight_to_a_node_does_not_escape_the_limit() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = common::up("external-store", "127.83.0.0/16", data.path(), PASSWORD).await;
    let store = on(&up, "store-1", apim_components::Peer::Store);
    let mut statuses = Vec::new();
    for i in 0..40 {
        let req = apim_components::client::login(&format!("nobody-{i}"), "wrong-password")
            .header("x-forwarded-for", &format!("198.51.100.{i}"));
        statuses.push(send(&up, &store, req).await.status);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        limited >= 40 - apim_components::auth::ADDRESS_FAILURES as usize,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_logins_with_a_megabyte_name_leave_the_user_database_as_it_was() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = common::up("standalone", "127.84.0.0/16", data.path(), PASSWORD).await;
    let e = Entries::of(&up).expect("entries");
    let files = || -> u64 {
        std::fs::read_dir(data.path())
            .expect("data")
            .filter_map(Result::ok)
            .filter(|f| f.file_name().to_string_lossy().contains(".db"))
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let before = files();
    // A megabyte (10^6 bytes): the largest name a body under the 1 MiB limit carries.
    let name = "n".repeat(1_000_000);
    let body = serde_json::json!({"username": name, "password": "wrong-password"});
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..4 {
        let (c, to, body) = (client(&up), e.store.clone(), body.clone());
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..250 {
                let req = Request::new("POST", "/api/login").json(&body);
                let r = http::send(&c, &to.0, to.1, req, Duration::from_secs(60)).await;
                statuses.push(r.map(|r| r.status).unwrap_or(0));
            }
            (k, statuses)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (k, statuses) = done.expect("task");
        assert!(statuses.iter().all(|s| *s == 400), "task {k}: {statuses:?}");
    }
    let grown = files().saturating_sub(before);
    assert!(grown < 1 << 20, "the databases grew {grown} bytes");
    // The admin still signs in.
    let r = send(
        &up,
        &e.publisher,
        apim_components::client::login("admin", PASSWORD),
    )
    .await;
    assert_eq!(r.status, 200);
}

/// The machine's own name, when it resolves to loopback (as /etc/hosts has it here).
fn loopback_name() -> String {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_string();
    let resolved: Vec<_> = (name.as_str(), 80)
        .to_socket_addrs()
        .expect("the host name resolves")
        .collect();
    assert!(
        resolved.iter().any(|a| a.ip().is_loopback()),
        "{name} resolves to {resolved:?}, not loopback"
    );
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_name_resolving_to_loopback_is_refused_when_the_gateway_connects() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = common::up("standalone", "127.85.0.0/16", data.path(), PASSWORD).await;
    let mut e = Entries::of(&up).expect("entries");
    let port = up.backend.rsplit(':').next().expect("port").to_string();
    // The publisher cannot know where a name goes; the gateway checks when it connects.
    e.backend = format!("http://{}:{port}", loopback_name());
    let p = apim_runtime::smoke::provision(&e, PASSWORD, "rebind")
        .await
        .expect("provision");
    let r = send(
        &up,
        &e.gateway,
        apim_components::client::invoke(&p.context, "x", Some(&p.token), false),
    )
    .await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert!(!body.contains(&port) && !body.contains("127."), "{body}");
    // Written as an address, it is refused at once by the publisher.
    let r = send(
        &up,
        &e.publisher,
        apim_components::client::create_api(
            &p.publisher,
            &apim_components::client::NewApi {
                name: "Loop",
                version: "v1",
                context: "loop",
                backend: &format!("http://127.0.0.1:{port}/"),
            },
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_listed_backend_works_and_one_that_is_not_is_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    // A second echo backend on a loopback address of its own, allowed for this run only.
    let listener = http::bind("127.86.200.1", 8080).await.expect("bind");
    let echo = tokio::spawn(http::serve(listener, |req, _| apim_runtime::up::echo(req)));
    let c = common::load(
        "standalone",
        apim_patterns::find("standalone")
            .expect("pattern")
            .template
            .as_bytes(),
    );
    let opts = apim_runtime::up::UpOptions {
        backends: vec!["127.86.200.0/24".into()],
        loopback: apim_runtime::up::Loopback::parse("127.86.0.0/16").expect("range"),
        data: data.path().to_path_buf(),
        admin_password: PASSWORD.into(),
    };
    let up = apim_runtime::up::start(&c.topology, &opts)
        .await
        .expect("apim up");
    let mut e = Entries::of(&up).expect("entries");
    e.backend = "http://127.86.200.1:8080".into();
    let p = apim_runtime::smoke::provision(&e, PASSWORD, "allowed")
        .await
        .expect("an allow-listed backend is accepted");
    let r = send(
        &up,
        &e.gateway,
        apim_components::client::invoke(&p.context, "hello", Some(&p.token), false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Another loopback address is not on the list.
    e.backend = "http://127.86.201.1:8080".into();
    let refused = apim_runtime::smoke::provision(&e, PASSWORD, "refused").await;
    let why = refused.expect_err("refused");
    assert!(why.contains("400"), "{why}");
    echo.abort();
}

/// Sends `req` to `to` over TLS from the source address `from` (a loopback address of the
/// test's own), and reads the whole answer.
async fn send_from(up: &Up, from: &str, to: &(String, u16), req: Request) -> Response {
    use http_body_util::BodyExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("source"))
        .expect("bind");
    let stream = socket
        .connect(format!("{}:{}", to.0, to.1).parse().expect("address"))
        .await
        .expect("connect");
    let config = apim_runtime::tls::client_trusting(&up.ca_pem).expect("CA");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(apim_runtime::tls::server_name(&to.0).expect("name"), stream)
        .await
        .expect("TLS");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP");
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(&req.path)
        .header("host", &to.0);
    for (n, v) in &req.headers {
        builder = builder.header(n, v);
    }
    let r = sender
        .send_request(
            builder
                .body(http_body_util::Full::new(bytes::Bytes::from(req.body)))
                .expect("request"),
        )
        .await
        .expect("answer");
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    Response {
        status,
        headers: Vec::new(),
        body: body.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_balancer_each_client_address_is_limited_on_its_own() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = common::up(
        "clustered-external-store",
        "127.90.0.0/16",
        data.path(),
        PASSWORD,
    )
    .await;
    let e = Entries::of(&up).expect("entries");
    // The store through its external balancer.
    let r = send(
        &up,
        &e.store,
        apim_components::client::signup("nia", "a-long-password"),
    )
    .await;
    assert_eq!(r.status, 201);
    let (attacker, client) = ("127.91.0.1", "127.91.0.2");
    let mut last = 0;
    for i in 0..=apim_components::auth::ADDRESS_FAILURES {
        let login = apim_components::client::login(&format!("nobody-{i}"), "wrong-password")
            // A forged header, which the balancer appends to and the node must not believe.
            .header("x-forwarded-for", client);
        last = send_from(&up, attacker, &e.store, login).await.status;
    }
    assert_eq!(last, 429, "the attacker's address is throttled");
    // The balancer vouches for the real client's own address: it is not the attacker's.
    let r = send_from(
        &up,
        client,
        &e.store,
        apim_components::client::login("nia", "a-long-password"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
