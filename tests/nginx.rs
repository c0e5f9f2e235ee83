//! The generated nginx.conf, run by a real nginx in front of the gateways of `apim up`: tokens
//! and API calls go through it.

mod common;

use apim_components::Request;
use apim_runtime::http;
use apim_runtime::up::{self, Loopback, UpOptions};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_from_apim_build_balances_the_gateways() {
    let data = tempfile::tempdir().expect("temp dir");
    let c = common::load(
        "t",
        apim_patterns::find("clustered-internal")
            .expect("pattern")
            .template
            .as_bytes(),
    );
    let opts = UpOptions {
        backends: Vec::new(),
        loopback: Loopback::parse("127.56.0.0/16").expect("range"),
        data: data.path().into(),
        admin_password: "pw-nginx-test".into(),
    };
    let up = up::start(&c.topology, &opts).await.expect("up");
    let edge = up
        .plan
        .balancers
        .iter()
        .find(|b| b.name == "edge")
        .expect("edge balancer");
    let listen = "127.56.1.1";
    // nginx shows clients an edge certificate for its own address, from the deployment CA
    // `apim up` made; towards the nodes it is the edge balancer.
    let prefix = tempfile::tempdir().expect("prefix");
    let pki = data.path().join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).expect("PKI file");
    let ca = apim_pki::Ca {
        cert_pem: read("ca.crt"),
        key_pem: read("ca.key"),
    };
    let issued = ca
        .issue("spiffe://t/balancer/nginx", &[listen.to_string()])
        .expect("edge certificate");
    std::fs::write(prefix.path().join("edge.crt"), issued.cert_pem).expect("write");
    std::fs::write(prefix.path().join("edge.key"), issued.key_pem).expect("write");
    let mut edge = edge.clone();
    edge.edge = Some(apim_compiler::plan::CertPair {
        cert: prefix.path().join("edge.crt").display().to_string(),
        key: prefix.path().join("edge.key").display().to_string(),
    });
    let conf = apim_compiler::emit::nginx::render_on(&up.plan, &edge, Some(listen));
    std::fs::write(prefix.path().join("nginx.conf"), conf).expect("write");
    let _nginx = Nginx(
        Command::new("nginx")
            .env(
                "PATH",
                format!("{}:/usr/sbin", std::env::var("PATH").unwrap_or_default()),
            )
            .arg("-p")
            .arg(prefix.path())
            .args(["-c", "nginx.conf", "-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx is installed (./scripts/test installs it)"),
    );
    let client = http::tls_client(apim_runtime::tls::client_trusting(&up.ca_pem).expect("CA"));
    let mut ready = false;
    for _ in 0..50 {
        if http::send(
            &client,
            listen,
            8280,
            Request::new("GET", "/"),
            Duration::from_secs(1),
        )
        .await
        .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "nginx did not start");
    // The walk-through, with the gateway and the store reached through nginx.
    let mut entries = apim_runtime::smoke::Entries::of(&up).expect("entries");
    entries.gateway = (listen.to_string(), 8280);
    entries.store = (listen.to_string(), 9444);
    let target = apim_drill::real::Target::of_entries(&up.plan, &entries);
    let report = apim_drill::smoke::run(target, "pw-nginx-test")
        .await
        .expect("the smoke test through nginx");
    common::smoke_passed(&report, "through nginx");
    // nginx adds the forwarding headers the runtime's logs and backends rely on.
    let r = http::send(
        &client,
        listen,
        9444,
        Request::new("POST", "/api/login").json(&json!({"username": "admin", "password": "wrong"})),
        Duration::from_secs(5),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 401, "the store answers through nginx");
}
