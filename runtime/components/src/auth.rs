//! Users, login sessions and roles, shared by the publisher and the store.

use crate::http::{Request, Response, body};
use crate::secret;
use crate::world::{Session, Storage, User, World};
use serde::Deserialize;
use serde_json::json;

/// Sessions last eight hours unless the deployment says otherwise (`World::session_ms`).
pub const SESSION_MS: u64 = 8 * 3600 * 1000;
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

/// Failed attempts are counted in windows of this length...
pub const FAILURE_WINDOW_MS: u64 = 15 * 60 * 1000;
/// ...and past these, further attempts of the account (or from the address) are refused
/// with 429 until the window ends. Kept in the user database: every node of a cluster counts
/// the same failures.
pub const ACCOUNT_FAILURES: u64 = 5;
pub const ADDRESS_FAILURES: u64 = 30;

/// Given to `World::verify_password` for an unknown user: costs what a real verification costs
/// and never matches, so an unknown name answers as slowly as a known one.
pub const DECOY_HASH: &str = "decoy";

/// Which portal a login arrives at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Portal {
    Publisher,
    Store,
}

/// The subjects whose failures limit an attempt: the account (or client) and the address.
pub fn limited(account: &str, req: &Request) -> [(String, u64); 2] {
    [
        (format!("account:{account}"), ACCOUNT_FAILURES),
        (format!("address:{}", req.origin()), ADDRESS_FAILURES),
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
                "too many failed attempts; try again later",
            )
            .header("retry-after", &wait.to_string()));
        }
    }
    Ok(())
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

/// `POST /api/login` at a portal: checks the password once and hands out a session token.
/// The admin and publishers sign in only at the publisher.
pub async fn login(world: &impl World, req: &Request, portal: Portal) -> Response {
    let c: Credentials = match body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let subjects = limited(&c.username, req);
    if let Err(r) = refuse_if_locked(world, &subjects).await {
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
    let Some(user) = user.filter(|_| valid) else {
        count_failure(world, &subjects).await;
        return Response::error(401, "invalid_credentials", "wrong user name or password");
    };
    let _ = world.storage().clear_failures(&subjects[0].0).await;
    let privileged = user
        .roles
        .iter()
        .any(|r| r == ROLE_ADMIN || r == ROLE_PUBLISHER);
    if portal == Portal::Store && privileged {
        return Response::error(
            403,
            "wrong_portal",
            "this account signs in at the publisher, not at the store",
        );
    }
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
    let subjects = limited(&user.name, req);
    if let Err(r) = refuse_if_locked(world, &subjects).await {
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
    let Some(token) = req.bearer().or_else(|| req.cookie(SESSION_COOKIE)) else {
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

pub fn unavailable(why: &str) -> Response {
    Response::error(
        503,
        "unavailable",
        format!("a database is unavailable: {why}"),
    )
    .header("retry-after", RETRY_AFTER_S)
}

/// What a 503 for a database down asks clients to wait, in seconds: the breaker's first
/// backoff (`breaker::OPEN_MS`).
pub const RETRY_AFTER_S: &str = "1";
