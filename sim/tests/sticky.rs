//! The simulated balancers keep a portal session on one node, as the real ones do (one rule,
//! `apim_components::balancer::{sticky_in, stick}`), and move it when that node fails.

use apim_compiler::plan::Plan;
use apim_components::client;
use apim_sim::exec::Executor;
use apim_sim::world::{Defects, Deployment};
use apim_topology::vocab::Component;
use std::sync::{Arc, Mutex};

const PASSWORD: &str = "sticky-admin-password";

/// Per request: the node that answered, and the sticky cookie it set, if any.
type Seen = (String, Option<String>);

fn plan() -> Plan {
    let text = apim_patterns::find("clustered-external-store")
        .expect("pattern")
        .template;
    Plan::of(&apim_topology::check_str("t.toml", text).topology)
}

#[test]
fn a_portal_session_stays_on_its_node_until_the_node_fails() {
    let plan = plan();
    let mut exec = Executor::default();
    let d = Deployment::new(
        plan.clone(),
        exec.handle(),
        7,
        Defects::default(),
        apim_topology::timing::TOKEN_MS,
    );
    for i in 0..plan.nodes.len() {
        d.start(i);
    }
    d.start_balancers();
    let w = d.any_world().expect("a node");
    d.exec.spawn(async move {
        let _ = apim_components::auth::bootstrap_admin(w.as_ref(), PASSWORD).await;
    });
    exec.run_until(d.now_us() + 1_000_000);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (dd, log) = (d.clone(), seen.clone());
    d.exec.spawn(async move {
        let entry = dd.entry(Component::Publisher).expect("publisher entry");
        let from = dd.client_place(entry, false);
        let record = |r: &apim_components::Response| {
            let node = r.get_header("x-sim-node").unwrap_or_default().to_string();
            let set = client::sticky_cookie(r);
            log.lock().expect("log").push((node, set));
        };
        let Ok(r) = dd
            .send(from, entry, client::login("admin", PASSWORD), 5_000_000)
            .await
        else {
            return;
        };
        record(&r);
        let (Ok(session), Some(cookie)) = (client::session(&r), client::sticky_cookie(&r)) else {
            return;
        };
        let list = || {
            apim_components::Request::new("GET", "/api/apis")
                .header("authorization", &client::bearer(&session))
                .header("cookie", &cookie)
        };
        for _ in 0..4 {
            if let Ok(r) = dd.send(from, entry, list(), 5_000_000).await {
                record(&r);
            }
        }
        // The session's node fails: the next request goes to the other, which takes it over.
        let held = cookie.trim_start_matches("APIM_NODE=").to_string();
        if let Some(i) = dd.node_id(&held) {
            dd.crash(i);
        }
        if let Ok(r) = dd.send(from, entry, list(), 5_000_000).await {
            record(&r);
        }
    });
    exec.run_until(d.now_us() + 30_000_000);
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 6, "{seen:?}");
    let first = seen[0].0.clone();
    assert_eq!(
        seen[0].1.as_deref(),
        Some(format!("APIM_NODE={first}").as_str())
    );
    // Round robin would alternate between the two publishers; the cookie holds one.
    for (node, set) in &seen[1..5] {
        assert_eq!((node, set), (&first, &None), "{seen:?}");
    }
    let (moved, set) = &seen[5];
    assert_ne!(moved, &first);
    assert_eq!(set.as_deref(), Some(format!("APIM_NODE={moved}").as_str()));
}
