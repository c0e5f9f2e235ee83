//! `compose.yaml` and `compose/`: the deployment as a Compose project — a service per node
//! running `apim node`, an HAProxy service per balancer, a network per topology network.
//!
//! Compose names things by service: nodes run the configs of `nodes/` and read addresses
//! through `compose/hosts.toml`; the HAProxy configs under `compose/lb/` use service names.
//! Compose has no firewall: a service joins its own network and every network the firewall
//! lets it reach, whatever the port.

use super::{k8s, yaml};
use crate::hosts::HostMap;
use crate::plan::Plan;
use crate::secrets;
use apim_topology::kubernetes::{Resources, quantity};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

fn balancer_service(lb: &str) -> String {
    format!("lb-{lb}")
}

/// Compose's form of the Kubernetes quantities: CPUs as a decimal, memory in bytes.
fn resources(r: &Resources) -> Value {
    let cpus = |q: &str| {
        let m = quantity("cpu", q).unwrap_or(1000);
        let s = format!("{}.{:03}", m / 1000, m % 1000);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    // Compose's units are powers of 1024.
    let bytes = |q: &str| {
        let Ok(b) = quantity("memory", q) else {
            return q.to_string();
        };
        [("g", 1u128 << 30), ("m", 1 << 20), ("k", 1 << 10), ("b", 1)]
            .into_iter()
            .find(|(_, unit)| b % unit == 0)
            .map_or_else(
                || format!("{b}b"),
                |(suffix, unit)| format!("{}{suffix}", b / unit),
            )
    };
    json!({
        "limits": {"cpus": cpus(&r.cpu_limit), "memory": bytes(&r.memory_limit)},
        "reservations": {"cpus": cpus(&r.cpu_request), "memory": bytes(&r.memory_request)},
    })
}

pub fn render(plan: &Plan) -> BTreeMap<String, String> {
    let hosts = HostMap::of(plan, |n| n.name.clone(), balancer_service);
    // A service joins its own network and every network a rule lets it reach (a rule's ends
    // name networks, clusters or balancers).
    let reachable = |net: &str, me: &str| -> Vec<String> {
        let mut nets: BTreeSet<String> = [net.to_string()].into();
        nets.extend(
            plan.firewall
                .iter()
                .filter(|f| f.from == net || f.from == me)
                .filter_map(|f| plan.network_of(&f.to).map(str::to_string)),
        );
        nets.into_iter().collect()
    };
    let mut files = BTreeMap::new();
    let mut services = serde_json::Map::new();
    files.insert(
        "compose/hosts.toml".into(),
        hosts.to_toml(&super::header(
            "#",
            "Compose addresses of nodes and balancers",
            &plan.deployment,
        )),
    );
    for n in &plan.nodes {
        // Each node gets the credentials of the databases it uses, and the admin password only
        // where it may create the admin (it uses the user database).
        let mut refs: BTreeSet<String> = BTreeSet::new();
        if n.databases
            .iter()
            .any(|d| d.role == apim_topology::vocab::Role::User)
        {
            refs.insert(secrets::ADMIN_PASSWORD.to_string());
        }
        for d in &n.databases {
            refs.extend(secrets::references(&d.url));
        }
        let env: serde_json::Map<String, Value> = refs
            .iter()
            .map(|r| (r.clone(), json!(format!("${{{r}}}"))))
            .collect();
        services.insert(
            n.name.clone(),
            json!({
                "image": plan.workload.image,
                "command": ["node", format!("/etc/apim/nodes/{}.toml", n.name), "--hosts", "/etc/apim/hosts.toml", "--bind", "0.0.0.0", "--data", k8s::DATA_DIR],
                "hostname": n.name,
                "environment": env,
                "user": format!("{0}:{0}", k8s::RUN_AS),
                "read_only": true,
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
                "tmpfs": ["/tmp:size=64m"],
                "deploy": {"resources": resources(&plan.workload.resources)},
                "volumes": node_volumes(n),
                "networks": reachable(&n.network, &n.cluster),
                "restart": "unless-stopped",
            }),
        );
    }
    for b in &plan.balancers {
        let b = &hosts.balancer(b);
        let public = plan
            .networks
            .iter()
            .any(|n| n.name == b.network && n.public);
        let mut service = json!({
            "image": "haproxy:2.6",
            "volumes": [
                format!("./compose/lb/{}/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro", b.name),
                format!("./certs/ca.crt:{}:ro", b.tls.ca),
                format!("./certs/{}.crt:{}:ro", b.name, b.tls.cert),
                format!("./certs/{}.key:{}.key:ro", b.name, b.tls.cert),
            ],
            "networks": reachable(&b.network, &b.name),
            "restart": "unless-stopped",
        });
        // Only a balancer on a public network is published on every interface; an external
        // balancer on an inner network only on this machine's loopback, and internal balancers
        // and nodes not at all.
        if public || b.kind == apim_topology::vocab::BalancerKind::External {
            let on = if public { "" } else { "127.0.0.1:" };
            service["ports"] = Value::Array(
                b.routes
                    .iter()
                    .map(|r| json!(format!("{on}{0}:{0}", r.port)))
                    .collect(),
            );
        }
        services.insert(balancer_service(&b.name), service);
        files.insert(
            format!("compose/lb/{}/haproxy.cfg", b.name),
            super::haproxy::render(plan, b),
        );
    }
    let volumes: serde_json::Map<String, Value> = plan
        .nodes
        .iter()
        .map(|n| (format!("{}-data", n.name), json!({})))
        .collect();
    let networks: serde_json::Map<String, Value> = plan
        .networks
        .iter()
        .map(|n| (n.name.clone(), json!({})))
        .collect();
    let doc = json!({"name": plan.deployment, "services": services, "networks": networks, "volumes": volumes});
    let mut text = super::header("#", "Compose project", &plan.deployment);
    text.push_str(
        "# Run: docker compose up -d (with APIM_ADMIN_PASSWORD and the database variables set).\n# Certificates: apim certs TOPOLOGY --hosts compose/hosts.toml -o certs (each container mounts\n# only its own key and the CA; the container's user, 65532, must be able to read its key:
# chown 65532 certs/*.key).\n",
    );
    text.push_str(&yaml::document(&doc));
    files.insert("compose.yaml".into(), text);
    files
}

/// What a node's container mounts: its data, the node files, the host map, its certificate
/// and key and the CA, and the JWT keys it needs.
fn node_volumes(n: &crate::plan::NodePlan) -> Vec<String> {
    let mut v = vec![
        format!("{}-data:{}", n.name, k8s::DATA_DIR),
        "./nodes:/etc/apim/nodes:ro".to_string(),
        "./compose/hosts.toml:/etc/apim/hosts.toml:ro".to_string(),
        format!("./certs/ca.crt:{}:ro", n.tls.ca),
        format!("./certs/{}.crt:{}:ro", n.name, n.tls.cert),
        format!("./certs/{}.key:{}:ro", n.name, n.tls.key),
    ];
    v.extend(signing_volumes(n));
    v
}

/// The JWT keys a node mounts from `apim certs`' folder: the public keys, and the signing seed
/// on a key manager (a rotation's previous seed is mounted by hand: a missing file would make
/// compose create a folder in its place).
fn signing_volumes(n: &crate::plan::NodePlan) -> Vec<String> {
    let t = &n.tokens;
    if t.format != apim_topology::vocab::TokenFormat::Jwt {
        return Vec::new();
    }
    let file = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let mut v = vec![format!("./certs/{}:{}:ro", file(&t.jwks), t.jwks)];
    if let Some(seed) = t.seeds.first() {
        v.push(format!("./certs/{}:{seed}:ro", file(seed)));
    }
    v
}
