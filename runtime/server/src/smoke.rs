//! The walk-through of `apim up`, run for real: publish, sign up, subscribe, get a token, invoke
//! through the external balancer — then the refusals (401, 403) and a revocation that every
//! gateway node must honour.

use crate::http;
use crate::up::Up;
use apim_components::{Request, Response};
use apim_topology::vocab::Component;
use serde_json::{Value, json};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

struct Walk {
    client: http::Client,
    log: Vec<String>,
}

impl Walk {
    async fn send(
        &mut self,
        what: &str,
        to: &(String, u16),
        req: Request,
        expect: u16,
    ) -> Result<Value, String> {
        let r: Response = http::send(&self.client, &to.0, to.1, req, TIMEOUT)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let body = r.json_body().unwrap_or(Value::Null);
        if r.status != expect {
            return Err(format!(
                "{what}: expected {expect}, got {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        self.log.push(format!("ok  {what} ({})", r.status));
        Ok(body)
    }
}

fn field(v: &Value, name: &str) -> Result<String, String> {
    v[name]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("the answer has no `{name}`: {v}"))
}

fn basic(key: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    )
}

/// Where the walk-through sends its requests.
pub struct Entries {
    pub publisher: (String, u16),
    pub store: (String, u16),
    pub gateway: (String, u16),
    pub key_manager: (String, u16),
    /// Every gateway node: (name, host, port).
    pub gateway_nodes: Vec<(String, String, u16)>,
    /// A backend that echoes requests as JSON.
    pub backend: String,
}

impl Entries {
    pub fn of(up: &Up) -> Result<Entries, String> {
        let entry = |c| up.entry(c).ok_or(format!("no {c} runs in this topology"));
        Ok(Entries {
            publisher: entry(Component::Publisher)?,
            store: entry(Component::Store)?,
            gateway: entry(Component::Gateway)?,
            key_manager: up
                .key_manager()
                .ok_or("no key manager runs in this topology")?,
            gateway_nodes: up.gateway_nodes(),
            backend: up.backend.clone(),
        })
    }
}

/// Runs the walk-through; the lines say what passed, the error what did not.
pub async fn run(e: &Entries, admin_password: &str) -> Result<Vec<String>, String> {
    let (publisher, store, gateway, key_manager) = (
        e.publisher.clone(),
        e.store.clone(),
        e.gateway.clone(),
        e.key_manager.clone(),
    );
    let mut w = Walk {
        client: http::client(),
        log: Vec::new(),
    };
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| e.to_string())?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let context = format!("smoke-{tag}");

    let login = Request::new("POST", "/api/login")
        .json(&json!({"username": "admin", "password": admin_password}));
    let p = field(
        &w.send("publisher: sign in as admin", &publisher, login, 200)
            .await?,
        "token",
    )?;
    let auth = |t: &str| format!("Bearer {t}");
    let create = Request::new("POST", "/api/apis")
        .header("authorization", &auth(&p))
        .json(&json!({"name": "Smoke", "version": "v1", "context": context, "backend": e.backend}));
    let api = field(
        &w.send("publisher: create an API", &publisher, create, 201)
            .await?,
        "id",
    )?;
    let publish = Request::new("POST", &format!("/api/apis/{api}/publish"))
        .header("authorization", &auth(&p));
    w.send(
        "publisher: publish it to every gateway",
        &publisher,
        publish,
        200,
    )
    .await?;

    let user = format!("smoke-{tag}");
    let creds = json!({"username": user, "password": "smoke-password"});
    w.send(
        "store: sign up",
        &store,
        Request::new("POST", "/api/signup").json(&creds),
        201,
    )
    .await?;
    let s = field(
        &w.send(
            "store: sign in",
            &store,
            Request::new("POST", "/api/login").json(&creds),
            200,
        )
        .await?,
        "token",
    )?;
    let token_of = async |w: &mut Walk,
                          name: &str,
                          subscribe: bool|
           -> Result<(String, String, String), String> {
        let app = Request::new("POST", "/api/applications")
            .header("authorization", &auth(&s))
            .json(&json!({"name": name}));
        let app = field(
            &w.send(
                &format!("store: create application {name}"),
                &store,
                app,
                201,
            )
            .await?,
            "id",
        )?;
        if subscribe {
            let sub = Request::new("POST", "/api/subscriptions")
                .header("authorization", &auth(&s))
                .json(&json!({"application": app, "api": api}));
            w.send(
                &format!("store: subscribe {name} to the API"),
                &store,
                sub,
                201,
            )
            .await?;
        }
        let keys = Request::new("POST", &format!("/api/applications/{app}/keys"))
            .header("authorization", &auth(&s));
        let keys = w
            .send(
                &format!("store: consumer keys of {name} from the key manager"),
                &store,
                keys,
                201,
            )
            .await?;
        let (ck, cs) = (
            field(&keys, "consumer_key")?,
            field(&keys, "consumer_secret")?,
        );
        let token = Request::new("POST", "/token")
            .header("authorization", &basic(&ck, &cs))
            .form(&[("grant_type", "client_credentials")]);
        let t = field(
            &w.send(&format!("gateway: token for {name}"), &gateway, token, 200)
                .await?,
            "access_token",
        )?;
        Ok((t, ck, cs))
    };
    let (token, ck, cs) = token_of(&mut w, "subscribed", true).await?;
    let path = format!("/{context}/v1/hello?n=1");
    let invoke = |t: Option<&str>| {
        let r = Request::new("GET", &path);
        match t {
            Some(t) => r.header("authorization", &auth(t)),
            None => r,
        }
    };
    let echoed = w
        .send(
            "gateway: invoke the API",
            &gateway,
            invoke(Some(&token)),
            200,
        )
        .await?;
    if echoed["path"] != "/hello" {
        return Err(format!("the backend saw {echoed}, not /hello"));
    }
    w.send(
        "gateway: invoke without a token is refused",
        &gateway,
        invoke(None),
        401,
    )
    .await?;
    let (other, _, _) = token_of(&mut w, "unsubscribed", false).await?;
    w.send(
        "gateway: invoke with an unsubscribed application is refused",
        &gateway,
        invoke(Some(&other)),
        403,
    )
    .await?;
    for (name, host, port) in e.gateway_nodes.clone() {
        w.send(
            &format!("{name}: invoke"),
            &(host, port),
            invoke(Some(&token)),
            200,
        )
        .await?;
    }
    let revoke = Request::new("POST", "/revoke")
        .header("authorization", &basic(&ck, &cs))
        .form(&[("token", &token)]);
    w.send("key manager: revoke the token", &key_manager, revoke, 200)
        .await?;
    for (name, host, port) in e.gateway_nodes.clone() {
        w.send(
            &format!("{name}: the revoked token is refused"),
            &(host, port),
            invoke(Some(&token)),
            401,
        )
        .await?;
    }
    Ok(w.log)
}
