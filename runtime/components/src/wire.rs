//! What components say to each other: the paths of their internal endpoints, the public
//! OAuth paths the gateway passes through, and the bodies of their messages. Written once
//! here, so a sender and its receiver cannot drift and no component imports another's
//! module for its words; who may call each endpoint is the flows table's
//! (`apim_topology::flows`), which a test keeps equal to these paths.

use serde::{Deserialize, Serialize};

/// Paths under this prefix are component-to-component endpoints: never served on a public
/// listener.
pub const INTERNAL_PREFIX: &str = "/internal/";

// ---- The publisher to gateways ----

/// A published (or changed) API, pushed to every gateway: the API itself.
pub const APIS: &str = "/internal/apis";

// ---- The store to the key manager ----

/// New consumer keys for an application: `Clients`.
pub const CLIENTS: &str = "/internal/clients";
/// Every key of an application revoked: `Clients`.
pub const CLIENTS_REVOKE: &str = "/internal/clients/revoke";
/// A new or ended subscription, for the key manager to tell every gateway: `Subscribed`.
pub const NOTIFY_SUBSCRIBED: &str = "/internal/subscriptions/notify";

// ---- The key manager to gateways ----

/// A revoked token: `Revoked`.
pub const REVOKED: &str = "/internal/revoked";
/// A new or ended subscription: `Subscribed`.
pub const SUBSCRIBED: &str = "/internal/subscribed";

// ---- Gateways to the key manager ----

/// Is this token active, and subscribed to this API? `Validate`, answered by `Validation`.
pub const VALIDATE: &str = "/internal/validate";
/// The tokens revoked since a time: `RevocationsSince`.
pub const REVOCATIONS: &str = "/internal/revocations";
/// Every subscription (JWT tokens are decided at the gateway): a list of `Subscribed`.
pub const SUBSCRIPTIONS: &str = "/internal/subscriptions";

/// Every internal endpoint, as the flows table names them.
pub const INTERNAL: [(&str, &str); 9] = [
    ("POST", APIS),
    ("POST", CLIENTS),
    ("POST", CLIENTS_REVOKE),
    ("POST", NOTIFY_SUBSCRIBED),
    ("POST", REVOKED),
    ("POST", SUBSCRIBED),
    ("POST", VALIDATE),
    ("POST", REVOCATIONS),
    ("POST", SUBSCRIPTIONS),
];

// ---- Public paths of the key manager ----

/// Where the key manager publishes its public signing keys (a JWKS, RFC 7517), on its public
/// port and to gateways on its internal one.
pub const JWKS: &str = "/.well-known/jwks.json";
pub const TOKEN: &str = "/token";
pub const REVOKE: &str = "/revoke";
pub const INTROSPECT: &str = "/introspect";
/// The key manager's endpoints that clients reach through the gateway.
pub const OAUTH_PATHS: &[&str] = &[TOKEN, REVOKE, INTROSPECT, JWKS];

// ---- Bodies ----

/// An application whose keys are made or revoked.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    pub application: String,
}

/// A subscription made or ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribed {
    pub application: String,
    pub api: String,
    /// The subscription ended: gateways forget it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// A token revoked, by its hash.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub token_hash: String,
}

/// The gateway's question: is this token active, and subscribed to this API?
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    pub token: String,
    pub api: String,
}

/// The key manager's answer to `Validate`.
#[derive(Serialize, Deserialize)]
pub struct Validation {
    pub active: bool,
    #[serde(default)]
    pub application: String,
    #[serde(default)]
    pub expires_ms: u64,
    #[serde(default)]
    pub subscribed: bool,
}

/// The gateways' revocation catch-up.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationsSince {
    pub since_ms: u64,
}

/// The key manager's answer to a catch-up when its database is down: no revocation can be
/// acknowledged then, so a cache trusted up to now stays trusted. A cache whose trust had
/// lapsed (the gateway was cut off) is not trusted again by it: revocations acknowledged while
/// the gateway was cut off are in the database it cannot read.
pub const NO_REVOCATIONS_POSSIBLE: &str = "database_unavailable";

#[cfg(test)]
mod tests {
    use super::*;
    use apim_topology::flows;
    use apim_topology::vocab::Component;

    #[test]
    fn the_internal_paths_are_the_flows_tables() {
        let mut table: Vec<String> = Component::ALL
            .iter()
            .flat_map(|c| flows::internal_endpoints(*c))
            .map(str::to_string)
            .collect();
        // The gateway also passes clients' OAuth calls to the key manager's internal listener.
        let passed = [
            ("POST", TOKEN),
            ("POST", REVOKE),
            ("POST", INTROSPECT),
            ("GET", JWKS),
        ];
        let mut here: Vec<String> = INTERNAL
            .iter()
            .chain(&passed)
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        table.sort();
        table.dedup();
        here.sort();
        assert_eq!(here, table);
        assert!(INTERNAL.iter().all(|(_, p)| p.starts_with(INTERNAL_PREFIX)));
    }
}
