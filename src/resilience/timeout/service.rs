use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::{BoxError, Refusal};

/// Fails a request that has not answered within its time.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    /// `None`: no deadline, every call passes straight through.
    timeout: Option<Duration>,
}

impl<S> Timeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Timeout { inner, timeout: Some(timeout) }
    }

    /// Wraps `inner` with a deadline, or with none (a pass-through): a
    /// route stack has one type whichever layers its route configures,
    /// rather than an `Either` per optional layer.
    pub fn optional(inner: S, timeout: Option<Duration>) -> Self {
        Timeout { inner, timeout }
    }
}

impl<S, R> tower::Service<R> for Timeout<S>
where
    S: tower::Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        TimeoutFuture { inner: Some(self.inner.call(req)), sleep: self.timeout.map(tokio::time::sleep) }
    }
}

pin_project! {
    /// The response future of [`Timeout`].
    pub struct TimeoutFuture<F> {
        // `None` once cut off.
        #[pin]
        inner: Option<F>,
        // `None`: no deadline.
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl<F, T, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Refusal::Timeout.into()));
        };
        if let Poll::Ready(r) = inner.poll(cx) {
            return Poll::Ready(r.map_err(Into::into));
        }
        match this.sleep.as_pin_mut().map_or(Poll::Pending, |s| s.poll(cx)) {
            Poll::Ready(()) => {
                // Dropped here, under the flag, so what it holds can tell a
                // timeout from a client that went away.
                let _cutting = CuttingOff::start();
                this.inner.set(None);
                Poll::Ready(Err(Refusal::Timeout.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

thread_local! {
    static CUTTING_OFF: Cell<bool> = const { Cell::new(false) };
}

/// Whether what is being dropped right now is being cut off by a timeout.
///
/// A layer below a timeout sees only a drop either way; this tells a
/// timeout (the try failed: count it against the breaker, the endpoint)
/// from a client that went away (nothing is known: count nothing). Free
/// on the request path: no per-request state, one thread-local read on a
/// drop without an outcome.
pub fn cutting_off() -> bool {
    CUTTING_OFF.with(Cell::get)
}

/// Raises the flag while a timeout drops its future (lowered even if a
/// drop panics).
struct CuttingOff(bool);

impl CuttingOff {
    fn start() -> Self {
        CuttingOff(CUTTING_OFF.with(|c| c.replace(true)))
    }
}

impl Drop for CuttingOff {
    fn drop(&mut self) {
        CUTTING_OFF.with(|c| c.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    /// A service slower than the timeout fails with `Refusal::Timeout`;
    /// a faster one answers. Paused time: no real waiting.
    #[tokio::test(start_paused = true)]
    async fn fails_slow_calls_only() {
        let slow = tower::service_fn(|d: u64| async move {
            tokio::time::sleep(Duration::from_millis(d)).await;
            Ok::<_, BoxError>(d)
        });
        let mut svc = Timeout::new(slow, Duration::from_millis(100));
        assert_eq!(svc.ready().await.unwrap().call(50).await.unwrap(), 50);
        let err = svc.ready().await.unwrap().call(150).await.unwrap_err();
        assert_eq!(crate::error::classify(err.as_ref()), Refusal::Timeout);
    }

    /// Records whether it was dropped while a timeout was cutting it off.
    struct Witness(std::sync::Arc<std::sync::Mutex<Option<bool>>>);

    impl Drop for Witness {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(cutting_off());
        }
    }

    /// What a timed-out call holds is dropped under the flag; what a
    /// caller drops (a client gone) is not, and the flag is down after.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_drop_is_told_from_a_client_drop() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let hang = {
            let seen = seen.clone();
            tower::service_fn(move |()| {
                let w = Witness(seen.clone());
                async move {
                    let _w = w;
                    std::future::pending::<Result<(), BoxError>>().await
                }
            })
        };
        let mut svc = Timeout::new(hang, Duration::from_millis(100));
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        assert_eq!(*seen.lock().unwrap(), Some(true), "cut off by the timeout");
        assert!(!cutting_off());

        let fut = svc.ready().await.unwrap().call(());
        let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
        assert_eq!(*seen.lock().unwrap(), Some(false), "dropped by its caller");
    }
}
