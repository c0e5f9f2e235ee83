//! apim-patterns: the five built-in deployment patterns — their templates, how a topology is
//! recognised as one of them, and what differs from the nearest when it is not.
//!
//! A pattern is a shape: which components share a cluster, whether clusters have one node or
//! more, and whether the store is on a public network. Balancers and databases do not count.

mod shape;

pub use shape::{Features, Layout, Nodes};

use apim_topology::code;
use apim_topology::{Code, Diagnostic, Label, Topology};

pub struct Pattern {
    pub id: &'static str,
    /// One line for `apim init --list`.
    pub summary: &'static str,
    /// A commented topology file of this shape.
    pub template: &'static str,
    pub layout: Layout,
    pub nodes: &'static [Nodes],
    /// `None`: the pattern does not care.
    pub store_public: Option<bool>,
}

/// The built-in patterns, in the order of DESIGN.md; the first is the smallest.
pub static PATTERNS: &[Pattern] = &[
    Pattern {
        id: "standalone",
        summary: "one node runs all four components; for development, demos and small internal use",
        template: include_str!("../templates/standalone.toml"),
        layout: Layout::AllInOne,
        nodes: &[Nodes::AllSingle],
        store_public: None,
    },
    Pattern {
        id: "internal-store",
        summary: "publisher and store share a cluster, gateway and key manager have their own; nothing public",
        template: include_str!("../templates/internal-store.toml"),
        layout: Layout::SharedPortal,
        nodes: &[Nodes::AllSingle, Nodes::Mixed, Nodes::AllMultiple],
        store_public: Some(false),
    },
    Pattern {
        id: "external-store",
        summary: "one cluster per component, the store on a public network, some clusters of one node",
        template: include_str!("../templates/external-store.toml"),
        layout: Layout::OnePerComponent,
        nodes: &[Nodes::AllSingle, Nodes::Mixed],
        store_public: Some(true),
    },
    Pattern {
        id: "clustered-internal",
        summary: "one cluster per component, each of two or more nodes; nothing public",
        template: include_str!("../templates/clustered-internal.toml"),
        layout: Layout::OnePerComponent,
        nodes: &[Nodes::AllMultiple],
        store_public: Some(false),
    },
    Pattern {
        id: "clustered-external-store",
        summary: "one cluster per component, each of two or more nodes, the store on a public network",
        template: include_str!("../templates/clustered-external-store.toml"),
        layout: Layout::OnePerComponent,
        nodes: &[Nodes::AllMultiple],
        store_public: Some(true),
    },
];

/// The pattern `apim init` and `apim up` use when none is named.
pub const DEFAULT: &str = "clustered-external-store";

pub fn find(id: &str) -> Option<&'static Pattern> {
    PATTERNS.iter().find(|p| p.id == id)
}

code!(
    UNKNOWN_PATTERN,
    "E060",
    "unknown-pattern",
    Error,
    "`deployment.pattern` names a pattern that does not exist.",
    "Use one of: standalone, internal-store, external-store, clustered-internal, clustered-external-store (`apim init --list`)."
);
code!(
    PATTERN_MISMATCH,
    "E061",
    "pattern-mismatch",
    Error,
    "`deployment.pattern` is set, but the topology does not have that pattern's shape.",
    "Change the topology as the hint says, or set `pattern` to the one it matches (or remove it)."
);

/// The codes this crate raises, for the documentation table.
pub static CODES: &[&Code] = &[&UNKNOWN_PATTERN, &PATTERN_MISMATCH];

impl Pattern {
    /// What differs between this pattern's shape and `f`, in words; empty when it matches.
    pub fn differences(&self, f: &Features) -> Vec<String> {
        let mut out = Vec::new();
        if f.layout != self.layout {
            out.push(format!(
                "the pattern has {}; this topology has {}",
                self.layout.describe(),
                f.layout_detail
            ));
        }
        if !self.nodes.contains(&f.nodes) {
            let wanted = match self.nodes {
                [Nodes::AllSingle] => Nodes::AllSingle.describe(),
                [Nodes::AllMultiple] => Nodes::AllMultiple.describe(),
                _ => "at least one cluster of a single node",
            };
            out.push(format!(
                "the pattern has {wanted}; in this topology {}",
                f.nodes_detail
            ));
        }
        if let Some(public) = self.store_public.filter(|&p| p != f.store_public) {
            out.push(if public {
                "the pattern puts the store on a public network (or behind a balancer on one); this topology does not".to_string()
            } else {
                "the pattern keeps the store off public networks; in this topology it is reachable on one".to_string()
            });
        }
        out
    }
}

/// The pattern a topology matches, or the nearest and what differs.
pub struct Recognition {
    pub pattern: &'static Pattern,
    pub differences: Vec<String>,
}

impl Recognition {
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Finds the pattern with the fewest differences; ties go to the earlier pattern.
pub fn recognise(t: &Topology) -> Recognition {
    let f = Features::of(t);
    PATTERNS
        .iter()
        .map(|p| Recognition {
            pattern: p,
            differences: p.differences(&f),
        })
        .min_by_key(|r| r.differences.len())
        .unwrap_or_else(|| unreachable!("PATTERNS is not empty"))
}

/// The pattern rule: a declared pattern exists and the topology has its shape.
pub fn check(t: &Topology) -> Vec<Diagnostic> {
    let Some(declared) = &t.deployment.pattern else {
        return Vec::new();
    };
    let Some(pattern) = find(&declared.value) else {
        let ids: Vec<&str> = PATTERNS.iter().map(|p| p.id).collect();
        let hint = match apim_topology::suggest::closest(&declared.value, ids.iter().copied()) {
            Some(best) => format!(
                "did you mean `{best}`? the patterns are: {}",
                ids.join(", ")
            ),
            None => format!("the patterns are: {}", ids.join(", ")),
        };
        return vec![
            Diagnostic::new(
                &UNKNOWN_PATTERN,
                format!("unknown pattern `{}`", declared.value),
                Label::new(declared.span, "not a pattern"),
            )
            .with_hint(hint),
        ];
    };
    let differences = pattern.differences(&Features::of(t));
    if differences.is_empty() {
        return Vec::new();
    }
    let actual = recognise(t);
    let closing = if actual.matches() {
        format!(
            "; or declare `pattern = \"{}\"`, which it matches",
            actual.pattern.id
        )
    } else {
        String::new()
    };
    vec![
        Diagnostic::new(
            &PATTERN_MISMATCH,
            format!(
                "the topology does not have the shape of pattern `{}`",
                pattern.id
            ),
            Label::new(
                declared.span,
                format!(
                    "{} difference{}",
                    differences.len(),
                    if differences.len() == 1 { "" } else { "s" }
                ),
            ),
        )
        .with_hint(format!("{}{closing}", differences.join("; "))),
    ]
}
