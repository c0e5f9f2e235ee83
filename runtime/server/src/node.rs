//! One node, running: its storage, its listeners (components and admin), and for gateways the
//! catch-up and periodic reconciliation with the registry.

use crate::http;
use crate::storage::{Role, SqlStorage};
use crate::world::RealWorld;
use apim_compiler::plan::NodePlan;
use apim_components::gateway;
use apim_components::world::{Peer, World};
use apim_components::{Node, Request};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Refusals on the internal listener go to the log, at most `PER_MINUTE` a minute (the rest
/// are only counted in `/metrics`): whoever is refused must not be able to fill the disk.
#[derive(Default)]
struct RefusalLog {
    minute: std::sync::atomic::AtomicU64,
    written: std::sync::atomic::AtomicU64,
}

impl RefusalLog {
    const PER_MINUTE: u64 = 20;

    fn log(&self, node: &str, endpoint: &str, caller: &http::Caller) {
        use std::sync::atomic::Ordering::Relaxed;
        let minute = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        if self.minute.swap(minute, Relaxed) != minute {
            self.written.store(0, Relaxed);
        }
        if self.written.fetch_add(1, Relaxed) < Self::PER_MINUTE {
            eprintln!(
                "node {node}: refused `{endpoint}` on the internal listener from {} ({}): the flows table does not admit it",
                caller.identity.as_deref().unwrap_or("no identity"),
                caller.addr
            );
        }
    }
}

/// How many password hashes may run at once (argon2, 19 MiB each: the memory they may take)
/// and the most seen at once.
fn hashing_metrics(node: &str, peak: usize) -> String {
    format!(
        "# HELP apim_password_hashing_max Password hashes computed at once at most (argon2, 19 MiB each).\n# TYPE apim_password_hashing_max gauge\napim_password_hashing_max{{node=\"{node}\"}} {}\n# HELP apim_password_hashing_peak The most password hashes computed at once so far.\n# TYPE apim_password_hashing_peak gauge\napim_password_hashing_peak{{node=\"{node}\"}} {peak}\n",
        crate::world::HASHING
    )
}

/// The listeners' connection limits, counts and refusals, in Prometheus' text format.
fn listener_metrics(node: &str, gates: &[(String, Arc<http::Gate>)]) -> String {
    let mut text = String::from(
        "# HELP apim_listener_connections Connections a listener holds open.\n# TYPE apim_listener_connections gauge\n",
    );
    for (name, g) in gates {
        text.push_str(&format!(
            "apim_listener_connections{{node=\"{node}\",listener=\"{name}\"}} {}\n",
            g.open()
        ));
    }
    text.push_str("# HELP apim_listener_max_connections Connections a listener may hold open.\n# TYPE apim_listener_max_connections gauge\n");
    for (name, g) in gates {
        text.push_str(&format!(
            "apim_listener_max_connections{{node=\"{node}\",listener=\"{name}\"}} {}\n",
            g.max
        ));
    }
    text.push_str("# HELP apim_listener_refused_total Connections closed at once for being over a limit.\n# TYPE apim_listener_refused_total counter\n");
    for (name, g) in gates {
        text.push_str(&format!(
            "apim_listener_refused_total{{node=\"{node}\",listener=\"{name}\"}} {}\n",
            g.refused()
        ));
    }
    text
}

/// A listener of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    Public(Peer),
    Internal,
    Admin,
}

/// A node that is serving; dropping it stops every listener and loop at once (`drain` stops
/// it gracefully).
pub struct RunningNode {
    pub plan: NodePlan,
    pub node: Arc<Node>,
    pub world: Arc<RealWorld>,
    listeners: JoinSet<()>,
    stop: tokio::sync::watch::Sender<bool>,
    _loops: JoinSet<()>,
}

impl RunningNode {
    /// Stops the way a rolling restart needs: unready at once, still serving for `wait` (the
    /// time balancers take to notice), then accepting nothing and finishing the requests in
    /// flight within `grace`. Answers whether everything in flight finished.
    pub async fn drain(mut self, wait: std::time::Duration, grace: std::time::Duration) -> bool {
        self.node.drain();
        tokio::time::sleep(wait).await;
        let _ = self.stop.send(true);
        http::finish(&mut self.listeners, grace).await
    }
}

/// Starts a node: connects and migrates its databases (`urls`: role -> ready URL), creates the
/// admin user where the user database is, binds every listener, then serves.
pub async fn start(
    plan: NodePlan,
    urls: BTreeMap<Role, String>,
    admin_password: &str,
) -> Result<RunningNode, String> {
    let (tls, _warnings) = crate::tls::load_checked(
        &format!("node {}", plan.name),
        &plan.identity,
        &plan.host,
        &plan.tls,
    )?;
    let storage = SqlStorage::connect(&urls)
        .await
        .map_err(|e| format!("node {}: {e}", plan.name))?;
    let storage =
        crate::guarded::guard(storage, std::time::Duration::from_millis(plan.database_ms));
    let world = Arc::new(RealWorld::new(storage, plan.clone(), &tls)?);
    if urls.contains_key(&Role::User) {
        apim_components::auth::bootstrap_admin(world.as_ref(), admin_password)
            .await
            .map_err(|e| format!("node {}: cannot create the admin user: {e}", plan.name))?;
    }
    let node = Arc::new(Node::of_plan(
        &plan.name,
        plan.listeners.iter().map(|l| l.component),
        (plan.internal.iter()).map(|e| (e.endpoint.as_str(), e.component, e.callers.as_slice())),
    ));
    let mut tasks = JoinSet::new();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut public = http::Serving::tls(tls.public_server()?);
    public.stop = Some(stopping.clone());
    let mut inside = http::Serving::tls(tls.internal_server()?);
    inside.stop = Some(stopping);
    // A draining node asks every connection to close after its answer, so that balancers and
    // peers hold no idle connection to it when it stops accepting.
    let draining = node.clone();
    let closing: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || draining.draining());
    public.closing = Some(closing.clone());
    inside.closing = Some(closing);
    let counted = node.clone();
    inside.on_refused = Some(Arc::new(move || counted.handshake_refused()));
    // Bind everything first, so a port that is taken fails the start instead of a later request.
    let mut listeners = Vec::new();
    for l in &plan.listeners {
        listeners.push((
            Door::Public(l.component),
            http::bind(&plan.bind, l.port).await?,
        ));
    }
    listeners.push((Door::Admin, http::bind(&plan.bind, plan.admin_port).await?));
    listeners.push((
        Door::Internal,
        http::bind(&plan.bind, plan.internal_port).await?,
    ));
    let refusals = Arc::new(RefusalLog::default());
    // Each listener has limits of its own: a flood on one leaves the others their descriptors.
    let gates: Vec<(String, Arc<http::Gate>)> = listeners
        .iter()
        .map(|(door, _)| {
            let name = match door {
                Door::Public(c) => c.as_str().to_string(),
                Door::Internal => "internal".to_string(),
                Door::Admin => "admin".to_string(),
            };
            (name, Arc::new(http::Gate::new(http::MAX_CONNECTIONS, None)))
        })
        .collect();
    let gates = Arc::new(gates);
    // `spiffe://DEPLOYMENT/balancer/`: whom a public listener believes about a client's address.
    let balancers: Arc<str> = Arc::from(format!(
        "{}/balancer/",
        plan.identity
            .rsplit_once("/node/")
            .map_or(plan.identity.as_str(), |(d, _)| d)
    ));
    for (k, (door, listener)) in listeners.into_iter().enumerate() {
        let (node, world) = (node.clone(), world.clone());
        let mut serving = if door == Door::Internal {
            inside.clone()
        } else {
            public.clone()
        };
        serving.gate = gates[k].1.clone();
        let gates = gates.clone();
        let balancers = balancers.clone();
        if door == Door::Public(Peer::Gateway) {
            tasks.spawn(http::serve_connections(
                listener,
                serving,
                move |req, caller| {
                    // Only what the component answers as a whole needs the origin (`/token`):
                    // API calls do not pay for it.
                    let origin = (!gateway::is_api_call(req.method().as_str(), req.uri().path()))
                        .then(|| client_origin(caller, req.headers(), &balancers));
                    gateway(node.clone(), world.clone(), req, origin)
                },
            ));
            continue;
        }
        let refusals = refusals.clone();
        tasks.spawn(http::serve_tls(
            listener,
            serving,
            move |mut req: Request, caller| {
                let (node, world, refusals) = (node.clone(), world.clone(), refusals.clone());
                // Nodes on the internal listener are vouched for by their certificates; on a
                // public one only the deployment's balancers are.
                let vouched = match door {
                    Door::Internal => caller.identity.is_some(),
                    _ => is_balancer(&caller, &balancers),
                };
                // The last header: a balancer that adds its own line (HAProxy) puts it last.
                let forwarded = req
                    .headers
                    .iter()
                    .rev()
                    .find(|(n, _)| n == "x-forwarded-for")
                    .map(|(_, v)| v.as_str());
                req.client = Some(http::origin(&caller, forwarded, vouched));
                let gates = gates.clone();
                async move {
                    match door {
                        Door::Public(c) => node.handle(world.as_ref(), c, req).await,
                        Door::Internal => {
                            let endpoint = format!("{} {}", req.method, req.path);
                            let r = node
                                .internal(world.as_ref(), caller.identity.as_deref(), req)
                                .await;
                            if r.status == 403 {
                                refusals.log(&node.name, &endpoint, &caller);
                            }
                            r
                        }
                        Door::Admin => {
                            let mut r = node.admin(world.as_ref(), &req);
                            if req.path == "/metrics" && r.status == 200 {
                                r.body
                                    .extend(listener_metrics(&node.name, &gates).into_bytes());
                                r.body.extend(
                                    hashing_metrics(&node.name, world.hashing_peak()).into_bytes(),
                                );
                            }
                            r
                        }
                    }
                }
            },
        ));
    }
    let mut loops = JoinSet::new();
    for (_, job) in apim_components::schedule::loops(&node, &world) {
        loops.spawn(job);
    }
    loops.spawn(crate::tls::renew_on_hangup(
        tls.clone(),
        format!("node {}", plan.name),
        plan.host.clone(),
        plan.tls.clone(),
    ));
    Ok(RunningNode {
        plan,
        node,
        world,
        listeners: tasks,
        stop,
        _loops: loops,
    })
}

/// Whether a connection is one of the deployment's balancers (its certificate says so).
fn is_balancer(caller: &http::Caller, balancers: &str) -> bool {
    caller
        .identity
        .as_deref()
        .is_some_and(|id| id.starts_with(balancers))
}

/// The origin of a request on a public listener (`http::origin`).
fn client_origin(caller: &http::Caller, headers: &hyper::HeaderMap, balancers: &str) -> String {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok());
    http::origin(caller, forwarded, is_balancer(caller, balancers))
}

/// A gateway's listener: API calls are decided on their head and their bodies streamed both
/// ways; `/token` and notifications go through the component as whole messages.
async fn gateway(
    node: Arc<Node>,
    world: Arc<RealWorld>,
    req: hyper::Request<hyper::body::Incoming>,
    origin: Option<String>,
) -> hyper::Response<http::Body> {
    if let Some(origin) = origin {
        // Boxed: the whole component's future is large, and API calls should not carry it.
        return Box::pin(async move {
            match http::read(req).await {
                Ok(mut req) => {
                    req.client = Some(origin);
                    http::write(node.handle(world.as_ref(), Peer::Gateway, req).await)
                }
                Err(r) => http::write(r),
            }
        })
        .await;
    }
    let (parts, body) = req.into_parts();
    // A value that is not text cannot carry a token.
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    let admitted = node
        .gateway
        .admit(world.as_ref(), parts.uri.path(), authorization)
        .await;
    let response = match admitted {
        Ok(admitted) => match world.backends().check_url(&admitted.api.backend) {
            Err(why) => {
                http::linger(body);
                http::write(gateway::refused_backend(&admitted.api, &why))
            }
            Ok(()) => {
                let mut parts = parts;
                gateway::to_backend(&mut http::HeaderFields(&mut parts.headers));
                let bodiless = hyper::body::Body::is_end_stream(&body);
                let resend = gateway::resend_once(parts.method.as_str(), bodiless);
                match world.stream(&admitted, parts, resend, body).await {
                    Ok(mut r) => {
                        gateway::from_backend(&mut http::HeaderFields(r.headers_mut()));
                        r
                    }
                    Err(e) => http::write(gateway::backend_failed(&e)),
                }
            }
        },
        Err(r) => {
            http::linger(body);
            http::write(r)
        }
    };
    node.count(Peer::Gateway, response.status().as_u16());
    response
}
