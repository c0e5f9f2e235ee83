//! The built-in balancer's choice of target: round robin over healthy targets, stickiness by
//! a cookie naming the node, health from active checks and failed connections, and one retry
//! on another target when a connection fails before anything was sent — or, for a request that
//! may be repeated, when it broke before any answer.

/// The cookie naming the node a portal session sticks to (set by balancers on portal routes).
pub const STICKY_COOKIE: &str = "APIM_NODE";

use crate::world::CallError;
use apim_topology::timing::MIN_CHECK_MS;
use std::future::Future;
use std::sync::Mutex;

/// One upstream target and what is known of its health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub healthy: bool,
    fails: u32,
    successes: u32,
}

/// The targets of one route.
#[derive(Clone, Debug)]
pub struct Pool {
    pub targets: Vec<Target>,
    next: usize,
    fall: u32,
    rise: u32,
}

impl Pool {
    /// Targets start healthy: a new balancer serves at once and learns from its checks.
    pub fn new(names: impl IntoIterator<Item = String>, fall: u32, rise: u32) -> Pool {
        let targets = names
            .into_iter()
            .map(|name| Target {
                name,
                healthy: true,
                fails: 0,
                successes: 0,
            })
            .collect();
        Pool {
            targets,
            next: 0,
            fall: fall.max(1),
            rise: rise.max(1),
        }
    }

    /// The target for a request: the sticky one when it is named and healthy, otherwise the
    /// next healthy one in turn (or, when none is healthy, the next one at all), never one
    /// already tried.
    pub fn pick(&mut self, sticky: Option<&str>, tried: &[usize]) -> Option<usize> {
        let held = sticky.and_then(|s| self.targets.iter().position(|t| t.name == s));
        if let Some(i) = held.filter(|&i| self.targets[i].healthy && !tried.contains(&i)) {
            return Some(i);
        }
        let n = self.targets.len();
        let candidates = |healthy_only: bool| {
            (0..n)
                .map(|k| (self.next + k) % n)
                .find(|&i| !tried.contains(&i) && (!healthy_only || self.targets[i].healthy))
        };
        let chosen = candidates(true).or_else(|| candidates(false))?;
        self.next = (chosen + 1) % n.max(1);
        Some(chosen)
    }

    /// An active health check's result: `fall` failures in a row mark a target down, `rise`
    /// successes up again.
    pub fn checked(&mut self, i: usize, ok: bool) {
        let (fall, rise) = (self.fall, self.rise);
        let Some(t) = self.targets.get_mut(i) else {
            return;
        };
        if ok {
            t.fails = 0;
            t.successes += 1;
            if !t.healthy && t.successes >= rise {
                t.healthy = true;
            }
        } else {
            t.successes = 0;
            t.fails += 1;
            if t.healthy && t.fails >= fall {
                t.healthy = false;
            }
        }
    }

    /// A request could not connect: the target is taken out at once, until checks bring it back.
    pub fn connect_failed(&mut self, i: usize) {
        if let Some(t) = self.targets.get_mut(i) {
            t.healthy = false;
            t.successes = 0;
            t.fails = self.fall;
        }
    }
}

/// The node a request on a sticky route asks for: its cookie's, among the `Cookie` headers.
pub fn sticky_in<'a>(cookies: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    crate::http::cookie_in(cookies, STICKY_COOKIE)
}

/// The `Set-Cookie` value that keeps a client on `node`, when its request did not already ask
/// for it (`held`).
pub fn stick(held: Option<&str>, node: &str) -> Option<String> {
    (held != Some(node)).then(|| format!("{STICKY_COOKIE}={node}; Path=/; HttpOnly; Secure"))
}

/// How many targets a request may try: the first, and one retry.
pub const ATTEMPTS: usize = 2;

fn lock(pool: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
    // Every change to a pool is one field update: usable even after a panic elsewhere.
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

/// A balancer's answer when no node of `component` gave one: 504 when none answered in time,
/// 502 when a connection broke after the request was sent, 503 when none could be reached.
pub fn no_answer(component: &str, e: CallError) -> crate::http::Response {
    use crate::http::Response;
    match e {
        CallError::Timeout => Response::error(
            504,
            "upstream_timeout",
            format!("no {component} node answered in time"),
        ),
        CallError::Broken(e) => Response::error(502, "bad_gateway", e),
        // Nothing could be sent to any node.
        CallError::Connect(e) => Response::error(
            503,
            "unavailable",
            format!("no {component} node can be reached: {e}"),
        ),
    }
}

/// The active health checks of one route, forever: each target in turn is asked with
/// `probe(target, timeout_ms)` (true: it answered ready in time) and the answer recorded; then
/// `interval_ms` passes on the world's clock (`sleep`). Both worlds run this; they only say how
/// a probe is sent.
pub async fn check_forever<P, PF, S, SF>(
    pool: &Mutex<Pool>,
    interval_ms: u64,
    timeout_ms: u64,
    probe: P,
    sleep: S,
) where
    P: Fn(usize, u64) -> PF,
    PF: Future<Output = bool>,
    S: Fn(u64) -> SF,
    SF: Future<Output = ()>,
{
    let targets = lock(pool).targets.len();
    let (every, timeout) = (interval_ms.max(MIN_CHECK_MS), timeout_ms.max(MIN_CHECK_MS));
    loop {
        for k in 0..targets {
            let ok = probe(k, timeout).await;
            lock(pool).checked(k, ok);
        }
        sleep(every).await;
    }
}

/// Whether a request with `method` may be sent twice with the same effect as once (RFC 9110,
/// 9.2.2): only such a request is repeated after it was sent.
pub fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Sends one request through a pool: to the target `pick` chooses, and once more elsewhere when
/// the connection failed before anything was sent, or — when `repeatable` (an idempotent request
/// whose body can be sent again) — when it broke before any answer: a node killed with the
/// request in flight, or a kept-alive connection the node closed as the request went out (what
/// nginx's `proxy_next_upstream error` does too). A target that could not be reached leaves the
/// rotation; a broken connection alone does not (checks decide). One that answered counts as a
/// passed check. Returns the target that answered.
pub async fn attempt<T, Fut>(
    pool: &Mutex<Pool>,
    sticky: Option<&str>,
    repeatable: bool,
    mut send: impl FnMut(usize) -> Fut,
) -> Result<(usize, T), CallError>
where
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut tried = Vec::new();
    let mut last = CallError::Connect("no target to send to".into());
    for _ in 0..ATTEMPTS {
        let Some(i) = lock(pool).pick(sticky, &tried) else {
            break;
        };
        tried.push(i);
        match send(i).await {
            Ok(r) => {
                lock(pool).checked(i, true);
                return Ok((i, r));
            }
            Err(CallError::Connect(e)) => {
                let mut p = lock(pool);
                p.connect_failed(i);
                // With no other target, the same one once more: the one target is most often a
                // balancer in front, whose next connection goes to another node (it may have
                // spent the client's whole connect bound on a node that vanished).
                if p.targets.len() == 1 {
                    tried.clear();
                }
                last = CallError::Connect(e);
            }
            Err(CallError::Broken(e)) if repeatable => {
                // With no other target, the same one once more: a stale kept-alive connection
                // says nothing of the node, and a new connection (or a balancer in front) may
                // well answer.
                if lock(pool).targets.len() == 1 {
                    tried.clear();
                }
                last = CallError::Broken(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A component's call to a peer through `pool` (`World::call` in both worlds): `attempt` with
/// the request held whole, so that an idempotent one can be sent again; only the answer.
pub async fn call<Fut>(
    pool: &Mutex<Pool>,
    req: &crate::http::Request,
    mut send: impl FnMut(usize, crate::http::Request) -> Fut,
) -> Result<crate::http::Response, CallError>
where
    Fut: Future<Output = Result<crate::http::Response, CallError>>,
{
    let repeatable = idempotent(&req.method);
    attempt(pool, None, repeatable, |i| send(i, req.clone()))
        .await
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        Pool::new((1..=n).map(|i| format!("n-{i}")), 3, 2)
    }

    #[test]
    fn round_robin_skips_unhealthy_targets() {
        let mut p = pool(3);
        assert_eq!(
            [p.pick(None, &[]), p.pick(None, &[]), p.pick(None, &[])],
            [Some(0), Some(1), Some(2)]
        );
        p.connect_failed(1);
        assert_eq!(
            [p.pick(None, &[]), p.pick(None, &[]), p.pick(None, &[])],
            [Some(0), Some(2), Some(0)]
        );
        p.checked(1, true);
        assert!(!p.targets[1].healthy, "one success is not enough to rise");
        p.checked(1, true);
        assert!(p.targets[1].healthy);
    }

    #[test]
    fn sticky_targets_hold_while_healthy_and_retries_go_elsewhere() {
        let mut p = pool(3);
        assert_eq!(p.pick(Some("n-3"), &[]), Some(2));
        assert_eq!(p.pick(Some("n-3"), &[2]), Some(0));
        for _ in 0..3 {
            p.checked(2, false);
        }
        assert_ne!(p.pick(Some("n-3"), &[]), Some(2));
        assert_eq!(Pool::new(Vec::new(), 3, 2).pick(None, &[]), None);
    }

    #[test]
    fn with_every_target_down_requests_still_try_one() {
        let mut p = pool(2);
        p.connect_failed(0);
        p.connect_failed(1);
        assert!(p.pick(None, &[]).is_some());
        assert_eq!(p.pick(None, &[0, 1]), None);
    }

    /// The first target breaks the request after it was sent: the second answers.
    fn broken_then_answered(repeatable: bool) -> (Result<(usize, u16), CallError>, Vec<usize>) {
        let p = Mutex::new(pool(2));
        let sent = Mutex::new(Vec::new());
        let answer = pollster::block_on(attempt(&p, None, repeatable, |i| {
            lock_sent(&sent).push(i);
            async move {
                match i {
                    0 => Err(CallError::Broken("closed before message completed".into())),
                    _ => Ok(200),
                }
            }
        }));
        let sent = lock_sent(&sent).clone();
        (answer, sent)
    }

    fn lock_sent(m: &Mutex<Vec<usize>>) -> std::sync::MutexGuard<'_, Vec<usize>> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn a_repeatable_request_broken_in_flight_goes_to_another_target() {
        let (answer, sent) = broken_then_answered(true);
        assert_eq!(answer.ok(), Some((1, 200)));
        assert_eq!(sent, [0, 1]);
    }

    /// A pool of one target whose first attempt fails with `first`, the next answers; the
    /// answer and the targets sent to.
    fn one_target_failing_once(
        repeatable: bool,
        first: CallError,
    ) -> (Result<(usize, u16), CallError>, Vec<usize>) {
        let p = Mutex::new(pool(1));
        let sent = Mutex::new(Vec::new());
        let first = Mutex::new(Some(first));
        let answer = pollster::block_on(attempt(&p, None, repeatable, |i| {
            lock_sent(&sent).push(i);
            let failed = first.lock().unwrap_or_else(|e| e.into_inner()).take();
            async move { failed.map_or(Ok(200), Err) }
        }));
        let sent = lock_sent(&sent).clone();
        (answer, sent)
    }

    #[test]
    fn a_repeatable_request_with_one_target_is_sent_to_it_once_more() {
        let broken = CallError::Broken("closed before message completed".into());
        let (answer, sent) = one_target_failing_once(true, broken);
        assert_eq!(answer.ok(), Some((0, 200)));
        assert_eq!(sent, [0, 0]);
        // Never more than the attempts allowed.
        let p = Mutex::new(pool(1));
        let tries = Mutex::new(0);
        let answer: Result<(usize, u16), _> = pollster::block_on(attempt(&p, None, true, |_| {
            *tries.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            async { Err(CallError::Broken("gone".into())) }
        }));
        assert!(answer.is_err());
        assert_eq!(*tries.lock().unwrap_or_else(|e| e.into_inner()), ATTEMPTS);
    }

    #[test]
    fn a_connection_that_failed_to_the_one_target_is_tried_once_more() {
        // Nothing was sent: even a request that must not be repeated may go again, and a
        // balancer in front sends the new connection to another node.
        let (answer, sent) = one_target_failing_once(false, CallError::Connect("timed out".into()));
        assert_eq!(answer.ok(), Some((0, 200)));
        assert_eq!(sent, [0, 0]);
        // A write whose connection broke after it was sent is not.
        let (answer, sent) = one_target_failing_once(false, CallError::Broken("reset".into()));
        assert!(answer.is_err());
        assert_eq!(sent, [0]);
    }

    #[test]
    fn a_request_that_must_not_be_repeated_is_not_sent_twice() {
        let (answer, sent) = broken_then_answered(false);
        assert!(matches!(answer, Err(CallError::Broken(_))), "{answer:?}");
        assert_eq!(sent, [0]);
        assert!(idempotent("GET") && idempotent("PUT"));
        assert!(!idempotent("POST") && !idempotent("PATCH"));
    }
}
