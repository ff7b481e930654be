//! A real upstream server on 127.0.0.1:0 whose behaviour a test scripts:
//! a plan of faults consumed one per request, then a default.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use outrigger::body::Body;
use tokio::net::TcpListener;

/// What the upstream does with one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status.
    Status(u16),
    /// Wait, then answer with this status.
    Delay(Duration, u16),
    /// Close the connection without answering.
    Reset,
    /// Answer 429/503 with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// Wait until the test opens the gate, then answer with this status:
    /// a slow upstream that answers when the test says, not after a delay
    /// guessed to outlast whatever the test does meanwhile.
    Gated(Gate, u16),
}

/// Holds [`Fault::Gated`] requests until [`Gate::open`].
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    /// Lets every held request, and every later one, through.
    pub fn open(&self) {
        self.0.close();
    }

    async fn pass(&self) {
        // A closed semaphore wakes every waiter with an error: the gate is open.
        let _ = self.0.acquire().await;
    }
}

struct State {
    hits: AtomicUsize,
    plan: Mutex<VecDeque<Fault>>,
    default: Mutex<Fault>,
    last_headers: Mutex<Option<HeaderMap>>,
    /// Every request's head as text: request line, then each header line.
    heads: Mutex<Vec<String>>,
    last_authority: Mutex<Option<String>>,
    bodies: Mutex<Vec<Bytes>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// `(path, status)` answered to health probes, which are counted apart.
    health: Mutex<Option<(String, u16)>>,
    probes: AtomicUsize,
    accepted: AtomicUsize,
    open: AtomicUsize,
}

/// A running upstream.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Upstream {
    /// Starts an upstream answering 200 to everything.
    pub async fn start() -> Upstream {
        Self::start_with(Fault::Status(200)).await
    }

    /// Starts an upstream whose default behaviour is `fault`.
    pub async fn start_with(fault: Fault) -> Upstream {
        Self::start_proto(fault, false).await
    }

    /// Starts an HTTP/2-only (prior knowledge) upstream.
    pub async fn start_h2() -> Upstream {
        Self::start_proto(Fault::Status(200), true).await
    }

    /// Starts an upstream answering 200 on `addr` (another loopback IP, a
    /// chosen port), or the bind error.
    pub async fn start_at(addr: SocketAddr) -> std::io::Result<Upstream> {
        Ok(Self::serve_on(TcpListener::bind(addr).await?, Fault::Status(200), false))
    }

    async fn start_proto(fault: Fault, h2_only: bool) -> Upstream {
        Self::serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), fault, h2_only)
    }

    fn serve_on(listener: TcpListener, fault: Fault, h2_only: bool) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            hits: AtomicUsize::new(0),
            plan: Mutex::new(VecDeque::new()),
            default: Mutex::new(fault),
            last_headers: Mutex::new(None),
            heads: Mutex::new(Vec::new()),
            last_authority: Mutex::new(None),
            bodies: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            health: Mutex::new(None),
            probes: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let st = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::SeqCst);
                st.open.fetch_add(1, Ordering::SeqCst);
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let _open = Open(Arc::clone(&st));
                    let svc = hyper::service::service_fn(move |req| {
                        let st = Arc::clone(&st);
                        async move { serve(st, addr, req).await }
                    });
                    let mut b = auto::Builder::new(TokioExecutor::new());
                    if h2_only {
                        b = b.http2_only();
                    }
                    let _ = b.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Upstream { addr, state }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// The most requests handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Queues faults for the next requests, in order.
    pub fn plan(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.plan.lock().unwrap().extend(faults);
    }

    /// Sets the behaviour once the plan is used up.
    pub fn set_default(&self, fault: Fault) {
        *self.state.default.lock().unwrap() = fault;
    }

    /// Headers of the last request.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.state.last_headers.lock().unwrap().clone()
    }

    /// Every request's head, in order, as text: `METHOD target VERSION`,
    /// then a `name: value` line per header.
    pub fn heads(&self) -> Vec<String> {
        self.state.heads.lock().unwrap().clone()
    }

    /// The authority of the last request's URI (HTTP/2's `:authority`;
    /// none in an HTTP/1.1 origin-form request).
    pub fn last_authority(&self) -> Option<String> {
        self.state.last_authority.lock().unwrap().clone()
    }

    /// Answers requests for `path` with `status` from now on, counting them
    /// in [`probes`](Self::probes) instead of `hits` and leaving the plan
    /// alone (a health-check endpoint).
    pub fn set_health(&self, path: &str, status: u16) {
        *self.state.health.lock().unwrap() = Some((path.to_owned(), status));
    }

    /// Health probes received so far (see `set_health`).
    pub fn probes(&self) -> usize {
        self.state.probes.load(Ordering::SeqCst)
    }

    /// Bodies received (those under 1 MiB), in order.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.state.bodies.lock().unwrap().clone()
    }
}

struct Open(Arc<State>);
impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

struct InFlight<'a>(&'a State);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(st: Arc<State>, addr: SocketAddr, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let health = st.health.lock().unwrap().clone();
    if let Some((path, status)) = health.filter(|(p, _)| p == req.uri().path()) {
        st.probes.fetch_add(1, Ordering::SeqCst);
        let mut r = Response::new(Body::from(format!("{addr} {path}\n")));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        return Ok(r);
    }
    st.hits.fetch_add(1, Ordering::SeqCst);
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&st);
    let fault = st.plan.lock().unwrap().pop_front().unwrap_or_else(|| st.default.lock().unwrap().clone());
    *st.last_headers.lock().unwrap() = Some(req.headers().clone());
    let mut head = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (name, value) in req.headers() {
        head.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    st.heads.lock().unwrap().push(head);
    *st.last_authority.lock().unwrap() = req.uri().authority().map(|a| a.to_string());
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    // Read the body as a stream, counting bytes (a 100 MB upload is never
    // held whole).
    let mut body = req.into_body();
    let mut received: u64 = 0;
    let mut small = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            received += d.len() as u64;
            if small.len() < 1 << 20 {
                small.extend_from_slice(d);
            }
        }
    }
    if received > 0 {
        st.bodies.lock().unwrap().push(Bytes::from(small));
    }
    let status = match fault {
        Fault::Status(s) => s,
        Fault::Delay(d, s) => {
            tokio::time::sleep(d).await;
            s
        }
        Fault::Gated(gate, s) => {
            gate.pass().await;
            s
        }
        Fault::Reset => return Err(std::io::Error::other("scripted reset")),
        Fault::RetryAfter(s, secs) => {
            let mut r = Response::new(Body::from("retry later\n"));
            *r.status_mut() = http::StatusCode::from_u16(s).unwrap();
            r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
            return Ok(r);
        }
    };
    if path.ends_with("/trailers") {
        // A body followed by trailers (HTTP/2 carries them end to end),
        // announced in `Trailer` as an HTTP/1.1 hop needs.
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = futures_util::stream::iter([
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"with trailers\n"))),
            Ok(Frame::trailers(trailers)),
        ]);
        let mut r = Response::new(Body::boxed(StreamBody::new(frames)));
        r.headers_mut().insert("trailer", "grpc-status".parse().unwrap());
        return Ok(r);
    }
    if path.ends_with("/download") {
        // /download?bytes=N streams N bytes in 64 KiB chunks.
        let n: u64 = query.strip_prefix("bytes=").and_then(|v| v.parse().ok()).unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(n, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let take = left.min(chunk.len() as u64);
                Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..take as usize))), left - take))
            }
        });
        let mut r = Response::new(Body::boxed(StreamBody::new(stream)));
        r.headers_mut().insert("x-upstream", addr.to_string().parse().unwrap());
        return Ok(r);
    }
    let text = format!("{addr} {path} received={received}\n");
    let mut r = Response::new(Body::boxed(Full::new(Bytes::from(text))));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("x-upstream", addr.to_string().parse().unwrap());
    r.headers_mut().insert("x-received-bytes", received.to_string().parse().unwrap());
    Ok(r)
}
