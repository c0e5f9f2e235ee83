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
