//! Users, login sessions and roles, shared by the publisher and the store.

use crate::http::{Request, Response, body};
use crate::secret;
use crate::world::{Session, Storage, User, World};
use apim_topology::timing::FAILURE_WINDOW_MS;
use serde::Deserialize;
use serde_json::json;

pub const SESSION_COOKIE: &str = "apim_session";
pub const ADMIN: &str = "admin";
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_PUBLISHER: &str = "publisher";
pub const ROLE_SUBSCRIBER: &str = "subscriber";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Creates the admin user (every role) when it does not exist yet.
pub async fn bootstrap_admin(world: &impl World, password: &str) -> Result<(), String> {
    if let Err(r) = crate::validate::password(password) {
        let why = r
            .json_body()
            .and_then(|b| b["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(format!(
            "the admin password {}",
            why.trim_start_matches("`password` ")
        ));
    }
    let storage = world.storage();
    if storage.user(ADMIN).await.map_err(|e| e.0)?.is_some() {
        return Ok(());
    }
    let user = User {
        name: ADMIN.into(),
        password_hash: world.hash_password(password).await,
        roles: vec![
            ROLE_ADMIN.into(),
            ROLE_PUBLISHER.into(),
            ROLE_SUBSCRIBER.into(),
        ],
    };
    storage
        .create_user(&user)
        .await
        .map(|_| ())
        .map_err(|e| e.0)
}

/// ...and past these, further attempts are refused with 429 until the window ends: an account
/// tried from one address, and an address whatever it tries. The attacker is throttled, not
/// the account: the right password from an address with no failures still works, so no
/// stranger can lock anyone out. Kept in the user database: every node of a cluster counts
/// the same failures.
pub const ACCOUNT_FAILURES: u64 = 5;
pub const ADDRESS_FAILURES: u64 = 30;

/// Given to `World::verify_password` for an unknown user: costs what a real verification costs
/// and never matches, so an unknown name answers as slowly as a known one.
pub const DECOY_HASH: &str = "decoy";

/// Where an attempt is made: a portal's sign-in, a password change, or an OAuth client's
/// secret. Each counts apart, so attempts at the store never throttle the publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Portal {
    Publisher,
    Store,
    /// A signed-in user's password change.
    Password,
    /// An OAuth client at the key manager (`/token`, `/revoke`, `/introspect`).
    Client,
}

impl Portal {
    fn as_str(self) -> &'static str {
        match self {
            Portal::Publisher => "publisher",
            Portal::Store => "store",
            Portal::Password => "password",
            Portal::Client => "client",
        }
    }
}

/// The subjects whose failures limit an attempt: the account from this address at this door,
/// and the address. Stored as hashes, so a subject costs the same few bytes however long the
/// name it was made of.
pub fn limited(portal: Portal, account: &str, req: &Request) -> [(String, u64); 2] {
    let origin = req.origin();
    [
        (
            secret::hash(&format!("{}:{account}@{origin}", portal.as_str())),
            ACCOUNT_FAILURES,
        ),
        (secret::hash(&format!("address:{origin}")), ADDRESS_FAILURES),
    ]
}

/// 429 while any of `subjects` is over its limit in the current window.
pub async fn refuse_if_locked(
    world: &impl World,
    subjects: &[(String, u64)],
) -> Result<(), Response> {
    let now = world.now_ms();
    for (subject, limit) in subjects {
        let f = world
            .storage()
            .failures(subject, now, FAILURE_WINDOW_MS)
            .await
            .map_err(|e| unavailable(&e.0))?;
        if f.count >= *limit {
            let wait = (f.since_ms + FAILURE_WINDOW_MS).saturating_sub(now) / 1000 + 1;
            return Err(Response::error(
                429,
                "too_many_attempts",
                "too many failed attempts from this address; try again later",
            )
            .header("retry-after", &wait.to_string()));
        }
    }
    Ok(())
}

/// Logs an attempt refused for the failures before it (the names are checked ones: no
/// secret, nothing overlong).
pub fn throttled(portal: Portal, account: &str, req: &Request) {
    crate::security::event(
        "sign_in_throttled",
        &[
            ("door", portal.as_str()),
            ("account", account),
            ("origin", req.origin()),
        ],
    );
}

/// Counts a failed attempt against every subject.
pub async fn count_failure(world: &impl World, subjects: &[(String, u64)]) {
    let now = world.now_ms();
    for (subject, _) in subjects {
        // A failure that cannot be counted must not turn into a success: the answer stays 401.
        let _ = world
            .storage()
            .record_failure(subject, now, FAILURE_WINDOW_MS)
            .await;
    }
}

fn wrong_credentials() -> Response {
    Response::error(401, "invalid_credentials", "wrong user name or password")
}

/// `POST /api/login` at a portal: checks the password once and hands out a session token.
/// The admin and publishers sign in only at the publisher.
pub async fn login(world: &impl World, req: &Request, portal: Portal) -> Response {
    if let Err(r) = crate::validate::json_content(req) {
        return r;
    }
    let c: Credentials = match body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // A name no account can have is refused before any database sees it (or counts it).
    if let Err(r) = crate::validate::login_name(&c.username) {
        return r;
    }
    let subjects = limited(portal, &c.username, req);
    if let Err(r) = refuse_if_locked(world, &subjects).await {
        throttled(portal, &c.username, req);
        return r;
    }
    let user = match world.storage().user(&c.username).await {
        Ok(u) => u,
        Err(e) => return unavailable(&e.0),
    };
    let hash = user
        .as_ref()
        .map_or(DECOY_HASH, |u| u.password_hash.as_str());
    let valid = world.verify_password(&c.password, hash).await && user.is_some();
    // The admin and publishers sign in only at the publisher: at the store their account
    // answers exactly as a wrong password does, so the store is no oracle for their passwords.
    let privileged = user.as_ref().is_some_and(|u| {
        u.roles
            .iter()
            .any(|r| r == ROLE_ADMIN || r == ROLE_PUBLISHER)
    });
    let here = !(portal == Portal::Store && privileged);
    let Some(user) = user.filter(|_| valid && here) else {
        count_failure(world, &subjects).await;
        return wrong_credentials();
    };
    let _ = world.storage().clear_failures(&subjects[0].0).await;
    let token = secret::random_hex(world, 32);
    let session = Session {
        token_hash: secret::hash(&token),
        user: user.name.clone(),
        expires_ms: world.now_ms() + world.session_ms(),
    };
    if let Err(e) = world.storage().create_session(&session).await {
        return unavailable(&e.0);
    }
    Response::json(200, &json!({ "token": token, "user": user.name, "roles": user.roles, "expires_in": world.session_ms() / 1000 }))
        .header("set-cookie", &format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict"))
        .header("cache-control", "no-store")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

/// `POST /api/password` of a signed-in user: the current password again (counted like a
/// sign-in), a new one that meets the policy; every session of the user ends.
pub async fn change_password(world: &impl World, req: &Request, user: &User) -> Response {
    let c: PasswordChange = match body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let subjects = limited(Portal::Password, &user.name, req);
    if let Err(r) = refuse_if_locked(world, &subjects).await {
        throttled(Portal::Password, &user.name, req);
        return r;
    }
    if !world.verify_password(&c.current, &user.password_hash).await {
        count_failure(world, &subjects).await;
        return Response::error(401, "invalid_credentials", "the current password is wrong");
    }
    if let Err(r) = crate::validate::password(&c.new) {
        return r;
    }
    let hash = world.hash_password(&c.new).await;
    let storage = world.storage();
    match storage.set_password(&user.name, &hash).await {
        Ok(true) => {}
        Ok(false) => return Response::error(404, "not_found", "the user no longer exists"),
        Err(e) => return unavailable(&e.0),
    }
    match storage.delete_sessions_of(&user.name).await {
        Ok(()) => Response::json(200, &json!({ "changed": true, "sessions_ended": true })),
        Err(e) => unavailable(&e.0),
    }
}

/// `POST /api/logout`: the session ends now, on every node.
pub async fn logout(world: &impl World, req: &Request) -> Response {
    if req.bearer().is_none()
        && req.cookie(SESSION_COOKIE).is_some()
        && let Err(r) = same_origin(req)
    {
        return r;
    }
    let Some(token) = req.bearer().or_else(|| req.cookie(SESSION_COOKIE)) else {
        return Response::error(401, "unauthenticated", "there is no session to end");
    };
    match world.storage().delete_session(&secret::hash(token)).await {
        Ok(()) => Response::json(200, &json!({ "signed_out": true })).header(
            "set-cookie",
            &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
        ),
        Err(e) => unavailable(&e.0),
    }
}

/// The signed-in user of a request, or the response that refuses it.
pub async fn user(world: &impl World, req: &Request, role: &str) -> Result<User, Response> {
    let token = match req.bearer() {
        Some(t) => Some(t),
        None => {
            let cookie = req.cookie(SESSION_COOKIE);
            if cookie.is_some() {
                same_origin(req)?;
            }
            cookie
        }
    };
    let Some(token) = token else {
        return Err(Response::error(
            401,
            "unauthenticated",
            "sign in with POST /api/login and send the token as `Authorization: Bearer ...`",
        ));
    };
    let storage = world.storage();
    let session = storage
        .session(&secret::hash(token))
        .await
        .map_err(|e| unavailable(&e.0))?;
    let Some(session) = session.filter(|s| s.expires_ms > world.now_ms()) else {
        return Err(Response::error(
            401,
            "unauthenticated",
            "the session is unknown or expired; sign in again",
        ));
    };
    let user = storage
        .user(&session.user)
        .await
        .map_err(|e| unavailable(&e.0))?;
    match user {
        Some(u) if u.roles.iter().any(|r| r == role || r == ROLE_ADMIN) => Ok(u),
        Some(_) => Err(Response::error(
            403,
            "forbidden",
            format!("this needs the `{role}` role"),
        )),
        None => Err(Response::error(
            401,
            "unauthenticated",
            "the session's user no longer exists",
        )),
    }
}

/// A request that changes something on the strength of the session cookie alone must be one
/// a page of the portal itself can make and another site cannot: JSON (which a browser sends
/// cross-origin only after a preflight, which the portals never approve) and, when the browser
/// says where it comes from, from the portal's own host. Requests with a bearer token carry
/// no ambient credential and need neither.
pub fn same_origin(req: &Request) -> Result<(), Response> {
    if matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        return Ok(());
    }
    crate::validate::json_content(req)?;
    let Some(origin) = req.get_header("origin") else {
        return Ok(());
    };
    let host_of = |authority: &str| {
        let a = authority.trim().to_ascii_lowercase();
        match a.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => a.rsplit_once(':').map_or(a.clone(), |(h, _)| h.to_string()),
        }
    };
    let from = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .map(host_of);
    let ours = ["host", "x-forwarded-host"]
        .iter()
        .filter_map(|h| req.get_header(h))
        .map(host_of)
        .any(|h| Some(&h) == from.as_ref());
    if ours {
        Ok(())
    } else {
        Err(Response::error(
            403,
            "cross_origin",
            "a request from another site may not use the portal's session cookie",
        ))
    }
}

pub fn unavailable(why: &str) -> Response {
    Response::error(
        503,
        "unavailable",
        format!("a database is unavailable: {why}"),
    )
    .header("retry-after", RETRY_AFTER_S)
}

/// What a 503 for a database down asks clients to wait, in seconds: the shortest a header can
/// say (the breaker closes within `PROBE_EVERY_MS` + `PROBE_BOUND_MS` of the database's return).
pub const RETRY_AFTER_S: &str = "1";
