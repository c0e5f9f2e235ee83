//! A node: the components it runs, the admin endpoints (`/health`, Prometheus `/metrics`) and
//! the count of what it served.

use crate::gateway::Gateway;
use crate::http::{Request, Response};
use crate::world::{Peer, World};
use crate::{keymanager, publisher, store};
use std::collections::BTreeMap;
use std::sync::Mutex;

pub struct Node {
    pub name: String,
    pub components: Vec<Peer>,
    pub gateway: Gateway,
    /// (component, status) -> requests.
    served: Mutex<BTreeMap<(Peer, u16), u64>>,
}

impl Node {
    pub fn new(name: &str, components: Vec<Peer>) -> Node {
        Node {
            name: name.to_string(),
            components,
            gateway: Gateway::default(),
            served: Mutex::default(),
        }
    }

    pub fn runs(&self, c: Peer) -> bool {
        self.components.contains(&c)
    }

    /// Serves a request that arrived on `component`'s listener.
    pub async fn handle(&self, world: &impl World, component: Peer, req: Request) -> Response {
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
                Peer::Store => store::handle(world, req).await,
                Peer::KeyManager => keymanager::handle(world, req).await,
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

    /// The admin listener: `/health` and `/metrics`.
    pub fn admin(&self, req: &Request) -> Response {
        match req.path.as_str() {
            "/health" => Response::json(
                200,
                &serde_json::json!({ "status": "ok", "node": self.name }),
            ),
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
                text.push_str(&format!("# HELP apim_gateway_routes APIs this node routes.\n# TYPE apim_gateway_routes gauge\napim_gateway_routes{{node=\"{}\"}} {}\n", self.name, self.gateway.routes().len()));
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
                "the admin endpoints are /health and /metrics",
            ),
        }
    }
}
