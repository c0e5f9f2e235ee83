//! `wso2/<node>/deployment.toml`: the node as a WSO2 API Manager 4.x node would be configured.
//!
//! Only key paths that WSO2's own deployment kits write are used (the list is
//! `wso2-deployment-keys.txt`, a copy of `shared/reference`), and environment references take
//! WSO2's `$env{NAME}` form.

use crate::plan::{NodePlan, Peer, Plan};
use crate::secrets;
use apim_topology::vocab::BalancerKind;
use apim_topology::vocab::{Component, Engine, Role};
use std::collections::{BTreeMap, BTreeSet};
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
fn jdbc(engine: Engine, url: &str) -> Option<(String, String, String, &'static str, &'static str)> {
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

fn database(s: &mut String, table: &str, plan: &Plan, role: Role, warnings: &mut Vec<String>) {
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
                    "jdbc:h2:./repository/database/{}_DB;DB_CLOSE_ON_EXIT=FALSE",
                    table.to_uppercase()
                ))
            );
            let w = format!(
                "WSO2 output: database `{}` is SQLite, which WSO2 cannot use; its deployment.toml files use H2",
                db.name
            );
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
}

fn url_of(peer: &Peer, path: &str) -> String {
    peer.endpoints
        .first()
        .map(|e| format!("http://{}{path}", super::nginx::address(&e.host, e.port)))
        .unwrap_or_default()
}

/// A WSO2 gateway environment: one per gateway cluster.
struct GatewayEnvironment<'p> {
    cluster: &'p str,
    /// Where clients call it: its external balancer, or its first node.
    clients: String,
    /// Its first node, for administration.
    service: String,
}

fn gateway_environments(plan: &Plan) -> Vec<GatewayEnvironment<'_>> {
    // Gateway node -> where clients reach it through an external balancer.
    let mut fronted: BTreeMap<&str, String> = BTreeMap::new();
    for b in plan
        .balancers
        .iter()
        .filter(|b| b.kind == BalancerKind::External)
    {
        for r in b
            .routes
            .iter()
            .filter(|r| r.component == Component::Gateway)
        {
            for u in &r.upstream {
                fronted
                    .entry(&u.node)
                    .or_insert_with(|| super::nginx::address(&b.host, r.port));
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in &plan.nodes {
        let Some(l) = n
            .listeners
            .iter()
            .find(|l| l.component == Component::Gateway)
        else {
            continue;
        };
        if !seen.insert(n.cluster.as_str()) {
            continue;
        }
        let node = super::nginx::address(&n.host, l.port);
        out.push(GatewayEnvironment {
            cluster: &n.cluster,
            clients: fronted
                .get(n.name.as_str())
                .cloned()
                .unwrap_or_else(|| node.clone()),
            service: node,
        });
    }
    out
}

/// What every node's deployment.toml may need from the whole plan, computed once.
pub struct Wso2<'p> {
    plan: &'p Plan,
    environments: Vec<GatewayEnvironment<'p>>,
    devportal: Option<String>,
}

impl<'p> Wso2<'p> {
    pub fn new(plan: &'p Plan) -> Wso2<'p> {
        let store_node = plan.nodes.iter().find_map(|x| {
            let l = x
                .listeners
                .iter()
                .find(|l| l.component == Component::Store)?;
            Some(super::nginx::address(&x.host, l.port))
        });
        let store_balancer = plan.balancers.iter().find_map(|b| {
            let r = b.routes.iter().find(|r| r.component == Component::Store)?;
            Some(super::nginx::address(&b.host, r.port))
        });
        Wso2 {
            plan,
            environments: gateway_environments(plan),
            devportal: store_balancer.or(store_node),
        }
    }
}

/// The deployment.toml of one node, and warnings about what WSO2's format cannot say.
pub fn render(w: &Wso2<'_>, n: &NodePlan) -> (String, Vec<String>) {
    let plan = w.plan;
    let mut warnings = Vec::new();
    let runs = |c: Component| n.listeners.iter().any(|l| l.component == c);
    let peer = |c: Component| n.peers.iter().find(|p| p.component == c);
    let components: Vec<&str> = n.listeners.iter().map(|l| l.component.as_str()).collect();
    let mut s = super::header(
        "#",
        &format!("WSO2 API Manager 4.x deployment.toml of node `{}`", n.name),
        &plan.deployment,
    );
    let _ = writeln!(
        s,
        "# Components: {}. Environment references use WSO2's $env{{NAME}} form.",
        components.join(", ")
    );
    let _ = writeln!(
        s,
        "\n[server]\nhostname = {}\nnode_ip = {}\noffset = 0",
        q(&n.host),
        q(&n.host)
    );
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
        q(&format!("$env{{{}}}", secrets::ADMIN_PASSWORD))
    );
    s.push_str("\n[user_store]\ntype = \"database_unique_id\"\n");
    let uses = |r: Role| n.databases.iter().any(|d| d.role == r);
    if uses(Role::Apim) {
        database(&mut s, "apim_db", plan, Role::Apim, &mut warnings);
    }
    let user_db = plan
        .databases
        .iter()
        .find(|d| d.roles.contains(&Role::User));
    let registry_db = plan
        .databases
        .iter()
        .find(|d| d.roles.contains(&Role::Registry));
    if uses(Role::User) || uses(Role::Registry) {
        let role = if uses(Role::User) {
            Role::User
        } else {
            Role::Registry
        };
        if let (Some(u), Some(r)) = (user_db, registry_db)
            && u.name != r.name
        {
            let used = if role == Role::User { u } else { r };
            let _ = write!(
                s,
                "\n# WSO2 keeps users and the registry in one shared_db; the topology splits them\n# (user: `{}`, registry: `{}`). shared_db points at `{}` here.",
                u.name, r.name, used.name
            );
            warnings.push(format!(
                    "WSO2 output: the topology keeps users (`{}`) and the registry (`{}`) in separate databases, but WSO2 has one shared_db; the deployment.toml files point it at one of them",
                    u.name, r.name
                ));
        }
        database(&mut s, "shared_db", plan, role, &mut warnings);
    }
    if let Some(km) = peer(Component::KeyManager) {
        let _ = writeln!(
            s,
            "\n[apim.key_manager]\ntype = \"default\"\nservice_url = {}\nusername = \"admin\"\npassword = {}",
            q(&url_of(km, "/services/")),
            q(&format!("$env{{{}}}", secrets::ADMIN_PASSWORD))
        );
    }
    if runs(Component::Publisher) {
        for env in &w.environments {
            let _ = writeln!(
                s,
                "\n[[apim.gateway.environment]]\nname = {}\ntype = \"hybrid\"\ndisplay_in_api_console = true\ndescription = {}\nshow_as_token_endpoint_url = true\nservice_url = {}\nhttp_endpoint = {}\nusername = \"admin\"\npassword = {}",
                q(env.cluster),
                q(&format!("gateway cluster {}", env.cluster)),
                q(&format!("http://{}/services/", env.service)),
                q(&format!("http://{}", env.clients)),
                q(&format!("$env{{{}}}", secrets::ADMIN_PASSWORD))
            );
        }
    }
    if runs(Component::Gateway) {
        let _ = writeln!(
            s,
            "\n[apim.sync_runtime_artifacts.gateway]\ngateway_labels = [{}]\n\n[apim.cache.gateway_token]\nenable = true\nexpiry_time = 900\n\n[apim.cache.resource]\nenable = true",
            q(&n.cluster)
        );
    }
    if runs(Component::KeyManager) {
        s.push_str("\n[apim.token.revocation]\nenable_realtime_notifier = true\n");
    }
    if (runs(Component::Store) || runs(Component::Publisher))
        && let Some(url) = &w.devportal
    {
        let _ = writeln!(
            s,
            "\n[apim.devportal]\nurl = {}",
            q(&format!("http://{url}/devportal"))
        );
    }
    (s, warnings)
}
