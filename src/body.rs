//! The one body type that flows through every layer.
//!
//! An enum rather than a boxed trait object, so the common cases (a body
//! streamed from hyper, a small buffered body, nothing) cost no
//! allocation. A response body carries the bulkhead slots its request
//! holds, dropped when the body ends or is dropped: that is how a slot is
//! released exactly when the client is done with the response.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;

use crate::error::BoxError;
use crate::resilience::bulkhead::Slot;
use crate::upstream::pool::Lease;

/// A request or response body.
pub struct Body {
    kind: Kind,
    /// Bulkhead slots, released when the body is dropped (after its last
    /// frame is sent). Held inline (a slot chains any earlier one), not as
    /// boxed guards: two allocations a request fewer with a bulkhead on.
    slot: Option<Slot>,
    /// The upstream connection a response came over: handed back to its
    /// pool when the last frame has passed.
    lease: Option<Lease>,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
    /// A request body as the client sends it: its errors are the client's
    /// (see [`ClientBodyError`]), never an upstream's.
    Client(Incoming),
    /// Chunks already read (and kept for a retry), then the rest.
    Prefixed(VecDeque<Bytes>, Box<Body>),
    Boxed(BoxBody<Bytes, BoxError>),
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Body { kind: Kind::Empty, slot: None, lease: None }
    }

    /// The body of a request from a client: an error reading it (the
    /// client went away mid-upload, sent a broken chunk) is a
    /// [`ClientBodyError`], so it is answered as the client's fault and not
    /// counted against the upstream the body was going to.
    pub fn from_client(b: Incoming) -> Self {
        Body { kind: Kind::Client(b), slot: None, lease: None }
    }

    /// Any other body, boxed.
    pub fn boxed<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        Body { kind: Kind::Boxed(body.map_err(Into::into).boxed()), slot: None, lease: None }
    }

    /// Chunks already read from `rest`, to be sent before it.
    pub fn prefixed(prefix: VecDeque<Bytes>, rest: Body) -> Self {
        Body { kind: Kind::Prefixed(prefix, Box::new(rest)), slot: None, lease: None }
    }

    /// A response body from an upstream connection, which goes back to
    /// its pool when the body ends.
    pub fn upstream(body: Incoming, mut lease: Lease) -> Self {
        if body.is_end_stream() {
            lease.release();
        }
        Body { kind: Kind::Incoming(body), slot: None, lease: Some(lease) }
    }

    /// The endpoint this body came from, for a response from an upstream.
    pub fn served_by(&self) -> Option<std::net::SocketAddr> {
        self.lease.as_ref().map(Lease::addr)
    }

    /// Keeps `slot` (and any slot held before it) until this body is
    /// dropped.
    pub fn hold(&mut self, mut slot: Slot) {
        slot.chain(self.slot.take());
        self.slot = Some(slot);
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body { kind: if b.is_empty() { Kind::Empty } else { Kind::Full(Some(b)) }, slot: None, lease: None }
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body { kind: Kind::Incoming(b), slot: None, lease: None }
    }
}

/// Reading a request body from the client failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the request body from the client: {0}")]
pub struct ClientBodyError(#[source] pub hyper::Error);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Incoming(_) => "incoming",
            Kind::Client(_) => "client",
            Kind::Prefixed(..) => "prefixed",
            Kind::Boxed(_) => "boxed",
        };
        f.debug_struct("Body").field("kind", &kind).finish()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = this.kind.poll_frame(cx);
        if let Some(lease) = &mut this.lease {
            match &frame {
                Poll::Ready(None) => lease.release(),
                Poll::Ready(Some(Ok(_))) if this.kind.is_end_stream() => lease.release(),
                _ => {}
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.kind.size_hint()
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // A body nobody read to its end (a HEAD, a 204, an empty retried
        // 503) may still have ended: then its connection is reusable.
        if let Some(lease) = &mut self.lease {
            if self.kind.is_end_stream() {
                lease.release();
            }
        }
    }
}

impl Kind {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::Client(b) => Pin::new(b).poll_frame(cx).map_err(|e| ClientBodyError(e).into()),
            Kind::Prefixed(prefix, rest) => match prefix.pop_front() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Kind::Empty => true,
            Kind::Full(d) => d.is_none(),
            Kind::Incoming(b) | Kind::Client(b) => b.is_end_stream(),
            Kind::Prefixed(p, rest) => p.is_empty() && rest.is_end_stream(),
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Incoming(b) | Kind::Client(b) => b.size_hint(),
            Kind::Prefixed(p, rest) => {
                let pre: u64 = p.iter().map(|b| b.len() as u64).sum();
                let r = rest.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(r.lower() + pre);
                if let Some(u) = r.upper() {
                    h.set_upper(u + pre);
                }
                h
            }
            Kind::Boxed(b) => b.size_hint(),
        }
    }
}
