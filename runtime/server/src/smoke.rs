//! The walk-through of `apim up`, run for real: publish, sign up, subscribe, get a token, invoke
//! through the external balancer — then the refusals (401, 403) and a revocation that every
//! gateway node must honour.

use crate::http;
use crate::up::Up;
use apim_compiler::plan::Plan;
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
    fn new(e: &Entries) -> Result<Walk, String> {
        Ok(Walk {
            client: http::tls_client(crate::tls::client_trusting(&e.ca)?),
            log: Vec::new(),
        })
    }

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

pub fn basic(key: &str, secret: &str) -> String {
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
    /// The deployment CA (PEM) the walk-through trusts.
    pub ca: String,
}

impl Entries {
    pub fn of(up: &Up) -> Result<Entries, String> {
        Entries::of_plan(&up.plan, &up.backend, &up.ca_pem)
    }

    /// The entries of a plan whose addresses are where it runs.
    pub fn of_plan(plan: &Plan, backend: &str, ca_pem: &str) -> Result<Entries, String> {
        let entry = |c| crate::up::entry(plan, c).ok_or(format!("no {c} runs in this topology"));
        Ok(Entries {
            publisher: entry(Component::Publisher)?,
            store: entry(Component::Store)?,
            gateway: entry(Component::Gateway)?,
            key_manager: crate::up::key_manager(plan)
                .ok_or("no key manager runs in this topology")?,
            gateway_nodes: crate::up::gateway_nodes(plan),
            backend: backend.to_string(),
            ca: ca_pem.to_string(),
        })
    }
}

/// What a provisioning created: a published API and a subscribed application's token.
pub struct Provisioned {
    pub api: String,
    pub context: String,
    pub token: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// The consumer's store session.
    pub session: String,
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// An application of the signed-in consumer, subscribed to `api` or not, and its token.
async fn app_token(
    w: &mut Walk,
    e: &Entries,
    session: &str,
    api: &str,
    name: &str,
    subscribe: bool,
) -> Result<(String, String, String), String> {
    let app = Request::new("POST", "/api/applications")
        .header("authorization", &bearer(session))
        .json(&json!({"name": name}));
    let app = field(
        &w.send(
            &format!("store: create application {name}"),
            &e.store,
            app,
            201,
        )
        .await?,
        "id",
    )?;
    if subscribe {
        let sub = Request::new("POST", "/api/subscriptions")
            .header("authorization", &bearer(session))
            .json(&json!({"application": app, "api": api}));
        w.send(
            &format!("store: subscribe {name} to the API"),
            &e.store,
            sub,
            201,
        )
        .await?;
    }
    let keys = Request::new("POST", &format!("/api/applications/{app}/keys"))
        .header("authorization", &bearer(session));
    let keys = w
        .send(
            &format!("store: consumer keys of {name} from the key manager"),
            &e.store,
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
        &w.send(
            &format!("gateway: token for {name}"),
            &e.gateway,
            token,
            200,
        )
        .await?,
        "access_token",
    )?;
    Ok((t, ck, cs))
}

async fn provision_with(
    w: &mut Walk,
    e: &Entries,
    admin_password: &str,
    tag: &str,
) -> Result<Provisioned, String> {
    let context = format!("smoke-{tag}");
    let login = Request::new("POST", "/api/login")
        .json(&json!({"username": "admin", "password": admin_password}));
    let p = field(
        &w.send("publisher: sign in as admin", &e.publisher, login, 200)
            .await?,
        "token",
    )?;
    let create = Request::new("POST", "/api/apis")
        .header("authorization", &bearer(&p))
        .json(&json!({"name": "Smoke", "version": "v1", "context": context, "backend": e.backend}));
    let api = field(
        &w.send("publisher: create an API", &e.publisher, create, 201)
            .await?,
        "id",
    )?;
    let publish = Request::new("POST", &format!("/api/apis/{api}/publish"))
        .header("authorization", &bearer(&p));
    w.send(
        "publisher: publish it to every gateway",
        &e.publisher,
        publish,
        200,
    )
    .await?;
    let creds = json!({"username": format!("smoke-{tag}"), "password": "smoke-password"});
    w.send(
        "store: sign up",
        &e.store,
        Request::new("POST", "/api/signup").json(&creds),
        201,
    )
    .await?;
    let session = field(
        &w.send(
            "store: sign in",
            &e.store,
            Request::new("POST", "/api/login").json(&creds),
            200,
        )
        .await?,
        "token",
    )?;
    let (token, consumer_key, consumer_secret) =
        app_token(w, e, &session, &api, "subscribed", true).await?;
    Ok(Provisioned {
        api,
        context,
        token,
        consumer_key,
        consumer_secret,
        session,
    })
}

/// Publishes an API on the entries' backend and gives a subscribed application a token.
pub async fn provision(
    e: &Entries,
    admin_password: &str,
    tag: &str,
) -> Result<Provisioned, String> {
    let mut w = Walk::new(e)?;
    provision_with(&mut w, e, admin_password, tag).await
}

/// Runs the walk-through; the lines say what passed, the error what did not.
pub async fn run(e: &Entries, admin_password: &str) -> Result<Vec<String>, String> {
    let mut w = Walk::new(e)?;
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| e.to_string())?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let p = provision_with(&mut w, e, admin_password, &tag).await?;
    let path = format!("/{}/v1/hello?n=1", p.context);
    let invoke = |t: Option<&str>| {
        let r = Request::new("GET", &path);
        match t {
            Some(t) => r.header("authorization", &bearer(t)),
            None => r,
        }
    };
    let echoed = w
        .send(
            "gateway: invoke the API",
            &e.gateway,
            invoke(Some(&p.token)),
            200,
        )
        .await?;
    if echoed["path"] != "/hello" {
        return Err(format!("the backend saw {echoed}, not /hello"));
    }
    w.send(
        "gateway: invoke without a token is refused",
        &e.gateway,
        invoke(None),
        401,
    )
    .await?;
    let (other, _, _) = app_token(&mut w, e, &p.session, &p.api, "unsubscribed", false).await?;
    w.send(
        "gateway: invoke with an unsubscribed application is refused",
        &e.gateway,
        invoke(Some(&other)),
        403,
    )
    .await?;
    for (name, host, port) in e.gateway_nodes.clone() {
        w.send(
            &format!("{name}: invoke"),
            &(host, port),
            invoke(Some(&p.token)),
            200,
        )
        .await?;
    }
    let revoke = Request::new("POST", "/revoke")
        .header("authorization", &basic(&p.consumer_key, &p.consumer_secret))
        .form(&[("token", &p.token)]);
    w.send(
        "gateway: revoke the token (the key manager's, through the gateway)",
        &e.gateway,
        revoke,
        200,
    )
    .await?;
    // What only nodes may do is refused to clients: the internal endpoints are not on the
    // public listeners at all, and introspection needs the client's own credentials.
    let inject = Request::new("POST", "/internal/apis").json(&json!({
        "id": p.api, "name": "x", "version": "v1", "context": p.context,
        "backend": "http://127.0.0.1:1", "description": "", "provider": "x", "state": "published"
    }));
    w.send(
        "gateway: a client cannot push an API to the gateways (no internal endpoint)",
        &e.gateway,
        inject,
        404,
    )
    .await?;
    let mint = Request::new("POST", "/internal/clients").json(&json!({"application": "x"}));
    w.send(
        "key manager: a client cannot mint consumer keys (no internal endpoint)",
        &e.key_manager,
        mint,
        404,
    )
    .await?;
    let introspect = Request::new("POST", "/introspect").form(&[("token", &p.token)]);
    w.send(
        "key manager: introspection without client credentials is refused",
        &e.key_manager,
        introspect,
        401,
    )
    .await?;
    let introspect = Request::new("POST", "/introspect")
        .header("authorization", &basic(&p.consumer_key, &p.consumer_secret))
        .form(&[("token", &p.token)]);
    let r = w
        .send(
            "gateway: introspection of the revoked token",
            &e.gateway,
            introspect,
            200,
        )
        .await?;
    if r["active"] != json!(false) {
        return Err("introspection calls the revoked token active".into());
    }
    for (name, host, port) in e.gateway_nodes.clone() {
        w.send(
            &format!("{name}: the revoked token is refused"),
            &(host, port),
            invoke(Some(&p.token)),
            401,
        )
        .await?;
    }
    Ok(w.log)
}
