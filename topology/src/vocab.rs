//! The fixed words of the format: components, database roles, engines, balancer kinds, ports.

use std::fmt;

/// Implements `ALL`, `as_str` and `parse` for a closed set of words.
macro_rules! words {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// Every accepted word, for hints.
            pub fn words() -> Vec<&'static str> {
                Self::ALL.iter().map(|w| w.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown {} `{text}`, expected one of: {}",
                        stringify!($name).to_lowercase(),
                        $name::words().join(", ")
                    ))
                })
            }
        }
    };
}

words! {
    /// The four parts of an API Manager.
    Component {
        Publisher = "publisher",
        Store = "store",
        KeyManager = "key-manager",
        Gateway = "gateway",
    }
}

words! {
    /// What a shared database holds.
    Role {
        User = "user",
        Apim = "apim",
        Registry = "registry",
    }
}

words! {
    Engine {
        Sqlite = "sqlite",
        Postgres = "postgres",
        Mysql = "mysql",
    }
}

words! {
    /// What the key manager issues as access tokens (`[deployment] tokens`): signed JWTs
    /// (RFC 9068) a gateway checks on its own with the deployment's public keys, so the key
    /// manager is on the invoke path only for `/token`; or random strings only the key manager
    /// can check, which every gateway asks it about (cached).
    TokenFormat {
        Jwt = "jwt",
        Opaque = "opaque",
    }
}

words! {
    /// What a gateway does when it cannot confirm that its list of revoked tokens is fresh
    /// (`[deployment] revocation`): strict refuses (503), so a revoked token never works past
    /// the bound; available keeps serving valid tokens and applies revocations when it
    /// reconnects, so API calls survive the key manager and a revoked token may work until then.
    Revocation {
        Strict = "strict",
        Available = "available",
    }
}

words! {
    /// External balancers take client traffic; internal ones carry traffic between components.
    BalancerKind {
        External = "external",
        Internal = "internal",
    }
}

impl Component {
    pub fn default_port(self) -> u16 {
        match self {
            Component::Publisher => 9443,
            Component::Store => 9444,
            Component::KeyManager => 9445,
            Component::Gateway => 8280,
        }
    }
}

/// The node admin listener (`/health`, `/metrics`); `ports = { admin = N }` overrides it.
pub const ADMIN_PORT: u16 = 9090;
pub const ADMIN_PORT_KEY: &str = "admin";
/// The node internal listener: every component-to-component endpoint, mutual TLS only;
/// `ports = { internal = N }` overrides it.
pub const INTERNAL_PORT: u16 = 9446;
pub const INTERNAL_PORT_KEY: &str = "internal";

impl Engine {
    pub fn default_port(self) -> Option<u16> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some(5432),
            Engine::Mysql => Some(3306),
        }
    }

    /// URL schemes accepted for this engine.
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            Engine::Sqlite => &["sqlite"],
            Engine::Postgres => &["postgres", "postgresql"],
            Engine::Mysql => &["mysql", "mariadb"],
        }
    }
}

/// One entry of `[deployment] backends`, the backends allow-list: an address range
/// (`10.20.0.0/16`), an address, a host name, or a domain's hosts (`*.svc.example`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendRule {
    Range(std::net::IpAddr, u8),
    Name(String),
    /// Hosts ending with this (`.svc.example`).
    Suffix(String),
}

impl BackendRule {
    pub fn parse(text: &str) -> Result<BackendRule, String> {
        let a = text.trim().to_ascii_lowercase();
        if let Some((net, bits)) = a.split_once('/') {
            let net: std::net::IpAddr = net
                .parse()
                .map_err(|_| format!("`{a}`: the part before `/` must be an address"))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{a}`: the prefix length must be 0 to {max}"))?;
            return Ok(BackendRule::Range(net, bits));
        }
        if let Ok(ip) = a.parse::<std::net::IpAddr>() {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(BackendRule::Range(ip, bits));
        }
        let name = a.strip_prefix("*.");
        let host = name.unwrap_or(&a);
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(format!(
                "`{a}` is neither an address range (10.20.0.0/16), an address nor a host name"
            ));
        }
        Ok(match name {
            Some(n) => BackendRule::Suffix(format!(".{n}")),
            None => BackendRule::Name(a),
        })
    }
}
