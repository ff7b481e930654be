//! The edge of the data path: one request in, one response out. Routing,
//! the route's stack, `rescue` for every error (exactly once), metrics and
//! the access log all happen here.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::forward;
use super::router::request_host;
use super::table::ListenerRoutes;
use crate::body::Body;
use crate::clock;
use crate::error::{local_response, rescue, Refusal, ATTEMPTS_HEADER};

/// What every request on one connection shares.
pub struct ConnContext {
    /// The listener's current routes (swapped on reload).
    pub routes: Arc<ArcSwap<ListenerRoutes>>,
    /// The client's IP, formatted once, for `x-forwarded-for`.
    pub client_ip: HeaderValue,
    /// The client's address, for the access log.
    pub peer: SocketAddr,
    /// Where the client was really going, on a transparent listener:
    /// `SO_ORIGINAL_DST`, or the local address when not redirected.
    pub original_dst: Option<SocketAddr>,
}

/// Size of a request's header block as sent (name, value, ": " and CRLF).
fn header_bytes<B>(req: &Request<B>) -> usize {
    req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
}

/// A request that names no host (HTTP/1.0, or no `Host` and no
/// `:authority`) on a transparent listener is routed, and forwarded, as if
/// it had named the address its client dialed: `IP:PORT`.
fn host_from_original_dst<B>(req: &mut Request<B>, original_dst: Option<SocketAddr>) {
    if let Some(dst) = original_dst {
        if request_host(req).is_none() {
            let host = HeaderValue::from_str(&dst.to_string()).expect("an address is a header value");
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
}

/// Serves one request.
pub async fn handle(ctx: &ConnContext, mut req: Request<Incoming>) -> Response<Body> {
    let start = clock::now();
    let routes = ctx.routes.load_full();
    let log = tracing::enabled!(target: "outrigger::access", tracing::Level::INFO);
    let (method, path) =
        if log { (Some(req.method().clone()), req.uri().path_and_query().cloned()) } else { (None, None) };
    if header_bytes(&req) > routes.max_header_bytes {
        return refuse(ctx, &routes, Refusal::HeadersTooLarge, start, log);
    }
    host_from_original_dst(&mut req, ctx.original_dst);
    let Some(route) = routes.router.route(&req) else {
        return refuse(ctx, &routes, Refusal::NoRoute, start, log);
    };
    let target = route.target();
    let mut req = req.map(Body::from_client);
    forward::prepare_request(&mut req, &ctx.client_ip);
    let (mut resp, refusal) = match target.service.call(req).await {
        Ok(resp) => (resp, None),
        Err(e) => {
            let (r, resp) = rescue(&e);
            (resp, Some(r))
        }
    };
    if refusal.is_none() {
        forward::strip_hop_by_hop(resp.headers_mut());
    }
    let elapsed = clock::now().saturating_duration_since(start);
    target.metrics.record(resp.status(), elapsed, refusal);
    if log {
        let attempts = resp
            .headers()
            .get(ATTEMPTS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        tracing::info!(
            target: "outrigger::access",
            listener = %routes.name,
            route = %route.name(),
            cluster = %target.cluster,
            client = %ctx.peer,
            original_dst = ctx.original_dst.map(tracing::field::display),
            method = %method.as_ref().map_or("", |m| m.as_str()),
            path = %path.as_ref().map_or("", |p| p.as_str()),
            status = resp.status().as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            attempts,
            error = refusal.map_or("", |r| r.token()),
            "request"
        );
    }
    resp
}

/// Counts and logs a request hyper refused while parsing it (see
/// [`super::parse_errors`]): it answered `status` before any route could.
pub fn refuse_unparsed(ctx: &ConnContext, status: http::StatusCode, refusal: Refusal) {
    let routes = ctx.routes.load();
    routes.no_route.record(status, std::time::Duration::ZERO, Some(refusal));
    tracing::info!(
        target: "outrigger::access",
        listener = %routes.name,
        client = %ctx.peer,
        original_dst = ctx.original_dst.map(tracing::field::display),
        status = status.as_u16(),
        error = refusal.token(),
        "request refused: it could not be parsed"
    );
}

fn refuse(ctx: &ConnContext, routes: &ListenerRoutes, refusal: Refusal, start: Instant, log: bool) -> Response<Body> {
    let resp = local_response(refusal);
    routes.no_route.record(resp.status(), clock::now().saturating_duration_since(start), Some(refusal));
    if log {
        tracing::info!(
            target: "outrigger::access",
            listener = %routes.name,
            client = %ctx.peer,
            original_dst = ctx.original_dst.map(tracing::field::display),
            status = resp.status().as_u16(),
            error = refusal.token(),
            "request refused"
        );
    }
    resp
}
