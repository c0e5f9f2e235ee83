//! The graphs of the built-in patterns, pinned: stable, hand-written DOT and Mermaid.

mod common;

#[test]
fn graphs_of_every_pattern() {
    for p in apim_patterns::PATTERNS {
        let c = common::load(p.id, p.template.as_bytes());
        insta::with_settings!({ snapshot_path => "snapshots/graph", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("{}.dot", p.id), apim_topology::graph::dot(&c.topology));
            insta::assert_snapshot!(format!("{}.mmd", p.id), apim_topology::graph::mermaid(&c.topology));
        });
    }
}

#[test]
fn every_hop_between_clusters_is_an_edge() {
    // external-store: the store reaches the key managers through the internal balancer,
    // the publisher tells each gateway node directly.
    let c = common::load(
        "t",
        apim_patterns::find("external-store")
            .expect("pattern")
            .template
            .as_bytes(),
    );
    let dot = apim_topology::graph::dot(&c.topology);
    assert!(
        dot.contains(r#""cluster-store" -> "lb-km" [label="subscribe: consumer keys and tokens"]"#),
        "{dot}"
    );
    assert!(dot.contains(r#""cluster-publisher" -> "cluster-gateway" [label="publish: publish notification (each node)"]"#), "{dot}");
    assert!(
        dot.contains(r#""clients-applications" -> "lb-edge""#),
        "{dot}"
    );
}
