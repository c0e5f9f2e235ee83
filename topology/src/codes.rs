//! The structural diagnostic codes, raised while reading the file, and the table of every code.

use crate::diagnostic::Code;

use crate::rules;

/// Declares a diagnostic code as a static; used by every rule file, here and in apim-patterns.
#[macro_export]
macro_rules! code {
    ($static:ident, $id:literal, $name:literal, $sev:ident, $summary:literal, $fix:literal) => {
        pub static $static: $crate::diagnostic::Code = $crate::diagnostic::Code {
            id: $id,
            name: $name,
            severity: $crate::diagnostic::Severity::$sev,
            summary: $summary,
            fix: $fix,
        };
    };
}

code!(
    INVALID_TOML,
    "E001",
    "invalid-toml",
    Error,
    "The file is not valid TOML or not UTF-8: a syntax error, a duplicate key or table, nesting too deep.",
    "Fix the syntax at the position shown; each key and each table header may appear only once."
);
code!(
    UNKNOWN_KEY,
    "E002",
    "unknown-key",
    Error,
    "A key that format version 1 does not have, usually a typo.",
    "Use the key the hint suggests, or remove it."
);
code!(
    WRONG_TYPE,
    "E003",
    "wrong-type",
    Error,
    "A value of the wrong type, such as a number where a string belongs.",
    "Write the value with the type the message names (strings are quoted, lists use [ ])."
);
code!(
    MISSING_KEY,
    "E004",
    "missing-key",
    Error,
    "A required key or table is absent.",
    "Add the key the message names."
);
code!(
    INVALID_NAME,
    "E005",
    "invalid-name",
    Error,
    "A name (deployment, network, cluster, database, balancer) that is not lowercase letters, digits and '-'.",
    "Rename it as the hint suggests; names become host names and Kubernetes objects, so they follow DNS rules."
);
code!(
    UNKNOWN_REFERENCE,
    "E006",
    "unknown-reference",
    Error,
    "A reference to a network, cluster or database that the file does not define.",
    "Define the missing item or correct the name; the hint lists the names that exist."
);
code!(
    UNSUPPORTED_VERSION,
    "E007",
    "unsupported-version",
    Error,
    "`version` is missing or is not 1.",
    "Write `version = 1` at the top of the file."
);
code!(
    UNKNOWN_VALUE,
    "E008",
    "unknown-value",
    Error,
    "A component, database role, engine or balancer kind that does not exist.",
    "Use one of the words the hint lists."
);
code!(
    INVALID_PORT,
    "E009",
    "invalid-port",
    Error,
    "A port outside 1..65535, or a port override for a component the cluster does not run.",
    "Use a port between 1 and 65535, for `admin` or a component of the cluster."
);
code!(
    INVALID_HOST,
    "E010",
    "invalid-host",
    Error,
    "A host that is neither an IP address nor a valid host name (in `[deployment] backends`, nor an address range).",
    "Write an IPv4 or IPv6 address, or a host name of letters, digits, '-' and '.'."
);
code!(
    INVALID_URL,
    "E011",
    "invalid-url",
    Error,
    "A database URL that cannot be read, or whose scheme does not match the engine.",
    "Write `postgres://user@host:port/db`, `mysql://user@host:port/db` or `sqlite://path`, matching `engine`."
);
code!(
    DUPLICATE_ENTRY,
    "E012",
    "duplicate-entry",
    Error,
    "The same entry twice in one list (a component, role, host or fronted cluster).",
    "Remove the repeated entry."
);
code!(
    EMPTY_LIST,
    "E013",
    "empty-list",
    Error,
    "A list or table that must not be empty is empty: no networks, no hosts, no components, no roles.",
    "Add at least one entry."
);

code!(
    INVALID_TLS_PATH,
    "E014",
    "invalid-tls-path",
    Error,
    "A `[tls]` path that cannot work: an empty path, or a `cert` or `key` pattern without `{name}`, which would give every node and balancer the same key.",
    "Write a path per file, with `{name}` where the node or balancer name goes, e.g. `cert = \"/etc/apim/tls/{name}.crt\"`."
);

code!(
    INVALID_KUBERNETES_SETTING,
    "E016",
    "invalid-kubernetes-setting",
    Error,
    "A `[kubernetes]` setting Kubernetes would refuse: an image name that is no image reference, a CPU or memory quantity it cannot read, or a request above its limit.",
    "Write an image reference such as `registry.example.com/apim:0.1.0`, CPU as `500m` or `2`, memory as `256Mi` or `1Gi`, and each request at most its limit."
);

/// Every code apim-topology can raise, in documentation order.
pub static ALL: &[&Code] = &[
    &INVALID_TOML,
    &UNKNOWN_KEY,
    &WRONG_TYPE,
    &MISSING_KEY,
    &INVALID_NAME,
    &UNKNOWN_REFERENCE,
    &UNSUPPORTED_VERSION,
    &UNKNOWN_VALUE,
    &INVALID_PORT,
    &INVALID_HOST,
    &INVALID_URL,
    &DUPLICATE_ENTRY,
    &EMPTY_LIST,
    &INVALID_TLS_PATH,
    &INVALID_KUBERNETES_SETTING,
    &rules::name_shared::CODE,
    &rules::component_not_deployed::CODE,
    &rules::role_not_served::CODE,
    &rules::role_served_twice::CODE,
    &rules::port_clash::CODE,
    &rules::sqlite_shared::CODE,
    &rules::hop_blocked::CODE,
    &rules::balancer_unreachable::CODE,
    &rules::not_public::CODE,
    &rules::public_exposure::CODE,
    &rules::not_balanced::CODE,
    &rules::single_node_cluster::CODE,
    &rules::single_balancer::CODE,
    &rules::single_database::CODE,
    &rules::publisher_exposed::CODE,
    &rules::literal_password::CODE,
];

pub fn find(id: &str) -> Option<&'static Code> {
    ALL.iter()
        .copied()
        .find(|c| c.id.eq_ignore_ascii_case(id) || c.name == id)
}
