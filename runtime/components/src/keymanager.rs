//! The key manager: consumer keys, the OAuth 2.0 token endpoint with the client-credentials
//! grant (RFC 6749 4.4), introspection (RFC 7662), revocation (RFC 7009), and the gateway's
//! validation call (token and subscription in one answer).

use crate::defects::Defect;
use crate::feed::Feed;
use crate::http::{Request, Response, body};
use crate::limits::{self, Limits};
use crate::secret;
use crate::wire::{self, Clients, RevocationsSince, Revoked, Subscribed, Validate};
use crate::world::{ClientKeys, Peer, Storage, Token, World};
use apim_topology::timing::CATCH_UP_MS;
use base64::Engine;
use serde_json::json;

pub async fn handle(world: &impl World, limits: &Limits, feed: &Feed, req: Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", wire::TOKEN) => token(world, limits, &req).await,
        ("GET", wire::JWKS) => jwks(world),
        ("POST", wire::INTROSPECT) => introspect(world, &req).await,
        ("POST", wire::REVOKE) => revoke(world, &req).await,
        ("POST", wire::CLIENTS) => new_client(world, &req).await,
        ("POST", wire::CLIENTS_REVOKE) => revoke_clients(world, &req).await,
        ("POST", wire::VALIDATE) => validate(world, &req).await,
        ("POST", wire::REVOCATIONS) => revocations(world, feed, &req).await,
        ("POST", wire::SUBSCRIPTIONS) => subscriptions(world).await,
        ("POST", wire::NOTIFY_SUBSCRIBED) => notify_subscribed(world, &req).await,
        _ => Response::error(404, "not_found", "no such key-manager endpoint"),
    }
}

/// A field of a form body.
fn field(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    no_store(Response::json(
        status,
        &json!({ "error": error, "error_description": description }),
    ))
}

/// Token endpoint answers are never cached, by browsers or proxies (RFC 6749 5.1).
fn no_store(r: Response) -> Response {
    r.header("cache-control", "no-store")
        .header("pragma", "no-cache")
}

fn unavailable(e: &str) -> Response {
    oauth_error(
        503,
        "temporarily_unavailable",
        &format!("a database is unavailable: {e}"),
    )
    .header("retry-after", crate::auth::RETRY_AFTER_S)
}

async fn new_client(world: &impl World, req: &Request) -> Response {
    let n: Clients = match body(req) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match world.storage().application(&n.application).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Response::error(
                404,
                "not_found",
                format!("no application `{}`", n.application),
            );
        }
        Err(e) => return unavailable(&e.0),
    }
    let key = secret::random_hex(world, 16);
    let secret_value = secret::random_hex(world, 32);
    let keys = ClientKeys {
        consumer_key: key.clone(),
        secret_hash: secret::hash(&secret_value),
        application: n.application.clone(),
    };
    match world.storage().save_client(&keys).await {
        Ok(()) => Response::json(
            201,
            &json!({ "application": n.application, "consumer_key": key, "consumer_secret": secret_value }),
        ),
        Err(e) => unavailable(&e.0),
    }
}

/// Tokens revoked with a key are pushed to the gateways up to this many; the rest reach them
/// through their catch-up, within the same bound.
const PUSHED_PER_REVOCATION: usize = 100;

/// Revokes every consumer key of an application (the store asks, for the application's owner)
/// and every token they were given.
async fn revoke_clients(world: &impl World, req: &Request) -> Response {
    let n: Clients = match body(req) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let hashes = match world
        .storage()
        .revoke_application_keys(&n.application, world.now_ms())
        .await
    {
        Ok(h) => h,
        Err(e) => return unavailable(&e.0),
    };
    let mut missed: Vec<String> = Vec::new();
    let pushed = if world.defects().has(Defect::RevocationPushDropped) {
        0
    } else {
        PUSHED_PER_REVOCATION
    };
    for hash in hashes.iter().take(pushed) {
        let note = Request::new("POST", wire::REVOKED).json(&Revoked {
            token_hash: hash.clone(),
        });
        let answers = world.notify_each(Peer::Gateway, note).await;
        for m in crate::world::missed(&answers) {
            if !missed.iter().any(|x| x == m) {
                missed.push(m.to_string());
            }
        }
    }
    Response::json(
        200,
        &json!({ "application": n.application, "revoked_tokens": hashes.len(), "gateways_missed": missed }),
    )
}

/// The client of a token or revocation request: HTTP Basic, or `client_id`/`client_secret`
/// in the form (RFC 6749 2.3.1).
async fn client(
    world: &impl World,
    req: &Request,
    form: &[(String, String)],
) -> Result<ClientKeys, Response> {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let basic = req
        .get_header("authorization")
        .and_then(|h| h.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
        .and_then(|(_, v)| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(k, v)| (crate::http::decode(k), crate::http::decode(v)))
        });
    let (id, secret_value) = match (basic, field("client_id"), field("client_secret")) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(s)) => (id, s),
        _ => {
            return Err(
                oauth_error(401, "invalid_client", "client authentication is missing")
                    .header("www-authenticate", "Basic"),
            );
        }
    };
    // An id no client can have is refused before a database sees it (or counts it).
    if crate::validate::client_id(&id).is_err() {
        return Err(oauth_error(
            400,
            "invalid_request",
            "client_id must be 1 to 128 of a-z, A-Z, 0-9, '-', '_', '.'",
        ));
    }
    // Wrong secrets are limited as wrong passwords are: the client from this address, and
    // the address.
    let subjects = crate::auth::limited(crate::auth::Portal::Client, &id, req);
    if let Err(r) = crate::auth::refuse_if_locked(world, &subjects).await {
        crate::auth::throttled(crate::auth::Portal::Client, &id, req);
        return Err(r);
    }
    let keys = world
        .storage()
        .client(&id)
        .await
        .map_err(|e| unavailable(&e.0))?;
    match keys {
        Some(k) if secret::equal(&k.secret_hash, &secret::hash(&secret_value)) => Ok(k),
        _ => {
            crate::auth::count_failure(world, &subjects).await;
            Err(
                oauth_error(401, "invalid_client", "unknown client or wrong secret")
                    .header("www-authenticate", "Basic"),
            )
        }
    }
}

async fn token(world: &impl World, limits: &Limits, req: &Request) -> Response {
    let now = world.now_ms();
    if let Err(wait) = limits
        .tokens_per_address
        .take(req.origin(), limits::TOKEN_PER_ADDRESS, now)
    {
        return no_store(limits::too_many(
            "token requests from this address",
            req.origin(),
            wait,
        ));
    }
    let form = req.form_fields();
    let grant = form
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str());
    match grant {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        None => return oauth_error(400, "invalid_request", "grant_type is missing"),
    }
    let keys = match client(world, req, &form).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    if let Err(wait) =
        limits
            .tokens_per_client
            .take(&keys.consumer_key, limits::TOKEN_PER_CLIENT, now)
    {
        return no_store(limits::too_many(
            "tokens for this client",
            req.origin(),
            wait,
        ));
    }
    let lifetime = world.tokens().lifetime_ms.max(1000);
    let tokens = world.tokens();
    let (token, expires_ms) = if tokens.jwt() {
        let Some(key) = tokens.signing.first() else {
            return oauth_error(
                503,
                "temporarily_unavailable",
                "this key manager has no signing key (see `apim certs`)",
            );
        };
        // A JWT's `exp` is in whole seconds: the token ends at the second, for the key
        // manager's records as for the gateways.
        let exp_s = (now + lifetime) / 1000;
        let claims = crate::jwt::Claims {
            iss: tokens.issuer.clone(),
            sub: keys.application.clone(),
            aud: tokens.audience.clone(),
            exp: exp_s,
            iat: now / 1000,
            jti: secret::random_hex(world, 16),
            client_id: keys.consumer_key.clone(),
            application: keys.application.clone(),
        };
        (key.sign(&claims), exp_s * 1000)
    } else {
        (secret::random_hex(world, 32), now + lifetime)
    };
    let lifetime = expires_ms.saturating_sub(now);
    let t = Token {
        token_hash: secret::hash(&token),
        consumer_key: keys.consumer_key,
        application: keys.application,
        expires_ms,
        revoked: false,
    };
    match world.storage().save_token(&t).await {
        Ok(()) => no_store(Response::json(
            200,
            &json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime / 1000 }),
        )),
        Err(e) => unavailable(&e.0),
    }
}

/// The public signing keys, for gateways and anyone checking the key manager's tokens.
fn jwks(world: &impl World) -> Response {
    let tokens = world.tokens();
    if !tokens.jwt() {
        return Response::error(
            404,
            "not_found",
            "this deployment issues opaque tokens: there are no signing keys to publish",
        );
    }
    Response::json(200, &tokens.published().to_json()).header("cache-control", "max-age=60")
}

/// The stored token, when it is active: known, not revoked, not expired.
async fn active(world: &impl World, token: &str) -> Result<Option<Token>, Response> {
    let t = world
        .storage()
        .token(&secret::hash(token))
        .await
        .map_err(|e| unavailable(&e.0))?;
    let ignore_expiry = world.defects().has(Defect::ExpiryIgnored);
    Ok(t.filter(|t| !t.revoked && (ignore_expiry || t.expires_ms > world.now_ms())))
}

/// Introspection (RFC 7662) for an authenticated client, about its own tokens: another
/// client's token is `active: false`, as an unknown one is, so the endpoint tells no one
/// anything about tokens that are not theirs.
async fn introspect(world: &impl World, req: &Request) -> Response {
    let form = req.form_fields();
    let keys = match client(world, req, &form).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(token) = field(&form, "token") else {
        return oauth_error(400, "invalid_request", "token is missing");
    };
    match active(world, &token).await {
        Ok(Some(t)) if t.consumer_key == keys.consumer_key => no_store(Response::json(
            200,
            &json!({ "active": true, "client_id": t.consumer_key, "token_type": "Bearer", "exp": t.expires_ms / 1000 }),
        )),
        Ok(_) => no_store(Response::json(200, &json!({ "active": false }))),
        Err(r) => r,
    }
}

async fn validate(world: &impl World, req: &Request) -> Response {
    let v: Validate = match body(req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let t = match active(world, &v.token).await {
        Ok(Some(t)) => t,
        Ok(None) => return Response::json(200, &json!({ "active": false })),
        Err(r) => return r,
    };
    match world.storage().subscribed(&t.application, &v.api).await {
        Ok(subscribed) => Response::json(
            200,
            &json!({ "active": true, "application": t.application, "expires_ms": t.expires_ms, "subscribed": subscribed }),
        ),
        Err(e) => unavailable(&e.0),
    }
}

/// Tells every gateway node of a subscription the store has stored.
async fn notify_subscribed(world: &impl World, req: &Request) -> Response {
    let n: Subscribed = match body(req) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let note = Request::new("POST", wire::SUBSCRIBED).json(&n);
    let answers = world.notify_each(Peer::Gateway, note).await;
    Response::json(
        200,
        &json!({ "gateways_missed": crate::world::missed(&answers) }),
    )
}

/// Every subscription, for a gateway's catch-up.
async fn subscriptions(world: &impl World) -> Response {
    match world.storage().all_subscriptions().await {
        Ok(all) => {
            let list: Vec<Subscribed> = all
                .into_iter()
                .map(|(application, api)| Subscribed {
                    application,
                    api,
                    removed: false,
                })
                .collect();
            Response::json(200, &list)
        }
        Err(e) => unavailable(&e.0),
    }
}

/// The gateways' catch-up: tokens revoked since a time, for gateways that missed a
/// notification; from the key manager's next read of the revocations, which starts after the
/// request arrived, so the answer is complete as of `now_ms`. Bounded as a read of its own
/// was: past the bound, an answer that says so comes back within the gateway's trust window.
async fn revocations(world: &impl World, feed: &Feed, req: &Request) -> Response {
    let q: RevocationsSince = match body(req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let now = world.now_ms();
    let read =
        crate::world::within(world, CATCH_UP_MS, feed.revoked_since(world, q.since_ms)).await;
    match read {
        Some(Ok(hashes)) => Response::json(200, &json!({ "token_hashes": hashes, "now_ms": now })),
        Some(Err(e)) => Response::error(
            503,
            wire::NO_REVOCATIONS_POSSIBLE,
            format!("the apim database is unavailable: {}", e.0),
        ),
        None => Response::error(
            503,
            wire::NO_REVOCATIONS_POSSIBLE,
            "the apim database did not answer in time",
        ),
    }
}

/// Revokes a token of the calling client and tells every gateway node to drop it; answers
/// after the gateways were told, so an acknowledged revocation is enforced everywhere that
/// could be reached.
async fn revoke(world: &impl World, req: &Request) -> Response {
    let form = req.form_fields();
    let keys = match client(world, req, &form).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(token) = field(&form, "token") else {
        return oauth_error(400, "invalid_request", "token is missing");
    };
    let hash = secret::hash(&token);
    let storage = world.storage();
    match storage.token(&hash).await {
        Ok(Some(t)) if t.consumer_key == keys.consumer_key => {}
        // RFC 7009 2.2: an unknown token (or another client's) is not an error.
        Ok(_) => return Response::new(200),
        Err(e) => return unavailable(&e.0),
    }
    if let Err(e) = storage.revoke_token(&hash, world.now_ms()).await {
        return unavailable(&e.0);
    }
    if world.defects().has(Defect::RevocationPushDropped) {
        return Response::json(200, &json!({ "revoked": true, "gateways_missed": [] }));
    }
    let note = Request::new("POST", wire::REVOKED).json(&Revoked {
        token_hash: hash.clone(),
    });
    let answers = world.notify_each(Peer::Gateway, note).await;
    Response::json(
        200,
        &json!({ "revoked": true, "gateways_missed": crate::world::missed(&answers) }),
    )
}
