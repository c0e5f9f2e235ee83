//! The container image holds everything a node needs: scripts/image builds it (from this test
//! binary's apim, so no release build is needed here), and the image's own root filesystem,
//! mounted by buildah, runs `apim --version`, the whole init / check / build / certs pipeline
//! and a standalone node serving `/health` — as the image's non-root user, in a fresh mount
//! and network namespace, so nothing of this machine's root filesystem is there to lean on.
//!
//! Needs root and buildah (scripts/test installs it and sets APIM_TEST_IMAGE=required, so a
//! missing part fails there instead of skipping).

use std::path::Path;
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn missing() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return Some("buildah's storage needs root".into());
    }
    for tool in ["buildah", "unshare", "chroot", "curl", "ip"] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("PATH=$PATH:/usr/sbin:/sbin command -v {tool}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Removes the working container and the image, whatever the test's outcome.
struct Built {
    image: String,
    container: Option<String>,
}

impl Drop for Built {
    fn drop(&mut self) {
        if let Some(c) = &self.container {
            let _ = Command::new("buildah").args(["rm", c]).output();
        }
        let _ = Command::new("buildah")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn the_image_runs_a_node_from_its_own_root_filesystem() {
    if let Some(why) = missing() {
        assert!(
            std::env::var("APIM_TEST_IMAGE").as_deref() != Ok("required"),
            "the image test must run here: {why}"
        );
        eprintln!("not run: {why}");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut built = Built {
        image: format!("localhost/apim-image-test:{}", std::process::id()),
        container: None,
    };
    let out = run(Command::new(repo.join("scripts/image")).args([
        "--binary",
        env!("CARGO_BIN_EXE_apim"),
        "--tag",
        &built.image,
        "--format",
        "json",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["image"], built.image.as_str());
    assert!(report["size_bytes"].as_u64().is_some_and(|s| s > 1_000_000));

    let inspect = run(Command::new("buildah").args(["inspect", "--type", "image", &built.image]));
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("JSON");
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/apim"])
    );
    assert_eq!(config["WorkingDir"], "/var/lib/apim");
    assert_eq!(
        config["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    for port in ["8280", "9090", "9443", "9444", "9445", "9446"] {
        assert!(config["ExposedPorts"].get(port).is_some(), "port {port}");
    }

    let container = run(Command::new("buildah").args(["from", &built.image]));
    let container = String::from_utf8_lossy(&container.stdout)
        .trim()
        .to_string();
    built.container = Some(container.clone());
    let root = run(Command::new("buildah").args(["mount", &container]));
    let root = String::from_utf8_lossy(&root.stdout).trim().to_string();
    // Only the binary, its libraries, CA certificates, the user and the folders it writes.
    let listing = run(Command::new("find").args([&root, "-type", "f"]));
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim_start_matches(root.as_str()).to_string())
        .collect();
    for needed in [
        "/usr/local/bin/apim",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/passwd",
    ] {
        assert!(files.iter().any(|f| f == needed), "{needed} in {files:?}");
    }
    assert!(
        files
            .iter()
            .all(|f| !f.contains("/bin/sh") && !f.ends_with("/bash")),
        "a shell in the image: {files:?}"
    );
    assert!(files.len() < 20, "more than the binary needs: {files:?}");

    // The node's files, made by the image's own apim, in a folder the image's user may write.
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let script = format!(
        r#"
set -eu
ip link set lo up
mount --bind "{work}" "{root}/tmp"
in_image() {{ chroot --userspec=65532:65532 "{root}" /usr/local/bin/apim "$@"; }}
cd /
in_image --version
in_image init --pattern standalone -o /tmp/template.toml
in_image check /tmp/template.toml
sed 's/10.0.1.10/127.0.0.1/' "{work}/template.toml" > "{work}/topology.toml"
in_image build /tmp/topology.toml -o /tmp/out
in_image certs /tmp/topology.toml -o /tmp/certs
# Started without the function so that `$!` is the node itself, not a subshell around it.
APIM_ADMIN_PASSWORD=image-test-password chroot --userspec=65532:65532 "{root}" \
    /usr/local/bin/apim node /tmp/out/nodes/all-in-one-1.toml \
    --certs /tmp/certs --data /tmp/data > "{work}/node.log" 2>&1 &
node=$!
for _ in $(seq 1 100); do
    if curl -sf --cacert "{work}/certs/ca.crt" https://127.0.0.1:9090/health; then
        kill -INT "$node"; wait "$node" || true; exit 0
    fi
    sleep 0.1
done
kill -INT "$node" || true
cat "{work}/node.log"
exit 1
"#,
        work = work.path().display(),
    );
    // A PID namespace: whatever the script leaves running dies with it; `timeout` turns a hang
    // into a failure.
    let out = run(Command::new("timeout")
        .args([
            "120", "unshare", "--mount", "--net", "--pid", "--fork", "sh", "-c", &script,
        ])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("apim {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    // The node wrote its SQLite file where it was told, as the image's user.
    let db = work.path().join("data/data/apim.db");
    let meta = std::fs::metadata(&db).unwrap_or_else(|e| panic!("{}: {e}", db.display()));
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65532);
}
