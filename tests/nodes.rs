//! Nodes as separate `apim node` processes sharing one real database — the machine's
//! PostgreSQL, then its MariaDB — with `apim balancer` in front of two gateways, running the
//! smoke test (the simulator's workload) between them.

mod common;

use apim_runtime::http;
use apim_runtime::smoke::Entries;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

const PASSWORD: &str = "nodes-admin-password";

/// Kills the node processes however the test ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The topology; APIs may have backends in `backends` (the test's own loopback range).
fn topology(url: &str, engine: &str, backends: &str) -> String {
    let mut t = format!(
        "version = 1\n\n[deployment]\nname = \"procs\"\nbackends = [\"{backends}\"]\n\n[networks.lan]\n\n[databases.main]\nroles = [\"user\", \"apim\", \"registry\"]\nengine = \"{engine}\"\nurl = \"{url}\"\nnetwork = \"lan\"\n"
    );
    for (i, c) in ["publisher", "store", "key-manager"].iter().enumerate() {
        t.push_str(&format!("\n[clusters.{c}]\ncomponents = [\"{c}\"]\nnetwork = \"lan\"\nhosts = [\"10.20.0.{}\"]\n", i + 1));
    }
    t.push_str("\n[clusters.gateway]\ncomponents = [\"gateway\"]\nnetwork = \"lan\"\nhosts = [\"10.20.0.4\", \"10.20.0.5\"]\n");
    t.push_str("\n[load_balancers.edge]\nkind = \"external\"\nnetwork = \"lan\"\nhost = \"10.20.0.9\"\nfronts = [\"gateway\"]\n");
    t
}

async fn admin(url: &str, statement: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url} must be reachable for this test: {e}"));
    sqlx::query(statement)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    pool.close().await;
}

async fn echo_backend(host: &str) -> tokio::task::JoinSet<()> {
    let listener = http::bind(host, 8080).await.expect("echo backend");
    let mut set = tokio::task::JoinSet::new();
    set.spawn(http::serve(
        listener,
        |req: apim_components::Request, _| async move {
            apim_components::Response::json(200, &serde_json::json!({ "path": req.path }))
        },
    ));
    set
}

/// Builds the topology, starts a process per node and one for the gateways' balancer
/// (addresses mapped into `range`, a /24 of 127.x), and runs the walk-through against them.
async fn run_nodes(url: &str, engine: &str, range: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(
        d.join("t.toml"),
        topology(url, engine, &format!("{range}.0/24")),
    )
    .expect("write");
    let built = common::apim()
        .args(["build", "t.toml", "-o", "out"])
        .current_dir(d)
        .output()
        .expect("build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let names = [
        "publisher-1",
        "store-1",
        "key-manager-1",
        "gateway-1",
        "gateway-2",
    ];
    let address = |i: usize| format!("{range}.{}", i + 1);
    let mut hosts = String::from("[nodes]\n");
    for (i, n) in names.iter().enumerate() {
        hosts.push_str(&format!("{n} = \"{}\"\n", address(i)));
    }
    hosts.push_str(&format!("[balancers]\nedge = \"{range}.9\"\n"));
    std::fs::write(d.join("hosts.toml"), hosts).expect("hosts");
    let certs = common::apim()
        .args(["certs", "t.toml", "-o", "certs", "--hosts", "hosts.toml"])
        .current_dir(d)
        .output()
        .expect("certs");
    assert!(
        certs.status.success(),
        "{}",
        String::from_utf8_lossy(&certs.stderr)
    );
    let ca = std::fs::read_to_string(d.join("certs/ca.crt")).expect("the CA");
    let mut procs = Processes(Vec::new());
    for n in names {
        let child = common::apim()
            .args([
                "node",
                &format!("out/nodes/{n}.toml"),
                "--hosts",
                "hosts.toml",
                "--certs",
                "certs",
            ])
            .current_dir(d)
            .env("APIM_ADMIN_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("apim node starts");
        procs.0.push(child);
    }
    let balancer = common::apim()
        .args([
            "balancer",
            "out/lb/edge/rules.toml",
            "--hosts",
            "hosts.toml",
            "--bind",
            &format!("{range}.9"),
            "--certs",
            "certs",
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("apim balancer starts");
    procs.0.push(balancer);
    let client = http::tls_client(apim_runtime::tls::client_trusting(&ca).expect("CA"));
    for (i, name) in names.iter().enumerate() {
        let mut up = false;
        for _ in 0..100 {
            let health = apim_components::Request::new("GET", "/health");
            if http::send(&client, &address(i), 9090, health, Duration::from_secs(1))
                .await
                .is_ok_and(|r| r.status == 200)
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "{name} did not start");
    }
    // The balancer's health checks take its nodes in at once; wait for it to answer.
    let mut balanced = false;
    for _ in 0..100 {
        let r = http::send(
            &client,
            &format!("{range}.9"),
            8280,
            apim_components::Request::new("GET", "/none/v1"),
            Duration::from_secs(1),
        )
        .await;
        if r.is_ok_and(|r| r.status == 404) {
            balanced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(balanced, "the balancer did not start");
    let backend_host = format!("{range}.100");
    let _backend = echo_backend(&backend_host).await;
    let entries = Entries {
        publisher: (address(0), 9443),
        store: (address(1), 9444),
        key_manager: (address(2), 9445),
        gateway: (format!("{range}.9"), 8280),
        gateway_nodes: vec![
            ("gateway-1".into(), address(3), 8280),
            ("gateway-2".into(), address(4), 8280),
        ],
        backend: format!("http://{backend_host}:8080"),
        ca,
    };
    // The plan as the nodes run it: their mapped addresses, their certificates.
    let plan: apim_compiler::plan::Plan = serde_json::from_str(
        &std::fs::read_to_string(d.join("out/plan.json")).expect("the built plan"),
    )
    .expect("a plan");
    let hosts = apim_compiler::HostMap::parse(
        &std::fs::read_to_string(d.join("hosts.toml")).expect("the host map"),
    )
    .expect("a host map");
    let mut plan = hosts.plan(&plan);
    let certs = d.join("certs").display().to_string();
    for n in &mut plan.nodes {
        n.tls = apim_compiler::plan::TlsFiles::in_dir(&certs, &n.name);
    }
    let target = apim_drill::real::Target::of_entries(&plan, &entries);
    let report = apim_drill::smoke::run(target, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    common::smoke_passed(&report, engine);
    drop(procs);
    let _ = Path::new(d);
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_processes_share_postgresql() {
    let server = "postgres://postgres@127.0.0.1:5432/test";
    let schema = unique("apim_nodes");
    admin(server, &format!("CREATE SCHEMA {schema}")).await;
    run_nodes(
        &format!("{server}?options=-c%20search_path%3D{schema}"),
        "postgres",
        "127.54.0",
    )
    .await;
    admin(server, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_processes_share_mariadb() {
    let db = unique("apim_nodes");
    admin(
        "mysql://root@127.0.0.1:3306/test",
        &format!("CREATE DATABASE {db}"),
    )
    .await;
    run_nodes(
        &format!("mysql://root@127.0.0.1:3306/{db}"),
        "mysql",
        "127.55.0",
    )
    .await;
    admin(
        "mysql://root@127.0.0.1:3306/test",
        &format!("DROP DATABASE {db}"),
    )
    .await;
}
