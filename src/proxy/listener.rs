//! Accepting connections and serving HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge) on them, with slowloris and header-size limits, until told
//! to drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::edge::{handle, ConnContext};
use super::origin::original_dst;
use super::parse_errors::TagParseErrors;
use super::table::ListenerRoutes;
use crate::config::settings::ListenerSettings;

/// Connection-level limits of a listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Whole header block within this.
    pub header_read_timeout: Duration,
    /// Header block size.
    pub max_header_bytes: usize,
}

impl From<&ListenerSettings> for Limits {
    fn from(l: &ListenerSettings) -> Self {
        Limits { header_read_timeout: l.header_read_timeout, max_header_bytes: l.max_header_bytes }
    }
}

/// Builds the per-connection protocol server.
fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        // One copy of head and (small) body into one buffer and one write:
        // cheaper than a writev of two slices for the typical response
        // (measured: +2% req/s in the load harness).
        .writev(false)
        // hyper answers 431 itself past this; our own check below it adds
        // the x-outrigger-error header for the common case.
        .max_buf_size((limits.max_header_bytes + 16 * 1024).max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes + 16 * 1024).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Accepts on `listener` until `stop` fires; each connection is tracked by
/// `connections` and told to finish gracefully when `drain` fires.
pub async fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    routes: Arc<ArcSwap<ListenerRoutes>>,
    stop: CancellationToken,
    drain: CancellationToken,
    connections: TaskTracker,
) {
    let builder = Arc::new(builder(limits));
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Read per connection from the swapped routes, so a reload that
        // flips `transparent` takes effect without rebinding.
        let original_dst = if routes.load().transparent {
            stream.local_addr().ok().map(|local| original_dst(&stream, local))
        } else {
            None
        };
        let ctx = ConnContext {
            routes: Arc::clone(&routes),
            client_ip: HeaderValue::from_str(&peer.ip().to_string()).expect("an IP is a header value"),
            peer,
            original_dst,
        };
        connections.spawn(serve_connection(stream, peer, ctx, Arc::clone(&builder), drain.clone()));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: ConnContext,
    builder: Arc<auto::Builder<TokioExecutor>>,
    drain: CancellationToken,
) {
    let ctx = Arc::new(ctx);
    let io = TokioIo::new(TagParseErrors::new(stream, Arc::clone(&ctx)));
    let svc = hyper::service::service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
