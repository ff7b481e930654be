//! A TCP stream that remembers it is waiting to read.
//!
//! hyper's HTTP/1 dispatcher tries to read on every turn of its loop, and
//! most of those reads find nothing: of the nine reads a proxied request
//! makes (client side and upstream side), two return bytes. With tokio, a
//! read that finds the socket not ready takes the socket's waiter lock to
//! store the task's waker, spends a unit of the task's cooperative budget
//! and gives it back: about 140 instructions, to learn what a single
//! atomic load can tell.
//!
//! [`Socket`] notes when a read returned `Pending` with the waker stored.
//! Until the socket turns readable, tokio keeps that waker (it takes it
//! only to wake it, and wakes it only after setting the readiness this
//! checks), so a later read by the same task that finds readiness still
//! clear returns `Pending` at once. Anything else (readiness set, another
//! waker, a `Pending` from an exhausted budget, which stores no waker)
//! takes tokio's own path.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] whose repeated not-ready reads cost one atomic load.
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    /// The waker tokio holds for this socket's read readiness, when the
    /// last read returned `Pending` having stored it. Kept (not cleared)
    /// between waits, so that storing the same task's waker again is a
    /// comparison, not a reference count.
    waiting: Option<Waker>,
    /// Whether `waiting` is stored with tokio now.
    parked: bool,
}

impl Socket {
    /// Wraps `stream`.
    pub fn new(stream: TcpStream) -> Self {
        Socket { stream, waiting: None, parked: false }
    }

    /// Whether a read now would find nothing, without reading, storing a
    /// waker or clearing readiness: the check's closure runs only when
    /// tokio has readiness recorded, and it returns `Ok`, which leaves the
    /// readiness as it was.
    fn not_readable(&self) -> bool {
        self.stream.try_io(Interest::READABLE, || Ok(())).is_err()
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked && this.waiting.as_ref().is_some_and(|w| w.will_wake(cx.waker())) && this.not_readable() {
            return Poll::Pending;
        }
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        // A `Pending` with budget left stored the waker; one from an
        // exhausted budget stored none (tokio wakes the task to yield).
        this.parked = read.is_pending() && tokio::task::coop::has_budget_remaining();
        if this.parked {
            match &mut this.waiting {
                Some(w) => w.clone_from(cx.waker()),
                None => this.waiting = Some(cx.waker().clone()),
            }
        }
        read
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Two ends of a loopback TCP connection (the connecting one first), for
/// tests of what runs over one.
#[cfg(test)]
pub(crate) async fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    use super::*;

    /// A waker that counts its wakes and lets a test wait for one.
    #[derive(Default)]
    struct Count {
        wakes: AtomicUsize,
        woken: Notify,
    }

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.woken.notify_one();
        }
    }

    impl Count {
        /// A count and the waker that counts into it.
        fn waker() -> (Arc<Count>, Waker) {
            let count = Arc::new(Count::default());
            (Arc::clone(&count), Waker::from(count))
        }

        /// Waits (the I/O driver runs meanwhile) until woken once.
        async fn woken(&self) {
            tokio::time::timeout(Duration::from_secs(10), self.woken.notified()).await.expect("never woken");
        }

        /// `peer` sends `bytes`; waits until they wake this count's waker.
        async fn woken_by(&self, peer: &mut TcpStream, bytes: &[u8]) {
            peer.write_all(bytes).await.unwrap();
            self.woken().await;
        }
    }

    async fn pair() -> (Socket, TcpStream) {
        let (client, server) = connected_pair().await;
        (Socket::new(client), server)
    }

    fn poll_read(socket: &mut Socket, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        Pin::new(socket).poll_read(cx, &mut read).map_ok(|()| read.filled().len())
    }

    /// Reads that find nothing, again and again, still leave the task to
    /// be woken by the bytes that come: the shortcut never loses a wake.
    #[tokio::test]
    async fn repeated_empty_reads_still_wake_when_bytes_come() {
        let (mut socket, mut peer) = pair().await;
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 16];
        for _ in 0..5 {
            assert!(poll_read(&mut socket, &mut cx, &mut buf).is_pending());
        }
        assert!(socket.parked, "the first not-ready read parked the socket");
        count.woken_by(&mut peer, b"hello").await;
        assert_eq!(count.wakes.load(Ordering::SeqCst), 1);
        match poll_read(&mut socket, &mut cx, &mut buf) {
            Poll::Ready(Ok(n)) => assert_eq!(&buf[..n], b"hello"),
            other => panic!("{other:?}"),
        }
        assert!(!socket.parked);
        // Waiting again, after a wake took the stored waker: stored anew.
        assert!(poll_read(&mut socket, &mut cx, &mut buf).is_pending());
        assert!(poll_read(&mut socket, &mut cx, &mut buf).is_pending());
        count.woken_by(&mut peer, b"again").await;
        assert_eq!(count.wakes.load(Ordering::SeqCst), 2);
    }

    /// A read polled with another task's waker stores that waker: the
    /// shortcut is only for the waker tokio holds.
    #[tokio::test]
    async fn another_wakers_read_stores_its_own_waker() {
        let (mut socket, mut peer) = pair().await;
        let ((first, first_waker), (second, second_waker)) = (Count::waker(), Count::waker());
        let mut buf = [0u8; 16];
        assert!(poll_read(&mut socket, &mut Context::from_waker(&first_waker), &mut buf).is_pending());
        assert!(poll_read(&mut socket, &mut Context::from_waker(&second_waker), &mut buf).is_pending());
        second.woken_by(&mut peer, b"x").await;
        assert_eq!(first.wakes.load(Ordering::SeqCst), 0);
    }

    /// A read refused because the task's cooperative budget ran out
    /// stores no waker (tokio wakes the task to yield instead), so it must
    /// not park: the next read by the same waker, budget restored, takes
    /// tokio's path and stores it, and the bytes wake it.
    #[tokio::test]
    async fn a_read_refused_by_the_budget_does_not_park() {
        let (mut socket, mut peer) = pair().await;
        let (count, waker) = Count::waker();
        let mut buf = [0u8; 16];
        let refused = std::future::poll_fn(|cx| {
            // Spend the budget.
            while let Poll::Ready(unit) = tokio::task::coop::poll_proceed(cx) {
                unit.made_progress();
            }
            Poll::Ready(poll_read(&mut socket, &mut Context::from_waker(&waker), &mut buf).is_pending())
        })
        .await;
        assert!(refused);
        // The wake to yield.
        count.woken().await;
        assert!(!socket.parked, "nothing stored, nothing to wait on");
        assert!(poll_read(&mut socket, &mut Context::from_waker(&waker), &mut buf).is_pending());
        assert!(socket.parked);
        count.woken_by(&mut peer, b"x").await;
        assert_eq!(count.wakes.load(Ordering::SeqCst), 2);
    }

    /// End to end through the wrapper: bytes both ways, then end of stream.
    #[tokio::test]
    async fn reads_and_writes_pass_through() {
        let (mut socket, mut peer) = pair().await;
        socket.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        peer.write_all(b"pong").await.unwrap();
        drop(peer);
        let mut all = Vec::new();
        // Bounded: a read that parked and missed its wake would hang here.
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut all))
            .await
            .expect("the bytes and the end of stream arrive")
            .unwrap();
        assert_eq!(all, b"pong");
    }
}
