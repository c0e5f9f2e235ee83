//! The publisher: API providers create, update, publish, deprecate and retire APIs. Publishing
//! writes the apim and registry databases and notifies every gateway node.

use crate::auth::{self, ROLE_PUBLISHER};
use crate::http::{Request, Response, body};
use crate::secret;
use crate::validate;
use crate::world::{Api, ApiState, Peer, Storage, World};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApi {
    name: String,
    version: String,
    context: String,
    backend: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiUpdate {
    name: Option<String>,
    backend: Option<String>,
    description: Option<String>,
}

pub async fn handle(world: &impl World, req: Request) -> Response {
    let segments = req.segments();
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["api", "login"]) => auth::login(world, &req, auth::Portal::Publisher).await,
        ("POST", ["api", "logout"]) => auth::logout(world, &req).await,
        (_, ["api", ..]) => {
            let user = match auth::user(world, &req, ROLE_PUBLISHER).await {
                Ok(u) => u,
                Err(r) => return r,
            };
            match (req.method.as_str(), segments.as_slice()) {
                ("POST", ["api", "password"]) => auth::change_password(world, &req, &user).await,
                ("GET", ["api", "apis"]) => list(world).await,
                ("POST", ["api", "apis"]) => create(world, &req, &user.name).await,
                ("GET", ["api", "apis", id]) => get(world, id).await,
                ("PUT", ["api", "apis", id]) => update(world, &req, id).await,
                ("POST", ["api", "apis", id, action]) => lifecycle(world, id, action).await,
                _ => Response::error(404, "not_found", "no such publisher endpoint"),
            }
        }
        _ => Response::error(404, "not_found", "no such publisher endpoint"),
    }
}

async fn list(world: &impl World) -> Response {
    match world.storage().apis().await {
        Ok(apis) => Response::json(200, &apis),
        Err(e) => auth::unavailable(&e.0),
    }
}

async fn get(world: &impl World, id: &str) -> Response {
    match world.storage().api(id).await {
        Ok(Some(api)) => Response::json(200, &api),
        Ok(None) => Response::error(404, "not_found", format!("no API with id `{id}`")),
        Err(e) => auth::unavailable(&e.0),
    }
}

async fn create(world: &impl World, req: &Request, provider: &str) -> Response {
    let new: NewApi = match body(req) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let checks = validate::name("name", &new.name)
        .and(validate::path_part("version", &new.version))
        .and(validate::path_part("context", &new.context))
        .and(validate::backend(world.backends(), &new.backend))
        .and(validate::text("description", &new.description, 2000));
    if let Err(r) = checks {
        return r;
    }
    let storage = world.storage();
    let existing = match storage.apis().await {
        Ok(apis) => apis,
        Err(e) => return auth::unavailable(&e.0),
    };
    if existing.iter().any(|a| {
        a.context == new.context && a.version == new.version && a.state != ApiState::Retired
    }) {
        return Response::error(
            409,
            "conflict",
            format!("an API already serves /{}/{}", new.context, new.version),
        );
    }
    let api = Api {
        id: secret::random_hex(world, 8),
        name: new.name,
        version: new.version,
        context: new.context,
        backend: new.backend,
        description: new.description,
        provider: provider.to_string(),
        state: ApiState::Created,
    };
    match storage.save_api(&api).await {
        Ok(()) => Response::json(201, &api),
        Err(e) => auth::unavailable(&e.0),
    }
}

async fn update(world: &impl World, req: &Request, id: &str) -> Response {
    let change: ApiUpdate = match body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut api = match world.storage().api(id).await {
        Ok(Some(a)) => a,
        Ok(None) => return Response::error(404, "not_found", format!("no API with id `{id}`")),
        Err(e) => return auth::unavailable(&e.0),
    };
    if let Some(n) = change.name {
        if let Err(r) = validate::name("name", &n) {
            return r;
        }
        api.name = n;
    }
    if let Some(b) = change.backend {
        if let Err(r) = validate::backend(world.backends(), &b) {
            return r;
        }
        api.backend = b;
    }
    if let Some(d) = change.description {
        if let Err(r) = validate::text("description", &d, 2000) {
            return r;
        }
        api.description = d;
    }
    propagate(world, api).await
}

async fn lifecycle(world: &impl World, id: &str, action: &str) -> Response {
    let state = match action {
        "publish" => ApiState::Published,
        "deprecate" => ApiState::Deprecated,
        "retire" => ApiState::Retired,
        _ => {
            return Response::error(
                404,
                "not_found",
                "the lifecycle actions are publish, deprecate and retire",
            );
        }
    };
    let mut api = match world.storage().api(id).await {
        Ok(Some(a)) => a,
        Ok(None) => return Response::error(404, "not_found", format!("no API with id `{id}`")),
        Err(e) => return auth::unavailable(&e.0),
    };
    if api.state == ApiState::Retired {
        return Response::error(409, "conflict", "a retired API cannot change state");
    }
    api.state = state;
    propagate(world, api).await
}

/// Saves an API, updates the registry to match, and tells every gateway node. A gateway that
/// misses the notification catches up from the registry.
async fn propagate(world: &impl World, api: Api) -> Response {
    let storage = world.storage();
    if let Err(e) = storage.save_api(&api).await {
        return auth::unavailable(&e.0);
    }
    let registry = if api.state.invokable() {
        storage.register(&api).await
    } else {
        storage.unregister(&api.id).await
    };
    if let Err(e) = registry {
        return auth::unavailable(&e.0);
    }
    let note = Request::new("POST", crate::wire::APIS).json(&api);
    let answers = world.notify_each(Peer::Gateway, note).await;
    let failed = crate::world::missed(&answers);
    Response::json(
        200,
        &json!({ "api": api, "gateways_notified": answers.len() - failed.len(), "gateways_missed": failed }),
    )
}
