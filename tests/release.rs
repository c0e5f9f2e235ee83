//! What a release build of apim holds: the features cargo resolves for the binary alone (no
//! test, bench or example target), as `cargo build --release` would.

use std::process::Command;

/// The features each package of the binary's build is compiled with, `name features` per line.
fn release_features() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--package",
            "apim",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p} [{f}]",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_release_binary_has_no_defect_switch() {
    let tree = release_features();
    let components: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("apim-components "))
        .collect();
    assert!(!components.is_empty(), "{tree}");
    for line in components {
        assert!(
            !line.contains("defects"),
            "the binary is built with the simulator's deliberate defects: {line}"
        );
    }
}
