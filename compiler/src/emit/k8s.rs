//! `k8s/`: the deployment as Kubernetes manifests — a StatefulSet with a headless Service per
//! cluster (stable per-node names, so publish and revocation notifications reach each node), a
//! Service per balancer, NetworkPolicies from the networks and firewall, PodDisruptionBudgets
//! for clusters of two or more, and probes on the node admin port.
//!
//! Nodes run `apim node` on the same config files as everywhere else, reading addresses through
//! the host map `apim-hosts` (Kubernetes DNS names); credentials come from the Secret
//! `<deployment>-credentials`, never from the manifests.

use super::yaml;
use crate::hosts::HostMap;
use crate::plan::{LIVE_PATH, NodePlan, Plan, READY_PATH, RouteListener};
use crate::secrets;
use apim_topology::kubernetes::Resources;
use apim_topology::timing::{DRAIN_MS, GRACE_MS};
use apim_topology::vocab::{BalancerKind, Component, Engine};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The user the image runs as (distroless' `nonroot`; scripts/image makes the same).
pub const RUN_AS: u32 = 65532;
/// Where relative SQLite paths land: the image's working folder, a volume here because the
/// root filesystem is read-only.
pub const DATA_DIR: &str = "/var/lib/apim";
const APP: &str = "app.kubernetes.io/name";
const CLUSTER: &str = "apim.dev/cluster";
const NETWORK: &str = "apim.dev/network";

fn balancer_label(lb: &str) -> String {
    format!("lb.apim.dev/{lb}")
}

fn balancer_service(lb: &str) -> String {
    format!("lb-{lb}")
}

/// Port names are at most 15 characters.
fn port_name(c: Component) -> &'static str {
    match c {
        Component::Publisher => "publisher",
        Component::Store => "store",
        Component::KeyManager => "key-manager",
        Component::Gateway => "gateway",
    }
}

fn short(c: Component) -> &'static str {
    match c {
        Component::Publisher => "pub",
        Component::Store => "store",
        Component::KeyManager => "km",
        Component::Gateway => "gw",
    }
}

fn docs(header: &str, objects: &[Value]) -> String {
    let mut s = header.to_string();
    for o in objects {
        s.push_str("---\n");
        s.push_str(&yaml::document(o));
    }
    s
}

/// Where nodes and balancers answer in the cluster: pods by their StatefulSet DNS names,
/// balancers by their Services.
pub fn host_map(plan: &Plan) -> HostMap {
    let ns = &plan.deployment;
    HostMap::of(
        plan,
        |n| format!("{}.{}.{ns}.svc", n.name, n.cluster),
        |b| format!("{}.{ns}.svc", balancer_service(b)),
    )
}

/// The manifests; `node_files` are the rendered node configs, by node name.
pub fn render(plan: &Plan, node_files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let ns = plan.deployment.as_str();
    let header = super::header("#", "Kubernetes manifests", ns);
    let header = match &plan.issuer {
        Some(issuer) => format!(
            "{header}# Apply: kubectl apply -f k8s/ (after creating the Secret `{ns}-credentials`, see README).\n# Certificates: cert-manager, from the Issuer `{issuer}` in this namespace.\n# JWT keys: the Secret `{ns}-signing` from `apim certs`' jwks.json and jwt-signing*.seed.\n"
        ),
        None => format!(
            "{header}# Apply: kubectl apply -f k8s/ (after creating the Secret `{ns}-credentials`, see README).\n# Certificates: a Secret NODE-tls per node (tls.crt, tls.key, ca.crt) from `apim certs`.\n# JWT keys: the Secret `{ns}-signing` from `apim certs`' jwks.json and jwt-signing*.seed.\n"
        ),
    };
    let mut files = BTreeMap::new();
    files.insert(
        "k8s/namespace.yaml".into(),
        docs(&header, &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {APP: "apim"}}})]),
    );
    let hosts = host_map(plan).to_toml(&super::header(
        "#",
        "Kubernetes addresses of nodes and balancers",
        ns,
    ));
    files.insert(
        "k8s/hosts.yaml".into(),
        docs(
            &header,
            &[json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "apim-hosts", "namespace": ns, "labels": {APP: "apim"}},
                "data": {"hosts.toml": hosts},
            })],
        ),
    );
    let mut clusters: BTreeMap<&str, Vec<&NodePlan>> = BTreeMap::new();
    for n in &plan.nodes {
        clusters.entry(&n.cluster).or_default().push(n);
    }
    // Node -> the balancers in front of it, for the Service selector labels.
    let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for b in &plan.balancers {
        for u in b.routes.iter().flat_map(|r| &r.upstream) {
            members.entry(u.node.as_str()).or_default().insert(&b.name);
        }
    }
    for (cluster, nodes) in &clusters {
        let balancers: BTreeSet<&str> = nodes
            .iter()
            .flat_map(|n| members.get(n.name.as_str()).into_iter().flatten().copied())
            .collect();
        files.insert(
            format!("k8s/cluster-{cluster}.yaml"),
            docs(
                &header,
                &cluster_objects(plan, cluster, nodes, &balancers, node_files),
            ),
        );
    }
    for b in &plan.balancers {
        let sticky = b.routes.iter().any(|r| r.sticky);
        let ports: Vec<Value> = b
            .routes
            .iter()
            .map(|r| {
                let target = match r.listener {
                    RouteListener::Public => port_name(r.component),
                    RouteListener::Internal => "internal",
                };
                json!({"name": format!("{}-{}", short(r.component), r.port), "port": r.port, "targetPort": target, "protocol": "TCP"})
            })
            .collect();
        let mut spec = json!({
            "type": if b.kind == BalancerKind::External { "LoadBalancer" } else { "ClusterIP" },
            "selector": {balancer_label(&b.name): "member"},
            "ports": ports,
        });
        if sticky {
            spec["sessionAffinity"] = json!("ClientIP");
        }
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": balancer_service(&b.name), "namespace": ns, "labels": {APP: "apim", "apim.dev/balancer": b.name}},
            "spec": spec,
        });
        files.insert(
            format!("k8s/balancer-{}.yaml", b.name),
            docs(&header, &[service]),
        );
    }
    files.insert(
        "k8s/network-policies.yaml".into(),
        docs(&header, &network_policies(plan)),
    );
    files
}

fn cluster_objects(
    plan: &Plan,
    cluster: &str,
    nodes: &[&NodePlan],
    balancers: &BTreeSet<&str>,
    node_files: &BTreeMap<String, String>,
) -> Vec<Value> {
    let ns = plan.deployment.as_str();
    let Some(first) = nodes.first() else {
        return Vec::new();
    };
    let mut data = serde_json::Map::new();
    for n in nodes {
        let text = node_files.get(&n.name).cloned().unwrap_or_default();
        data.insert(format!("{}.toml", n.name), Value::String(text));
    }
    // The credentials of the databases the cluster uses, and the admin password only where a
    // node may create the admin (it uses the user database).
    let mut refs: BTreeSet<String> = BTreeSet::new();
    if first
        .databases
        .iter()
        .any(|d| d.role == apim_topology::vocab::Role::User)
    {
        refs.insert(secrets::ADMIN_PASSWORD.to_string());
    }
    for d in &first.databases {
        refs.extend(secrets::references(&d.url));
    }
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    env.extend(refs.iter().map(|r| json!({"name": r, "valueFrom": {"secretKeyRef": {"name": format!("{ns}-credentials"), "key": r}}})));
    let mut ports: Vec<Value> = first
        .listeners
        .iter()
        .map(
            |l| json!({"name": port_name(l.component), "containerPort": l.port, "protocol": "TCP"}),
        )
        .collect();
    ports.push(json!({"name": "admin", "containerPort": first.admin_port, "protocol": "TCP"}));
    ports
        .push(json!({"name": "internal", "containerPort": first.internal_port, "protocol": "TCP"}));
    let service_ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": p["name"], "port": p["containerPort"], "targetPort": p["name"], "protocol": "TCP"}))
        .collect();
    let mut labels = serde_json::Map::new();
    labels.insert(APP.into(), json!("apim"));
    labels.insert(CLUSTER.into(), json!(cluster));
    labels.insert(NETWORK.into(), json!(first.network));
    for b in balancers {
        labels.insert(balancer_label(b), json!("member"));
    }
    let selector = json!({APP: "apim", CLUSTER: cluster});
    let probe = |path: &str, period: u32| json!({"httpGet": {"path": path, "port": "admin", "scheme": "HTTPS"}, "periodSeconds": period, "failureThreshold": 3});
    // A SQLite file must outlive the pod; anything else the node writes is scratch.
    let sqlite = first.databases.iter().any(|d| d.engine == Engine::Sqlite);
    let low_port = ports
        .iter()
        .any(|p| p["containerPort"].as_u64().is_some_and(|p| p < 1024));
    // SIGTERM drains the node (unready, serving on while balancers notice, then finishing what
    // is in flight); the kubelet must not kill it before that is done.
    let grace_s = (DRAIN_MS + GRACE_MS).div_ceil(1000) + 5;
    // Each pod reads its own node's files by name; keys are readable by the pod's group
    // (fsGroup) alone, since the node runs as a non-root user. The projected volume holds the cluster's
    // (a StatefulSet cannot mount a Secret per pod), and the CA from the first.
    let mut tls_sources: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut items = vec![
                json!({"key": "tls.crt", "path": file_name(&n.tls.cert)}),
                json!({"key": "tls.key", "path": file_name(&n.tls.key), "mode": 0o440}),
            ];
            if i == 0 {
                items.push(json!({"key": "ca.crt", "path": file_name(&n.tls.ca)}));
            }
            json!({"secret": {"name": tls_secret(&n.name), "items": items}})
        })
        .collect();
    tls_sources.extend(signing_sources(ns, first));
    let tls_dir = dir_name(&first.tls.cert);
    let mut volumes = vec![
        json!({"name": "nodes", "configMap": {"name": format!("{cluster}-nodes")}}),
        json!({"name": "hosts", "configMap": {"name": "apim-hosts"}}),
        json!({"name": "tls", "projected": {"sources": tls_sources}}),
        json!({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}),
    ];
    if !sqlite {
        volumes.push(json!({"name": "data", "emptyDir": {"sizeLimit": "256Mi"}}));
    }
    let mut pod_security = json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    if low_port {
        // A non-root process binds a port below 1024 only where the pod says so; a capability
        // would not reach a non-root process.
        pod_security["sysctls"] =
            json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]);
    }
    let mut objects = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("{cluster}-nodes"), "namespace": ns, "labels": {APP: "apim", CLUSTER: cluster}},
            "data": data,
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": cluster, "namespace": ns, "labels": {APP: "apim", CLUSTER: cluster}},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": selector, "ports": service_ports},
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": cluster, "namespace": ns, "labels": {APP: "apim", CLUSTER: cluster}},
            "spec": {
                "serviceName": cluster,
                "replicas": nodes.len(),
                "ordinals": {"start": 1},
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": grace_s,
                        "automountServiceAccountToken": false,
                        "securityContext": pod_security,
                        "containers": [{
                            "name": "apim",
                            "image": plan.workload.image,
                            "args": ["node", "/etc/apim/nodes/$(POD_NAME).toml", "--hosts", "/etc/apim/hosts/hosts.toml", "--bind", "0.0.0.0", "--data", DATA_DIR],
                            "env": env,
                            "ports": ports,
                            "readinessProbe": probe(READY_PATH, 5),
                            "livenessProbe": probe(LIVE_PATH, 10),
                            "resources": resources(&plan.workload.resources),
                            "securityContext": {
                                "runAsNonRoot": true,
                                "readOnlyRootFilesystem": true,
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "data", "mountPath": DATA_DIR},
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "nodes", "mountPath": "/etc/apim/nodes", "readOnly": true},
                                {"name": "hosts", "mountPath": "/etc/apim/hosts", "readOnly": true},
                                {"name": "tls", "mountPath": tls_dir, "readOnly": true},
                            ],
                        }],
                        "volumes": volumes,
                    },
                },
            },
        }),
    ];
    if sqlite && let Some(Value::Object(set)) = objects.last_mut() {
        set["spec"]["volumeClaimTemplates"] = json!([{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }]);
    }
    if let Some(issuer) = &plan.issuer {
        for n in nodes {
            objects.push(certificate(
                plan,
                issuer,
                &n.name,
                &n.identity,
                &plan.node_sans(n),
            ));
        }
    }
    if nodes.len() >= 2 {
        objects.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": cluster, "namespace": ns, "labels": {APP: "apim", CLUSTER: cluster}},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        }));
    }
    objects
}

/// A container's requests and limits.
fn resources(r: &Resources) -> Value {
    json!({
        "requests": {"cpu": r.cpu_request, "memory": r.memory_request},
        "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit},
    })
}

/// The deployment's JWT keys from the Secret `<deployment>-signing` (`apim certs`' files):
/// the public keys for every node, the signing seed for key managers only, and the previous
/// seed where there is one.
fn signing_sources(ns: &str, node: &NodePlan) -> Vec<Value> {
    let t = &node.tokens;
    if t.format != apim_topology::vocab::TokenFormat::Jwt {
        return Vec::new();
    }
    let secret = format!("{ns}-signing");
    let key = |path: &str| file_name(path);
    let mut sources = vec![json!({"secret": {"name": secret, "items": [
        {"key": key(&t.jwks), "path": key(&t.jwks)},
    ]}})];
    if let [seed, previous] = t.seeds.as_slice() {
        sources.push(json!({"secret": {"name": secret, "items": [
            {"key": key(seed), "path": key(seed), "mode": 0o440},
        ]}}));
        sources.push(
            json!({"secret": {"name": secret, "optional": true, "items": [
                {"key": key(previous), "path": key(previous), "mode": 0o440},
            ]}}),
        );
    }
    sources
}

/// The Secret holding a node's certificate, key and the CA (`tls.crt`, `tls.key`, `ca.crt`):
/// made by cert-manager when `[tls] issuer` is set, by the user from `apim certs` otherwise.
fn tls_secret(node: &str) -> String {
    format!("{node}-tls")
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

fn dir_name(path: &str) -> String {
    path.rsplit_once('/')
        .map_or_else(|| ".".to_string(), |(d, _)| d.to_string())
}

/// A cert-manager Certificate for a node: its names, addresses and SPIFFE ID, for server and
/// client use, in the Secret the pods mount.
fn certificate(plan: &Plan, issuer: &str, name: &str, identity: &str, sans: &[String]) -> Value {
    let (ips, dns): (Vec<&String>, Vec<&String>) = sans
        .iter()
        .partition(|s| s.parse::<std::net::IpAddr>().is_ok());
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": plan.deployment, "labels": {APP: "apim"}},
        "spec": {
            "secretName": tls_secret(name),
            "issuerRef": {"name": issuer, "kind": "Issuer"},
            "commonName": name,
            "dnsNames": dns,
            "ipAddresses": ips,
            "uris": [identity],
            "duration": "8760h",
            "renewBefore": "720h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
        },
    })
}

fn policy(ns: &str, name: String, pods: Value, from: Vec<Value>, ports: Option<&[u16]>) -> Value {
    let mut rule = json!({"from": from});
    if let Some(ports) = ports {
        rule["ports"] = Value::Array(
            ports
                .iter()
                .map(|p| json!({"protocol": "TCP", "port": p}))
                .collect(),
        );
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "labels": {APP: "apim"}},
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": [rule]},
    })
}

/// Deny by default; allow inside each network, what each firewall rule allows, and traffic
/// through each balancer from the networks that may reach it (the internet for public ones).
fn network_policies(plan: &Plan) -> Vec<Value> {
    let ns = plan.deployment.as_str();
    let mut out = vec![json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": ns, "labels": {APP: "apim"}},
        "spec": {"podSelector": {"matchLabels": {APP: "apim"}}, "policyTypes": ["Ingress"]},
    })];
    let on = |net: &str| json!({"podSelector": {"matchLabels": {NETWORK: net}}});
    for n in &plan.networks {
        out.push(policy(
            ns,
            format!("within-{}", n.name),
            json!({NETWORK: n.name}),
            vec![on(&n.name)],
            None,
        ));
    }
    // A rule's ends select pods by network, by cluster, or (for `to`) the members behind a
    // balancer. A rule from a balancer needs no policy of its own: a Service passes its
    // clients' traffic through, which the balancer's policies below allow.
    let select = |party: &str| -> Option<Value> {
        if plan.networks.iter().any(|n| n.name == party) {
            Some(json!({NETWORK: party}))
        } else if plan.nodes.iter().any(|n| n.cluster == party) {
            Some(json!({CLUSTER: party}))
        } else if plan.balancers.iter().any(|b| b.name == party) {
            Some(json!({balancer_label(party): "member"}))
        } else {
            None
        }
    };
    for (i, r) in plan.firewall.iter().enumerate() {
        if plan.balancers.iter().any(|b| b.name == r.from) {
            continue;
        }
        let (Some(from), Some(to)) = (select(&r.from), select(&r.to)) else {
            continue;
        };
        out.push(policy(
            ns,
            format!("firewall-{}-{}-to-{}", i + 1, r.from, r.to),
            to,
            vec![json!({"podSelector": {"matchLabels": from}})],
            r.ports.as_deref(),
        ));
    }
    for b in &plan.balancers {
        let public = plan
            .networks
            .iter()
            .any(|n| n.name == b.network && n.public);
        for r in &b.routes {
            let mut from: Vec<Value> = vec![on(&b.network)];
            from.extend(
                plan.firewall
                    .iter()
                    .filter(|f| {
                        (f.to == b.network || f.to == b.name)
                            && f.ports.as_ref().is_none_or(|p| p.contains(&r.port))
                    })
                    .filter_map(|f| {
                        if plan.networks.iter().any(|n| n.name == f.from) {
                            Some(on(&f.from))
                        } else if plan.nodes.iter().any(|n| n.cluster == f.from) {
                            Some(json!({"podSelector": {"matchLabels": {CLUSTER: f.from}}}))
                        } else {
                            None
                        }
                    }),
            );
            if public {
                from.push(json!({"ipBlock": {"cidr": "0.0.0.0/0"}}));
            }
            out.push(policy(
                ns,
                format!("balancer-{}-{}", b.name, r.port),
                json!({balancer_label(&b.name): "member"}),
                from,
                Some(&[r.port]),
            ));
        }
    }
    out
}
