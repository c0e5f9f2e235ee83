//! Storage in memory: the three databases as ordered maps, with outages switched on and off
//! per role. The simulated world keeps its databases here; tests use it too.

use crate::world::{
    Api, Application, ClientKeys, Db, DbError, Failures, Session, Storage, Token, User,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// The database roles: the topology's own words.
pub use apim_topology::vocab::Role;

/// The tables, as a simulator's oracle reads them (`MemStorage::inspect`).
#[derive(Default)]
pub struct Tables {
    pub users: BTreeMap<String, User>,
    pub sessions: BTreeMap<String, Session>,
    /// subject -> failed sign-in attempts in its window.
    pub failures: BTreeMap<String, Failures>,
    pub apis: BTreeMap<String, Api>,
    pub applications: BTreeMap<String, Application>,
    /// application -> the APIs it is subscribed to.
    pub subscriptions: BTreeMap<String, BTreeSet<String>>,
    pub clients: BTreeMap<String, ClientKeys>,
    pub tokens: BTreeMap<String, Token>,
    /// token hash -> when it was revoked.
    pub revocations: BTreeMap<String, u64>,
    pub registry: BTreeMap<String, Api>,
    pub down: BTreeSet<Role>,
}

impl Tables {
    pub fn subscribed(&self, application: &str, api: &str) -> bool {
        self.subscriptions
            .get(application)
            .is_some_and(|apis| apis.contains(api))
    }
}

#[derive(Default)]
pub struct MemStorage {
    tables: Mutex<Tables>,
    defects: crate::defects::Defects,
}

impl MemStorage {
    /// Storage with deliberate defects (the simulator's own tests).
    #[doc(hidden)]
    pub fn with_defects(defects: crate::defects::Defects) -> MemStorage {
        MemStorage {
            tables: Mutex::default(),
            defects,
        }
    }

    /// Starts or ends an outage of the database serving `role`.
    pub fn set_down(&self, role: Role, down: bool) {
        let mut t = self.lock();
        if down {
            t.down.insert(role);
        } else {
            t.down.remove(&role);
        }
    }

    /// Reads the tables as they are, outages aside: what an oracle checks answers against.
    pub fn inspect<T>(&self, f: impl FnOnce(&Tables) -> T) -> T {
        f(&self.lock())
    }

    /// What the database holds about a token, outages aside (for a simulator's oracle): the
    /// token and when it was revoked.
    pub fn token_truth(&self, token_hash: &str) -> Option<(Token, Option<u64>)> {
        let t = self.lock();
        let token = t.tokens.get(token_hash)?.clone();
        Some((token, t.revocations.get(token_hash).copied()))
    }

    /// Whether the subscription is stored, outages aside.
    pub fn subscription_truth(&self, application: &str, api: &str) -> bool {
        self.lock().subscribed(application, api)
    }

    /// The API as the apim database and the registry hold it, outages aside.
    pub fn api_truth(&self, id: &str) -> (Option<Api>, Option<Api>) {
        let t = self.lock();
        (t.apis.get(id).cloned(), t.registry.get(id).cloned())
    }

    /// Whether the database serving `role` answers: an error during its outage.
    pub fn ping(&self, role: Role) -> Db<()> {
        self.with(role, |_| ())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, role: Role, f: impl FnOnce(&mut Tables) -> T) -> Db<T> {
        let mut t = self.lock();
        if t.down.contains(&role) {
            return Err(DbError::unavailable(format!(
                "the {role:?} database is down"
            )));
        }
        Ok(f(&mut t))
    }
}

impl Storage for MemStorage {
    async fn create_user(&self, user: &User) -> Db<bool> {
        self.with(Role::User, |t| {
            if t.users.contains_key(&user.name) {
                return false;
            }
            t.users.insert(user.name.clone(), user.clone());
            true
        })
    }
    async fn user(&self, name: &str) -> Db<Option<User>> {
        self.with(Role::User, |t| t.users.get(name).cloned())
    }
    async fn create_session(&self, session: &Session) -> Db<()> {
        self.with(Role::User, |t| {
            t.sessions
                .insert(session.token_hash.clone(), session.clone());
        })
    }
    async fn session(&self, token_hash: &str) -> Db<Option<Session>> {
        self.with(Role::User, |t| t.sessions.get(token_hash).cloned())
    }
    async fn purge_sessions(&self, now_ms: u64) -> Db<u64> {
        self.with(Role::User, |t| {
            let before = t.sessions.len();
            t.sessions.retain(|_, s| s.expires_ms >= now_ms);
            (before - t.sessions.len()) as u64
        })
    }
    async fn delete_sessions_of(&self, user: &str) -> Db<()> {
        self.with(Role::User, |t| t.sessions.retain(|_, s| s.user != user))
    }
    async fn set_password(&self, user: &str, hash: &str) -> Db<bool> {
        self.with(Role::User, |t| match t.users.get_mut(user) {
            Some(u) => {
                u.password_hash = hash.to_string();
                true
            }
            None => false,
        })
    }
    async fn delete_session(&self, token_hash: &str) -> Db<()> {
        self.with(Role::User, |t| {
            t.sessions.remove(token_hash);
        })
    }
    async fn record_failure(&self, subject: &str, now_ms: u64, window_ms: u64) -> Db<Failures> {
        self.with(Role::User, |t| {
            let f = t.failures.entry(subject.to_string()).or_default();
            if f.count == 0 || f.since_ms + window_ms <= now_ms {
                *f = Failures {
                    count: 0,
                    since_ms: now_ms,
                };
            }
            f.count += 1;
            *f
        })
    }
    async fn failures(&self, subject: &str, now_ms: u64, window_ms: u64) -> Db<Failures> {
        self.with(Role::User, |t| {
            t.failures
                .get(subject)
                .copied()
                .filter(|f| f.since_ms + window_ms > now_ms)
                .unwrap_or_default()
        })
    }
    async fn clear_failures(&self, subject: &str) -> Db<()> {
        self.with(Role::User, |t| {
            t.failures.remove(subject);
        })
    }
    async fn purge_failures(&self, now_ms: u64, window_ms: u64) -> Db<u64> {
        self.with(Role::User, |t| {
            let before = t.failures.len();
            t.failures
                .retain(|_, f| f.since_ms > now_ms.saturating_sub(window_ms));
            (before - t.failures.len()) as u64
        })
    }
    async fn save_api(&self, api: &Api) -> Db<()> {
        self.with(Role::Apim, |t| {
            t.apis.insert(api.id.clone(), api.clone());
        })
    }
    async fn api(&self, id: &str) -> Db<Option<Api>> {
        self.with(Role::Apim, |t| t.apis.get(id).cloned())
    }
    async fn apis(&self) -> Db<Vec<Api>> {
        self.with(Role::Apim, |t| t.apis.values().cloned().collect())
    }
    async fn create_application(&self, app: &Application) -> Db<bool> {
        self.with(Role::Apim, |t| {
            if t.applications.contains_key(&app.id) {
                return false;
            }
            t.applications.insert(app.id.clone(), app.clone());
            true
        })
    }
    async fn application(&self, id: &str) -> Db<Option<Application>> {
        self.with(Role::Apim, |t| t.applications.get(id).cloned())
    }
    async fn applications(&self, owner: &str) -> Db<Vec<Application>> {
        self.with(Role::Apim, |t| {
            t.applications
                .values()
                .filter(|a| a.owner == owner)
                .cloned()
                .collect()
        })
    }
    async fn subscribe(&self, application: &str, api: &str) -> Db<bool> {
        self.with(Role::Apim, |t| {
            t.subscriptions
                .entry(application.to_string())
                .or_default()
                .insert(api.to_string())
        })
    }
    async fn unsubscribe(&self, application: &str, api: &str) -> Db<bool> {
        self.with(Role::Apim, |t| {
            t.subscriptions
                .get_mut(application)
                .is_some_and(|apis| apis.remove(api))
        })
    }
    async fn subscribed(&self, application: &str, api: &str) -> Db<bool> {
        let wrong = self
            .defects
            .has(crate::defects::Defect::SubscriptionLookupWrong);
        self.with(Role::Apim, |t| match t.subscriptions.get(application) {
            Some(apis) if wrong => !apis.is_empty(),
            _ => t.subscribed(application, api),
        })
    }
    async fn subscriptions(&self, application: &str) -> Db<Vec<String>> {
        self.with(Role::Apim, |t| {
            t.subscriptions
                .get(application)
                .map(|apis| apis.iter().cloned().collect())
                .unwrap_or_default()
        })
    }
    async fn all_subscriptions(&self) -> Db<Vec<(String, String)>> {
        self.with(Role::Apim, |t| {
            t.subscriptions
                .iter()
                .flat_map(|(app, apis)| apis.iter().map(|api| (app.clone(), api.clone())))
                .collect()
        })
    }
    async fn save_client(&self, keys: &ClientKeys) -> Db<()> {
        self.with(Role::Apim, |t| {
            t.clients.insert(keys.consumer_key.clone(), keys.clone());
        })
    }
    async fn client(&self, consumer_key: &str) -> Db<Option<ClientKeys>> {
        self.with(Role::Apim, |t| t.clients.get(consumer_key).cloned())
    }
    async fn save_token(&self, token: &Token) -> Db<()> {
        self.with(Role::Apim, |t| {
            t.tokens.insert(token.token_hash.clone(), token.clone());
        })
    }
    async fn token(&self, token_hash: &str) -> Db<Option<Token>> {
        self.with(Role::Apim, |t| t.tokens.get(token_hash).cloned())
    }
    async fn revoke_token(&self, token_hash: &str, at_ms: u64) -> Db<bool> {
        self.with(Role::Apim, |t| match t.tokens.get_mut(token_hash) {
            Some(tok) => {
                tok.revoked = true;
                t.revocations.insert(token_hash.to_string(), at_ms);
                true
            }
            None => false,
        })
    }
    async fn purge_tokens(&self, now_ms: u64) -> Db<u64> {
        self.with(Role::Apim, |t| {
            let gone: Vec<String> = t
                .tokens
                .iter()
                .filter(|(_, tok)| tok.expires_ms < now_ms)
                .map(|(h, _)| h.clone())
                .collect();
            for h in &gone {
                t.tokens.remove(h);
                t.revocations.remove(h);
            }
            gone.len() as u64
        })
    }
    async fn revoke_application_keys(&self, application: &str, at_ms: u64) -> Db<Vec<String>> {
        self.with(Role::Apim, |t| {
            t.clients.retain(|_, k| k.application != application);
            let mut revoked = Vec::new();
            for (hash, tok) in t.tokens.iter_mut() {
                if tok.application == application && !tok.revoked {
                    tok.revoked = true;
                    revoked.push(hash.clone());
                }
            }
            for h in &revoked {
                t.revocations.insert(h.clone(), at_ms);
            }
            revoked
        })
    }
    async fn revoked_since(&self, since_ms: u64) -> Db<Vec<(String, u64)>> {
        self.with(Role::Apim, |t| {
            t.revocations
                .iter()
                .filter(|(_, at)| **at >= since_ms)
                .map(|(h, at)| (h.clone(), *at))
                .collect()
        })
    }
    async fn register(&self, api: &Api) -> Db<()> {
        self.with(Role::Registry, |t| {
            t.registry.insert(api.id.clone(), api.clone());
        })
    }
    async fn unregister(&self, id: &str) -> Db<()> {
        self.with(Role::Registry, |t| {
            t.registry.remove(id);
        })
    }
    async fn registered(&self) -> Db<Vec<Api>> {
        self.with(Role::Registry, |t| t.registry.values().cloned().collect())
    }
}
