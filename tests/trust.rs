//! The trust model over real sockets, against `apim up`: what only nodes may do is refused to
//! everyone else and changes nothing — from the public side, from a node of the wrong
//! component, with a certificate from another CA, with none, in plain HTTP.

mod common;

use apim_components::{Request, Response};
use apim_runtime::smoke::{self, Entries};
use apim_runtime::tls::Tls;
use apim_runtime::up::{self, Loopback, Up, UpOptions};
use apim_runtime::{http, upstream::Upstreams};
use serde_json::json;
use std::time::Duration;

const PASSWORD: &str = "trust-admin-password";

async fn start(data: &std::path::Path) -> Up {
    let c = common::load(
        "clustered-internal",
        apim_patterns::find("clustered-internal")
            .expect("pattern")
            .template
            .as_bytes(),
    );
    let opts = UpOptions {
        backends: Vec::new(),
        loopback: Loopback::parse("127.62.0.0/16").expect("range"),
        data: data.to_path_buf(),
        admin_password: PASSWORD.into(),
    };
    up::start(&c.topology, &opts).await.expect("up")
}

/// The TLS material `apim up` gave a node.
fn node_tls(up: &Up, node: &str) -> Tls {
    let n = up.plan.node(node).expect("node");
    Tls::load(&n.tls).expect("node TLS")
}

/// Where a node's internal listener is.
fn internal(up: &Up, node: &str) -> (String, u16) {
    let n = up.plan.node(node).expect("node");
    (n.host.clone(), n.internal_port)
}

/// Every node's SPIFFE ID: a client that accepts any node of the deployment.
fn every_node(up: &Up) -> Vec<String> {
    up.plan.nodes.iter().map(|n| n.identity.clone()).collect()
}

async fn send(client: &http::Client, to: &(String, u16), req: Request) -> Result<Response, String> {
    http::send(client, &to.0, to.1, req, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())
}

fn hijack(api: &str, context: &str) -> Request {
    Request::new("POST", "/internal/apis").json(&json!({
        "id": api, "name": "x", "version": "v1", "context": context,
        "backend": "http://127.62.255.9:8080", "description": "", "provider": "x",
        "state": "published"
    }))
}

async fn invoke_path(e: &Entries, context: &str, token: &str) -> serde_json::Value {
    let client = http::tls_client(apim_runtime::tls::client_trusting(&e.ca).expect("CA"));
    let r = send(
        &client,
        &e.gateway,
        Request::new("GET", &format!("/{context}/v1/still-mine"))
            .header("authorization", &format!("Bearer {token}")),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 200);
    r.json_body().expect("echo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_nodes_the_flows_table_names_reach_internal_endpoints() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start(data.path()).await;
    let e = Entries::of(&up).expect("entries");
    let p = smoke::provision(&e, PASSWORD, "trust")
        .await
        .expect("provision");
    let gateway = internal(&up, "gateway-1");
    let key_manager = internal(&up, "key-manager-1");

    // A store node's own certificate: valid, from the deployment CA, but the flows table does
    // not let the store notify gateways.
    let store = Upstreams::with_tls(
        node_tls(&up, "store-1")
            .client(every_node(&up))
            .expect("client"),
    );
    let r = send(&store, &gateway, hijack(&p.api, &p.context))
        .await
        .expect("answer");
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    // A gateway may not mint consumer keys; a store may (that is its hop).
    let gw = Upstreams::with_tls(
        node_tls(&up, "gateway-2")
            .client(every_node(&up))
            .expect("client"),
    );
    let mint = || Request::new("POST", "/internal/clients").json(&json!({"application": "nope"}));
    let r = send(&gw, &key_manager, mint()).await.expect("answer");
    assert_eq!(r.status, 403);
    let r = send(&store, &key_manager, mint()).await.expect("answer");
    assert_eq!(
        r.status, 404,
        "admitted, and the application does not exist"
    );
    // The publisher may notify: the endpoint works for it (a hint: the gateway reads the
    // registry, so an unknown API changes nothing).
    let publisher = Upstreams::with_tls(
        node_tls(&up, "publisher-1")
            .client(every_node(&up))
            .expect("client"),
    );
    let r = send(&publisher, &gateway, hijack("no-such-api", "elsewhere"))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);

    // A certificate from another CA, claiming to be a publisher node: no handshake.
    let evil = apim_pki::Ca::generate("evil").expect("ca");
    let forged = evil
        .issue(
            &up.plan.node("publisher-1").expect("node").identity,
            &["127.62.0.99".into()],
        )
        .expect("cert");
    let evil_tls = Tls::from_pem(&evil.cert_pem, &forged.cert_pem, &forged.key_pem).expect("tls");
    let _ = evil_tls;
    // The forger trusts the real CA for the server; only its own certificate is foreign.
    let evil_client = http::tls_client(
        apim_runtime::tls::client_with_identity(&up.ca_pem, &forged.cert_pem, &forged.key_pem)
            .expect("client"),
    );
    let r = send(&evil_client, &gateway, hijack(&p.api, &p.context)).await;
    assert!(r.is_err(), "a foreign certificate got an answer: {r:?}");
    // No certificate at all: no handshake either.
    let anonymous =
        http::tls_client(apim_runtime::tls::client_trusting(&up.ca_pem).expect("client"));
    let r = send(&anonymous, &gateway, hijack(&p.api, &p.context)).await;
    assert!(
        r.is_err(),
        "a client without a certificate got an answer: {r:?}"
    );
    // Plain HTTP to a TLS port gets no HTTP answer.
    let plain = send(&http::client(), &gateway, hijack(&p.api, &p.context)).await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");
    let plain = send(&http::client(), &e.gateway, Request::new("GET", "/")).await;
    assert!(
        plain.is_err(),
        "plain HTTP got an answer from the edge: {plain:?}"
    );

    // Nothing changed: the API still reaches its own backend through every gateway.
    let echoed = invoke_path(&e, &p.context, &p.token).await;
    assert_eq!(echoed["path"], "/still-mine");
    // The refusals are counted where monitoring looks.
    let admin = http::tls_client(apim_runtime::tls::client_trusting(&up.ca_pem).expect("client"));
    let gw1 = up.plan.node("gateway-1").expect("node");
    let metrics = send(
        &admin,
        &(gw1.host.clone(), gw1.admin_port),
        Request::new("GET", "/metrics"),
    )
    .await
    .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"endpoint="POST /internal/apis",reason="caller"} 1"#),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(r#"endpoint="handshake""#) && !l.ends_with(" 0")),
        "{text}"
    );
}
