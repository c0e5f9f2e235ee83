//! The diagnostic codes of scenario files.

apim_topology::code!(
    INVALID_SCENARIO,
    "S001",
    "invalid-scenario",
    Error,
    "The scenario is not valid TOML, or has a key or value type the scenario format does not have.",
    "Fix the syntax or use the key the hint suggests; `apim sim --list-faults` lists every fault and its keys."
);
apim_topology::code!(
    UNKNOWN_REFERENCE,
    "S002",
    "unknown-reference",
    Error,
    "A fault names a node, cluster, network, database or balancer the topology does not have.",
    "Use a name from the topology; node names are the cluster's name and a number, such as `gateway-2`."
);
apim_topology::code!(
    INVALID_VALUE,
    "S003",
    "invalid-value",
    Error,
    "A value out of range: a malformed duration, a negative rate, a fault that starts after the run ends, a key the fault's kind does not take.",
    "Write durations like \"500ms\", \"10s\", \"2m\" or \"1h\"; rates as numbers per second, zero or more."
);
apim_topology::code!(
    MISSING_FIELD,
    "S004",
    "missing-field",
    Error,
    "A fault lacks a key its kind needs, such as `node` for a crash.",
    "Add the key the message names."
);

pub static ALL: &[&apim_topology::Code] = &[
    &INVALID_SCENARIO,
    &UNKNOWN_REFERENCE,
    &INVALID_VALUE,
    &MISSING_FIELD,
];
