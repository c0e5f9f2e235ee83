//! The built-in balancer, running a balancer's rules: a listener per route, round robin over
//! healthy upstreams (component logic: `apim_components::balancer`), active checks of each
//! node's admin `/health`, one retry elsewhere when a connection fails, sticky portals.
//! Bodies are streamed both ways: the balancer holds no request or response whole.

use crate::http;
use apim_compiler::plan::{BalancerPlan, BalancerRoute};
use apim_components::balancer::{self, Pool};
use apim_components::http::cookie_in;
use apim_components::{CallError, Request, Response};
use http_body_util::BodyExt;
use hyper::HeaderMap;
use hyper::body::Incoming;
use hyper::header::{COOKIE, HOST, HeaderValue, SET_COOKIE};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// The cookie naming the node a portal session sticks to.
pub const STICKY_COOKIE: &str = "APIM_NODE";

pub struct RunningBalancer {
    pub plan: BalancerPlan,
    pub pools: Vec<Arc<Mutex<Pool>>>,
    _tasks: JoinSet<()>,
}

pub async fn start(plan: BalancerPlan, bind: &str) -> Result<RunningBalancer, String> {
    let checks = http::client();
    let client = http::stream_client();
    let mut tasks = JoinSet::new();
    let mut pools = Vec::new();
    for route in &plan.routes {
        let listener = http::bind(bind, route.port)
            .await
            .map_err(|e| format!("balancer {}: {e}", plan.name))?;
        let pool = Arc::new(Mutex::new(Pool::new(
            route.upstream.iter().map(|u| u.node.clone()),
            route.health.fall,
            route.health.rise,
        )));
        pools.push(pool.clone());
        let route = Arc::new(route.clone());
        {
            let (route, pool, client) = (route.clone(), pool.clone(), client.clone());
            tasks.spawn(http::serve_raw(listener, move |req, from| {
                let (route, pool, client) = (route.clone(), pool.clone(), client.clone());
                async move { proxy(&route, &pool, &client, req, from.ip().to_string()).await }
            }));
        }
        tasks.spawn(check_health(route, pool, checks.clone()));
    }
    Ok(RunningBalancer {
        plan,
        pools,
        _tasks: tasks,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Says where the request came from, replacing whatever `X-Forwarded-*` the client sent
/// (except the chain of `X-Forwarded-For`, which grows).
fn forwarded(headers: &mut HeaderMap, from: String, port: u16) {
    let text = |v: &HeaderValue| v.to_str().ok().map(str::to_string);
    let host = headers.get(HOST).and_then(text).unwrap_or_default();
    let chain = match headers.get("x-forwarded-for").and_then(text) {
        Some(prior) => format!("{prior}, {from}"),
        None => from,
    };
    while let Some(name) = headers
        .keys()
        .find(|n| n.as_str().starts_with("x-forwarded-"))
        .cloned()
    {
        headers.remove(&name);
    }
    for (name, value) in [
        ("x-forwarded-for", chain),
        ("x-forwarded-proto", "http".to_string()),
        ("x-forwarded-host", host),
        ("x-forwarded-port", port.to_string()),
    ] {
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(name, v);
        }
    }
}

/// Passes one request to a node of the route, its body streamed both ways; the answer when no
/// node could take it.
async fn proxy(
    route: &BalancerRoute,
    pool: &Mutex<Pool>,
    client: &http::StreamClient,
    req: hyper::Request<Incoming>,
    from: String,
) -> hyper::Response<http::Body> {
    let (mut parts, body) = req.into_parts();
    forwarded(&mut parts.headers, from, route.port);
    http::drop_hop_by_hop(&mut parts.headers);
    let sticky = route
        .sticky
        .then(|| {
            let cookies = parts.headers.get_all(COOKIE).iter();
            cookie_in(cookies.filter_map(|v| v.to_str().ok()), STICKY_COOKIE).map(str::to_string)
        })
        .flatten();
    let timeout = Duration::from_millis(route.timeouts.read_ms);
    // The request goes to one node; it comes back here when none of it could be sent, and
    // then goes to the next.
    let pending = Mutex::new(Some(hyper::Request::from_parts(parts, body)));
    let sent = balancer::attempt(pool, sticky.as_deref(), |i| {
        let (u, pending) = (&route.upstream[i], &pending);
        async move {
            let Some(mut req) = lock(pending).take() else {
                return Err(CallError::Broken("the request was sent already".into()));
            };
            let authority = http::authority(&u.host, u.port);
            match HeaderValue::try_from(authority.as_str()) {
                Ok(v) => req.headers_mut().insert(HOST, v),
                Err(e) => return Err(CallError::Connect(format!("{authority}: {e}"))),
            };
            match tokio::time::timeout(timeout, client.try_send(&authority, req)).await {
                Err(_) => Err(CallError::Timeout),
                Ok(Ok(r)) => Ok(r),
                Ok(Err(failed)) => {
                    *lock(pending) = failed.request;
                    Err(failed.error)
                }
            }
        }
    })
    .await;
    match sent {
        Ok((i, r)) => {
            let (mut parts, body) = r.into_parts();
            http::drop_hop_by_hop(&mut parts.headers);
            let node = &route.upstream[i].node;
            if route.sticky
                && sticky.as_deref() != Some(node.as_str())
                && let Ok(v) =
                    HeaderValue::try_from(format!("{STICKY_COOKIE}={node}; Path=/; HttpOnly"))
            {
                parts.headers.append(SET_COOKIE, v);
            }
            hyper::Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            if let Some(unsent) = lock(&pending).take() {
                http::linger(unsent.into_body());
            }
            http::write(unavailable(route, e))
        }
    }
}

fn unavailable(route: &BalancerRoute, e: CallError) -> Response {
    match e {
        CallError::Timeout => Response::error(
            504,
            "upstream_timeout",
            format!("no {} node answered in time", route.component),
        ),
        CallError::Broken(e) => Response::error(502, "bad_gateway", e),
        // Nothing could be sent to any node.
        CallError::Connect(e) => Response::error(
            503,
            "unavailable",
            format!("no {} node can be reached: {e}", route.component),
        ),
    }
}

async fn check_health(route: Arc<BalancerRoute>, pool: Arc<Mutex<Pool>>, client: http::Client) {
    let every = Duration::from_millis(route.health.interval_ms.max(100));
    let timeout = Duration::from_millis(route.health.timeout_ms.max(100));
    loop {
        for (i, u) in route.upstream.iter().enumerate() {
            let r = http::send(
                &client,
                &u.host,
                u.admin_port,
                Request::new("GET", &route.health.path),
                timeout,
            )
            .await;
            lock(&pool).checked(i, r.is_ok_and(|r| r.status == 200));
        }
        tokio::time::sleep(every).await;
    }
}
