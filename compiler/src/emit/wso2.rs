//! `wso2/<node>/deployment.toml`: the deployment mapped onto WSO2 API Manager 4.5 distributions.
//!
//! A gateway node is a Universal Gateway; a key manager alone is a control-plane node with the
//! key-manager profile; publisher, store or both are control-plane nodes (4.x serves both
//! portals from the control plane), those with the publisher (the event hub) each with a
//! Traffic Manager beside it on the same host (`wso2/<node>-tm/`); a node of all four is the default pack. Ports are WSO2's, moved by a
//! port offset per node so that nodes on one host never share one: 9443 (services, portals),
//! 8243/8280 (gateway), 5672 (event hub, throttle decisions), 9611/9711 (throttle events).
//! Every URL names a balancer where the topology has one in front, else a node's own port.
//!
//! Only key paths that WSO2's own deployment kits write are used (the list is
//! `wso2-deployment-keys.txt`, a copy of `shared/reference`), and environment references take
//! WSO2's `$env{NAME}` form. What each table holds follows WSO2's helm-apim `distributed/`
//! charts (control-plane, gateway, key-manager, traffic-manager `confs/deployment.toml`).

use super::{About, Warning};
use crate::plan::RouteListener;
use crate::plan::{BalancerPlan, BalancerRoute, NodePlan, Plan};
use crate::secrets;
use apim_topology::vocab::BalancerKind;
use apim_topology::vocab::{Component, Engine, Role};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Every key path WSO2's deployment kits use, one a line.
pub const KNOWN_KEYS: &str = include_str!("wso2-deployment-keys.txt");

/// A TOML basic string.
fn q(s: &str) -> String {
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        toml::Value::String(s.to_string()).to_string()
    } else {
        format!("\"{s}\"")
    }
}

fn env(s: &str) -> String {
    secrets::rewrite(s, |name| format!("$env{{{name}}}"))
}

/// A JDBC view of a database URL: (jdbc url, user, password, type, driver).
pub(crate) fn jdbc(
    engine: Engine,
    url: &str,
) -> Option<(String, String, String, &'static str, &'static str)> {
    let (kind, driver, scheme) = match engine {
        Engine::Postgres => ("postgre", "org.postgresql.Driver", "postgresql"),
        Engine::Mysql => ("mysql", "com.mysql.cj.jdbc.Driver", "mysql"),
        Engine::Sqlite => return None,
    };
    let rest = url.split_once("://")?.1;
    let (userinfo, location) = match rest.rsplit_once('@') {
        Some((u, l)) => (u, l),
        None => ("", rest),
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    Some((
        format!("jdbc:{scheme}://{location}"),
        user.to_string(),
        password.to_string(),
        kind,
        driver,
    ))
}

fn database(s: &mut String, table: &str, plan: &Plan, role: Role, warnings: &mut Vec<Warning>) {
    let Some(db) = plan.databases.iter().find(|d| d.roles.contains(&role)) else {
        return;
    };
    let _ = writeln!(s, "\n[database.{table}]");
    match jdbc(db.engine, &db.url) {
        Some((url, user, password, kind, driver)) => {
            let _ = writeln!(
                s,
                "type = {}\nurl = {}\nusername = {}",
                q(kind),
                q(&env(&url)),
                q(&env(&user))
            );
            let _ = writeln!(
                s,
                "password = {}\ndriver = {}",
                q(&env(&password)),
                q(driver)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "# `{}` is SQLite in the topology; WSO2 has no SQLite driver, so this node uses its embedded H2.\ntype = \"h2\"\nurl = {}",
                db.name,
                q(&format!(
                    "jdbc:h2:./repository/database/{};DB_CLOSE_ON_EXIT=FALSE",
                    if table == "apim_db" {
                        "WSO2AM_DB"
                    } else {
                        "WSO2SHARED_DB"
                    }
                ))
            );
            let w = Warning::new(
                About::Database(db.name.clone()),
                format!(
                    "WSO2 output: database `{}` is SQLite, which WSO2 cannot use; its deployment.toml files use H2",
                    db.name
                ),
            );
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
}

/// The WSO2 version the files are written for.
pub const VERSION: &str = "4.5";

/// WSO2's ports before the offset.
pub const HTTPS: u16 = 9443;
pub const GATEWAY_HTTPS: u16 = 8243;
pub const GATEWAY_HTTP: u16 = 8280;
pub const EVENT_HUB: u16 = 5672;
pub const THROTTLE_EVENTS: u16 = 9611;
pub const THROTTLE_EVENTS_TLS: u16 = 9711;

/// Which WSO2 distribution (and profile) a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The default pack: every component, its own event hub and traffic manager.
    AllInOne,
    /// API Control Plane: publisher and developer portal (and the resident key manager).
    ControlPlane,
    /// The control plane with the key-manager profile.
    KeyManager,
    /// Universal Gateway.
    Gateway,
    /// Traffic Manager, one beside each control-plane node.
    TrafficManager,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::AllInOne => "all-in-one (default pack)",
            Profile::ControlPlane => "API Control Plane",
            Profile::KeyManager => "API Control Plane, key-manager profile",
            Profile::Gateway => "Universal Gateway",
            Profile::TrafficManager => "Traffic Manager",
        }
    }

    /// The ports a node of this profile listens on, before its offset (WSO2's defaults).
    pub fn ports(self) -> &'static [u16] {
        match self {
            Profile::AllInOne => &[
                HTTPS,
                GATEWAY_HTTPS,
                GATEWAY_HTTP,
                EVENT_HUB,
                THROTTLE_EVENTS,
                THROTTLE_EVENTS_TLS,
            ],
            Profile::ControlPlane | Profile::TrafficManager => {
                &[HTTPS, EVENT_HUB, THROTTLE_EVENTS, THROTTLE_EVENTS_TLS]
            }
            Profile::KeyManager => &[HTTPS],
            Profile::Gateway => &[HTTPS, GATEWAY_HTTPS, GATEWAY_HTTP],
        }
    }
}

/// One WSO2 node: an apim node, or the traffic manager beside a control-plane node.
pub struct Wso2Node<'p> {
    /// The folder under `wso2/`.
    pub name: String,
    pub node: &'p NodePlan,
    pub profile: Profile,
    pub offset: u16,
}

impl Wso2Node<'_> {
    fn at(&self, port: u16) -> String {
        super::nginx::address(&self.node.host, port + self.offset)
    }
}

fn profile_of(n: &NodePlan, warnings: &mut Vec<Warning>) -> Profile {
    let runs = |c: Component| n.listeners.iter().any(|l| l.component == c);
    let portals = runs(Component::Publisher) || runs(Component::Store);
    match (
        portals,
        runs(Component::KeyManager),
        runs(Component::Gateway),
    ) {
        (false, false, true) => Profile::Gateway,
        (false, true, false) => Profile::KeyManager,
        (true, _, false) => Profile::ControlPlane,
        (true, true, true) => Profile::AllInOne,
        _ => {
            warnings.push(Warning::new(
                About::Cluster(n.cluster.clone()),
                format!(
                    "WSO2 output: cluster `{}` runs the gateway with other components but not all four; WSO2 4.x has no distribution for that, so its nodes are written as the default pack",
                    n.cluster
                ),
            ));
            Profile::AllInOne
        }
    }
}

/// What every node's deployment.toml may need from the whole plan, computed once.
pub struct Wso2<'p> {
    plan: &'p Plan,
    pub nodes: Vec<Wso2Node<'p>>,
    warnings: Vec<Warning>,
    /// Indexes built once: the emitters ask per node, and a fleet has thousands of nodes
    /// behind one balancer.
    index: Index<'p>,
}

/// A balancer and one of its routes.
type Front<'p> = (&'p BalancerPlan, &'p BalancerRoute);

#[derive(Default)]
struct Index<'p> {
    /// A node's name -> its place in `nodes` (not its traffic manager's).
    node: HashMap<&'p str, usize>,
    /// A cluster -> its first node.
    first: HashMap<&'p str, &'p str>,
    /// (cluster, component) -> the balancer routes with one of its nodes upstream, in plan
    /// order.
    routes: HashMap<&'p str, HashMap<Component, Vec<Front<'p>>>>,
    /// The control planes (places in `nodes`), the traffic managers, and the services URLs
    /// every node's file names.
    control_planes: Vec<usize>,
    traffic_managers: Vec<usize>,
    control_plane_service: Option<String>,
    key_manager_service: Option<String>,
    /// A gateway cluster -> its first gateway (the one an environment is named from).
    first_gateway: HashMap<&'p str, usize>,
}

impl<'p> Index<'p> {
    fn of(plan: &'p Plan, nodes: &[Wso2Node<'p>]) -> Index<'p> {
        let mut index = Index::default();
        for (i, w) in nodes.iter().enumerate() {
            if w.profile != Profile::TrafficManager {
                index.node.entry(w.node.name.as_str()).or_insert(i);
            }
        }
        let mut cluster_of: HashMap<&str, &str> = HashMap::new();
        for n in &plan.nodes {
            index
                .first
                .entry(n.cluster.as_str())
                .or_insert(n.name.as_str());
            cluster_of.insert(n.name.as_str(), n.cluster.as_str());
        }
        for b in &plan.balancers {
            for r in &b.routes {
                let mut clusters: Vec<&str> = r
                    .upstream
                    .iter()
                    .filter_map(|u| cluster_of.get(u.node.as_str()).copied())
                    .collect();
                clusters.sort_unstable();
                clusters.dedup();
                for c in clusters {
                    index
                        .routes
                        .entry(c)
                        .or_default()
                        .entry(r.component)
                        .or_default()
                        .push((b, r));
                }
            }
        }
        index
    }

    fn routes(&self, cluster: &str, component: Component) -> impl Iterator<Item = Front<'p>> + '_ {
        self.routes
            .get(cluster)
            .and_then(|c| c.get(&component))
            .into_iter()
            .flatten()
            .copied()
    }
}

impl<'p> Wso2<'p> {
    pub fn new(plan: &'p Plan) -> Wso2<'p> {
        let mut warnings = Vec::new();
        // Offsets per host, in node order: a traffic manager right after its control plane.
        let mut next: BTreeMap<&str, u16> = BTreeMap::new();
        let mut nodes = Vec::new();
        for n in &plan.nodes {
            let profile = profile_of(n, &mut warnings);
            let mut take = || {
                let o = next.entry(n.host.as_str()).or_insert(0);
                *o += 1;
                *o - 1
            };
            nodes.push(Wso2Node {
                name: n.name.clone(),
                node: n,
                profile,
                offset: take(),
            });
            // Beside the control planes that hold the event hub (the publisher's); a portal-only
            // node, perhaps on a public network, takes no throttling traffic.
            if profile == Profile::ControlPlane
                && n.listeners
                    .iter()
                    .any(|l| l.component == Component::Publisher)
            {
                nodes.push(Wso2Node {
                    name: format!("{}-tm", n.name),
                    node: n,
                    profile: Profile::TrafficManager,
                    offset: take(),
                });
            }
        }
        warnings.sort();
        warnings.dedup();
        let index = Index::of(plan, &nodes);
        let mut w = Wso2 {
            plan,
            nodes,
            warnings,
            index,
        };
        let places = |profiles: &[Profile]| -> Vec<usize> {
            w.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| profiles.contains(&n.profile))
                .map(|(i, _)| i)
                .collect()
        };
        let control_planes: Vec<usize> = places(&[Profile::ControlPlane, Profile::AllInOne])
            .into_iter()
            .filter(|&i| {
                w.nodes[i]
                    .node
                    .listeners
                    .iter()
                    .any(|l| l.component == Component::Publisher)
            })
            .collect();
        let mut traffic_managers = places(&[Profile::TrafficManager]);
        if traffic_managers.is_empty() {
            traffic_managers = places(&[Profile::AllInOne]);
        }
        let mut first_gateway = HashMap::new();
        for i in places(&[Profile::Gateway, Profile::AllInOne]) {
            first_gateway
                .entry(w.nodes[i].node.cluster.as_str())
                .or_insert(i);
        }
        w.index.control_planes = control_planes;
        w.index.traffic_managers = traffic_managers;
        w.index.first_gateway = first_gateway;
        w.index.control_plane_service = w.find_control_plane_service();
        w.index.key_manager_service = w.find_key_manager_service();
        w
    }

    fn of(&self, profiles: &[Profile]) -> impl Iterator<Item = &Wso2Node<'p>> {
        self.nodes
            .iter()
            .filter(move |w| profiles.contains(&w.profile))
    }

    fn node(&self, name: &str) -> Option<&Wso2Node<'p>> {
        self.nodes.get(*self.index.node.get(name)?)
    }

    /// Where a cluster's `component` is reached: the balancer route in front of it (of `kind`
    /// first), or its first node's WSO2 port.
    fn front(&self, cluster: &str, component: Component, port: u16) -> Option<String> {
        let mut routes: Vec<(&BalancerPlan, u16)> = self
            .index
            .routes(cluster, component)
            .filter(|(_, r)| r.listener == RouteListener::Public)
            .map(|(b, r)| (b, r.port))
            .collect();
        // Between components, an internal balancer; for clients, an external one.
        routes.sort_by_key(|(b, _)| (b.kind != BalancerKind::Internal, b.name.clone()));
        if let Some((b, p)) = routes.first() {
            return Some(super::nginx::address(&b.host, *p));
        }
        let first = self.index.first.get(cluster)?;
        Some(self.node(first)?.at(port))
    }

    /// The balancer of `kind` in front of a cluster's `component`: its host and route port.
    fn front_of(
        &self,
        kind: BalancerKind,
        cluster: &str,
        component: Component,
    ) -> Option<(String, u16)> {
        self.index
            .routes(cluster, component)
            .find(|(b, _)| b.kind == kind)
            .map(|(b, r)| (b.host.clone(), r.port))
    }

    fn external_front(&self, cluster: &str, component: Component) -> Option<(String, u16)> {
        self.front_of(BalancerKind::External, cluster, component)
    }

    /// The control plane every other node talks to: the publisher's nodes (the event hub),
    /// or the all-in-one nodes.
    fn control_planes(&self) -> Vec<&Wso2Node<'p>> {
        self.places(&self.index.control_planes)
    }

    fn traffic_managers(&self) -> Vec<&Wso2Node<'p>> {
        self.places(&self.index.traffic_managers)
    }

    fn places(&self, places: &[usize]) -> Vec<&Wso2Node<'p>> {
        places.iter().filter_map(|&i| self.nodes.get(i)).collect()
    }

    /// The first balancer of `kind` (in plan order) with a route to a node of `cluster`'s
    /// `component`.
    pub(crate) fn front_balancer(
        &self,
        kind: BalancerKind,
        cluster: &str,
        component: Component,
    ) -> Option<&'p BalancerPlan> {
        self.index
            .routes(cluster, component)
            .find(|(b, _)| b.kind == kind)
            .map(|(b, _)| b)
    }

    /// A cluster's first node.
    pub(crate) fn first_node(&self, cluster: &str) -> Option<&'p NodePlan> {
        let name = self.index.first.get(cluster)?;
        Some(self.nodes.get(*self.index.node.get(name)?)?.node)
    }

    /// Whether `gw` is its cluster's first gateway.
    fn first_of_its_cluster(&self, gw: &Wso2Node<'_>) -> bool {
        self.index
            .first_gateway
            .get(gw.node.cluster.as_str())
            .and_then(|&i| self.nodes.get(i))
            .is_some_and(|first| first.name == gw.name)
    }

    /// The control plane's services URL (event hub, notifications), through its balancer
    /// where it has one.
    fn control_plane_service(&self) -> Option<String> {
        self.index.control_plane_service.clone()
    }

    fn find_control_plane_service(&self) -> Option<String> {
        let cp = self.control_planes().into_iter().next()?;
        self.front(&cp.node.cluster, Component::Publisher, HTTPS)
    }

    /// The key manager's services URL: its internal balancer, or its node.
    fn key_manager_service(&self) -> Option<String> {
        self.index.key_manager_service.clone()
    }

    fn find_key_manager_service(&self) -> Option<String> {
        let km = self.nodes.iter().find(|w| {
            w.profile != Profile::TrafficManager
                && w.node
                    .listeners
                    .iter()
                    .any(|l| l.component == Component::KeyManager)
        })?;
        self.front(&km.node.cluster, Component::KeyManager, HTTPS)
    }
}

/// How a balancer checks a WSO2 node: the gateway's startup check (it answers 200 once its APIs
/// are deployed; WSO2 docs, "Health checks"), and the Carbon `Version` service the helm-apim
/// charts probe on the others.
pub const GATEWAY_HEALTH: &str = "/api/am/gateway/v2/server-startup-healthcheck";
pub const SERVER_HEALTH: &str = "/services/Version";

impl Wso2<'_> {
    /// A balancer as it must be in front of WSO2 nodes: the same listeners, each forwarding to
    /// the WSO2 port of its component (the gateway's 8243, the servlet's 9443, plus offsets) and
    /// checking WSO2's health paths on 9443. apim's internal listeners have no WSO2 counterpart
    /// and are left out; `None` when nothing is left.
    pub fn balancer(&self, b: &crate::plan::BalancerPlan) -> Option<crate::plan::BalancerPlan> {
        let mut b = b.clone();
        b.routes.retain(|r| r.listener == RouteListener::Public);
        for r in &mut b.routes {
            r.health.path = match r.component {
                Component::Gateway => GATEWAY_HEALTH,
                _ => SERVER_HEALTH,
            }
            .to_string();
            for u in &mut r.upstream {
                let Some(w) = self.node(&u.node) else {
                    continue;
                };
                u.port = w.offset
                    + match r.component {
                        Component::Gateway => GATEWAY_HTTPS,
                        _ => HTTPS,
                    };
                u.admin_port = w.offset + HTTPS;
            }
        }
        (!b.routes.is_empty()).then_some(b)
    }
}

/// (from cluster, to cluster) -> the refused ports and what they are for.
type Refused<'a> = BTreeMap<
    (&'a str, &'a str),
    (
        std::collections::BTreeSet<u16>,
        std::collections::BTreeSet<&'static str>,
    ),
>;

impl<'p> Wso2<'p> {
    /// The connections WSO2 needs that apim's own flows do not: gateways to the event hub and
    /// to every traffic manager, traffic managers to the event hub. Each one the firewall
    /// refuses is a warning on the cluster that must open it.
    pub fn unreachable(&self, t: &apim_topology::Topology) -> Vec<Warning> {
        use apim_topology::reach::{Firewall, cluster_party};
        let mut refused: Refused<'_> = BTreeMap::new();
        let firewall = Firewall::of(t);
        let hub = self.control_planes();
        let tms = self.traffic_managers();
        let mut need = |from: &Wso2Node<'p>, to: &Wso2Node<'p>, port: u16, why: &'static str| {
            let (Some(fc), Some(tc)) = (
                t.clusters.get(&from.node.cluster),
                t.clusters.get(&to.node.cluster),
            ) else {
                return;
            };
            let (Some(a), Some(b)) = (cluster_party(t, fc), cluster_party(t, tc)) else {
                return;
            };
            let port = port + to.offset;
            if !firewall.allows_between(a, b, port) {
                let e = refused
                    .entry((from.node.cluster.as_str(), to.node.cluster.as_str()))
                    .or_default();
                e.0.insert(port);
                e.1.insert(why);
            }
        };
        for n in &self.nodes {
            match n.profile {
                Profile::Gateway => {
                    for h in &hub {
                        need(n, h, EVENT_HUB, "the event hub");
                    }
                    for tm in &tms {
                        need(n, tm, THROTTLE_EVENTS, "throttle events");
                        need(n, tm, THROTTLE_EVENTS_TLS, "throttle events");
                        need(n, tm, EVENT_HUB, "throttle decisions");
                    }
                }
                Profile::TrafficManager | Profile::KeyManager => {
                    for h in hub.iter().filter(|h| h.node.cluster != n.node.cluster) {
                        need(n, h, EVENT_HUB, "the event hub");
                    }
                }
                _ => {}
            }
        }
        refused
            .into_iter()
            .map(|((from, to), (ports, why))| {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                let why: Vec<&str> = why.into_iter().collect();
                Warning::new(
                    About::Cluster(from.to_string()),
                    format!(
                        "WSO2 output: cluster `{from}` must reach cluster `{to}` on ports {} ({}), which the firewall does not allow; add a [[firewall]] rule from `{from}` to `{to}` with ports = [{}]",
                        ports.join(", "),
                        why.join(", "),
                        ports.join(", ")
                    ),
                )
            })
            .collect()
    }
}

/// Every deployment.toml: folder name -> (text), and warnings about what WSO2 cannot say.
pub fn render_all(w: &Wso2<'_>) -> (Vec<(String, String)>, Vec<Warning>) {
    let mut warnings = w.warnings.clone();
    let files = w
        .nodes
        .iter()
        .map(|n| {
            let (text, more) = render(w, n);
            for m in more {
                if !warnings.contains(&m) {
                    warnings.push(m);
                }
            }
            (n.name.clone(), text)
        })
        .collect();
    (files, warnings)
}

fn admin() -> String {
    q(&format!("$env{{{}}}", secrets::ADMIN_PASSWORD))
}

/// One node's deployment.toml.
fn render(w: &Wso2<'_>, me: &Wso2Node<'_>) -> (String, Vec<Warning>) {
    let plan = w.plan;
    let n = me.node;
    let mut warnings = Vec::new();
    let runs = |c: Component| n.listeners.iter().any(|l| l.component == c);
    let profile = me.profile;
    let mut s = super::header(
        "#",
        &format!(
            "WSO2 API Manager {VERSION} deployment.toml of `{}` ({})",
            me.name,
            profile.as_str()
        ),
        &plan.deployment,
    );
    let components: Vec<&str> = n.listeners.iter().map(|l| l.component.as_str()).collect();
    let _ = match profile {
        Profile::TrafficManager => writeln!(
            s,
            "# The Traffic Manager beside control-plane node `{}` (WSO2 4.5 needs one; same host, its own offset).",
            n.name
        ),
        _ => writeln!(s, "# apim components: {}.", components.join(", ")),
    };
    if profile == Profile::ControlPlane {
        s.push_str("# WSO2 4.x serves the publisher and the developer portal from every control-plane node.\n");
    }
    let ports: Vec<String> = profile
        .ports()
        .iter()
        .map(|p| (p + me.offset).to_string())
        .collect();
    let _ = writeln!(
        s,
        "# Listens on {} (WSO2's ports with offset {}). Environment references use $env{{NAME}}.",
        ports.join(", "),
        me.offset
    );
    // Behind a balancer, WSO2 builds its URLs (and the token issuer) from the balancer's host
    // name and port, the same on every node of the cluster.
    let main = match profile {
        Profile::Gateway => Some(Component::Gateway),
        Profile::KeyManager => Some(Component::KeyManager),
        Profile::TrafficManager => None,
        _ if runs(Component::Store) => Some(Component::Store),
        _ => Some(Component::Publisher),
    };
    // Key managers are reached through their internal balancer; the others by clients.
    let fronted = main.and_then(|c| match c {
        Component::KeyManager => w.front_of(BalancerKind::Internal, &n.cluster, c),
        _ => w.external_front(&n.cluster, c),
    });
    let hostname = fronted
        .as_ref()
        .map_or(n.host.as_str(), |(h, _)| h.as_str());
    let _ = writeln!(
        s,
        "\n[server]\nhostname = {}\nnode_ip = {}\noffset = {}\nserver_role = \"default\"",
        q(hostname),
        q(&n.host),
        me.offset
    );
    if let Some((_, port)) = &fronted
        && profile != Profile::Gateway
    {
        let _ = writeln!(s, "\n[transport.https.properties]\nproxyPort = {port}");
    }
    let _ = writeln!(
        s,
        "\n# TLS: the node's certificate and the deployment CA from `apim certs`, as PKCS#12 stores:\n#   openssl pkcs12 -export -in {cert} -inkey {key} -name {name} -out {name}.p12\n#   keytool -importcert -noprompt -alias apim-ca -file {ca} -storetype PKCS12 -keystore apim-ca.p12\n[keystore.tls]\nfile_name = {p12}\ntype = \"PKCS12\"\nalias = {alias}\npassword = {pw}\nkey_password = {pw}\n\n[truststore]\nfile_name = \"apim-ca.p12\"\ntype = \"PKCS12\"\npassword = {tpw}",
        cert = n.tls.cert,
        key = n.tls.key,
        ca = n.tls.ca,
        name = n.name,
        p12 = q(&format!("{}.p12", n.name)),
        alias = q(&n.name),
        pw = q(&format!("$env{{{}}}", secrets::KEYSTORE_PASSWORD)),
        tpw = q(&format!("$env{{{}}}", secrets::TRUSTSTORE_PASSWORD))
    );
    let _ = writeln!(
        s,
        "\n[super_admin]\nusername = \"admin\"\npassword = {}\ncreate_admin_account = true",
        admin()
    );
    s.push_str("\n[user_store]\ntype = \"database_unique_id\"\n");
    // Gateways keep no API data of their own in 4.x: only the shared database.
    if profile != Profile::Gateway {
        database(&mut s, "apim_db", plan, Role::Apim, &mut warnings);
    }
    shared_db(&mut s, plan, &mut warnings);

    let services = |url: Option<String>| url.map(|u| format!("https://{u}/services/"));
    let cp_service = services(w.control_plane_service());
    let km_service = services(w.key_manager_service());
    let cps = w.control_planes();
    let tms = w.traffic_managers();

    if profile != Profile::KeyManager
        && let Some(km) = &km_service
    {
        let _ = writeln!(
            s,
            "\n[apim.key_manager]\ntype = \"default\"\nservice_url = {}\nusername = \"$ref{{super_admin.username}}\"\npassword = \"$ref{{super_admin.password}}\"",
            q(km)
        );
    }
    // The event hub: control planes listen for their own events; everyone else subscribes to
    // every control plane's.
    match profile {
        Profile::ControlPlane | Profile::AllInOne if runs(Component::Publisher) => {
            let own = format!("tcp://localhost:{}", EVENT_HUB + me.offset);
            let others: Vec<String> = cps
                .iter()
                .filter(|c| c.name != me.name)
                .map(|c| q(&format!("tcp://{}", c.at(EVENT_HUB))))
                .collect();
            let _ = writeln!(
                s,
                "\n[apim.event_hub]\nenable = true\nusername = \"$ref{{super_admin.username}}\"\npassword = \"$ref{{super_admin.password}}\"\nservice_url = {}\nevent_listening_endpoints = [{}]",
                q(&cp_service.clone().unwrap_or_default()),
                q(&own)
            );
            if !others.is_empty() {
                let _ = writeln!(s, "event_duplicate_url = [{}]", others.join(", "));
            }
            for c in &cps {
                let _ = writeln!(
                    s,
                    "\n[[apim.event_hub.publish.url_group]]\nurls = [{}]\nauth_urls = [{}]",
                    q(&format!("tcp://{}", c.at(THROTTLE_EVENTS))),
                    q(&format!("ssl://{}", c.at(THROTTLE_EVENTS_TLS)))
                );
            }
        }
        _ => {
            if let Some(cp) = &cp_service {
                let endpoints: Vec<String> = cps
                    .iter()
                    .map(|c| q(&format!("tcp://{}", c.at(EVENT_HUB))))
                    .collect();
                let _ = writeln!(
                    s,
                    "\n[apim.event_hub]\nenable = true\nusername = \"$ref{{super_admin.username}}\"\npassword = \"$ref{{super_admin.password}}\"\nservice_url = {}\nevent_listening_endpoints = [{}]",
                    q(cp),
                    endpoints.join(", ")
                );
            }
        }
    }
    // Throttling: gateways send events to every traffic manager and take decisions from them;
    // traffic managers of a cluster duplicate events to each other.
    if profile == Profile::Gateway && !tms.is_empty() {
        let decisions: Vec<String> = tms
            .iter()
            .map(|t| q(&format!("tcp://{}", t.at(EVENT_HUB))))
            .collect();
        let _ = writeln!(
            s,
            "\n[apim.throttling]\nusername = \"$ref{{super_admin.username}}\"\npassword = \"$ref{{super_admin.password}}\"\nservice_url = {}\nthrottle_decision_endpoints = [{}]",
            q(&format!("https://{}/services/", tms[0].at(HTTPS))),
            decisions.join(", ")
        );
        for t in &tms {
            let _ = writeln!(
                s,
                "\n[[apim.throttling.url_group]]\ntraffic_manager_urls = [{}]\ntraffic_manager_auth_urls = [{}]\ntype = \"loadbalance\"",
                q(&format!("tcp://{}", t.at(THROTTLE_EVENTS))),
                q(&format!("ssl://{}", t.at(THROTTLE_EVENTS_TLS)))
            );
        }
    }
    if profile == Profile::TrafficManager {
        let others: Vec<String> = tms
            .iter()
            .filter(|t| t.name != me.name)
            .map(|t| q(&format!("tcp://{}", t.at(EVENT_HUB))))
            .collect();
        let _ = writeln!(
            s,
            "\n[apim.throttling]\nservice_url = {}\nthrottle_decision_endpoints = [{}]",
            q(&format!("https://{}/services/", me.at(HTTPS))),
            q(&format!("tcp://localhost:{}", EVENT_HUB + me.offset))
        );
        if !others.is_empty() {
            let _ = writeln!(s, "event_duplicate_url = [{}]", others.join(", "));
        }
    }
    // Token revocations reach the gateways through the control plane's notification endpoint.
    if runs(Component::KeyManager)
        && profile != Profile::TrafficManager
        && let Some(cp) = w.control_plane_service()
    {
        let _ = writeln!(
            s,
            "\n[apim.token.revocation]\nenable_realtime_notifier = true\n\n[[event_listener]]\nid = \"token_revocation\"\ntype = \"org.wso2.carbon.identity.core.handler.AbstractIdentityHandler\"\nname = \"org.wso2.is.notification.ApimOauthEventInterceptor\"\norder = 1\n\n[event_listener.properties]\nnotification_endpoint = {}\nusername = \"$ref{{super_admin.username}}\"\npassword = \"$ref{{super_admin.password}}\"",
            q(&format!("https://{cp}/internal/data/v1/notify"))
        );
    }
    if runs(Component::Publisher) && profile != Profile::TrafficManager {
        for gw in w.of(&[Profile::Gateway, Profile::AllInOne]) {
            // One environment per gateway cluster, from its first node.
            if !w.first_of_its_cluster(gw) {
                continue;
            }
            let clients = w
                .external_front(&gw.node.cluster, Component::Gateway)
                .map_or_else(
                    || gw.at(GATEWAY_HTTPS),
                    |(h, p)| super::nginx::address(&h, p),
                );
            let _ = writeln!(
                s,
                "\n[[apim.gateway.environment]]\nname = {}\ntype = \"hybrid\"\ngateway_type = \"Regular\"\nprovider = \"wso2\"\ndisplay_in_api_console = true\ndescription = {}\nshow_as_token_endpoint_url = true\nservice_url = {}\nhttps_endpoint = {}\nusername = \"$ref{{super_admin.username}}\"\npassword = \"$ref{{super_admin.password}}\"",
                q(&gw.node.cluster),
                q(&format!("gateway cluster {}", gw.node.cluster)),
                q(&format!("https://{}/services/", gw.at(HTTPS))),
                q(&format!("https://{clients}"))
            );
        }
    }
    if profile == Profile::Gateway {
        let _ = writeln!(
            s,
            "\n[apim.sync_runtime_artifacts.gateway]\ngateway_labels = [{}]\n\n[apim.cache.gateway_token]\nenable = true\nexpiry_time = 900\n\n[apim.cache.resource]\nenable = true",
            q(&n.cluster)
        );
    }
    if matches!(profile, Profile::ControlPlane | Profile::AllInOne) {
        // The developer portal's address: the store's balancer, or a node running the store.
        let store = w.of(&[Profile::ControlPlane, Profile::AllInOne]).find(|x| {
            x.node
                .listeners
                .iter()
                .any(|l| l.component == Component::Store)
        });
        if let Some(store) = store {
            let at = w
                .external_front(&store.node.cluster, Component::Store)
                .map_or_else(|| store.at(HTTPS), |(h, p)| super::nginx::address(&h, p));
            let _ = writeln!(
                s,
                "\n[apim.devportal]\nurl = {}",
                q(&format!("https://{at}/devportal"))
            );
        }
    }
    (s, warnings)
}

/// `[database.shared_db]`: users and the registry, which WSO2 keeps in one database.
fn shared_db(s: &mut String, plan: &Plan, warnings: &mut Vec<Warning>) {
    let user_db = plan
        .databases
        .iter()
        .find(|d| d.roles.contains(&Role::User));
    let registry_db = plan
        .databases
        .iter()
        .find(|d| d.roles.contains(&Role::Registry));
    if let (Some(u), Some(r)) = (user_db, registry_db)
        && u.name != r.name
    {
        let _ = write!(
            s,
            "\n# WSO2 keeps users and the registry in one shared_db; the topology splits them\n# (user: `{}`, registry: `{}`). shared_db points at `{}` here.",
            u.name, r.name, u.name
        );
        let w = Warning::new(
            About::Database(r.name.clone()),
            format!(
                "WSO2 output: the topology keeps users (`{}`) and the registry (`{}`) in separate databases, but the kits' deployment.toml has one shared_db; the files point it at `{}`",
                u.name, r.name, u.name
            ),
        );
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    database(s, "shared_db", plan, Role::User, warnings);
}
