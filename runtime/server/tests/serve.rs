//! apim's listeners against slow, idle and large requests, over real sockets: a request head
//! that does not arrive in time, or a kept-alive connection left idle, has its connection closed;
//! a component takes a body up to its limit, declared or chunked, and refuses one byte more.

mod common;

use apim_components::Response;
use apim_runtime::http;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_millis(300);

async fn server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(http::serve_raw_within(listener, LIMIT, |_req, _| async {
        http::write(Response {
            status: 200,
            headers: Vec::new(),
            body: b"ok".to_vec(),
        })
    }));
    address
}

/// Reads until the server closes the connection; returns what it sent and how long that took.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection was still open after 5 s"),
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), start.elapsed())
}

#[tokio::test]
async fn a_head_that_does_not_arrive_in_time_closes_the_connection() {
    let address = server().await;
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    slow.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .expect("write");
    let (answer, after) = until_closed(&mut slow).await;
    assert!(!answer.contains("200"), "{answer}");
    assert!(after >= LIMIT / 2, "closed after {after:?}");
}

#[tokio::test]
async fn a_kept_alive_connection_left_idle_is_closed_after_answering() {
    let address = server().await;
    let mut client = TcpStream::connect(&address).await.expect("connect");
    client
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

#[tokio::test]
async fn requests_in_time_are_served_on_one_connection() {
    let address = server().await;
    let mut client = TcpStream::connect(&address).await.expect("connect");
    for _ in 0..3 {
        tokio::time::sleep(LIMIT / 3).await;
        client
            .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = client.read(&mut buf).await.expect("read");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[tokio::test]
async fn a_component_takes_a_body_up_to_the_limit_declared_or_chunked() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    // Answers with the size of the body it was given.
    tokio::spawn(http::serve(listener, |req, _| async move {
        Response::json(200, &serde_json::json!({ "size": req.body.len() }))
    }));
    let limit = apim_components::http::MAX_BODY;
    let client = apim_runtime::upstream::Upstreams::default();
    for (size, status) in [(0, 200), (limit, 200), (limit + 1, 413)] {
        let streamed = hyper::Request::post("/x")
            .header("host", &address)
            .body(common::chunked(size))
            .expect("request");
        let declared = hyper::Request::post("/x")
            .header("host", &address)
            .header("content-length", size)
            .body(common::chunked(size))
            .expect("request");
        for request in [streamed, declared] {
            let response = client.send(&address, request).await.expect("answer");
            assert_eq!(response.status().as_u16(), status, "{size} bytes");
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            let text = String::from_utf8_lossy(&body);
            if status == 200 {
                assert!(text.contains(&format!("\"size\":{size}")), "{text}");
            } else {
                assert!(text.contains("too_large"), "{text}");
            }
        }
    }
}

/// Opens a connection to `address` from the source address `from` (a loopback address).
async fn connect_from(from: &str, address: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("source"))
        .expect("bind the source address");
    socket
        .connect(address.parse().expect("address"))
        .await
        .expect("connect")
}

/// Whether the server closed the connection within a second, without answering.
async fn closed_at_once(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_flood_of_idle_connections_past_the_limits_is_refused_while_others_are_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let gate = http::Gate::new(30, Some(10));
    let serving = http::Serving {
        head_timeout: Duration::from_secs(30),
        tls: None,
        on_refused: None,
        gate: std::sync::Arc::new(gate),
        stop: None,
        closing: None,
    };
    tokio::spawn(http::serve_connections(
        listener,
        serving,
        |_req, _| async {
            http::write(Response {
                status: 200,
                headers: Vec::new(),
                body: b"ok".to_vec(),
            })
        },
    ));
    // One address holds its 10 connections idle; its 11th and later are closed at once.
    let mut flood = Vec::new();
    for _ in 0..10 {
        flood.push(connect_from("127.0.0.1", &address).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..5 {
        let mut extra = connect_from("127.0.0.1", &address).await;
        assert!(
            closed_at_once(&mut extra).await,
            "extra connection {i} was kept"
        );
    }
    // Another address is served meanwhile.
    let mut other = connect_from("127.0.0.2", &address).await;
    other
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The listener's own limit holds across addresses: 10 + 20 from others fill it.
    for k in 0..20 {
        flood.push(connect_from(&format!("127.0.1.{}", 1 + k / 5), &address).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut past = connect_from("127.0.2.1", &address).await;
    assert!(
        closed_at_once(&mut past).await,
        "the listener's limit did not hold"
    );
    // Closing the flood frees the places.
    drop(flood);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.1", &address).await;
    again
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut again).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_stops_coming_is_cut_off_with_a_408() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(http::serve(listener, |_req, _| async {
        Response::new(200)
    }));
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    slow.write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nfirst bytes")
        .await
        .expect("write");
    let (answer, after) = until_closed_within(&mut slow, http::BODY_IDLE * 2).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        after >= http::BODY_IDLE - Duration::from_secs(1),
        "after {after:?}"
    );
}

/// `until_closed`, waiting up to `limit`.
async fn until_closed_within(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                // The answer is enough; the connection may stay open after it.
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("no answer after {limit:?}"),
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), start.elapsed())
}
