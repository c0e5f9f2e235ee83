//! `apim build` and `apim plan`: every output of every pattern pinned by a snapshot, the WSO2
//! files limited to keys WSO2 really has, and plan's exit codes and diffs.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

fn build(text: &str) -> apim_compiler::Output {
    let c = common::load("t.toml", text.as_bytes());
    assert_eq!(c.errors(), 0, "{}", common::report(&c));
    apim_compiler::build(&c.topology)
}

fn template(id: &str) -> &'static str {
    apim_patterns::find(id).expect("pattern").template
}

#[test]
fn every_output_of_every_pattern() {
    for p in apim_patterns::PATTERNS {
        let out = build(p.template);
        let mut all = String::new();
        for (path, text) in &out.files {
            all.push_str(&format!("======== {path}\n{text}"));
        }
        for w in &out.warnings {
            all.push_str(&format!("======== warning\n{w}\n"));
        }
        insta::with_settings!({ snapshot_path => "snapshots/build", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(p.id, all);
        });
    }
}

/// The WSO2 key paths of a deployment.toml, `table.key` as in the reference list.
fn key_paths(text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            toml::Value::Array(items)
                if items.iter().all(|i| i.is_table()) && !items.is_empty() =>
            {
                for i in items {
                    walk(prefix, i, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let value: toml::Value = toml::from_str(text).expect("deployment.toml is TOML");
    let mut out = BTreeSet::new();
    walk("", &value, &mut out);
    out
}

#[test]
fn wso2_files_use_only_keys_wso2_deployment_kits_use() {
    let known: BTreeSet<&str> = apim_compiler::emit::wso2::KNOWN_KEYS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    let mut used = BTreeSet::new();
    for p in apim_patterns::PATTERNS {
        for (path, text) in build(p.template).files {
            if path.starts_with("wso2/") {
                assert!(
                    !text.contains("${"),
                    "{path} keeps a ${{NAME}} reference in the wrong form"
                );
                used.extend(key_paths(&text));
            }
        }
    }
    let unknown: Vec<_> = used
        .iter()
        .filter(|k| !known.contains(k.as_str()))
        .collect();
    assert!(unknown.is_empty(), "keys WSO2 does not have: {unknown:?}");
    assert!(used.contains("database.apim_db.url") && used.contains("apim.key_manager.service_url"));
}

#[test]
fn the_wso2_key_list_is_the_shared_reference() {
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/wso2-deployment-keys.txt");
    // The project's own copy is what the tests use; where the shared folder is laid beside the
    // checkout (sessions and CI), the copy must be the same.
    if let Ok(reference) = std::fs::read_to_string(shared) {
        assert_eq!(apim_compiler::emit::wso2::KNOWN_KEYS, reference);
    }
}

#[test]
fn split_user_and_registry_databases_are_said_in_a_comment_and_a_warning() {
    let text = template("clustered-internal")
        .replace(r#"roles = ["user", "registry"]"#, r#"roles = ["user"]"#)
        .replace(r#"roles = ["apim"]"#, r#"roles = ["apim", "registry"]"#);
    let out = build(&text);
    let about: Vec<_> = out
        .warnings
        .iter()
        .filter(|w| w.message.contains("shared_db"))
        .collect();
    assert_eq!(about.len(), 1, "{:?}", out.warnings);
    assert!(
        !build(template("clustered-internal"))
            .warnings
            .iter()
            .any(|w| w.message.contains("shared_db"))
    );
    assert!(
        out.files["wso2/publisher-1/deployment.toml"]
            .contains("# WSO2 keeps users and the registry in one shared_db")
    );
}

#[test]
fn secrets_stay_references_in_every_output() {
    let out = build(template("clustered-external-store"));
    for (path, text) in &out.files {
        assert!(!text.contains("hunter2"), "{path}");
        if path.starts_with("k8s/cluster-") {
            assert!(text.contains("secretKeyRef"), "{path}");
        }
    }
    assert!(out.files["wso2/publisher-1/deployment.toml"].contains("$env{APIM_DB_PASSWORD}"));
    assert!(out.files["nodes/publisher-1.toml"].contains("${APIM_DB_PASSWORD}"));
    assert!(out.files["compose.yaml"].contains("APIM_DB_PASSWORD: \"${APIM_DB_PASSWORD}\""));
}

fn run(args: &[&str], dir: &Path) -> (i32, String) {
    let o = common::apim()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("apim runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

#[test]
fn plan_reports_nothing_after_a_build_and_exactly_the_files_an_edit_touches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("t.toml"), template("clustered-external-store")).expect("write");
    assert_eq!(
        run(&["plan", "t.toml", "-o", "out"], d).0,
        2,
        "an empty folder needs every file"
    );
    let (code, text) = run(&["build", "t.toml", "-o", "out"], d);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["plan", "t.toml", "-o", "out"], d);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.trim(),
        "plan: 0 to create, 0 to change, 0 to delete in out"
    );

    let edited = template("clustered-external-store").replace("10.0.3.11", "10.0.3.21");
    std::fs::write(d.join("t.toml"), edited).expect("write");
    let (code, text) = run(&["plan", "t.toml", "-o", "out", "--format", "json"], d);
    assert_eq!(code, 2, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    let changed: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(
        changed,
        [
            // The ConfigMaps carry the node configs of the gateway and of the nodes that notify it.
            "k8s/cluster-gateway.yaml",
            "k8s/cluster-key-manager.yaml",
            "k8s/cluster-publisher.yaml",
            "lb/edge/haproxy.cfg",
            "lb/edge/nginx.conf",
            "lb/edge/rules.toml",
            "lb/edge/wso2/haproxy.cfg",
            "lb/edge/wso2/nginx.conf",
            "nodes/gateway-1.toml",
            // Publishers and gateways hold the deployment's hosts (no API's backend may be one).
            "nodes/gateway-2.toml",
            "nodes/key-manager-1.toml",
            "nodes/key-manager-2.toml",
            "nodes/publisher-1.toml",
            "nodes/publisher-2.toml",
            "plan.json",
            "wso2/gateway-1/deployment.toml",
            "wso2/publisher-1/deployment.toml",
            "wso2/publisher-2/deployment.toml",
        ]
    );
    let (_, diff) = run(&["plan", "t.toml", "-o", "out"], d);
    assert!(
        diff.contains("--- a/nodes/gateway-1.toml\n+++ b/nodes/gateway-1.toml"),
        "{diff}"
    );
    assert!(
        diff.contains("-host = \"10.0.3.11\"\n+host = \"10.0.3.21\""),
        "{diff}"
    );
    assert!(
        diff.ends_with("plan: 0 to create, 18 to change, 0 to delete in out\n"),
        "{diff}"
    );
}

#[test]
fn plan_exits_1_on_errors_and_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = common::fixtures("check").join("port-clash.toml");
    assert_eq!(
        run(
            &["plan", broken.to_str().expect("utf-8"), "-o", "out"],
            dir.path()
        )
        .0,
        1
    );
    assert_eq!(run(&["plan", "missing.toml"], dir.path()).0, 1);
    assert_eq!(run(&["plan"], dir.path()).0, 1);
    assert_eq!(
        run(&["plan", "t.toml", "--format", "yaml"], dir.path()).0,
        1
    );
    assert_eq!(run(&["build"], dir.path()).0, 2);
}

#[test]
fn build_deletes_only_the_files_it_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("t.toml"), template("clustered-internal")).expect("write");
    assert_eq!(run(&["build", "t.toml", "-o", "out"], d).0, 0);
    std::fs::write(d.join("out/NOTES.md"), "ours").expect("write");
    std::fs::write(d.join("out/nodes/keep.toml"), "ours").expect("write");
    // Two store nodes become one: store-2's files go, everything else of ours stays.
    let smaller =
        template("clustered-internal").replace(r#"["10.0.4.11", "10.0.4.12"]"#, r#"["10.0.4.11"]"#);
    std::fs::write(
        d.join("t.toml"),
        smaller.replace("pattern = \"clustered-internal\"\n", ""),
    )
    .expect("write");
    let (code, text) = run(&["build", "t.toml", "-o", "out"], d);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("deleted"), "{text}");
    assert!(!d.join("out/nodes/store-2.toml").exists());
    assert!(
        !d.join("out/wso2/store-2").exists(),
        "an emptied folder is removed"
    );
    assert!(d.join("out/nodes/store-1.toml").exists());
    assert_eq!(
        std::fs::read_to_string(d.join("out/NOTES.md")).expect("kept"),
        "ours"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("out/nodes/keep.toml")).expect("kept"),
        "ours"
    );
}

#[test]
fn build_refuses_a_topology_with_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = common::fixtures("check").join("store-cannot-reach-key-manager.toml");
    let (code, text) = run(
        &["build", broken.to_str().expect("utf-8"), "-o", "out"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(text.contains("E040"), "{text}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn tls_paths_and_a_cert_manager_issuer_reach_every_output() {
    let text = format!(
        "{}\n[tls]\nca = \"/srv/pki/ca.crt\"\ncert = \"/srv/pki/{{name}}.crt\"\nkey = \"/srv/pki/{{name}}.key\"\nissuer = \"apim-ca\"\nedge = {{ cert = \"/srv/pki/public.crt\", key = \"/srv/pki/public.key\" }}\n",
        template("clustered-external-store")
    );
    let out = build(&text);
    let node = &out.files["nodes/gateway-1.toml"];
    assert!(node.contains("cert = \"/srv/pki/gateway-1.crt\""), "{node}");
    assert!(node.contains("ca = \"/srv/pki/ca.crt\""), "{node}");
    // The edge certificate faces clients on external balancers only; nodes see the
    // balancer's own.
    let edge = &out.files["lb/edge/nginx.conf"];
    assert!(
        edge.contains("ssl_certificate /srv/pki/public.crt;"),
        "{edge}"
    );
    assert!(
        edge.contains("proxy_ssl_certificate /srv/pki/edge.crt;"),
        "{edge}"
    );
    let km = &out.files["lb/km/haproxy.cfg"];
    assert!(!km.contains("public.crt"), "{km}");
    assert!(
        km.contains("mode tcp"),
        "internal listeners pass through: {km}"
    );
    // cert-manager issues each node's certificate with its names and SPIFFE ID, into the
    // Secret its pod mounts.
    let gateways = &out.files["k8s/cluster-gateway.yaml"];
    assert!(gateways.contains("kind: \"Certificate\""), "{gateways}");
    assert!(gateways.contains("- \"spiffe://apim-clustered-external/node/gateway-2\""));
    assert!(gateways.contains("secretName: \"gateway-2-tls\""));
    assert!(gateways.contains("name: \"gateway-2-tls\""));
    assert!(gateways.contains("mountPath: \"/srv/pki\""));
    assert!(gateways.contains("scheme: \"HTTPS\""));
    // Compose mounts each node's own key, nothing else's.
    let compose = &out.files["compose.yaml"];
    assert!(compose.contains("./certs/gateway-1.key:/srv/pki/gateway-1.key:ro"));
    // WSO2 gets the node's key and trust stores.
    let wso2 = &out.files["wso2/gateway-1/deployment.toml"];
    assert!(
        wso2.contains("[keystore.tls]") && wso2.contains("[truststore]"),
        "{wso2}"
    );
}

#[test]
fn the_session_length_is_the_deployments_to_choose() {
    let text = template("standalone").replace(
        "name = \"apim-standalone\"",
        "name = \"apim-standalone\"\nsession_hours = 2",
    );
    let out = build(&text);
    assert!(
        out.files["nodes/all-in-one-1.toml"].contains("session_ms = 7200000"),
        "{}",
        out.files["nodes/all-in-one-1.toml"]
    );
    for wrong in ["0", "721", "\"8h\""] {
        let text = template("standalone").replace(
            "name = \"apim-standalone\"",
            &format!("name = \"apim-standalone\"\nsession_hours = {wrong}"),
        );
        let c = apim_topology::check_str("t.toml", &text);
        assert!(c.errors() > 0, "session_hours = {wrong} was accepted");
    }
}

#[test]
fn the_database_timeout_is_the_deployments_to_choose() {
    let with = |line: &str| {
        template("standalone").replace(
            "name = \"apim-standalone\"",
            &format!("name = \"apim-standalone\"\n{line}"),
        )
    };
    let out = build(&with(""));
    assert!(
        out.files["nodes/all-in-one-1.toml"].contains("database_ms = 2000"),
        "the default"
    );
    let out = build(&with("database_timeout_ms = 500"));
    assert!(
        out.files["nodes/all-in-one-1.toml"].contains("database_ms = 500"),
        "{}",
        out.files["nodes/all-in-one-1.toml"]
    );
    for wrong in ["0", "99", "30001", "\"2s\""] {
        let c =
            apim_topology::check_str("t.toml", &with(&format!("database_timeout_ms = {wrong}")));
        assert!(c.errors() > 0, "database_timeout_ms = {wrong} was accepted");
    }
}

#[test]
fn the_image_and_resources_come_from_flags_over_the_topology_over_the_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let text = format!(
        "{}\n[kubernetes]\nimage = \"registry.example.com/ops/apim:1.0\"\nmemory_limit = \"1Gi\"\n",
        template("internal-store")
    );
    std::fs::write(d.join("t.toml"), text).expect("write");
    let (code, out) = run(
        &[
            "build",
            "t.toml",
            "-o",
            "out",
            "--image",
            "registry.example.com/ops/apim:2.0",
            "--cpu-request",
            "500m",
        ],
        d,
    );
    assert_eq!(code, 0, "{out}");
    let read = |p: &str| std::fs::read_to_string(d.join("out").join(p)).expect(p);
    for cluster in ["portal", "gateway", "key-manager"] {
        let k8s = read(&format!("k8s/cluster-{cluster}.yaml"));
        // The flag's image, the flag's CPU request, the topology's memory limit, the defaults
        // for the rest.
        assert!(
            k8s.contains("image: \"registry.example.com/ops/apim:2.0\""),
            "{k8s}"
        );
        assert!(
            k8s.contains("limits:\n            cpu: \"2\"\n            memory: \"1Gi\"\n          requests:\n            cpu: \"500m\"\n            memory: \"128Mi\""),
            "{k8s}"
        );
        assert!(k8s.contains("readOnlyRootFilesystem: true"), "{k8s}");
    }
    let compose = read("compose.yaml");
    assert!(compose.contains("image: \"registry.example.com/ops/apim:2.0\""));
    assert!(compose.contains("memory: \"1g\""), "{compose}");
    assert!(compose.contains("cpus: \"0.5\""), "{compose}");
    let plan: serde_json::Value = serde_json::from_str(&read("plan.json")).expect("JSON");
    assert_eq!(
        plan["workload"]["image"],
        "registry.example.com/ops/apim:2.0"
    );

    // A request above its limit, or an image that is no reference: refused, nothing written.
    for (flags, names) in [
        (&["--cpu-request", "4"][..], "--cpu-request"),
        (&["--memory-limit", "64Mi"][..], "--memory-request"),
        (&["--memory-limit", "1GB"][..], "--memory-limit"),
        (&["--image", "apim latest"][..], "--image"),
    ] {
        let mut args = vec!["build", "t.toml", "-o", "refused"];
        args.extend(flags);
        let (code, out) = run(&args, d);
        assert_eq!(code, 2, "{flags:?}: {out}");
        assert!(out.contains(names), "{flags:?}: {out}");
        assert!(!d.join("refused").exists(), "{flags:?} wrote files");
    }
}

#[test]
fn a_node_on_a_port_below_1024_may_bind_it_without_root() {
    let low = template("standalone").replace(
        "hosts = [\"10.0.1.10\"]",
        "hosts = [\"10.0.1.10\"]\nports = { gateway = 443 }",
    );
    let sysctl = "net.ipv4.ip_unprivileged_port_start";
    let k8s = &build(&low).files["k8s/cluster-all-in-one.yaml"];
    assert!(k8s.contains(sysctl), "{k8s}");
    assert!(k8s.contains("runAsNonRoot: true"), "{k8s}");
    let k8s = &build(template("standalone")).files["k8s/cluster-all-in-one.yaml"];
    assert!(!k8s.contains(sysctl), "{k8s}");
}

#[test]
fn build_warnings_point_at_the_topology_line_they_are_about() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let text = template("clustered-internal")
        .replace(r#"roles = ["user", "registry"]"#, r#"roles = ["user"]"#)
        .replace(r#"roles = ["apim"]"#, r#"roles = ["apim", "registry"]"#);
    std::fs::write(d.join("t.toml"), &text).expect("write");
    // The registry's database is `[databases.apim]`: its header's line and column.
    let line = text
        .lines()
        .position(|l| l.starts_with("[databases.apim]"))
        .expect("the apim database")
        + 1;
    let (code, out) = run(&["build", "t.toml", "-o", "out"], d);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "one shared_db; the files point it at `shared`\n  --> t.toml:{line}:12"
        )),
        "{out}"
    );
    let o = common::apim()
        .args(["build", "t.toml", "-o", "out", "--format", "json"])
        .current_dir(d)
        .output()
        .expect("apim");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let w = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .find(|w| {
            w["message"]
                .as_str()
                .is_some_and(|m| m.contains("shared_db"))
        })
        .expect("the shared_db warning");
    assert_eq!(w["at"], format!("t.toml:{line}:12"));
}
