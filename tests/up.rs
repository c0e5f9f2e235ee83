//! `apim up` end to end, on loopback: every pattern passes the smoke test (the simulator's
//! workload, a few seconds without faults) through its external balancer; a gateway that was down during a publish serves the API once started;
//! a restart keeps APIs, subscriptions and tokens.

mod common;

use apim_components::{Request, Response};
use apim_runtime::http;
use apim_runtime::smoke::{self, Entries};
use apim_runtime::up::Up;
use serde_json::json;
use std::time::Duration;

const PASSWORD: &str = "test-admin-password";

async fn start(pattern: &str, range: &str, data: &std::path::Path) -> Up {
    common::up(pattern, range, data, PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pattern_publishes_subscribes_and_invokes_through_its_balancer() {
    for (i, p) in apim_patterns::PATTERNS.iter().enumerate() {
        let data = tempfile::tempdir().expect("temp dir");
        let up = start(p.id, &format!("127.{}.0.0/16", 40 + i), data.path()).await;
        if p.id != "standalone" {
            assert!(
                !up.notes.is_empty(),
                "{}: its PostgreSQL databases are not on this machine",
                p.id
            );
        }
        let target = apim_drill::real::Target::of_plan(&up.plan, &up.ca_pem, &up.backend);
        let report = apim_drill::smoke::run(target, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        common::smoke_passed(&report, p.id);
    }
}

/// A client as curl with `--cacert` is: it trusts the deployment CA `apim up` made.
fn client(e: &Entries) -> http::Client {
    http::tls_client(apim_runtime::tls::client_trusting(&e.ca).expect("CA"))
}

async fn call(e: &Entries, to: &(String, u16), req: Request) -> Response {
    http::send(&client(e), &to.0, to.1, req, Duration::from_secs(10))
        .await
        .expect("answer")
}

/// Invokes until it answers 200 or the time is up (a starting gateway reconciles first).
async fn invokes(e: &Entries, to: &(String, u16), context: &str, token: &str) -> u16 {
    let mut status = 0;
    for _ in 0..50 {
        let r = call(
            e,
            to,
            Request::new("GET", &format!("/{context}/v1/x"))
                .header("authorization", &format!("Bearer {token}")),
        )
        .await;
        status = r.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_after_the_publish_serves_the_api() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut up = start("clustered-internal", "127.50.0.0/16", data.path()).await;
    let i = up
        .nodes
        .iter()
        .position(|n| n.plan.name == "gateway-2")
        .expect("gateway-2");
    let stopped = up.nodes.remove(i);
    let plan = stopped.plan.clone();
    drop(stopped);
    let entries = Entries::of(&up).expect("entries");
    let p = smoke::provision(&entries, PASSWORD, "late")
        .await
        .expect("provision");
    let urls = apim_runtime::databases::of_node(&plan, &up.databases);
    let restarted = apim_runtime::node::start(plan.clone(), urls, PASSWORD)
        .await
        .expect("gateway-2 starts");
    let port = plan.listeners[0].port;
    assert_eq!(
        invokes(&entries, &(plan.host.clone(), port), &p.context, &p.token).await,
        200
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_keeps_apis_subscriptions_and_tokens() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start("standalone", "127.51.0.0/16", data.path()).await;
    let entries = Entries::of(&up).expect("entries");
    let p = smoke::provision(&entries, PASSWORD, "kept")
        .await
        .expect("provision");
    assert_eq!(
        invokes(&entries, &entries.gateway, &p.context, &p.token).await,
        200
    );
    drop(up);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let up = start("standalone", "127.51.0.0/16", data.path()).await;
    let entries = Entries::of(&up).expect("entries");
    assert_eq!(
        invokes(&entries, &entries.gateway, &p.context, &p.token).await,
        200,
        "the token and subscription survive a restart"
    );
    let login = call(
        &entries,
        &entries.store,
        Request::new("POST", "/api/login")
            .json(&json!({"username": "smoke-kept", "password": "smoke-password"})),
    )
    .await;
    assert_eq!(login.status, 200);
}

#[test]
fn apim_up_smoke_passes_from_the_command_line() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("t.toml"),
        apim_patterns::find("internal-store")
            .expect("pattern")
            .template,
    )
    .expect("write");
    let out = common::apim()
        .args([
            "up",
            "t.toml",
            "--smoke",
            "--loopback",
            "127.52.0.0/16",
            "--data",
        ])
        .arg(data.path())
        .current_dir(dir.path())
        .env("APIM_ADMIN_PASSWORD", PASSWORD)
        .output()
        .expect("apim runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("smoke: passed") && text.contains("using the SQLite file"),
        "{text}"
    );
}

/// `apim up --smoke` twice in one folder, with no admin password given: the second run uses the
/// admin the first created. The topology's database URL is a reference whose value names a
/// production host: it is decided on after expansion and never connected to (the decision is
/// on the URL alone; nothing is sent to 10.x).
#[test]
fn a_second_apim_up_in_the_same_folder_passes_and_a_referenced_remote_database_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology = apim_patterns::find("standalone")
        .expect("pattern")
        .template
        .replace("engine = \"sqlite\"", "engine = \"postgres\"");
    let topology = regex_free_url(&topology, "${DATABASE_URL}");
    std::fs::write(dir.path().join("t.toml"), &topology).expect("write");
    for run in 0..2 {
        let out = common::apim()
            .args(["up", "t.toml", "--smoke", "--loopback", "127.53.0.0/16"])
            .current_dir(dir.path())
            .env_remove("APIM_ADMIN_PASSWORD")
            .env("DATABASE_URL", "postgres:///prod?host=10.0.9.10")
            .output()
            .expect("apim runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "run {run}: {text}");
        assert!(
            text.contains("(postgres on 10.0.9.10) is not on this machine"),
            "run {run}: {text}"
        );
    }
    let kept = dir.path().join(".apim-up/admin-password");
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&kept), 0o600);
    assert_eq!(mode(&dir.path().join(".apim-up")), 0o700);
    assert_eq!(mode(&dir.path().join(".apim-up/local.db")), 0o600);
    assert_eq!(
        mode(&dir.path().join(".apim-up/pki/all-in-one-1.key")),
        0o600
    );
}

/// The topology with every database `url = "..."` line replaced by `url = "{url}"`.
fn regex_free_url(topology: &str, url: &str) -> String {
    topology
        .lines()
        .map(|l| {
            if l.starts_with("url = ") {
                format!("url = \"{url}\"\nnetwork = \"internal\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_headers_are_refused_with_4xx_over_real_http() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start("standalone", "127.57.0.0/16", data.path()).await;
    let e = Entries::of(&up).expect("entries");
    let mut big = Request::new("POST", "/api/login");
    big.body = vec![b'x'; apim_components::http::MAX_BODY + 10];
    assert_eq!(call(&e, &e.publisher, big).await.status, 413);
    let huge = Request::new("GET", "/x/v1/y").header("x-padding", &"p".repeat(128 * 1024));
    match http::send(
        &client(&e),
        &e.gateway.0,
        e.gateway.1,
        huge,
        Duration::from_secs(5),
    )
    .await
    {
        Ok(r) => assert_eq!(r.status, 431),
        // hyper may close the connection after answering; what matters is no 5xx.
        Err(err) => assert!(
            matches!(err, apim_components::CallError::Broken(_)),
            "{err}"
        ),
    }
    let mut malformed =
        Request::new("POST", "/api/signup").header("content-type", "application/json");
    malformed.body = b"{\"username\": ".to_vec();
    let r = call(&e, &e.store, malformed).await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("invalid JSON"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_and_the_gateway_stream_bodies_larger_than_one_message_both_ways() {
    let data = tempfile::tempdir().expect("temp dir");
    // Two gateways behind the built-in external balancer: the client's body goes through both.
    let up = start("internal-store", "127.58.0.0/16", data.path()).await;
    // A backend that counts the bytes it receives and answers with 3 MiB.
    let listener = http::bind("127.58.255.1", 8080).await.expect("bind");
    let _backend = tokio::spawn(http::serve_raw(listener, |req, _| async move {
        let received = http::read_all(req.into_body()).await.map_or(0, |b| b.len());
        let mut body = format!("{received}:").into_bytes();
        body.resize(body.len() + (3 << 20), b'y');
        http::write(Response {
            status: 200,
            headers: Vec::new(),
            body,
        })
    }));
    let mut e = Entries::of(&up).expect("entries");
    e.backend = "http://127.58.255.1:8080".into();
    let p = smoke::provision(&e, PASSWORD, "stream")
        .await
        .expect("provision");
    let mut upload = Request::new("POST", &format!("/{}/v1/upload", p.context))
        .header("authorization", &format!("Bearer {}", p.token));
    upload.body = vec![b'x'; 5 << 20];
    let r = call(&e, &e.gateway, upload).await;
    assert_eq!(
        r.status,
        200,
        "{}",
        String::from_utf8_lossy(&r.body[..200.min(r.body.len())])
    );
    let prefix = format!("{}:", 5 << 20);
    assert!(
        r.body.starts_with(prefix.as_bytes()),
        "the backend got every byte"
    );
    assert_eq!(
        r.body.len(),
        prefix.len() + (3 << 20),
        "the client got every byte"
    );
    // Refused on the head: the body is never sent on, and what is left of it is read and
    // dropped, so the answer arrives whole (through the balancer too) instead of a reset.
    for _ in 0..3 {
        let mut no_token = Request::new("POST", &format!("/{}/v1/upload", p.context));
        no_token.body = vec![b'x'; 8 << 20];
        assert_eq!(call(&e, &e.gateway, no_token).await.status, 401);
    }
    // Over a component's limit, through the balancer: 413, not a reset seen as 502.
    for _ in 0..3 {
        let mut big = Request::new("POST", "/api/apis");
        big.body = vec![b'x'; 8 << 20];
        assert_eq!(call(&e, &e.publisher, big).await.status, 413);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_is_a_502_whatever_the_size_of_the_upload() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start("internal-store", "127.62.0.0/16", data.path()).await;
    let mut e = Entries::of(&up).expect("entries");
    // Nothing listens there.
    e.backend = "http://127.62.255.9:8080".into();
    let p = smoke::provision(&e, PASSWORD, "down")
        .await
        .expect("provision");
    for size in [0, 8 << 20, 8 << 20, 8 << 20] {
        let mut upload = Request::new("POST", &format!("/{}/v1/upload", p.context))
            .header("authorization", &format!("Bearer {}", p.token));
        upload.body = vec![b'x'; size];
        let r = call(&e, &e.gateway, upload).await;
        assert_eq!(r.status, 502, "{size} bytes");
        assert!(
            String::from_utf8_lossy(&r.body).contains("backend"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_gets_the_clients_headers_but_never_its_token() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start("standalone", "127.59.0.0/16", data.path()).await;
    // A backend that answers with the request head it received, one header per line.
    let listener = http::bind("127.59.255.1", 8080).await.expect("bind");
    let _backend = tokio::spawn(http::serve_raw(listener, |req, _| async move {
        let mut seen = format!("{} {}\n", req.method(), req.uri()).into_bytes();
        for (name, value) in req.headers() {
            seen.extend_from_slice(name.as_str().as_bytes());
            seen.extend_from_slice(b": ");
            seen.extend_from_slice(value.as_bytes());
            seen.push(b'\n');
        }
        // A backend that tries to set the store's session cookie, and one of its own.
        http::write(Response {
            status: 200,
            headers: vec![
                ("set-cookie".into(), "apim_session=planted; Path=/".into()),
                ("set-cookie".into(), "pref=1; Path=/".into()),
            ],
            body: seen,
        })
    }));
    let mut e = Entries::of(&up).expect("entries");
    e.backend = "http://127.59.255.1:8080/base".into();
    let p = smoke::provision(&e, PASSWORD, "heads")
        .await
        .expect("provision");
    let (host, port) = &e.gateway;
    let authority = format!("{host}:{port}");
    let request = hyper::Request::builder()
        .method("PUT")
        .uri(format!("/{}/v1/items/a%20b?q=1&r=%2F", p.context))
        .header("host", &authority)
        .header("authorization", format!("Bearer {}", p.token))
        .header("x-trace", "abc")
        .header("x-trace", "def")
        .header(
            "cookie",
            "apim_session=the-consumers-session; theme=dark; APIM_NODE=store-1",
        )
        .header(
            "x-bytes",
            hyper::header::HeaderValue::from_bytes(b"caf\xe9").expect("obs-text value"),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .expect("request");
    let response = apim_runtime::upstream::Upstreams::with_tls(
        apim_runtime::tls::client_trusting(&e.ca).expect("CA"),
    )
    .send(&authority, request)
    .await
    .expect("answer");
    assert_eq!(response.status(), 200);
    let set: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(
        set,
        ["pref=1; Path=/"],
        "a backend cannot set a portal cookie"
    );
    let seen = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let seen = String::from_utf8_lossy(&seen);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "PUT /base/items/a%20b?q=1&r=%2F", "{seen}");
    assert!(lines.contains(&"host: 127.59.255.1:8080"), "{seen}");
    assert!(lines.contains(&"x-trace: abc"), "{seen}");
    assert!(lines.contains(&"x-trace: def"), "{seen}");
    assert!(lines.contains(&"x-bytes: caf\u{fffd}"), "{seen}");
    assert!(lines.contains(&"cookie: theme=dark"), "{seen}");
    assert!(
        !seen.contains("the-consumers-session") && !seen.contains("APIM_NODE"),
        "the portals' cookies must not reach a backend: {seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("authorization") && !seen.contains(&p.token),
        "the token must not reach the backend: {seen}"
    );
}
