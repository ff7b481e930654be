//! Test harness: real upstream servers on 127.0.0.1:0 with fault knobs,
//! the proxy started in-process from a YAML string, and a client.
#![allow(dead_code, unused_imports)]

pub mod dnsmasq;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod kube_api;
pub mod upstream;
pub mod wait;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use outrigger::runtime::Proxy;

pub use upstream::{Fault, Gate, Upstream};
pub use wait::{eventually, served_by, traffic_moves_to};

/// A proxy running in this test process.
pub struct TestProxy {
    pub proxy: Arc<Proxy>,
    /// The first listener's bound address.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl TestProxy {
    /// Starts the proxy from YAML. Listener addresses should be
    /// 127.0.0.1:0; the admin address defaults to 127.0.0.1:0 here.
    pub async fn start(yaml: &str) -> TestProxy {
        let yaml =
            if yaml.contains("admin:") { yaml.to_owned() } else { format!("admin: {{address: 127.0.0.1:0}}\n{yaml}") };
        let settings =
            outrigger::config::parse(&yaml, "test.yaml").unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let first = settings.listeners[0].name.clone();
        let proxy = Proxy::start(settings).await.expect("proxy starts");
        let addr = proxy.listener_addr(&first).await.expect("listener bound");
        let admin = proxy.admin_addr();
        TestProxy { proxy, addr, admin }
    }

    /// Starts the proxy from a file (so reload has something to read).
    pub async fn start_file(path: &std::path::Path) -> TestProxy {
        let settings = outrigger::config::load(path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let first = settings.listeners[0].name.clone();
        let proxy = Proxy::start(settings).await.expect("proxy starts");
        let addr = proxy.listener_addr(&first).await.expect("listener bound");
        let admin = proxy.admin_addr();
        TestProxy { proxy, addr, admin }
    }

    /// `http://ADDR{path}` on the first listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The admin server's text for `path`.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let r = client().get(&format!("http://{}{}", self.admin, path)).await;
        (r.status, r.text())
    }

    /// One sample of a metric from /metrics (`name{labels}`, labels in the
    /// order Prometheus prints them), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        metric_value(&text, series)
    }
}

/// Finds `series` (e.g. `outrigger_requests_total{code="200",...}`) in
/// exposition text. Labels may be given in any order.
pub fn metric_value(text: &str, series: &str) -> f64 {
    let (name, want) = split_series(series);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            let (n, labels) = split_series(s);
            (n == name && want.iter().all(|w| labels.contains(w))).then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

fn split_series(s: &str) -> (&str, Vec<&str>) {
    match s.find('{') {
        Some(i) => (&s[..i], s[i + 1..s.len() - 1].split(',').filter(|x| !x.is_empty()).collect()),
        None => (s, vec![]),
    }
}

/// The smallest useful config: listener `l` on 127.0.0.1:0 with one route
/// `r` to cluster `c` whose only endpoint is `endpoint`.
pub fn one_route(endpoint: impl std::fmt::Display) -> String {
    format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{endpoint}\"]}}]\n"
    )
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A plain HTTP/1.1 client.
#[derive(Clone)]
pub struct TestClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

pub fn client() -> TestClient {
    TestClient { inner: Client::builder(TokioExecutor::new()).build_http() }
}

/// An HTTP/2 prior-knowledge client.
pub fn h2_client() -> TestClient {
    TestClient { inner: Client::builder(TokioExecutor::new()).http2_only(true).build_http() }
}

impl TestClient {
    pub async fn get(&self, url: &str) -> Reply {
        self.send(Request::get(url).body(Full::default()).unwrap()).await
    }

    /// `get` with an owned URL, for spawning.
    pub async fn get_owned(self, url: String) -> Reply {
        self.get(&url).await
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        self.try_send(req).await.expect("request completes")
    }

    pub async fn try_send(&self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let resp = self.inner.request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }
}

/// An address that refuses connections for as long as this test process
/// runs. The port stays bound (without SO_REUSEADDR) but never listens, so
/// a connection to it is refused, and no other socket, in this process or
/// another test binary, can take the port and answer in its place (as it
/// could if the port were bound, closed and merely hoped to stay free).
/// The socket is deliberately leaked: one descriptor per call, freed when
/// the test process exits.
pub fn refused_addr() -> SocketAddr {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(false).unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let a = s.local_addr().unwrap();
    std::mem::forget(s);
    a
}

/// A port on 127.0.0.1 kept for a process the test starts (the binary,
/// etcd, dnsmasq) to listen on, by number, later and again after a
/// restart. The reservation is a socket bound with SO_REUSEADDR that never
/// listens: the kernel then gives the port to no `:0` bind and no outgoing
/// connection elsewhere, while a program that binds it by number with
/// SO_REUSEADDR (tokio's `TcpListener::bind`, Go's `net.Listen`, dnsmasq
/// all do) still can. Until that program listens, connecting is refused.
/// Held until dropped.
pub struct Reserved {
    pub addr: SocketAddr,
    _hold: tokio::net::TcpSocket,
}

/// Reserves a port (see [`Reserved`]).
pub fn reserve_addr() -> Reserved {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    Reserved { addr: s.local_addr().unwrap(), _hold: s }
}

/// Reads one HTTP/1.1 response (head, then a `Content-Length` body, none
/// without one) off `s`, carrying bytes past it in `pending` for the next
/// call (pipelined responses); the head and the body. Waits at most 10 s.
pub async fn read_response(s: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if pending.len() >= end + 4 + len {
                let body = pending[end + 4..end + 4 + len].to_vec();
                pending.drain(..end + 4 + len);
                return (head, body);
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .expect("reading a response");
        assert!(n > 0, "connection closed mid-response: {:?}", String::from_utf8_lossy(pending));
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Writes `request` as is on a new connection to `addr` and reads the
/// whole reply, until the server closes (an HTTP/1.0 exchange, an error):
/// for what a well-behaved client would never send.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    exchange(addr, request, false).await.expect("reading the reply")
}

/// Writes `request` on a new connection to `addr`, shuts the writing half
/// (a client that gives up mid-message) and reads what comes back until
/// the server closes.
pub async fn raw_half_closed(addr: SocketAddr, request: &[u8]) -> String {
    exchange(addr, request, true).await.expect("reading the reply")
}

async fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    if half_close {
        s.shutdown().await?;
    }
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
