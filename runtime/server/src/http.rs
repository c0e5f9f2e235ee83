//! hyper at the edges: translating to and from the components' request type, serving a
//! listener, and sending requests as a client.

use apim_components::http::MAX_BODY;
use apim_components::{CallError, Request, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub type Client = HyperClient<HttpConnector, Full<Bytes>>;

/// A client that keeps connections alive and fails fast when nothing listens.
pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.set_nodelay(true);
    HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// `host:port` for a URI, with IPv6 hosts in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sends `req` to `host:port` and reads the whole response.
pub async fn send(
    client: &Client,
    host: &str,
    port: u16,
    req: Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let query = if req.query.is_empty() {
        String::new()
    } else {
        format!("?{}", req.query)
    };
    let uri = format!("http://{}{}{query}", authority(host, port), req.path);
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(&uri);
    for (name, value) in &req.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            builder = builder.header(name, value);
        }
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| CallError::Connect(format!("bad request to {uri}: {e}")))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                CallError::Connect(format!("{uri}: {e}"))
            } else {
                CallError::Broken(format!("{uri}: {e}"))
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| CallError::Broken(format!("{uri}: {e}")))?
            .to_bytes();
        let headers = headers(&parts.headers);
        Ok(Response {
            status: parts.status.as_u16(),
            headers,
            body: body.to_vec(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(CallError::Timeout))
}

/// Header names and values; values that are not text are left out.
fn headers(map: &hyper::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Reads a hyper request into the components' type; bodies over the limit are refused.
async fn read(req: hyper::Request<Incoming>) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            Response::error(
                413,
                "too_large",
                format!("request bodies are limited to {MAX_BODY} bytes"),
            )
        })?
        .to_bytes();
    let headers = headers(&parts.headers);
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body: body.to_vec(),
    })
}

fn write(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(r.status);
    for (n, v) in &r.headers {
        if !matches!(
            n.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            builder = builder.header(n, v);
        }
    }
    builder
        .body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| {
            let mut fallback =
                hyper::Response::new(Full::new(Bytes::from_static(b"{\"error\":\"internal\"}")));
            *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
}

/// Serves `listener` until this future is dropped, which also closes every open connection;
/// every request goes to `handle` with the client's address.
pub async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let handle = Arc::new(handle);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        connections.spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let handle = handle.clone();
                async move {
                    let response = match read(req).await {
                        Ok(req) => handle(req, peer).await,
                        Err(r) => r,
                    };
                    Ok::<_, std::convert::Infallible>(write(response))
                }
            });
            let _ = http1::Builder::new()
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds a listener, saying which address could not be bound.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, String> {
    TcpListener::bind(authority(host, port))
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", authority(host, port)))
}
