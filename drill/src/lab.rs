//! A lab: hosts on this machine, each a network namespace of its own, joined by veth links to a
//! bridge that carries only the lab's own range (no host in it has a route anywhere else), and
//! the processes run in them. Everything it makes is named after this process and removed when
//! the lab is dropped — also when the run is interrupted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

/// A range of private addresses the lab hands out: the bridge takes the first, hosts the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Range {
    /// `10.250.0.0/16`: a private (RFC 1918) range of at least 256 addresses.
    pub fn parse(text: &str) -> Result<Range, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or(format!("`{text}` is not a range like 10.250.0.0/16"))?;
        let base: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=24).contains(p))
            .ok_or(format!("the prefix of `{text}` must be 8 to 24"))?;
        if !base.is_private() {
            return Err(format!(
                "`{text}` is not a private range (10/8, 172.16/12, 192.168/16): the lab never uses public addresses"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Range {
            base: Ipv4Addr::from(u32::from(base) & mask),
            prefix,
        })
    }

    /// The `n`th address of the range (0 is the network itself).
    pub fn address(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        (n > 0 && n < size - 1).then(|| Ipv4Addr::from(u32::from(self.base) + n))
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(a) & mask == u32::from(self.base)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

struct Host {
    namespace: String,
    veth: String,
    address: Ipv4Addr,
}

/// A process of the lab: how to start it again, and the running one.
struct Proc {
    host: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

pub struct Lab {
    range: Range,
    bridge: String,
    /// The bridge's own address: what the lab's hosts reach this process at.
    pub gateway: Ipv4Addr,
    hosts: BTreeMap<String, Host>,
    procs: BTreeMap<String, Proc>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// An address of this machine's own interfaces inside `range`, with its interface.
fn in_use(range: Range) -> Option<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "inet")?;
        let addr: Ipv4Addr = words.get(at + 1)?.split('/').next()?.parse().ok()?;
        range
            .contains(addr)
            .then(|| format!("{addr} ({})", words.get(1).unwrap_or(&"?")))
    })
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

impl Lab {
    /// Says what this machine lacks for a lab, if anything: root, and network namespaces.
    pub fn preflight() -> Result<(), String> {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(String::from))
            });
        if uid.as_deref() != Some("0") {
            return Err("a drill makes network namespaces, which needs root (run it as root, or in a container with CAP_NET_ADMIN and CAP_SYS_ADMIN)".into());
        }
        // A name of its own per call: threads of one process may ask at once.
        static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = format!("apimq{}n{n}", std::process::id());
        ip(&["netns", "add", &probe])
            .map_err(|e| format!("this machine cannot make network namespaces: {e}"))?;
        let _ = ip(&["netns", "delete", &probe]);
        Ok(())
    }

    /// Makes the bridge and one namespace per host (in order, addresses from the range).
    pub fn create(range: Range, hosts: &[String]) -> Result<Lab, String> {
        Lab::preflight()?;
        if let Some(taken) = in_use(range) {
            return Err(format!(
                "{taken} on this machine is inside {range} already (another drill?): pick another range"
            ));
        }
        let pid = std::process::id();
        let gateway = range
            .address(1)
            .ok_or("the range has no address for the bridge")?;
        let mut lab = Lab {
            range,
            bridge: format!("apimbr{pid}"),
            gateway,
            hosts: BTreeMap::new(),
            procs: BTreeMap::new(),
        };
        let cidr = |a: Ipv4Addr| format!("{a}/{}", range.prefix);
        ip(&["link", "add", &lab.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &cidr(gateway), "dev", &lab.bridge])?;
        ip(&["link", "set", &lab.bridge, "up"])?;
        for (k, name) in hosts.iter().enumerate() {
            let address = range
                .address(k as u32 + 2)
                .ok_or(format!("the range {range} is too small for every host"))?;
            let host = Host {
                namespace: format!("apim{pid}h{k}"),
                veth: format!("ap{pid}v{k}"),
                address,
            };
            ip(&["netns", "add", &host.namespace])?;
            // Recorded at once, so that a failure below still removes what was made.
            let (ns, veth) = (host.namespace.clone(), host.veth.clone());
            lab.hosts.insert(name.clone(), host);
            let inner = format!("{veth}i");
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &veth, "master", &lab.bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            in_ns(&ns, &["link", "set", "lo", "up"])?;
            in_ns(&ns, &["addr", "add", &cidr(address), "dev", &inner])?;
            in_ns(&ns, &["link", "set", &inner, "up"])?;
        }
        Ok(lab)
    }

    pub fn range(&self) -> Range {
        self.range
    }

    pub fn address(&self, host: &str) -> Option<Ipv4Addr> {
        self.hosts.get(host).map(|h| h.address)
    }

    /// Starts `program args` in `host`'s namespace as the process `name`, output to `log`.
    pub fn spawn(
        &mut self,
        name: &str,
        host: &str,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        log: &std::path::Path,
    ) -> Result<(), String> {
        if !self.hosts.contains_key(host) {
            return Err(format!("the lab has no host `{host}`"));
        }
        self.procs.insert(
            name.to_string(),
            Proc {
                host: host.to_string(),
                program: program.to_string(),
                args: args.to_vec(),
                env: env.to_vec(),
                log: log.to_path_buf(),
                child: None,
            },
        );
        self.start(name)
    }

    /// Starts the process `name` again as it was first started (after `kill` or `term`).
    pub fn start(&mut self, name: &str) -> Result<(), String> {
        let p = self
            .procs
            .get_mut(name)
            .ok_or(format!("the lab runs no process `{name}`"))?;
        let ns = &self.hosts[&p.host].namespace;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .map_err(|e| format!("cannot open {}: {e}", p.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", p.log.display()))?;
        // `ip netns exec` execs the program: the child's pid is the program's.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, &p.program])
            .args(&p.args)
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        p.child = Some(child);
        Ok(())
    }

    /// SIGKILL: the process is gone at once, with what it had in flight.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut c) = self.procs.get_mut(name).and_then(|p| p.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: the process drains and exits by itself (see `exited`).
    pub fn term(&mut self, name: &str) {
        if let Some(c) = self.procs.get_mut(name).and_then(|p| p.child.as_ref()) {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// SIGHUP: the process reads its certificate again and presents it from then on.
    pub fn hup(&mut self, name: &str) {
        if let Some(c) = self.procs.get_mut(name).and_then(|p| p.child.as_ref()) {
            let _ = Command::new("kill")
                .args(["-HUP", &c.id().to_string()])
                .status();
        }
    }

    /// Whether this machine can filter packets inside a namespace (nftables), which network
    /// faults need; says what is missing if not.
    pub fn filters() -> Result<(), String> {
        let out = Command::new("nft").arg("--version").output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            _ => Err(
                "network faults need nftables (`nft`; Debian: nftables), which is not installed"
                    .into(),
            ),
        }
    }

    /// Loads `rules` (the body of an nftables `inet` table) as table `table` in `host`'s
    /// namespace: what a network fault does to the packets arriving at or leaving that host.
    pub fn filter(&self, host: &str, table: &str, rules: &str) -> Result<(), String> {
        use std::io::Write;
        let h = self
            .hosts
            .get(host)
            .ok_or(format!("the lab has no host `{host}`"))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &h.namespace, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        let script = format!("table inet {table} {{\n{rules}\n}}\n");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("cannot give nft its rules: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("nft failed: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft refused the rules for {host}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Removes table `table` from `host`'s namespace: the fault is over there.
    pub fn unfilter(&self, host: &str, table: &str) {
        if let Some(h) = self.hosts.get(host) {
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &h.namespace,
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    table,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Whether the process `name` has exited by itself (and how), without waiting.
    pub fn exited(&mut self, name: &str) -> Option<String> {
        let c = self.procs.get_mut(name)?.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// The last `lines` lines of `name`'s log, and where the whole log is: what a user reads
    /// first when a process ended before its time.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let Some(p) = self.procs.get(name) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n  ");
        format!("{}:\n  {tail}", p.log.display())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for h in self.hosts.values() {
            let _ = ip(&["link", "delete", &h.veth]);
            let _ = ip(&["netns", "delete", &h.namespace]);
        }
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_private_and_hand_out_addresses_inside() {
        let r = Range::parse("10.250.7.9/16").expect("range");
        assert_eq!(r.to_string(), "10.250.0.0/16");
        assert_eq!(r.address(1), Some(Ipv4Addr::new(10, 250, 0, 1)));
        assert_eq!(r.address(256), Some(Ipv4Addr::new(10, 250, 1, 0)));
        assert_eq!(r.address(65_535), None, "the broadcast address");
        assert!(r.contains(Ipv4Addr::new(10, 250, 3, 3)));
        assert!(!r.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(Range::parse("203.0.113.0/24").is_err(), "public");
        assert!(Range::parse("10.0.0.0/30").is_err(), "too small");
        assert!(Range::parse("10.250.0.0").is_err());
    }
}
