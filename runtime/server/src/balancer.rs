//! The built-in balancer, running a balancer's rules: a listener per route, round robin over
//! healthy upstreams (component logic: `apim_components::balancer`), active checks of each
//! node's admin `/health`, one retry elsewhere when a connection fails, sticky portals.

use crate::http;
use apim_compiler::plan::{BalancerPlan, BalancerRoute};
use apim_components::balancer::{self, Pool};
use apim_components::{CallError, Request, Response};
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
    let client = http::client();
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
            tasks.spawn(http::serve(listener, move |req: Request, from| {
                let (route, pool, client) = (route.clone(), pool.clone(), client.clone());
                async move { proxy(&route, &pool, &client, req, from.ip().to_string()).await }
            }));
        }
        tasks.spawn(check_health(route, pool, client.clone()));
    }
    Ok(RunningBalancer {
        plan,
        pools,
        _tasks: tasks,
    })
}

fn lock(pool: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

async fn proxy(
    route: &BalancerRoute,
    pool: &Mutex<Pool>,
    client: &http::Client,
    mut req: Request,
    from: String,
) -> Response {
    let host = req.get_header("host").unwrap_or_default().to_string();
    let forwarded_for = match req.get_header("x-forwarded-for") {
        Some(prior) => format!("{prior}, {from}"),
        None => from,
    };
    req.headers.retain(|(n, _)| !n.starts_with("x-forwarded-"));
    req.headers.push(("x-forwarded-for".into(), forwarded_for));
    req.headers
        .push(("x-forwarded-proto".into(), "http".into()));
    req.headers.push(("x-forwarded-host".into(), host));
    req.headers
        .push(("x-forwarded-port".into(), route.port.to_string()));
    let sticky = if route.sticky {
        req.cookie(STICKY_COOKIE).map(str::to_string)
    } else {
        None
    };
    let timeout = Duration::from_millis(route.timeouts.read_ms);
    let sent = balancer::attempt(pool, sticky.as_deref(), |i| {
        let u = &route.upstream[i];
        http::send(client, &u.host, u.port, req.clone(), timeout)
    })
    .await;
    match sent {
        Ok((i, r)) => {
            let node = &route.upstream[i].node;
            if route.sticky && sticky.as_deref() != Some(node.as_str()) {
                r.header(
                    "set-cookie",
                    &format!("{STICKY_COOKIE}={node}; Path=/; HttpOnly"),
                )
            } else {
                r
            }
        }
        Err(CallError::Timeout) => Response::error(
            504,
            "upstream_timeout",
            format!("no {} node answered in time", route.component),
        ),
        Err(CallError::Broken(e)) => Response::error(502, "bad_gateway", e),
        // Nothing could be sent to any node.
        Err(CallError::Connect(e)) => Response::error(
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
