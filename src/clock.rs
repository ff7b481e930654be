//! The time, read once per poll of a connection's task.
//!
//! A proxied request used to read the clock seven times (its start and
//! end, the route timeout's deadline, the try's start and end, the pool's
//! idle stamp, hyper's header-read timer), about 25 ns each on a virtual
//! machine. NGINX reads it once per turn of its event loop; Outrigger
//! reads it at most once per poll of a connection's task: while
//! [`frozen`] is in scope the first [`now`] reads the clock and the rest
//! reuse that reading. A poll lasts microseconds, so the readings are as
//! good as fresh ones; outside a connection's poll (health checks,
//! discovery, tests of one layer) [`now`] is the clock itself.

use std::cell::Cell;
use std::future::Future;

use tokio::time::Instant;

use crate::scoped::Scoped;

#[derive(Clone, Copy)]
enum Reading {
    /// Not in a connection's poll: read the clock each time.
    Live,
    /// In one, not read yet.
    Due,
    /// In one, read at this time.
    At(Instant),
}

thread_local! {
    static NOW: Cell<Reading> = const { Cell::new(Reading::Live) };
}

/// The time: the clock, or the reading taken earlier in this poll.
pub fn now() -> Instant {
    NOW.with(|c| match c.get() {
        Reading::At(t) => t,
        Reading::Live => Instant::now(),
        Reading::Due => {
            let t = Instant::now();
            c.set(Reading::At(t));
            t
        }
    })
}

/// Until the guard drops, [`now`] reads the clock once and then answers
/// that reading. Hold it only for one poll.
pub fn frozen() -> impl Drop {
    Scoped::set(&NOW, Reading::Due)
}

/// hyper's executor for HTTP/2 streams, each a task of its own: every
/// poll of one reads the time once, as a connection's task does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Frozen { fut });
    }
}

pin_project_lite::pin_project! {
    /// Polls `fut` with the time frozen for the poll.
    struct Frozen<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Frozen<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let _frozen = frozen();
        self.project().fut.poll(cx)
    }
}

/// hyper's timer (header-read timeouts, keep-alive), telling the time by
/// [`now`]; its sleeps are tokio's.
#[derive(Clone, Debug, Default)]
pub struct Timer(hyper_util::rt::TokioTimer);

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: std::time::Duration) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        match self.now().checked_add(duration) {
            Some(deadline) => self.sleep_until(deadline),
            // Past what an `Instant` holds: tokio's own sleep saturates.
            None => self.0.sleep(duration),
        }
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep_until(deadline)
    }

    fn now(&self) -> std::time::Instant {
        now().into_std()
    }

    fn reset(&self, sleep: &mut std::pin::Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        self.0.reset(sleep, new_deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a frozen scope every reading is the first; outside it, and after
    /// it, the clock moves again. Paused time: the clock moves only when
    /// told to.
    #[tokio::test(start_paused = true)]
    async fn one_reading_per_scope() {
        let before = now();
        tokio::time::advance(std::time::Duration::from_millis(5)).await;
        assert_eq!(now() - before, std::time::Duration::from_millis(5), "live outside a scope");
        {
            let _frozen = frozen();
            let first = now();
            tokio::time::advance(std::time::Duration::from_millis(5)).await;
            assert_eq!(now(), first, "the scope's first reading");
            {
                let _inner = frozen();
                assert!(now() > first, "a scope inside reads afresh");
            }
            assert_eq!(now(), first, "and the outer scope's reading is back");
        }
        let after = now();
        tokio::time::advance(std::time::Duration::from_millis(5)).await;
        assert_eq!(now() - after, std::time::Duration::from_millis(5), "live again");
    }

    /// A task hyper's executor spawns polls with the time frozen.
    #[tokio::test]
    async fn executor_tasks_read_the_time_once_per_poll() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        hyper::rt::Executor::execute(&Executor, async move {
            let first = now();
            std::thread::sleep(std::time::Duration::from_millis(2));
            tx.send(now() == first).unwrap();
        });
        assert!(rx.await.unwrap(), "the second reading was the first");
    }

    /// hyper's timer with a sleep too long for an `Instant` (a huge
    /// configured timeout) sleeps "forever", as tokio's does, instead of
    /// panicking.
    #[tokio::test]
    async fn a_sleep_past_what_an_instant_holds_does_not_panic() {
        let _frozen = frozen();
        let forever = hyper::rt::Timer::sleep(&Timer::default(), std::time::Duration::MAX);
        assert!(futures_util::poll!(forever).is_pending());
    }
}
