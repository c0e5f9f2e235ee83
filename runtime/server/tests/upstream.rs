//! The upstream connection pool against a real local server: connections are reused, and
//! replaced when the upstream closed them or a response was not read to its end.

use apim_components::CallError;
use apim_runtime::http;
use apim_runtime::upstream::Upstreams;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;

/// A server on a free loopback port answering `size` bytes; counts the connections it
/// accepted. With `keep_alive` off it closes each connection after one response.
async fn upstream(size: usize, keep_alive: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let authority = listener.local_addr().expect("address").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        vec![b'x'; size],
                    ))))
                });
                let _ = http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (authority, accepted)
}

fn get(authority: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .uri("/x")
        .header("host", authority)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

async fn read(client: &Upstreams<Full<Bytes>>, authority: &str) -> usize {
    let response = client.send(authority, get(authority)).await.expect("sent");
    let body = response.into_body().collect().await.expect("body");
    body.to_bytes().len()
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (authority, accepted) = upstream(1024, true).await;
    let client = http::client();
    for _ in 0..20 {
        assert_eq!(read(&client, &authority).await, 1024);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A health check's client: every request on a connection of its own, even where the upstream
/// would keep it — a kept connection would go on passing checks for a node that no new client
/// can reach (its certificate expired, its listener gone).
#[tokio::test]
async fn a_fresh_client_opens_a_connection_for_every_request() {
    let (authority, accepted) = upstream(16, true).await;
    let client = http::client().fresh();
    for _ in 0..5 {
        assert_eq!(read(&client, &authority).await, 16);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_reuse_them() {
    let (authority, accepted) = upstream(64, true).await;
    let client = http::client();
    for _ in 0..5 {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, authority) = (client.clone(), authority.clone());
            calls.spawn(async move { read(&client, &authority).await });
        }
        while let Some(size) = calls.join_next().await {
            assert_eq!(size.expect("call"), 64);
        }
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&opened),
        "40 requests, 8 at a time, opened {opened} connections"
    );
}

#[tokio::test]
async fn an_upstream_that_closes_every_connection_is_still_answered() {
    let (authority, accepted) = upstream(16, false).await;
    let client = http::client();
    for _ in 0..10 {
        assert_eq!(read(&client, &authority).await, 16);
        // Let the close reach the pool's connection before the next request.
        tokio::task::yield_now().await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_response_dropped_before_its_end_costs_its_connection_not_the_next_answer() {
    let (authority, accepted) = upstream(256 * 1024, true).await;
    let client = http::client();
    let response = client
        .send(&authority, get(&authority))
        .await
        .expect("sent");
    drop(response);
    assert_eq!(read(&client, &authority).await, 256 * 1024);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Read to its end, the second connection is kept and reused.
    assert_eq!(read(&client, &authority).await, 256 * 1024);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let authority = listener.local_addr().expect("address").to_string();
    drop(listener);
    let client = http::client();
    match client.send(&authority, get(&authority)).await {
        Err(CallError::Connect(m)) => assert!(m.contains(&authority), "{m}"),
        Err(e) => panic!("expected a connect error, got {e}"),
        Ok(_) => panic!("expected a connect error, got an answer"),
    }
}

/// A backend that takes a request and closes without an answer when told to (a kept-alive
/// connection it closed as the request went out), and a front that streams requests to it as a
/// gateway does (`http::send_stream`): a GET broken that way is sent once more and answered; a
/// POST is not sent twice.
#[tokio::test]
async fn a_read_broken_on_its_way_to_the_backend_goes_once_more_a_write_does_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend_at = backend.local_addr().expect("address").to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let hang_ups = Arc::new(AtomicUsize::new(0));
    let (seen, hang) = (requests.clone(), hang_ups.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = backend.accept().await {
            let (seen, hang) = (seen.clone(), hang.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    let told =
                        hang.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| h.checked_sub(1));
                    if told.is_ok() {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let front_at = front(backend_at).await;
    let client: Upstreams<Full<Bytes>> = Upstreams::default();
    hang_ups.store(1, Ordering::SeqCst);
    let r = client
        .send(&front_at, get(&front_at))
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(requests.load(Ordering::SeqCst), 2, "the GET, twice");
    hang_ups.store(1, Ordering::SeqCst);
    let post = hyper::Request::builder()
        .method("POST")
        .uri("/x")
        .header("host", &front_at)
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .expect("request");
    let r = client.send(&front_at, post).await.expect("answer");
    assert_eq!(r.status(), 502);
    assert_eq!(requests.load(Ordering::SeqCst), 3, "the POST, once");
}

/// A front that streams each request to `backend_at` as a gateway does (`http::send_stream`,
/// with the gateway's `resend_once`), answering with the backend's status or 502; its address.
async fn front(backend_at: String) -> String {
    let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front_at = front.local_addr().expect("address").to_string();
    let streams = http::stream_client();
    tokio::spawn(async move {
        while let Ok((stream, _)) = front.accept().await {
            let (streams, backend_at) = (streams.clone(), backend_at.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (streams, backend_at) = (streams.clone(), backend_at.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let resend = apim_components::gateway::resend_once(
                            parts.method.as_str(),
                            hyper::body::Body::is_end_stream(&body),
                        );
                        let answer = http::send_stream(
                            &streams,
                            &backend_at,
                            "/x".into(),
                            parts,
                            resend,
                            body,
                            std::time::Duration::from_secs(5),
                        )
                        .await;
                        let status = answer.map_or(502, |r| r.status().as_u16());
                        let mut r = hyper::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::from_u16(status)
                            .unwrap_or(hyper::StatusCode::BAD_GATEWAY);
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    front_at
}

/// The drill's echo backend breaking every request closes each connection without an answer:
/// to a gateway, a GET is then asked twice and a POST once, as in the simulator.
#[tokio::test]
async fn the_drills_echo_backend_breaks_requests_as_the_simulated_one_does() {
    use apim_runtime::backend::{Asked, Echo};
    let backend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend_at = backend.local_addr().expect("address").to_string();
    let echo = Arc::new(Echo::new(|| std::time::Duration::ZERO, || true));
    tokio::spawn(apim_runtime::backend::serve(backend, echo.clone()));
    let front_at = front(backend_at).await;
    let client: Upstreams<Full<Bytes>> = Upstreams::default();
    let r = client
        .send(&front_at, get(&front_at))
        .await
        .expect("answer");
    assert_eq!(r.status(), 502);
    let post = hyper::Request::builder()
        .method("POST")
        .uri("/x")
        .header("host", &front_at)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let r = client.send(&front_at, post).await.expect("answer");
    assert_eq!(r.status(), 502);
    assert_eq!(
        echo.asked(),
        Asked {
            reads: 2,
            reads_broken: 2,
            writes: 1,
            writes_broken: 1
        }
    );
}
