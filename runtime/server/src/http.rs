//! hyper at the edges: translating to and from the components' request type, serving a
//! listener, and sending requests as a client.

use crate::upstream::Upstreams;
use apim_components::http::{Fields, MAX_BODY, hop_by_hop};
use apim_components::{CallError, Request, Response};
use apim_topology::timing;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub type Client = Upstreams<Full<Bytes>>;
/// A client whose request bodies are streamed from an incoming request, or empty when a
/// bodiless request is sent again.
pub type StreamClient = Upstreams<Streamed>;
/// A streamed request body: the client's own, or none (a bodiless request repeated).
pub type Streamed = Either<Incoming, Empty<Bytes>>;
/// A response body: a whole message, or a stream from a backend.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A client that keeps connections alive and fails fast when nothing listens.
pub fn client() -> Client {
    Upstreams::default()
}

pub fn stream_client() -> StreamClient {
    Upstreams::default()
}

/// A client over TLS with `config`.
pub fn tls_client(config: Arc<rustls::ClientConfig>) -> Client {
    Upstreams::with_tls(config)
}

/// Removes the hop-by-hop headers, which a proxy does not pass on (the framing of a streamed
/// body is hyper's to decide on each hop).
pub fn drop_hop_by_hop(headers: &mut hyper::HeaderMap) {
    HeaderFields(headers).remove_where(hop_by_hop);
}

/// hyper's header map as the components' policies see header fields.
pub struct HeaderFields<'a>(pub &'a mut hyper::HeaderMap);

impl Fields for HeaderFields<'_> {
    fn remove_where(&mut self, drop: impl Fn(&str) -> bool) {
        // Collected first: a map cannot be changed while its keys are read. Most heads have
        // nothing to drop, and an empty Vec allocates nothing.
        let dropped: Vec<hyper::header::HeaderName> = self
            .0
            .keys()
            .filter(|n| drop(n.as_str()))
            .cloned()
            .collect();
        for name in dropped {
            self.0.remove(name);
        }
    }
    fn rewrite(&mut self, name: &str, keep: impl Fn(&str) -> Option<String>) {
        if !self.0.contains_key(name) {
            return;
        }
        let kept: Vec<HeaderValue> = self
            .0
            .get_all(name)
            .iter()
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
            .filter_map(keep)
            .filter_map(|v| HeaderValue::try_from(v).ok())
            .collect();
        let Ok(name) = hyper::header::HeaderName::try_from(name) else {
            return;
        };
        self.0.remove(&name);
        for v in kept {
            self.0.append(name.clone(), v);
        }
    }
}

/// Sends a client's request to `authority` (`host:port`) for `target` (path and query), its
/// body streamed; answers with the backend's response, its body still streaming. Moves bytes
/// only: the head is as the caller made it (the gateway's `to_backend`), with the backend's
/// `Host`; when it broke before any answer it goes once more if `resend` (the gateway's
/// `resend_once`, for a bodiless request).
pub async fn send_stream(
    client: &StreamClient,
    authority: &str,
    target: String,
    parts: hyper::http::request::Parts,
    resend: bool,
    body: Incoming,
    timeout: Duration,
) -> Result<hyper::Response<Body>, CallError> {
    let bad =
        |e: &dyn std::fmt::Display| CallError::Connect(format!("bad request to {authority}: {e}"));
    let mut headers = parts.headers;
    headers.insert(
        hyper::header::HOST,
        HeaderValue::try_from(authority).map_err(|e| bad(&e))?,
    );
    let uri = hyper::Uri::try_from(target).map_err(|e| bad(&e))?;
    let again = (resend && body.is_end_stream()).then(|| {
        let mut head = hyper::Request::new(Either::Right(Empty::new()));
        *head.method_mut() = parts.method.clone();
        *head.uri_mut() = uri.clone();
        *head.headers_mut() = headers.clone();
        head
    });
    let mut request = hyper::Request::new(Either::Left(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let sent = async {
        match client.try_send(authority, request).await {
            Err(failed) if matches!(failed.error, CallError::Broken(_)) => match again {
                Some(head) => client.try_send(authority, head).await,
                None => Err(failed),
            },
            answer => answer,
        }
    };
    let response = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(failed)) => {
            // Nothing reached the backend: the client's body is read and dropped, so the
            // client gets the 502 instead of a reset.
            if let Some(Either::Left(unsent)) = failed.request.map(hyper::Request::into_body) {
                linger(unsent);
            }
            return Err(failed.error);
        }
        Err(_) => return Err(CallError::Timeout),
    };
    let (parts, body) = response.into_parts();
    Ok(hyper::Response::from_parts(parts, body.boxed()))
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
    let authority = authority(host, port);
    let target = format!("{}{query}", req.path);
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(&target)
        .header(hyper::header::HOST, &authority);
    for (name, value) in &req.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            builder = builder.header(name, value);
        }
    }
    let uri = format!("http://{authority}{target}");
    let request = builder
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| CallError::Connect(format!("bad request to {uri}: {e}")))?;
    let exchange = async {
        let response = client.send(&authority, request).await?;
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

/// Header names and values; a value that is not text is read with replacement characters
/// (a streamed request still carries its original bytes).
fn headers(map: &hyper::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| {
            let value = match v.to_str() {
                Ok(text) => text.to_string(),
                Err(_) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            };
            (n.as_str().to_string(), value)
        })
        .collect()
}

/// Reads a whole body, however large (for tests and tools; servers use `read`'s limit).
pub async fn read_all(body: Incoming) -> Result<Bytes, hyper::Error> {
    Ok(body.collect().await?.to_bytes())
}

/// How long a part of a request body may take to arrive, and the whole body (at most 1 MiB).
pub const BODY_IDLE: Duration = Duration::from_millis(timing::BODY_IDLE_MS);
pub const BODY_TOTAL: Duration = Duration::from_millis(timing::BODY_TOTAL_MS);

/// Reads a hyper request into the components' type. A body over the limit is refused with
/// 413; what is left of it is read and dropped (`linger`), so the client gets the answer
/// instead of a reset connection.
pub async fn read(req: hyper::Request<Incoming>) -> Result<Request, Response> {
    let (parts, mut body) = req.into_parts();
    let too_large = || {
        Response::error(
            413,
            "too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        )
    };
    let declared = body.size_hint().exact().unwrap_or(0);
    if declared > MAX_BODY as u64 {
        linger(body);
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    let started = tokio::time::Instant::now();
    let slow = || {
        Response::error(
            408,
            "request_timeout",
            format!(
                "the body came too slowly: every part must arrive within {} s, the whole within {} s",
                BODY_IDLE.as_secs(),
                BODY_TOTAL.as_secs()
            ),
        )
    };
    loop {
        let deadline = (started + BODY_TOTAL).min(tokio::time::Instant::now() + BODY_IDLE);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => return Err(slow()),
        };
        let frame = frame.map_err(|e| {
            Response::error(
                400,
                "invalid_request",
                format!("the body could not be read: {e}"),
            )
        })?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > MAX_BODY {
                linger(body);
                return Err(too_large());
            }
            bytes.extend_from_slice(data);
        }
    }
    let headers = headers(&parts.headers);
    Ok(Request {
        client: None,
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body: bytes,
    })
}

/// A components' response as a hyper one.
pub fn write(r: Response) -> hyper::Response<Body> {
    let mut builder = hyper::Response::builder().status(r.status);
    for (n, v) in &r.headers {
        if !matches!(
            n.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            builder = builder.header(n, v);
        }
    }
    let whole = |b: Bytes| Full::new(b).map_err(|never| match never {}).boxed();
    builder
        .body(whole(Bytes::from(r.body)))
        .unwrap_or_else(|_| {
            let mut fallback =
                hyper::Response::new(whole(Bytes::from_static(b"{\"error\":\"internal\"}")));
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
    serve_raw(listener, move |req, peer| {
        let handle = handle.clone();
        async move {
            match read(req).await {
                Ok(req) => write(handle(req, peer).await),
                Err(r) => write(r),
            }
        }
    })
    .await
}

pub const HEAD_TIMEOUT: Duration = Duration::from_millis(timing::HEAD_TIMEOUT_MS);

/// Serves `listener` with a handler of hyper requests, for handlers that stream bodies.
pub async fn serve_raw<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    serve_raw_within(listener, HEAD_TIMEOUT, handle).await
}

/// `serve_raw`, with the time a request's head (or the next one) may take.
pub async fn serve_raw_within<F, Fut>(listener: TcpListener, head_timeout: Duration, handle: F)
where
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let options = Serving {
        head_timeout,
        tls: None,
        on_refused: None,
        gate: Arc::new(Gate::new(MAX_CONNECTIONS, None)),
        stop: None,
        closing: None,
    };
    serve_connections(listener, options, move |req, caller: &Caller| {
        handle(req, caller.addr)
    })
    .await
}

/// Where a request comes from, for limits per address: the last address in
/// `X-Forwarded-For` when `vouched` (the connection is a balancer of the deployment, or a node
/// on the internal listener: their certificates say so), else the connection's own. A header
/// any client can write is never believed from a client.
pub fn origin(caller: &Caller, forwarded_for: Option<&str>, vouched: bool) -> String {
    let forwarded = forwarded_for
        .filter(|_| vouched)
        .and_then(|chain| chain.rsplit(',').next())
        .and_then(|last| last.trim().parse::<std::net::IpAddr>().ok());
    forwarded.unwrap_or(caller.addr.ip()).to_string()
}

/// Who sent a request: the address, and on a listener that asks for client certificates the
/// SPIFFE ID the client's certificate proved.
#[derive(Clone, Debug)]
pub struct Caller {
    pub addr: SocketAddr,
    pub identity: Option<Arc<str>>,
}

/// How a listener serves its connections.
#[derive(Clone)]
pub struct Serving {
    pub head_timeout: Duration,
    /// TLS on every connection: the handshake must end within `HANDSHAKE_TIMEOUT`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Called for every connection whose TLS handshake failed (counted in `/metrics`).
    pub on_refused: Option<Arc<dyn Fn() + Send + Sync>>,
    /// How many connections the listener holds open at once.
    pub gate: Arc<Gate>,
    /// When this turns true the listener accepts nothing more, asks each connection to close
    /// once it has answered what it is answering, and returns when they have.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// While this answers true (a draining node), every answer asks its connection to close
    /// (`Connection: close`): no client is left holding a kept-alive connection that the stop
    /// would close under a request it is sending, which a write could not be sent again after.
    pub closing: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Serving {
    pub fn tls(config: Arc<rustls::ServerConfig>) -> Serving {
        Serving {
            head_timeout: HEAD_TIMEOUT,
            tls: Some(tokio_rustls::TlsAcceptor::from(config)),
            on_refused: None,
            gate: Arc::new(Gate::new(MAX_CONNECTIONS, None)),
            stop: None,
            closing: None,
        }
    }

    /// The same, with its own gate (`Gate::new`).
    pub fn gated(mut self, gate: Gate) -> Serving {
        self.gate = Arc::new(gate);
        self
    }
}

/// Connections a listener holds at once; past it, a new connection is closed at once, so the
/// process keeps descriptors for its other listeners and the connections it has.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections one client address may hold on a balancer's public listener.
pub const MAX_PER_ADDRESS: usize = 256;
/// Connections one address may have in their TLS handshake at once, on every TLS listener;
/// past it, that address's oldest one is closed. A client finishes its handshake in
/// milliseconds; silent connections must not hold a listener while they wait out the
/// handshake time-out, and when a listener is full the oldest connection still in its
/// handshake makes room for a new one, so a flood of them never shuts out a new client.
pub const HANDSHAKING_PER_ADDRESS: usize = 256;

/// A listener's connection limits and counts.
pub struct Gate {
    pub max: usize,
    /// A limit per client address (for listeners that face clients directly, not balancers).
    pub per_address: Option<usize>,
    open: std::sync::atomic::AtomicUsize,
    by_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    handshaking: std::sync::Mutex<Handshakes>,
    refused: std::sync::atomic::AtomicU64,
}

impl Gate {
    pub fn new(max: usize, per_address: Option<usize>) -> Gate {
        Gate {
            max,
            per_address,
            open: Default::default(),
            by_address: Default::default(),
            handshaking: Default::default(),
            refused: Default::default(),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections closed at once for being over a limit.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A pass for a new connection from `ip`, or `None` when a limit is reached.
    fn enter(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Pass> {
        use std::sync::atomic::Ordering::Relaxed;
        let refuse = || {
            self.refused.fetch_add(1, Relaxed);
            None
        };
        // Full: the oldest connection still in its TLS handshake gives its place up.
        if self.open.fetch_add(1, Relaxed) >= self.max && !self.evict(None) {
            self.open.fetch_sub(1, Relaxed);
            return refuse();
        }
        if let Some(limit) = self.per_address {
            let mut by = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
            let n = by.entry(ip).or_default();
            if *n >= limit {
                drop(by);
                self.open.fetch_sub(1, Relaxed);
                return refuse();
            }
            *n += 1;
        }
        Some(Pass {
            gate: self.clone(),
            ip,
        })
    }
}

/// The connections of a listener in their TLS handshake, oldest first.
#[derive(Default)]
struct Handshakes {
    next: u64,
    by_age: std::collections::BTreeMap<u64, (std::net::IpAddr, Arc<tokio::sync::Notify>)>,
    per_address: std::collections::HashMap<std::net::IpAddr, usize>,
}

impl Handshakes {
    fn remove(&mut self, id: u64) -> Option<Arc<tokio::sync::Notify>> {
        let (ip, evicted) = self.by_age.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
        Some(evicted)
    }
}

impl Gate {
    fn handshakes(&self) -> std::sync::MutexGuard<'_, Handshakes> {
        self.handshaking.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the oldest connection in its handshake (of `ip`, or of anyone); false when
    /// there is none.
    fn evict(&self, ip: Option<std::net::IpAddr>) -> bool {
        let mut h = self.handshakes();
        let oldest = h
            .by_age
            .iter()
            .find(|(_, (from, _))| ip.is_none_or(|ip| ip == *from))
            .map(|(id, _)| *id);
        let Some(evicted) = oldest.and_then(|id| h.remove(id)) else {
            return false;
        };
        drop(h);
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        evicted.notify_one();
        true
    }

    /// A place among the connections in their TLS handshake; an address over
    /// `HANDSHAKING_PER_ADDRESS` gives up its oldest.
    fn handshake(self: &Arc<Self>, ip: std::net::IpAddr) -> Handshaking {
        let over = self
            .handshakes()
            .per_address
            .get(&ip)
            .is_some_and(|n| *n >= HANDSHAKING_PER_ADDRESS);
        if over {
            self.evict(Some(ip));
        }
        let evicted = Arc::new(tokio::sync::Notify::new());
        let mut h = self.handshakes();
        let id = h.next;
        h.next += 1;
        h.by_age.insert(id, (ip, evicted.clone()));
        *h.per_address.entry(ip).or_default() += 1;
        Handshaking {
            gate: self.clone(),
            id,
            evicted,
        }
    }
}

/// A connection's place among those in their handshake, given back when it ends.
struct Handshaking {
    gate: Arc<Gate>,
    id: u64,
    /// Told when the connection must give its place up.
    evicted: Arc<tokio::sync::Notify>,
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.gate.handshakes().remove(self.id);
    }
}

/// A connection's place under its listener's limits, given back when it closes.
struct Pass {
    gate: Arc<Gate>,
    ip: std::net::IpAddr,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if self.gate.per_address.is_some() {
            let mut by = self
                .gate
                .by_address
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = by.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    by.remove(&self.ip);
                }
            }
        }
    }
}

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(timing::HANDSHAKE_TIMEOUT_MS);

/// Serves whole messages over TLS (see `serve`), with the caller's identity.
pub async fn serve_tls<F, Fut>(listener: TcpListener, options: Serving, handle: F)
where
    F: Fn(Request, Caller) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let handle = Arc::new(handle);
    serve_connections(listener, options, move |req, caller: &Caller| {
        let (handle, caller) = (handle.clone(), caller.clone());
        async move {
            match read(req).await {
                Ok(mut req) => {
                    if req.client.is_none() {
                        req.client = Some(caller.addr.ip().to_string());
                    }
                    write(handle(req, caller).await)
                }
                Err(r) => write(r),
            }
        }
    })
    .await
}

/// Serves `listener` as `options` say, every request to `handle` with its caller.
pub async fn serve_connections<F, Fut>(listener: TcpListener, options: Serving, handle: F)
where
    F: Fn(hyper::Request<Incoming>, &Caller) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let handle = Arc::new(handle);
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = options.stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = stopped(&mut stop) => break,
        };
        let Ok((stream, addr)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Over a limit: closed at once, before any TLS work is spent on it.
        let Some(pass) = options.gate.enter(addr.ip()) else {
            drop(stream);
            refused_connection(addr, "over the listener's connection limits");
            continue;
        };
        let handshaking = options
            .tls
            .as_ref()
            .map(|_| options.gate.handshake(addr.ip()));
        let _ = stream.set_nodelay(true);
        let (handle, options) = (handle.clone(), options.clone());
        connections.spawn(async move {
            let _pass = pass;
            let Some(tls) = &options.tls else {
                let caller = Caller {
                    addr,
                    identity: None,
                };
                serve_one(stream, caller, &options, handle).await;
                return;
            };
            let evicted = handshaking.as_ref().map(|h| h.evicted.clone());
            let accepted = tokio::select! {
                a = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)) => a,
                () = async {
                    match &evicted {
                        Some(e) => e.notified().await,
                        None => std::future::pending().await,
                    }
                } => {
                    refused_connection(addr, "still in its TLS handshake when a newer connection needed its place");
                    return;
                }
            };
            let stream = match accepted {
                Ok(Ok(s)) => s,
                failed => {
                    if let Some(refused) = &options.on_refused {
                        refused();
                    }
                    let why = match failed {
                        Err(_) => "no TLS handshake within the time-out",
                        _ => "the TLS handshake failed",
                    };
                    refused_connection(addr, why);
                    return;
                }
            };
            drop(handshaking);
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| apim_pki::spiffe_id(c))
                .map(Arc::from);
            let caller = Caller { addr, identity };
            serve_one(stream, caller, &options, handle).await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Logs a connection closed before it was served (a security event, rate-limited).
fn refused_connection(addr: SocketAddr, why: &str) {
    apim_components::security::event(
        "connection_refused",
        &[("address", &addr.ip().to_string()), ("reason", why)],
    );
}

/// Waits for every listener task to end (a stopped listener ends once what it was serving
/// has finished), at most `grace`; answers whether all of them did.
pub async fn finish(listeners: &mut tokio::task::JoinSet<()>, grace: std::time::Duration) -> bool {
    tokio::time::timeout(grace, async {
        while listeners.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}

/// Completes when `stop` turns true; never without a stop, or once its sender is gone (the
/// listener is then dropped with its owner).
async fn stopped(stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(rx) = stop
        && rx.wait_for(|s| *s).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

async fn serve_one<S, F, Fut>(stream: S, caller: Caller, options: &Serving, handle: Arc<F>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<Incoming>, &Caller) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let closing = options.closing.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let close = closing.as_ref().is_some_and(|c| c());
        let answer = handle(req, &caller);
        async move {
            let mut r = answer.await;
            if close {
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.head_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut stop = options.stop.clone();
    tokio::select! {
        _ = connection.as_mut() => return,
        () = stopped(&mut stop) => {}
    }
    // Closes at once when idle, else after the response it is writing.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// How much of a refused request's body is read and dropped, and for how long, before its
/// connection is closed instead.
const LINGER_BYTES: usize = 16 << 20;
const LINGER: Duration = Duration::from_millis(timing::LINGER_MS);

/// Reads and drops what is left of the body of a request answered without it, within bounds:
/// closing a connection with unread bytes resets it, and the client (or a balancer in front)
/// would then see a broken connection instead of the answer.
pub fn linger(body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0;
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len());
                if read > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// Binds a listener, saying which address could not be bound.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, String> {
    TcpListener::bind(authority(host, port))
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", authority(host, port)))
}
