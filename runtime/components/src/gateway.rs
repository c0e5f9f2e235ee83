//! The gateway: routes `/{context}/{version}/...` to the API's backend after checking the
//! bearer token (through the key manager, with a bounded cache) and the subscription.
//!
//! Its routing table follows publish notifications and is reconciled from the registry at
//! start and periodically; revocation notifications drop cached tokens at once.

use crate::defects::Defect;
use crate::http::{Fields, Request, Response, bearer, body, decode_cow, hop_by_hop};
use crate::jwt::{self, Jwks};
use crate::secret;
use crate::tokens::Revocation;
use crate::wire::{
    self, NO_REVOCATIONS_POSSIBLE, OAUTH_PATHS, Revoked, Subscribed, Validate, Validation,
};
use crate::world::{Api, CallError, Peer, Storage, World};
use apim_topology::timing::{CACHE_MS, JWKS_ASK_MS, REVOCATIONS_OVERLAP_MS};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

pub const CACHE_MAX: usize = 10_000;
/// Revoked JWTs a gateway remembers until they expire, at most this many (the oldest
/// revocations go first).
pub const REVOKED_MAX: usize = 100_000;

#[derive(Clone, Debug)]
struct Cached {
    application: String,
    expires_ms: u64,
    cached_ms: u64,
    /// API id -> subscribed.
    subscriptions: BTreeMap<String, bool>,
}

#[derive(Default)]
struct State {
    /// (context, version) -> API.
    /// context -> version -> API; shared, so a request takes a reference, not a copy.
    routes: BTreeMap<String, BTreeMap<String, Arc<Api>>>,
    /// token digest -> validation.
    cache: BTreeMap<[u8; 32], Cached>,
    /// The key manager's time of the last revocation catch-up.
    revocations_seen_ms: Option<u64>,
    /// This gateway's time when the last successful catch-up was asked for.
    trusted_since_ms: Option<u64>,
    /// Tokens this gateway heard were revoked, and when: a validation that was in flight when
    /// the revocation arrived must not put the token back in the cache.
    revoked: BTreeMap<[u8; 32], u64>,
    /// The same revocations by time, oldest first: which one a full list forgets.
    revoked_order: BTreeSet<(u64, [u8; 32])>,
    /// Until when a revocation this gateway had to forget (the list was full) may still be of
    /// a live token: until then no JWT is decided here alone, the key manager is asked.
    forgotten_until_ms: u64,
    /// Whether the routing table has been read from the registry since the gateway started:
    /// before, an unknown route may be an API it has not heard of yet.
    caught_up: bool,
    /// The key manager's public keys, once asked for (else the deployment's, read at start).
    jwks: Option<Arc<Jwks>>,
    /// When the key manager was last asked for its keys: an unknown key id asks at most once
    /// per `JWKS_ASK_MS`, so forged key ids cannot make a gateway flood it.
    jwks_asked_ms: Option<u64>,
    /// Application -> the APIs it is subscribed to, as pushed and caught up (JWT tokens).
    subscribed: BTreeMap<String, BTreeSet<String>>,
    /// Token digest -> a JWT whose signature, audience and expiry held: a signature is
    /// checked once per token, not once per call.
    verified: BTreeMap<[u8; 32], Verified>,
}

/// What a checked JWT says, as long as it is valid.
struct Verified {
    application: Arc<str>,
    expires_ms: u64,
}

#[derive(Deserialize)]
struct Revocations {
    token_hashes: Vec<String>,
    now_ms: u64,
}

/// A gateway's own state; the logic is in its methods.
#[derive(Default)]
pub struct Gateway {
    state: Mutex<State>,
}

impl Gateway {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-updated: every change is one insert or
        // remove, so the state is usable even if the lock was poisoned.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The APIs this gateway serves.
    pub fn routes(&self) -> Vec<Api> {
        self.state()
            .routes
            .values()
            .flat_map(|v| v.values().map(|a| Api::clone(a)))
            .collect()
    }

    fn apply(&self, world: &impl World, api: Api) {
        let mut s = self.state();
        if !api.state.invokable() && world.defects().has(Defect::RetiredRouted) {
            return;
        }
        for versions in s.routes.values_mut() {
            versions.retain(|_, a| a.id != api.id);
        }
        s.routes.retain(|_, v| !v.is_empty());
        if api.state.invokable() {
            s.routes
                .entry(api.context.clone())
                .or_default()
                .insert(api.version.clone(), Arc::new(api));
        }
    }

    /// Tokens whose validation is cached now.
    pub fn cached_tokens(&self) -> usize {
        self.state().cache.len()
    }

    /// Whether the gateway has read the published APIs from the registry since it started:
    /// until then it is not ready, and a route it does not know is answered 503, not 404.
    pub fn caught_up(&self) -> bool {
        self.state().caught_up
    }

    fn route_count(&self) -> usize {
        self.state().routes.values().map(BTreeMap::len).sum()
    }

    /// Replaces the routing table with the registry's published APIs.
    pub async fn reconcile(&self, world: &impl World) -> Result<usize, String> {
        if world.defects().has(Defect::ReconcileDisabled) {
            self.state().caught_up = true;
            return Ok(self.route_count());
        }
        let apis = world.storage().registered().await.map_err(|e| e.0)?;
        let mut routes: BTreeMap<String, BTreeMap<String, Arc<Api>>> = BTreeMap::new();
        if world.defects().has(Defect::RetiredRouted) {
            routes = self.state().routes.clone();
        }
        for a in apis.into_iter().filter(|a| a.state.invokable()) {
            routes
                .entry(a.context.clone())
                .or_default()
                .insert(a.version.clone(), Arc::new(a));
        }
        let mut s = self.state();
        s.routes = routes;
        s.caught_up = true;
        Ok(s.routes.values().map(BTreeMap::len).sum())
    }

    /// Drops cached tokens revoked since the last catch-up.
    pub async fn sync_revocations(&self, world: &impl World) -> Result<usize, String> {
        // The first time, only recent revocations matter: a token revoked earlier could not
        // have passed validation into this cache.
        // A JWT, though, is decided here alone until it expires: a gateway that starts must
        // hear of every revocation of a token still alive.
        let tokens = world.tokens();
        let first = if tokens.jwt() {
            world.now_ms().saturating_sub(tokens.lifetime_ms)
        } else {
            world.now_ms()
        };
        let since = self
            .state()
            .revocations_seen_ms
            .unwrap_or(first)
            .saturating_sub(REVOCATIONS_OVERLAP_MS);
        let ask = Request::new("POST", wire::REVOCATIONS)
            .json(&wire::RevocationsSince { since_ms: since });
        let asked_ms = world.now_ms();
        let answer = world
            .call(Peer::KeyManager, ask)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status == 503
            && answer
                .json_body()
                .is_some_and(|b| b["error"] == NO_REVOCATIONS_POSSIBLE)
        {
            let mut s = self.state();
            let trusted = s
                .trusted_since_ms
                .is_some_and(|t| asked_ms < t + tokens.trust_ms());
            if trusted {
                s.trusted_since_ms = Some(asked_ms);
                return Ok(0);
            }
            return Err(
                "the key manager cannot read revocations, and this gateway missed some".into(),
            );
        }
        if answer.status != 200 {
            return Err(format!("the key manager answered {}", answer.status));
        }
        let r: Revocations = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        let now = world.now_ms();
        let apply = !world.defects().has(Defect::CatchUpNotApplied);
        let mut s = self.state();
        let mut dropped = 0;
        for h in r
            .token_hashes
            .iter()
            .filter_map(|h| secret::digest_of_hash(h))
        {
            if apply && s.forget(h, now, remembered(world)) {
                dropped += 1;
            }
        }
        s.revocations_seen_ms = Some(r.now_ms);
        s.trusted_since_ms = Some(asked_ms);
        // Entries past their time can never answer again: drop them here rather than keep
        // them until the cache is full.
        s.cache
            .retain(|_, c| now < c.expires_ms && now < c.cached_ms + CACHE_MS);
        s.verified.retain(|_, v| now < v.expires_ms);
        let remembered = remembered(world);
        s.revoked.retain(|_, at| now < *at + remembered);
        s.revoked_order.retain(|(at, _)| now < *at + remembered);
        Ok(dropped)
    }

    pub async fn handle(&self, world: &impl World, req: Request) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            (_, path) if OAUTH_PATHS.contains(&path) => {
                // The key manager limits per client address: it hears the one this gateway
                // vouches for, never one a client wrote.
                let origin = req.origin().to_string();
                let mut req = req;
                req.headers.retain(|(n, _)| n != "x-forwarded-for");
                let req = req.header("x-forwarded-for", &origin);
                crate::world::ask_key_manager(world, req).await
            }
            ("POST", wire::APIS) => match body::<Api>(&req) {
                Ok(api) => {
                    self.apply(world, api);
                    Response::json(200, &json!({ "routes": self.route_count() }))
                }
                Err(r) => r,
            },
            ("POST", wire::SUBSCRIBED) => match body::<Subscribed>(&req) {
                Ok(n) => {
                    let mut s = self.state();
                    if n.removed {
                        if !world.defects().has(Defect::SubscriptionEndIgnored) {
                            s.forget_subscription(&n.application, &n.api);
                        }
                    } else {
                        s.subscribed.entry(n.application).or_default().insert(n.api);
                    }
                    Response::new(200)
                }
                Err(r) => r,
            },
            ("POST", wire::REVOKED) => match body::<Revoked>(&req) {
                Ok(r) => {
                    if let Some(d) = secret::digest_of_hash(&r.token_hash) {
                        self.state().forget(d, world.now_ms(), remembered(world));
                    }
                    Response::new(200)
                }
                Err(r) => r,
            },
            _ => self.invoke(world, req).await,
        }
    }

    /// An API call as a whole message (the simulated world): decided by `admit`, its head made
    /// fit for the backend, sent (once more when `resend_once` says so and it broke before any
    /// answer), and the answer's head made fit for the client. The real world streams the
    /// bodies instead, with the same policy functions around its byte moving.
    async fn invoke(&self, world: &impl World, mut req: Request) -> Response {
        let admitted = match self
            .admit(world, &req.path, req.get_header("authorization"))
            .await
        {
            Ok(admitted) => admitted,
            Err(r) => return r,
        };
        to_backend(&mut req.headers);
        req.path = admitted.path;
        let backend = &admitted.api.backend;
        if let Err(why) = world.backends().check_url(backend) {
            return refused_backend(&admitted.api, &why);
        }
        let again = resend_once(&req.method, req.body.is_empty());
        let answer = match world.forward(backend, &req).await {
            Err(CallError::Broken(_)) if again => world.forward(backend, &req).await,
            answer => answer,
        };
        match answer {
            Ok(mut r) => {
                from_backend(&mut r.headers);
                r
            }
            Err(e) => backend_failed(&e),
        }
    }

    /// Decides on an API call from its path and `Authorization` header alone — route, token,
    /// subscription. Returns the API and the path to ask its backend for, or the answer to
    /// give instead. The real world streams the body to the backend after this; the simulated
    /// one forwards the whole message. Either way the backend gets the client's headers but
    /// those `withheld` says it must not.
    pub async fn admit(
        &self,
        world: &impl World,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Admitted, Response> {
        let (mut context, mut version) = (None, None);
        for (i, s) in path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode_cow)
            .enumerate()
        {
            if s == ".." || s == "." || s.contains('/') {
                return Err(Response::error(
                    400,
                    "invalid_request",
                    "the path may not contain `.` or `..` segments",
                ));
            }
            match i {
                0 => context = Some(s),
                1 => version = Some(s),
                _ => {}
            }
        }
        let (Some(context), Some(version)) = (context, version) else {
            return Err(Response::error(
                404,
                "not_found",
                "call /{context}/{version}/... of a published API",
            ));
        };
        let (api, caught_up) = {
            let s = self.state();
            let api = s
                .routes
                .get(context.as_ref())
                .and_then(|v| v.get(version.as_ref()))
                .cloned();
            (api, s.caught_up)
        };
        let Some(api) = api else {
            if !caught_up {
                return Err(not_caught_up());
            }
            return Err(Response::error(
                404,
                "not_found",
                format!("no published API at /{context}/{version}"),
            ));
        };
        drop((context, version));
        let Some(token) = authorization.and_then(bearer) else {
            return Err(Response::error(
                401,
                "invalid_token",
                "send an access token as `Authorization: Bearer ...`",
            )
            .header("www-authenticate", "Bearer"));
        };
        self.authorize(world, token, &api.id).await?;
        Ok(Admitted {
            api,
            // The backend gets the rest of the path as the client wrote it (still
            // percent-encoded), without empty segments.
            path: rest_of_path(path),
        })
    }

    /// Checks a token and its subscription to `api`: a JWT here, an opaque token from the
    /// cache when it can answer.
    async fn authorize(&self, world: &impl World, token: &str, api: &str) -> Result<(), Response> {
        if world.tokens().jwt() && jwt::looks_like(token) {
            return Box::pin(self.authorize_jwt(world, token, api)).await;
        }
        let defects = world.defects();
        let hash = if defects.has(Defect::SuffixAccepted) {
            secret::digest(token.get(..64).unwrap_or(token))
        } else {
            secret::digest(token)
        };
        let now = world.now_ms();
        let cached = {
            let s = self.state();
            let tokens = world.tokens();
            // Under the available policy a cut-off gateway keeps its answers until they end.
            let trusted = s
                .trusted_since_ms
                .is_some_and(|t| now < t + tokens.trust_ms())
                || tokens.revocation == Revocation::Available;
            s.cache
                .get(&hash)
                .filter(|c| trusted && now < c.expires_ms && now < c.cached_ms + CACHE_MS)
                .and_then(|c| c.subscriptions.get(api).copied())
                .map(|sub| sub || defects.has(Defect::SubscriptionSkipped))
        };
        if let Some(subscribed) = cached {
            return decide(true, subscribed);
        }
        // Asking the key manager is the rare path: boxed, so that the future of every call
        // the cache answers stays small (it is moved into place on each request).
        Box::pin(self.validate(world, token, api, hash, now)).await
    }

    /// Decides on a JWT here: its signature, expiry and audience, the revocations heard of,
    /// and the subscriptions pushed and caught up. The key manager is asked only about a
    /// subscription this gateway has not heard of, and for a key it does not know.
    async fn authorize_jwt(
        &self,
        world: &impl World,
        token: &str,
        api: &str,
    ) -> Result<(), Response> {
        let now = world.now_ms();
        let token = if world.defects().has(Defect::SuffixAccepted) {
            // The defect's JWT form: the signature read at its length, whatever follows.
            let sig_at = token.rfind('.').map_or(token.len(), |i| i + 1);
            token.get(..sig_at + 86).unwrap_or(token)
        } else {
            token
        };
        let tokens = world.tokens();
        let defects = world.defects();
        let hash = secret::digest(token);
        // (fresh, known); none when the token was revoked.
        let decided = |s: &State, application: &str| {
            if s.revoked.contains_key(&hash) {
                return None;
            }
            let fresh = s
                .trusted_since_ms
                .is_some_and(|t| now < t + tokens.trust_ms());
            let known = s
                .subscribed
                .get(application)
                .is_some_and(|apis| apis.contains(api));
            Some((fresh, known))
        };
        // The common case, under one lock: a token checked before, nothing new to ask.
        {
            let s = self.state();
            if let Some(v) = s.verified.get(&hash).filter(|v| now < v.expires_ms) {
                let Some((fresh, known)) = decided(&s, &v.application) else {
                    return decide(false, false);
                };
                let vouched = (fresh || tokens.revocation == Revocation::Available)
                    && now >= s.forgotten_until_ms;
                if vouched && (known || defects.has(Defect::SubscriptionSkipped)) {
                    return Ok(());
                }
            }
        }
        let claims = match self.verify(world, token, now) {
            Err(jwt::Reject::UnknownKey) if self.may_ask_for_keys(now) => {
                self.learn_keys(world).await;
                self.verify(world, token, now)
            }
            v => v,
        }
        .map_err(|why| refused_token(&why))?;
        let (fresh, known, forgotten) = {
            let mut s = self.state();
            let Some((fresh, known)) = decided(&s, &claims.application) else {
                return decide(false, false);
            };
            let decision = (fresh, known, now < s.forgotten_until_ms);
            if s.verified.len() >= CACHE_MAX && !s.verified.contains_key(&hash) {
                s.verified.retain(|_, v| now < v.expires_ms);
                if s.verified.len() >= CACHE_MAX {
                    let soonest = s
                        .verified
                        .iter()
                        .min_by_key(|(k, v)| (v.expires_ms, **k))
                        .map(|(k, _)| *k);
                    if let Some(k) = soonest {
                        s.verified.remove(&k);
                    }
                }
            }
            s.verified.insert(
                hash,
                Verified {
                    application: claims.application.as_str().into(),
                    expires_ms: claims.exp.saturating_mul(1000),
                },
            );
            decision
        };
        if (!fresh && tokens.revocation == Revocation::Strict) || forgotten {
            // This gateway may have missed a revocation: only the key manager can vouch for
            // the token now, as it does for an opaque one (503 when out of reach).
            return self.validate(world, token, api, hash, now).await;
        }
        if known || defects.has(Defect::SubscriptionSkipped) {
            return Ok(());
        }
        // Not heard of: a subscription made a moment ago whose push has not arrived, or none.
        match self.validate(world, token, api, hash, now).await {
            Ok(()) => {
                self.state()
                    .subscribed
                    .entry(claims.application)
                    .or_default()
                    .insert(api.to_string());
                Ok(())
            }
            Err(r) => Err(r),
        }
    }

    fn verify(
        &self,
        world: &impl World,
        token: &str,
        now: u64,
    ) -> Result<jwt::Claims, jwt::Reject> {
        let tokens = world.tokens();
        let learned = self.state().jwks.clone();
        let keys = learned.as_deref().unwrap_or(&tokens.jwks);
        let verified = jwt::verify_with(token, keys, now / 1000, &tokens.audience, |k, m, s| {
            world.signature_ok(k, m, s)
        });
        let defects = world.defects();
        match verified {
            Err(jwt::Reject::Expired) if defects.has(Defect::JwtExpiryIgnored) => {
                jwt::claims_unchecked(token).ok_or(jwt::Reject::Expired)
            }
            Err(jwt::Reject::UnknownKey) if defects.has(Defect::UnknownKeyUnchecked) => {
                jwt::claims_unchecked(token).ok_or(jwt::Reject::UnknownKey)
            }
            v => v,
        }
    }

    fn may_ask_for_keys(&self, now: u64) -> bool {
        let mut s = self.state();
        if s.jwks_asked_ms.is_some_and(|t| now < t + JWKS_ASK_MS) {
            return false;
        }
        s.jwks_asked_ms = Some(now);
        true
    }

    /// Learns the keys rotated in since this gateway started: the deployment's published keys
    /// read again, and the key manager's; answers how many keys it accepts now.
    pub async fn learn_keys(&self, world: &impl World) -> usize {
        let mut keys = world.published_keys().unwrap_or_default();
        let asked = world
            .call(Peer::KeyManager, Request::new("GET", wire::JWKS))
            .await
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| r.json_body())
            .and_then(|v| Jwks::from_json(&v).ok());
        keys.keys.extend(asked.map(|k| k.keys).unwrap_or_default());
        let mut s = self.state();
        // Keys the deployment published at start stay accepted: a key manager that has not
        // been given the new key yet does not take it away.
        let mut merged = s.jwks.as_deref().unwrap_or(&world.tokens().jwks).clone();
        for k in keys.keys {
            if !merged.keys.iter().any(|m| m.kid == k.kid) {
                merged.keys.push(k);
            }
        }
        let n = merged.keys.len();
        s.jwks = Some(Arc::new(merged));
        n
    }

    /// Replaces the subscriptions this gateway knows with the key manager's list: the catch-up
    /// for pushes it missed (JWT tokens).
    pub async fn sync_subscriptions(&self, world: &impl World) -> Result<usize, String> {
        let answer = world
            .call(
                Peer::KeyManager,
                Request::new("POST", wire::SUBSCRIPTIONS).json(&json!({})),
            )
            .await
            .map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!("the key manager answered {}", answer.status));
        }
        let list: Vec<Subscribed> =
            serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for sub in list {
            known.entry(sub.application).or_default().insert(sub.api);
        }
        let n = known.values().map(BTreeSet::len).sum();
        let mut s = self.state();
        if world.defects().has(Defect::SubscriptionEndIgnored) {
            for (application, apis) in std::mem::take(&mut s.subscribed) {
                known.entry(application).or_default().extend(apis);
            }
        }
        s.subscribed = known;
        Ok(n)
    }

    /// Asks the key manager about a token the cache could not answer, and caches the answer.
    async fn validate(
        &self,
        world: &impl World,
        token: &str,
        api: &str,
        hash: [u8; 32],
        now: u64,
    ) -> Result<(), Response> {
        let ask = Request::new("POST", wire::VALIDATE).json(&Validate {
            token: token.to_string(),
            api: api.to_string(),
        });
        let answer = match world.call(Peer::KeyManager, ask).await {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                return Err(Response::error(
                    503,
                    "unavailable",
                    format!("the key manager answered {}", r.status),
                ));
            }
            Err(e) => {
                return Err(Response::error(
                    503,
                    "unavailable",
                    format!("the key manager cannot be reached: {e}"),
                ));
            }
        };
        let v: Validation = match serde_json::from_slice(&answer.body) {
            Ok(v) => v,
            Err(_) => {
                return Err(Response::error(
                    503,
                    "unavailable",
                    "the key manager's answer could not be read",
                ));
            }
        };
        let skip = world.defects().has(Defect::SubscriptionSkipped);
        if v.active {
            let mut s = self.state();
            if s.revoked.contains_key(&hash) {
                // Revoked while the key manager was answering: its answer is already stale.
                return decide(false, false);
            }
            if s.cache.len() >= CACHE_MAX && !s.cache.contains_key(&hash) {
                evict(&mut s.cache, now);
            }
            let fresh = || Cached {
                application: v.application.clone(),
                expires_ms: v.expires_ms,
                cached_ms: now,
                subscriptions: BTreeMap::new(),
            };
            let entry = s.cache.entry(hash).or_insert_with(fresh);
            // A stale entry starts over: keeping its old time would make every later request
            // with this token miss the cache.
            if entry.application != v.application || now >= entry.cached_ms + CACHE_MS {
                *entry = fresh();
            }
            entry.subscriptions.insert(api.to_string(), v.subscribed);
        }
        decide(v.active, v.subscribed || skip)
    }
}

impl State {
    /// An ended subscription: neither the subscriptions heard of nor a cached validation
    /// answer for it any more.
    fn forget_subscription(&mut self, application: &str, api: &str) {
        if let Some(apis) = self.subscribed.get_mut(application) {
            apis.remove(api);
        }
        for c in self.cache.values_mut() {
            if c.application == application {
                c.subscriptions.remove(api);
            }
        }
    }

    /// Drops a revoked token from the cache and remembers it for a while; true when it was When the list is full the oldest revocation goes, and until a token revoked
    /// then must have expired (`remembered_ms` after it) the gateway decides nothing alone:
    /// fail closed, never accept a revoked token again.
    fn forget(&mut self, digest: [u8; 32], now: u64, remembered_ms: u64) -> bool {
        if self.revoked.len() >= REVOKED_MAX
            && !self.revoked.contains_key(&digest)
            && let Some((at, k)) = self.revoked_order.pop_first()
        {
            self.revoked.remove(&k);
            self.forgotten_until_ms = self.forgotten_until_ms.max(at + remembered_ms);
        }
        if let Some(before) = self.revoked.insert(digest, now) {
            self.revoked_order.remove(&(before, digest));
        }
        self.revoked_order.insert((now, digest));
        self.cache.remove(&digest).is_some()
    }
}

/// The answer to a JWT that failed a check; why, for the client, without the details an
/// attacker would use.
fn refused_token(why: &jwt::Reject) -> Response {
    let description = match why {
        jwt::Reject::Expired => "the access token has expired",
        jwt::Reject::WrongAudience => "the access token is not for this gateway",
        _ => "the access token is not valid",
    };
    Response::error(401, "invalid_token", description)
        .header("www-authenticate", "Bearer error=\"invalid_token\"")
}

/// The answer to a call for a route a gateway does not know before it has read the registry:
/// the API may be published, so "not found" would be a lie the client might act on.
pub fn not_caught_up() -> Response {
    Response::error(
        503,
        "starting",
        "this gateway has not read the published APIs from the registry yet; try again",
    )
    .header("retry-after", crate::auth::RETRY_AFTER_S)
}

/// The answer when an API's backend failed: 504 when it did not answer in time, else 502.
pub fn backend_failed(e: &crate::world::CallError) -> Response {
    match e {
        crate::world::CallError::Timeout => Response::error(
            504,
            "backend_timeout",
            "the API's backend did not answer in time",
        ),
        // Where the backend is stays inside: the caller learns only what kind of failure.
        crate::world::CallError::Connect(_) => {
            Response::error(502, "bad_gateway", "the API's backend could not be reached")
        }
        crate::world::CallError::Broken(_) => {
            Response::error(502, "bad_gateway", "the API's backend broke the connection")
        }
    }
}

/// The answer to a call whose API's backend the deployment's policy refuses (an API published
/// before the policy, or a name that resolved where it may not); the reason goes to the
/// security log, not to the caller.
pub fn refused_backend(api: &Api, why: &str) -> Response {
    crate::security::event(
        "backend_refused",
        &[("api", api.id.as_str()), ("reason", why)],
    );
    Response::error(
        502,
        "bad_gateway",
        "the API's backend is not allowed by this deployment's backend policy",
    )
}

/// How long a revoked token must be remembered: until it would have expired anyway.
fn remembered(world: &impl World) -> u64 {
    if world.tokens().jwt() {
        world.tokens().lifetime_ms
    } else {
        CACHE_MS
    }
}

/// An API call the gateway let through.
#[derive(Debug)]
pub struct Admitted {
    pub api: Arc<Api>,
    /// The path to ask the backend for, after the backend URL's own path.
    pub path: String,
}

/// Headers a backend never gets from a client: its credentials for the gateway, and the
/// gateway's own host name (header names in lowercase).
pub fn withheld(name: &str) -> bool {
    matches!(name, "authorization" | "host")
}

/// The head of an admitted call on its way to the backend: no hop-by-hop field, nothing
/// `withheld`, no portal cookie. Both worlds run it (the real one on hyper's header map).
pub fn to_backend(head: &mut impl Fields) {
    head.remove_where(|n| hop_by_hop(n) || withheld(n));
    head.rewrite("cookie", backend_cookie);
}

/// The head of the backend's answer on its way to the client: no hop-by-hop field, and no
/// `Set-Cookie` for a portal cookie.
pub fn from_backend(head: &mut impl Fields) {
    head.remove_where(hop_by_hop);
    head.rewrite("set-cookie", |v| backend_may_set(v).then(|| v.to_string()));
}

/// Whether a call that broke before any answer came back is sent to the backend once more (a
/// kept-alive connection the backend closed as the request went out): a bodiless idempotent
/// one, as the balancers' rule — toward the one backend an API has.
pub fn resend_once(method: &str, bodiless: bool) -> bool {
    crate::balancer::idempotent(method) && bodiless
}

/// Cookies of the portals that a browser may send to the gateway too (the store and the gateway
/// can share a host): an API's backend never gets them and can never set them.
pub const PORTAL_COOKIES: &[&str] = &[crate::auth::SESSION_COOKIE, crate::balancer::STICKY_COOKIE];

/// A request's `Cookie` value as a backend may see it: the portals' cookies removed; `None`
/// when nothing is left.
pub fn backend_cookie(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default().trim();
            !pair.is_empty() && !PORTAL_COOKIES.iter().any(|c| c.eq_ignore_ascii_case(name))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Whether a backend's `Set-Cookie` may reach the client: never one that sets a portal cookie.
pub fn backend_may_set(set_cookie: &str) -> bool {
    let name = set_cookie
        .split(['=', ';'])
        .next()
        .unwrap_or_default()
        .trim();
    !PORTAL_COOKIES.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Whether a request to a gateway's listener is an API call (rather than `/token` or a
/// notification): the calls whose bodies the real world streams.
pub fn is_api_call(method: &str, path: &str) -> bool {
    !(OAUTH_PATHS.contains(&path)
        || matches!(
            (method, path),
            ("POST", wire::APIS) | ("POST", wire::REVOKED) | ("POST", wire::SUBSCRIBED)
        ))
}

/// `/{context}/{version}/rest...` -> `/rest...`, empty segments dropped.
fn rest_of_path(path: &str) -> String {
    if !path.contains("//") && !path.ends_with('/') {
        // The common case needs no rebuilding: skip the two leading segments.
        let mut slashes = path.match_indices('/').map(|(i, _)| i).skip(2);
        let start = if path.starts_with('/') {
            slashes.next()
        } else {
            path.match_indices('/').map(|(i, _)| i).nth(1)
        };
        return start.map_or_else(|| "/".to_string(), |i| path[i..].to_string());
    }
    let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(2).collect();
    format!("/{}", raw.join("/"))
}

fn decide(active: bool, subscribed: bool) -> Result<(), Response> {
    match (active, subscribed) {
        (false, _) => Err(Response::error(
            401,
            "invalid_token",
            "the access token is unknown, expired or revoked",
        )
        .header("www-authenticate", "Bearer error=\"invalid_token\"")),
        (true, false) => Err(Response::error(
            403,
            "not_subscribed",
            "the token's application is not subscribed to this API",
        )),
        (true, true) => Ok(()),
    }
}

/// Makes room: drops what has expired, then the oldest entry.
fn evict(cache: &mut BTreeMap<[u8; 32], Cached>, now: u64) {
    cache.retain(|_, c| now < c.expires_ms && now < c.cached_ms + CACHE_MS);
    if cache.len() >= CACHE_MAX {
        let oldest = cache
            .iter()
            .min_by_key(|(k, c)| (c.cached_ms, **k))
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            cache.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rest_of_the_path_drops_context_version_and_empty_segments() {
        for (path, rest) in [
            ("/ctx/v1/items", "/items"),
            ("/ctx/v1/a/b%20c", "/a/b%20c"),
            ("/ctx/v1", "/"),
            ("/ctx/v1/", "/"),
            ("//ctx//v1//a//b/", "/a/b"),
            ("ctx/v1/a", "/a"),
        ] {
            assert_eq!(super::rest_of_path(path), rest, "{path}");
        }
    }
}
