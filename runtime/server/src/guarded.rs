//! Bounded waits on every database: each operation of a node's storage is given at most a
//! fixed time (connect and acquire included), and each database's circuit breaker
//! (`apim_components::breaker`, the logic both worlds share) fails at once while that database
//! is known to be down, so callers, balancers and connection slots never pile up behind it.

use crate::storage::{Role, SqlStorage};
use apim_components::breaker::{Breaker, CATCH_UP_MS, FAILURES_TO_OPEN, State};
use apim_components::world::{
    Api, Application, ClientKeys, Db, DbError, Failures, Session, Storage, Token, User,
};
use std::future::Future;
use std::time::Duration;

const ROLES: [Role; 3] = [Role::User, Role::Apim, Role::Registry];

/// A node's storage with a time bound per operation and a breaker per database (roles that
/// share a database share its breaker).
pub struct Guarded {
    inner: SqlStorage,
    operation: Duration,
    breakers: Vec<Breaker>,
    /// The breaker of each role, by `Role as usize`.
    of_role: [usize; 3],
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Guarded {
    pub fn new(inner: SqlStorage, operation: Duration) -> Guarded {
        let roles = ROLES;
        // A role without a database gets a breaker of its own that never sees an operation.
        let of_role = roles.map(|r| inner.database_of(r).unwrap_or(3 + r as usize));
        let count = of_role.iter().max().map_or(0, |m| m + 1);
        Guarded {
            inner,
            operation,
            breakers: (0..count).map(|_| Breaker::default()).collect(),
            of_role,
        }
    }

    fn breaker(&self, role: Role) -> &Breaker {
        &self.breakers[self.of_role[role as usize]]
    }

    async fn run<T>(&self, role: Role, op: impl Future<Output = Db<T>>) -> Db<T> {
        self.run_within(role, self.operation, op).await
    }

    async fn run_within<T>(
        &self,
        role: Role,
        bound: Duration,
        op: impl Future<Output = Db<T>>,
    ) -> Db<T> {
        let breaker = self.breaker(role);
        if let Err(refused) = breaker.admit(now_ms()) {
            return Err(DbError::unavailable(format!(
                "the {} database is down ({FAILURES_TO_OPEN} operations in a row failed); the next try is in {} s",
                role.as_str(),
                refused.retry_after_s
            )));
        }
        let out = match tokio::time::timeout(bound, op).await {
            Ok(r) => r,
            Err(_) => Err(DbError::unavailable(format!(
                "the {} database did not answer within {} ms",
                role.as_str(),
                bound.as_millis()
            ))),
        };
        // A statement this request's content made fail is no sign the database is down.
        breaker.record(
            now_ms(),
            out.as_ref().map_or_else(|e| !e.is_outage(), |_| true),
        );
        out
    }

    /// Whether the breaker of `role` is open (for tests and metrics).
    pub fn is_open(&self, role: Role) -> bool {
        !matches!(self.breaker(role).state(), State::Closed { .. })
    }
}

impl Storage for Guarded {
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
    async fn revoked_since(&self, since_ms: u64) -> Db<Vec<String>> {
        // The gateways' catch-up: its answer, even "the database is unavailable", must come
        // back within their cache's trust window, or a database that hangs would end the
        // trust that a database that refuses keeps.
        let bound = self.operation.min(Duration::from_millis(CATCH_UP_MS));
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
            .filter(|r| self.inner.serves(*r))
            .map(|r| (r.as_str(), self.breaker(r).is_open()))
            .collect()
    }
    async fn probe(&self) {
        let mut probed = Vec::new();
        for role in ROLES.into_iter().filter(|r| self.inner.serves(*r)) {
            let database = self.of_role[role as usize];
            if self.breaker(role).is_open() && !probed.contains(&database) {
                probed.push(database);
                let _ = self.run(role, self.inner.ping(role)).await;
            }
        }
    }
}
