//! The state machine, transition by transition.

use std::time::Duration;

use tokio::time::Instant;

use super::state::{Admission, Machine, State};
use super::{CircuitBreakerSettings, RateRule, SlowCallRule};
use crate::error::Outcome::{Failure, Ignored, Success};

const MS: Duration = Duration::from_millis(1);

/// Three consecutive failures trip it; no rate rule. (Also the
/// service's tests' breaker.)
pub(super) fn settings() -> CircuitBreakerSettings {
    CircuitBreakerSettings {
        consecutive_failures: Some(3),
        failure_rate: None,
        slow_call: None,
        open_duration: Duration::from_secs(10),
        max_open_duration: Duration::from_secs(35),
        half_open_max_requests: 1,
    }
}

fn allowed(m: &mut Machine, now: Instant) -> bool {
    matches!(m.admit(now).0, Admission::Allowed { .. })
}

/// Consecutive failures trip it; a success in between resets the count;
/// 4xx-like successes and local refusals never trip it.
#[test]
fn consecutive_failures_trip() {
    let t = Instant::now();
    let mut m = Machine::new(settings(), t);
    assert_eq!(m.record(t, false, Failure, MS, 1.0), None);
    assert_eq!(m.record(t, false, Failure, MS, 1.0), None);
    assert_eq!(m.record(t, false, Success, MS, 1.0), None);
    assert_eq!(m.record(t, false, Failure, MS, 1.0), None);
    assert_eq!(m.record(t, false, Ignored, MS, 1.0), None);
    assert_eq!(m.record(t, false, Failure, MS, 1.0), None);
    assert_eq!(m.record(t, false, Failure, MS, 1.0), Some(State::Open));
    assert_eq!(m.state(), State::Open);
    assert!(!allowed(&mut m, t + Duration::from_secs(9)));
}

/// After the open period exactly `half_open_max_requests` probes go; a
/// probe success closes; a probe failure re-opens for twice as long.
#[test]
fn half_open_probes() {
    let t = Instant::now();
    let mut m = Machine::new(CircuitBreakerSettings { half_open_max_requests: 2, ..settings() }, t);
    for _ in 0..3 {
        m.record(t, false, Failure, MS, 1.0);
    }
    let t1 = t + Duration::from_secs(10);
    assert_eq!(m.admit(t1), (Admission::Allowed { probe: true }, Some(State::HalfOpen)));
    assert_eq!(m.admit(t1), (Admission::Allowed { probe: true }, None));
    assert_eq!(m.admit(t1).0, Admission::Rejected);
    // A cancelled probe frees its slot.
    m.release_probe();
    assert_eq!(m.admit(t1).0, Admission::Allowed { probe: true });
    // One success is not enough with two probes; the second closes.
    assert_eq!(m.record(t1, true, Success, MS, 1.0), None);
    assert_eq!(m.record(t1, true, Success, MS, 1.0), Some(State::Closed));
    assert!(allowed(&mut m, t1));
}

/// Repeated trips double the open period up to the cap; a close resets it.
#[test]
fn open_period_grows_and_is_capped() {
    let t = Instant::now();
    let mut m = Machine::new(settings(), t);
    let trip = |m: &mut Machine, at: Instant| {
        for _ in 0..3 {
            m.record(at, false, Failure, MS, 1.0);
        }
    };
    trip(&mut m, t);
    assert_eq!(m.open_until(), Some(t + Duration::from_secs(10)));
    let t1 = t + Duration::from_secs(10);
    assert!(allowed(&mut m, t1));
    assert_eq!(m.record(t1, true, Failure, MS, 1.0), Some(State::Open));
    assert_eq!(m.open_until(), Some(t1 + Duration::from_secs(20)));
    let t2 = t1 + Duration::from_secs(20);
    assert!(allowed(&mut m, t2));
    m.record(t2, true, Failure, MS, 1.0);
    assert_eq!(m.open_until(), Some(t2 + Duration::from_secs(35)), "capped at max_open_duration");
    let t3 = t2 + Duration::from_secs(35);
    assert!(allowed(&mut m, t3));
    assert_eq!(m.record(t3, true, Success, MS, 1.0), Some(State::Closed));
    trip(&mut m, t3);
    assert_eq!(m.open_until(), Some(t3 + Duration::from_secs(10)), "reset after closing");
    // Jitter scales the period.
    let t4 = t3 + Duration::from_secs(10);
    assert!(allowed(&mut m, t4));
    m.record(t4, true, Failure, MS, 0.9);
    assert_eq!(m.open_until(), Some(t4 + Duration::from_secs(18)));
}

/// The failure rate trips only with `min_requests` in the window, and old
/// calls slide out of the window.
#[test]
fn failure_rate_with_min_requests_and_window() {
    let t = Instant::now();
    let s = CircuitBreakerSettings {
        consecutive_failures: None,
        failure_rate: Some(RateRule { threshold: 0.5, window: Duration::from_secs(10), min_requests: 10 }),
        ..settings()
    };
    let mut m = Machine::new(s, t);
    // 5 failures, 4 successes: 9 calls, under min_requests.
    for i in 0..9 {
        assert_eq!(m.record(t, false, if i % 2 == 0 { Failure } else { Success }, MS, 1.0), None);
    }
    // Much later: the old calls have left the window; 9 successes then
    // failures at 50%.
    let later = t + Duration::from_secs(30);
    for _ in 0..5 {
        assert_eq!(m.record(later, false, Success, MS, 1.0), None);
    }
    for _ in 0..4 {
        assert_eq!(m.record(later, false, Failure, MS, 1.0), None);
    }
    assert_eq!(m.record(later, false, Failure, MS, 1.0), Some(State::Open), "5 of 10 failed");
}

/// Slow calls trip the breaker at their rate, even when all succeed.
#[test]
fn slow_calls_trip() {
    let t = Instant::now();
    let s = CircuitBreakerSettings {
        consecutive_failures: None,
        slow_call: Some(SlowCallRule {
            duration: Duration::from_millis(100),
            rate: RateRule { threshold: 0.8, window: Duration::from_secs(10), min_requests: 5 },
        }),
        ..settings()
    };
    let mut m = Machine::new(s, t);
    assert_eq!(m.record(t, false, Success, MS * 10, 1.0), None);
    for _ in 0..3 {
        assert_eq!(m.record(t, false, Success, MS * 200, 1.0), None);
    }
    // 4 slow of 5 = 0.8.
    assert_eq!(m.record(t, false, Success, MS * 150, 1.0), Some(State::Open));
}

/// Outcomes of requests admitted while closed but finishing after the
/// breaker opened do not move it; nor do non-probe outcomes while half-open.
#[test]
fn stale_outcomes_are_ignored() {
    let t = Instant::now();
    let mut m = Machine::new(settings(), t);
    for _ in 0..3 {
        m.record(t, false, Failure, MS, 1.0);
    }
    assert_eq!(m.record(t, false, Success, MS, 1.0), None);
    assert_eq!(m.state(), State::Open);
    let t1 = t + Duration::from_secs(10);
    assert!(allowed(&mut m, t1));
    assert_eq!(m.record(t1, false, Failure, MS, 1.0), None);
    assert_eq!(m.state(), State::HalfOpen);
    // An ignored probe outcome frees the slot without deciding.
    assert_eq!(m.record(t1, true, Ignored, MS, 1.0), None);
    assert!(allowed(&mut m, t1));
}
