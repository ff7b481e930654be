//! What a client sees when Outrigger itself says no: status, header,
//! metric.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_route(endpoint: &str, extra: &str) -> String {
    format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, match: {{path_prefix: /app}}, cluster: c {extra}}}]}}]\nclusters: [{{name: c, endpoints: [\"{endpoint}\"], connect_timeout: 500ms}}]\n"
    )
}

/// One listener with one listener-level setting (`key: value`), one route
/// to `endpoint`.
fn limited_listener(setting: &str, endpoint: std::net::SocketAddr) -> String {
    format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, {setting}, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{endpoint}\"]}}]\n"
    )
}

/// No route -> 404 no-route, counted.
#[tokio::test]
async fn no_route_is_404() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(&up.addr.to_string(), "")).await;
    let r = client().get(&p.url("/elsewhere")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-outrigger-error"), Some("no-route"));
    assert_eq!(up.hits(), 0);
    assert_eq!(p.metric(r#"outrigger_local_responses_total{reason="no-route"}"#).await, 1.0);
    assert_eq!(p.metric(r#"outrigger_requests_total{code="404",listener="l"}"#).await, 1.0);
}

/// A refused connection -> 502 upstream-connect-failure, counted.
#[tokio::test]
async fn refused_is_502() {
    let p = TestProxy::start(&one_route(&refused_addr().to_string(), "")).await;
    let r = client().get(&p.url("/app")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-outrigger-error"), Some("upstream-connect-failure"));
    assert_eq!(p.metric(r#"outrigger_local_responses_total{route="r",reason="upstream-connect-failure"}"#).await, 1.0);
    assert_eq!(p.metric(r#"outrigger_requests_total{route="r",cluster="c",code="502"}"#).await, 1.0);
}

/// An upstream that closes without answering -> 502 upstream-reset.
#[tokio::test]
async fn reset_is_502() {
    let up = Upstream::start_with(Fault::Reset).await;
    let p = TestProxy::start(&one_route(&up.addr.to_string(), "")).await;
    let r = client().get(&p.url("/app")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-outrigger-error"), Some("upstream-reset"));
}

/// An upstream slower than the route timeout -> 504 timeout, counted.
#[tokio::test]
async fn slow_is_504() {
    // Slow enough that only the route timeout can have answered: a 504
    // before it is the fact, with no bound on how fast a loaded machine is.
    let up = Upstream::start_with(Fault::Delay(Duration::from_secs(60), 200)).await;
    let p = TestProxy::start(&one_route(&up.addr.to_string(), ", timeout: 200ms")).await;
    let t = std::time::Instant::now();
    let r = client().get(&p.url("/app")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-outrigger-error"), Some("timeout"));
    assert!(t.elapsed() >= Duration::from_millis(200), "cut off before the timeout: {:?}", t.elapsed());
    assert_eq!(p.metric(r#"outrigger_local_responses_total{route="r",reason="timeout"}"#).await, 1.0);
}

/// A malformed request gets 400 bad-request (with the contract's header,
/// though hyper refused it before any route saw it, and counted) and the
/// connection closes; nothing panics and the next request is served.
#[tokio::test]
async fn malformed_request_is_400() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(&up.addr.to_string(), "")).await;
    for malformed in [&b"GET /app HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n"[..], b"GET /\x01 HTTP/1.1\r\n\r\n"] {
        let out = raw(p.addr, malformed).await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.to_ascii_lowercase().contains("\r\nx-outrigger-error: bad-request\r\n"), "{out}");
    }
    let counted = r#"outrigger_local_responses_total{route="",reason="bad-request"}"#;
    assert_eq!(p.metric(counted).await, 2.0);
    let out = raw(p.addr, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(client().get(&p.url("/app")).await.status, 200);
    assert_eq!(up.hits(), 1);
}

/// Headers over the limit get 431 with the contract's header.
#[tokio::test]
async fn large_headers_are_431() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&limited_listener("max_header_bytes: 4096", up.addr)).await;
    let big = "v".repeat(6000);
    let req = http::Request::get(p.url("/")).header("x-big", big).body(Default::default()).unwrap();
    let r = client().send(req).await;
    assert_eq!(r.status, 431);
    assert_eq!(r.header("x-outrigger-error"), Some("bad-request"));
    // Far past the limit, hyper refuses while parsing: still 431.
    let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nx-huge: {}\r\n\r\n", "v".repeat(100_000));
    let out = raw(p.addr, huge.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(out.contains("\r\nx-outrigger-error: bad-request\r\n"), "{out}");
    assert_eq!(up.hits(), 0);
}

/// A client trickling its headers is cut off at header_read_timeout: the
/// limit is on the whole head, so a client sending a line every 100 ms
/// (never idle for 300 ms) is still cut off, well before it would give up.
/// It holds for a kept-alive connection's later requests as for its first
/// (hyper's header timer is reused between requests).
#[tokio::test]
async fn slowloris_is_cut_off() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&limited_listener("header_read_timeout: 300ms", up.addr)).await;
    for answered_first in [false, true] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        if answered_first {
            s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let (head, _) = read_response(&mut s, &mut Vec::new()).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let start = std::time::Instant::now();
        // 10 s of trickling: 30 times the limit, so a loaded machine's
        // delays do not matter, and far below hyper's own 30 s default, so
        // the configured limit is the one that cut.
        let mut closed = false;
        while start.elapsed() < Duration::from_secs(10) {
            if s.write_all(b"x-a: b\r\n").await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Ok(Ok(_)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Err(_) => {}
            }
        }
        assert!(closed, "answered_first {answered_first}: connection still open after {:?}", start.elapsed());
    }
    assert_eq!(up.hits(), 1, "only the answered first request reached the upstream");
}

/// A client that connects and sends nothing, or only the start of the
/// HTTP/2 preface, is let go at header_read_timeout like one trickling its
/// headers: idle sockets cannot pile up before their first request.
#[tokio::test]
async fn a_connection_that_never_starts_is_cut_off() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&limited_listener("header_read_timeout: 300ms", up.addr)).await;
    for sent in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n"] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let start = std::time::Instant::now();
        // 10 s: 30 times the limit, so a loaded machine's delays do not
        // matter; without the limit the socket stays open for good.
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "after sending {sent:?}: {read:?} after {:?}", start.elapsed());
    }
    // The listener still serves.
    assert_eq!(client().get(&p.url("/")).await.status, 200);
    assert_eq!(up.hits(), 1);
}
