//! The store (developer portal): consumers sign up, find published APIs, create applications,
//! subscribe them to APIs and get their consumer keys from the key manager.

use crate::auth::{self, ROLE_SUBSCRIBER};
use crate::http::{Request, Response, body, parse_form};
use crate::limits::{self, Limits};
use crate::secret;
use crate::validate;
use crate::world::{Application, Peer, Storage, User, World};
use apim_topology::timing::NOTIFY_MS;

use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApplication {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubscription {
    application: String,
    api: String,
}

pub async fn handle(world: &impl World, limits: &Limits, req: Request) -> Response {
    let segments = req.segments();
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["api", "login"]) => auth::login(world, &req, auth::Portal::Store).await,
        ("POST", ["api", "logout"]) => auth::logout(world, &req).await,
        ("POST", ["api", "signup"]) => signup(world, limits, &req).await,
        ("GET", ["api", "apis"]) => apis(world, &req).await,
        (_, ["api", ..]) => {
            let user = match auth::user(world, &req, ROLE_SUBSCRIBER).await {
                Ok(u) => u,
                Err(r) => return r,
            };
            match (req.method.as_str(), segments.as_slice()) {
                ("GET", ["api", "applications"]) => applications(world, &user).await,
                ("POST", ["api", "applications"]) => create_application(world, &req, &user).await,
                ("POST", ["api", "applications", id, "keys"]) => keys(world, &user, id).await,
                ("POST", ["api", "applications", id, "keys", "revoke"]) => {
                    revoke_keys(world, &user, id).await
                }
                ("POST", ["api", "password"]) => auth::change_password(world, &req, &user).await,
                ("GET", ["api", "applications", id, "subscriptions"]) => {
                    subscriptions(world, &user, id).await
                }
                ("POST", ["api", "subscriptions"]) => subscribe(world, &req, &user).await,
                ("DELETE", ["api", "applications", id, "subscriptions", api]) => {
                    unsubscribe(world, &user, id, api).await
                }
                _ => Response::error(404, "not_found", "no such store endpoint"),
            }
        }
        _ => Response::error(404, "not_found", "no such store endpoint"),
    }
}

async fn signup(world: &impl World, limits: &Limits, req: &Request) -> Response {
    if let Err(r) = validate::json_content(req) {
        return r;
    }
    if let Err(wait) = limits
        .signups
        .take(req.origin(), limits::SIGNUP_PER_ADDRESS, world.now_ms())
    {
        return limits::too_many("sign-ups from this address", req.origin(), wait);
    }
    let c: auth::Credentials = match body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = validate::username(&c.username).and(validate::password(&c.password)) {
        return r;
    }
    let user = User {
        name: c.username,
        password_hash: world.hash_password(&c.password).await,
        roles: vec![ROLE_SUBSCRIBER.into()],
    };
    match world.storage().create_user(&user).await {
        Ok(true) => Response::json(201, &json!({ "user": user.name, "roles": user.roles })),
        Ok(false) => Response::error(
            409,
            "conflict",
            format!("the user name `{}` is taken", user.name),
        ),
        Err(e) => auth::unavailable(&e.0),
    }
}

/// Published APIs, from the registry; `?q=` filters on name, context and description.
async fn apis(world: &impl World, req: &Request) -> Response {
    let q = parse_form(&req.query)
        .into_iter()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.to_lowercase());
    match world.storage().registered().await {
        Ok(apis) => {
            let found: Vec<_> = apis
                .into_iter()
                .filter(|a| {
                    q.as_ref().is_none_or(|q| {
                        a.name.to_lowercase().contains(q)
                            || a.context.contains(q.as_str())
                            || a.description.to_lowercase().contains(q)
                    })
                })
                .map(|a| PublicApi {
                    id: a.id,
                    name: a.name,
                    version: a.version,
                    context: a.context,
                    description: a.description,
                    state: a.state,
                })
                .collect();
            Response::json(200, &found)
        }
        Err(e) => auth::unavailable(&e.0),
    }
}

/// What consumers see of a published API: never where its backend is (an internal host name)
/// or who provides it.
#[derive(serde::Serialize)]
struct PublicApi {
    id: String,
    name: String,
    version: String,
    context: String,
    description: String,
    state: crate::world::ApiState,
}

async fn applications(world: &impl World, user: &User) -> Response {
    match world.storage().applications(&user.name).await {
        Ok(apps) => Response::json(200, &apps),
        Err(e) => auth::unavailable(&e.0),
    }
}

async fn create_application(world: &impl World, req: &Request, user: &User) -> Response {
    let new: NewApplication = match body(req) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(r) = validate::name("name", &new.name) {
        return r;
    }
    let app = Application {
        id: secret::random_hex(world, 8),
        name: new.name,
        owner: user.name.clone(),
    };
    match world.storage().create_application(&app).await {
        Ok(true) => Response::json(201, &app),
        Ok(false) => Response::error(
            409,
            "conflict",
            "an application with this id exists; try again",
        ),
        Err(e) => auth::unavailable(&e.0),
    }
}

/// The user's own application, or the response that refuses it.
async fn own_application(
    world: &impl World,
    user: &User,
    id: &str,
) -> Result<Application, Response> {
    match world.storage().application(id).await {
        Ok(Some(app))
            if app.owner == user.name
                || world
                    .defects()
                    .has(crate::defects::Defect::OwnerCheckDropped) =>
        {
            Ok(app)
        }
        Ok(_) => Err(Response::error(
            404,
            "not_found",
            format!("you have no application `{id}`"),
        )),
        Err(e) => Err(auth::unavailable(&e.0)),
    }
}

async fn subscriptions(world: &impl World, user: &User, id: &str) -> Response {
    let app = match own_application(world, user, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match world.storage().subscriptions(&app.id).await {
        Ok(apis) => Response::json(200, &apis),
        Err(e) => auth::unavailable(&e.0),
    }
}

async fn subscribe(world: &impl World, req: &Request, user: &User) -> Response {
    let s: NewSubscription = match body(req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let app = match own_application(world, user, &s.application).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let storage = world.storage();
    match storage.registered().await {
        Ok(apis) if apis.iter().any(|a| a.id == s.api) => {}
        Ok(_) => return Response::error(404, "not_found", format!("no published API `{}`", s.api)),
        Err(e) => return auth::unavailable(&e.0),
    }
    let created = match storage.subscribe(&app.id, &s.api).await {
        Ok(created) => created,
        Err(e) => return auth::unavailable(&e.0),
    };
    // Gateways decide on JWTs alone: the key manager tells them of the subscription now; a
    // gateway that misses it learns it in its catch-up, or asks on the first call. Stored is
    // subscribed: a key manager out of reach does not undo it.
    let missed = if world.tokens().jwt() {
        tell_gateways(world, &app.id, &s.api, false).await
    } else {
        json!([])
    };
    Response::json(
        if created { 201 } else { 200 },
        &json!({ "application": app.id, "api": s.api, "gateways_missed": missed }),
    )
}

/// The owner ends a subscription: every gateway is told (with either token format: an opaque
/// token's cached validation forgets it too); one that misses it forgets it in its catch-up
/// (JWT) or when its cached validation ends.
async fn unsubscribe(world: &impl World, user: &User, id: &str, api: &str) -> Response {
    let app = match own_application(world, user, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match world.storage().unsubscribe(&app.id, api).await {
        Ok(true) => {}
        Ok(false) => {
            return Response::error(
                404,
                "not_found",
                format!("application `{id}` is not subscribed to `{api}`"),
            );
        }
        Err(e) => return auth::unavailable(&e.0),
    }
    let missed = tell_gateways(world, &app.id, api, true).await;
    Response::json(
        200,
        &json!({ "application": app.id, "api": api, "removed": true, "gateways_missed": missed }),
    )
}

/// Tells every gateway, through the key manager, of a subscription made or ended; answers the
/// gateways that missed it (`"all"` when the key manager could not be asked in time).
async fn tell_gateways(
    world: &impl World,
    application: &str,
    api: &str,
    removed: bool,
) -> serde_json::Value {
    let note =
        Request::new("POST", crate::wire::NOTIFY_SUBSCRIBED).json(&crate::wire::Subscribed {
            application: application.to_string(),
            api: api.to_string(),
            removed,
        });
    // Bounded: a key manager out of reach must not hold up the consumer.
    let told = crate::world::within(world, NOTIFY_MS, world.call(Peer::KeyManager, note));
    match told.await {
        Some(Ok(r)) if r.status == 200 => r
            .json_body()
            .map_or(json!([]), |b| b["gateways_missed"].clone()),
        _ => json!("all"),
    }
}

/// Asks the key manager for the application's consumer key and secret.
/// The owner revokes every consumer key of an application: no new token can be had with them,
/// and every token they were given is refused by every gateway within the revocation bound
/// (pushed now, and in the gateways' catch-up). New keys are then a `POST .../keys` away.
async fn revoke_keys(world: &impl World, user: &User, id: &str) -> Response {
    let app = match own_application(world, user, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let req = Request::new("POST", crate::wire::CLIENTS_REVOKE).json(&crate::wire::Clients {
        application: app.id.clone(),
    });
    crate::world::ask_key_manager(world, req).await
}

async fn keys(world: &impl World, user: &User, id: &str) -> Response {
    let app = match own_application(world, user, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let req = Request::new("POST", crate::wire::CLIENTS).json(&crate::wire::Clients {
        application: app.id.clone(),
    });
    crate::world::ask_key_manager(world, req).await
}
