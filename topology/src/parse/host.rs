//! Host names and addresses: validation, and which spellings name the same machine.

use std::net::IpAddr;

/// Why a host is not acceptable, or `None` when it is.
pub fn problem(host: &str) -> Option<&'static str> {
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    if host.is_empty() {
        return Some("a host cannot be empty");
    }
    if host.len() > 253 {
        return Some("a host name is at most 253 characters");
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().all(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Some("this looks like an IPv4 address but is not a valid one");
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return Some("each dot-separated part of a host name has 1 to 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Some("a host name has only letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a part of a host name cannot start or end with '-'");
        }
    }
    None
}

/// The identity of the machine a host names: every loopback spelling is one machine, and
/// host names compare without case.
pub fn machine(host: &str) -> String {
    Machine::of(host).to_string()
}

/// [`machine`] as a value that compares without formatting an address (a fleet's check
/// compares hundreds of thousands of them). Its text is [`machine`]'s.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Machine {
    Localhost,
    Ip(IpAddr),
    Name(String),
}

impl Machine {
    pub fn of(host: &str) -> Machine {
        match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => Machine::Localhost,
            Ok(ip) => Machine::Ip(ip),
            Err(_) if host.eq_ignore_ascii_case("localhost") => Machine::Localhost,
            Err(_) => Machine::Name(host.to_ascii_lowercase()),
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Machine::Localhost => f.write_str("localhost"),
            Machine::Ip(ip) => write!(f, "{ip}"),
            Machine::Name(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_addresses_and_names() {
        for ok in [
            "10.0.1.11",
            "::1",
            "fe80::1",
            "gw-1.example.com",
            "localhost",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        for bad in ["10.0.1.300", "", "-a.example", "a..b", "a_b", "gw 1"] {
            assert!(problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn loopback_spellings_are_one_machine() {
        assert_eq!(machine("127.0.0.1"), machine("localhost"));
        assert_eq!(machine("127.0.0.2"), machine("::1"));
        assert_ne!(machine("10.0.0.1"), machine("10.0.0.2"));
        assert_eq!(machine("GW.example"), machine("gw.example"));
    }
}
