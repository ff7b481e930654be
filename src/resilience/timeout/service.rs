use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::clock;
use crate::error::{BoxError, Refusal};
use crate::scoped::Scoped;

/// What tokio makes of a deadline too far away to represent.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The deadline `timeout` from now (a deadline past what an `Instant`
/// holds is, as tokio makes it, about thirty years away).
fn ends_after(timeout: Duration) -> Instant {
    let now = clock::now();
    now.checked_add(timeout).unwrap_or_else(|| now + FAR_FUTURE)
}

/// Fails a request that has not answered within its time.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    /// `None`: no deadline, every call passes straight through.
    timeout: Option<Duration>,
    /// Futures inside may ask to be woken earlier ([`wake_at`]): the route
    /// has a per-try timeout.
    carries: bool,
}

impl<S> Timeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Timeout { inner, timeout: Some(timeout), carries: false }
    }

    /// Wraps `inner` with a deadline, or with none (a pass-through): a
    /// route stack has one type whichever layers its route configures,
    /// rather than an `Either` per optional layer.
    pub fn optional(inner: S, timeout: Option<Duration>) -> Self {
        Timeout { inner, timeout, carries: false }
    }

    /// Lets the futures inside ask to be woken before the deadline
    /// ([`wake_at`]): one timer a request instead of one per layer that
    /// wants one.
    pub fn carrying(mut self, carries: bool) -> Self {
        self.carries = carries;
        self
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
        let inner = Some(self.inner.call(req));
        // No timer yet: the connection polling the request carries the
        // deadline on its own ([`Carrier`]), or the first poll that leaves
        // the request pending makes one, for the earliest time asked for.
        TimeoutFuture { inner, own: Carrier::default(), ends: self.timeout.map(ends_after), carries: self.carries }
    }
}

pin_project! {
    /// The response future of [`Timeout`].
    pub struct TimeoutFuture<F> {
        // `None` once cut off.
        #[pin]
        inner: Option<F>,
        // Its own timer, made only when no [`Carrier`] polls it (an HTTP/2
        // stream's task, a test of one layer), for the earliest of the
        // deadline and what futures inside asked for.
        own: Carrier,
        // The deadline; `None`: none, every poll passes straight through.
        ends: Option<Instant>,
        // Futures inside may ask to be woken before the deadline
        // (`wake_at`).
        carries: bool,
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
        let Some(ends) = *this.ends else {
            return inner.poll(cx).map_err(Into::into);
        };
        // (Straight-line, no tuple of the response and the time asked:
        // that moved the response once more per request.)
        let collecting = this.carries.then(Collecting::start);
        if let Poll::Ready(r) = inner.poll(cx) {
            return Poll::Ready(r.map_err(Into::into));
        }
        let asked = collecting.and_then(Collecting::asked);
        if clock::now() >= ends {
            return cut_off(this.inner);
        }
        // Polled again once the earliest has passed: a deadline asked for
        // inside is then seen by what asked for it, this one here.
        wake_at_or(this.own, asked.map_or(ends, |at| at.min(ends)), cx);
        Poll::Pending
    }
}

/// Drops the request's future under the [`cutting_off`] flag: the deadline
/// passed.
fn cut_off<F, T>(mut inner: Pin<&mut Option<F>>) -> Poll<Result<T, BoxError>> {
    // Dropped here, under the flag, so what it holds can tell a timeout
    // from a client that went away.
    let _cutting = Scoped::set(&CUTTING_OFF, true);
    inner.set(None);
    Poll::Ready(Err(Refusal::Timeout.into()))
}

thread_local! {
    /// While a carrying timeout polls its request: the earliest time a
    /// future inside asked to be woken at, if any.
    static WAKE_AT: Cell<Collect> = const { Cell::new(Collect::Off) };
}

#[derive(Clone, Copy)]
enum Collect {
    /// No carrying timeout is polling.
    Off,
    /// One is; the earliest time asked for so far.
    On(Option<Instant>),
}

/// While it lives, [`wake_at`] is answered; [`Collecting::asked`] tells
/// the earliest time asked for.
struct Collecting {
    _scope: Scoped<Collect>,
}

impl Collecting {
    fn start() -> Self {
        Collecting { _scope: Scoped::set(&WAKE_AT, Collect::On(None)) }
    }

    /// The earliest time asked for since the start; ends the scope.
    fn asked(self) -> Option<Instant> {
        match WAKE_AT.with(Cell::get) {
            Collect::On(at) => at,
            Collect::Off => None,
        }
    }
}

/// Asks what polls this future (the route timeout, for a per-try
/// deadline; the connection's [`Carrier`], for the route timeout's) to
/// wake its task at `at`, on the timer it has anyway. `false` when nothing
/// carries it: the caller must set a timer of its own. Asked on each poll
/// that stays pending: the answer holds for that poll.
pub fn wake_at(at: Instant) -> bool {
    WAKE_AT.with(|c| match c.get() {
        Collect::Off => false,
        Collect::On(earliest) => {
            c.set(Collect::On(Some(earliest.map_or(at, |e| e.min(at)))));
            true
        }
    })
}

/// Arranges for the task to be woken at `at`: on the timer of what carries
/// this future ([`wake_at`]), else on `own`. Whoever asks checks the time
/// itself when polled again.
pub fn wake_at_or(own: &mut Carrier, at: Instant, cx: &mut Context<'_>) {
    if !wake_at(at) {
        own.arm(at, cx);
    }
}

/// A connection's one timer for the deadlines of the requests it serves
/// (and a future's own, where nothing carries it: [`wake_at_or`]).
///
/// A tokio timer made, registered and dropped per request (locking the
/// time driver twice) cost a proxied request ~400 instructions; a
/// connection's requests come one after another, each deadline later
/// than the last, and moving a registered timer later is one atomic
/// update, or none: a timer set earlier than needed wakes the task once
/// early, and whatever still waits asks again. So the connection's task
/// polls everything through [`Carrier::poll`], which answers [`wake_at`]
/// for the route timeout (and the per-try deadline it carries) with this
/// one timer, made on the first request that asks and kept for the
/// connection's life.
#[derive(Default)]
pub struct Carrier {
    sleep: Option<Pin<Box<Sleep>>>,
    /// The waker `sleep` was last polled with (a task's does not change
    /// from poll to poll).
    waker: Option<Waker>,
}

impl Carrier {
    /// Polls `f` with [`wake_at`] answered: while it stays pending, the
    /// task is woken at the earliest time asked for, or before.
    pub fn poll<T>(&mut self, cx: &mut Context<'_>, f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        let collecting = Collecting::start();
        let polled = f(cx);
        if let (Poll::Pending, Some(at)) = (&polled, collecting.asked()) {
            self.arm(at, cx);
        }
        polled
    }

    /// Wakes the task at `at`, or earlier.
    fn arm(&mut self, at: Instant, cx: &mut Context<'_>) {
        let polled_with = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        let sleep = match &mut self.sleep {
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
            // Set to wake this task at `at` or earlier: an early wake-up
            // costs one poll, in which whatever still waits asks again.
            // So the next request's later deadline moves nothing; the
            // timer is reset once per timeout's length, not per request.
            Some(sleep) if polled_with && sleep.deadline() <= at && !sleep.is_elapsed() => return,
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
        };
        if !polled_with {
            self.waker = Some(cx.waker().clone());
        }
        // Already passed: what asked sees it in the next poll, which reads
        // the time afresh.
        if sleep.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
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

    /// A future that ends at `at`, asking its timeout to wake it then; it
    /// counts the polls where no timeout carried it.
    struct Asks {
        at: Instant,
        uncarried: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Future for Asks {
        type Output = Result<&'static str, BoxError>;

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
            if Instant::now() >= self.at {
                return Poll::Ready(Ok("woken at its own time"));
            }
            if !wake_at(self.at) {
                self.uncarried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Poll::Pending
        }
    }

    /// A carrying timeout wakes its request at the earlier time asked for
    /// inside (one timer for both); a timeout that does not carry leaves
    /// the asker to set its own, and still cuts off at its deadline.
    #[tokio::test(start_paused = true)]
    async fn a_carrying_timeout_wakes_at_what_is_asked() {
        let uncarried = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let asks = {
            let uncarried = uncarried.clone();
            tower::service_fn(move |after: Duration| {
                std::future::ready(Ok::<_, BoxError>(Asks { at: Instant::now() + after, uncarried: uncarried.clone() }))
            })
            .and_then(|f: Asks| f)
        };
        let mut carrying = Timeout::new(asks.clone(), Duration::from_secs(10)).carrying(true);
        let start = Instant::now();
        let out = carrying.ready().await.unwrap().call(Duration::from_millis(100)).await.unwrap();
        assert_eq!(out, "woken at its own time");
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(uncarried.load(std::sync::atomic::Ordering::Relaxed), 0);
        // Asked for past the deadline: the deadline still holds.
        let err = carrying.ready().await.unwrap().call(Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(crate::error::classify(err.as_ref()), Refusal::Timeout);

        let mut plain = Timeout::new(asks, Duration::from_secs(10));
        let start = Instant::now();
        let _ = plain.ready().await.unwrap().call(Duration::from_millis(100)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10), "nobody woke it at 100 ms");
        assert!(uncarried.load(std::sync::atomic::Ordering::Relaxed) > 0, "wake_at said no");
    }

    /// Polls `fut` through `carrier`, as a connection's task polls its
    /// requests, until the timeout cuts it off.
    async fn cut_off_through<F, T>(carrier: &mut Carrier, mut fut: F)
    where
        F: Future<Output = Result<T, BoxError>> + Unpin,
    {
        let polled = std::future::poll_fn(|cx| carrier.poll(cx, |cx| Pin::new(&mut fut).poll(cx)));
        let outcome = tokio::time::timeout(Duration::from_secs(10), polled).await.expect("cut off, not left waiting");
        assert_eq!(crate::error::classify(outcome.err().expect("cut off").as_ref()), Refusal::Timeout);
    }

    /// A connection's requests ride on its one timer, made once: each is
    /// cut off at its own deadline, though the timer was set for an
    /// earlier request's and not moved when a later one came (it wakes
    /// the task early once, and the request waiting asks again). Paused
    /// time: the clock moves only to the next timer.
    #[tokio::test(start_paused = true)]
    async fn a_connection_carries_its_requests_deadlines_on_one_timer() {
        let mut svc = Timeout::new(
            tower::service_fn(|hang: bool| async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok::<_, BoxError>("answered")
            }),
            Duration::from_millis(100),
        );
        let mut carrier = Carrier::default();
        let timer = |c: &Carrier| c.sleep.as_ref().map(|s| std::ptr::from_ref::<Sleep>(s));

        let start = Instant::now();
        let mut first = Box::pin(svc.ready().await.unwrap().call(true));
        cut_off_through(&mut carrier, &mut first).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert!(first.own.sleep.is_none(), "the request made no timer of its own");
        let made = timer(&carrier).expect("the connection's timer");

        // The next sets it again, for t = 200 ms, and is dropped (its
        // client went away); the one after, sent at 110 ms, asks for
        // 210 ms: the timer, due earlier, is left as it is.
        let mut gone = Box::pin(svc.ready().await.unwrap().call(true));
        let once = std::future::poll_fn(|cx| Poll::Ready(carrier.poll(cx, |cx| gone.as_mut().poll(cx)))).await;
        assert!(once.is_pending());
        drop(gone);
        tokio::time::advance(Duration::from_millis(10)).await;
        let sent = Instant::now();
        cut_off_through(&mut carrier, Box::pin(svc.ready().await.unwrap().call(true))).await;
        assert_eq!(sent.elapsed(), Duration::from_millis(100), "at its own deadline");
        assert_eq!(timer(&carrier), Some(made), "the same timer throughout");
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
