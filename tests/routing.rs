//! Routing and forwarding through a real proxy to real upstreams.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

fn cfg(a: &Upstream, b: &Upstream, c: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: main
    address: 127.0.0.1:0
    routes:
      - name: by-host
        match: {{host: orders}}
        cluster: a
      - name: by-wildcard
        match: {{host: "*.example.com"}}
        cluster: b
      - name: exact
        match: {{path: /exact}}
        cluster: a
      - name: regex
        match: {{path_regex: "/items/[0-9]+"}}
        cluster: b
      - name: posts
        match: {{path_prefix: /p/, methods: [POST]}}
        cluster: c
      - name: canary
        match: {{path_prefix: /p/, headers: {{x-canary: "1"}}}}
        cluster: b
      - name: prefix
        match: {{path_prefix: /p/}}
        cluster: a
clusters:
  - name: a
    endpoints: ["{}"]
  - name: b
    endpoints: ["{}"]
  - name: c
    endpoints: ["{}"]
"#,
        a.addr, b.addr, c.addr
    )
}

/// Each kind of match sends the request to its route's cluster, first
/// match winning.
#[tokio::test]
async fn each_kind_of_match_reaches_its_cluster() {
    let (a, b, c) = (Upstream::start().await, Upstream::start().await, Upstream::start().await);
    let p = TestProxy::start(&cfg(&a, &b, &c)).await;
    let cl = client();
    let send = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut r = Request::builder().method(method).uri(p.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        cl.send(r.body(Full::new(Bytes::new())).unwrap())
    };
    let who = |r: &Reply| r.header("x-upstream").unwrap().to_owned();
    let (a, b, c) = (a.addr.to_string(), b.addr.to_string(), c.addr.to_string());
    assert_eq!(who(&send("GET", "/anything", &[("host", "orders:8080")]).await), a);
    assert_eq!(who(&send("GET", "/x", &[("host", "api.example.com")]).await), b);
    assert_eq!(who(&send("GET", "/exact", &[]).await), a);
    assert_eq!(who(&send("GET", "/items/42", &[]).await), b);
    assert_eq!(send("GET", "/items/abc", &[]).await.status, 404);
    assert_eq!(who(&send("POST", "/p/1", &[]).await), c);
    assert_eq!(who(&send("GET", "/p/1", &[("x-canary", "1")]).await), b);
    assert_eq!(who(&send("GET", "/p/1", &[]).await), a);
}

/// Round robin spreads 1,000 requests over 2 endpoints within 45-55%.
#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\", \"{}\"]}}]\n",
        a.addr, b.addr
    ))
    .await;
    let cl = client();
    for _ in 0..1000 {
        assert_eq!(cl.get(&p.url("/")).await.status, 200);
    }
    let share = a.hits() as f64 / 1000.0;
    println!("round robin: {} / {} of 1000", a.hits(), b.hits());
    assert!((0.45..=0.55).contains(&share), "a got {share}");
    assert_eq!(a.hits() + b.hits(), 1000);
}

/// A weighted split sends roughly its weights.
#[tokio::test]
async fn weighted_split_follows_weights() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, clusters: [{{name: a, weight: 80}}, {{name: b, weight: 20}}]}}]}}]\nclusters: [{{name: a, endpoints: [\"{}\"]}}, {{name: b, endpoints: [\"{}\"]}}]\n",
        a.addr, b.addr
    ))
    .await;
    let cl = client();
    for _ in 0..500 {
        cl.get(&p.url("/")).await;
    }
    let share = a.hits() as f64 / 500.0;
    assert!((0.7..=0.9).contains(&share), "a got {share}");
}

/// Hop-by-hop headers are removed, x-forwarded-for appended,
/// x-forwarded-proto set, Host preserved.
#[tokio::test]
async fn forwarding_headers() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    let req = Request::get(p.url("/h"))
        .header("host", "orders.internal")
        .header("connection", "x-drop")
        .header("x-drop", "1")
        .header("proxy-authorization", "secret")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-app", "kept")
        .body(Full::default())
        .unwrap();
    let r = client().send(req).await;
    assert_eq!(r.status, 200);
    let h = up.last_headers().unwrap();
    assert_eq!(h["host"], "orders.internal");
    assert_eq!(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-app"], "kept");
    assert!(h.get("x-drop").is_none() && h.get("proxy-authorization").is_none());
}

/// HTTP/2 (h2c prior knowledge) clients are served, and an `http2` cluster
/// speaks HTTP/2 to its upstream: the client's host travels as
/// `:authority`, with no Host header beside it (RFC 9113 forbids one that
/// differs; NGINX answers such a request 400), from HTTP/2 and HTTP/1.1
/// clients alike.
#[tokio::test]
async fn http2_both_sides() {
    let up = Upstream::start_h2().await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, protocol: http2, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    let r = h2_client().get(&p.url("/two")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers.get("x-upstream").unwrap(), &up.addr.to_string());
    assert_eq!(up.last_authority(), Some(p.addr.to_string()));
    assert!(up.last_headers().unwrap().get("host").is_none());

    let req = Request::get(p.url("/one")).header("host", "orders.internal:8080").body(Default::default()).unwrap();
    let r = client().send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last_authority().as_deref(), Some("orders.internal:8080"));
    assert!(up.last_headers().unwrap().get("host").is_none());
}

/// 100 MB up and 100 MB down pass through as streams.
#[tokio::test]
async fn streams_100mb_each_way() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    let up = Upstream::start().await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c, timeout: 60s}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    const TOTAL: u64 = 100 * 1024 * 1024;
    // Upload: a streamed body of 1,600 x 64 KiB chunks.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..1600).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = Request::put(p.url("/upload")).body(outrigger::body::Body::boxed(StreamBody::new(stream))).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-received-bytes"], TOTAL.to_string().as_str());
    // Download: count bytes as they arrive.
    let resp = client
        .request(Request::get(p.url(&format!("/download?bytes={TOTAL}"))).body(outrigger::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(f) = body.frame().await {
        got += f.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, TOTAL);
}

/// Trailers pass end to end over HTTP/2 (client and upstream both h2).
#[tokio::test]
async fn http2_trailers_pass_through() {
    use http_body_util::BodyExt;
    let up = Upstream::start_h2().await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, protocol: http2, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<outrigger::body::Body>();
    let resp =
        client.request(Request::get(p.url("/trailers")).body(outrigger::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "with trailers\n");
}

/// An HTTP/1.1 client gets an upstream's trailers only when it said it
/// takes them (`TE: trailers`), in a chunked body; otherwise the body
/// arrives without them (RFC 9110 6.5.1).
#[tokio::test]
async fn http1_clients_get_trailers_only_when_they_ask() {
    let up = Upstream::start_h2().await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, protocol: http2, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    let asked =
        raw(p.addr, b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: gzip, Trailers\r\nConnection: close\r\n\r\n").await;
    assert!(asked.starts_with("HTTP/1.1 200"), "{asked}");
    assert!(asked.contains("with trailers\n"), "{asked}");
    assert!(asked.to_ascii_lowercase().contains("\r\ngrpc-status: 0\r\n"), "{asked}");
    let not_asked = raw(p.addr, b"GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(not_asked.starts_with("HTTP/1.1 200"), "{not_asked}");
    assert!(not_asked.contains("with trailers\n"), "{not_asked}");
    assert!(!not_asked.to_ascii_lowercase().contains("grpc-status: 0"), "{not_asked}");
}

/// An HTTP/1.0 request with no Host still reaches an HTTP/1.1 upstream
/// with one: the endpoint's address, as a client library would send.
#[tokio::test]
async fn hostless_http10_requests_get_the_endpoints_host() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    let reply = raw(p.addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    let headers = up.last_headers().unwrap();
    assert_eq!(headers.get("host").unwrap(), up.addr.to_string().as_str());
}
