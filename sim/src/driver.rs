//! What the workload needs of a world, and nothing more: a clock, a scheduler, a way to send a
//! request, the random source, the deployment's faults, and — where the world can look — what
//! the databases hold. The simulator drives the workload in virtual time (`crate::run`), the
//! drill in wall time against real processes; the workload and its judge are the same code.

use crate::rng::Rng;
use crate::scenario::FaultKind;
use apim_compiler::plan::Plan;
use apim_components::{Request, Response};
use apim_topology::vocab::Component;
use std::future::Future;
use std::sync::MutexGuard;

/// Where a client request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// A component's entry: the external balancer in front of it, or its node.
    Entry(Component),
    /// Gateway node `i` of the plan, straight, as a client that resolved it would.
    Gateway(usize),
    /// Node `to`'s internal listener, from node `from` with `from`'s own identity: what a
    /// compromised node can do.
    Internal { from: usize, to: usize },
}

/// An access token as the key manager's database holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub application: String,
    /// On the components' clock (`Driver::now_ms`).
    pub expires_ms: u64,
    pub revoked: bool,
}

/// A world the workload runs in. Its clock starts when the world does; its futures are `Send`
/// so either scheduler may run them.
pub trait Driver: Send + Sync + 'static {
    fn plan(&self) -> &Plan;

    /// Microseconds since the world started: what the workload schedules and measures by.
    fn now_us(&self) -> u64;

    /// Milliseconds since the Unix epoch on the clock the deployment's components keep: what
    /// tokens' expiry, revocations and retirements are judged by.
    fn now_ms(&self) -> u64;

    fn sleep(&self, us: u64) -> impl Future<Output = ()> + Send;

    /// Runs `task` beside the caller.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    fn rng(&self) -> MutexGuard<'_, Rng>;

    /// A request, and its answer; `Err` says why none came (refused, timed out, no such entry).
    fn send(&self, to: To, req: Request) -> impl Future<Output = Result<Response, String>> + Send;

    /// The URL of the backend the workload's APIs call.
    fn backend(&self) -> &str;

    /// The nodes that answered `r`, where the world marks them.
    fn answered_by(&self, r: &Response) -> Vec<String>;

    /// Whether API `id` is published in the apim database and the registry; `None`: this world
    /// cannot look.
    fn published(&self, id: &str) -> Option<bool>;

    /// Whether the apim database holds `application`'s subscription to `api`; `None`: this world
    /// cannot look.
    fn subscribed(&self, application: &str, api: &str) -> Option<bool>;

    /// The token whose hash is `hash`: `Some(None)` when the database has no such token, `None`
    /// when this world cannot look.
    fn token_row(&self, hash: &str) -> Option<Option<TokenRow>>;

    /// Makes the `k`th fault of the scenario happen.
    fn begin(&self, k: usize, fault: &FaultKind) -> impl Future<Output = ()> + Send;

    /// Repairs the `k`th fault.
    fn end(&self, k: usize, fault: &FaultKind) -> impl Future<Output = ()> + Send;

    /// Restarts each node of `cluster` in turn: it drains for `drain_ms`, stops, starts again,
    /// and `pause_ms` pass before the next.
    fn roll(&self, cluster: &str, drain_ms: u64, pause_ms: u64) -> impl Future<Output = ()> + Send;
}
