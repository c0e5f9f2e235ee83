//! The real world of one node: sqlx storage, hyper calls to the peers its plan names, the
//! system clock, the OS random source and argon2.

use crate::guarded::Guarded;
use crate::http::{self, Client};
use crate::tls::Tls;
use apim_compiler::plan::{NodePlan, Peer as PlanPeer, PeerPath};
use apim_components::balancer::{self, Pool};
use apim_components::gateway::Admitted;
use apim_components::world::{CallError, Peer, World};
use apim_components::{Request, Response};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_millis(apim_topology::timing::CALL_TIMEOUT_MS);
const NOTIFY_EACH: Duration = Duration::from_millis(apim_topology::timing::NOTIFY_EACH_MS);
/// Password hashes computed at once (argon2 with its default 19 MiB: at most about 76 MiB).
pub const HASHING: usize = 4;
const BACKEND_TIMEOUT: Duration = Duration::from_millis(apim_topology::timing::BACKEND_TIMEOUT_MS);

/// `host[:port]` or `[v6][:port]`; the port defaults to 80.
fn host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 80,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((authority, 80)),
    }
}

/// Where an API's backend is: host, port, and the backend URL's own path (no slashes around).
fn backend(base: &str) -> Result<(&str, u16, &str), CallError> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| CallError::Connect(format!("unsupported backend URL {base}")))?;
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = host_port(authority)
        .ok_or_else(|| CallError::Connect(format!("bad host or port in {base}")))?;
    Ok((host, port, prefix.trim_end_matches('/')))
}

/// The `host:port` of a backend URL that names its port, as written (no copy per request).
fn named_authority(base: &str) -> Option<&str> {
    let rest = base.strip_prefix("http://")?;
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let named = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    named.then_some(authority)
}

/// The path and query a backend is asked for: its own path, then the request's.
fn target(prefix: &str, path: &str, query: &str) -> String {
    let mut target = String::with_capacity(prefix.len() + path.len() + query.len() + 2);
    if !prefix.is_empty() {
        target.push('/');
        target.push_str(prefix);
    }
    target.push_str(path);
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    target
}

struct HashingTurn(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub struct RealWorld {
    storage: Guarded,
    node: NodePlan,
    /// A client per peer of the plan (same order): mutual TLS, accepting only that peer's nodes.
    clients: Vec<Client>,
    stream_client: http::StreamClient,
    /// API backends, outside the deployment: plain HTTP as their URLs say.
    backends: Client,
    /// argon2 runs at most `HASHING` at once (about 19 MiB each): a burst of logins waits in
    /// line instead of taking the node's memory.
    hashing: Arc<tokio::sync::Semaphore>,
    /// The most argon2 runs seen at once, for `/metrics` and tests.
    hashing_peak: Arc<std::sync::atomic::AtomicUsize>,
    /// A real hash of a random password: what an unknown user's password is checked against.
    decoy: Arc<std::sync::OnceLock<String>>,
    /// Round robin over the endpoints of each peer.
    pools: BTreeMap<Peer, Mutex<Pool>>,
    tokens: apim_components::tokens::Tokens,
    /// Which backends an API may have (`[deployment] backends`).
    backends_policy: Arc<apim_components::backends::Policy>,
}

impl RealWorld {
    pub fn new(storage: Guarded, node: NodePlan, tls: &Tls) -> Result<RealWorld, String> {
        let clients = node
            .peers
            .iter()
            .map(|p| Ok(http::tls_client(tls.client(p.identities.clone())?)))
            .collect::<Result<Vec<_>, String>>()?;
        let pools = node
            .peers
            .iter()
            .filter(|p| p.path == PeerPath::Any)
            .map(|p| {
                let names = p.endpoints.iter().map(|e| e.name.clone());
                (p.component, Mutex::new(Pool::new(names, 3, 2)))
            })
            .collect();
        let tokens = crate::signing::load(&node)?;
        let policy = Arc::new(
            apim_components::backends::Policy::new(&node.backends.allow, &node.backends.own)
                .map_err(|e| format!("node {}: `[deployment] backends`: {e}", node.name))?,
        );
        let checked = policy.clone();
        let guard: crate::upstream::Guard = Arc::new(move |host: &str, ip| {
            checked
                .check_ip(&host.to_ascii_lowercase(), ip)
                .inspect_err(|why| {
                    apim_components::security::event(
                        "backend_refused",
                        &[("host", host), ("reason", why), ("when", "connect")],
                    );
                })
        });
        Ok(RealWorld {
            backends_policy: policy,
            tokens,
            storage,
            node,
            clients,
            stream_client: http::stream_client().guarded(guard.clone()),
            backends: http::client().guarded(guard),
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING)),
            hashing_peak: Arc::default(),
            decoy: Arc::default(),
            pools,
        })
    }

    /// The real world's `forward`: a client's request, as the gateway admitted it, to the
    /// API's backend, the body streamed from the client and the answer streamed back.
    pub async fn stream(
        &self,
        admitted: &Admitted,
        parts: hyper::http::request::Parts,
        resend: bool,
        body: hyper::body::Incoming,
    ) -> Result<hyper::Response<http::Body>, CallError> {
        let (host, port, prefix) = backend(&admitted.api.backend)?;
        let target = target(
            prefix,
            &admitted.path,
            parts.uri.query().unwrap_or_default(),
        );
        let authority = match named_authority(&admitted.api.backend) {
            Some(a) => Cow::Borrowed(a),
            None => Cow::Owned(http::authority(host, port)),
        };
        http::send_stream(
            &self.stream_client,
            &authority,
            target,
            parts,
            resend,
            body,
            BACKEND_TIMEOUT,
        )
        .await
    }

    /// A place among the argon2 runs; waits while `HASHING` are running.
    async fn hashing_turn(&self) -> Option<HashingTurn> {
        let permit = self.hashing.clone().acquire_owned().await.ok()?;
        let now = HASHING - self.hashing.available_permits();
        self.hashing_peak
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        Some(HashingTurn(permit))
    }

    /// The most password hashes computed at once so far.
    pub fn hashing_peak(&self) -> usize {
        self.hashing_peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn peer(&self, to: Peer, path: PeerPath) -> Option<(&PlanPeer, &Client)> {
        let i = self
            .node
            .peers
            .iter()
            .position(|p| p.component == to && p.path == path)?;
        Some((&self.node.peers[i], self.clients.get(i)?))
    }
}

impl World for RealWorld {
    type Storage = Guarded;

    fn storage(&self) -> &Guarded {
        &self.storage
    }

    fn session_ms(&self) -> u64 {
        self.node.session_ms
    }
    fn tokens(&self) -> &apim_components::tokens::Tokens {
        &self.tokens
    }
    fn backends(&self) -> &apim_components::backends::Policy {
        &self.backends_policy
    }
    fn published_keys(&self) -> Option<apim_components::jwt::Jwks> {
        crate::signing::published(&self.node)
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    async fn sleep(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn random(&self, buf: &mut [u8]) {
        // The OS source does not fail on Linux; if it ever did, a token must not be predictable.
        if getrandom::fill(buf).is_err() {
            std::process::abort();
        }
    }

    async fn call(&self, to: Peer, req: Request) -> Result<Response, CallError> {
        let (Some((peer, client)), Some(pool)) =
            (self.peer(to, PeerPath::Any), self.pools.get(&to))
        else {
            return Err(CallError::Connect(format!(
                "node {} has no route to the {to:?}",
                self.node.name
            )));
        };
        balancer::call(pool, &req, |i, req| {
            let e = &peer.endpoints[i];
            http::send(client, &e.host, e.port, req, CALL_TIMEOUT)
        })
        .await
    }

    async fn notify_each(
        &self,
        to: Peer,
        req: Request,
    ) -> Vec<(String, Result<Response, CallError>)> {
        let Some((peer, client)) = self.peer(to, PeerPath::EachNode) else {
            return Vec::new();
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (i, e) in peer.endpoints.iter().enumerate() {
            let (client, req, host, port) = (client.clone(), req.clone(), e.host.clone(), e.port);
            tasks.spawn(
                async move { (i, http::send(&client, &host, port, req, NOTIFY_EACH).await) },
            );
        }
        let mut answers: Vec<(usize, Result<Response, CallError>)> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(a) = done {
                answers.push(a);
            }
        }
        answers.sort_by_key(|(i, _)| *i);
        answers
            .into_iter()
            .map(|(i, r)| (peer.endpoints[i].name.clone(), r))
            .collect()
    }

    async fn forward(&self, base: &str, req: &Request) -> Result<Response, CallError> {
        let mut req = req.clone();
        let (host, port, prefix) = backend(base)?;
        if !prefix.is_empty() {
            req.path = format!("/{prefix}{}", req.path);
        }
        http::send(&self.backends, host, port, req, BACKEND_TIMEOUT).await
    }

    async fn hash_password(&self, password: &str) -> String {
        let password = password.to_string();
        let mut salt = [0u8; 16];
        self.random(&mut salt);
        let _turn = self.hashing_turn().await;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(&salt).ok()?;
            argon2::Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
    }

    async fn verify_password(&self, password: &str, hash: &str) -> bool {
        let decoy = hash == apim_components::auth::DECOY_HASH;
        let hash = if decoy {
            match self.decoy.get() {
                Some(h) => h.clone(),
                None => {
                    let mut random = [0u8; 16];
                    self.random(&mut random);
                    let h = self.hash_password(&base64_of(&random)).await;
                    self.decoy.get_or_init(|| h).clone()
                }
            }
        } else {
            hash.to_string()
        };
        let password = password.to_string();
        let _turn = self.hashing_turn().await;
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        matched && !decoy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_url_gives_host_port_and_its_own_path() {
        let parsed = |b| backend(b).map_err(|e| e.to_string());
        assert_eq!(
            parsed("http://10.0.0.9:8080/v2/"),
            Ok(("10.0.0.9", 8080, "v2"))
        );
        assert_eq!(parsed("http://echo"), Ok(("echo", 80, "")));
        assert_eq!(parsed("http://[::1]:9000/a/b"), Ok(("::1", 9000, "a/b")));
        assert!(parsed("https://echo").is_err());
        assert!(parsed("http://echo:/x").is_err());
        assert!(parsed("http://echo:99999").is_err());
    }

    #[test]
    fn the_authority_is_borrowed_only_when_the_url_names_its_port() {
        assert_eq!(
            named_authority("http://10.0.0.9:8080/v2"),
            Some("10.0.0.9:8080")
        );
        assert_eq!(named_authority("http://[::1]:9000"), Some("[::1]:9000"));
        assert_eq!(named_authority("http://echo/v2"), None);
        assert_eq!(named_authority("http://[::1]/v2"), None);
    }

    #[test]
    fn the_target_joins_the_backends_path_the_rest_and_the_query() {
        assert_eq!(target("v2", "/items/7", "a=1"), "/v2/items/7?a=1");
        assert_eq!(target("", "/", ""), "/");
    }
}
