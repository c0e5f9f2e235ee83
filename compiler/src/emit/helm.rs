//! `helm/*.yaml`: values for WSO2's official helm-apim distributed charts (`wso2am-cp`,
//! `wso2am-gateway`, `wso2am-km`, `wso2am-tm`), derived from the same WSO2 mapping as the
//! `wso2/` files, so that a team can deploy WSO2 itself on Kubernetes instead of hand-writing
//! manifests. Only key paths the charts' own values.yaml define are written
//! (`helm-apim-values-keys.txt`, a copy of `shared/reference`).
//!
//! Release names contain their chart's name, so each chart's full name is the release name and
//! its Services are `<release>-service` and, per instance, `<release>-1-service`,
//! `<release>-2-service` (the charts' templates).

use super::wso2::{self, Profile, Wso2};
use super::{About, Warning, yaml};
use crate::plan::{DatabasePlan, Plan};
use crate::secrets;
use apim_topology::vocab::{BalancerKind, Component, Role};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Every key path of the charts' values, one a line, in a section per chart.
pub const KNOWN_KEYS: &str = include_str!("helm-apim-values-keys.txt");

/// The key paths of one chart's section (`control-plane`, `gateway`, `key-manager`,
/// `traffic-manager`).
pub fn known_keys(chart: &str) -> Vec<&'static str> {
    let header = format!("[{chart}]");
    KNOWN_KEYS
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// A values document built from dotted key paths.
#[derive(Default)]
struct Values(Map<String, Value>);

impl Values {
    fn yaml(self) -> String {
        yaml::document(&Value::Object(self.0))
    }

    fn set(&mut self, path: &str, value: Value) -> &mut Self {
        let mut keys: Vec<&str> = path.split('.').collect();
        let last = keys.pop().unwrap_or_default();
        let mut map = &mut self.0;
        for k in keys {
            let entry = map
                .entry(k.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else {
                return self;
            };
            map = next;
        }
        map.insert(last.to_string(), value);
        self
    }
}

/// Where a chart's nodes subscribe to the control plane's events.
fn event_hub(v: &mut Values, cp: &Release) {
    v.set(
        "wso2.apim.configurations.eventhub.serviceUrl",
        json!(cp.service()),
    );
    v.set(
        "wso2.apim.configurations.eventhub.urls",
        json!(cp.instance_services()),
    );
}

struct Release {
    name: String,
    instances: usize,
}

impl Release {
    fn service(&self) -> String {
        format!("{}-service", self.name)
    }

    fn instance_services(&self) -> Vec<String> {
        (1..=self.instances.clamp(1, 2))
            .map(|i| format!("{}-{i}-service", self.name))
            .collect()
    }
}

fn database(plan: &Plan, role: Role) -> Option<&DatabasePlan> {
    plan.databases.iter().find(|d| d.roles.contains(&role))
}

/// `databases.*` and the Secret keys of their passwords, for the charts that have them.
fn databases(v: &mut Values, plan: &Plan) {
    let mut kind = None;
    for (table, role, key) in [
        ("apim_db", Role::Apim, "apimDBPasswordKey"),
        ("shared_db", Role::User, "sharedDBPasswordKey"),
    ] {
        let Some(db) = database(plan, role) else {
            continue;
        };
        let Some((url, user, password, k, driver)) = wso2::jdbc(db.engine, &db.url) else {
            continue;
        };
        kind = Some((k, driver));
        let base = format!("wso2.apim.configurations.databases.{table}");
        v.set(&format!("{base}.url"), json!(url));
        v.set(
            &format!("{base}.username"),
            json!(secrets::rewrite(&user, |n| format!("$env{{{n}}}"))),
        );
        if let Some(name) = secrets::references(&password).into_iter().next() {
            v.set(
                &format!("wso2.apim.configurations.existingSecret.{key}"),
                json!(name),
            );
        }
    }
    if let Some((k, driver)) = kind {
        v.set("wso2.apim.configurations.databases.type", json!(k));
        v.set(
            "wso2.apim.configurations.databases.jdbc.driver",
            json!(driver),
        );
    }
}

fn secret(v: &mut Values, plan: &Plan) {
    v.set(
        "wso2.apim.configurations.existingSecret.secretName",
        json!(format!("{}-credentials", plan.deployment)),
    );
    v.set(
        "wso2.apim.configurations.existingSecret.adminPasswordKey",
        json!(secrets::ADMIN_PASSWORD),
    );
}

/// The host clients use for a cluster's component: its balancer of `kind`, else its first node.
fn host_of(w: &Wso2<'_>, kind: BalancerKind, cluster: &str, component: Component) -> String {
    placed(w, kind, cluster, component).1
}

/// [`host_of`], with the entry of the topology that gives it.
fn placed(
    w: &Wso2<'_>,
    kind: BalancerKind,
    cluster: &str,
    component: Component,
) -> (About, String) {
    if let Some(b) = w.front_balancer(kind, cluster, component) {
        return (About::Balancer(b.name.clone()), b.host.clone());
    }
    let host = w
        .first_node(cluster)
        .map(|n| n.host.clone())
        .unwrap_or_default();
    (About::Cluster(cluster.to_string()), host)
}

/// An Ingress host must be a DNS name: an address from the topology is left to the chart's
/// default, with a warning.
fn ingress_host(v: &mut Values, key: &str, host: (About, String), warnings: &mut Vec<Warning>) {
    let (about, host) = host;
    if host.parse::<std::net::IpAddr>().is_ok() {
        let w = Warning::new(
            about,
            format!(
                "helm values: `{key}` is left to the chart: the topology gives `{host}`, an address, and an Ingress host must be a DNS name"
            ),
        );
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    } else {
        v.set(key, json!(host));
    }
}

/// The values files, and warnings about what the charts cannot say.
pub fn render(plan: &Plan, w: &Wso2<'_>) -> (BTreeMap<String, String>, Vec<Warning>) {
    let mut files = BTreeMap::new();
    let mut warnings = Vec::new();
    let clusters = |p: Profile| -> BTreeMap<&str, usize> {
        let mut c = BTreeMap::new();
        for n in w.nodes.iter().filter(|n| n.profile == p) {
            *c.entry(n.node.cluster.as_str()).or_default() += 1;
        }
        c
    };
    if w.nodes.iter().any(|n| n.profile == Profile::AllInOne) {
        let cluster = w
            .nodes
            .iter()
            .find(|n| n.profile == Profile::AllInOne)
            .map(|n| n.node.cluster.clone())
            .unwrap_or_default();
        warnings.push(Warning::new(
            About::Cluster(cluster),
            "helm values: a node runs every component (WSO2's all-in-one pack); helm-apim's distributed charts need the control plane and the gateway apart, so no helm/ values are written".to_string(),
        ));
        return (files, warnings);
    }
    let cps = clusters(Profile::ControlPlane);
    let gateways = clusters(Profile::Gateway);
    let kms = clusters(Profile::KeyManager);
    // The control plane with the publisher holds the event hub; a portal-only cluster would
    // be a second control-plane release the charts do not wire to the first.
    let Some((cp_cluster, cp_nodes)) = w
        .nodes
        .iter()
        .filter(|n| n.profile == Profile::ControlPlane)
        .find(|n| {
            n.node
                .listeners
                .iter()
                .any(|l| l.component == Component::Publisher)
        })
        .map(|n| (n.node.cluster.as_str(), cps[n.node.cluster.as_str()]))
    else {
        return (files, warnings);
    };
    for (cluster, _) in cps.iter().filter(|(c, _)| **c != cp_cluster) {
        warnings.push(Warning::new(
            About::Cluster(cluster.to_string()),
            format!(
                "helm values: cluster `{cluster}` (portals without the publisher) has no chart of its own; helm-apim's control plane serves both portals, so run them there"
            ),
        ));
    }
    let deployment = &plan.deployment;
    let cp = Release {
        name: format!("{deployment}-wso2am-cp"),
        instances: cp_nodes,
    };
    let tm = Release {
        name: format!("{deployment}-wso2am-tm"),
        instances: cp_nodes,
    };
    let km = kms.iter().next().map(|(c, n)| {
        (
            *c,
            Release {
                name: format!("{deployment}-wso2am-km"),
                instances: *n,
            },
        )
    });
    for (what, cluster, n) in [("control plane", cp_cluster, cp_nodes)]
        .into_iter()
        .chain(km.iter().map(|(c, r)| ("key manager", *c, r.instances)))
    {
        if n > 2 {
            warnings.push(Warning::new(
                About::Cluster(cluster.to_string()),
                format!(
                    "helm values: helm-apim's {what} chart runs at most two instances; cluster `{cluster}` has {n}"
                ),
            ));
        }
    }
    let header = |chart: &str, release: &str| {
        format!(
            "{}# Values for WSO2's helm-apim `distributed/{chart}` chart (WSO2 API Manager {}):\n#   helm install {release} <helm-apim>/distributed/{chart} -f helm/{chart}.yaml -n {deployment}\n# Credentials come from the Secret `{deployment}-credentials` (see README).\n",
            super::header("#", "helm-apim values", deployment),
            wso2::VERSION
        )
    };

    // Control plane.
    let mut v = Values::default();
    v.set("wso2.deployment.highAvailability", json!(cp_nodes >= 2));
    ingress_host(
        &mut v,
        "kubernetes.ingress.controlPlane.hostname",
        placed(w, BalancerKind::External, cp_cluster, Component::Publisher),
        &mut warnings,
    );
    secret(&mut v, plan);
    databases(&mut v, plan);
    if let Some((_, km)) = &km {
        v.set("wso2.apim.configurations.km.enabled", json!(true));
        v.set(
            "wso2.apim.configurations.km.serviceName",
            json!(km.service()),
        );
        v.set(
            "wso2.apim.configurations.km.servicePort",
            json!(wso2::HTTPS),
        );
    }
    let environments: Vec<Value> = gateways
        .keys()
        .map(|cluster| {
            json!({
                "name": cluster,
                "type": "hybrid",
                "gatewayType": "Regular",
                "provider": "wso2",
                "displayInApiConsole": true,
                "description": format!("gateway cluster {cluster}"),
                "showAsTokenEndpointUrl": true,
                "serviceName": format!("{deployment}-{cluster}-wso2am-gateway-service"),
                "servicePort": wso2::HTTPS,
                "httpHostname": host_of(w, BalancerKind::External, cluster, Component::Gateway),
                "wsHostname": host_of(w, BalancerKind::External, cluster, Component::Gateway),
                "websubHostname": host_of(w, BalancerKind::External, cluster, Component::Gateway),
            })
        })
        .collect();
    v.set(
        "wso2.apim.configurations.gateway.environments",
        Value::Array(environments),
    );
    files.insert(
        "helm/control-plane.yaml".to_string(),
        format!("{}{}", header("control-plane", &cp.name), v.yaml()),
    );

    // Gateways, one release per gateway cluster.
    for (cluster, nodes) in &gateways {
        let release = format!("{deployment}-{cluster}-wso2am-gateway");
        let mut v = Values::default();
        v.set("wso2.deployment.replicas", json!(nodes));
        v.set(
            "kubernetes.ingress.gateway.hostname",
            json!(host_of(
                w,
                BalancerKind::External,
                cluster,
                Component::Gateway
            )),
        );
        secret(&mut v, plan);
        let km_service = km
            .as_ref()
            .map_or_else(|| cp.service(), |(_, r)| r.service());
        v.set("wso2.apim.configurations.km.serviceUrl", json!(km_service));
        v.set(
            "wso2.apim.configurations.km.servicePort",
            json!(wso2::HTTPS),
        );
        v.set("wso2.apim.configurations.eventhub.enabled", json!(true));
        v.set(
            "wso2.apim.configurations.eventhub.serviceUrl",
            json!(cp.service()),
        );
        v.set(
            "wso2.apim.configurations.eventhub.servicePort",
            json!(wso2::HTTPS),
        );
        v.set(
            "wso2.apim.configurations.eventhub.urls",
            json!(cp.instance_services()),
        );
        v.set(
            "wso2.apim.configurations.throttling.serviceUrl",
            json!(tm.service()),
        );
        v.set(
            "wso2.apim.configurations.throttling.servicePort",
            json!(wso2::HTTPS),
        );
        v.set(
            "wso2.apim.configurations.throttling.urls",
            json!(tm.instance_services()),
        );
        v.set("wso2.apim.configurations.throttling.portOffset", json!(0));
        v.set(
            "wso2.apim.configurations.syncRuntimeArtifacts.gateway.labels",
            json!([cluster]),
        );
        files.insert(
            format!("helm/gateway-{cluster}.yaml"),
            format!(
                "{}{}",
                header("gateway", &release)
                    .replace("helm/gateway.yaml", &format!("helm/gateway-{cluster}.yaml")),
                v.yaml()
            ),
        );
    }

    // Key manager.
    if let Some((cluster, release)) = &km {
        let mut v = Values::default();
        v.set(
            "wso2.deployment.highAvailability",
            json!(release.instances >= 2),
        );
        v.set(
            "kubernetes.ingress.km.hostname",
            json!(host_of(
                w,
                BalancerKind::Internal,
                cluster,
                Component::KeyManager
            )),
        );
        secret(&mut v, plan);
        databases(&mut v, plan);
        event_hub(&mut v, &cp);
        files.insert(
            "helm/key-manager.yaml".to_string(),
            format!("{}{}", header("key-manager", &release.name), v.yaml()),
        );
    }

    // Traffic manager: an instance per control-plane instance.
    let mut v = Values::default();
    v.set("wso2.deployment.highAvailability", json!(cp_nodes >= 2));
    secret(&mut v, plan);
    event_hub(&mut v, &cp);
    files.insert(
        "helm/traffic-manager.yaml".to_string(),
        format!("{}{}", header("traffic-manager", &tm.name), v.yaml()),
    );
    (files, warnings)
}
