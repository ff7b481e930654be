//! The admin server: `/metrics`, `/live`, `/ready`, `/config`, `/clusters`,
//! `POST /reload`. Bound to 127.0.0.1 by default.

mod clusters;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::proxy::listener::{accept, Limits, Servers};
use crate::runtime::Proxy;

/// Serves the admin endpoints until `stop` fires.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, stop: CancellationToken) {
    tracing::info!(address = %proxy.admin_addr(), "admin listening");
    // Probes and scrapes reach it from outside the pod: the same
    // protocols and limits as a listener with default settings, so a
    // client that never sends a request is let go.
    let servers = Arc::new(Servers::new(Limits::default()));
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            a = accept(&listener) => a,
        };
        let proxy = Arc::clone(&proxy);
        let servers = Arc::clone(&servers);
        // `stop` comes after the listeners' drain (/ready says 503 during
        // it); then admin requests in flight finish and connections close.
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(protocol) = servers.first_bytes(&stream, peer, &stop).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                async move { Ok::<_, Infallible>(route(&proxy, req).await) }
            });
            let _ = servers.serve(protocol, TokioIo::new(stream), svc, &stop).await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("static"));
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Body::from(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}

async fn route(proxy: &Proxy, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut buf = Vec::new();
            let encoder = TextEncoder::new();
            if let Err(e) = encoder.encode(&proxy.registry.gather(), &mut buf) {
                return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
            }
            let mut r = Response::new(Body::from(Bytes::from(buf)));
            r.headers_mut().insert(header::CONTENT_TYPE, encoder.format_type().parse().expect("static"));
            r
        }
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
        (&Method::GET, "/ready") => {
            if proxy.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if proxy.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                let waiting: Vec<String> =
                    proxy.clusters().values().filter(|c| !c.is_ready()).map(|c| c.settings.name.clone()).collect();
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: waiting for discovery of {}\n", waiting.join(", ")),
                )
            }
        }
        (&Method::GET, "/config") => match serde_json::to_value(&proxy.settings().raw) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        (&Method::GET, "/clusters") => json(StatusCode::OK, &clusters::view(proxy)),
        (&Method::POST, "/reload") => match proxy.reload().await {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({"result": "success"})),
            Err(errs) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"result": "error", "errors": errs.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()}),
            ),
        },
        (_, "/metrics" | "/live" | "/ready" | "/config" | "/clusters" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics /live /ready /config /clusters, POST /reload\n"),
    }
}
