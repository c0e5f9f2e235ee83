//! The client side of apim's HTTP APIs (README, "HTTP APIs"): one function per operation that
//! builds its request, and one per answer that reads it. This is the one place a path, a field
//! name or a credential's form is written for those who call the APIs — the simulator's
//! workload, `apim up --smoke`, `apim drill` and the tests. Sans I/O: each caller sends the
//! requests over its own world and keeps the whole answer (status, headers) for its own checks.

use crate::http::{Request, Response};
use base64::Engine as _;
use serde_json::json;

/// An `Authorization` value for a session or an access token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// An `Authorization` value for a client's consumer key and secret (RFC 6749, 2.3.1).
pub fn basic(key: &str, secret: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    format!("Basic {b}")
}

/// A sign-in at the publisher or the store; the answer's session is read by [`session`].
pub fn login(user: &str, password: &str) -> Request {
    Request::new("POST", "/api/login").json(&json!({"username": user, "password": password}))
}

/// A subscriber account, at the store.
pub fn signup(user: &str, password: &str) -> Request {
    Request::new("POST", "/api/signup").json(&json!({"username": user, "password": password}))
}

/// An API to create, at the publisher.
pub struct NewApi<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub context: &'a str,
    pub backend: &'a str,
}

/// Creates an API (a draft until published); the answer's [`id`] names it.
pub fn create_api(session: &str, api: &NewApi<'_>) -> Request {
    Request::new("POST", "/api/apis")
        .header("authorization", &bearer(session))
        .json(&json!({
            "name": api.name,
            "version": api.version,
            "context": api.context,
            "backend": api.backend,
        }))
}

/// An API's lifecycle steps, at the publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Publish,
    Deprecate,
    Retire,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Publish => "publish",
            Step::Deprecate => "deprecate",
            Step::Retire => "retire",
        }
    }
}

/// Moves API `id` on in its lifecycle; publishing and retiring reach every gateway.
pub fn lifecycle(session: &str, id: &str, step: Step) -> Request {
    Request::new("POST", &format!("/api/apis/{id}/{}", step.as_str()))
        .header("authorization", &bearer(session))
}

/// Changes API `id`'s description (an update every gateway is told of).
pub fn update_api(session: &str, id: &str, description: &str) -> Request {
    Request::new("PUT", &format!("/api/apis/{id}"))
        .header("authorization", &bearer(session))
        .json(&json!({"description": description}))
}

/// An application of the signed-in subscriber; the answer's [`id`] names it.
pub fn create_application(session: &str, name: &str) -> Request {
    Request::new("POST", "/api/applications")
        .header("authorization", &bearer(session))
        .json(&json!({"name": name}))
}

/// Subscribes application `app` to API `api`.
pub fn subscribe(session: &str, app: &str, api: &str) -> Request {
    Request::new("POST", "/api/subscriptions")
        .header("authorization", &bearer(session))
        .json(&json!({"application": app, "api": api}))
}

/// Ends the subscription of application `app` to `api`.
pub fn unsubscribe(session: &str, app: &str, api: &str) -> Request {
    Request::new(
        "DELETE",
        &format!("/api/applications/{app}/subscriptions/{api}"),
    )
    .header("authorization", &bearer(session))
}

/// Consumer keys for application `app`, from the key manager through the store; read by
/// [`keys_of`].
pub fn keys(session: &str, app: &str) -> Request {
    Request::new("POST", &format!("/api/applications/{app}/keys"))
        .header("authorization", &bearer(session))
}

/// An access token for a client (the client credentials grant); read by [`issued`].
pub fn token(key: &str, secret: &str) -> Request {
    Request::new("POST", crate::wire::TOKEN)
        .header("authorization", &basic(key, secret))
        .form(&[("grant_type", "client_credentials")])
}

/// Revokes a client's own token (RFC 7009).
pub fn revoke(key: &str, secret: &str, token: &str) -> Request {
    Request::new("POST", crate::wire::REVOKE)
        .header("authorization", &basic(key, secret))
        .form(&[("token", token)])
}

/// Asks whether a client's own token is active (RFC 7662); read by [`active`].
pub fn introspect(key: &str, secret: &str, token: &str) -> Request {
    Request::new("POST", crate::wire::INTROSPECT)
        .header("authorization", &basic(key, secret))
        .form(&[("token", token)])
}

/// How many kinds of forgery `forgery` makes.
pub const FORGERIES: u64 = 5;

/// The `how`th forgery of `token` (of `FORGERIES`), each of which a gateway must refuse: a character appended, or for a
/// JWT an unknown key id, a changed signature, changed claims (another application, a later
/// expiry), or no algorithm at all.
pub fn forgery(token: &str, how: u64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return format!("{token}x");
    };
    let json = |s: &str| -> serde_json::Value {
        B64.decode(s)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    let encode = |v: &serde_json::Value| B64.encode(v.to_string());
    match how {
        0 => format!("{token}x"),
        1 => {
            let mut h = json(header);
            h["kid"] = "forged-key".into();
            format!("{}.{claims}.{signature}", encode(&h))
        }
        2 => {
            // The first character of the signature changed: another valid base64url text.
            let mut sig: Vec<char> = signature.chars().collect();
            if let Some(c) = sig.first_mut() {
                *c = if *c == 'A' { 'B' } else { 'A' };
            }
            format!("{header}.{claims}.{}", sig.into_iter().collect::<String>())
        }
        3 => {
            let mut c = json(claims);
            c["sub"] = "forged-application".into();
            c["exp"] = (c["exp"].as_u64().unwrap_or(0) + 3600).into();
            format!("{header}.{}.{signature}", encode(&c))
        }
        _ => {
            let none = serde_json::json!({ "alg": "none", "typ": "JWT" });
            format!("{}.{claims}.", encode(&none))
        }
    }
}

/// A call of the API at `context` (version v1) on `resource`, with `token` when there is one:
/// a read (GET), or a write (POST with a small JSON body, which no balancer sends twice).
pub fn invoke(context: &str, resource: &str, token: Option<&str>, write: bool) -> Request {
    let path = format!("/{context}/v1/{}", resource.trim_start_matches('/'));
    let req = if write {
        Request::new("POST", &path).json(&json!({"item": resource}))
    } else {
        Request::new("GET", &path)
    };
    match token {
        Some(t) => req.header("authorization", &bearer(t)),
        None => req,
    }
}

/// Whether the `n`th invoke (from 0) of a workload whose invokes are writes in `share` is one:
/// spread evenly, with no randomness, so that both worlds send the same sequence.
pub fn is_write(n: u64, share: f64) -> bool {
    let share = share.clamp(0.0, 1.0);
    // Exact for the shares a scenario names; the floor of a product is stable per `n`.
    ((n + 1) as f64 * share).floor() > (n as f64 * share).floor()
}

fn field(r: &Response, name: &str) -> Result<String, String> {
    r.json_body()
        .as_ref()
        .and_then(|b| b.get(name)?.as_str().map(String::from))
        .ok_or_else(|| {
            format!(
                "answered {} without `{name}`: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        })
}

/// The session a sign-in answered with.
pub fn session(r: &Response) -> Result<String, String> {
    field(r, "token")
}

/// The id of what a creation made (an API, an application).
pub fn id(r: &Response) -> Result<String, String> {
    field(r, "id")
}

/// A client's consumer key and secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    pub key: String,
    pub secret: String,
}

pub fn keys_of(r: &Response) -> Result<Keys, String> {
    Ok(Keys {
        key: field(r, "consumer_key")?,
        secret: field(r, "consumer_secret")?,
    })
}

/// An access token and how long it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub lifetime_ms: u64,
}

pub fn issued(r: &Response) -> Result<Issued, String> {
    let token = field(r, "access_token")?;
    let lifetime_ms = r
        .json_body()
        .and_then(|b| b.get("expires_in")?.as_u64())
        .unwrap_or(0)
        .saturating_mul(1000);
    Ok(Issued { token, lifetime_ms })
}

/// Whether introspection called the token active.
pub fn active(r: &Response) -> Result<bool, String> {
    r.json_body()
        .and_then(|b| b.get("active")?.as_bool())
        .ok_or_else(|| format!("answered {} without `active`", r.status))
}

/// The balancer's sticky cookie an answer set (`APIM_NODE=node`), for a browser-like client
/// to send with its session's next requests.
pub fn sticky_cookie(r: &Response) -> Option<String> {
    let prefix = format!("{}=", crate::balancer::STICKY_COOKIE);
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next())
        .map(str::trim)
        .find(|c| c.starts_with(&prefix))
        .map(String::from)
}

/// The node names a publication's or a revocation's acknowledgement says were not told.
pub fn missed(r: &Response) -> Vec<String> {
    r.json_body()
        .and_then(|b| {
            b.get("gateways_missed")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_spread_evenly_at_the_share_asked() {
        for (share, want) in [(0.0, 0), (0.1, 100), (0.25, 250), (0.5, 500), (1.0, 1000)] {
            let writes = (0..1000).filter(|&n| is_write(n, share)).count();
            assert_eq!(writes, want, "share {share}");
        }
        // Never two writes in a row at a half.
        assert!((0..100).all(|n| !(is_write(n, 0.5) && is_write(n + 1, 0.5))));
    }

    #[test]
    fn an_invoke_is_a_read_or_a_write_with_the_token() {
        let r = invoke("shop", "/items", Some("t"), false);
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/shop/v1/items")
        );
        assert_eq!(r.get_header("authorization"), Some("Bearer t"));
        let w = invoke("shop", "items", None, true);
        assert_eq!(w.method, "POST");
        assert!(!w.body.is_empty() && w.get_header("authorization").is_none());
    }

    #[test]
    fn answers_missing_their_field_say_what_came_instead() {
        let r = Response::error(503, "unavailable", "no key manager");
        let e = issued(&r).expect_err("no token");
        assert!(e.contains("503") && e.contains("access_token"), "{e}");
    }
}
