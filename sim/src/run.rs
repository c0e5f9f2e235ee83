//! One simulation: set the deployment up, run the workload under the fault schedule, watch
//! the invariants, then check that everything recovers once the faults have healed.

use crate::exec::Executor;
use crate::scenario::{Fault, FaultKind, Scenario};
use crate::stats::{Op, Stats};
use crate::world::{Defects, Deployment, Faults, Target};
use apim_compiler::plan::Plan;
use apim_components::mem::Role;
use apim_components::world::ApiState;
use apim_components::{Peer, Request, Response, secret};
use apim_topology::vocab::Component;
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

const ADMIN_PASSWORD: &str = "sim-admin-password";
const CONSUMER_PASSWORD: &str = "sim-consumer-password";
/// Clients give up on a request after this long.
const CLIENT_TIMEOUT_US: u64 = 30_000_000;
/// After the faults heal: time for reconciliation and health checks before liveness probes.
const SETTLE_MS: u64 = 15_000;
/// How long an API may take to become invokable on every gateway after settling.
const LIVENESS_MS: u64 = 30_000;
/// A share of invokes are probes that must be refused (unsubscribed, unpublished, bad token).
const PROBE_SHARE: f64 = 0.05;
const MAX_VIOLATIONS: usize = 1000;

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub seed: u64,
    pub defects: Defects,
    /// The command that replays this run, printed with every violation.
    pub replay: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Violation {
    /// Virtual time since the workload started.
    pub at_ms: u64,
    /// `safety` or `liveness`.
    pub invariant: &'static str,
    pub what: String,
    pub nodes: Vec<String>,
}

/// What a run produced, before it is summarised.
pub struct Outcome {
    pub stats: Stats,
    pub violations: Vec<Violation>,
    pub setup_error: Option<String>,
    pub trace_hash: u64,
    /// Requests clients completed, by operation.
    pub events: u64,
    pub virtual_ms: u64,
}

struct App {
    id: String,
    key: String,
    secret: String,
    apis: Vec<usize>,
    /// (token, expires at, in ms since the epoch)
    tokens: Vec<(String, u64)>,
    /// The hash of the last token, as the databases key it, and its expiry there.
    last_hash: String,
    last_expires_ms: u64,
}

#[derive(Default)]
struct Clients {
    provider: String,
    /// (id, context) of every acknowledged publish.
    apis: Vec<(String, String)>,
    draft: String,
    apps: Vec<App>,
    next: u64,
}

struct Run {
    d: Arc<Deployment>,
    scenario: Scenario,
    start_us: Mutex<u64>,
    clients: Mutex<Clients>,
    stats: Mutex<Stats>,
    violations: Mutex<Vec<Violation>>,
    trace: Mutex<(u64, u64)>,
    active: Mutex<Vec<FaultKind>>,
    entries: [Option<Target>; 4],
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn field(r: &Response, name: &str) -> Option<String> {
    r.json_body()?.get(name)?.as_str().map(String::from)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn basic(key: &str, secret: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    format!("Basic {b}")
}

impl Run {
    fn elapsed_us(&self) -> u64 {
        self.d.now_us().saturating_sub(*guard(&self.start_us))
    }

    fn entry(&self, c: Component) -> Option<Target> {
        self.entries[c as usize]
    }

    /// A client request to a component's entry.
    async fn client(&self, c: Component, req: Request) -> Result<Response, String> {
        let Some(entry) = self.entry(c) else {
            return Err(format!("no {c} in this topology"));
        };
        let from = self.d.client_place(
            entry,
            !matches!(c, Component::Publisher | Component::KeyManager),
        );
        self.d
            .send(from, entry, req, CLIENT_TIMEOUT_US)
            .await
            .map_err(|e| e.to_string())
    }

    fn trace(&self, op: u64, status: u16) {
        let mut t = guard(&self.trace);
        for x in [op, self.d.now_us(), u64::from(status)] {
            t.0 = (t.0 ^ x).wrapping_mul(0x0000_0100_0000_01B3);
        }
        t.1 += 1;
    }

    fn record(&self, op: Op, started_us: u64, ok: bool, status: u16) {
        let took = self.d.now_us().saturating_sub(started_us);
        let start = started_us.saturating_sub(*guard(&self.start_us));
        guard(&self.stats).record(op, start, took, ok);
        self.trace(op as u64, status);
    }

    fn violate(&self, invariant: &'static str, what: String, nodes: Vec<String>) {
        let at_ms = self.elapsed_us() / 1000;
        self.trace(99, 0);
        let mut v = guard(&self.violations);
        // A defect repeats on every request; the first thousand say enough.
        if v.len() >= MAX_VIOLATIONS {
            return;
        }
        v.push(Violation {
            at_ms,
            invariant,
            what,
            nodes,
        });
    }

    /// Safety: a 200 from a gateway needs a valid, unexpired, unrevoked (or revoked within the
    /// bound) token, an active subscription and a published API — as the databases hold them.
    fn check_invoke(&self, r: &Response, token: &str, app: &str, api: Option<&str>) {
        if r.status == 200 {
            self.check_invoke_hashed(r, &secret::hash(token), app, api);
        }
    }

    /// The same invariant for the workload's own invokes, which use only what was acknowledged
    /// and checked against the databases then (the token and its application, the
    /// subscription, the publish; nothing in the workload removes them): what remains to check
    /// is expiry and revocation.
    fn check_acknowledged_invoke(&self, r: &Response, hash: &str, expires_ms: u64, api: &str) {
        if r.status != 200 {
            return;
        }
        let now = self.d.now_ms();
        let bound = self.scenario.workload.revocation_bound_ms;
        let problem = if expires_ms <= now {
            Some(format!(
                "an invoke of {api} succeeded with a token expired {} ms before",
                now - expires_ms
            ))
        } else {
            self.d.storage.inspect(|t| {
                let revoked = *t.revocations.get(hash)?;
                (now > revoked + bound).then(|| {
                    format!(
                        "an invoke of {api} succeeded with a token revoked {} ms before (bound {bound} ms)",
                        now - revoked
                    )
                })
            })
        };
        if let Some(p) = problem {
            let node = r
                .get_header("x-sim-node")
                .map(String::from)
                .into_iter()
                .collect();
            self.violate("safety", p, node);
        }
    }

    fn check_invoke_hashed(&self, r: &Response, hash: &str, app: &str, api: Option<&str>) {
        if r.status != 200 {
            return;
        }
        let now = self.d.now_ms();
        let bound = self.scenario.workload.revocation_bound_ms;
        let problem = self.d.storage.inspect(|t| {
            let Some(token) = t.tokens.get(hash) else {
                return Some(
                    "an invoke succeeded with a token the key manager never issued".into(),
                );
            };
            if token.expires_ms <= now {
                return Some(format!(
                    "an invoke succeeded with a token expired {} ms before",
                    now - token.expires_ms
                ));
            }
            if let Some(&revoked) = t.revocations.get(hash)
                && now > revoked + bound
            {
                return Some(format!(
                    "an invoke succeeded with a token revoked {} ms before (bound {bound} ms)",
                    now - revoked
                ));
            }
            if token.application != app {
                return Some("an invoke succeeded with another application's token".into());
            }
            let Some(api) = api else {
                return Some("an invoke of an API that was never published succeeded".into());
            };
            if !t
                .apis
                .get(api)
                .is_some_and(|a| a.state == ApiState::Published)
            {
                return Some(format!(
                    "an invoke reached API {api}, which is not published"
                ));
            }
            if !t.subscribed(app, api) {
                return Some(format!(
                    "an invoke succeeded without a subscription (application {app}, API {api})"
                ));
            }
            None
        });
        if let Some(p) = problem {
            let node = r
                .get_header("x-sim-node")
                .map(String::from)
                .into_iter()
                .collect();
            self.violate("safety", p, node);
        }
    }

    /// Setup: the admin signs in, publishes the APIs, consumers sign up and subscribe.
    async fn setup(self: Arc<Self>) -> Result<(), String> {
        let ok = |r: Result<Response, String>, what: &str, want: u16| -> Result<Response, String> {
            match r {
                Ok(r) if r.status == want => Ok(r),
                Ok(r) => Err(format!(
                    "{what}: answered {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )),
                Err(e) => Err(format!("{what}: {e}")),
            }
        };
        let login = Request::new("POST", "/api/login")
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}));
        let session = field(
            &ok(
                self.client(Component::Publisher, login).await,
                "admin login",
                200,
            )?,
            "token",
        )
        .ok_or("admin login: no token")?;
        guard(&self.clients).provider = session.clone();
        let draft = Request::new("POST", "/api/apis")
            .header("authorization", &bearer(&session))
            .json(&json!({"name": "Draft", "version": "v1", "context": "sim-draft", "backend": "http://backend.sim/"}));
        let draft = field(
            &ok(
                self.client(Component::Publisher, draft).await,
                "create a draft API",
                201,
            )?,
            "id",
        )
        .ok_or("no id")?;
        guard(&self.clients).draft = draft;
        for _ in 0..self.scenario.workload.apis {
            self.publish_one()
                .await
                .map_err(|e| format!("setup: {e}"))?;
        }
        for k in 0..self.scenario.workload.applications {
            let user = format!("consumer-{k}");
            let creds = json!({"username": user, "password": CONSUMER_PASSWORD});
            ok(
                self.client(
                    Component::Store,
                    Request::new("POST", "/api/signup").json(&creds),
                )
                .await,
                "sign up",
                201,
            )?;
            let apis: Vec<usize> = (0..guard(&self.clients).apis.len()).collect();
            // Every application but the first subscribes to every API; the first to none but
            // the first, so probes have an unsubscribed pair.
            let subscribe = if k == 0 { vec![0] } else { apis };
            let app = self.new_app(&user, &subscribe).await?;
            self.token_for(app).await?;
        }
        Ok(())
    }

    /// Creates and publishes an API; acknowledged publishes are checked against the databases.
    async fn publish_one(&self) -> Result<(), String> {
        let (session, n) = {
            let mut c = guard(&self.clients);
            c.next += 1;
            (c.provider.clone(), c.next)
        };
        let context = format!("sim-{n}");
        let create = Request::new("POST", "/api/apis")
            .header("authorization", &bearer(&session))
            .json(&json!({"name": format!("Sim {n}"), "version": "v1", "context": context, "backend": "http://backend.sim/"}));
        let r = self.client(Component::Publisher, create).await?;
        if r.status != 201 {
            return Err(format!("create answered {}", r.status));
        }
        let id = field(&r, "id").ok_or("create: no id")?;
        let publish = Request::new("POST", &format!("/api/apis/{id}/publish"))
            .header("authorization", &bearer(&session));
        let r = self.client(Component::Publisher, publish).await?;
        if r.status != 200 {
            return Err(format!("publish answered {}", r.status));
        }
        match self.d.storage.api_truth(&id) {
            (Some(a), Some(g))
                if a.state == ApiState::Published && g.state == ApiState::Published => {}
            _ => self.violate(
                "safety",
                format!(
                    "an acknowledged publish of {id} is not in the apim database and the registry"
                ),
                Vec::new(),
            ),
        }
        guard(&self.clients).apis.push((id, context));
        Ok(())
    }

    /// A consumer's new application, subscribed to `apis`, with keys; its index.
    async fn new_app(&self, user: &str, apis: &[usize]) -> Result<usize, String> {
        let login = Request::new("POST", "/api/login")
            .json(&json!({"username": user, "password": CONSUMER_PASSWORD}));
        let r = self.client(Component::Store, login).await?;
        let session = field(&r, "token").ok_or(format!("login answered {}", r.status))?;
        let n = {
            let mut c = guard(&self.clients);
            c.next += 1;
            c.next
        };
        let create = Request::new("POST", "/api/applications")
            .header("authorization", &bearer(&session))
            .json(&json!({"name": format!("app-{n}")}));
        let r = self.client(Component::Store, create).await?;
        let app = field(&r, "id").ok_or(format!("create application answered {}", r.status))?;
        for &i in apis {
            let Some(api) = guard(&self.clients).apis.get(i).map(|a| a.0.clone()) else {
                continue;
            };
            let sub = Request::new("POST", "/api/subscriptions")
                .header("authorization", &bearer(&session))
                .json(&json!({"application": app, "api": api}));
            let r = self.client(Component::Store, sub).await?;
            if r.status != 201 {
                return Err(format!("subscribe answered {}", r.status));
            }
            if !self.d.storage.subscription_truth(&app, &api) {
                self.violate(
                    "safety",
                    format!(
                        "an acknowledged subscription of {app} to {api} is not in the apim database"
                    ),
                    Vec::new(),
                );
            }
        }
        let keys = Request::new("POST", &format!("/api/applications/{app}/keys"))
            .header("authorization", &bearer(&session));
        let r = self.client(Component::Store, keys).await?;
        let (Some(key), Some(secret)) = (field(&r, "consumer_key"), field(&r, "consumer_secret"))
        else {
            return Err(format!("keys answered {}", r.status));
        };
        guard(&self.clients).apps.push(App {
            id: app,
            key,
            secret,
            apis: apis.to_vec(),
            tokens: Vec::new(),
            last_hash: String::new(),
            last_expires_ms: 0,
        });
        Ok(guard(&self.clients).apps.len() - 1)
    }

    async fn token_for(&self, i: usize) -> Result<(), String> {
        let Some((key, secret)) = guard(&self.clients)
            .apps
            .get(i)
            .map(|a| (a.key.clone(), a.secret.clone()))
        else {
            return Err("no application".into());
        };
        let req = Request::new("POST", "/token")
            .header("authorization", &basic(&key, &secret))
            .form(&[("grant_type", "client_credentials")]);
        let r = self.client(Component::Gateway, req).await?;
        let token = field(&r, "access_token").ok_or(format!("token answered {}", r.status))?;
        let lifetime = r
            .json_body()
            .and_then(|b| b["expires_in"].as_u64())
            .unwrap_or(0)
            * 1000;
        let hash = secret::hash(&token);
        let app = guard(&self.clients).apps[i].id.clone();
        let stored = match self.d.storage.token_truth(&hash) {
            Some((t, _)) if t.application == app => t.expires_ms,
            _ => {
                self.violate(
                    "safety",
                    format!("an acknowledged token of {app} is not in the apim database"),
                    Vec::new(),
                );
                0
            }
        };
        let expires = self.d.now_ms() + lifetime;
        let mut c = guard(&self.clients);
        c.apps[i].last_hash = hash;
        c.apps[i].last_expires_ms = stored;
        let tokens = &mut c.apps[i].tokens;
        tokens.push((token, expires));
        if tokens.len() > 2 {
            tokens.remove(0);
        }
        Ok(())
    }

    /// A random application; with `with_token`, one holding a token good for another minute
    /// (a few draws, so the pick stays cheap however many applications there are).
    fn pick_app(&self, with_token: bool) -> Option<usize> {
        let n = guard(&self.clients).apps.len() as u64;
        let soon = self.d.now_ms() + 60_000;
        for _ in 0..8 {
            let i = self.d.rng().below(n) as usize;
            let c = guard(&self.clients);
            if !with_token || c.apps.get(i)?.tokens.iter().any(|t| t.1 > soon) {
                return Some(i);
            }
        }
        None
    }

    async fn op(self: Arc<Self>, op: Op) {
        let started = self.d.now_us();
        let ok = match op {
            Op::Publish => self.publish_one().await.is_ok(),
            Op::Subscribe => {
                let n = self.scenario.workload.applications.max(1) as u64;
                let user = format!("consumer-{}", self.d.rng().below(n));
                let apis = guard(&self.clients).apis.len() as u64;
                let api = self.d.rng().below(apis) as usize;
                self.new_app(&user, &[api]).await.is_ok()
            }
            Op::Token => match self.pick_app(false) {
                Some(i) => self.token_for(i).await.is_ok(),
                None => return,
            },
            Op::Invoke => {
                self.invoke().await;
                return;
            }
            Op::Revoke => {
                let Some(i) = self.pick_app(true) else {
                    return;
                };
                self.revoke(i).await
            }
        };
        self.record(op, started, ok, u16::from(ok));
    }

    /// An API call with a token and subscription of the workload's own (or, for a share of
    /// them, a probe that must be refused).
    async fn invoke(self: Arc<Self>) {
        let started = self.d.now_us();
        if self.d.rng().chance(PROBE_SHARE) {
            self.probe().await;
            return;
        }
        let Some(i) = self.pick_app(true) else {
            return;
        };
        let picked = {
            let c = guard(&self.clients);
            let a = &c.apps[i];
            let k = self.d.rng().below(a.apis.len() as u64) as usize;
            a.apis.get(k).and_then(|&api| {
                let (id, ctx) = c.apis.get(api)?.clone();
                let token = a.tokens.last()?.0.clone();
                Some((token, a.last_hash.clone(), a.last_expires_ms, id, ctx))
            })
        };
        let Some((token, hash, expires, api, ctx)) = picked else {
            return;
        };
        let req = Request::new("GET", &format!("/{ctx}/v1/items"))
            .header("authorization", &bearer(&token));
        let r = self.client(Component::Gateway, req).await;
        if let Ok(r) = &r {
            self.check_acknowledged_invoke(r, &hash, expires, &api);
        }
        let status = r.as_ref().map_or(0, |r| r.status);
        self.record(Op::Invoke, started, status == 200, status);
    }

    /// Revokes an application's oldest token, then probes every gateway with it once the
    /// revocation bound has passed.
    async fn revoke(self: &Arc<Self>, i: usize) -> bool {
        let Some((app, key, secret, token, api)) = ({
            let c = guard(&self.clients);
            let a = &c.apps[i];
            a.tokens.first().map(|t| {
                let api = a
                    .apis
                    .first()
                    .and_then(|&k| c.apis.get(k))
                    .map(|x| x.1.clone());
                (
                    a.id.clone(),
                    a.key.clone(),
                    a.secret.clone(),
                    t.0.clone(),
                    api,
                )
            })
        }) else {
            return false;
        };
        let req = Request::new("POST", "/revoke")
            .header("authorization", &basic(&key, &secret))
            .form(&[("token", &token)]);
        let Ok(r) = self.client(Component::KeyManager, req).await else {
            return false;
        };
        if r.status != 200 {
            return false;
        }
        match self.d.storage.token_truth(&secret::hash(&token)) {
            Some((_, Some(_))) => {}
            _ => self.violate(
                "safety",
                "an acknowledged revocation is not in the apim database".into(),
                Vec::new(),
            ),
        }
        guard(&self.clients).apps[i].tokens.retain(|t| t.0 != token);
        // Liveness of revocation: past the bound, no gateway serves the token.
        if let Some(ctx) = api {
            let run = self.clone();
            self.d
                .exec
                .spawn(async move { run.probe_revoked(app, token, ctx).await });
        }
        true
    }

    async fn probe_revoked(&self, app: String, token: String, ctx: String) {
        self.d
            .exec
            .sleep(self.scenario.workload.revocation_bound_ms * 1000 + 1)
            .await;
        let api_id = guard(&self.clients)
            .apis
            .iter()
            .find(|a| a.1 == ctx)
            .map(|a| a.0.clone());
        for g in self.gateway_nodes() {
            let req = Request::new("GET", &format!("/{ctx}/v1/items"))
                .header("authorization", &bearer(&token));
            let from = self.d.node_place(g);
            if let Ok(r) = self
                .d
                .send(
                    from,
                    Target::Node(g, Some(Peer::Gateway)),
                    req,
                    CLIENT_TIMEOUT_US,
                )
                .await
            {
                self.check_invoke(&r, &token, &app, api_id.as_deref());
            }
        }
    }

    fn gateway_nodes(&self) -> Vec<usize> {
        self.d
            .plan
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.listeners
                    .iter()
                    .any(|l| l.component == Component::Gateway)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// An invoke that must be refused: an unsubscribed API, an unpublished one, a made-up token.
    async fn probe(&self) {
        let Some(i) = self.pick_app(true) else {
            return;
        };
        let kind = self.d.rng().below(3);
        let (app, token, target) = {
            let c = guard(&self.clients);
            let a = &c.apps[i];
            let token = a.tokens.last().map(|t| t.0.clone()).unwrap_or_default();
            let unsubscribed = (0..c.apis.len())
                .find(|k| !a.apis.contains(k))
                .map(|k| c.apis[k].clone());
            let target = match kind {
                0 => unsubscribed.map(|(id, ctx)| (Some(id), ctx)),
                _ => Some((Some(c.draft.clone()), "sim-draft".to_string())),
            };
            (a.id.clone(), token, target)
        };
        let Some((api, ctx)) = target else {
            return;
        };
        let token = if kind == 2 {
            format!("{token}-forged")
        } else {
            token
        };
        let req = Request::new("GET", &format!("/{ctx}/v1/items"))
            .header("authorization", &bearer(&token));
        if let Ok(r) = self.client(Component::Gateway, req).await {
            let api = if ctx == "sim-draft" { None } else { api };
            self.check_invoke(&r, &token, &app, api.as_deref());
        }
    }

    /// Applies the faults active now: network, balancer and database state from the list.
    fn apply_faults(&self) {
        let active = guard(&self.active).clone();
        let d = &self.d;
        let net = |n: &str| d.network(n).unwrap_or(usize::MAX);
        let mut f = d.faults();
        *f = Faults::default();
        let mut db_down: BTreeSet<Role> = BTreeSet::new();
        for k in &active {
            let pairs = |from: &str, to: &str, one_way: bool| {
                let (a, b) = (net(from), net(to));
                if one_way {
                    vec![(a, b)]
                } else {
                    vec![(a, b), (b, a)]
                }
            };
            match k {
                FaultKind::Isolate { node } => {
                    f.isolated.extend(d.node_id(node));
                }
                FaultKind::Partition { from, to, one_way } => {
                    f.blocked.extend(pairs(from, to, *one_way))
                }
                FaultKind::Latency {
                    from,
                    to,
                    one_way,
                    added_ms,
                } => {
                    for p in pairs(from, to, *one_way) {
                        f.links.entry(p).or_default().latency_us += added_ms * 1000;
                    }
                }
                FaultKind::Loss {
                    from,
                    to,
                    one_way,
                    rate_permille,
                } => {
                    for p in pairs(from, to, *one_way) {
                        let l = f.links.entry(p).or_default();
                        l.loss = l.loss.max(f64::from(*rate_permille) / 1000.0);
                    }
                }
                FaultKind::BalancerOutage { balancer } => {
                    f.balancers_down.extend(d.balancer_id(balancer));
                }
                FaultKind::CertExpiry {
                    name,
                    balancer: true,
                } => {
                    f.expired_balancers.extend(d.balancer_id(name));
                }
                FaultKind::CertExpiry {
                    name,
                    balancer: false,
                } => {
                    f.expired_nodes.extend(d.node_id(name));
                }
                FaultKind::DatabaseOutage { database } => {
                    for db in d.plan.databases.iter().filter(|x| &x.name == database) {
                        db_down.extend(db.roles.iter().map(|r| crate::world::role(*r)));
                    }
                }
                FaultKind::Crash { .. } | FaultKind::ClusterDown { .. } => {}
            }
        }
        drop(f);
        for r in [Role::User, Role::Apim, Role::Registry] {
            d.storage.set_down(r, db_down.contains(&r));
        }
    }

    fn crashed_by(&self, k: &FaultKind) -> Vec<usize> {
        let d = &self.d;
        match k {
            FaultKind::Crash { node } => d.node_id(node).into_iter().collect(),
            FaultKind::ClusterDown { cluster } => d
                .plan
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| &n.cluster == cluster)
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        }
    }

    async fn fault(self: Arc<Self>, f: Fault) {
        let start = *guard(&self.start_us);
        let end = start + self.scenario.workload.duration_ms * 1000;
        let at = start + f.at_ms * 1000;
        self.d.exec.sleep(at.saturating_sub(self.d.now_us())).await;
        guard(&self.active).push(f.kind.clone());
        for i in self.crashed_by(&f.kind) {
            self.d.crash(i);
        }
        self.apply_faults();
        let until = f.for_ms.map_or(end, |d| (at + d * 1000).min(end));
        self.d
            .exec
            .sleep(until.saturating_sub(self.d.now_us()))
            .await;
        {
            let mut active = guard(&self.active);
            if let Some(k) = active.iter().position(|k| *k == f.kind) {
                active.remove(k);
            }
        }
        let still: BTreeSet<usize> = guard(&self.active)
            .iter()
            .flat_map(|k| self.crashed_by(k))
            .collect();
        for i in self.crashed_by(&f.kind) {
            if !still.contains(&i) && !self.d.is_up(i) {
                self.d.start(i);
            }
        }
        self.apply_faults();
    }

    async fn generate(self: Arc<Self>, op: Op, rate: f64) {
        let end = *guard(&self.start_us) + self.scenario.workload.duration_ms * 1000;
        loop {
            let wait = self.d.rng().arrival_us(rate);
            if self.d.now_us().saturating_add(wait) >= end {
                break;
            }
            self.d.exec.sleep(wait).await;
            let run = self.clone();
            // Invokes are most of the work: their own small future, not the union of all ops.
            if op == Op::Invoke {
                self.d.exec.spawn(run.invoke());
            } else {
                self.d.exec.spawn(run.op(op));
            }
        }
    }

    /// Liveness: every acknowledged API answers through every gateway node, with a fresh
    /// application subscribed to all of them.
    async fn liveness(self: Arc<Self>) {
        let user = "consumer-liveness";
        let creds = json!({"username": user, "password": CONSUMER_PASSWORD});
        let _ = self
            .client(
                Component::Store,
                Request::new("POST", "/api/signup").json(&creds),
            )
            .await;
        let all: Vec<usize> = (0..guard(&self.clients).apis.len()).collect();
        let deadline = self.d.now_us() + LIVENESS_MS * 1000;
        loop {
            let ready = match self.new_app(user, &all).await {
                Ok(app) => self.token_for(app).await,
                Err(e) => Err(e),
            };
            match ready {
                Ok(()) => break,
                Err(e) if self.d.now_us() >= deadline => {
                    self.violate("liveness", format!("after the faults healed, a consumer still cannot subscribe and get a token: {e}"), Vec::new());
                    return;
                }
                Err(_) => self.d.exec.sleep(1_000_000).await,
            }
        }
        let (app, token, apis) = {
            let c = guard(&self.clients);
            let Some(a) = c.apps.last() else {
                return;
            };
            let token = a.tokens.last().map(|t| t.0.clone()).unwrap_or_default();
            (a.id.clone(), token, c.apis.clone())
        };
        for g in self.gateway_nodes() {
            let name = self.d.plan.nodes[g].name.clone();
            for (id, ctx) in &apis {
                loop {
                    let req = Request::new("GET", &format!("/{ctx}/v1/items"))
                        .header("authorization", &bearer(&token));
                    let from = self.d.node_place(g);
                    let r = self
                        .d
                        .send(
                            from,
                            Target::Node(g, Some(Peer::Gateway)),
                            req,
                            CLIENT_TIMEOUT_US,
                        )
                        .await;
                    if let Ok(r) = &r {
                        self.check_invoke(r, &token, &app, Some(id));
                    }
                    if r.as_ref().is_ok_and(|r| r.status == 200) {
                        break;
                    }
                    if self.d.now_us() >= deadline {
                        let got =
                            r.map_or_else(|e| e.to_string(), |r| format!("status {}", r.status));
                        self.violate(
                            "liveness",
                            format!("after the faults healed, API /{ctx}/v1 is still not invokable through {name} ({got})"),
                            vec![name.clone()],
                        );
                        break;
                    }
                    self.d.exec.sleep(1_000_000).await;
                }
            }
        }
    }
}

/// The size of the report's time windows: a second for short runs, coarser for long ones.
pub fn window_ms(duration_ms: u64) -> u64 {
    (duration_ms / 720).max(1000).div_ceil(1000) * 1000
}

/// Runs a scenario on a plan.
pub fn simulate(plan: &Plan, scenario: &Scenario, options: &Options) -> Outcome {
    let mut exec = Executor::default();
    let d = Deployment::new(plan.clone(), exec.handle(), options.seed, options.defects);
    for i in 0..plan.nodes.len() {
        d.start(i);
    }
    d.start_balancers();
    if let Some(w) = d.any_world() {
        d.exec.spawn(async move {
            // A failure here shows as a failed admin login in setup, with its reason.
            let _ = apim_components::auth::bootstrap_admin(w.as_ref(), ADMIN_PASSWORD).await;
        });
        exec.run_until(d.now_us());
    }
    let duration_us = scenario.workload.duration_ms * 1000;
    let entries = [
        d.entry(Component::Publisher),
        d.entry(Component::Store),
        d.entry(Component::KeyManager),
        d.entry(Component::Gateway),
    ];
    let run = Arc::new(Run {
        d: d.clone(),
        scenario: scenario.clone(),
        start_us: Mutex::new(0),
        clients: Mutex::default(),
        stats: Mutex::new(Stats::new(
            window_ms(scenario.workload.duration_ms) * 1000,
            duration_us,
        )),
        violations: Mutex::default(),
        trace: Mutex::new((0xcbf2_9ce4_8422_2325, 0)),
        active: Mutex::default(),
        entries,
    });
    let setup: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
    {
        let (run, setup) = (run.clone(), setup.clone());
        d.exec.spawn(async move {
            let r = run.setup().await;
            *guard(&setup) = Some(r);
        });
    }
    // Setup gets a generous budget, a minute at a time, so a quick one ends the wait early.
    let mut budget = 0;
    while guard(&setup).is_none() && budget < 10 {
        exec.run_until(d.now_us() + 60_000_000);
        budget += 1;
    }
    let setup_error = match guard(&setup).take() {
        Some(Ok(())) => None,
        Some(Err(e)) => Some(e),
        None => Some("setup did not finish in ten minutes of virtual time".into()),
    };
    if setup_error.is_none() {
        // Let health checks see every node before the clock starts.
        exec.run_until(d.now_us() + 5_000_000);
        let start = d.now_us();
        *guard(&run.start_us) = start;
        for f in &scenario.faults {
            d.exec.spawn(run.clone().fault(f.clone()));
        }
        let w = &scenario.workload;
        for (op, rate) in [
            (Op::Publish, w.publish_rate),
            (Op::Subscribe, w.subscribe_rate),
            (Op::Token, w.token_rate),
            (Op::Invoke, w.invoke_rate),
            (Op::Revoke, w.revoke_rate),
        ] {
            if rate > 0.0 {
                d.exec.spawn(run.clone().generate(op, rate));
            }
        }
        exec.run_until(start + duration_us);
        // Faults end with the workload; requests in flight finish while things settle.
        exec.run_until(start + duration_us + SETTLE_MS * 1000);
        let done = Arc::new(Mutex::new(false));
        {
            let (run, done) = (run.clone(), done.clone());
            d.exec.spawn(async move {
                run.liveness().await;
                *guard(&done) = true;
            });
        }
        let limit = d.now_us() + (LIVENESS_MS + 120_000) * 1000;
        while !*guard(&done) && d.now_us() < limit {
            exec.run_until(d.now_us() + 1_000_000);
        }
    }
    let virtual_ms = d.now_us() / 1000;
    d.shut_down();
    drop(exec);
    let stats = guard(&run.stats).clone();
    let mut violations = guard(&run.violations).clone();
    violations.sort();
    let (trace_hash, events) = *guard(&run.trace);
    Outcome {
        stats,
        violations,
        setup_error,
        trace_hash,
        events,
        virtual_ms,
    }
}
