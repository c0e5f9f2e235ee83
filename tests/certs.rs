//! `apim certs` and `apim check --certs` against the real binary: the files, their modes and
//! names, reruns that renew only what no longer fits, a CA of the user's own, and every
//! certificate problem reported at the host it is about — and `apim node` refusing to start on
//! such files with the same words.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

fn run(args: &[&str], dir: &Path) -> Output {
    common::apim()
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("apim runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn template(dir: &Path, pattern: &str) -> String {
    let t = apim_patterns::find(pattern).expect("pattern").template;
    std::fs::write(dir.join("t.toml"), t).expect("write");
    t.to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("file").permissions().mode() & 0o777
}

#[test]
fn certs_are_made_once_and_kept_on_a_rerun() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    template(d, "internal-store");
    let o = run(&["certs", "t.toml", "-o", "pki", "--format", "json"], d);
    assert!(o.status.success(), "{}", text(&o));
    let written: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let files = written["files"].as_array().expect("files");
    // A CA (cert and key), then a cert and key per node (6) and balancer (2), then the JWT
    // signing key and its public half.
    assert_eq!(files.len(), 2 + 2 * 8 + 2, "{written}");
    assert!(files.iter().all(|f| f["action"] == "created"));
    assert_eq!(mode(&d.join("pki")), 0o700);
    assert_eq!(mode(&d.join("pki/gateway-1.key")), 0o600);
    assert_eq!(mode(&d.join("pki/ca.key")), 0o600);
    assert_eq!(mode(&d.join("pki/gateway-1.crt")), 0o644);
    assert_eq!(mode(&d.join("pki/jwt-signing.seed")), 0o600);
    assert!(d.join("pki/apim-certs.json").is_file());
    // What the certificate says: its SPIFFE ID, its host and its names on every platform.
    let pem = std::fs::read_to_string(d.join("pki/gateway-1.crt")).expect("cert");
    let der = apim_pki::inspect::pem_certs(&pem).expect("pem");
    let facts = apim_pki::Facts::of_der(&der[0]).expect("x509");
    assert_eq!(
        facts.spiffe,
        vec!["spiffe://apim-internal/node/gateway-1".to_string()]
    );
    assert!(facts.covers("10.0.3.11"));
    assert!(facts.covers("gateway-1"));
    assert!(facts.covers("gateway-1.gateway.apim-internal.svc"));
    assert!(facts.covers("gateway.apim-internal.apim"));
    assert!(!facts.covers("10.0.3.12"));
    let again = run(&["certs", "t.toml", "-o", "pki", "--format", "json"], d);
    let written: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert!(
        written["files"]
            .as_array()
            .expect("files")
            .iter()
            .all(|f| f["action"] == "kept"),
        "{written}"
    );
    let o = run(&["check", "t.toml", "--certs", "pki"], d);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_rotated_signing_key_keeps_the_previous_one_and_publishes_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    template(d, "internal-store");
    assert!(run(&["certs", "t.toml", "-o", "pki"], d).status.success());
    let read = |f: &str| std::fs::read_to_string(d.join("pki").join(f)).expect(f);
    let kids = |text: String| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&text).expect("jwks");
        v["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_string())
            .collect()
    };
    let (seed, before) = (read("jwt-signing.seed"), kids(read("jwks.json")));
    assert_eq!(before.len(), 1);
    let o = run(&["certs", "t.toml", "-o", "pki", "--rotate-signing-key"], d);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read("jwt-signing.previous.seed"), seed);
    assert_ne!(read("jwt-signing.seed"), seed);
    assert_eq!(mode(&d.join("pki/jwt-signing.seed")), 0o600);
    let after = kids(read("jwks.json"));
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[1], before[0], "the previous key stays published");
    assert_ne!(after[0], before[0]);
}

#[test]
fn a_moved_host_and_an_expired_certificate_are_reported_where_they_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let t = template(d, "internal-store");
    assert!(run(&["certs", "t.toml", "-o", "pki"], d).status.success());
    // gateway-2 moves: its certificate no longer names its host.
    let moved = t.replace("\"10.0.3.12\"", "\"10.0.3.99\"");
    assert_ne!(moved, t);
    std::fs::write(d.join("t.toml"), &moved).expect("write");
    // key-manager-1's certificate expired yesterday.
    let ca = apim_pki::Ca {
        cert_pem: std::fs::read_to_string(d.join("pki/ca.crt")).expect("ca"),
        key_pem: std::fs::read_to_string(d.join("pki/ca.key")).expect("ca key"),
    };
    let expired = ca
        .issue_at(
            "spiffe://apim-internal/node/key-manager-1",
            &["10.0.2.11".into(), "key-manager-1".into()],
            time::OffsetDateTime::now_utc() - time::Duration::days(10),
            9,
        )
        .expect("issue");
    std::fs::write(d.join("pki/key-manager-1.crt"), expired.cert_pem).expect("write");
    std::fs::write(d.join("pki/key-manager-1.key"), expired.key_pem).expect("write");
    let o = run(
        &["check", "t.toml", "--certs", "pki", "--format", "json"],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let find = |code: &str| {
        r["diagnostics"]
            .as_array()
            .and_then(|ds| ds.iter().find(|x| x["code"] == code).cloned())
            .unwrap_or_else(|| panic!("no {code} in {r}"))
    };
    let mismatch = find("E091");
    let line = moved
        .lines()
        .position(|l| l.contains("10.0.3.99"))
        .expect("host line")
        + 1;
    assert_eq!(mismatch["start"]["line"], line);
    assert!(
        mismatch["message"]
            .as_str()
            .is_some_and(|m| m.contains("gateway-2") && m.contains("10.0.3.99")),
        "{mismatch}"
    );
    let expired = find("E090");
    assert!(
        expired["message"]
            .as_str()
            .is_some_and(|m| m.contains("key-manager-1") && m.contains("expired")),
        "{expired}"
    );
    // The node refuses to start on the expired certificate, saying why.
    assert!(run(&["build", "t.toml", "-o", "out"], d).status.success());
    let o = run(
        &["node", "out/nodes/key-manager-1.toml", "--certs", "pki"],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("expired"), "{}", text(&o));
    // And the moved gateway on a certificate for its old address.
    let o = run(&["node", "out/nodes/gateway-2.toml", "--certs", "pki"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("does not name its host `10.0.3.99`"),
        "{}",
        text(&o)
    );
    // A rerun renews exactly those two.
    let o = run(&["certs", "t.toml", "-o", "pki", "--format", "json"], d);
    let written: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let renewed: Vec<&str> = written["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["action"] == "renewed")
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(
        renewed,
        [
            "pki/gateway-2.crt",
            "pki/gateway-2.key",
            "pki/key-manager-1.crt",
            "pki/key-manager-1.key"
        ]
    );
    assert!(
        run(&["check", "t.toml", "--certs", "pki"], d)
            .status
            .success()
    );
    // A certificate that expires within 30 days is a warning (exit 0), and a rerun renews it.
    let soon = ca
        .issue_at(
            "spiffe://apim-internal/node/gateway-1",
            &["10.0.3.11".into(), "gateway-1".into()],
            time::OffsetDateTime::now_utc() - time::Duration::days(1),
            10,
        )
        .expect("issue");
    std::fs::write(d.join("pki/gateway-1.crt"), soon.cert_pem).expect("write");
    std::fs::write(d.join("pki/gateway-1.key"), soon.key_pem).expect("write");
    let o = run(&["check", "t.toml", "--certs", "pki"], d);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("W090"), "{}", text(&o));
    let o = run(&["certs", "t.toml", "-o", "pki"], d);
    assert!(
        text(&o).contains("renewed  pki/gateway-1.crt"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_users_ca_signs_and_its_key_stays_with_the_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    template(d, "standalone");
    let ca = apim_pki::Ca::generate("mine").expect("ca");
    std::fs::write(d.join("my-ca.crt"), &ca.cert_pem).expect("write");
    std::fs::write(d.join("my-ca.key"), &ca.key_pem).expect("write");
    let o = run(
        &[
            "certs",
            "t.toml",
            "-o",
            "pki",
            "--ca-cert",
            "my-ca.crt",
            "--ca-key",
            "my-ca.key",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!d.join("pki/ca.key").exists());
    assert_eq!(
        std::fs::read_to_string(d.join("pki/ca.crt")).expect("ca"),
        ca.cert_pem
    );
    assert!(
        run(&["check", "t.toml", "--certs", "pki"], d)
            .status
            .success()
    );
    // A key that is not the CA's is refused before anything is written.
    let other = apim_pki::Ca::generate("other").expect("ca");
    std::fs::write(d.join("other.key"), &other.key_pem).expect("write");
    let o = run(
        &[
            "certs",
            "t.toml",
            "-o",
            "pki2",
            "--ca-cert",
            "my-ca.crt",
            "--ca-key",
            "other.key",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not the key of"), "{}", text(&o));
    // Certificates from another CA fail the check.
    std::fs::write(d.join("pki/ca.crt"), &other.cert_pem).expect("write");
    let o = run(&["check", "t.toml", "--certs", "pki"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("E090"), "{}", text(&o));
}
