//! The real tools accept what apim writes: `nginx -t`, `haproxy -c` and `kubernetes-validate
//! --strict` (Kubernetes' own schemas) on the outputs of every pattern. `./scripts/test`
//! installs the tools; run without them, these tests fail and say so.

mod common;

use std::path::Path;
use std::process::Command;

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain([Path::new("/usr/sbin").into()])
            .any(|p| p.join(name).is_file())
    });
    assert!(
        found,
        "`{name}` is not installed: run ./scripts/test, which installs what the tests need"
    );
    let mut c = Command::new(name);
    c.env(
        "PATH",
        format!(
            "{}:/usr/sbin:/sbin",
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    c
}

fn accepted(mut cmd: Command, what: &str) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what} rejected it:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Builds every pattern into its own folder and returns them. Each topology's `[tls]` points at
/// certificates `apim certs` made for it, so the tools can load what the configs name.
fn built() -> (tempfile::TempDir, Vec<(String, apim_compiler::Output)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    for p in apim_patterns::PATTERNS {
        let certs = dir.path().join(p.id).join("certs");
        let text = format!(
            "{}\n[tls]\nca = \"{d}/ca.crt\"\ncert = \"{d}/{{name}}.crt\"\nkey = \"{d}/{{name}}.key\"\n",
            p.template,
            d = certs.display()
        );
        let c = common::load(p.id, text.as_bytes());
        let plan = apim_compiler::Plan::of(&c.topology);
        apim_pki::write_dir(&plan.deployment, &apim_pki::subjects(&plan), &certs, None)
            .expect("certificates");
        let o = apim_compiler::build(&c.topology);
        for (path, text) in &o.files {
            let file = dir.path().join(p.id).join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, text).expect("write");
        }
        out.push((p.id.to_string(), o));
    }
    (dir, out)
}

#[test]
fn nginx_and_haproxy_accept_every_balancer() {
    let (dir, builds) = built();
    let mut checked = 0;
    for (id, o) in &builds {
        for path in o.files.keys() {
            let file = dir.path().join(id).join(path);
            if path.ends_with("nginx.conf") {
                let prefix = tempfile::tempdir().expect("prefix");
                let mut c = tool("nginx");
                c.arg("-t")
                    .arg("-p")
                    .arg(prefix.path())
                    .arg("-c")
                    .arg(&file);
                accepted(c, &format!("nginx -t ({id}/{path})"));
                checked += 1;
            } else if path.ends_with("haproxy.cfg") {
                let mut c = tool("haproxy");
                c.arg("-c").arg("-f").arg(&file);
                accepted(c, &format!("haproxy -c ({id}/{path})"));
                checked += 1;
            }
        }
    }
    // internal-store 2, external-store 2, clustered-internal 2, clustered-external-store 3
    // balancers; HAProxy also for Compose; nginx and HAProxy again in front of WSO2 nodes.
    assert_eq!(checked, 9 * 5);
}

#[test]
fn kubernetes_accepts_every_manifest() {
    let (dir, builds) = built();
    let importable = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "kubernetes-validate is not installed: run ./scripts/test, which installs what the tests need"
    );
    let mut c = Command::new("python3");
    c.args(["-m", "kubernetes_validate", "--strict", "--quiet"]);
    let mut files = 0;
    for (id, o) in &builds {
        for path in o.files.keys().filter(|p| p.starts_with("k8s/")) {
            c.arg(dir.path().join(id).join(path));
            files += 1;
        }
    }
    assert!(files > 20);
    accepted(c, "kubernetes-validate --strict");
}

#[test]
fn compose_files_are_yaml_with_a_service_per_node_and_balancer() {
    let (dir, builds) = built();
    for (id, _) in &builds {
        let file = dir.path().join(id).join("compose.yaml");
        let script = "import sys, yaml\nd = yaml.safe_load(open(sys.argv[1]))\nprint(len(d['services']), len(d['networks']))";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&file)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = common::load(
            id,
            apim_patterns::find(id)
                .expect("pattern")
                .template
                .as_bytes(),
        );
        let plan = apim_compiler::Plan::of(&c.topology);
        let expected = format!(
            "{} {}\n",
            plan.nodes.len() + plan.balancers.len(),
            plan.networks.len()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{id}");
    }
}
