//! Where a running deployment's clients go (`Entries`), and a quick provisioning for tests and
//! benchmarks: an API published on the echo backend and a subscribed application's token.
//! `apim up --smoke` itself runs the simulator's workload (`apim_drill::smoke`).

use crate::http;
use crate::up::Up;
use apim_compiler::plan::Plan;
use apim_components::client::{self, NewApi, Step};
use apim_components::{Request, Response};
use apim_topology::vocab::Component;
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
    ) -> Result<Response, String> {
        let r: Response = http::send(&self.client, &to.0, to.1, req, TIMEOUT)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if r.status != expect {
            return Err(format!(
                "{what}: expected {expect}, got {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        self.log.push(format!("ok  {what} ({})", r.status));
        Ok(r)
    }
}

/// What an answer's reader found wrong, said with the step it was for.
fn read<T>(what: &str, got: Result<T, String>) -> Result<T, String> {
    got.map_err(|e| format!("{what}: {e}"))
}

/// Where the walk-through sends its requests.
#[derive(Clone, Debug)]
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
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub api: String,
    pub context: String,
    pub token: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// The consumer's store session.
    pub session: String,
    /// The admin's publisher session.
    pub publisher: String,
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
    let what = format!("store: create application {name}");
    let app = client::create_application(session, name);
    let app = read(&what, client::id(&w.send(&what, &e.store, app, 201).await?))?;
    if subscribe {
        let sub = client::subscribe(session, &app, api);
        w.send(
            &format!("store: subscribe {name} to the API"),
            &e.store,
            sub,
            201,
        )
        .await?;
    }
    let what = format!("store: consumer keys of {name} from the key manager");
    let keys = w
        .send(&what, &e.store, client::keys(session, &app), 201)
        .await?;
    let client::Keys { key, secret } = read(&what, client::keys_of(&keys))?;
    let what = format!("gateway: token for {name}");
    let token = client::token(&key, &secret);
    let t = read(
        &what,
        client::issued(&w.send(&what, &e.gateway, token, 200).await?),
    )?;
    Ok((t.token, key, secret))
}

async fn provision_with(
    w: &mut Walk,
    e: &Entries,
    admin_password: &str,
    tag: &str,
) -> Result<Provisioned, String> {
    let context = format!("smoke-{tag}");
    let what = "publisher: sign in as admin";
    let login = client::login("admin", admin_password);
    let p = read(
        what,
        client::session(&w.send(what, &e.publisher, login, 200).await?),
    )?;
    let create = client::create_api(
        &p,
        &NewApi {
            name: "Smoke",
            version: "v1",
            context: &context,
            backend: &e.backend,
        },
    );
    let what = "publisher: create an API";
    let api = read(
        what,
        client::id(&w.send(what, &e.publisher, create, 201).await?),
    )?;
    let publish = client::lifecycle(&p, &api, Step::Publish);
    w.send(
        "publisher: publish it to every gateway",
        &e.publisher,
        publish,
        200,
    )
    .await?;
    let (user, password) = (format!("smoke-{tag}"), "smoke-password");
    w.send(
        "store: sign up",
        &e.store,
        client::signup(&user, password),
        201,
    )
    .await?;
    let what = "store: sign in";
    let login = client::login(&user, password);
    let session = read(
        what,
        client::session(&w.send(what, &e.store, login, 200).await?),
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
        publisher: p,
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
