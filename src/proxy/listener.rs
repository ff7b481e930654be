//! Accepting connections and serving HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge) on them, with slowloris and header-size limits, until told
//! to drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

use super::edge::{handle, ConnContext};
use super::origin::original_dst;
use super::parse_errors::TagParseErrors;
use super::table::ListenerRoutes;
use crate::body::Body;
use crate::clock;
use crate::config::settings::ListenerSettings;
use crate::error::BoxError;
use crate::resilience::timeout::Carrier;
use crate::socket::Socket;

/// Connection-level limits of a listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Whole header block within this.
    pub header_read_timeout: Duration,
    /// Header block size.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    /// A listener's limits when its config sets none.
    fn default() -> Self {
        Limits {
            header_read_timeout: ListenerSettings::DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: ListenerSettings::DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl From<&ListenerSettings> for Limits {
    fn from(l: &ListenerSettings) -> Self {
        Limits { header_read_timeout: l.header_read_timeout, max_header_bytes: l.max_header_bytes }
    }
}

/// The per-connection protocol servers, built once per listener (and once
/// for the admin server).
pub(crate) struct Servers {
    http1: http1::Builder,
    http2: http2::Builder<clock::Executor>,
    /// Also bounds the wait for a new connection's first bytes.
    header_read_timeout: Duration,
}

impl Servers {
    pub(crate) fn new(limits: Limits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(clock::Timer::default())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            // One copy of head and (small) body into one buffer and one write:
            // cheaper than a writev of two slices for the typical response
            // (measured: +2% req/s in the load harness).
            .writev(false)
            // hyper answers 431 itself past this; our own check below it adds
            // the x-outrigger-error header for the common case.
            .max_buf_size((limits.max_header_bytes + 16 * 1024).max(8192));
        let mut http2 = http2::Builder::new(clock::Executor);
        http2
            .timer(clock::Timer::default())
            .max_header_list_size(u32::try_from(limits.max_header_bytes + 16 * 1024).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Servers { http1, http2, header_read_timeout: limits.header_read_timeout }
    }

    /// Waits for a new connection's first bytes and tells its protocol;
    /// `None` when the client leaves, or sends nothing within
    /// `header_read_timeout` (it is let go like one that stops halfway
    /// through its headers), or `drain` fires first.
    pub(crate) async fn first_bytes(
        &self,
        stream: &TcpStream,
        peer: SocketAddr,
        drain: &CancellationToken,
    ) -> Option<Protocol> {
        tokio::select! {
            biased;
            () = drain.cancelled() => None,
            sniffed = tokio::time::timeout(self.header_read_timeout, sniff(stream)) => match sniffed {
                Ok(Ok(p)) => Some(p),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended before its first request");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "connection sent nothing within header_read_timeout");
                    None
                }
            },
        }
    }

    /// Serves `io` in `protocol` until the client is done; once `drain`
    /// fires, lets the request in flight finish and then closes.
    pub(crate) async fn serve<I, S>(
        &self,
        protocol: Protocol,
        io: I,
        svc: S,
        drain: &CancellationToken,
    ) -> Result<(), hyper::Error>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: HttpService<Incoming, ResBody = Body>,
        S::Error: Into<BoxError>,
        clock::Executor: Http2ServerConnExec<S::Future, Body>,
    {
        match protocol {
            Protocol::Http1 => until_drained(self.http1.serve_connection(io, svc), drain).await,
            // Boxed: an HTTP/2 connection is twice the size of an HTTP/1
            // one, and every connection's task would be sized for it.
            Protocol::Http2 => Box::pin(until_drained(self.http2.serve_connection(io, svc), drain)).await,
        }
    }
}

/// What a client speaks, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    /// h2c with prior knowledge: the connection preface came first.
    Http2,
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells HTTP/1 from HTTP/2 by peeking at the first bytes, leaving them
/// for the protocol server to read. Unlike hyper-util's `auto` server,
/// which reads them into a side buffer and replays them, nothing wraps the
/// socket afterwards: the first request is read straight into hyper's
/// buffer (one read, and an 8 KiB buffer rather than one grown to 16 KiB
/// by the replayed fragment), and the caller can bound the wait for a
/// client that never sends anything.
///
/// Almost every connection is decided by its first byte (only `P` can
/// start both). Bytes that are a strict prefix of the preface are peeked
/// again after a short, growing pause: a peek returns at once while
/// anything is unread, so waiting for readiness would spin.
async fn sniff(stream: &TcpStream) -> std::io::Result<Protocol> {
    let mut buf = [0u8; 24];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            // End of stream too: hyper sees it and ends the connection.
            return Ok(Protocol::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The next connection on `listener`. An accept error (out of file
/// descriptors and the like) is logged and retried after a short pause
/// rather than in a loop that would spin the worker thread.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(error = %e, address = ?listener.local_addr().ok(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
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
    let servers = Arc::new(Servers::new(limits));
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            a = accept(&listener) => a,
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
        connections.spawn(serve_connection(stream, peer, ctx, Arc::clone(&servers), drain.clone()));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: ConnContext,
    servers: Arc<Servers>,
    drain: CancellationToken,
) {
    let Some(protocol) = servers.first_bytes(&stream, peer, &drain).await else {
        return;
    };
    let ctx = Arc::new(ctx);
    let io = TokioIo::new(TagParseErrors::new(Socket::new(stream), Arc::clone(&ctx)));
    let svc = hyper::service::service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    if let Err(e) = servers.serve(protocol, io, svc, &drain).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Serves `conn` to its end; once `drain` fires, lets the request in
/// flight finish and then closes.
fn until_drained<C: GracefulConnection>(conn: C, drain: &CancellationToken) -> UntilDrained<'_, C> {
    let watch = Arc::new(DrainWatch { fired: AtomicBool::new(true), task: Mutex::new(None) });
    let waker = Waker::from(Arc::clone(&watch));
    UntilDrained {
        conn,
        drained: drain.cancelled(),
        watch,
        waker,
        told: None,
        draining: false,
        timer: Carrier::default(),
    }
}

pin_project! {
    /// [`until_drained`]'s future, written out: as an `async fn` it held
    /// the connection twice (the argument and its pinned move), 800 bytes
    /// more in every connection's task.
    struct UntilDrained<'a, C> {
        #[pin]
        conn: C,
        #[pin]
        drained: WaitForCancellationFuture<'a>,
        // `drained` is polled with its own waker, and only after that waker
        // fired: polling it on every wake of the connection's task (twice a
        // request) cost ~300 instructions a request, most of them taking
        // the token's lock to look at a waker that had not changed.
        watch: Arc<DrainWatch>,
        waker: Waker,
        // The task's waker the watch holds: a task's waker does not change
        // from poll to poll, so it is handed over once, not re-registered
        // (two atomic swaps) on every poll.
        told: Option<Waker>,
        draining: bool,
        // The one timer of the connection's requests' deadlines.
        timer: Carrier,
    }
}

/// Wakes the connection's task when the drain token fires, and notes it.
struct DrainWatch {
    /// The drain future may be ready: poll it (set at first, to register).
    fired: AtomicBool,
    /// The connection's task.
    task: Mutex<Option<Waker>>,
}

impl Wake for DrainWatch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().expect("drain watch lock").as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<C: GracefulConnection> Future for UntilDrained<'_, C> {
    type Output = Result<(), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every reading of the time in this poll is one reading.
        let _frozen = clock::frozen();
        let mut this = self.project();
        if !*this.draining {
            if !this.told.as_ref().is_some_and(|told| told.will_wake(cx.waker())) {
                let task = this.told.insert(cx.waker().clone());
                *this.watch.task.lock().expect("drain watch lock") = Some(task.clone());
            }
            if this.watch.fired.load(Ordering::Relaxed)
                && this.watch.fired.swap(false, Ordering::Acquire)
                && this.drained.poll(&mut Context::from_waker(this.waker)).is_ready()
            {
                *this.draining = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        let conn = this.conn;
        this.timer.poll(cx, |cx| conn.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::connected_pair as pair;
    use tokio::io::AsyncWriteExt;

    /// Every connection's task holds this future for the connection's
    /// life: HTTP/1 ones must not pay for HTTP/2's larger connection, nor
    /// hold theirs twice (3,176 bytes before both were fixed, 784 after).
    #[tokio::test]
    async fn an_http1_connection_future_stays_small() {
        let (client, _server) = pair().await;
        let svc = hyper::service::service_fn(|_: http::Request<Incoming>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let servers = Servers::new(Limits { header_read_timeout: Duration::from_secs(1), max_header_bytes: 8192 });
        let drain = CancellationToken::new();
        let serving = servers.serve(Protocol::Http1, TokioIo::new(client), svc, &drain);
        let size = std::mem::size_of_val(&serving);
        assert!(size <= 1024, "{size} bytes");
    }

    /// The first byte decides almost always; the preface, even in pieces,
    /// means HTTP/2; sniffing consumes nothing.
    #[tokio::test]
    async fn sniffs_the_protocol_without_consuming() {
        for (sent, want) in [
            (&b"GET / HTTP/1.1\r\n"[..], Protocol::Http1),
            (b"POST / HTTP/1.1\r\n", Protocol::Http1),
            (b"PRI * HTTP/1.1\r\n", Protocol::Http1),
            (H2_PREFACE, Protocol::Http2),
        ] {
            let (mut client, server) = pair().await;
            client.write_all(sent).await.unwrap();
            assert_eq!(sniff(&server).await.unwrap(), want, "{}", String::from_utf8_lossy(sent));
            let mut buf = vec![0u8; sent.len()];
            server.peek(&mut buf).await.unwrap();
            assert_eq!(buf, sent);
        }
        // Five bytes of the preface: undecided until the rest comes.
        let (mut client, server) = pair().await;
        client.write_all(&H2_PREFACE[..5]).await.unwrap();
        let mut buf = [0u8; 5];
        while server.peek(&mut buf).await.unwrap() < 5 {}
        let sniffing = sniff(&server);
        tokio::pin!(sniffing);
        assert!(tokio::time::timeout(Duration::ZERO, sniffing.as_mut()).await.is_err(), "decided on a prefix");
        client.write_all(&H2_PREFACE[5..]).await.unwrap();
        assert_eq!(sniffing.await.unwrap(), Protocol::Http2);
    }
}
