//! Signing-key rotation across a rolling restart of the key managers, for real: the new key is
//! published (`jwks.json`) before a key manager signs with it, the previous key's tokens stay
//! valid until they expire, and no token or API call fails on the way.

use apim_components::{Request, client};
use apim_runtime::smoke::{self, Entries};
use apim_runtime::up::{self, Loopback, UpOptions};
use base64::Engine as _;
use std::time::Duration;

const ADMIN: &str = "rotation-admin-password";

/// The key id in a JWT's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON header");
    v["kid"].as_str().expect("kid").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_works_across_a_rolling_restart_of_the_key_managers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = apim_patterns::find("clustered-external-store")
        .expect("pattern")
        .template;
    let checked = apim_topology::check_str("t.toml", template);
    let opts = UpOptions {
        backends: Vec::new(),
        loopback: Loopback::parse("127.79.0.0/16").expect("range"),
        data: dir.path().join("data"),
        admin_password: ADMIN.into(),
    };
    let mut up = up::start(&checked.topology, &opts).await.expect("up");
    let e = Entries::of(&up).expect("entries");
    let p = smoke::provision(&e, ADMIN, "rotation")
        .await
        .expect("provision");
    let http =
        apim_runtime::http::tls_client(apim_runtime::tls::client_trusting(&e.ca).expect("CA"));
    let send = |req: Request| {
        let http = http.clone();
        let (host, port) = e.gateway.clone();
        async move {
            apim_runtime::http::send(&http, &host, port, req, Duration::from_secs(10))
                .await
                .expect("the gateways' balancer answers")
        }
    };
    let invoke = |token: String| {
        let send = &send;
        let context = p.context.clone();
        async move {
            send(client::invoke(&context, "x", Some(&token), false))
                .await
                .status
        }
    };
    let token = || {
        let send = &send;
        let (key, secret) = (p.consumer_key.clone(), p.consumer_secret.clone());
        async move {
            let r = send(client::token(&key, &secret)).await;
            assert_eq!(r.status, 200, "{:?}", r.json_body());
            client::issued(&r).expect("a token").token
        }
    };
    let old = p.token.clone();
    let old_kid = kid(&old);
    assert_eq!(invoke(old.clone()).await, 200);

    // Published first: the new key in jwks.json, the previous one kept.
    apim_runtime::signing::write(&dir.path().join("data/pki"), true).expect("rotate");
    let mut kids = std::collections::BTreeSet::new();
    for km in ["key-manager-1", "key-manager-2"] {
        let i = up
            .nodes
            .iter()
            .position(|n| n.plan.name == km)
            .expect("key manager");
        let node = up.nodes.remove(i);
        let plan = node.plan.clone();
        let urls = apim_runtime::databases::of_node(&plan, &up.databases);
        // A rolling restart: unready first, while the balancers take it out.
        node.drain(
            Duration::from_millis(apim_topology::timing::DRAIN_MS),
            Duration::from_millis(apim_topology::timing::GRACE_MS),
        )
        .await;
        up.nodes.push(
            apim_runtime::node::start(plan, urls, ADMIN)
                .await
                .expect("restart"),
        );
        // Through the restart and after: every token issued works, and the old one still does.
        for _ in 0..20 {
            let t = token().await;
            kids.insert(kid(&t));
            assert_eq!(invoke(t).await, 200, "a token just issued");
            assert_eq!(invoke(old.clone()).await, 200, "the previous key's token");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    assert!(kids.len() == 2 || !kids.contains(&old_kid), "{kids:?}");
    // Both key managers run the new key now: every new token is signed by it.
    for _ in 0..6 {
        let t = token().await;
        assert_ne!(kid(&t), old_kid, "signed by the new key");
        assert_eq!(invoke(t).await, 200);
    }
}
