//! Keeping a request body so a retry can send the same bytes again.
//!
//! A body can be read only once, so a retryable request's body is read
//! whole before the first try, up to `max_body_bytes`; every try then sends
//! a cheap clone of the same [`Bytes`]. A body that is (or turns out to be)
//! larger is not held: the bytes already read are sent first, the rest is
//! streamed, and the request gets one try. Memory per request stays
//! bounded by the cap, and an upload is never held whole.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body::{Body as _, Frame};

use crate::body::Body;
use crate::error::BoxError;

/// A request body, once it is known whether it can be replayed.
#[derive(Debug)]
pub enum Replay {
    /// Held whole: every try sends these bytes.
    Buffered(Bytes),
    /// Too large (or carrying trailers): sent once, as it streams.
    Streamed(Body),
}

/// What to do with a body before the first try.
#[derive(Debug)]
pub enum Start {
    /// Decided already, without reading.
    Ready(Replay),
    /// Must be read first.
    Read(Buffering),
}

/// Decides from the headers when it can: an empty body replays as
/// nothing; a `Content-Length` over `cap` streams at once.
pub fn start(body: Body, headers: &HeaderMap, cap: usize) -> Start {
    if body.is_end_stream() {
        return Start::Ready(Replay::Buffered(Bytes::new()));
    }
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Start::Ready(Replay::Streamed(body));
    }
    Start::Read(Buffering { body, first: None, joined: BytesMut::new(), read: 0, cap })
}

/// A body being read into memory, up to its cap.
#[derive(Debug)]
pub struct Buffering {
    body: Body,
    /// The first chunk, kept as is: a body of one chunk is never copied.
    first: Option<Bytes>,
    /// Every chunk, joined, once there is more than one.
    joined: BytesMut,
    read: usize,
    cap: usize,
}

impl Buffering {
    /// Reads on until the body ends (replayable) or passes the cap
    /// (streamed, with what was read sent first).
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Replay, BoxError>> {
        loop {
            let frame = match ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(Ok(Replay::Buffered(self.take()))),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                Some(Ok(frame)) => frame,
            };
            let chunk = match frame.into_data() {
                Ok(chunk) => chunk,
                Err(frame) => {
                    // Trailers: rare in requests; send them on, untried again.
                    return Poll::Ready(Ok(self.stream_with(frame.into_trailers().ok())));
                }
            };
            self.read += chunk.len();
            self.push(chunk);
            if self.read > self.cap {
                return Poll::Ready(Ok(self.stream_with(None)));
            }
        }
    }

    fn push(&mut self, chunk: Bytes) {
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(chunk),
            None => self.joined.extend_from_slice(&chunk),
            Some(first) => {
                let hint = self.body.size_hint().lower() as usize;
                self.joined.reserve((first.len() + chunk.len() + hint).min(self.cap + 1));
                self.joined.extend_from_slice(&first);
                self.joined.extend_from_slice(&chunk);
            }
        }
    }

    fn take(&mut self) -> Bytes {
        self.first.take().unwrap_or_else(|| std::mem::take(&mut self.joined).freeze())
    }

    /// The bytes read so far, then the rest of the body (or the trailers
    /// that ended it).
    fn stream_with(&mut self, trailers: Option<HeaderMap>) -> Replay {
        let read = self.take();
        let prefix: VecDeque<Bytes> = if read.is_empty() { VecDeque::new() } else { VecDeque::from([read]) };
        let rest = match trailers {
            Some(t) => {
                let frame = Ok::<_, Infallible>(Frame::trailers(t));
                Body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(Some(frame))))
            }
            None => std::mem::take(&mut self.body),
        };
        Replay::Streamed(Body::prefixed(prefix, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body streamed chunk by chunk, with no length known.
    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c)))).collect();
        Body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(frames)))
    }

    async fn resolve(body: Body, headers: &HeaderMap, cap: usize) -> Replay {
        match start(body, headers, cap) {
            Start::Ready(r) => r,
            Start::Read(mut b) => std::future::poll_fn(|cx| b.poll(cx)).await.unwrap(),
        }
    }

    async fn bytes_of(body: Body) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    /// A body under the cap is held whole, chunks joined in order.
    #[tokio::test]
    async fn small_bodies_are_buffered() {
        let r = resolve(chunked(&[b"hello ", b"wor", b"ld"]), &HeaderMap::new(), 64).await;
        assert!(matches!(r, Replay::Buffered(ref b) if b == "hello world"), "{r:?}");
        let r = resolve(Body::from("one chunk"), &HeaderMap::new(), 9).await;
        assert!(matches!(r, Replay::Buffered(ref b) if b == "one chunk"), "{r:?}");
        let r = resolve(Body::empty(), &HeaderMap::new(), 0).await;
        assert!(matches!(r, Replay::Buffered(ref b) if b.is_empty()), "{r:?}");
    }

    /// A declared length over the cap streams without reading anything.
    #[tokio::test]
    async fn declared_large_bodies_stream_unread() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "11".parse().unwrap());
        match start(chunked(&[b"hello ", b"world"]), &h, 10) {
            Start::Ready(Replay::Streamed(body)) => assert_eq!(bytes_of(body).await, "hello world"),
            other => panic!("expected to stream, got {other:?}"),
        }
    }

    /// An undeclared body that passes the cap is sent whole: what was read,
    /// then the rest, byte for byte.
    #[tokio::test]
    async fn undeclared_large_bodies_stream_intact() {
        let r = resolve(chunked(&[b"aaaa", b"bbbb", b"cccc", b"dddd"]), &HeaderMap::new(), 10).await;
        match r {
            Replay::Streamed(body) => assert_eq!(bytes_of(body).await, "aaaabbbbccccdddd"),
            other => panic!("expected to stream, got {other:?}"),
        }
    }

    /// Trailers are passed on, not dropped, and the body is not replayed.
    #[tokio::test]
    async fn trailers_are_kept() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        let frames = vec![Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"msg"))), Ok(Frame::trailers(t))];
        let body = Body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(frames)));
        match resolve(body, &HeaderMap::new(), 64).await {
            Replay::Streamed(body) => {
                let collected = body.collect().await.unwrap();
                assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
                assert_eq!(collected.to_bytes(), "msg");
            }
            other => panic!("expected to stream, got {other:?}"),
        }
    }
}
