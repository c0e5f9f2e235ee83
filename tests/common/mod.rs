//! Helpers shared by the integration tests.
#![allow(dead_code)]

use apim_topology::Checked;
use std::path::{Path, PathBuf};

pub fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// What `apim check` computes: the topology checks, then the pattern check.
pub fn load(name: &str, bytes: &[u8]) -> Checked {
    let mut checked = apim_topology::check(name, bytes);
    let more = apim_patterns::check(&checked.topology);
    checked.extend(more);
    checked
}

/// `CODE@LINE:COL` of every diagnostic, in report order.
pub fn positions(checked: &Checked) -> Vec<String> {
    checked
        .diagnostics
        .iter()
        .map(|d| {
            let p = checked.source.position(d.primary.span.start);
            format!("{}@{}:{}", d.code.id, p.line, p.column)
        })
        .collect()
}

/// The human report without colours, then the JSON of each diagnostic.
pub fn report(checked: &Checked) -> String {
    let human = apim_topology::render::human(&checked.source, &checked.diagnostics, false);
    let json: Vec<_> = checked
        .diagnostics
        .iter()
        .map(|d| apim_topology::render::json(&checked.source, d))
        .collect();
    let json = serde_json::to_string_pretty(&json).unwrap_or_default();
    format!("{human}---- json ----\n{json}\n")
}

pub fn apim() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_apim"))
}

/// `apim up` of a built-in pattern on `range` (a loopback range), its data in `data`.
pub async fn up(
    pattern: &str,
    range: &str,
    data: &Path,
    admin_password: &str,
) -> apim_runtime::up::Up {
    let c = load(
        pattern,
        apim_patterns::find(pattern)
            .expect("pattern")
            .template
            .as_bytes(),
    );
    let opts = apim_runtime::up::UpOptions {
        // Tests put backends of their own in their range.
        backends: vec![range.to_string()],
        loopback: apim_runtime::up::Loopback::parse(range).expect("range"),
        data: data.to_path_buf(),
        admin_password: admin_password.into(),
    };
    apim_runtime::up::start(&c.topology, &opts)
        .await
        .unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

/// A client trusting the deployment CA of `up`.
pub fn client(up: &apim_runtime::up::Up) -> apim_runtime::http::Client {
    apim_runtime::http::tls_client(apim_runtime::tls::client_trusting(&up.ca_pem).expect("CA"))
}

/// Sends `req` to `to` and reads the whole answer, which must come.
pub async fn send(
    up: &apim_runtime::up::Up,
    to: &(String, u16),
    req: apim_components::Request,
) -> apim_components::Response {
    apim_runtime::http::send(
        &client(up),
        &to.0,
        to.1,
        req,
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("answer")
}

/// A smoke test (`apim_drill::smoke`) that passed: every rule held, and each client operation
/// was made and nearly all succeeded (a healthy deployment serves what it should; a request
/// may still meet a retirement the workload made a moment before).
pub fn smoke_passed(report: &apim_sim::report::Report, what: &str) {
    let text = report.text();
    assert!(report.ok, "{what}: {text}");
    for o in &report.operations {
        assert!(
            o.succeeded > 0 && o.succeeded * 100 >= o.requests * 95,
            "{what}: {} succeeded {} of {}: {text}",
            o.op.as_str(),
            o.succeeded,
            o.requests
        );
    }
    assert!(report.operations.len() >= 5, "{what}: {text}");
}
