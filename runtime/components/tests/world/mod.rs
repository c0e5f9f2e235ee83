//! The in-process world of the component tests: nodes call each other directly, the databases
//! are in memory, the backend echoes; and the steps every flow test takes.
#![allow(dead_code, unused_imports)]

pub use apim_components::jwt::Jwks;
pub use apim_components::mem::{MemStorage, Role};
pub use apim_components::node::InternalRoute;
pub use apim_components::tokens::{Revocation, TokenFormat, Tokens};
pub use apim_components::world::{CallError, Peer, World};
pub use apim_components::{Node, Request, Response};
pub use base64::Engine;
pub use serde_json::{Value, json};
pub use std::collections::BTreeSet;
pub use std::future::Future;
pub use std::pin::Pin;
pub use std::sync::atomic::{AtomicU64, Ordering};
pub use std::sync::{Arc, Mutex};

pub struct Cluster {
    pub storage: MemStorage,
    pub nodes: Vec<Node>,
    pub clock: AtomicU64,
    pub seed: AtomicU64,
    pub down: Mutex<BTreeSet<String>>,
    pub tokens: Tokens,
    /// Calls between components, by path.
    pub calls: Mutex<std::collections::BTreeMap<String, u64>>,
    /// The backends policy, when a test sets one (else the default).
    pub backends: std::sync::OnceLock<apim_components::backends::Policy>,
}

#[derive(Clone)]
pub struct W(pub Arc<Cluster>);

pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, CallError>> + Send + 'a>>;

impl W {
    fn up(&self, name: &str) -> bool {
        !self.0.down.lock().expect("lock").contains(name)
    }

    fn deliver(&self, i: usize, to: Peer, req: Request) -> Reply<'_> {
        Box::pin(async move {
            let node = &self.0.nodes[i];
            if !self.up(&node.name) {
                return Err(CallError::Connect(format!("{} is down", node.name)));
            }
            // Calls between components go to the internal listener, as the caller this world
            // stands for (its one admitted identity); client calls to the public one.
            if req.path.starts_with(apim_components::wire::INTERNAL_PREFIX) {
                return Ok(node.internal(self, Some(CALLER), req).await);
            }
            Ok(node.handle(self, to, req).await)
        })
    }
}

/// The identity every node of this world calls with.
pub const CALLER: &str = "spiffe://test/node/caller";

/// The internal endpoints a node running `c` serves, all admitting `CALLER`.
pub fn internal_routes(c: Peer) -> Vec<InternalRoute> {
    let endpoints: &[&str] = match c {
        Peer::Gateway => &[
            "POST /internal/apis",
            "POST /internal/revoked",
            "POST /internal/subscribed",
        ],
        Peer::KeyManager => &[
            "POST /token",
            "GET /.well-known/jwks.json",
            "POST /internal/subscriptions",
            "POST /internal/subscriptions/notify",
            "POST /internal/clients",
            "POST /internal/clients/revoke",
            "POST /internal/validate",
            "POST /internal/revocations",
        ],
        Peer::Publisher | Peer::Store => &[],
    };
    endpoints
        .iter()
        .map(|e| InternalRoute {
            endpoint: e.to_string(),
            component: c,
            callers: vec![CALLER.to_string()],
        })
        .collect()
}

pub fn node_running(name: &str, c: Peer) -> Node {
    Node::with_internal(name, vec![c], internal_routes(c))
}

impl World for W {
    type Storage = MemStorage;

    fn storage(&self) -> &MemStorage {
        &self.0.storage
    }
    fn now_ms(&self) -> u64 {
        self.0.clock.load(Ordering::SeqCst)
    }
    async fn sleep(&self, ms: u64) {
        self.0.clock.fetch_add(ms, Ordering::SeqCst);
    }
    fn random(&self, buf: &mut [u8]) {
        for b in buf {
            let mut x = self.0.seed.load(Ordering::SeqCst);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0.seed.store(x, Ordering::SeqCst);
            *b = x as u8;
        }
    }
    fn call(
        &self,
        to: Peer,
        req: Request,
    ) -> impl Future<Output = Result<Response, CallError>> + Send {
        *self
            .0
            .calls
            .lock()
            .expect("lock")
            .entry(req.path.clone())
            .or_default() += 1;
        // The first node up that runs `to`, as a balancer would pick.
        let i = self
            .0
            .nodes
            .iter()
            .position(|n| n.runs(to) && self.up(&n.name));
        async move {
            match i {
                Some(i) => self.deliver(i, to, req).await,
                None => Err(CallError::Connect(format!("no {to:?} is up"))),
            }
        }
    }
    async fn notify_each(
        &self,
        to: Peer,
        req: Request,
    ) -> Vec<(String, Result<Response, CallError>)> {
        let mut out = Vec::new();
        for (i, n) in self.0.nodes.iter().enumerate().filter(|(_, n)| n.runs(to)) {
            out.push((n.name.clone(), self.deliver(i, to, req.clone()).await));
        }
        out
    }
    async fn forward(&self, base: &str, req: &Request) -> Result<Response, CallError> {
        if base.contains("unreachable") {
            return Err(CallError::Connect("refused".into()));
        }
        *self
            .0
            .calls
            .lock()
            .expect("calls")
            .entry(format!("backend {}", req.method))
            .or_default() += 1;
        if base.contains("broken") {
            return Err(CallError::Broken("closed before answering".into()));
        }
        // It echoes what reached it, and tries to set a portal's cookie beside its own.
        Ok(Response::json(
            200,
            &json!({ "backend": base, "path": req.path, "query": req.query, "authorization": req.get_header("authorization"), "cookie": req.get_header("cookie"), "connection": req.get_header("connection") }),
        )
        .header("set-cookie", "apim_session=planted; Path=/")
        .header("set-cookie", "pref=1")
        .header("connection", "close"))
    }
    fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }
    fn backends(&self) -> &apim_components::backends::Policy {
        self.0
            .backends
            .get()
            .unwrap_or(&apim_components::backends::DEFAULT)
    }
    async fn hash_password(&self, password: &str) -> String {
        format!("test-hash:{password}")
    }
    async fn verify_password(&self, password: &str, hash: &str) -> bool {
        hash == format!("test-hash:{password}")
    }
}

pub fn world() -> W {
    world_with(Tokens::opaque())
}

/// The signing key of the JWT worlds.
pub const SEED: [u8; 32] = [7; 32];

/// A world whose key manager issues JWTs signed with `SEED`, which the gateways know from
/// their start, under the revocation policy given.
pub fn jwt_world(revocation: Revocation) -> W {
    let published = Tokens::new(
        (TokenFormat::Jwt, revocation, 1_000),
        "spiffe://test/key-manager",
        "spiffe://test/gateway",
        &[SEED],
        Jwks::default(),
    )
    .expect("key")
    .published();
    let tokens = Tokens::new(
        (TokenFormat::Jwt, revocation, 1_000),
        "spiffe://test/key-manager",
        "spiffe://test/gateway",
        &[SEED],
        published,
    )
    .expect("key");
    world_with(tokens)
}

pub fn world_with(tokens: Tokens) -> W {
    let nodes = vec![
        node_running("publisher-1", Peer::Publisher),
        node_running("store-1", Peer::Store),
        node_running("key-manager-1", Peer::KeyManager),
        node_running("gateway-1", Peer::Gateway),
        node_running("gateway-2", Peer::Gateway),
    ];
    let w = W(Arc::new(Cluster {
        storage: MemStorage::default(),
        nodes,
        clock: AtomicU64::new(1_000_000),
        seed: AtomicU64::new(42),
        down: Mutex::default(),
        tokens,
        calls: Mutex::default(),
        backends: Default::default(),
    }));
    pollster::block_on(apim_components::auth::bootstrap_admin(&w, "admin-password"))
        .expect("admin");
    // As a node does when it starts: its gateway reads the registry.
    for n in w.0.nodes.iter().filter(|n| n.runs(Peer::Gateway)) {
        pollster::block_on(n.gateway.reconcile(&w)).expect("registry");
    }
    w
}

pub fn node(w: &W, name: &str) -> usize {
    w.0.nodes.iter().position(|n| n.name == name).expect("node")
}

pub fn send(w: &W, name: &str, to: Peer, req: Request) -> Response {
    let i = node(w, name);
    pollster::block_on(w.0.nodes[i].handle(w, to, req))
}

pub fn json_of(r: &Response) -> Value {
    r.json_body().unwrap_or(Value::Null)
}

pub fn login(w: &W, name: &str, to: Peer, user: &str, password: &str) -> String {
    let r = send(w, name, to, apim_components::client::login(user, password));
    assert_eq!(r.status, 200, "{:?}", json_of(&r));
    apim_components::client::session(&r).expect("session")
}

/// Publishes an echo API and returns its id.
pub fn publish(w: &W, session: &str, context: &str, backend: &str) -> String {
    let create = apim_components::client::create_api(
        session,
        &apim_components::client::NewApi {
            name: "Echo",
            version: "v1",
            context,
            backend,
        },
    );
    let r = send(w, "publisher-1", Peer::Publisher, create);
    assert_eq!(r.status, 201, "{:?}", json_of(&r));
    let id = json_of(&r)["id"].as_str().expect("id").to_string();
    let r = send(
        w,
        "publisher-1",
        Peer::Publisher,
        Request::new("POST", &format!("/api/apis/{id}/publish"))
            .header("authorization", &format!("Bearer {session}")),
    );
    assert_eq!(r.status, 200, "{:?}", json_of(&r));
    id
}

/// Signs up `user`, creates an application, optionally subscribes it, and gets a token.
pub fn consumer(w: &W, user: &str, subscribe_to: Option<&str>) -> (String, String, String) {
    let r = send(
        w,
        "store-1",
        Peer::Store,
        Request::new("POST", "/api/signup")
            .json(&json!({"username": user, "password": "a-long-password"})),
    );
    assert_eq!(r.status, 201, "{:?}", json_of(&r));
    let session = login(w, "store-1", Peer::Store, user, "a-long-password");
    let auth = format!("Bearer {session}");
    let r = send(
        w,
        "store-1",
        Peer::Store,
        Request::new("POST", "/api/applications")
            .header("authorization", &auth)
            .json(&json!({"name": "app"})),
    );
    assert_eq!(r.status, 201);
    let app = json_of(&r)["id"].as_str().expect("app id").to_string();
    if let Some(api) = subscribe_to {
        let r = send(
            w,
            "store-1",
            Peer::Store,
            Request::new("POST", "/api/subscriptions")
                .header("authorization", &auth)
                .json(&json!({"application": app, "api": api})),
        );
        assert_eq!(r.status, 201, "{:?}", json_of(&r));
    }
    let r = send(
        w,
        "store-1",
        Peer::Store,
        Request::new("POST", &format!("/api/applications/{app}/keys"))
            .header("authorization", &auth),
    );
    assert_eq!(r.status, 201, "{:?}", json_of(&r));
    let keys = json_of(&r);
    let (key, secret) = (
        keys["consumer_key"].as_str().expect("key").to_string(),
        keys["consumer_secret"]
            .as_str()
            .expect("secret")
            .to_string(),
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    let r = send(
        w,
        "gateway-1",
        Peer::Gateway,
        Request::new("POST", "/token")
            .header("authorization", &format!("Basic {basic}"))
            .form(&[("grant_type", "client_credentials")]),
    );
    assert_eq!(r.status, 200, "{:?}", json_of(&r));
    (
        json_of(&r)["access_token"]
            .as_str()
            .expect("token")
            .to_string(),
        key,
        secret,
    )
}

pub fn invoke(w: &W, gateway: &str, path: &str, token: Option<&str>) -> Response {
    let mut req = Request::new("GET", path);
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    send(w, gateway, Peer::Gateway, req)
}
