//! HTTP/1 messages as they arrive on real sockets, in pieces: pipelined,
//! split at awkward places, heads larger than one read, bodies sharing a
//! read with their head. Both of the proxy's sides read this way (clients
//! and upstreams), and since vendor/hyper reads an idle connection through
//! a per-thread scratch buffer, every path from there into a message is
//! exercised here, for requests and for responses.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Writes `pieces` one at a time, pausing between them so that each
/// arrives in a read of its own (the pause makes the split likely; every
/// assertion holds however the bytes are grouped).
async fn write_in_pieces(s: &mut TcpStream, pieces: &[&[u8]]) {
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.write_all(piece).await.unwrap();
        s.flush().await.unwrap();
    }
}

/// Two requests in one write come back as two responses, in order, and
/// the connection serves a third one afterwards.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nhost: t\r\n\r\nGET /two HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let mut pending = Vec::new();
    for path in ["/one", "/two"] {
        let (head, body) = read_response(&mut s, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(String::from_utf8_lossy(&body).contains(&format!(" {path} ")), "{path}: {body:?}");
    }
    s.write_all(b"GET /three HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200") && String::from_utf8_lossy(&body).contains(" /three "), "{head}");
    assert_eq!(up.hits(), 3);
}

/// A request head cut inside its request line, inside a header and
/// between the CR and LF that end it is put back together; so is a body
/// whose first bytes share a read with the head.
#[tokio::test]
async fn requests_split_anywhere_arrive_whole() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut pending = Vec::new();
    write_in_pieces(&mut s, &[b"GE", b"T /split HTTP/1.1\r\nho", b"st: t\r\nx-a: b\r\n\r", b"\n"]).await;
    let (head, body) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200") && String::from_utf8_lossy(&body).contains(" /split "), "{head}");
    assert_eq!(up.last_headers().unwrap()["x-a"], "b");

    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let head = format!("POST /upload HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n", payload.len());
    let mut first = head.into_bytes();
    first.extend_from_slice(&payload[..5_000]);
    write_in_pieces(&mut s, &[&first, &payload[5_000..12_000], &payload[12_000..]]).await;
    let (head, body) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("received=20000"), "{body:?}");
    assert_eq!(up.bodies().last().map(|b| b.to_vec()), Some(payload));
}

/// A request head larger than one 8 KiB read (and under the limit) is
/// passed on intact.
#[tokio::test]
async fn a_request_head_larger_than_one_read_passes_intact() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    let big: String = (0..20_000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(format!("GET /big HTTP/1.1\r\nhost: t\r\nx-big: {big}\r\n\r\n").as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(up.last_headers().unwrap()["x-big"], big.as_str());
}

/// An upstream that answers every request with `pieces`, written one at a
/// time with pauses between them (see [`write_in_pieces`]).
async fn scripted_upstream(pieces: Vec<Vec<u8>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let pieces = pieces.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head (these requests have no body), then the answer.
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end + 4);
                    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
                    write_in_pieces(&mut s, &refs).await;
                }
            });
        }
    });
    addr
}

/// Responses split inside the status line, inside a header and between
/// head and body, with a head larger than one read and a body sharing a
/// read with the head, reach the client intact, and the upstream
/// connection is reused for the next request.
#[tokio::test]
async fn responses_split_anywhere_arrive_whole() {
    let big: String = (0..12_000).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    let body: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-big: {big}\r\nx-end: yes\r\n\r\n", body.len());
    let head = head.into_bytes();
    let mut with_body_start = head[40..].to_vec();
    with_body_start.extend_from_slice(&body[..1_000]);
    let pieces = vec![head[..7].to_vec(), head[7..40].to_vec(), with_body_start, body[1_000..].to_vec()];
    let up = scripted_upstream(pieces).await;
    let p = TestProxy::start(&one_route(up)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
        let (head, got) = read_response(&mut s, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{}", &head[..head.len().min(200)]);
        assert!(head.contains(&format!("x-big: {big}\r\n")), "x-big altered");
        assert!(head.contains("x-end: yes"), "header after the large one lost");
        assert_eq!(got, body);
    }
    assert_eq!(p.metric("outrigger_upstream_connections_opened_total{cluster=\"c\"}").await, 1.0);
}
