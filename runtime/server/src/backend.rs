//! The echo backend the drill gives its APIs: it answers with what it got after a latency, and
//! breaks a share of its requests before any answer — it closes the connection the request came
//! on, as a backend does with a kept-alive connection it timed out — like the simulated one.

use crate::http;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the echo backend behaves, and what it was asked.
pub struct Echo {
    /// The time it takes over each answer.
    pub latency: Box<dyn Fn() -> Duration + Send + Sync>,
    /// Whether the next request breaks.
    pub breaks: Box<dyn Fn() -> bool + Send + Sync>,
    /// Requests by `2 * read + broken` (a read: an idempotent method).
    asked: [AtomicU64; 4],
}

/// What the backend was asked: reads and writes, and how many of each it broke.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub reads: u64,
    pub reads_broken: u64,
    pub writes: u64,
    pub writes_broken: u64,
}

impl Echo {
    pub fn new(
        latency: impl Fn() -> Duration + Send + Sync + 'static,
        breaks: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Echo {
        Echo {
            latency: Box::new(latency),
            breaks: Box::new(breaks),
            asked: Default::default(),
        }
    }

    pub fn asked(&self) -> Asked {
        let n = |i: usize| self.asked[i].load(Ordering::Relaxed);
        Asked {
            reads: n(2) + n(3),
            reads_broken: n(3),
            writes: n(0) + n(1),
            writes_broken: n(1),
        }
    }
}

/// The error that makes hyper close a connection without an answer.
#[derive(Debug)]
struct Broke;

impl std::fmt::Display for Broke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the echo backend broke this request on purpose")
    }
}

impl std::error::Error for Broke {}

/// Serves `listener` forever (plain HTTP/1.1: the drill's backend is on its private bridge).
pub async fn serve(listener: TcpListener, echo: Arc<Echo>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let echo = echo.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let echo = echo.clone();
                async move {
                    let read = apim_components::balancer::idempotent(req.method().as_str());
                    let broken = (echo.breaks)();
                    echo.asked[2 * usize::from(read) + usize::from(broken)]
                        .fetch_add(1, Ordering::Relaxed);
                    if broken {
                        return Err(Broke);
                    }
                    tokio::time::sleep((echo.latency)()).await;
                    let answer = match http::read(req).await {
                        Ok(req) => crate::up::echo(req).await,
                        Err(refused) => refused,
                    };
                    Ok(http::write(answer))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
