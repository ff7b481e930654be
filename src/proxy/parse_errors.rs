//! hyper answers a request it cannot parse (400, 414, 431) on its own,
//! before Outrigger sees a request, with a bare head. The contract says
//! every local response names its reason in `x-outrigger-error`, so this
//! wrapper around a client connection recognises those heads as they are
//! written, adds `x-outrigger-error: bad-request`, and counts and logs the
//! refusal like any other.
//!
//! They are recognised by their exact shape: for a parse error hyper
//! writes `HTTP/1.1 <400|414|431> <reason>\r\nconnection: close\r\n
//! content-length: 0\r\n`, its header map empty but for what it inserts
//! itself. Outrigger's own responses carry `x-outrigger-error` first, and a
//! relayed response keeps its headers ahead of the `connection` hyper
//! appends, so neither starts that way. (One would: a relayed response with
//! no headers at all and one of those statuses, to a client closing its
//! connection. It is then tagged too.)
//!
//! A write that is not such a head costs one byte compare on its way
//! through.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::edge::{refuse_unparsed, ConnContext};
use crate::error::Refusal;

/// What is inserted after the status line.
const TAG: &[u8] = b"x-outrigger-error: bad-request\r\n";

/// What follows the status line in hyper's own error heads.
const HYPER_TAIL: &[u8] = b"connection: close\r\ncontent-length: 0\r\n";

/// The status lines hyper writes for parse errors (after `HTTP/1.x`).
const STATUS_LINES: [(&[u8], StatusCode); 3] = [
    (b" 400 Bad Request\r\n", StatusCode::BAD_REQUEST),
    (b" 414 URI Too Long\r\n", StatusCode::URI_TOO_LONG),
    (b" 431 Request Header Fields Too Large\r\n", StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
];

/// If `buf` begins one of hyper's parse-error heads: where its status line
/// ends, and the status.
fn hyper_error_head(buf: &[u8]) -> Option<(usize, StatusCode)> {
    // "HTTP/1.1 4..": the byte at 9 rules out every other response at once.
    if buf.get(9) != Some(&b'4') || !(buf.starts_with(b"HTTP/1.1") || buf.starts_with(b"HTTP/1.0")) {
        return None;
    }
    let rest = &buf[8..];
    STATUS_LINES.iter().find_map(|(line, status)| {
        (rest.starts_with(line) && rest[line.len()..].starts_with(HYPER_TAIL)).then_some((8 + line.len(), *status))
    })
}

pin_project! {
    /// A client connection whose hyper-made error heads get the contract's
    /// header. Reads pass through untouched.
    pub struct TagParseErrors<T> {
        #[pin]
        inner: T,
        ctx: Arc<ConnContext>,
        // A rewritten head being written: bytes, how many are out, and how
        // many of the caller's bytes it stands for.
        pending: Option<(Vec<u8>, usize, usize)>,
    }
}

impl<T> TagParseErrors<T> {
    /// Wraps the connection `ctx` describes.
    pub fn new(inner: T, ctx: Arc<ConnContext>) -> Self {
        TagParseErrors { inner, ctx, pending: None }
    }
}

impl<T: AsyncRead> AsyncRead for TagParseErrors<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for TagParseErrors<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        if this.pending.is_none() {
            let Some((at, status)) = hyper_error_head(buf) else {
                return this.inner.poll_write(cx, buf);
            };
            let refusal = if status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
                Refusal::HeadersTooLarge
            } else {
                Refusal::BadRequest
            };
            refuse_unparsed(this.ctx, status, refusal);
            let mut head = Vec::with_capacity(buf.len() + TAG.len());
            head.extend_from_slice(&buf[..at]);
            head.extend_from_slice(TAG);
            head.extend_from_slice(&buf[at..]);
            *this.pending = Some((head, 0, buf.len()));
        }
        // hyper calls again with the same bytes until they are accepted.
        let (head, written, stands_for) = this.pending.as_mut().expect("set above");
        while *written < head.len() {
            let n = ready!(this.inner.as_mut().poll_write(cx, &head[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let accepted = (*stands_for).min(buf.len());
        *this.pending = None;
        Poll::Ready(Ok(accepted))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.pending.is_some() || first.is_some_and(|b| hyper_error_head(b).is_some()) {
            return self.poll_write(cx, first.map_or(&[][..], |b| &b[..]));
        }
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's own error heads are recognised; responses that merely share
    /// a status are not.
    #[test]
    fn only_hyper_heads_are_recognised() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_error_head(hyper_400), Some((26, StatusCode::BAD_REQUEST)));
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error_head(hyper_431).map(|h| h.1), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        for other in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nx-outrigger-error: bad-request\r\nconnection: close\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 4",
            b"",
        ] {
            assert_eq!(hyper_error_head(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}
