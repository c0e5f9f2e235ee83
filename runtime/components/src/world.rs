//! The World: everything a component needs from outside — storage on the three databases,
//! calls to peers, the backend, the clock and randomness. The real world implements it with
//! sqlx, hyper and tokio; the simulated world with memory, a virtual network and clock.

use crate::http::{Request, Response};
use serde::{Deserialize, Serialize};
use std::future::Future;

/// The components, as peers to call: the topology's own words.
pub use apim_topology::vocab::Component as Peer;

/// Why a call to a peer or a backend got no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// No connection could be made (nothing was sent): safe to retry elsewhere.
    Connect(String),
    /// The connection failed or timed out after the request was sent.
    Broken(String),
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "cannot connect: {e}"),
            CallError::Broken(e) => write!(f, "connection broken: {e}"),
            CallError::Timeout => f.write_str("timed out"),
        }
    }
}

/// `f`'s output, or none when `ms` of the world's time pass first (`f` is then dropped, and
/// with it whatever it was waiting for).
pub async fn within<T>(world: &impl World, ms: u64, f: impl Future<Output = T>) -> Option<T> {
    crate::guard::race(f, world.sleep(ms)).await
}

/// The key manager's answer to a component's request, or 503 when it cannot be reached.
pub(crate) async fn ask_key_manager(world: &impl World, req: Request) -> Response {
    match world.call(Peer::KeyManager, req).await {
        Ok(r) => r,
        Err(e) => Response::error(
            503,
            "unavailable",
            format!("the key manager cannot be reached: {e}"),
        ),
    }
}

/// The nodes that did not acknowledge a notification (no answer, or not 200).
pub fn missed(answers: &[(String, Result<Response, CallError>)]) -> Vec<&str> {
    answers
        .iter()
        .filter(|(_, r)| !r.as_ref().is_ok_and(|r| r.status == 200))
        .map(|(n, _)| n.as_str())
        .collect()
}

/// A database could not answer (down, unreachable, or refused the statement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbError(pub String, pub Fault);

/// What kind of failure a database error is: only an outage (no connection, no answer in
/// time) says anything about the database; a statement one request's content made fail must
/// never open its breaker, or any client could take a database "down" for everyone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    Unavailable,
    Statement,
}

impl DbError {
    pub fn unavailable(message: impl Into<String>) -> DbError {
        DbError(message.into(), Fault::Unavailable)
    }

    pub fn statement(message: impl Into<String>) -> DbError {
        DbError(message.into(), Fault::Statement)
    }

    /// Whether the database itself failed (what a breaker counts).
    pub fn is_outage(&self) -> bool {
        self.1 == Fault::Unavailable
    }
}

pub type Db<T> = Result<T, DbError>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub token_hash: String,
    pub user: String,
    pub expires_ms: u64,
}

/// Failed sign-in attempts of one account or address, counted in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub count: u64,
    /// When the window began (milliseconds since the epoch).
    pub since_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiState {
    Created,
    Published,
    Deprecated,
    Retired,
}

impl ApiState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiState::Created => "created",
            ApiState::Published => "published",
            ApiState::Deprecated => "deprecated",
            ApiState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<ApiState> {
        [
            ApiState::Created,
            ApiState::Published,
            ApiState::Deprecated,
            ApiState::Retired,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// Whether gateways serve an API in this state.
    pub fn invokable(self) -> bool {
        matches!(self, ApiState::Published | ApiState::Deprecated)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Api {
    pub id: String,
    pub name: String,
    pub version: String,
    /// Without slashes: `/{context}/{version}/...` routes to the API.
    pub context: String,
    pub backend: String,
    pub description: String,
    pub provider: String,
    pub state: ApiState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub id: String,
    pub name: String,
    pub owner: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKeys {
    pub consumer_key: String,
    pub secret_hash: String,
    pub application: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub token_hash: String,
    pub consumer_key: String,
    pub application: String,
    pub expires_ms: u64,
    pub revoked: bool,
}

/// Typed operations on the three databases; each method names the role it uses.
pub trait Storage: Send + Sync {
    // user database
    fn create_user(&self, user: &User) -> impl Future<Output = Db<bool>> + Send;
    fn user(&self, name: &str) -> impl Future<Output = Db<Option<User>>> + Send;
    fn create_session(&self, session: &Session) -> impl Future<Output = Db<()>> + Send;
    fn session(&self, token_hash: &str) -> impl Future<Output = Db<Option<Session>>> + Send;
    fn delete_session(&self, token_hash: &str) -> impl Future<Output = Db<()>> + Send;
    /// Deletes the sessions that ended before `now_ms`; answers how many.
    fn purge_sessions(&self, now_ms: u64) -> impl Future<Output = Db<u64>> + Send;
    /// Every session of `user` ends (a password change).
    fn delete_sessions_of(&self, user: &str) -> impl Future<Output = Db<()>> + Send;
    /// False when there is no such user.
    fn set_password(&self, user: &str, hash: &str) -> impl Future<Output = Db<bool>> + Send;
    /// Records a failed attempt of `subject` (an account or an address) at `now_ms` and answers
    /// how many it has had in the window that began at most `window_ms` ago (a window older
    /// than that starts again at this one).
    fn record_failure(
        &self,
        subject: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> impl Future<Output = Db<Failures>> + Send;
    /// The failures of `subject` in its window, if that window began at most `window_ms` ago.
    fn failures(
        &self,
        subject: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> impl Future<Output = Db<Failures>> + Send;
    fn clear_failures(&self, subject: &str) -> impl Future<Output = Db<()>> + Send;
    /// Deletes the failure counts whose window began more than `window_ms` before `now_ms`;
    /// answers how many. Storage that keeps none forgets nothing.
    fn purge_failures(&self, now_ms: u64, window_ms: u64) -> impl Future<Output = Db<u64>> + Send {
        let _ = (now_ms, window_ms);
        std::future::ready(Ok(0))
    }
    // apim database
    fn save_api(&self, api: &Api) -> impl Future<Output = Db<()>> + Send;
    fn api(&self, id: &str) -> impl Future<Output = Db<Option<Api>>> + Send;
    fn apis(&self) -> impl Future<Output = Db<Vec<Api>>> + Send;
    fn create_application(&self, app: &Application) -> impl Future<Output = Db<bool>> + Send;
    fn application(&self, id: &str) -> impl Future<Output = Db<Option<Application>>> + Send;
    fn applications(&self, owner: &str) -> impl Future<Output = Db<Vec<Application>>> + Send;
    /// False when the subscription existed already.
    fn subscribe(&self, application: &str, api: &str) -> impl Future<Output = Db<bool>> + Send;
    fn subscribed(&self, application: &str, api: &str) -> impl Future<Output = Db<bool>> + Send;
    /// False when there was no such subscription.
    fn unsubscribe(&self, application: &str, api: &str) -> impl Future<Output = Db<bool>> + Send;
    fn subscriptions(&self, application: &str) -> impl Future<Output = Db<Vec<String>>> + Send;
    /// Every subscription, as (application, API), ordered: the gateways' catch-up.
    fn all_subscriptions(&self) -> impl Future<Output = Db<Vec<(String, String)>>> + Send;
    fn save_client(&self, keys: &ClientKeys) -> impl Future<Output = Db<()>> + Send;
    fn client(&self, consumer_key: &str) -> impl Future<Output = Db<Option<ClientKeys>>> + Send;
    fn save_token(&self, token: &Token) -> impl Future<Output = Db<()>> + Send;
    fn token(&self, token_hash: &str) -> impl Future<Output = Db<Option<Token>>> + Send;
    /// False when there was no such token.
    fn revoke_token(&self, token_hash: &str, at_ms: u64) -> impl Future<Output = Db<bool>> + Send;
    /// Deletes every consumer key of `application` and revokes every token they were given, at
    /// `at_ms`; answers the hashes of the tokens revoked now.
    fn revoke_application_keys(
        &self,
        application: &str,
        at_ms: u64,
    ) -> impl Future<Output = Db<Vec<String>>> + Send;
    /// Deletes the tokens that expired before `now_ms` (revoked or not: an expired token is
    /// refused everywhere anyway); answers how many.
    fn purge_tokens(&self, now_ms: u64) -> impl Future<Output = Db<u64>> + Send;
    /// The tokens revoked at or after `since_ms`: (hash, when), by hash.
    fn revoked_since(&self, since_ms: u64) -> impl Future<Output = Db<Vec<(String, u64)>>> + Send;
    // registry database
    fn register(&self, api: &Api) -> impl Future<Output = Db<()>> + Send;
    fn unregister(&self, id: &str) -> impl Future<Output = Db<()>> + Send;
    fn registered(&self) -> impl Future<Output = Db<Vec<Api>>> + Send;
    // the databases themselves
    /// Per database role this node uses: its name and whether its database is known to be
    /// down now (its breaker open). Storage without breakers answers none.
    fn breakers(&self) -> Vec<(&'static str, bool)> {
        Vec::new()
    }
    /// Sends one cheap statement to each database known to be down whose backoff has passed,
    /// so that a database that came back is seen without a request failing on it first.
    fn probe(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// The outside world of one node.
pub trait World: Send + Sync {
    type Storage: Storage;

    fn storage(&self) -> &Self::Storage;
    /// Milliseconds since the Unix epoch (virtual in the simulated world).
    fn now_ms(&self) -> u64;
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + Send;
    fn random(&self, buf: &mut [u8]);
    /// Calls a peer through the route the plan gives (a balancer, or a node).
    fn call(
        &self,
        to: Peer,
        req: Request,
    ) -> impl Future<Output = Result<Response, CallError>> + Send;
    /// Sends a request to every node running `to`; the answers by node name.
    fn notify_each(
        &self,
        to: Peer,
        req: Request,
    ) -> impl Future<Output = Vec<(String, Result<Response, CallError>)>> + Send;
    /// Sends a request to an API's backend (`base` is the API's backend URL). Borrowed: the
    /// gateway may send it once more (`gateway::resend_once`), and the simulated backend
    /// reads it without a copy.
    fn forward(
        &self,
        base: &str,
        req: &Request,
    ) -> impl Future<Output = Result<Response, CallError>> + Send;
    /// How long a portal session lasts (the deployment's setting).
    fn session_ms(&self) -> u64 {
        apim_topology::timing::SESSION_MS
    }
    /// Which backends the gateway may proxy to (`[deployment] backends`); by default none on
    /// special or private addresses.
    fn backends(&self) -> &crate::backends::Policy {
        &crate::backends::DEFAULT
    }
    /// The deployment's access tokens: format, revocation policy, keys.
    fn tokens(&self) -> &crate::tokens::Tokens;
    /// The deployment's public keys as published now, read again (a rotation publishes a new
    /// key there before key managers sign with it); none where nothing is published so.
    fn published_keys(&self) -> Option<crate::jwt::Jwks> {
        None
    }
    /// Deliberate defects: only the simulator's own tests switch any on.
    #[doc(hidden)]
    fn defects(&self) -> crate::defects::Defects {
        crate::defects::Defects::NONE
    }
    /// Whether `sig` is `key`'s Ed25519 signature of `signed` (a JWT's). The simulator, where
    /// a thousand gateways share one process, answers each signature once for all of them.
    fn signature_ok(&self, key: &[u8], signed: &[u8], sig: &[u8]) -> bool {
        crate::jwt::ed25519_ok(key, signed, sig)
    }
    /// Password hashing (argon2 in the real world): slow on purpose, done once per login.
    fn hash_password(&self, password: &str) -> impl Future<Output = String> + Send;
    fn verify_password(&self, password: &str, hash: &str) -> impl Future<Output = bool> + Send;
}
