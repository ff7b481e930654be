//! One endpoint's connections: hyper connection handles kept idle between
//! requests, as linkerd2-proxy and pingora keep theirs.
//!
//! Why not hyper-util's pooled client: it keys one pool per client by
//! authority (SipHash over the authority's bytes on every checkout), wraps
//! every request in boxed futures, and spawns a task per response to wait
//! for the connection to come free. A pool owned by the endpoint needs no
//! key, and the connection is handed back by the response body itself when
//! its last frame passes (see [`Lease`]), so nothing is spawned per request.
//!
//! HTTP/1: a LIFO stack of idle connections (the most recently used is the
//! warmest and least likely to have been closed by the upstream). A
//! connection is only put back after its response ended, so the next
//! request finds it ready; one that is closed or still busy is dropped at
//! checkout. A request that a reused connection could not even start
//! (closed under us) is sent once more on a fresh connection.
//!
//! HTTP/2: one multiplexed connection, its handle cloned per request,
//! replaced when it closes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use prometheus::IntCounter;
use tokio::net::TcpSocket;
use tokio::time::Instant;

use crate::body::Body;
use crate::config::settings::{ClusterSettings, Protocol};
use crate::error::BoxError;
use crate::metrics::Metrics;
use crate::socket::Socket;

/// How a cluster's endpoints connect and keep connections.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Bound on TCP connect.
    pub connect_timeout: Duration,
    /// HTTP/1.1 or HTTP/2 (prior knowledge).
    pub protocol: Protocol,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// At most this many idle HTTP/1 connections are kept per endpoint;
    /// `None`: no cap. A cap below the concurrency to one endpoint makes
    /// the pool close connections that the next burst opens again.
    pub max_idle: Option<usize>,
    /// Counts connections opened, when the cluster has metrics.
    pub opened: Option<IntCounter>,
}

impl PoolSettings {
    /// The defaults: 90 s idle (longer than most upstreams keep an idle
    /// connection, so they close first), no cap on idle connections.
    pub fn new(connect_timeout: Duration, protocol: Protocol) -> Self {
        PoolSettings { connect_timeout, protocol, idle_timeout: Duration::from_secs(90), max_idle: None, opened: None }
    }

    /// A cluster's settings, counting into its
    /// `outrigger_upstream_connections_opened_total`.
    pub fn for_cluster(cluster: &ClusterSettings, metrics: &Metrics) -> Self {
        PoolSettings {
            idle_timeout: cluster.idle_timeout,
            max_idle: cluster.max_idle_connections,
            opened: Some(metrics.upstream_connections_opened.with_label_values(&[&cluster.name])),
            ..PoolSettings::new(cluster.connect_timeout, cluster.protocol)
        }
    }
}

/// Connecting to the endpoint failed (refused, unreachable, timed out):
/// the request never reached it.
#[derive(Debug, thiserror::Error)]
#[error("connect to {addr}: {source}")]
pub struct ConnectError {
    /// Where.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The connections to one endpoint.
pub struct Pool {
    addr: SocketAddr,
    settings: Arc<PoolSettings>,
    /// HTTP/1: idle connections, oldest first.
    idle: Mutex<Vec<Idle>>,
    /// HTTP/2: the shared connection, and when its last stream ended.
    shared: Mutex<Option<Shared2>>,
    /// HTTP/2: streams open on the shared connection (one per HTTP/2
    /// [`Lease`], from the request's send to its response body's drop).
    streams: AtomicUsize,
    /// HTTP/2: held while one request makes the shared connection, so
    /// concurrent first requests wait for it rather than each connecting.
    connecting: tokio::sync::Mutex<()>,
}

struct Idle {
    conn: http1::SendRequest<Outbound>,
    since: Instant,
}

struct Shared2 {
    conn: http2::SendRequest<Outbound>,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).field("idle", &self.idle_count()).finish()
    }
}

impl Pool {
    /// An empty pool for `addr`.
    pub fn new(addr: SocketAddr, settings: Arc<PoolSettings>) -> Self {
        Pool {
            addr,
            settings,
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
            streams: AtomicUsize::new(0),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Idle HTTP/1 connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    /// Sends `req` (URI already in the form the protocol wants) and returns
    /// the response whose body hands the connection back when it ends.
    ///
    /// The common case, a ready idle HTTP/1 connection, is sent at once and
    /// its future kept inline (a few hundred bytes); connecting, the resend
    /// after a stale connection, and HTTP/2 are boxed, being rare or not
    /// measured as hot.
    pub fn send(self: Arc<Self>, req: Request<Body>) -> Sending<impl Future<Output = TrySend>> {
        self.send_at(req, Instant::now())
    }

    /// [`Pool::send`] with the time the caller has just read (for idle
    /// expiry): one clock read per request is enough.
    pub fn send_at(self: Arc<Self>, req: Request<Body>, now: Instant) -> Sending<impl Future<Output = TrySend>> {
        let req = req.map(Outbound::new);
        if self.settings.protocol == Protocol::Http1 {
            if let Some(mut conn) = self.checkout(now) {
                return Sending::Reused { fut: conn.try_send_request(req), conn: Some(conn), pool: Some(self) };
            }
            return Sending::Slow { fut: Box::pin(self.send_fresh(req)) };
        }
        Sending::Slow { fut: Box::pin(self.send_http2(req)) }
    }

    /// Sends on a new HTTP/1 connection.
    async fn send_fresh(self: Arc<Self>, req: Request<Outbound>) -> Result<Response<Body>, BoxError> {
        let mut conn = self.connect_http1().await?;
        let resp = conn.send_request(req).await?;
        let lease = Lease { pool: self, conn: Some(conn) };
        Ok(resp.map(|incoming| Body::upstream(incoming, lease)))
    }

    async fn send_http2(self: Arc<Self>, req: Request<Outbound>) -> Result<Response<Body>, BoxError> {
        let shared = || {
            let shared = self.shared.lock().expect("pool lock");
            shared.as_ref().map(|s| &s.conn).filter(|c| !c.is_closed()).cloned()
        };
        let mut conn = match shared() {
            Some(conn) => conn,
            None => {
                let _one = self.connecting.lock().await;
                match shared() {
                    Some(conn) => conn,
                    None => {
                        let conn = self.connect_http2().await?;
                        let since = Instant::now();
                        *self.shared.lock().expect("pool lock") = Some(Shared2 { conn: conn.clone(), since });
                        conn
                    }
                }
            }
        };
        let lease = Lease::http2_stream(self);
        let resp = conn.send_request(req).await?;
        Ok(resp.map(|incoming| Body::upstream(incoming, lease)))
    }

    /// An HTTP/2 stream ended: the shared connection's idle time counts
    /// from the last one.
    fn stream_ended(&self) {
        if self.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(s) = self.shared.lock().expect("pool lock").as_mut() {
                s.since = Instant::now();
            }
        }
    }

    /// The most recently returned connection that is ready. Closed or
    /// expired ones are dropped; one not ready yet (its connection task has
    /// not caught up with the end of the last exchange) stays for later.
    fn checkout(&self, now: Instant) -> Option<http1::SendRequest<Outbound>> {
        let mut idle = self.idle.lock().expect("pool lock");
        while idle
            .last()
            .is_some_and(|e| e.conn.is_closed() || now.duration_since(e.since) >= self.settings.idle_timeout)
        {
            idle.pop();
        }
        // Almost always the top one; the scan stops at the first ready.
        let ready = idle.iter().rposition(|e| e.conn.is_ready())?;
        Some(idle.remove(ready).conn)
    }

    /// Puts a connection whose exchange ended back on the stack.
    fn put(&self, conn: http1::SendRequest<Outbound>) {
        if conn.is_closed() {
            return;
        }
        let now = crate::clock::now();
        let mut idle = self.idle.lock().expect("pool lock");
        // The oldest is first: drop the expired prefix.
        let expired = idle.iter().take_while(|e| now.duration_since(e.since) >= self.settings.idle_timeout).count();
        if expired > 0 {
            idle.drain(..expired);
        }
        if let Some(max) = self.settings.max_idle {
            if max == 0 {
                return;
            }
            if idle.len() >= max {
                // Full: the coldest goes, not the one just used.
                idle.remove(0);
            }
        }
        idle.push(Idle { conn, since: now });
    }

    /// Closes the idle connections unused for `idle_timeout` and forgets
    /// those the upstream closed, so that what a burst opened is given back
    /// even when no request comes to trigger the check in [`Pool::put`].
    pub fn close_expired(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        idle.retain(|e| !e.conn.is_closed() && now.duration_since(e.since) < self.settings.idle_timeout);
        drop(idle);
        // HTTP/2: the shared connection goes once no stream has been open
        // on it for `idle_timeout` (hyper closes it when the last handle
        // to it is dropped; a request that took a handle just before still
        // completes on it).
        let mut shared = self.shared.lock().expect("pool lock");
        if shared.as_ref().is_some_and(|s| {
            s.conn.is_closed()
                || (self.streams.load(Ordering::Acquire) == 0
                    && now.duration_since(s.since) >= self.settings.idle_timeout)
        }) {
            *shared = None;
        }
    }

    /// Whether an HTTP/2 connection is kept (open, for later streams).
    #[cfg(test)]
    fn has_shared(&self) -> bool {
        self.shared.lock().map(|s| s.as_ref().is_some_and(|s| !s.conn.is_closed())).unwrap_or(false)
    }

    async fn connect(&self) -> Result<TokioIo<Socket>, ConnectError> {
        let err = |source| ConnectError { addr: self.addr, source };
        let socket = if self.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(err)?;
        socket.set_keepalive(true).map_err(err)?;
        let stream = tokio::time::timeout(self.settings.connect_timeout, socket.connect(self.addr))
            .await
            .map_err(|_| err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(err)?;
        if let Some(opened) = &self.settings.opened {
            opened.inc();
        }
        stream.set_nodelay(true).map_err(err)?;
        Ok(TokioIo::new(Socket::new(stream)))
    }

    async fn connect_http1(&self) -> Result<http1::SendRequest<Outbound>, BoxError> {
        let io = self.connect().await?;
        let (send, conn) = http1::Builder::new().writev(false).handshake(io).await?;
        tokio::spawn(conn.map(log_end(self.addr)));
        Ok(send)
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<Outbound>, BoxError> {
        let io = self.connect().await?;
        let (send, conn) = http2::Builder::new(TokioExecutor::new()).timer(TokioTimer::new()).handshake(io).await?;
        tokio::spawn(conn.map(log_end(self.addr)));
        Ok(send)
    }
}

/// A request body on its way down an upstream connection: a pointer, not
/// the 112-byte [`Body`]. hyper queues requests to a connection in a
/// channel whose blocks hold 32 of them and stay allocated with the
/// connection, so this is 3 KiB less per block (about 6 KiB per upstream
/// connection); a request without a body, the usual case, allocates
/// nothing.
pub struct Outbound(Option<Box<Body>>);

impl Outbound {
    fn new(body: Body) -> Self {
        use http_body::Body as _;
        Outbound((!body.is_end_stream()).then(|| Box::new(body)))
    }
}

impl http_body::Body for Outbound {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match &mut self.0 {
            Some(body) => Pin::new(body.as_mut()).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// What runs a connection's task after it ends. The task is the
/// connection with this mapped on, not an `async` block awaiting it, which
/// would hold the connection twice (1,400 bytes a connection, not 700).
fn log_end(addr: SocketAddr) -> impl FnOnce(Result<(), hyper::Error>) {
    move |ended| {
        if let Err(e) = ended {
            tracing::debug!(endpoint = %addr, error = %e, "upstream connection ended");
        }
    }
}

/// What hyper's `try_send_request` resolves to.
pub type TrySend = Result<Response<Incoming>, TrySendError<Request<Outbound>>>;

pin_project! {
    /// A request on its way: see [`Pool::send`].
    #[project = SendingProj]
    #[allow(missing_docs)]
    pub enum Sending<F> {
        /// On a pooled connection.
        // hyper's exchange; the connection and its pool, for the lease.
        Reused { #[pin] fut: F, conn: Option<http1::SendRequest<Outbound>>, pool: Option<Arc<Pool>> },
        /// Anything else.
        // The whole exchange, connect included.
        Slow { fut: Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>> },
    }
}

impl<F: Future<Output = TrySend>> Future for Sending<F> {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let resend = match self.as_mut().project() {
            SendingProj::Slow { fut } => return fut.as_mut().poll(cx),
            SendingProj::Reused { fut, conn, pool } => match ready!(fut.poll(cx)) {
                Ok(resp) => {
                    let lease = Lease { pool: pool.take().expect("polled after completion"), conn: conn.take() };
                    return Poll::Ready(Ok(resp.map(|incoming| Body::upstream(incoming, lease))));
                }
                Err(mut e) => match e.take_message() {
                    // Not even started: the idle connection was closed
                    // under us. Once more, on a fresh connection.
                    Some(req) => (pool.take().expect("polled after completion"), req),
                    None => return Poll::Ready(Err(e.into_error().into())),
                },
            },
        };
        let (pool, req) = resend;
        self.set(Sending::Slow { fut: Box::pin(pool.send_fresh(req)) });
        self.poll(cx)
    }
}

/// A response's claim on the connection it came over, carried in its body:
/// the connection goes back to the pool when the body's last frame has
/// passed, and is closed if the body is dropped before its end. Also how a
/// response names the endpoint that sent it.
pub struct Lease {
    pool: Arc<Pool>,
    conn: Option<http1::SendRequest<Outbound>>,
}

impl Lease {
    /// An HTTP/2 stream, counted open on `pool` from its send until this
    /// lease is dropped (a failed send, or the end of the response body).
    fn http2_stream(pool: Arc<Pool>) -> Self {
        pool.streams.fetch_add(1, Ordering::AcqRel);
        Lease { pool, conn: None }
    }

    /// The endpoint the response came from.
    pub fn addr(&self) -> SocketAddr {
        self.pool.addr
    }

    /// The exchange is over: the connection may serve the next request.
    pub fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put(conn);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Every HTTP/2 lease counts a stream (`Lease::http2_stream`).
        if self.pool.settings.protocol == Protocol::Http2 {
            self.pool.stream_ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn pool(addr: SocketAddr, protocol: Protocol) -> Arc<Pool> {
        Arc::new(Pool::new(addr, Arc::new(PoolSettings::new(Duration::from_secs(1), protocol))))
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).header("host", "upstream").body(Body::empty()).unwrap()
    }

    /// A hyper upstream answering `/big` with 1 MiB and anything else with
    /// its path; counts the connections it accepted.
    async fn upstream(protocol: Protocol) -> (SocketAddr, Arc<AtomicUsize>) {
        let (addr, accepted, _) = upstream_counting_open(protocol).await;
        (addr, accepted)
    }

    /// [`upstream`], also counting the connections open now.
    async fn upstream_counting_open(protocol: Protocol) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (count, open_now) = (Arc::clone(&accepted), Arc::clone(&open));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                open_now.fetch_add(1, Ordering::SeqCst);
                let open_now = Arc::clone(&open_now);
                let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == "/big" {
                        Bytes::from(vec![b'x'; 1 << 20])
                    } else {
                        Bytes::copy_from_slice(req.uri().path().as_bytes())
                    };
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(body)))
                });
                let io = TokioIo::new(stream);
                tokio::spawn(async move {
                    let _ = match protocol {
                        Protocol::Http1 => hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await,
                        Protocol::Http2 => {
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(io, svc)
                                .await
                        }
                    };
                    open_now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, accepted, open)
    }

    async fn text(resp: Response<Body>) -> String {
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    /// Sequential requests share one keep-alive connection, and each gets
    /// its own answer.
    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted) = upstream(Protocol::Http1).await;
        let pool = pool(addr, Protocol::Http1);
        for i in 0..20 {
            let resp = Arc::clone(&pool).send(get(&format!("/{i}"))).await.unwrap();
            assert_eq!(resp.body().served_by(), Some(addr));
            assert_eq!(text(resp).await, format!("/{i}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    /// Concurrent requests each get a connection; afterwards they are all
    /// idle and serve the next round without new connects.
    #[tokio::test]
    async fn concurrent_requests_open_connections_then_reuse_them() {
        let (addr, accepted) = upstream(Protocol::Http1).await;
        let pool = pool(addr, Protocol::Http1);
        for _round in 0..3 {
            let answers = futures_util::future::join_all(
                (0..8).map(|i| Arc::clone(&pool).send(get(&format!("/{i}")))).collect::<Vec<_>>(),
            )
            .await;
            for (i, r) in answers.into_iter().enumerate() {
                assert_eq!(text(r.unwrap()).await, format!("/{i}"));
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 8);
    }

    /// A response body dropped before its end closes that connection: the
    /// next request gets its own answer on a new one, never the rest of
    /// the abandoned body.
    #[tokio::test]
    async fn an_abandoned_body_does_not_poison_the_pool() {
        let (addr, accepted) = upstream(Protocol::Http1).await;
        let pool = pool(addr, Protocol::Http1);
        let mut resp = Arc::clone(&pool).send(get("/big")).await.unwrap();
        let first = resp.body_mut().frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        drop(resp);
        let resp = Arc::clone(&pool).send(get("/after")).await.unwrap();
        assert_eq!(text(resp).await, "/after");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// An upstream that closes each connection after one answer (without
    /// saying so): every request still succeeds, each on a fresh connection.
    #[tokio::test]
    async fn connections_closed_by_the_upstream_are_replaced() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                // Dropped: closed with no `Connection: close`.
            }
        });
        let pool = pool(addr, Protocol::Http1);
        for i in 0..10 {
            let resp = Arc::clone(&pool).send(get("/")).await.unwrap();
            assert_eq!(text(resp).await, "ok");
            // Sometimes the close is seen before the next checkout, sometimes
            // only when the send fails; either way a fresh connection serves.
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10, "one fresh connection per request");
    }

    /// A refused connect is a `ConnectError`, which the edge answers with
    /// 502 `upstream-connect-failure`.
    #[tokio::test]
    async fn refused_connects_are_connect_errors() {
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let err = pool(addr, Protocol::Http1).send(get("/")).await.unwrap_err();
        assert!(err.is::<ConnectError>(), "{err}");
        assert_eq!(crate::error::classify(err.as_ref()), crate::error::Refusal::UpstreamConnectFailure);
    }

    /// HTTP/2: concurrent requests share one connection, the first ones
    /// included (they wait for one connect rather than each making one).
    #[tokio::test]
    async fn http2_multiplexes_one_connection() {
        let (addr, accepted) = upstream(Protocol::Http2).await;
        let pool = pool(addr, Protocol::Http2);
        let answers = futures_util::future::join_all(
            (0..16).map(|i| Arc::clone(&pool).send(h2_get(&format!("/{i}"), addr))).collect::<Vec<_>>(),
        )
        .await;
        for (i, r) in answers.into_iter().enumerate() {
            assert_eq!(text(r.unwrap()).await, format!("/{i}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    /// Eight requests at once, `rounds` times, on `pool`.
    async fn bursts(pool: &Arc<Pool>, rounds: usize) {
        for _ in 0..rounds {
            let answers =
                futures_util::future::join_all((0..8).map(|i| Arc::clone(pool).send(get(&format!("/{i}"))))).await;
            for r in answers {
                text(r.unwrap()).await;
            }
        }
    }

    /// With `max_idle`, the pool keeps that many and closes the rest, which
    /// the next burst opens again; 0 keeps none.
    #[tokio::test]
    async fn max_idle_caps_what_is_kept() {
        for (max, kept, opened) in [(2, 2, 8 + 6), (0, 0, 16)] {
            let (addr, accepted) = upstream(Protocol::Http1).await;
            let settings =
                PoolSettings { max_idle: Some(max), ..PoolSettings::new(Duration::from_secs(1), Protocol::Http1) };
            let pool = Arc::new(Pool::new(addr, Arc::new(settings)));
            bursts(&pool, 2).await;
            assert_eq!(pool.idle_count(), kept, "max_idle {max}");
            assert_eq!(accepted.load(Ordering::SeqCst), opened, "max_idle {max}");
        }
    }

    /// The sweep closes what went unused for `idle_timeout`, and only that.
    #[tokio::test]
    async fn close_expired_closes_only_connections_idle_for_idle_timeout() {
        let (addr, accepted) = upstream(Protocol::Http1).await;
        let pool = pool(addr, Protocol::Http1);
        bursts(&pool, 1).await;
        assert_eq!(pool.idle_count(), 8);
        tokio::time::pause();
        tokio::time::advance(pool.settings.idle_timeout - Duration::from_millis(1)).await;
        pool.close_expired();
        assert_eq!(pool.idle_count(), 8);
        tokio::time::advance(Duration::from_millis(1)).await;
        pool.close_expired();
        assert_eq!(pool.idle_count(), 0);
        tokio::time::resume();
        bursts(&pool, 1).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 16);
    }

    /// HTTP/2: the shared connection is closed once no stream has been open
    /// on it for `idle_timeout`, never while a response is still streaming,
    /// and the next request opens a new one.
    #[tokio::test]
    async fn http2_connection_closes_after_idle_timeout_not_while_streaming() {
        let (addr, accepted, open) = upstream_counting_open(Protocol::Http2).await;
        let pool = pool(addr, Protocol::Http2);
        let idle_timeout = pool.settings.idle_timeout;
        // A response whose body has not been read yet holds its stream open.
        let held = Arc::clone(&pool).send(h2_get("/big", addr)).await.unwrap();
        tokio::time::pause();
        tokio::time::advance(idle_timeout * 2).await;
        pool.close_expired();
        assert!(pool.has_shared(), "closed under an open stream");
        tokio::time::resume();
        assert_eq!(text(held).await.len(), 1 << 20);
        tokio::time::pause();
        // (The stream ended a moment before the clock was paused: a second
        // of margin either side.)
        tokio::time::advance(idle_timeout - Duration::from_secs(1)).await;
        pool.close_expired();
        assert!(pool.has_shared(), "closed before idle_timeout");
        tokio::time::advance(Duration::from_secs(1)).await;
        pool.close_expired();
        assert!(!pool.has_shared(), "kept past idle_timeout");
        tokio::time::resume();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while open.load(Ordering::SeqCst) > 0 {
            assert!(std::time::Instant::now() < deadline, "the upstream connection stayed open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(text(Arc::clone(&pool).send(h2_get("/again", addr)).await.unwrap()).await, "/again");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    fn h2_get(path: &str, addr: SocketAddr) -> Request<Body> {
        let mut req = Request::get(format!("http://{addr}{path}")).body(Body::empty()).unwrap();
        *req.version_mut() = http::Version::HTTP_2;
        req
    }
}
