//! A node: the components it runs, the admin endpoints (`/health` for liveness, `/ready` for
//! readiness, Prometheus `/metrics`) and the count of what it served.

use crate::gateway::Gateway;
use crate::http::{Request, Response};
use crate::world::{Peer, Storage, World};
use crate::{keymanager, publisher, store};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Node {
    pub name: String,
    pub components: Vec<Peer>,
    pub gateway: Gateway,
    /// The internal listener's endpoints and who may call each.
    internal: Vec<InternalRoute>,
    /// (component, status) -> requests.
    served: Mutex<BTreeMap<(Peer, u16), u64>>,
    /// (endpoint, why) -> calls refused on the internal listener.
    refused: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Stopping: not ready any more, finishing what it is answering.
    draining: AtomicBool,
    /// Sign-ups and token issuance per address and client.
    pub limits: crate::limits::Limits,
    /// A key manager's reads of the revocations, shared by the gateways' catch-ups.
    pub feed: crate::feed::Feed,
}

/// One endpoint of the internal listener: `METHOD /path`, the component serving it, and the
/// identities (SPIFFE IDs) admitted to call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalRoute {
    pub endpoint: String,
    pub component: Peer,
    pub callers: Vec<String>,
}

impl Node {
    pub fn new(name: &str, components: Vec<Peer>) -> Node {
        Node::with_internal(name, components, Vec::new())
    }

    /// The node a plan describes: its public listeners' components, and its internal
    /// endpoints as (endpoint, component, callers admitted).
    pub fn of_plan<'a>(
        name: &str,
        components: impl IntoIterator<Item = Peer>,
        internal: impl IntoIterator<Item = (&'a str, Peer, &'a [String])>,
    ) -> Node {
        let internal = internal
            .into_iter()
            .map(|(endpoint, component, callers)| InternalRoute {
                endpoint: endpoint.to_string(),
                component,
                callers: callers.to_vec(),
            })
            .collect();
        Node::with_internal(name, components.into_iter().collect(), internal)
    }

    pub fn with_internal(name: &str, components: Vec<Peer>, internal: Vec<InternalRoute>) -> Node {
        Node {
            name: name.to_string(),
            components,
            gateway: Gateway::default(),
            internal,
            served: Mutex::default(),
            refused: Mutex::default(),
            draining: AtomicBool::new(false),
            limits: crate::limits::Limits::default(),
            feed: Default::default(),
        }
    }

    /// Serves a request that arrived on the internal listener from `caller`, the identity its
    /// client certificate proved (none: no certificate). Only the endpoints the flows table
    /// gives this node, and only for the callers it names.
    pub async fn internal(
        &self,
        world: &impl World,
        caller: Option<&str>,
        req: Request,
    ) -> Response {
        let endpoint = format!("{} {}", req.method, req.path);
        let Some(route) = self.internal.iter().find(|r| r.endpoint == endpoint) else {
            self.refuse(&endpoint, "unknown");
            return Response::error(
                404,
                "not_found",
                format!("node {} has no internal endpoint `{endpoint}`", self.name),
            );
        };
        let admitted = caller.is_some_and(|c| route.callers.iter().any(|a| a == c))
            || (caller.is_some() && world.defects().has(crate::defects::Defect::InternalOpen));
        if !admitted {
            self.refuse(&endpoint, "caller");
            return Response::error(
                403,
                "forbidden",
                format!(
                    "`{endpoint}` on node {} admits only the nodes the flows table names; {} is not one",
                    self.name,
                    caller.unwrap_or("a caller without a certificate")
                ),
            );
        }
        self.serve(world, route.component, req).await
    }

    /// Deletes what has ended: the sessions a portal node handed out, the tokens a key manager
    /// issued. Run every `PURGE_MS`; answers (sessions, tokens) deleted.
    pub async fn purge(&self, world: &impl World) -> (u64, u64) {
        let now = world.now_ms();
        let storage = world.storage();
        let sessions = if self.runs(Peer::Publisher) || self.runs(Peer::Store) {
            // Failure counts whose window ended go with the sessions.
            let _ = storage
                .purge_failures(now, apim_topology::timing::FAILURE_WINDOW_MS)
                .await;
            storage.purge_sessions(now).await.unwrap_or(0)
        } else {
            0
        };
        let tokens = if self.runs(Peer::KeyManager) {
            storage.purge_tokens(now).await.unwrap_or(0)
        } else {
            0
        };
        (sessions, tokens)
    }

    /// Counts a connection to the internal listener refused in its TLS handshake (no
    /// certificate, or one from another CA).
    pub fn handshake_refused(&self) {
        self.refuse("handshake", "certificate");
    }

    fn refuse(&self, endpoint: &str, why: &'static str) {
        crate::security::event(
            "internal_refused",
            &[
                ("node", &self.name),
                ("endpoint", endpoint),
                ("reason", why),
            ],
        );
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        // Unknown endpoints are counted under one key: a scanner must not grow the map.
        let key = if why == "unknown" { "other" } else { endpoint };
        *refused.entry((key.to_string(), why)).or_default() += 1;
    }

    pub fn runs(&self, c: Peer) -> bool {
        self.components.contains(&c)
    }

    /// Serves a request that arrived on `component`'s public listener.
    pub async fn handle(&self, world: &impl World, component: Peer, req: Request) -> Response {
        if req.path.starts_with(crate::wire::INTERNAL_PREFIX) {
            let r = Response::error(
                404,
                "not_found",
                "internal endpoints are served only on the node's internal listener",
            );
            self.count(component, r.status);
            return r;
        }
        self.serve(world, component, req).await
    }

    async fn serve(&self, world: &impl World, component: Peer, req: Request) -> Response {
        let response = if !self.runs(component) {
            Response::error(
                404,
                "not_found",
                format!("node {} does not run the {component:?}", self.name),
            )
        } else if req.body.len() > crate::http::MAX_BODY {
            Response::error(
                413,
                "too_large",
                format!(
                    "request bodies are limited to {} bytes",
                    crate::http::MAX_BODY
                ),
            )
        } else {
            match component {
                Peer::Publisher => publisher::handle(world, req).await,
                Peer::Store => store::handle(world, &self.limits, req).await,
                Peer::KeyManager => keymanager::handle(world, &self.limits, &self.feed, req).await,
                Peer::Gateway => self.gateway.handle(world, req).await,
            }
        };
        self.count(component, response.status);
        response
    }

    /// Counts a request served outside `handle` (the real world's streamed API calls).
    pub fn count(&self, component: Peer, status: u16) {
        *self
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((component, status))
            .or_default() += 1;
    }

    /// The node is stopping: it reports unready from now on, so balancers stop sending it new
    /// requests while it finishes the ones it has.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether balancers should send this node requests, and if not, why. A node is unready
    /// while it drains, while its gateway has not read the registry since it started, and when
    /// it can serve nothing at all (every database it uses down and no gateway cache to answer
    /// from); a gateway answering from its cache during an outage stays ready.
    pub fn readiness(&self, world: &impl World) -> Result<(), String> {
        if self.draining() {
            return Err("draining: finishing the requests it has before it stops".into());
        }
        if self.runs(Peer::Gateway) {
            if !self.gateway.caught_up() {
                return Err(
                    "the gateway has not read the published APIs from the registry yet".into(),
                );
            }
            return Ok(());
        }
        let databases = world.storage().breakers();
        if !databases.is_empty() && databases.iter().all(|(_, down)| *down) {
            let names: Vec<&str> = databases.iter().map(|(r, _)| *r).collect();
            return Err(format!(
                "every database it uses is down ({})",
                names.join(", ")
            ));
        }
        Ok(())
    }

    /// The admin listener: `/health` (the process answers), `/ready` (it should get traffic)
    /// and `/metrics`.
    pub fn admin(&self, world: &impl World, req: &Request) -> Response {
        match req.path.as_str() {
            "/health" => Response::json(
                200,
                &serde_json::json!({ "status": "ok", "node": self.name }),
            ),
            "/ready" => match self.readiness(world) {
                Ok(()) => Response::json(
                    200,
                    &serde_json::json!({ "status": "ready", "node": self.name }),
                ),
                Err(why) => Response::json(
                    503,
                    &serde_json::json!({ "status": "unready", "node": self.name, "why": why }),
                ),
            },
            "/metrics" => {
                let mut text = String::from(
                    "# HELP apim_requests_total Requests served, by component and status.\n# TYPE apim_requests_total counter\n",
                );
                for ((c, status), n) in self.served.lock().unwrap_or_else(|p| p.into_inner()).iter()
                {
                    let c = serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    text.push_str(&format!("apim_requests_total{{node=\"{}\",component=\"{c}\",status=\"{status}\"}} {n}\n", self.name));
                }
                text.push_str("# HELP apim_internal_refused_total Calls the internal listener refused, by endpoint and reason.\n# TYPE apim_internal_refused_total counter\n");
                for ((endpoint, why), n) in self
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                {
                    text.push_str(&format!(
                        "apim_internal_refused_total{{node=\"{}\",endpoint=\"{endpoint}\",reason=\"{why}\"}} {n}\n",
                        self.name
                    ));
                }
                text.push_str(&format!("# HELP apim_gateway_routes APIs this node routes.\n# TYPE apim_gateway_routes gauge\napim_gateway_routes{{node=\"{}\"}} {}\n", self.name, self.gateway.routes().len()));
                text.push_str("# HELP apim_database_down Whether a database's circuit breaker is open: requests that need it fail at once.\n# TYPE apim_database_down gauge\n");
                for (role, down) in world.storage().breakers() {
                    text.push_str(&format!(
                        "apim_database_down{{node=\"{}\",role=\"{role}\"}} {}\n",
                        self.name,
                        u8::from(down)
                    ));
                }
                text.push_str(&format!("# HELP apim_node_ready Whether the node reports ready (/ready).\n# TYPE apim_node_ready gauge\napim_node_ready{{node=\"{}\"}} {}\n", self.name, u8::from(self.readiness(world).is_ok())));
                text.push_str(&format!("# HELP apim_gateway_cached_tokens Token validations this node has cached.\n# TYPE apim_gateway_cached_tokens gauge\napim_gateway_cached_tokens{{node=\"{}\"}} {}\n", self.name, self.gateway.cached_tokens()));
                Response {
                    status: 200,
                    headers: vec![("content-type".into(), "text/plain; version=0.0.4".into())],
                    body: text.into_bytes(),
                }
            }
            _ => Response::error(
                404,
                "not_found",
                "the admin endpoints are /health, /ready and /metrics",
            ),
        }
    }
}
