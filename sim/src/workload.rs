//! The workload and its judge, in any world: set the deployment up, run the clients under the
//! fault schedule, watch the invariants, then check that everything recovers once the faults
//! have healed. The simulator runs it in virtual time, the drill in wall time
//! (`crate::driver`): the same requests, the same probes, the same oracle.
//!
//! The workload exercises every rule the oracle states: besides publishing, subscribing,
//! token requests, API calls and revocations, it renews tokens as they near expiry and probes
//! with expired, revoked, forged and truncated tokens, unsubscribed and retired APIs, other
//! consumers' applications, wrong client secrets and nodes calling what they may not.

use crate::driver::{Driver, To, TokenRow};
use crate::oracle::{Call, Oracle};
use crate::scenario::{Fault, FaultKind, Scenario};
use crate::stats::{Op, Stats};
use apim_components::client::{self, NewApi, Step};
use apim_components::{Request, Response, secret};
use apim_topology::flows::Flow;
use apim_topology::vocab::Component;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

const CONSUMER_PASSWORD: &str = "sim-consumer-password";
/// After the faults heal: time for reconciliation and health checks before liveness probes.
pub const SETTLE_MS: u64 = 15_000;
/// How long an API may take to become invokable on every gateway after settling.
pub const LIVENESS_MS: u64 = 30_000;
/// Probes that must be refused, as a share of the invoke rate (on top of it).
const PROBE_SHARE: f64 = 0.05;
/// Token requests with a wrong secret: at most one a minute, so the key manager's lockout of
/// an address (30 failures in 15 minutes) never locks the workload's real clients out.
const WRONG_SECRET_EVERY_MS: u64 = 60_000;
/// After a repair, each flow is tried this often until it works: the recovery time's
/// resolution.
pub const RECOVERY_PROBE_MS: u64 = 250;
/// The operations that try each flow after a repair.
const RECOVERY_OPS: [Op; 3] = [Op::Publish, Op::Subscribe, Op::Invoke];
/// A node turns hostile at most this often (virtual time).
const HOSTILE_EVERY_MS: u64 = 1_000;
/// Revoked tokens kept for later probes.
const REVOKED_KEPT: usize = 16;
const MAX_VIOLATIONS: usize = 1000;
/// Sessions whose sticky cookie clients keep at most.
const JAR_BOUND: usize = 10_000;
/// Retirement is judged only where the workload asks (at once on the gateways the publisher
/// told, and after the faults healed); elsewhere a gateway that missed it serves until it
/// reconciles.
const NOT_JUDGED: u64 = u64::MAX / 4;

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
    /// Under the available revocation policy: revoked tokens served past the bound.
    pub revoked_served: RevokedServed,
    /// What the APIs' backend was asked.
    pub backend: crate::world::BackendRequests,
    /// What the gateways asked of the key managers, where the world counts it.
    pub key_managers: Option<crate::world::KeyManagerLoad>,
    /// Per fault (its index in the scenario) and flow: how long after the repair the first
    /// request of the flow that then succeeded was sent (the recovery probes').
    pub recovered: BTreeMap<(usize, Flow), u64>,
}

/// A token as its client holds it.
#[derive(Clone, Debug)]
struct Held {
    token: String,
    hash: String,
    /// When the client got it plus its lifetime: never before the key manager's expiry.
    expires_ms: u64,
}

struct App {
    id: String,
    owner: String,
    key: String,
    secret: String,
    /// Indexes into `Clients::apis` of its acknowledged subscriptions.
    apis: Vec<usize>,
    token: Option<Held>,
    /// Tokens it held before (renewed), for probes once they expire.
    old: Vec<Held>,
    renewing: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    Published,
    Deprecated,
    /// Being retired, or retired: no longer called by the workload.
    Retiring,
}

struct ApiRec {
    id: String,
    context: String,
    state: Lifecycle,
}

#[derive(Default)]
struct Clients {
    provider: String,
    apis: Vec<ApiRec>,
    draft: String,
    apps: Vec<App>,
    next: u64,
    /// An application whose keys only ever see wrong secrets.
    probe_app: Option<usize>,
    last_wrong_secret_ms: Option<u64>,
    /// Revoked tokens: (token, index of its application).
    revoked: Vec<(Held, usize)>,
    /// Hashes of the latest tokens whose revocation the workload asked for, acknowledged or
    /// not yet: a gateway may refuse one before the acknowledgement reaches its client.
    revoking: std::collections::VecDeque<String>,
    oracle: Oracle,
}

impl Clients {
    fn invokable(&self, api: usize) -> bool {
        self.apis
            .get(api)
            .is_some_and(|a| a.state != Lifecycle::Retiring)
    }
}

/// Why an operation failed: what the report counts (the step and its answer's status, or
/// `no answer`), and what a person reads (with the answer's body or the transport's error).
struct Failed {
    kind: String,
    detail: String,
}

impl Failed {
    fn refused(step: &str, r: &Response) -> Failed {
        Failed {
            kind: format!("{step} {}", r.status),
            detail: format!(
                "{step} answered {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
        }
    }

    fn unanswered(step: &str, e: String) -> Failed {
        Failed {
            kind: format!("{step} no answer"),
            detail: format!("{step}: {e}"),
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl From<Failed> for String {
    fn from(f: Failed) -> String {
        f.detail
    }
}

pub struct Workload<D: Driver> {
    d: D,
    scenario: Scenario,
    admin_password: String,
    start_us: Mutex<u64>,
    clients: Mutex<Clients>,
    stats: Mutex<Stats>,
    violations: Mutex<Vec<Violation>>,
    trace: Mutex<(u64, u64)>,
    /// Invokes started: which are writes follows from the count (`client::is_write`).
    invoked: Mutex<u64>,
    /// The sticky cookie per (component, session).
    jar: Mutex<std::collections::BTreeMap<(usize, String), String>>,
    /// The deployment's revocation policy lets a cut-off gateway serve revoked tokens.
    available: bool,
    /// Revoked tokens served past the bound, under the available policy: not violations,
    /// but what the policy cost.
    late: Mutex<RevokedServed>,
    /// When a node last turned hostile (`probe_compromised_node`): at most once a virtual
    /// second, so that the probe costs the same whatever the invoke rate.
    hostile_ms: Mutex<Option<u64>>,
    /// In the names of the workload's users and APIs: a workload against a deployment that
    /// already served one (`apim up --smoke` twice) uses names of its own.
    tag: String,
    /// What the recovery probes found: see `Outcome::recovered`.
    recovered: Mutex<BTreeMap<(usize, Flow), u64>>,
}

/// Revoked tokens a gateway served after the revocation bound had passed (the available
/// policy's price): how many calls, and the longest time after the acknowledgement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RevokedServed {
    pub calls: u64,
    pub longest_ms: u64,
}

/// How long after its acknowledgement a revocation, and a retirement, may go unenforced.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    revocation_ms: u64,
    retirement_ms: u64,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ok2xx(r: &Result<Response, String>) -> bool {
    r.as_ref().is_ok_and(|r| (200..300).contains(&r.status))
}

impl<D: Driver> Workload<D> {
    /// The workload of `scenario` in the world of `d`, whose admin signs in with
    /// `admin_password`.
    pub fn new(d: D, scenario: &Scenario, admin_password: &str) -> Workload<D> {
        let w = &scenario.workload;
        let available = d
            .plan()
            .nodes
            .iter()
            .any(|n| n.tokens.revocation == apim_topology::vocab::Revocation::Available);
        Workload {
            d,
            scenario: scenario.clone(),
            admin_password: admin_password.to_string(),
            start_us: Mutex::new(0),
            clients: Mutex::default(),
            stats: Mutex::new(Stats::new(
                window_ms(w.duration_ms) * 1000,
                w.duration_ms * 1000,
            )),
            violations: Mutex::default(),
            trace: Mutex::new((0xcbf2_9ce4_8422_2325, 0)),
            invoked: Mutex::new(0),
            jar: Mutex::default(),
            available,
            late: Mutex::default(),
            hostile_ms: Mutex::default(),
            tag: String::new(),
            recovered: Mutex::default(),
        }
    }

    /// The same workload, with `tag` in the names of its users and APIs (`consumer{tag}-0`,
    /// `/sim{tag}-1/v1`).
    pub fn tagged(mut self, tag: &str) -> Workload<D> {
        self.tag = tag.to_string();
        self
    }

    pub fn driver(&self) -> &D {
        &self.d
    }

    fn elapsed_us(&self) -> u64 {
        self.d.now_us().saturating_sub(*guard(&self.start_us))
    }

    /// A client request to a component's entry. As a browser keeps a site's cookies, a
    /// session keeps the sticky cookie its balancer set: a request sends the one set on its
    /// session's last answer (a sign-in's answer sets it for the session it opens).
    async fn client(&self, c: Component, mut req: Request) -> Result<Response, String> {
        let session = req.get_header("authorization").map(String::from);
        if let Some(cookie) = session
            .as_ref()
            .and_then(|s| guard(&self.jar).get(&(c as usize, s.clone())).cloned())
        {
            req = req.header("cookie", &cookie);
        }
        let r = self.d.send(To::Entry(c), req).await;
        if let Ok(answer) = &r
            && let Some(cookie) = client::sticky_cookie(answer)
            && let Some(session) =
                session.or_else(|| client::session(answer).ok().map(|t| client::bearer(&t)))
        {
            let mut jar = guard(&self.jar);
            // Sessions come and go; a jar past its bound starts again (cookies are a hint).
            if jar.len() >= JAR_BOUND {
                jar.clear();
            }
            jar.insert((c as usize, session), cookie);
        }
        r
    }

    /// A step of an operation: the answer when it has status `want`.
    async fn step(
        &self,
        c: Component,
        req: Request,
        step: &str,
        want: u16,
    ) -> Result<Response, Failed> {
        match self.client(c, req).await {
            Ok(r) if r.status == want => Ok(r),
            Ok(r) => Err(Failed::refused(step, &r)),
            Err(e) => Err(Failed::unanswered(step, e)),
        }
    }

    /// A request straight to one gateway node.
    async fn to_gateway(&self, g: usize, req: Request) -> Result<Response, String> {
        self.d.send(To::Gateway(g), req).await
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

    /// Safety: a 200 from a gateway must keep every rule of the oracle.
    fn check_served(&self, r: &Response, call: &Call<'_>, bounds: Bounds) {
        if r.status != 200 {
            return;
        }
        let revocation_ms = self.revocation_judged(call.token_hash, call.sent_ms, bounds);
        let problem = guard(&self.clients)
            .oracle
            .served(call, revocation_ms, bounds.retirement_ms);
        if let Some(p) = problem {
            self.violate("safety", p, self.d.answered_by(r));
        }
    }

    /// The revocation bound a served call is judged by. Under the available policy a revoked
    /// token served past the bound is the policy's price, not a violation: it is counted, and
    /// the call judged on everything else. A gateway that was told must refuse at once under
    /// either policy (a bound of 0).
    fn revocation_judged(&self, token_hash: &str, sent_ms: u64, bounds: Bounds) -> u64 {
        if !self.available || bounds.revocation_ms == 0 {
            return bounds.revocation_ms;
        }
        let revoked = guard(&self.clients).oracle.revocation_of(token_hash);
        if let Some(at) = revoked
            && sent_ms > at + bounds.revocation_ms
        {
            let mut late = guard(&self.late);
            late.calls += 1;
            late.longest_ms = late.longest_ms.max(sent_ms - at);
        }
        u64::MAX
    }

    /// An API call with `token` to the API at index `api` (`None`: the draft), through the
    /// gateways' entry or straight to gateway node `g`; checked, and answered.
    async fn call_api(
        &self,
        token: &str,
        hash: Option<&str>,
        api: Option<usize>,
        g: Option<usize>,
        bounds: Bounds,
    ) -> Result<Response, String> {
        let (id, ctx) = {
            let c = guard(&self.clients);
            match api.and_then(|k| c.apis.get(k)) {
                Some(a) => (Some(a.id.clone()), a.context.clone()),
                None => (None, format!("sim{}-draft", self.tag)),
            }
        };
        let sent_ms = self.d.now_ms();
        let req = client::invoke(&ctx, "items", Some(token), false);
        let r = match g {
            Some(g) => self.to_gateway(g, req).await,
            None => self.client(Component::Gateway, req).await,
        };
        if let Ok(r) = &r
            && r.status == 200
        {
            let computed;
            let hash = match hash {
                Some(h) => h,
                None => {
                    computed = secret::hash(token);
                    &computed
                }
            };
            let call = Call {
                sent_ms,
                token_hash: hash,
                api: id.as_deref(),
            };
            self.check_served(r, &call, bounds);
        }
        r
    }

    /// Setup: the admin signs in, publishes the APIs, consumers sign up and subscribe.
    pub async fn setup(self: Arc<Self>) -> Result<(), String> {
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
        let login = client::login("admin", &self.admin_password);
        let session = client::session(&ok(
            self.client(Component::Publisher, login).await,
            "admin login",
            200,
        )?)
        .map_err(|e| format!("admin login: {e}"))?;
        guard(&self.clients).provider = session.clone();
        let draft = client::create_api(
            &session,
            &NewApi {
                name: "Draft",
                version: "v1",
                context: &format!("sim{}-draft", self.tag),
                backend: self.d.backend(),
            },
        );
        let draft = client::id(&ok(
            self.client(Component::Publisher, draft).await,
            "create a draft API",
            201,
        )?)?;
        guard(&self.clients).draft = draft;
        for _ in 0..self.scenario.workload.apis {
            self.publish_one()
                .await
                .map_err(|e| format!("setup: {e}"))?;
        }
        for k in 0..self.scenario.workload.applications {
            let user = format!("consumer{}-{k}", self.tag);
            ok(
                self.client(Component::Store, client::signup(&user, CONSUMER_PASSWORD))
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
        if self.scenario.workload.applications > 0 {
            let app = self
                .new_app(&format!("consumer{}-0", self.tag), &[])
                .await?;
            guard(&self.clients).probe_app = Some(app);
        }
        Ok(())
    }

    /// Creates and publishes an API; acknowledged publishes are checked against the databases.
    async fn publish_one(&self) -> Result<(), Failed> {
        let (session, n) = {
            let mut c = guard(&self.clients);
            c.next += 1;
            (c.provider.clone(), c.next)
        };
        let context = format!("sim{}-{n}", self.tag);
        let create = client::create_api(
            &session,
            &NewApi {
                name: &format!("Sim {n}"),
                version: "v1",
                context: &context,
                backend: self.d.backend(),
            },
        );
        let r = self
            .step(Component::Publisher, create, "create", 201)
            .await?;
        let id = client::id(&r).map_err(|_| Failed::refused("create", &r))?;
        let publish = client::lifecycle(&session, &id, Step::Publish);
        self.step(Component::Publisher, publish, "publish", 200)
            .await?;
        if self.d.published(&id) == Some(false) {
            self.violate(
                "safety",
                format!(
                    "an acknowledged publish of {id} is not in the apim database and the registry"
                ),
                Vec::new(),
            );
        }
        let mut c = guard(&self.clients);
        c.oracle.published(&id);
        c.apis.push(ApiRec {
            id,
            context,
            state: Lifecycle::Published,
        });
        Ok(())
    }

    async fn login(&self, user: &str) -> Result<String, Failed> {
        let r = self
            .step(
                Component::Store,
                client::login(user, CONSUMER_PASSWORD),
                "login",
                200,
            )
            .await?;
        client::session(&r).map_err(|_| Failed::refused("login", &r))
    }

    /// A consumer's new application, subscribed to `apis`, with keys; its index.
    async fn new_app(&self, user: &str, apis: &[usize]) -> Result<usize, Failed> {
        let session = self.login(user).await?;
        let n = {
            let mut c = guard(&self.clients);
            c.next += 1;
            c.next
        };
        let create = client::create_application(&session, &format!("app-{n}"));
        let r = self
            .step(Component::Store, create, "create application", 201)
            .await?;
        let app = client::id(&r).map_err(|_| Failed::refused("create application", &r))?;
        let mut subscribed = Vec::with_capacity(apis.len());
        for &i in apis {
            let Some(api) = ({
                let mut c = guard(&self.clients);
                let id = c.apis.get(i).map(|a| a.id.clone());
                if let Some(id) = &id {
                    c.oracle.subscribing(&app, id);
                }
                id
            }) else {
                continue;
            };
            let subscribe = client::subscribe(&session, &app, &api);
            match self
                .step(Component::Store, subscribe, "subscribe", 201)
                .await
            {
                Ok(_) => subscribed.push(i),
                // Retired since it was picked (a sign-in and a new application ago): the store
                // rightly refuses, and the application goes on without it.
                Err(f) if f.kind == "subscribe 404" && self.retiring(i) => {
                    guard(&self.clients).oracle.unsubscribing(&app, &api);
                    continue;
                }
                Err(f) => return Err(f),
            }
            if self.d.subscribed(&app, &api) == Some(false) {
                self.violate(
                    "safety",
                    format!(
                        "an acknowledged subscription of {app} to {api} is not in the apim database"
                    ),
                    Vec::new(),
                );
            }
        }
        let r = self
            .step(Component::Store, client::keys(&session, &app), "keys", 201)
            .await?;
        let client::Keys { key, secret } =
            client::keys_of(&r).map_err(|_| Failed::refused("keys", &r))?;
        let mut c = guard(&self.clients);
        c.apps.push(App {
            id: app,
            owner: user.to_string(),
            key,
            secret,
            apis: subscribed,
            token: None,
            old: Vec::new(),
            renewing: false,
        });
        Ok(c.apps.len() - 1)
    }

    /// Whether the workload has begun to retire API `k`.
    fn retiring(&self, k: usize) -> bool {
        guard(&self.clients)
            .apis
            .get(k)
            .is_some_and(|a| a.state == Lifecycle::Retiring)
    }

    /// A new token for application `i`, through the gateways (the flows table's path).
    async fn token_for(&self, i: usize) -> Result<Held, Failed> {
        let Some((key, secret)) = guard(&self.clients)
            .apps
            .get(i)
            .map(|a| (a.key.clone(), a.secret.clone()))
        else {
            return Err(Failed {
                kind: "no application".into(),
                detail: format!("no application {i}"),
            });
        };
        let r = self
            .step(
                Component::Gateway,
                client::token(&key, &secret),
                "token",
                200,
            )
            .await?;
        let client::Issued {
            token,
            lifetime_ms: lifetime,
        } = client::issued(&r).map_err(|_| Failed::refused("token", &r))?;
        let hash = secret::hash(&token);
        let app = guard(&self.clients).apps[i].id.clone();
        // The key manager's own expiry is the truth: `expires_in` is in whole seconds.
        let expires_ms = match self.d.token_row(&hash) {
            Some(Some(TokenRow {
                application,
                expires_ms,
                ..
            })) if application == app => expires_ms,
            // The client's own reckoning: `expires_in` is in whole seconds, counted from a
            // moment before the answer arrived; a second more is never before the truth.
            None => self.d.now_ms() + lifetime + 1000,
            _ => {
                self.violate(
                    "safety",
                    format!("an acknowledged token of {app} is not in the apim database"),
                    Vec::new(),
                );
                self.d.now_ms() + lifetime
            }
        };
        let held = Held {
            token,
            hash: hash.clone(),
            expires_ms,
        };
        let mut c = guard(&self.clients);
        c.oracle.issued(hash, &app, held.expires_ms);
        let a = &mut c.apps[i];
        if let Some(old) = a.token.replace(held.clone()) {
            a.old.push(old);
            if a.old.len() > 2 {
                a.old.remove(0);
            }
        }
        Ok(held)
    }

    /// The token application `i` calls with now: its own while it has a second left, renewed
    /// first when it nears expiry (as a client library does). `None`: it has none and could
    /// not get one.
    async fn usable_token(&self, i: usize) -> Option<Held> {
        let now = self.d.now_ms();
        let margin = (self.scenario.workload.token_lifetime_ms / 5).min(60_000);
        let (held, renew) = {
            let mut c = guard(&self.clients);
            let a = c.apps.get_mut(i)?;
            let held = a.token.clone().filter(|t| t.expires_ms > now + 1000);
            let soon = held.as_ref().is_none_or(|t| t.expires_ms <= now + margin);
            // One renewal at a time while the token still works; without one, every call
            // needs its own.
            let renew = soon && (held.is_none() || !a.renewing);
            if renew {
                a.renewing = true;
            }
            (held, renew)
        };
        if !renew {
            return held;
        }
        // The rare path, boxed: every invoke's future stays small (it is moved on each spawn).
        let fresh = Box::pin(self.token_for(i)).await.ok();
        if let Some(a) = guard(&self.clients).apps.get_mut(i) {
            a.renewing = false;
        }
        fresh.or(held)
    }

    /// A random application (never the wrong-secret one) with an API it may call; a few
    /// draws, so the pick stays cheap however many applications there are.
    fn pick_app(&self) -> Option<(usize, usize)> {
        let n = guard(&self.clients).apps.len() as u64;
        for _ in 0..8 {
            let i = self.d.rng().below(n) as usize;
            let c = guard(&self.clients);
            if Some(i) == c.probe_app {
                continue;
            }
            let apis = || c.apps[i].apis.iter().copied().filter(|&k| c.invokable(k));
            let n = apis().count();
            if n == 0 {
                continue;
            }
            let k = apis().nth(self.d.rng().below(n as u64) as usize)?;
            return Some((i, k));
        }
        // Rarely, every draw found an application with nothing to call (its subscription
        // ended, its APIs retired): the first one that has something, so that no call the
        // scenario asks for is lost to the draw.
        let c = guard(&self.clients);
        (0..c.apps.len())
            .filter(|&i| Some(i) != c.probe_app)
            .find_map(|i| {
                let k = c.apps[i].apis.iter().copied().find(|&k| c.invokable(k))?;
                Some((i, k))
            })
    }

    async fn op(self: Arc<Self>, op: Op) {
        let _ = self.attempt(op).await;
    }

    /// One operation, recorded: whether it succeeded (`None`: nothing was attempted).
    async fn attempt(self: Arc<Self>, op: Op) -> Option<bool> {
        let started = self.d.now_us();
        let outcome = match op {
            Op::Publish => {
                let changed = if self.d.rng().chance(self.lifecycle_share()) {
                    self.lifecycle().await
                } else {
                    None
                };
                // With no API to change, the provider publishes one.
                match changed {
                    Some(outcome) => outcome,
                    None => self.publish_one().await,
                }
            }
            Op::Subscribe => self.subscribe().await,
            Op::Token => {
                let (i, _) = self.pick_app()?;
                let outcome = self.token_for(i).await.map(|_| ());
                self.clone().token_probes(i).await;
                outcome
            }
            Op::Invoke => return self.invoked_ok().await,
            // No application holds a token to revoke: nothing was attempted.
            Op::Revoke => self.revoke().await?,
        };
        let ok = outcome.is_ok();
        self.record(op, started, ok, u16::from(ok));
        if let Err(f) = outcome {
            guard(&self.stats).failed(op, &f.kind);
        }
        Some(ok)
    }

    /// The share of the publish flow's operations that change an API's lifecycle.
    fn lifecycle_share(&self) -> f64 {
        let w = &self.scenario.workload;
        w.lifecycle_rate / (w.lifecycle_rate + w.publish_rate).max(f64::MIN_POSITIVE)
    }

    /// A new application subscribed to one API; now and then, an attempt on another
    /// consumer's application, which the store must refuse.
    async fn subscribe(&self) -> Result<(), Failed> {
        let n = self.scenario.workload.applications.max(1) as u64;
        let user = format!("consumer{}-{}", self.tag, self.d.rng().below(n));
        let api = {
            let c = guard(&self.clients);
            let open: Vec<usize> = (0..c.apis.len()).filter(|&k| c.invokable(k)).collect();
            if open.is_empty() {
                return Err(Failed {
                    kind: "no API open".into(),
                    detail: "every API the workload published is being retired".into(),
                });
            }
            open[self.d.rng().below(open.len() as u64) as usize]
        };
        let made = self.new_app(&user, &[api]).await;
        if let Ok(i) = made
            && self.d.rng().chance(0.2)
        {
            self.end_subscription(i, api).await;
        }
        if self.d.rng().chance(0.3) {
            self.cross_tenant(&user, api).await;
        }
        made.map(|_| ())
    }

    /// Ends the subscription application `i` was just made with: from then on the oracle
    /// knows it ended, and every gateway told of the end refuses the application's token for
    /// that API at once (one not told forgets it in its catch-up). The workload's own invokes
    /// never pick that application again.
    async fn end_subscription(&self, i: usize, api: usize) {
        let (app, owner, api_id) = {
            let mut c = guard(&self.clients);
            let Some(api_id) = c.apis.get(api).map(|a| a.id.clone()) else {
                return;
            };
            let a = &mut c.apps[i];
            a.apis.retain(|&k| k != api);
            let (app, owner) = (a.id.clone(), a.owner.clone());
            c.oracle.unsubscribing(&app, &api_id);
            (app, owner, api_id)
        };
        let Ok(held) = self.token_for(i).await else {
            return;
        };
        let Ok(session) = self.login(&owner).await else {
            return;
        };
        let ended = client::unsubscribe(&session, &app, &api_id);
        let Ok(r) = self.client(Component::Store, ended).await else {
            return;
        };
        if r.status != 200 {
            return;
        }
        // "all": the key manager could not be asked in time, so no gateway was told.
        let all = r
            .json_body()
            .is_some_and(|b| b["gateways_missed"].is_string());
        if all {
            return;
        }
        for g in self.told(&client::missed(&r)) {
            let _ = self
                .call_api(
                    &held.token,
                    Some(&held.hash),
                    Some(api),
                    Some(g),
                    self.bounds(),
                )
                .await;
        }
    }

    /// A node of the deployment turned hostile: it calls another node's internal endpoints
    /// that its plan (the flows table) does not admit it to, with its own certificate. Each must be
    /// refused (403), whatever the request says.
    async fn probe_compromised_node(&self) {
        let n = self.d.plan().nodes.len() as u64;
        if n < 2 {
            return;
        }
        let from = self.d.rng().below(n) as usize;
        let to = (from + 1 + self.d.rng().below(n - 1) as usize) % n as usize;
        let (caller, target) = (&self.d.plan().nodes[from], &self.d.plan().nodes[to]);
        let endpoints: BTreeSet<&str> = target
            .internal
            .iter()
            .filter(|e| !e.callers.contains(&caller.identity))
            .map(|e| e.endpoint.as_str())
            .collect();
        for e in endpoints {
            let (method, path) = e.split_once(' ').unwrap_or(("POST", e));
            let req = Request::new(method, path).json(&serde_json::json!({}));
            let sent = self.d.send(To::Internal { from, to }, req).await;
            if let Ok(r) = sent
                && r.status != 403
            {
                self.violate(
                    "safety",
                    format!(
                        "node {} answered {} to `{e}` from node {}, which the flows table does not admit",
                        target.name, r.status, caller.name
                    ),
                    vec![target.name.clone()],
                );
            }
        }
    }

    /// A client on the public side calls what only nodes may: an internal endpoint on a
    /// component's public entry (there is none there), and introspection without client
    /// credentials. Neither may succeed.
    async fn probe_public_side(&self) {
        const ENTRIES: [Component; 4] = [
            Component::Publisher,
            Component::Store,
            Component::KeyManager,
            Component::Gateway,
        ];
        let c = ENTRIES[self.d.rng().below(ENTRIES.len() as u64) as usize];
        let (method, path) = apim_components::wire::INTERNAL[self
            .d
            .rng()
            .below(apim_components::wire::INTERNAL.len() as u64)
            as usize];
        let req = Request::new(method, path).json(&serde_json::json!({}));
        let pushed = self.client(c, req).await;
        if ok2xx(&pushed) {
            self.violate(
                "safety",
                format!("the {c}'s public entry answered a client's `{method} {path}`"),
                Vec::new(),
            );
        }
        let token = {
            let c = guard(&self.clients);
            c.apps
                .iter()
                .find_map(|a| a.token.as_ref().map(|t| t.token.clone()))
        };
        let Some(token) = token else {
            return;
        };
        let req =
            Request::new("POST", apim_components::wire::INTROSPECT).form(&[("token", &token)]);
        let r = self.client(Component::Gateway, req).await;
        if ok2xx(&r) {
            self.violate(
                "safety",
                "a token was introspected without client credentials".into(),
                Vec::new(),
            );
        }
    }

    /// `user` tries to subscribe another consumer's application and to get its keys.
    async fn cross_tenant(&self, user: &str, api: usize) {
        let (victim, api_id) = {
            let c = guard(&self.clients);
            let others: Vec<&App> = c.apps.iter().filter(|a| a.owner != user).collect();
            if others.is_empty() {
                return;
            }
            let v = others[self.d.rng().below(others.len() as u64) as usize];
            let Some(api) = c.apis.get(api) else {
                return;
            };
            ((v.id.clone(), v.owner.clone()), api.id.clone())
        };
        let Ok(session) = self.login(user).await else {
            return;
        };
        let sub = client::subscribe(&session, &victim.0, &api_id);
        let subscribed = self.client(Component::Store, sub).await;
        let keyed = self
            .client(Component::Store, client::keys(&session, &victim.0))
            .await;
        for (what, r) in [("subscribe", subscribed), ("get keys for", keyed)] {
            if ok2xx(&r) {
                self.violate(
                    "safety",
                    format!(
                        "the store let {user} {what} application {} of {}",
                        victim.0, victim.1
                    ),
                    Vec::new(),
                );
            }
        }
    }

    /// After a token request: a wrong secret now and then (refused), and introspection of the
    /// application's own token and of another's (which must not be called active).
    async fn token_probes(self: Arc<Self>, i: usize) {
        let now = self.d.now_ms();
        let wrong = {
            let mut c = guard(&self.clients);
            let due = c
                .last_wrong_secret_ms
                .is_none_or(|t| now >= t + WRONG_SECRET_EVERY_MS);
            match c.probe_app {
                Some(p) if due => {
                    c.last_wrong_secret_ms = Some(now);
                    Some(c.apps[p].key.clone())
                }
                _ => None,
            }
        };
        if let Some(key) = wrong {
            let req = client::token(&key, "not-the-secret");
            let r = self.client(Component::Gateway, req).await;
            if r.as_ref().is_ok_and(|r| r.status == 200) {
                self.violate(
                    "safety",
                    "a token was issued for a wrong client secret".into(),
                    Vec::new(),
                );
            }
        }
        if !self.d.rng().chance(0.25) {
            return;
        }
        let asks = {
            let c = guard(&self.clients);
            let Some(a) = c.apps.get(i) else {
                return;
            };
            let j = self.d.rng().below(c.apps.len() as u64) as usize;
            // And its own latest token that has expired, if it kept one: never active again.
            let expired = a.old.iter().rev().find(|t| t.expires_ms <= now);
            [Some(a), c.apps.get(j)]
                .into_iter()
                .flatten()
                .filter_map(|b| b.token.as_ref().map(|t| t.token.clone()))
                .chain(expired.map(|t| t.token.clone()))
                .map(|t| (a.id.clone(), a.key.clone(), a.secret.clone(), t))
                .collect::<Vec<_>>()
        };
        for (app, key, secret, token) in asks {
            let sent_ms = self.d.now_ms();
            let req = client::introspect(&key, &secret, &token);
            let Ok(r) = self.client(Component::Gateway, req).await else {
                continue;
            };
            let active = r.status == 200 && client::active(&r) == Ok(true);
            if active {
                let problem = guard(&self.clients).oracle.introspected_active(
                    sent_ms,
                    &secret::hash(&token),
                    &app,
                );
                if let Some(p) = problem {
                    self.violate("safety", p, Vec::new());
                }
            }
        }
    }

    /// An API call with a token and subscription of the workload's own. Every call the
    /// scenario asks for is an attempt: one that cannot get a token has failed.
    async fn invoke(self: Arc<Self>) {
        let _ = self.invoked_ok().await;
    }

    /// One invoke: whether it succeeded (`None`: refused for a revocation the workload asked
    /// for, which is no failure).
    async fn invoked_ok(self: Arc<Self>) -> Option<bool> {
        let started = self.d.now_us();
        let write = {
            let mut n = guard(&self.invoked);
            *n += 1;
            client::is_write(*n - 1, self.scenario.workload.invoke_writes)
        };
        let Some((i, api)) = self.pick_app() else {
            self.record(Op::Invoke, started, false, 0);
            self.invoke_failed("no application");
            return Some(false);
        };
        let Some(held) = self.usable_token(i).await else {
            self.record(Op::Invoke, started, false, 0);
            self.invoke_failed("no token");
            return Some(false);
        };
        let context = guard(&self.clients).apis[api].context.clone();
        let sent_ms = self.d.now_ms();
        let req = client::invoke(&context, "items", Some(&held.token), write);
        let r = self.client(Component::Gateway, req).await;
        let status = r.as_ref().map_or(0, |r| r.status);
        if let Ok(r) = &r
            && status == 200
        {
            let bound = self.revocation_judged(&held.hash, sent_ms, self.bounds());
            let problem =
                guard(&self.clients)
                    .oracle
                    .served_own(sent_ms, &held.hash, held.expires_ms, bound);
            if let Some(p) = problem {
                self.violate("safety", p, self.d.answered_by(r));
            }
        }
        // The workload asked to revoke this token while the call was on its way: refusing it
        // is right, and no failure of the deployment — also before the acknowledgement came
        // back (the key manager tells the gateways first).
        if status == 401 && {
            let c = guard(&self.clients);
            c.revoking.contains(&held.hash)
                || c.oracle
                    .revocation_of(&held.hash)
                    .is_some_and(|at| at <= self.d.now_ms())
        } {
            return None;
        }
        self.record(Op::Invoke, started, status == 200, status);
        if status != 200 {
            self.invoke_failed(failure_name(status));
        }
        Some(status == 200)
    }

    fn invoke_failed(&self, why: &'static str) {
        guard(&self.stats).failed(Op::Invoke, why);
    }

    /// Revokes an application's token in use, through the gateways as the flows table says.
    /// The gateways the key manager told must refuse it at once; every gateway past the bound.
    async fn revoke(self: &Arc<Self>) -> Option<Result<(), Failed>> {
        let (i, api, key, secret, held) = (0..8).find_map(|_| {
            let (i, api) = self.pick_app()?;
            let c = guard(&self.clients);
            let a = &c.apps[i];
            let t = a.token.clone()?;
            Some((i, api, a.key.clone(), a.secret.clone(), t))
        })?;
        Some(self.revoke_token(i, api, key, secret, held).await)
    }

    async fn revoke_token(
        self: &Arc<Self>,
        i: usize,
        api: usize,
        key: String,
        secret: String,
        held: Held,
    ) -> Result<(), Failed> {
        {
            let mut c = guard(&self.clients);
            c.revoking.push_back(held.hash.clone());
            if c.revoking.len() > REVOKED_KEPT {
                c.revoking.pop_front();
            }
        }
        let req = client::revoke(&key, &secret, &held.token);
        let r = self.step(Component::Gateway, req, "revoke", 200).await?;
        let acked_ms = self.d.now_ms();
        match self.d.token_row(&held.hash) {
            Some(Some(TokenRow { revoked: true, .. })) | None => {}
            _ => self.violate(
                "safety",
                "an acknowledged revocation is not in the apim database".into(),
                Vec::new(),
            ),
        }
        {
            let mut c = guard(&self.clients);
            c.oracle.revoked(&held.hash, acked_ms);
            if c.apps[i]
                .token
                .as_ref()
                .is_some_and(|t| t.hash == held.hash)
            {
                c.apps[i].token = None;
            }
            c.revoked.push((held.clone(), i));
            if c.revoked.len() > REVOKED_KEPT {
                c.revoked.remove(0);
            }
        }
        let told = self.told(&client::missed(&r));
        let run = self.clone();
        self.d.spawn(async move {
            run.probe_revoked(held.token, api, told).await;
        });
        Ok(())
    }

    /// Gateway nodes not named in `missed`.
    fn told(&self, missed: &[String]) -> Vec<usize> {
        self.gateway_nodes()
            .into_iter()
            .filter(|&g| !missed.contains(&self.d.plan().nodes[g].name))
            .collect()
    }

    /// A revoked token: refused at once by the gateways told, and by every gateway once the
    /// bound has passed.
    async fn probe_revoked(&self, token: String, api: usize, told: Vec<usize>) {
        // Told means told: a 200 now breaks the push's promise, within the bound or not.
        let at_once = Bounds {
            revocation_ms: 0,
            ..self.bounds()
        };
        for g in told {
            let _ = self
                .call_api(&token, None, Some(api), Some(g), at_once)
                .await;
        }
        self.d.sleep(self.revocation_bound_ms() * 1000 + 1).await;
        for g in self.gateway_nodes() {
            let _ = self
                .call_api(&token, None, Some(api), Some(g), self.bounds())
                .await;
        }
    }

    /// The bounds regular calls are judged by.
    fn bounds(&self) -> Bounds {
        Bounds {
            revocation_ms: self.revocation_bound_ms(),
            retirement_ms: NOT_JUDGED,
        }
    }

    /// The revocation bound: the scenario's, or the deployment's own when that is longer
    /// (`[deployment] revocation_bound_ms`: what its gateways promise).
    fn revocation_bound_ms(&self) -> u64 {
        let promised = self
            .d
            .plan()
            .nodes
            .iter()
            .map(|n| n.tokens.revocation_bound_ms);
        promised
            .max()
            .unwrap_or(0)
            .max(self.scenario.workload.revocation_bound_ms)
    }

    fn gateway_nodes(&self) -> Vec<usize> {
        self.d
            .plan()
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

    /// Updates, deprecates or retires an API (never the first, nor below two callable ones).
    /// A retirement must be enforced at once by the gateways the publisher told.
    async fn lifecycle(self: &Arc<Self>) -> Option<Result<(), Failed>> {
        let picked = {
            let c = guard(&self.clients);
            let open: Vec<usize> = (1..c.apis.len()).filter(|&k| c.invokable(k)).collect();
            if open.is_empty() {
                None
            } else {
                let k = open[self.d.rng().below(open.len() as u64) as usize];
                let may_retire = open.len() >= 2;
                Some((
                    k,
                    c.apis[k].id.clone(),
                    c.apis[k].state,
                    may_retire,
                    c.provider.clone(),
                ))
            }
        };
        let (k, id, state, may_retire, session) = picked?;
        let action = match (state, self.d.rng().below(3)) {
            (_, 0) => "update",
            (Lifecycle::Published, 1) => "deprecate",
            _ if may_retire => "retire",
            _ => "update",
        };
        let req = match action {
            "update" => {
                client::update_api(&session, &id, &format!("changed at {} ms", self.d.now_ms()))
            }
            "deprecate" => client::lifecycle(&session, &id, Step::Deprecate),
            _ => client::lifecycle(&session, &id, Step::Retire),
        };
        if action == "retire" {
            // The workload stops calling it before asking: a call in flight is not a probe.
            guard(&self.clients).apis[k].state = Lifecycle::Retiring;
        }
        let r = match self.step(Component::Publisher, req, action, 200).await {
            Ok(r) => r,
            Err(f) => return Some(Err(f)),
        };
        let now = self.d.now_ms();
        match action {
            "deprecate" => {
                let mut c = guard(&self.clients);
                if c.apis[k].state == Lifecycle::Published {
                    c.apis[k].state = Lifecycle::Deprecated;
                }
            }
            "retire" => {
                guard(&self.clients).oracle.retired(&id, now);
                let told = self.told(&client::missed(&r));
                let run = self.clone();
                self.d
                    .spawn(async move { run.probe_retired(k, told).await });
            }
            _ => {}
        }
        Some(Ok(()))
    }

    /// Calls a retired API with a subscribed application's token on each gateway in `on`:
    /// any 200 sent after the retirement was acknowledged is a violation.
    async fn probe_retired(&self, api: usize, on: Vec<usize>) {
        let app = {
            let c = guard(&self.clients);
            (0..c.apps.len()).find(|&j| Some(j) != c.probe_app && c.apps[j].apis.contains(&api))
        };
        let Some(i) = app else {
            return;
        };
        let Some(held) = self.usable_token(i).await else {
            return;
        };
        let at_once = Bounds {
            retirement_ms: 0,
            ..self.bounds()
        };
        for g in on {
            let _ = self
                .call_api(&held.token, Some(&held.hash), Some(api), Some(g), at_once)
                .await;
        }
    }

    /// An invoke that must be refused: an unsubscribed API, an unpublished one, a forged, a
    /// truncated, an expired or a revoked token on an API the application is subscribed to.
    async fn probe(&self) {
        let Some((i, api)) = self.pick_app() else {
            return;
        };
        let now = self.d.now_ms();
        let kind = self.d.rng().below(7);
        if kind == 5 {
            self.probe_recently_revoked().await;
            return;
        }
        if kind == 6 {
            let now = self.d.now_ms();
            {
                let mut last = guard(&self.hostile_ms);
                if last.is_some_and(|t| now < t + HOSTILE_EVERY_MS) {
                    return;
                }
                *last = Some(now);
            }
            self.probe_compromised_node().await;
            self.probe_public_side().await;
            return;
        }
        let forgery = self.d.rng().below(client::FORGERIES);
        let (token, target) = {
            let c = guard(&self.clients);
            let a = &c.apps[i];
            let current = a.token.as_ref().map(|t| t.token.clone());
            match kind {
                0 => {
                    let unsubscribed = (0..c.apis.len()).find(|&k| {
                        c.invokable(k) && !c.oracle.is_subscribing(&a.id, &c.apis[k].id)
                    });
                    (current, unsubscribed.map(Some))
                }
                1 => (current, Some(None)),
                2 => (
                    current.map(|t| client::forgery(&t, forgery)),
                    Some(Some(api)),
                ),
                3 => (
                    current.map(|t| t[..t.len().saturating_sub(1)].to_string()),
                    Some(Some(api)),
                ),
                4 => (
                    a.old
                        .iter()
                        .find(|t| t.expires_ms <= now)
                        .map(|t| t.token.clone()),
                    Some(Some(api)),
                ),
                _ => (None, None),
            }
        };
        let Some((token, api)) = token.zip(target) else {
            return;
        };
        let _ = self.call_api(&token, None, api, None, self.bounds()).await;
    }

    /// The latest revoked tokens (those a gateway cut off just now may have missed), through
    /// the balancer and straight to every gateway node, as clients that resolved one would: a
    /// gateway the balancer has not taken back yet is probed as well.
    async fn probe_recently_revoked(&self) {
        let recent: Vec<(String, usize)> = {
            let c = guard(&self.clients);
            c.revoked
                .iter()
                .rev()
                .take(3)
                .filter_map(|(t, j)| {
                    let k = c.apps[*j].apis.iter().copied().find(|&k| c.invokable(k))?;
                    Some((t.token.clone(), k))
                })
                .collect()
        };
        for (token, api) in recent {
            let _ = self
                .call_api(&token, None, Some(api), None, self.bounds())
                .await;
            for g in self.gateway_nodes() {
                let _ = self
                    .call_api(&token, None, Some(api), Some(g), self.bounds())
                    .await;
            }
        }
    }

    /// The `k`th fault: made at its time, repaired when it ends or the workload does.
    async fn fault(self: Arc<Self>, k: usize, f: Fault) {
        let start = *guard(&self.start_us);
        let end = start + self.scenario.workload.duration_ms * 1000;
        let at = start + f.at_ms * 1000;
        self.d.sleep(at.saturating_sub(self.d.now_us())).await;
        self.d.begin(k, &f.kind).await;
        let until = f.for_ms.map_or(end, |d| (at + d * 1000).min(end));
        let grace = crate::report::grace_of(self.d.plan(), &f.kind);
        self.d.spawn(self.clone().witness(at, until, grace));
        if let FaultKind::RollingRestart {
            cluster,
            drain_ms,
            pause_ms,
        } = &f.kind
        {
            self.d.roll(cluster, *drain_ms, *pause_ms).await;
        }
        self.d.sleep(until.saturating_sub(self.d.now_us())).await;
        self.d.end(k, &f.kind).await;
        // Until the next fault starts, or the workload ends.
        let next = self
            .scenario
            .faults
            .iter()
            .map(|g| start + g.at_ms * 1000)
            .filter(|&a| a > at)
            .min()
            .unwrap_or(end)
            .min(end);
        for op in RECOVERY_OPS {
            self.d.spawn(self.clone().recovery(k, op, until, next));
        }
    }

    /// After fault `k`'s repair at `repaired_us`: an operation of `op`'s flow every
    /// [`RECOVERY_PROBE_MS`] until one succeeds (or `until_us`), whatever the workload's rates.
    /// The first success's send time, from the repair, is the flow's recovery time: measured
    /// alike in both worlds, finer than the report's windows, and not left to when the next
    /// request of a sparse flow happens to come.
    async fn recovery(self: Arc<Self>, k: usize, op: Op, repaired_us: u64, until_us: u64) {
        let Some(flow) = op.flow() else {
            return;
        };
        let mut next = repaired_us;
        while next < until_us && !guard(&self.recovered).contains_key(&(k, flow)) {
            self.d.sleep(next.saturating_sub(self.d.now_us())).await;
            let run = self.clone();
            self.d.spawn(async move {
                let sent = run.d.now_us();
                if run.clone().attempt(op).await == Some(true) {
                    let after_ms = sent.saturating_sub(repaired_us) / 1000;
                    let mut r = guard(&run.recovered);
                    let e = r.entry((k, flow)).or_insert(after_ms);
                    *e = (*e).min(after_ms);
                }
            });
            next += RECOVERY_PROBE_MS * 1000;
        }
    }

    /// One operation of every flow in the middle of a fault's judged window (the detection
    /// time after it starts to the detection time before it ends), whatever the rates: so
    /// that every flow has a verdict for every fault, in both worlds, and a drill's verdicts
    /// can all be compared with the simulator's.
    async fn witness(self: Arc<Self>, at_us: u64, until_us: u64, grace: crate::report::Grace) {
        let (from, to) = (
            at_us + grace.start_ms * 1000,
            until_us.saturating_sub(grace.end_ms * 1000),
        );
        if to <= from {
            return;
        }
        self.d
            .sleep((from + (to - from) / 2).saturating_sub(self.d.now_us()))
            .await;
        for op in [Op::Publish, Op::Subscribe, Op::Token] {
            self.d.spawn(self.clone().op(op));
        }
        self.d.spawn(self.clone().invoke());
    }

    /// Starts the clock, the faults at their times and the clients at the scenario's rates;
    /// every request is spawned, and the clients stop at the workload's end.
    pub fn start(self: &Arc<Self>) {
        *guard(&self.start_us) = self.d.now_us();
        for (k, f) in self.scenario.faults.iter().enumerate() {
            self.d.spawn(self.clone().fault(k, f.clone()));
        }
        let w = &self.scenario.workload;
        for (op, rate) in [
            // Lifecycle changes are operations of the publish flow.
            (Some(Op::Publish), w.publish_rate + w.lifecycle_rate),
            (Some(Op::Subscribe), w.subscribe_rate),
            (Some(Op::Token), w.token_rate),
            (Some(Op::Invoke), w.invoke_rate),
            (Some(Op::Revoke), w.revoke_rate),
            // Probes come on top of the invokes asked for, which are all counted.
            (None, w.invoke_rate * PROBE_SHARE),
        ] {
            if rate > 0.0 {
                self.d.spawn(self.clone().generate(op, rate));
            }
        }
    }

    /// When the workload started, on the world's clock.
    pub fn started_us(&self) -> u64 {
        *guard(&self.start_us)
    }

    /// What the clients saw; `backend` is what the world's backend counted.
    pub fn outcome(
        &self,
        setup_error: Option<String>,
        virtual_ms: u64,
        backend: crate::world::BackendRequests,
        key_managers: Option<crate::world::KeyManagerLoad>,
    ) -> Outcome {
        let stats = guard(&self.stats).clone();
        let mut violations = guard(&self.violations).clone();
        violations.sort();
        let (trace_hash, events) = *guard(&self.trace);
        Outcome {
            stats,
            violations,
            setup_error,
            trace_hash,
            events,
            virtual_ms,
            revoked_served: *guard(&self.late),
            backend,
            key_managers,
            recovered: guard(&self.recovered).clone(),
        }
    }

    /// Starts `op` (`None`: a probe) at random times, `rate` a second on average.
    async fn generate(self: Arc<Self>, op: Option<Op>, rate: f64) {
        let end = *guard(&self.start_us) + self.scenario.workload.duration_ms * 1000;
        // Arrivals are reckoned from the previous one, not from when the sleep ended: a real
        // clock's sleeps run late, and the rate must not drop with them.
        let mut next = self.d.now_us();
        loop {
            next = next.saturating_add(self.d.rng().arrival_us(rate));
            if next >= end {
                break;
            }
            self.d.sleep(next.saturating_sub(self.d.now_us())).await;
            let run = self.clone();
            // Invokes are most of the work: their own small future, not the union of all ops.
            match op {
                Some(Op::Invoke) => self.d.spawn(run.invoke()),
                Some(op) => self.d.spawn(run.op(op)),
                None => self.d.spawn(async move { run.probe().await }),
            }
        }
    }

    /// Liveness: within `within_us`, every acknowledged API answers through every gateway
    /// node, with a fresh application subscribed to all of them; and no gateway still routes a
    /// retired one.
    pub async fn liveness(self: Arc<Self>, within_us: u64) {
        let user = &format!("consumer{}-liveness", self.tag);
        let _ = self
            .client(Component::Store, client::signup(user, CONSUMER_PASSWORD))
            .await;
        let (open, retired): (Vec<usize>, Vec<usize>) = {
            let c = guard(&self.clients);
            let open = (0..c.apis.len()).filter(|&k| c.invokable(k)).collect();
            let retired = (0..c.apis.len())
                .filter(|&k| c.oracle.retired_at(&c.apis[k].id).is_some())
                .collect();
            (open, retired)
        };
        let deadline = self.d.now_us() + within_us;
        let app = loop {
            let ready = match self.new_app(user, &open).await {
                Ok(app) => self.token_for(app).await.map(|_| app),
                Err(e) => Err(e),
            };
            match ready {
                Ok(app) => break app,
                Err(e) if self.d.now_us() >= deadline => {
                    self.violate("liveness", format!("after the faults healed, a consumer still cannot subscribe and get a token: {e}"), Vec::new());
                    return;
                }
                Err(_) => self.d.sleep(1_000_000).await,
            }
        };
        for g in self.gateway_nodes() {
            let name = self.d.plan().nodes[g].name.clone();
            for &k in &open {
                loop {
                    // Renewed as any client's is: the checks may outlast a token.
                    let r = match self.usable_token(app).await {
                        Some(held) => {
                            self.call_api(
                                &held.token,
                                Some(&held.hash),
                                Some(k),
                                Some(g),
                                self.bounds(),
                            )
                            .await
                        }
                        None => Err("no token".to_string()),
                    };
                    if r.as_ref().is_ok_and(|r| r.status == 200) {
                        break;
                    }
                    if self.d.now_us() >= deadline {
                        let ctx = guard(&self.clients).apis[k].context.clone();
                        let got = r.map_or_else(|e| e, |r| format!("status {}", r.status));
                        self.violate(
                            "liveness",
                            format!("after the faults healed, API /{ctx}/v1 is still not invokable through {name} ({got})"),
                            vec![name.clone()],
                        );
                        break;
                    }
                    self.d.sleep(1_000_000).await;
                }
            }
        }
        let all = self.gateway_nodes();
        for k in retired {
            self.probe_retired(k, all.clone()).await;
        }
    }
}

/// The size of the report's time windows: a second for short runs, coarser for long ones.
pub fn window_ms(duration_ms: u64) -> u64 {
    (duration_ms / 720).max(1000).div_ceil(1000) * 1000
}

/// How a failed API call's answer is counted in the report.
fn failure_name(status: u16) -> &'static str {
    match status {
        0 => "no answer",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other status",
    }
}
