//! Small upstream servers for a first run: `outrigger demo` starts one on
//! every loopback endpoint of the config, then the proxy in front.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::config::Settings;
use crate::discovery::DiscoverySettings;
use crate::proxy::router::{HostMatch, PathMatch};

/// Starts a demo upstream on `addr`; it answers every request with its own
/// address, the method and the path.
pub async fn upstream(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let body = format!("hello from upstream {local}: {} {}\n", req.method(), req.uri().path());
                    let mut resp = Response::new(Body::from(Bytes::from(body)));
                    resp.headers_mut().insert("x-upstream", local.to_string().parse().expect("address"));
                    Ok::<_, Infallible>(resp)
                });
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(local)
}

/// Starts demo upstreams on every loopback static endpoint of `settings`.
pub async fn start_upstreams(settings: &Settings) -> std::io::Result<Vec<SocketAddr>> {
    let mut started = Vec::new();
    for c in &settings.clusters {
        if let DiscoverySettings::Static(eps) = &c.discovery {
            for e in eps.iter().filter(|e| e.address.ip().is_loopback()) {
                if !started.contains(&e.address) {
                    started.push(upstream(e.address).await?);
                }
            }
        }
    }
    Ok(started)
}

/// One curl line per route, to try the demo.
pub fn curl_lines(settings: &Settings) -> Vec<String> {
    let mut lines = Vec::new();
    for l in &settings.listeners {
        for r in &l.routes {
            let path = match &r.matcher.path {
                PathMatch::Exact(p) => p.clone(),
                PathMatch::Prefix(p) => {
                    format!("{}hello", p.trim_end_matches('/').to_owned() + "/")
                }
                _ => "/".to_owned(),
            };
            let mut line = format!("curl -i http://{}{}", l.address, path);
            if let Some(HostMatch::Exact(h)) = &r.matcher.host {
                line.push_str(&format!(" -H 'host: {h}'"));
            }
            for (n, v) in &r.matcher.headers {
                line.push_str(&format!(" -H '{}: {}'", n, v.to_str().unwrap_or("")));
            }
            lines.push(format!("{line}    # route {}", r.name));
        }
    }
    lines
}
