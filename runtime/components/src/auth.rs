//! Users, login sessions and roles, shared by the publisher and the store.

use crate::http::{Request, Response, body};
use crate::secret;
use crate::world::{Session, Storage, User, World};
use serde::Deserialize;
use serde_json::json;

/// Sessions last eight hours.
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

/// `POST /api/login`: checks the password once and hands out a session token.
pub async fn login(world: &impl World, req: &Request) -> Response {
    let c: Credentials = match body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let user = match world.storage().user(&c.username).await {
        Ok(u) => u,
        Err(e) => return unavailable(&e.0),
    };
    let valid = match &user {
        Some(u) => world.verify_password(&c.password, &u.password_hash).await,
        None => false,
    };
    let Some(user) = user.filter(|_| valid) else {
        return Response::error(401, "invalid_credentials", "wrong user name or password");
    };
    let token = secret::random_hex(world, 32);
    let session = Session {
        token_hash: secret::hash(&token),
        user: user.name.clone(),
        expires_ms: world.now_ms() + SESSION_MS,
    };
    if let Err(e) = world.storage().create_session(&session).await {
        return unavailable(&e.0);
    }
    Response::json(200, &json!({ "token": token, "user": user.name, "roles": user.roles, "expires_in": SESSION_MS / 1000 }))
        .header("set-cookie", &format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict"))
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
}
