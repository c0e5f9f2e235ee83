//! `apim up`: a whole topology on this machine. Every node and balancer gets its own loopback
//! address inside a given range (ports stay as in production), databases this machine cannot
//! use become SQLite files, and an echo backend is started to try APIs against.

use crate::balancer::{self, RunningBalancer};
use crate::databases;
use crate::http;
use crate::node::{self, RunningNode};
use apim_compiler::HostMap;
use apim_compiler::plan::{Plan, RouteListener, TlsFiles};
use apim_components::{Request, Response};
use apim_topology::Topology;
use apim_topology::vocab::{BalancerKind, Component};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// A range of loopback addresses, such as `127.1.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loopback {
    base: u32,
    size: u32,
}

impl Loopback {
    pub fn parse(text: &str) -> Result<Loopback, String> {
        let bad = || format!("`{text}` is not a loopback range such as 127.1.0.0/16");
        let (addr, bits) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let bits: u32 = bits.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&bits) || addr.octets()[0] != 127 {
            return Err(format!(
                "`{text}` must lie inside 127.0.0.0/8 with a prefix from /8 to /30: apim up only uses loopback addresses"
            ));
        }
        let size = 1u32 << (32 - bits);
        Ok(Loopback {
            base: u32::from(addr) & !(size - 1),
            size,
        })
    }

    /// The `n`th usable address (from 1), skipping the range's first.
    pub fn address(&self, n: u32) -> Option<String> {
        (n >= 1 && n < self.size - 1).then(|| Ipv4Addr::from(self.base + n).to_string())
    }
}

pub struct UpOptions {
    pub loopback: Loopback,
    pub data: PathBuf,
    pub admin_password: String,
    /// Backends allowed for this run besides the echo backend (`apim up --allow-backend`):
    /// loopback is refused to APIs unless `apim up` is told so.
    pub backends: Vec<String>,
}

/// A running topology; dropping it stops everything.
pub struct Up {
    /// The deployment CA's certificate: what clients trust (`curl --cacert`).
    pub ca: PathBuf,
    pub ca_pem: String,
    /// The plan as run here: every address mapped to loopback.
    pub plan: Plan,
    pub hosts: HostMap,
    pub nodes: Vec<RunningNode>,
    pub balancers: Vec<RunningBalancer>,
    /// The echo backend's URL, for trying APIs.
    pub backend: String,
    /// What was changed to run here (databases replaced by SQLite files).
    pub notes: Vec<String>,
    /// Database name -> the URL used here.
    pub databases: std::collections::BTreeMap<String, String>,
    _echo: tokio::task::JoinSet<()>,
}

pub async fn echo(req: Request) -> Response {
    Response::json(
        200,
        &serde_json::json!({
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "body": String::from_utf8_lossy(&req.body),
        }),
    )
}

/// Issues (or renews, where the addresses moved) a CA and a certificate per node and balancer
/// of a plan whose addresses are where it runs, into `dir`, and points the plan at them;
/// answers the CA's certificate.
pub fn throwaway_pki(mapped: &mut Plan, dir: &std::path::Path) -> Result<String, String> {
    let pki_dir = dir.display().to_string();
    for n in &mut mapped.nodes {
        n.tls = TlsFiles::in_dir(&pki_dir, &n.name);
        n.tokens.in_dir(&pki_dir);
    }
    for b in &mut mapped.balancers {
        b.tls = TlsFiles::in_dir(&pki_dir, &b.name);
    }
    let written = apim_pki::write_dir(&mapped.deployment, &apim_pki::subjects(mapped), dir, None)?;
    crate::signing::write(dir, false)?;
    std::fs::read_to_string(&written.ca).map_err(|e| format!("cannot read {}: {e}", written.ca))
}

pub async fn start(t: &Topology, opts: &UpOptions) -> Result<Up, String> {
    let plan = Plan::of(t);
    let mut n = 0;
    let mut next = || {
        n += 1;
        opts.loopback.address(n)
    };
    let mut hosts = HostMap::default();
    for node in &plan.nodes {
        let a = next().ok_or("the loopback range is too small for every node and balancer")?;
        hosts.nodes.insert(node.name.clone(), a);
    }
    for b in &plan.balancers {
        let a = next().ok_or("the loopback range is too small for every node and balancer")?;
        hosts.balancers.insert(b.name.clone(), a);
    }
    let echo_host = next().ok_or("the loopback range is too small")?;
    let mut mapped = hosts.plan(&plan);
    // Loopback is no backend an API may have, but for this run the echo backend (and what
    // the user names) is.
    for n in mapped.nodes.iter_mut().filter(|n| !n.backends.is_empty()) {
        n.backends.allow.push(format!("{echo_host}/32"));
        n.backends.allow.extend(opts.backends.iter().cloned());
    }
    apim_pki::files::create_private_dir(&opts.data)?;
    // A throwaway PKI, kept in the data folder and reused (renewed where the addresses moved).
    let pki = opts.data.join("pki");
    let ca_pem = throwaway_pki(&mut mapped, &pki)?;
    let ca = pki.join("ca.crt");
    let (ready, notes) = databases::for_up(&mapped.databases, &opts.data)?;

    let listener = http::bind(&echo_host, 8080).await?;
    let mut echo_task = tokio::task::JoinSet::new();
    echo_task.spawn(http::serve(listener, |req, _| echo(req)));
    let mut nodes = Vec::new();
    for n in &mapped.nodes {
        nodes.push(
            node::start(
                n.clone(),
                databases::of_node(n, &ready),
                &opts.admin_password,
            )
            .await?,
        );
    }
    let mut balancers = Vec::new();
    for b in &mapped.balancers {
        balancers.push(balancer::start(b.clone(), &b.host).await?);
    }
    Ok(Up {
        // Absolute, so the printed walk-through works from any folder.
        ca: std::fs::canonicalize(&ca).unwrap_or(ca),
        ca_pem,
        plan: mapped,
        hosts,
        nodes,
        balancers,
        backend: format!("http://{echo_host}:8080"),
        notes,
        databases: ready,
        _echo: echo_task,
    })
}

/// Where a component answers through a balancer of `kind`, or else at its first node.
fn reach(plan: &Plan, c: Component, kind: BalancerKind) -> Option<(String, u16)> {
    let via_balancer = plan
        .balancers
        .iter()
        .filter(|b| b.kind == kind)
        .find_map(|b| {
            let r = b
                .routes
                .iter()
                .find(|r| r.component == c && r.listener == RouteListener::Public)?;
            Some((b.host.clone(), r.port))
        });
    via_balancer.or_else(|| {
        plan.nodes.iter().find_map(|n| {
            let l = n.listeners.iter().find(|l| l.component == c)?;
            Some((n.host.clone(), l.port))
        })
    })
}

/// Where clients reach a component of `plan`: its external balancer, or its first node.
pub fn entry(plan: &Plan, c: Component) -> Option<(String, u16)> {
    reach(plan, c, BalancerKind::External)
}

/// Where the key manager answers for revocations: its internal balancer or first node.
pub fn key_manager(plan: &Plan) -> Option<(String, u16)> {
    reach(plan, Component::KeyManager, BalancerKind::Internal)
}

/// Every gateway node's own address: (name, host, port).
pub fn gateway_nodes(plan: &Plan) -> Vec<(String, String, u16)> {
    plan.nodes
        .iter()
        .filter_map(|n| {
            let l = n
                .listeners
                .iter()
                .find(|l| l.component == Component::Gateway)?;
            Some((n.name.clone(), n.host.clone(), l.port))
        })
        .collect()
}

impl Up {
    /// Where clients reach a component: its external balancer, or its first node.
    pub fn entry(&self, c: Component) -> Option<(String, u16)> {
        entry(&self.plan, c)
    }

    /// Where the key manager answers for revocations: its internal balancer or first node.
    pub fn key_manager(&self) -> Option<(String, u16)> {
        key_manager(&self.plan)
    }

    /// Every gateway node's own address.
    pub fn gateway_nodes(&self) -> Vec<(String, String, u16)> {
        gateway_nodes(&self.plan)
    }

    /// The endpoints, one a line.
    pub fn endpoints(&self) -> String {
        let mut s = String::new();
        for b in &self.plan.balancers {
            for r in &b.routes {
                let (what, scheme) = match r.listener {
                    RouteListener::Public => (r.component.as_str().to_string(), "https"),
                    RouteListener::Internal => {
                        (format!("{} internal", r.component.as_str()), "tls")
                    }
                };
                s.push_str(&format!(
                    "  balancer {:<12} {:<20} {scheme}://{}\n",
                    b.name,
                    what,
                    http::authority(&b.host, r.port)
                ));
            }
        }
        for n in &self.plan.nodes {
            let parts: Vec<String> = n
                .listeners
                .iter()
                .map(|l| format!("{} :{}", l.component, l.port))
                .collect();
            s.push_str(&format!(
                "  node     {:<12} {} (internal :{}, admin :{}) on {}\n",
                n.name,
                parts.join(", "),
                n.internal_port,
                n.admin_port,
                n.host
            ));
        }
        s.push_str(&format!("  backend  echo         {}\n", self.backend));
        s
    }

    /// A copy-paste walk-through of publish -> subscribe -> token -> invoke, with curl.
    pub fn walkthrough(&self) -> String {
        let url = |c| {
            self.entry(c)
                .map(|(h, p)| format!("https://{}", http::authority(&h, p)))
                .unwrap_or_default()
        };
        let (publisher, store, gateway) = (
            url(Component::Publisher),
            url(Component::Store),
            url(Component::Gateway),
        );
        format!(
            r#"# Every listener speaks TLS; curl trusts the deployment's CA ({ca}).
# 1. publish: sign in as admin, create an API on the echo backend, publish it
P=$(curl -s --cacert {ca} {publisher}/api/login -H 'Content-Type: application/json' -d '{{"username":"admin","password":"'"$APIM_ADMIN_PASSWORD"'"}}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
API=$(curl -s --cacert {ca} {publisher}/api/apis -H "Authorization: Bearer $P" -d '{{"name":"Echo","version":"v1","context":"echo","backend":"{backend}"}}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
curl -s --cacert {ca} -X POST {publisher}/api/apis/$API/publish -H "Authorization: Bearer $P"
# 2. subscribe: sign up, create an application, subscribe it, get its keys
curl -s --cacert {ca} {store}/api/signup -H 'Content-Type: application/json' -d '{{"username":"alice","password":"alice-password"}}'
S=$(curl -s --cacert {ca} {store}/api/login -H 'Content-Type: application/json' -d '{{"username":"alice","password":"alice-password"}}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
APP=$(curl -s --cacert {ca} {store}/api/applications -H "Authorization: Bearer $S" -d '{{"name":"demo"}}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
curl -s --cacert {ca} {store}/api/subscriptions -H "Authorization: Bearer $S" -d '{{"application":"'$APP'","api":"'$API'"}}'
KEYS=$(curl -s --cacert {ca} -X POST {store}/api/applications/$APP/keys -H "Authorization: Bearer $S")
CK=$(echo "$KEYS" | sed 's/.*"consumer_key":"\([^"]*\)".*/\1/'); CS=$(echo "$KEYS" | sed 's/.*"consumer_secret":"\([^"]*\)".*/\1/')
# 3. token, through the gateway
T=$(curl -s --cacert {ca} -u "$CK:$CS" {gateway}/token -d grant_type=client_credentials | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
# 4. invoke
curl -s --cacert {ca} {gateway}/echo/v1/hello -H "Authorization: Bearer $T"
"#,
            backend = self.backend,
            ca = self.ca.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ranges_stay_on_loopback() {
        let l = Loopback::parse("127.1.0.0/16").expect("range");
        assert_eq!(l.address(1).as_deref(), Some("127.1.0.1"));
        assert_eq!(l.address(65534).as_deref(), Some("127.1.255.254"));
        assert_eq!(l.address(65535), None);
        assert!(Loopback::parse("10.0.0.0/8").is_err());
        assert!(Loopback::parse("127.0.0.0/31").is_err());
        assert!(Loopback::parse("nonsense").is_err());
        assert_eq!(
            Loopback::parse("127.2.3.4/24")
                .expect("range")
                .address(2)
                .as_deref(),
            Some("127.2.3.2")
        );
    }
}
