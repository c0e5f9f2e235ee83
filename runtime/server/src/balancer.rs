//! The built-in balancer, running a balancer's rules: a listener per route, round robin over
//! healthy upstreams (component logic: `apim_components::balancer`), active checks of each
//! node's admin `/ready` (the route's health path), one retry elsewhere when a connection fails, sticky portals.
//! Bodies are streamed both ways: the balancer holds no request or response whole.

use crate::http;
use apim_compiler::plan::{BalancerPlan, BalancerRoute, RouteListener};
use apim_components::balancer::{self, Pool};
use apim_components::{CallError, Request, Response};
use http_body_util::{BodyExt, Either, Empty};
use hyper::HeaderMap;
use hyper::body::{Body as _, Incoming};
use hyper::header::{COOKIE, HOST, HeaderValue, SET_COOKIE};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

pub use apim_components::balancer::STICKY_COOKIE;

/// A balancer that is serving; dropping it stops at once (`stop` stops it gracefully).
pub struct RunningBalancer {
    pub plan: BalancerPlan,
    pub pools: Vec<Arc<Mutex<Pool>>>,
    listeners: JoinSet<()>,
    stop: tokio::sync::watch::Sender<bool>,
    _checks: JoinSet<()>,
}

impl RunningBalancer {
    /// Stops accepting connections and lets the requests and connections in flight finish,
    /// within `grace`; answers whether all of them did.
    pub async fn stop(mut self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        http::finish(&mut self.listeners, grace).await
    }
}

pub async fn start(plan: BalancerPlan, bind: &str) -> Result<RunningBalancer, String> {
    let what = format!("balancer {}", plan.name);
    let (tls, _warnings) = crate::tls::load_checked(&what, &plan.identity, &plan.host, &plan.tls)?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut serving = http::Serving::tls(match &plan.edge {
        Some(edge) => crate::tls::server_of_files(&edge.cert, &edge.key)?,
        None => tls.server()?,
    });
    serving.stop = Some(stopping.clone());
    let mut tasks = JoinSet::new();
    let mut checks = JoinSet::new();
    checks.spawn(crate::tls::renew_on_hangup(
        tls.clone(),
        what.clone(),
        plan.host.clone(),
        plan.tls.clone(),
    ));
    let mut pools = Vec::new();
    for route in &plan.routes {
        let listener = http::bind(bind, route.port)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let pool = Arc::new(Mutex::new(Pool::new(
            route.upstream.iter().map(|u| u.node.clone()),
            route.health.fall,
            route.health.rise,
        )));
        pools.push(pool.clone());
        // The balancer itself talks to the nodes of this route only: it accepts their
        // certificates and no others.
        let nodes: Vec<String> = route.upstream.iter().map(|u| u.identity.clone()).collect();
        let to_nodes = tls.client(nodes)?;
        let route = Arc::new(route.clone());
        match route.listener {
            RouteListener::Public => {
                let (route, pool) = (route.clone(), pool.clone());
                let client = http::StreamClient::with_tls(to_nodes.clone());
                // Balancers face clients: one address may not take every connection.
                let gate = http::Gate::new(http::MAX_CONNECTIONS, Some(http::MAX_PER_ADDRESS));
                tasks.spawn(http::serve_connections(
                    listener,
                    serving.clone().gated(gate),
                    move |req, from| {
                        let (route, pool, client) = (route.clone(), pool.clone(), client.clone());
                        let from = from.addr.ip().to_string();
                        async move { proxy(&route, &pool, &client, req, from).await }
                    },
                ));
            }
            RouteListener::Internal => {
                tasks.spawn(pass_through(
                    listener,
                    route.clone(),
                    pool.clone(),
                    stopping.clone(),
                ));
            }
        }
        checks.spawn(check_health(
            route,
            pool,
            http::tls_client(crate::tls::without_resumption(&to_nodes)).fresh(),
        ));
    }
    Ok(RunningBalancer {
        plan,
        pools,
        listeners: tasks,
        stop,
        _checks: checks,
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
        ("x-forwarded-proto", "https".to_string()),
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
            balancer::sticky_in(cookies.filter_map(|v| v.to_str().ok())).map(str::to_string)
        })
        .flatten();
    let timeout = Duration::from_millis(route.timeouts.read_ms);
    // An idempotent request without a body can be sent again after it broke in flight: its
    // head is kept for that.
    let again = (balancer::idempotent(parts.method.as_str()) && body.is_end_stream()).then(|| {
        let mut head = hyper::Request::new(Either::Right(Empty::new()));
        *head.method_mut() = parts.method.clone();
        *head.uri_mut() = parts.uri.clone();
        *head.version_mut() = parts.version;
        *head.headers_mut() = parts.headers.clone();
        head
    });
    let repeatable = again.is_some();
    let again = Mutex::new(again);
    // The request goes to one node; it comes back here when none of it could be sent, and
    // then goes to the next.
    let pending = Mutex::new(Some(hyper::Request::from_parts(parts, Either::Left(body))));
    let sent = balancer::attempt(pool, sticky.as_deref(), repeatable, |i| {
        let (u, pending, again) = (&route.upstream[i], &pending, &again);
        async move {
            let Some(mut req) = lock(pending).take().or_else(|| lock(again).take()) else {
                return Err(CallError::Broken("the request was sent already".into()));
            };
            let authority = http::authority(&u.host, u.port);
            match HeaderValue::try_from(authority.as_str()) {
                Ok(v) => req.headers_mut().insert(HOST, v),
                Err(e) => return Err(CallError::Connect(format!("{authority}: {e}"))),
            };
            let answer = match tokio::time::timeout(timeout, client.try_send(&authority, req)).await
            {
                Err(_) => Err(CallError::Timeout),
                Ok(Ok(r)) => Ok(r),
                Ok(Err(failed)) => {
                    *lock(pending) = failed.request;
                    Err(failed.error)
                }
            };
            // A request lost after it was sent is the failure an operator must be able to
            // find (one that could not connect is retried elsewhere and said by the checks).
            if let Err(e @ (CallError::Broken(_) | CallError::Timeout)) = &answer {
                let next = if repeatable {
                    " (idempotent: sent again elsewhere if a node is left)"
                } else {
                    ""
                };
                eprintln!(
                    "balancer: {} request to {} failed after it was sent{next}: {e:?}",
                    route.component, u.node
                );
            }
            answer
        }
    })
    .await;
    match sent {
        Ok((i, r)) => {
            let (mut parts, body) = r.into_parts();
            http::drop_hop_by_hop(&mut parts.headers);
            let node = &route.upstream[i].node;
            if route.sticky
                && let Some(cookie) = balancer::stick(sticky.as_deref(), node)
                && let Ok(v) = HeaderValue::try_from(cookie)
            {
                parts.headers.append(SET_COOKIE, v);
            }
            hyper::Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            if let Some(Either::Left(unsent)) = lock(&pending).take().map(hyper::Request::into_body)
            {
                http::linger(unsent);
            }
            http::write(unavailable(route, e))
        }
    }
}

fn unavailable(route: &BalancerRoute, e: CallError) -> Response {
    apim_components::balancer::no_answer(route.component.as_str(), e)
}

async fn check_health(route: Arc<BalancerRoute>, pool: Arc<Mutex<Pool>>, client: http::Client) {
    let probe = |k: usize, timeout_ms: u64| {
        let (route, client) = (route.clone(), client.clone());
        async move {
            let Some(u) = route.upstream.get(k) else {
                return false;
            };
            let r = http::send(
                &client,
                &u.host,
                u.admin_port,
                Request::new("GET", &route.health.path),
                Duration::from_millis(timeout_ms),
            )
            .await;
            r.is_ok_and(|r| r.status == 200)
        }
    };
    apim_components::balancer::check_forever(
        &pool,
        route.health.interval_ms,
        route.health.timeout_ms,
        probe,
        |ms| tokio::time::sleep(Duration::from_millis(ms)),
    )
    .await;
}

const PASS_IDLE: Duration = Duration::from_millis(apim_topology::timing::PASS_IDLE_MS);

/// An internal route: every connection goes, untouched, to one node's internal listener (L4),
/// so the caller's own certificate reaches it. The node is chosen as for HTTP routes; a node
/// that cannot be connected to is skipped for the next.
async fn pass_through(
    listener: tokio::net::TcpListener,
    route: Arc<BalancerRoute>,
    pool: Arc<Mutex<Pool>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            // Stopping: accept nothing more; the connections passed through run to their end.
            Ok(_) = stop.wait_for(|s| *s) => break,
        };
        let Ok((mut client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // As every listener: past its limit a connection is closed at once.
        if open.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= http::MAX_CONNECTIONS {
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(client);
            continue;
        }
        let _ = client.set_nodelay(true);
        let (route, pool, open) = (route.clone(), pool.clone(), open.clone());
        connections.spawn(async move {
            struct Leave(Arc<std::sync::atomic::AtomicUsize>);
            impl Drop for Leave {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let _leave = Leave(open);
            let connect = Duration::from_millis(route.timeouts.connect_ms);
            let node = balancer::attempt(&pool, None, false, |i| {
                let authority = http::authority(&route.upstream[i].host, route.upstream[i].port);
                async move {
                    match tokio::time::timeout(connect, tokio::net::TcpStream::connect(&authority))
                        .await
                    {
                        Ok(Ok(s)) => Ok(s),
                        Ok(Err(e)) => Err(CallError::Connect(format!("{authority}: {e}"))),
                        Err(_) => Err(CallError::Connect(format!("{authority}: timed out"))),
                    }
                }
            })
            .await;
            let Ok((_, mut node)) = node else {
                // Closing is all a TCP balancer can say: the caller's client retries elsewhere.
                return;
            };
            let _ = node.set_nodelay(true);
            let _ = copy_until_idle(&mut client, &mut node).await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Copies both ways until either side closes, or nothing moves for `PASS_IDLE`.
async fn copy_until_idle(
    a: &mut tokio::net::TcpStream,
    b: &mut tokio::net::TcpStream,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = tokio::time::timeout(PASS_IDLE, ar.read(&mut up)) => {
                let n = n.map_err(|_| std::io::ErrorKind::TimedOut)??;
                if n == 0 { let _ = bw.shutdown().await; return Ok(()); }
                bw.write_all(&up[..n]).await?;
            }
            n = tokio::time::timeout(PASS_IDLE, br.read(&mut down)) => {
                let n = n.map_err(|_| std::io::ErrorKind::TimedOut)??;
                if n == 0 { let _ = aw.shutdown().await; return Ok(()); }
                aw.write_all(&down[..n]).await?;
            }
        }
    }
}
