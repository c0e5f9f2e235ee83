//! The storage guard, for both worlds: every operation of a node's storage is given at most a
//! fixed time, and each database's circuit breaker (`breaker`) fails at once while that
//! database is known to be down, so callers, balancers and connection slots never pile up
//! behind it. Which database role each operation uses is stated here, once.
//!
//! The real world guards its SQL storage with the system clock; the simulator guards the
//! in-memory databases with its virtual clock, and makes a database hang by saying it does not
//! answer (`Databases::answers`): the operation then waits out its bound here, as a real one
//! that never answers does.

use crate::breaker::{Breaker, State};
use crate::world::{
    Api, Application, ClientKeys, Db, DbError, Failures, Session, Storage, Token, User,
};
use apim_topology::timing::{CATCH_UP_MS, FAILURES_TO_OPEN, PROBE_BOUND_MS};
use apim_topology::vocab::Role;
use std::future::Future;

const ROLES: [Role; 3] = [Role::User, Role::Apim, Role::Registry];

/// The time a guard waits on: the world's.
pub trait Clock: Send + Sync {
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + Send;
}

/// What a guard needs of the storage it guards, beyond its operations.
pub trait Databases: Storage {
    /// The database serving `role`, as an index among the node's distinct databases (roles
    /// that share a database share its fate), or `None` when no database serves it.
    fn database_of(&self, role: Role) -> Option<usize>;
    /// One operation that needs nothing but the database serving `role` answering.
    fn ping(&self, role: Role) -> impl Future<Output = Db<()>> + Send;
    /// Whether the database serving `role` answers at all now. A real database that hangs
    /// says so by not answering; the simulated one says it here.
    fn answers(&self, role: Role) -> bool {
        let _ = role;
        true
    }
}

/// Races `f` against `timer`: `None` when the timer ends first.
pub async fn race<T>(f: impl Future<Output = T>, timer: impl Future<Output = ()>) -> Option<T> {
    use std::task::Poll;
    let mut f = std::pin::pin!(f);
    let mut timer = std::pin::pin!(timer);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// A node's storage with a time bound per operation and a breaker per database.
pub struct Guarded<S, C> {
    inner: S,
    clock: C,
    operation_ms: u64,
    breakers: Vec<Breaker>,
    /// The breaker of each role, by `Role as usize`.
    of_role: [usize; 3],
}

impl<S: Databases, C: Clock> Guarded<S, C> {
    /// Guards `inner`: each operation gets `operation_ms` (the plan's `database_ms`).
    pub fn new(inner: S, clock: C, operation_ms: u64) -> Guarded<S, C> {
        // A role without a database gets a breaker of its own that never sees an operation.
        let of_role = ROLES.map(|r| inner.database_of(r).unwrap_or(3 + r as usize));
        let count = of_role.iter().max().map_or(0, |m| m + 1);
        Guarded {
            inner,
            clock,
            operation_ms,
            breakers: (0..count).map(|_| Breaker::default()).collect(),
            of_role,
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn breaker(&self, role: Role) -> &Breaker {
        &self.breakers[self.of_role[role as usize]]
    }

    /// Whether the breaker of `role` is open (for tests and metrics).
    pub fn is_open(&self, role: Role) -> bool {
        !matches!(self.breaker(role).state(), State::Closed { .. })
    }

    fn serves(&self, role: Role) -> bool {
        self.inner.database_of(role).is_some()
    }

    async fn run<T>(&self, role: Role, op: impl Future<Output = Db<T>>) -> Db<T> {
        self.run_within(role, self.operation_ms, op).await
    }

    async fn run_within<T>(
        &self,
        role: Role,
        bound_ms: u64,
        op: impl Future<Output = Db<T>>,
    ) -> Db<T> {
        let breaker = self.breaker(role);
        if let Err(refused) = breaker.admit() {
            return Err(DbError::unavailable(format!(
                "the {} database is down ({FAILURES_TO_OPEN} operations in a row failed); try again in {} s",
                role.as_str(),
                refused.retry_after_s
            )));
        }
        let out = self.bounded(role, bound_ms, op).await;
        // A statement this request's content made fail is no sign the database is down.
        breaker.record(out.as_ref().map_or_else(|e| !e.is_outage(), |_| true));
        out
    }

    /// `op` given at most `bound_ms`; a database that does not answer takes all of it.
    async fn bounded<T>(
        &self,
        role: Role,
        bound_ms: u64,
        op: impl Future<Output = Db<T>>,
    ) -> Db<T> {
        let answered = if self.inner.answers(role) {
            race(op, self.clock.sleep(bound_ms)).await
        } else {
            race(std::future::pending(), self.clock.sleep(bound_ms)).await
        };
        answered.unwrap_or_else(|| {
            Err(DbError::unavailable(format!(
                "the {} database did not answer within {bound_ms} ms",
                role.as_str()
            )))
        })
    }
}

impl<S: Databases, C: Clock> Storage for Guarded<S, C> {
    async fn create_user(&self, user: &User) -> Db<bool> {
        self.run(Role::User, self.inner.create_user(user)).await
    }
    async fn user(&self, name: &str) -> Db<Option<User>> {
        self.run(Role::User, self.inner.user(name)).await
    }
    async fn create_session(&self, session: &Session) -> Db<()> {
        self.run(Role::User, self.inner.create_session(session))
            .await
    }
    async fn session(&self, token_hash: &str) -> Db<Option<Session>> {
        self.run(Role::User, self.inner.session(token_hash)).await
    }
    async fn delete_session(&self, token_hash: &str) -> Db<()> {
        self.run(Role::User, self.inner.delete_session(token_hash))
            .await
    }
    async fn purge_sessions(&self, now_ms: u64) -> Db<u64> {
        self.run(Role::User, self.inner.purge_sessions(now_ms))
            .await
    }
    async fn delete_sessions_of(&self, user: &str) -> Db<()> {
        self.run(Role::User, self.inner.delete_sessions_of(user))
            .await
    }
    async fn set_password(&self, user: &str, hash: &str) -> Db<bool> {
        self.run(Role::User, self.inner.set_password(user, hash))
            .await
    }
    async fn record_failure(&self, subject: &str, now_ms: u64, window_ms: u64) -> Db<Failures> {
        self.run(
            Role::User,
            self.inner.record_failure(subject, now_ms, window_ms),
        )
        .await
    }
    async fn failures(&self, subject: &str, now_ms: u64, window_ms: u64) -> Db<Failures> {
        self.run(Role::User, self.inner.failures(subject, now_ms, window_ms))
            .await
    }
    async fn clear_failures(&self, subject: &str) -> Db<()> {
        self.run(Role::User, self.inner.clear_failures(subject))
            .await
    }
    async fn purge_failures(&self, now_ms: u64, window_ms: u64) -> Db<u64> {
        self.run(Role::User, self.inner.purge_failures(now_ms, window_ms))
            .await
    }
    async fn save_api(&self, api: &Api) -> Db<()> {
        self.run(Role::Apim, self.inner.save_api(api)).await
    }
    async fn api(&self, id: &str) -> Db<Option<Api>> {
        self.run(Role::Apim, self.inner.api(id)).await
    }
    async fn apis(&self) -> Db<Vec<Api>> {
        self.run(Role::Apim, self.inner.apis()).await
    }
    async fn create_application(&self, app: &Application) -> Db<bool> {
        self.run(Role::Apim, self.inner.create_application(app))
            .await
    }
    async fn application(&self, id: &str) -> Db<Option<Application>> {
        self.run(Role::Apim, self.inner.application(id)).await
    }
    async fn applications(&self, owner: &str) -> Db<Vec<Application>> {
        self.run(Role::Apim, self.inner.applications(owner)).await
    }
    async fn subscribe(&self, application: &str, api: &str) -> Db<bool> {
        self.run(Role::Apim, self.inner.subscribe(application, api))
            .await
    }
    async fn unsubscribe(&self, application: &str, api: &str) -> Db<bool> {
        self.run(Role::Apim, self.inner.unsubscribe(application, api))
            .await
    }
    async fn subscribed(&self, application: &str, api: &str) -> Db<bool> {
        self.run(Role::Apim, self.inner.subscribed(application, api))
            .await
    }
    async fn subscriptions(&self, application: &str) -> Db<Vec<String>> {
        self.run(Role::Apim, self.inner.subscriptions(application))
            .await
    }
    async fn all_subscriptions(&self) -> Db<Vec<(String, String)>> {
        self.run(Role::Apim, self.inner.all_subscriptions()).await
    }
    async fn save_client(&self, keys: &ClientKeys) -> Db<()> {
        self.run(Role::Apim, self.inner.save_client(keys)).await
    }
    async fn client(&self, consumer_key: &str) -> Db<Option<ClientKeys>> {
        self.run(Role::Apim, self.inner.client(consumer_key)).await
    }
    async fn save_token(&self, token: &Token) -> Db<()> {
        self.run(Role::Apim, self.inner.save_token(token)).await
    }
    async fn token(&self, token_hash: &str) -> Db<Option<Token>> {
        self.run(Role::Apim, self.inner.token(token_hash)).await
    }
    async fn revoke_token(&self, token_hash: &str, at_ms: u64) -> Db<bool> {
        self.run(Role::Apim, self.inner.revoke_token(token_hash, at_ms))
            .await
    }
    async fn revoke_application_keys(&self, application: &str, at_ms: u64) -> Db<Vec<String>> {
        self.run(
            Role::Apim,
            self.inner.revoke_application_keys(application, at_ms),
        )
        .await
    }
    async fn purge_tokens(&self, now_ms: u64) -> Db<u64> {
        self.run(Role::Apim, self.inner.purge_tokens(now_ms)).await
    }
    async fn revoked_since(&self, since_ms: u64) -> Db<Vec<(String, u64)>> {
        // The gateways' catch-up: its answer, even "the database is unavailable", must come
        // back within their cache's trust window, or a database that hangs would end the
        // trust that a database that refuses keeps.
        let bound = self.operation_ms.min(CATCH_UP_MS);
        self.run_within(Role::Apim, bound, self.inner.revoked_since(since_ms))
            .await
    }
    async fn register(&self, api: &Api) -> Db<()> {
        self.run(Role::Registry, self.inner.register(api)).await
    }
    async fn unregister(&self, id: &str) -> Db<()> {
        self.run(Role::Registry, self.inner.unregister(id)).await
    }
    async fn registered(&self) -> Db<Vec<Api>> {
        self.run(Role::Registry, self.inner.registered()).await
    }
    fn breakers(&self) -> Vec<(&'static str, bool)> {
        ROLES
            .into_iter()
            .filter(|r| self.serves(*r))
            .map(|r| (r.as_str(), self.breaker(r).is_open()))
            .collect()
    }
    async fn probe(&self) {
        let mut probed = Vec::new();
        for role in ROLES.into_iter().filter(|r| self.serves(*r)) {
            let database = self.of_role[role as usize];
            if self.breaker(role).is_open() && !probed.contains(&database) {
                probed.push(database);
                // Short-bound: a probe sent just before the database came back must not
                // hold the breaker open for a whole operation's bound.
                let bound = self.operation_ms.min(PROBE_BOUND_MS);
                let ok = self
                    .bounded(role, bound, self.inner.ping(role))
                    .await
                    .is_ok();
                self.breaker(role).record(ok);
            }
        }
    }
}
