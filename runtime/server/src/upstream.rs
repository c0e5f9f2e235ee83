//! Kept-alive HTTP/1.1 connections to upstreams (peers and API backends), on hyper's
//! connection-level client.
//!
//! hyper-util's pooled client spawns a task per request to put a connection back when its
//! response ends; a gateway on one core cannot afford that. Here the response body itself
//! puts the connection back, in the task that reads it, the moment its last byte is read.

use apim_components::CallError;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(apim_topology::timing::CONNECT_TIMEOUT_MS);
const IDLE_TIMEOUT: Duration = Duration::from_millis(apim_topology::timing::UPSTREAM_IDLE_MS);
/// Idle connections kept per upstream; more are closed when their responses end.
const MAX_IDLE: usize = 256;

struct Idle<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// Why a request failed, and the request itself when none of it was sent.
pub struct Failed<B> {
    pub error: CallError,
    pub request: Option<hyper::Request<B>>,
}

/// Idle connections per `host:port`.
type Shelves<B> = Mutex<HashMap<String, Vec<Idle<B>>>>;

/// A set of kept-alive connections, shared by clones; request bodies are of type `B`.
/// With TLS, every connection is made with that client configuration.
pub struct Upstreams<B> {
    idle: Arc<Shelves<B>>,
    tls: Option<TlsConnector>,
    guard: Option<Guard>,
    /// Every request on a connection of its own, closed after it.
    fresh: bool,
}

/// Decides whether a host's resolved address may be connected to (the backends policy):
/// checked on every address a name resolves to, when connecting, so a name that resolves
/// somewhere else later (DNS rebinding) is refused too.
pub type Guard = Arc<dyn Fn(&str, std::net::IpAddr) -> Result<(), String> + Send + Sync>;

impl<B> Clone for Upstreams<B> {
    fn clone(&self) -> Self {
        Upstreams {
            idle: self.idle.clone(),
            tls: self.tls.clone(),
            guard: self.guard.clone(),
            fresh: self.fresh,
        }
    }
}

impl<B> Default for Upstreams<B> {
    fn default() -> Self {
        Upstreams {
            idle: Arc::new(Mutex::new(HashMap::new())),
            tls: None,
            guard: None,
            fresh: false,
        }
    }
}

impl<B> Upstreams<B> {
    /// Connections over TLS with `config`.
    pub fn with_tls(config: Arc<rustls::ClientConfig>) -> Self {
        Upstreams {
            idle: Arc::new(Mutex::new(HashMap::new())),
            tls: Some(TlsConnector::from(config)),
            guard: None,
            fresh: false,
        }
    }

    /// Every request on a new connection, closed after its answer: what a health check needs,
    /// since a kept connection would go on answering for a node no one can connect to any
    /// more (its certificate expired, its listener stopped accepting).
    pub fn fresh(mut self) -> Self {
        self.fresh = true;
        self
    }

    /// Connections only to addresses `guard` allows.
    pub fn guarded(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }
}

impl<B> Upstreams<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Sends `req` (origin-form URI, `Host` set) to `authority` (`host:port`) on an idle
    /// connection, or a new one; a request that an idle connection could not take (closed by
    /// the upstream meanwhile) goes once more on a new connection.
    pub async fn send(
        &self,
        authority: &str,
        req: hyper::Request<B>,
    ) -> Result<hyper::Response<Pooled<B>>, CallError> {
        self.try_send(authority, req).await.map_err(|f| f.error)
    }

    /// As `send`, but a request of which nothing was sent comes back with the error, so that
    /// it can go to another upstream.
    pub async fn try_send(
        &self,
        authority: &str,
        req: hyper::Request<B>,
    ) -> Result<hyper::Response<Pooled<B>>, Failed<B>> {
        let unsent = |error, request| Failed {
            error,
            request: Some(request),
        };
        let kept = if self.fresh {
            None
        } else {
            self.checkout(authority).await
        };
        let (mut sender, reused) = match kept {
            Some(s) => (s, true),
            // Connecting is the rare path: boxed, so every request's future stays small.
            None => {
                match Box::pin(connect(authority, self.tls.as_ref(), self.guard.as_ref())).await {
                    Ok(s) => (s, false),
                    Err(e) => return Err(unsent(e, req)),
                }
            }
        };
        let mut answer = sender.try_send_request(req).await;
        if reused
            && let Err(e) = &mut answer
            && let Some(req) = e.take_message()
        {
            sender =
                match Box::pin(connect(authority, self.tls.as_ref(), self.guard.as_ref())).await {
                    Ok(s) => s,
                    Err(e) => return Err(unsent(e, req)),
                };
            answer = sender.try_send_request(req).await;
        }
        let answer = match answer {
            Ok(r) => r,
            Err(mut e) => {
                let request = e.take_message();
                let error = format!("{authority}: {}", e.into_error());
                return Err(match request {
                    // Closed before a byte of it was written: as if it never connected.
                    Some(req) => unsent(CallError::Connect(error), req),
                    None => Failed {
                        error: CallError::Broken(error),
                        request: None,
                    },
                });
            }
        };
        let (parts, body) = answer.into_parts();
        let mut pooled = Pooled {
            body,
            home: (!self.fresh).then(|| (sender, authority.to_string(), self.idle.clone())),
        };
        if pooled.body.is_end_stream() {
            pooled.release();
        }
        Ok(hyper::Response::from_parts(parts, pooled))
    }

    /// The most recently used idle connection to `authority` that is still open.
    async fn checkout(&self, authority: &str) -> Option<SendRequest<B>> {
        loop {
            let idle = {
                let mut shelves = lock(&self.idle);
                let shelf = shelves.get_mut(authority)?;
                let idle = shelf.pop()?;
                if idle.since.elapsed() >= IDLE_TIMEOUT {
                    // The newest is too old, so all are.
                    shelf.clear();
                    return None;
                }
                idle
            };
            let mut sender = idle.sender;
            // Ready at once unless the connection's own task has not yet seen the end of
            // the last response; an error means the upstream closed it.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }
}

fn lock<B>(shelves: &Shelves<B>) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Idle<B>>>> {
    // Every change is one push or pop, so a poisoned map is still consistent.
    shelves.lock().unwrap_or_else(|p| p.into_inner())
}

/// The host of a `host:port` authority, without IPv6 brackets.
pub fn host_of(authority: &str) -> &str {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

async fn connect<B>(
    authority: &str,
    tls: Option<&TlsConnector>,
    guard: Option<&Guard>,
) -> Result<SendRequest<B>, CallError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let failed = |e: &dyn std::fmt::Display| CallError::Connect(format!("{authority}: {e}"));
    // Connecting and the TLS handshake share one bound: nothing is sent before both are done.
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let stream = match guard {
            None => TcpStream::connect(authority)
                .await
                .map_err(|e| failed(&e))?,
            Some(guard) => connect_allowed(authority, guard).await?,
        };
        let _ = stream.set_nodelay(true);
        match tls {
            None => Ok(Connection::Plain(stream)),
            Some(tls) => {
                let name = crate::tls::server_name(host_of(authority)).map_err(|e| failed(&e))?;
                let stream = tls
                    .connect(name, stream)
                    .await
                    .map_err(|e| failed(&format!("TLS: {e}")))?;
                Ok(Connection::Tls(Box::new(stream)))
            }
        }
    })
    .await
    .map_err(|_| CallError::Connect(format!("{authority}: connection timed out")))??;
    match stream {
        Connection::Plain(s) => spawn_http1(s).await,
        Connection::Tls(s) => spawn_http1(*s).await,
    }
    .map_err(|e| failed(&e))
}

/// Connects to the first address of `authority` that `guard` allows; none allowed is refused
/// before a packet is sent.
async fn connect_allowed(authority: &str, guard: &Guard) -> Result<TcpStream, CallError> {
    let host = host_of(authority);
    let addresses = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| CallError::Connect(format!("{authority}: {e}")))?;
    let mut last = None;
    for a in addresses {
        if let Err(why) = guard(host, a.ip()) {
            last = Some(CallError::Connect(format!(
                "{authority}: refused by the backends policy: {why}"
            )));
            continue;
        }
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(CallError::Connect(format!("{authority}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| CallError::Connect(format!("{authority}: no address"))))
}

enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn spawn_http1<B, S>(stream: S) -> Result<SendRequest<B>, hyper::Error>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the upstream closes it or every sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A response body that puts its connection back among the idle ones once it has been read
/// to the end; dropped before that, the connection is closed.
pub struct Pooled<B> {
    body: Incoming,
    home: Option<(SendRequest<B>, String, Arc<Shelves<B>>)>,
}

impl<B> Pooled<B> {
    fn release(&mut self) {
        let Some((sender, authority, shelves)) = self.home.take() else {
            return;
        };
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut shelves = lock(&shelves);
        let shelf = shelves.entry(authority).or_default();
        // Pushed in time order and taken from the end: the oldest are at the front.
        while shelf
            .first()
            .is_some_and(|i| now.duration_since(i.since) >= IDLE_TIMEOUT)
        {
            shelf.remove(0);
        }
        if shelf.len() < MAX_IDLE {
            shelf.push(Idle { sender, since: now });
        }
    }
}

impl<B> Body for Pooled<B>
where
    B: Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Pooled<B> {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
