//! Golden values of the WSO2 4.5 files, each tied to the WSO2 kit file or doc page that says
//! what the table must hold. "helm CP/GW/KM/TM" are WSO2's helm-apim charts,
//! `distributed/{control-plane/confs/instance-1,gateway/confs,key-manager/confs,
//! traffic-manager/confs/instance-1}/deployment.toml`.

mod common;

use std::collections::BTreeMap;

fn files(pattern: &str) -> BTreeMap<String, toml::Value> {
    let text = apim_patterns::find(pattern).expect("pattern").template;
    let c = common::load("t.toml", text.as_bytes());
    apim_compiler::build(&c.topology)
        .files
        .into_iter()
        .filter_map(|(path, text)| {
            let name = path
                .strip_prefix("wso2/")?
                .strip_suffix("/deployment.toml")?;
            Some((name.to_string(), toml::from_str(&text).expect("TOML")))
        })
        .collect()
}

fn get<'v>(v: &'v toml::Value, path: &str) -> &'v toml::Value {
    path.split('.').fold(v, |v, k| match v {
        toml::Value::Array(a) => &a[k.parse::<usize>().expect("an index")],
        _ => v.get(k).unwrap_or_else(|| panic!("no `{path}` (at `{k}`)")),
    })
}

fn s<'v>(v: &'v toml::Value, path: &str) -> &'v str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

fn strings(v: &toml::Value, path: &str) -> Vec<String> {
    get(v, path)
        .as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_gateway_pulls_from_the_event_hub_and_throttles_through_traffic_managers() {
    let f = files("clustered-external-store");
    let gw = &f["gateway-1"];
    // helm GW: `[apim.event_hub] enable = true`, service_url https://<control plane>:9443/services/,
    // event_listening_endpoints tcp://<each control plane>:5672.
    assert_eq!(get(gw, "apim.event_hub.enable").as_bool(), Some(true));
    assert!(s(gw, "apim.event_hub.service_url").starts_with("https://"));
    assert!(s(gw, "apim.event_hub.service_url").ends_with("/services/"));
    let publishers = ["publisher-1", "publisher-2"].map(|p| s(&f[p], "server.node_ip").to_string());
    assert_eq!(
        strings(gw, "apim.event_hub.event_listening_endpoints"),
        publishers
            .iter()
            .map(|h| format!("tcp://{h}:5672"))
            .collect::<Vec<_>>()
    );
    // helm GW: throttle_decision_endpoints tcp://<tm>:5672+offset; one [[apim.throttling.url_group]]
    // per traffic manager, tcp 9611+offset and ssl 9711+offset, type "loadbalance".
    let tms: Vec<(&str, i64)> = ["publisher-1-tm", "publisher-2-tm"]
        .iter()
        .map(|t| {
            (
                s(&f[*t], "server.node_ip"),
                get(&f[*t], "server.offset").as_integer().expect("offset"),
            )
        })
        .collect();
    assert_eq!(
        strings(gw, "apim.throttling.throttle_decision_endpoints"),
        tms.iter()
            .map(|(h, o)| format!("tcp://{h}:{}", 5672 + o))
            .collect::<Vec<_>>()
    );
    for (i, (h, o)) in tms.iter().enumerate() {
        let group = format!("apim.throttling.url_group.{i}");
        assert_eq!(
            strings(gw, &format!("{group}.traffic_manager_urls")),
            [format!("tcp://{h}:{}", 9611 + o)]
        );
        assert_eq!(
            strings(gw, &format!("{group}.traffic_manager_auth_urls")),
            [format!("ssl://{h}:{}", 9711 + o)]
        );
        assert_eq!(s(gw, &format!("{group}.type")), "loadbalance");
    }
    // helm GW: `[apim.key_manager] service_url = "https://<km>:<port>/services/"`.
    assert!(s(gw, "apim.key_manager.service_url").starts_with("https://"));
    // helm GW: a gateway has shared_db and no apim_db.
    assert!(gw.get("database").and_then(|d| d.get("apim_db")).is_none());
    assert!(get(gw, "database.shared_db.url").is_str());
    // helm GW: server_role = "default"; the hostname is the gateway's public (ingress) host, the
    // same on every gateway node.
    assert_eq!(s(gw, "server.server_role"), "default");
    assert_eq!(
        s(gw, "server.hostname"),
        s(&f["gateway-2"], "server.hostname")
    );
    assert_ne!(s(gw, "server.hostname"), s(gw, "server.node_ip"));
    assert_eq!(
        strings(gw, "apim.sync_runtime_artifacts.gateway.gateway_labels"),
        ["gateway"]
    );
}

#[test]
fn a_key_manager_notifies_revocations_to_the_control_plane() {
    let f = files("clustered-external-store");
    let km = &f["key-manager-1"];
    // helm KM: [[event_listener]] id "token_revocation", the ApimOauthEventInterceptor, with
    // notification_endpoint https://<control plane>:9443/internal/data/v1/notify.
    let l = get(km, "event_listener.0");
    assert_eq!(s(l, "id"), "token_revocation");
    assert_eq!(
        s(l, "name"),
        "org.wso2.is.notification.ApimOauthEventInterceptor"
    );
    assert_eq!(
        s(l, "type"),
        "org.wso2.carbon.identity.core.handler.AbstractIdentityHandler"
    );
    let endpoint = s(km, "event_listener.0.properties.notification_endpoint");
    let hub = s(km, "apim.event_hub.service_url");
    assert_eq!(
        endpoint,
        hub.replace("/services/", "/internal/data/v1/notify"),
        "the notification endpoint is the control plane's"
    );
    assert!(endpoint.starts_with("https://"));
    // The token issuer comes from the host name: the key managers' balancer, on every node.
    assert_eq!(
        s(km, "server.hostname"),
        s(&f["key-manager-2"], "server.hostname")
    );
}

#[test]
fn a_control_plane_names_https_gateway_environments_and_portal() {
    let f = files("clustered-external-store");
    let cp = &f["publisher-1"];
    // helm CP: [[apim.gateway.environment]] service_url = https://<gateway service>:9443/services/
    // (the gateway's management port, not its API port), https_endpoint for clients.
    let env = get(cp, "apim.gateway.environment.0");
    let gw_ip = s(&f["gateway-1"], "server.node_ip");
    assert_eq!(
        s(env, "service_url"),
        format!("https://{gw_ip}:9443/services/")
    );
    assert!(s(env, "https_endpoint").starts_with("https://"));
    assert!(env.get("http_endpoint").is_none(), "TLS on every listener");
    // helm CP: [apim.devportal] url = "https://<control plane host>/devportal".
    assert!(s(cp, "apim.devportal.url").starts_with("https://"));
    assert!(s(cp, "apim.devportal.url").ends_with("/devportal"));
    // helm CP: event_listening_endpoints tcp://localhost:5672; event_duplicate_url the other
    // instance; one publish url_group per instance on 9611 / 9711.
    assert_eq!(
        strings(cp, "apim.event_hub.event_listening_endpoints"),
        ["tcp://localhost:5672"]
    );
    let other = s(&f["publisher-2"], "server.node_ip");
    assert_eq!(
        strings(cp, "apim.event_hub.event_duplicate_url"),
        [format!("tcp://{other}:5672")]
    );
    assert_eq!(
        strings(cp, "apim.event_hub.publish.url_group.1.urls"),
        [format!("tcp://{other}:9611")]
    );
    // helm CP: `[transport.https.properties] proxyPort` behind the balancer.
    assert!(get(cp, "transport.https.properties.proxyPort").is_integer());
}

#[test]
fn a_traffic_manager_sits_beside_each_control_plane_on_its_own_offset() {
    let f = files("clustered-external-store");
    for cp in ["publisher-1", "publisher-2"] {
        let tm = &f[&format!("{cp}-tm")];
        assert_eq!(s(tm, "server.node_ip"), s(&f[cp], "server.node_ip"));
        assert_ne!(get(tm, "server.offset"), get(&f[cp], "server.offset"));
        // helm TM: throttle_decision_endpoints ["tcp://localhost:5672"] (plus its offset).
        let offset = get(tm, "server.offset").as_integer().expect("offset");
        assert_eq!(
            strings(tm, "apim.throttling.throttle_decision_endpoints"),
            [format!("tcp://localhost:{}", 5672 + offset)]
        );
        assert!(get(tm, "database.apim_db.url").is_str());
    }
    // Portals alone on the public network get no traffic manager.
    assert!(!f.contains_key("store-1-tm"));
}

#[test]
fn the_default_pack_uses_the_h2_databases_wso2_ships() {
    // WSO2's default deployment.toml (product-apim): jdbc:h2:./repository/database/WSO2AM_DB and
    // WSO2SHARED_DB, with DB_CLOSE_ON_EXIT=FALSE.
    let f = files("standalone");
    let aio = &f["all-in-one-1"];
    assert_eq!(
        s(aio, "database.apim_db.url"),
        "jdbc:h2:./repository/database/WSO2AM_DB;DB_CLOSE_ON_EXIT=FALSE"
    );
    assert_eq!(
        s(aio, "database.shared_db.url"),
        "jdbc:h2:./repository/database/WSO2SHARED_DB;DB_CLOSE_ON_EXIT=FALSE"
    );
    assert_eq!(get(aio, "server.offset").as_integer(), Some(0));
}

/// The key paths of a values file: maps are walked, lists and scalars are leaves (as the
/// reference list counts them).
fn value_paths(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                value_paths(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn helm_values(pattern: &str) -> BTreeMap<String, serde_json::Value> {
    let text = apim_patterns::find(pattern).expect("pattern").template;
    let c = common::load("t.toml", text.as_bytes());
    apim_compiler::build(&c.topology)
        .files
        .into_iter()
        .filter(|(p, _)| p.starts_with("helm/"))
        .map(|(p, text)| (p, yaml_to_json(&text)))
        .collect()
}

/// YAML read by PyYAML (which scripts/test installs with kubernetes-validate), as JSON.
fn yaml_to_json(text: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "not YAML:\n{text}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn helm_values_use_only_keys_the_charts_define() {
    let mut seen = 0;
    for p in apim_patterns::PATTERNS {
        for (path, v) in helm_values(p.id) {
            let chart = match path.as_str() {
                "helm/control-plane.yaml" => "control-plane",
                "helm/key-manager.yaml" => "key-manager",
                "helm/traffic-manager.yaml" => "traffic-manager",
                _ if path.starts_with("helm/gateway-") => "gateway",
                other => panic!("unexpected {other}"),
            };
            let known = apim_compiler::emit::helm::known_keys(chart);
            assert!(known.len() > 100, "{chart}: {} keys", known.len());
            let mut paths = Vec::new();
            value_paths(&v, "", &mut paths);
            for k in paths {
                assert!(
                    known.contains(&k.as_str()),
                    "{}: {path}: `{k}` is not a key of the {chart} chart",
                    p.id
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 50, "{seen}");
}

#[test]
fn helm_values_wire_the_gateway_to_the_event_hub_traffic_managers_and_key_manager() {
    let v = helm_values("clustered-external-store");
    let gw = &v["helm/gateway-gateway.yaml"]["wso2"]["apim"]["configurations"];
    // helm GW deployment.toml: event_listening_endpoints from eventhub.urls, throttling urls
    // from throttling.urls, the key manager's service from km.serviceUrl.
    assert_eq!(
        gw["eventhub"]["urls"],
        serde_json::json!([
            "apim-clustered-external-wso2am-cp-1-service",
            "apim-clustered-external-wso2am-cp-2-service"
        ])
    );
    assert_eq!(gw["throttling"]["urls"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        gw["km"]["serviceUrl"],
        "apim-clustered-external-wso2am-km-service"
    );
    assert_eq!(
        v["helm/gateway-gateway.yaml"]["wso2"]["deployment"]["replicas"],
        2
    );
    let cp = &v["helm/control-plane.yaml"];
    assert_eq!(cp["wso2"]["deployment"]["highAvailability"], true);
    let db = &cp["wso2"]["apim"]["configurations"]["databases"];
    assert_eq!(
        db["apim_db"]["url"],
        "jdbc:postgresql://10.0.9.11:5432/apim"
    );
    assert_eq!(
        cp["wso2"]["apim"]["configurations"]["existingSecret"]["apimDBPasswordKey"],
        "APIM_DB_PASSWORD"
    );
    // Standalone maps onto the all-in-one pack: no distributed values.
    assert!(helm_values("standalone").is_empty());
}

#[test]
fn an_ingress_gets_a_dns_name_never_an_address() {
    let text = apim_patterns::find("clustered-external-store")
        .expect("pattern")
        .template
        .replace("host = \"203.0.113.10\"", "host = \"api.example.com\"");
    let c = common::load("t.toml", text.as_bytes());
    let out = apim_compiler::build(&c.topology);
    let gw = yaml_to_json(&out.files["helm/gateway-gateway.yaml"]);
    assert_eq!(
        gw["kubernetes"]["ingress"]["gateway"]["hostname"],
        "api.example.com"
    );
    // The template's control plane sits behind an address: left to the chart, and said.
    let cp = yaml_to_json(&out.files["helm/control-plane.yaml"]);
    assert!(cp["kubernetes"].get("ingress").is_none(), "{cp}");
    assert!(
        out.warnings.iter().any(|w| w
            .message
            .contains("kubernetes.ingress.controlPlane.hostname")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn the_helm_key_list_is_the_shared_reference() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/helm-apim-values-keys.txt");
    // As for the WSO2 key list: where the shared folder is beside the checkout, the copy the
    // tests use must be the same.
    if let Ok(reference) = std::fs::read_to_string(shared) {
        assert_eq!(apim_compiler::emit::helm::KNOWN_KEYS, reference);
    }
}

/// clustered-external-store with the gateways on a network of their own, and only the rules
/// apim's own flows need.
fn gateways_in_a_dmz(extra: &str) -> String {
    let mut s = apim_patterns::find("clustered-external-store")
        .expect("pattern")
        .template
        .replacen(
            "[networks.external]",
            "[networks.dmz]\n\n[networks.external]",
            1,
        );
    let at = s.find("[clusters.gateway]").expect("gateway cluster");
    let net = at + s[at..].find("network = \"internal\"").expect("its network");
    s.replace_range(
        net..net + "network = \"internal\"".len(),
        "network = \"dmz\"",
    );
    format!(
        "{s}\n[[firewall]]\nfrom = \"gateway\"\nto = \"internal\"\nports = [9446, 5432]\n\n[[firewall]]\nfrom = \"internal\"\nto = \"gateway\"\nports = [9446]\n{extra}"
    )
}

#[test]
fn a_firewall_that_refuses_what_wso2_needs_is_a_warning_with_the_rule_that_fixes_it() {
    let c = common::load("t.toml", gateways_in_a_dmz("").as_bytes());
    assert_eq!(c.errors(), 0, "{}", common::report(&c));
    let out = apim_compiler::build(&c.topology);
    let refused: Vec<_> = out
        .warnings
        .iter()
        .filter(|w| w.message.contains("must reach"))
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", out.warnings);
    let w = &refused[0].message;
    assert!(
        w.contains("cluster `gateway` must reach cluster `publisher`"),
        "{w}"
    );
    let ports = w
        .rsplit_once("ports = ")
        .map(|(_, p)| p.to_string())
        .expect("the ports");
    // The rule the warning gives is enough.
    let fixed = gateways_in_a_dmz(&format!(
        "\n[[firewall]]\nfrom = \"gateway\"\nto = \"publisher\"\nports = {ports}\n"
    ));
    let c = common::load("t.toml", fixed.as_bytes());
    let out = apim_compiler::build(&c.topology);
    assert!(
        !out.warnings
            .iter()
            .any(|w| w.message.contains("must reach")),
        "{:?}",
        out.warnings
    );
}
