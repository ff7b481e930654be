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
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
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
        TimeoutFuture { inner: self.inner.call(req), sleep: tokio::time::sleep(self.timeout) }
    }
}

pin_project! {
    /// The response future of [`Timeout`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F, T, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.inner.poll(cx) {
            return Poll::Ready(r.map_err(Into::into));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Refusal::Timeout.into())),
            Poll::Pending => Poll::Pending,
        }
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
}
