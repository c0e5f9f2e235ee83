//! Which backends a gateway may proxy to: a policy, not any URL. By default none on loopback,
//! link-local (cloud metadata), unspecified, multicast or broadcast addresses, none at the
//! deployment's own hosts (nodes, balancers, databases), and private ranges only where the
//! topology allows them (`[deployment] backends`). The publisher checks the URL as written;
//! the worlds check the address a name resolves to when they connect (DNS rebinding).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use apim_topology::vocab::BackendRule as Allowed;

/// The backends policy of a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Allowed>,
    /// The deployment's own host names, lowercase.
    own_names: BTreeSet<String>,
    /// The deployment's own addresses, as the compiler merged them into ranges.
    own_ranges: Vec<(IpAddr, u8)>,
}

/// The policy of a deployment that allows nothing more than the default.
pub static DEFAULT: Policy = Policy {
    allow: Vec::new(),
    own_names: BTreeSet::new(),
    own_ranges: Vec::new(),
};

impl Policy {
    /// `allow`: the topology's allow-list (CIDR ranges, addresses, host names); `own`: the
    /// hosts of the deployment's nodes, balancers and databases (names, addresses, and the
    /// ranges the compiler merges consecutive addresses into).
    pub fn new(allow: &[String], own: &[String]) -> Result<Policy, String> {
        let allow = allow
            .iter()
            .map(|a| parse_allowed(a))
            .collect::<Result<_, _>>()?;
        let mut own_names = BTreeSet::new();
        let mut own_ranges = Vec::new();
        for h in own {
            match parse_allowed(h) {
                Ok(Allowed::Range(net, bits)) => own_ranges.push((canonical(net), bits)),
                _ => {
                    own_names.insert(h.to_ascii_lowercase());
                }
            }
        }
        Ok(Policy {
            allow,
            own_names,
            own_ranges,
        })
    }

    fn own_address(&self, ip: IpAddr) -> bool {
        self.own_ranges
            .iter()
            .any(|&(net, bits)| within(ip, net, bits))
    }

    fn own_name(&self, host: &str) -> bool {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.own_names.contains(&host.to_ascii_lowercase())
        } else {
            self.own_names.contains(host)
        }
    }

    /// Checks a backend URL as written: its host is neither refused by name, nor an address the
    /// policy refuses, nor one of the deployment's own hosts.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let host = url_host(url).ok_or("must be an http:// URL with a host")?;
        // `localhost.` is `localhost`: a name ending in the root's dot is the same name. Every
        // API call comes here: no allocation on the way to "allowed".
        let host = host.trim_end_matches('.');
        let literal_ip = literal(host).ok().flatten();
        if literal_ip.map_or_else(|| self.own_name(host), |ip| self.own_address(ip)) {
            return Err(format!(
                "`{host}` is a host of this deployment; an API's backend is outside it"
            ));
        }
        let lower = |suffix: &str| {
            host.len() >= suffix.len()
                && host.is_char_boundary(host.len() - suffix.len())
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        };
        match literal(host)? {
            Some(ip) => self.check_ip(&host.to_ascii_lowercase(), ip),
            None if host.eq_ignore_ascii_case("localhost") || lower(".localhost") => {
                Err("`localhost` is this machine; backends on loopback are refused".into())
            }
            None => Ok(()),
        }
    }

    /// Checks an address a backend's host resolved to, before connecting to it.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        let ip = canonical(ip);
        if self.own_address(ip) {
            return Err(format!(
                "{ip} is an address of this deployment; an API's backend is outside it"
            ));
        }
        let Some(class) = class(ip) else {
            return Ok(());
        };
        // A name on the allow-list may resolve to private addresses; never to a special one
        // unless a range on the list names it.
        let named_ok = matches!(class, Class::Private)
            && self.allow.iter().any(|a| match a {
                Allowed::Name(n) => n == host,
                Allowed::Suffix(s) => host.ends_with(s.as_str()),
                Allowed::Range(..) => false,
            });
        let range_ok = self
            .allow
            .iter()
            .any(|a| matches!(a, Allowed::Range(net, bits) if within(ip, *net, *bits)));
        if range_ok || named_ok {
            return Ok(());
        }
        Err(match class {
            Class::Private => format!(
                "{ip} is a private address; allow it with `[deployment] backends` in the topology"
            ),
            Class::Special(what) => format!("{ip} is {what}; backends there are refused"),
        })
    }
}

enum Class {
    Private,
    Special(&'static str),
}

/// What an address is, when it is not a public one.
fn class(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some(Class::Special("a loopback address"))
            } else if v4.is_link_local() {
                Some(Class::Special(
                    "a link-local address (cloud metadata lives there)",
                ))
            } else if v4.is_unspecified() || o[0] == 0 {
                Some(Class::Special("an unspecified address"))
            } else if v4.is_multicast() || v4.is_broadcast() || o[0] >= 240 {
                Some(Class::Special("a multicast or reserved address"))
            } else if v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
                Some(Class::Private)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some(Class::Special("a loopback address"))
            } else if v6.is_unspecified() {
                Some(Class::Special("an unspecified address"))
            } else if v6.is_multicast() {
                Some(Class::Special("a multicast address"))
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some(Class::Special("a link-local address"))
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some(Class::Private)
            } else {
                None
            }
        }
    }
}

/// IPv4 written inside IPv6 (`::ffff:127.0.0.1`) is judged as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn within(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (canonical(ip), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The host of an `http://` URL: without the port, IPv6 without its brackets.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

/// The address a host is, when it is written as one. Forms other than four decimal parts or
/// bracketed IPv6 (`2130706433`, `0x7f.1`, `0177.0.0.1`) are refused: resolvers read them as
/// addresses, and no host name ends in a number.
fn literal(host: &str) -> Result<Option<IpAddr>, String> {
    if host.contains(':')
        && let Ok(ip) = host.parse::<Ipv6Addr>()
    {
        return Ok(Some(IpAddr::V6(ip)));
    }
    let last = host.rsplit('.').next().unwrap_or("");
    let hex = last.len() > 2 && last.as_bytes()[..2].eq_ignore_ascii_case(b"0x");
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || (hex && last[2..].bytes().all(|b| b.is_ascii_hexdigit())));
    if numeric && let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Some(IpAddr::V4(ip)));
    }
    if numeric {
        return Err(format!(
            "`{host}` reads as an address; write addresses as four decimal parts (a.b.c.d)"
        ));
    }
    Ok(None)
}

fn parse_allowed(a: &str) -> Result<Allowed, String> {
    Allowed::parse(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> Policy {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        Policy::new(&allow, &["10.0.1.11".into(), "db.internal".into()]).expect("policy")
    }

    #[test]
    fn own_ranges_refuse_every_address_in_them_and_none_outside() {
        let allow = ["10.0.0.0/8".to_string()];
        let p = Policy::new(&allow, &["10.1.0.0/22".into(), "10.1.4.1".into()]).expect("policy");
        for url in [
            "http://10.1.0.0/",
            "http://10.1.3.255/",
            "http://10.1.4.1/",
            "http://[::ffff:10.1.2.3]/",
        ] {
            assert!(p.check_url(url).is_err(), "{url} was allowed");
        }
        for url in [
            "http://10.1.4.0/",
            "http://10.1.4.2/",
            "http://10.0.255.255/",
        ] {
            assert_eq!(p.check_url(url), Ok(()), "{url}");
        }
        let ip = "10.1.1.1".parse().expect("address");
        assert!(
            p.check_ip("backend.example", ip).is_err(),
            "a name resolving into a range"
        );
    }

    #[test]
    fn special_and_own_hosts_are_refused_as_written() {
        let p = policy(&[]);
        for url in [
            "http://169.254.169.254/latest",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://localhost./",
            "http://[::1]:8080/",
            "http://0.0.0.0:80/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fe80::1]/",
            "http://224.0.0.1/",
            "http://10.0.1.11:9999/",
            "http://db.internal:5432/",
            "http://10.1.2.3/",
            "http://user@example.com/",
        ] {
            assert!(p.check_url(url).is_err(), "{url} was allowed");
        }
        for url in ["http://203.0.113.5/", "http://api.example.com:8080/x"] {
            assert_eq!(p.check_url(url), Ok(()), "{url}");
        }
    }

    proptest::proptest! {
        /// Whatever a publisher writes, and whatever a topology lists, is an answer, never a
        /// panic; and a URL is judged the same however its host's letters are cased.
        #[test]
        fn any_text_is_judged_without_panicking(url in "http://[a-zA-Z0-9.:\\[\\]@%/-]{0,40}", rule in "\\PC{0,30}") {
            let p = policy(&["10.20.0.0/16", "*.svc.example"]);
            let judged = p.check_url(&url);
            proptest::prop_assert_eq!(judged.is_ok(), p.check_url(&url.to_ascii_uppercase().replacen("HTTP://", "http://", 1)).is_ok());
            let _ = Allowed::parse(&rule);
        }
    }

    #[test]
    fn the_allow_list_opens_private_ranges_and_names() {
        let p = policy(&["10.20.0.0/16", "api.internal.example", "*.svc.example"]);
        assert_eq!(p.check_url("http://10.20.3.4/"), Ok(()));
        assert!(p.check_url("http://10.21.3.4/").is_err());
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(p.check_ip("api.internal.example", ip("10.99.0.1")), Ok(()));
        assert_eq!(p.check_ip("a.svc.example", ip("192.168.1.1")), Ok(()));
        // A name on the list never opens loopback or link-local.
        assert!(p.check_ip("api.internal.example", ip("127.0.0.1")).is_err());
        assert!(p.check_ip("other.example", ip("10.99.0.1")).is_err());
        assert!(p.check_ip("other.example", ip("::1")).is_err());
        // A range that names loopback opens it (`apim up`'s own demo backend).
        let up = policy(&["127.1.0.9/32"]);
        assert_eq!(up.check_url("http://127.1.0.9:8080/"), Ok(()));
        assert!(up.check_url("http://127.1.0.8:8080/").is_err());
        assert!(Policy::new(&["10.0.0.0/33".into()], &[]).is_err());
        assert!(Policy::new(&["not a host".into()], &[]).is_err());
    }
}
