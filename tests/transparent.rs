//! Transparent listeners: the original destination (SO_ORIGINAL_DST, or the
//! local address when the connection was not redirected) stands in for a
//! missing host.

mod support;

use support::*;

/// A listener's routes: a host name, or the loopback IP (host rules ignore
/// the port); nothing else matches. Route names are unique per file.
fn routes(prefix: &str) -> String {
    format!(
        r#"    routes:
      - name: {prefix}by-name
        match: {{host: orders}}
        cluster: by-name
      - name: {prefix}by-ip
        match: {{host: 127.0.0.1}}
        cluster: by-ip
"#
    )
}

fn cfg(by_ip: &Upstream, by_name: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: transparent
    address: 127.0.0.1:0
    transparent: true
{}
  - name: plain
    address: 127.0.0.1:0
{}
clusters:
  - name: by-ip
    endpoints: ["{}"]
  - name: by-name
    endpoints: ["{}"]
"#,
        routes(""),
        routes("plain-"),
        by_ip.addr,
        by_name.addr
    )
}

/// A hostless HTTP/1.0 request on a transparent listener that was reached
/// directly (not redirected) is routed on the address it dialed, and the
/// upstream sees that `IP:PORT` as its Host; the same request on a plain
/// listener matches no route.
#[tokio::test]
async fn hostless_request_routes_on_the_dialed_address() {
    let (by_ip, by_name) = (Upstream::start().await, Upstream::start().await);
    let p = TestProxy::start(&cfg(&by_ip, &by_name)).await;
    let reply = raw(p.addr, b"GET /hello HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(by_ip.hits(), 1);
    let host = by_ip.last_headers().unwrap().get("host").unwrap().to_str().unwrap().to_owned();
    assert_eq!(host, p.addr.to_string());

    let plain = p.proxy.listener_addr("plain").await.unwrap();
    let reply = raw(plain, b"GET /hello HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 404") || reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("x-outrigger-error: no-route"), "{reply}");
    assert_eq!(by_ip.hits(), 1);
}

/// A request that names a host is routed on that host, transparent or not:
/// the original destination only fills a gap.
#[tokio::test]
async fn host_header_wins_over_the_dialed_address() {
    let (by_ip, by_name) = (Upstream::start().await, Upstream::start().await);
    let p = TestProxy::start(&cfg(&by_ip, &by_name)).await;
    let r =
        client().send(http::Request::get(p.url("/x")).header("host", "orders").body(Default::default()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!((by_name.hits(), by_ip.hits()), (1, 0));
    assert_eq!(p.metric(r#"outrigger_requests_total{listener="transparent",route="by-name",code="200"}"#).await, 1.0);
}
