//! Accounts over real sockets, against `apim up`: failed sign-ins counted across the nodes of a
//! cluster (the user database keeps them), password hashing bounded under a burst of logins,
//! and an unknown user name answering as slowly as a known one.

mod common;

use apim_components::Request;
use apim_runtime::http;
use apim_runtime::smoke::Entries;
use apim_runtime::up::Up;
use serde_json::json;
use std::time::{Duration, Instant};

const PASSWORD: &str = "accounts-admin-password";

async fn start(pattern: &str, range: &str, data: &std::path::Path) -> Up {
    common::up(pattern, range, data, PASSWORD).await
}

use common::{client, send};

/// A component's listener on one node.
fn on(up: &Up, node: &str, port: u16) -> (String, u16) {
    (up.plan.node(node).expect("node").host.clone(), port)
}

fn login(user: &str, password: &str) -> Request {
    apim_components::client::login(user, password)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_two_nodes_of_a_cluster_add_up_to_one_lockout() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start("clustered-internal", "127.63.0.0/16", data.path()).await;
    let (store1, store2) = (on(&up, "store-1", 9444), on(&up, "store-2", 9444));
    let signup = Request::new("POST", "/api/signup")
        .json(&json!({"username": "erin", "password": "erins-long-password"}));
    assert_eq!(send(&up, &store1, signup).await.status, 201);
    for i in 0..apim_components::auth::ACCOUNT_FAILURES {
        let node = if i % 2 == 0 { &store1 } else { &store2 };
        assert_eq!(
            send(&up, node, login("erin", "not-her-password"))
                .await
                .status,
            401
        );
    }
    for node in [&store1, &store2] {
        let r = send(&up, node, login("erin", "erins-long-password")).await;
        assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.get_header("retry-after").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_hashes_a_few_at_a_time_and_unknown_names_cost_as_much() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start("standalone", "127.64.0.0/16", data.path()).await;
    let e = Entries::of(&up).expect("entries");
    let publisher = e.publisher.clone();
    // 64 logins at once, mostly right (wrong ones count against this one address, whose limit
    // is 30 in the window).
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..64 {
        let (c, to) = (client(&up), publisher.clone());
        let right = i % 8 != 0;
        let password = if right { PASSWORD } else { "a-wrong-password" };
        let user = if right {
            "admin".to_string()
        } else {
            format!("nobody-{i}")
        };
        burst.spawn(async move {
            http::send(
                &c,
                &to.0,
                to.1,
                login(&user, password),
                Duration::from_secs(60),
            )
            .await
            .map(|r| r.status)
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = burst.join_next().await {
        statuses.push(done.expect("task").expect("answer"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        56,
        "{statuses:?}"
    );
    let peak = up.nodes[0].world.hashing_peak();
    let metrics = send(
        &up,
        &(up.plan.nodes[0].host.clone(), up.plan.nodes[0].admin_port),
        Request::new("GET", "/metrics"),
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let limit = format!(
        "apim_password_hashing_max{{node=\"all-in-one-1\"}} {}",
        apim_runtime::world::HASHING
    );
    assert!(text.contains(&limit), "{text}");
    assert!(
        (2..=apim_runtime::world::HASHING).contains(&peak),
        "argon2 ran {peak} at once"
    );
    // An unknown user name answers about as slowly as a known one with a wrong password. The
    // two are timed in turns, so that a busy machine slows both alike, and compared by their
    // medians with a wide margin: without the decoy hash, an unknown name answers in a small
    // fraction of a known one's time. Four turns: the fifth failure of one account from one
    // address is throttled.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..4 {
        for (user, times) in [("admin", &mut known), ("no-such-user", &mut unknown)] {
            let started = Instant::now();
            let r = send(&up, &publisher, login(user, "yet-another-wrong-one")).await;
            assert_eq!(r.status, 401);
            times.push(started.elapsed());
        }
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[1] + known[2], unknown[1] + unknown[2]);
    assert!(
        unknown * 4 >= known,
        "unknown {unknown:?} against known {known:?}: a name can be probed by time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_applications_keys_reaches_every_gateway_within_the_bound() {
    let data = tempfile::tempdir().expect("temp dir");
    let up = start("clustered-internal", "127.65.0.0/16", data.path()).await;
    let e = Entries::of(&up).expect("entries");
    let p = apim_runtime::smoke::provision(&e, PASSWORD, "keys")
        .await
        .expect("provision");
    let invoke = |to: (String, u16)| {
        let token = p.token.clone();
        let context = p.context.clone();
        let up = &up;
        async move {
            send(
                up,
                &to,
                Request::new("GET", &format!("/{context}/v1/x"))
                    .header("authorization", &format!("Bearer {token}")),
            )
            .await
            .status
        }
    };
    for (_, host, port) in &e.gateway_nodes {
        assert_eq!(invoke((host.clone(), *port)).await, 200);
    }
    let session = format!("Bearer {}", p.session);
    let apps = send(
        &up,
        &e.store,
        Request::new("GET", "/api/applications").header("authorization", &session),
    )
    .await;
    let apps: serde_json::Value = apps.json_body().expect("json");
    let app = apps
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "subscribed"))
        .and_then(|x| x["id"].as_str())
        .expect("the subscribed application")
        .to_string();
    let revoked = send(
        &up,
        &e.store,
        Request::new("POST", &format!("/api/applications/{app}/keys/revoke"))
            .header("authorization", &session),
    )
    .await;
    assert_eq!(
        revoked.status,
        200,
        "{}",
        String::from_utf8_lossy(&revoked.body)
    );
    let acknowledged = Instant::now();
    for (name, host, port) in &e.gateway_nodes {
        let mut status = 0;
        while acknowledged.elapsed() < Duration::from_secs(1) {
            status = invoke((host.clone(), *port)).await;
            if status == 401 {
                break;
            }
        }
        assert_eq!(status, 401, "{name} still accepts a token of a revoked key");
    }
}
