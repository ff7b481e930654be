//! The breaker as a pure state machine: no I/O, no clock of its own (the
//! caller passes `now`), no randomness of its own (jitter is a parameter).
//! Everything about *when* a breaker opens and closes is decided here and
//! tested here.
//!
//! ```text
//!  closed --trip--> open --open period over--> half-open --probe ok--> closed
//!                    ^                             |
//!                    +-------- probe failed -------+
//! ```

use std::time::Duration;

use tokio::time::Instant;

use super::window::Window;
use super::CircuitBreakerSettings;
use crate::error::Outcome;

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow; outcomes are counted.
    Closed,
    /// Requests fail fast until the open period ends.
    Open,
    /// A few probes may go through to test the upstream.
    HalfOpen,
}

impl State {
    /// The `outrigger_circuit_state` value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    /// The name used in metrics (`to`), logs and /clusters.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// Whether a request may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes; `probe` when it is a half-open probe.
    Allowed {
        /// A half-open probe: its outcome decides the state.
        probe: bool,
    },
    /// No: the breaker is open (or half-open with every probe slot taken).
    Rejected,
}

/// The machine.
#[derive(Debug)]
pub struct Machine {
    settings: CircuitBreakerSettings,
    state: State,
    epoch: Instant,
    open_until: Instant,
    consecutive_failures: u32,
    failures: Window,
    slow: Window,
    /// Trips since the last close; the open period doubles with each.
    trips: u32,
    probes_in_flight: u32,
    probe_successes: u32,
}

impl Machine {
    /// A closed breaker.
    pub fn new(settings: CircuitBreakerSettings, now: Instant) -> Self {
        let failure_window = settings.failure_rate.map_or(Duration::from_secs(10), |r| r.window);
        let slow_window = settings.slow_call.map_or(Duration::from_secs(10), |r| r.rate.window);
        Machine {
            settings,
            state: State::Closed,
            epoch: now,
            open_until: now,
            consecutive_failures: 0,
            failures: Window::new(failure_window),
            slow: Window::new(slow_window),
            trips: 0,
            probes_in_flight: 0,
            probe_successes: 0,
        }
    }

    /// The state now (an open breaker whose period is over reads half-open
    /// only once a request asks).
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether an outcome can change nothing: closed, no failure in the
    /// streak, and no rate rule to feed. A success then leaves the machine
    /// as it is.
    pub fn at_rest(&self) -> bool {
        self.state == State::Closed
            && self.consecutive_failures == 0
            && self.settings.failure_rate.is_none()
            && self.settings.slow_call.is_none()
    }

    /// When an open breaker will admit probes.
    pub fn open_until(&self) -> Option<Instant> {
        (self.state == State::Open).then_some(self.open_until)
    }

    /// Asks to send a request. Returns the admission and the new state if
    /// asking changed it (open -> half-open).
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<State>) {
        self.admit_with(|| now)
    }

    /// [`Machine::admit`], reading the clock only if it needs the time
    /// (an open breaker): a closed one admits without it.
    pub fn admit_with(&mut self, now: impl FnOnce() -> Instant) -> (Admission, Option<State>) {
        let mut changed = None;
        if self.state == State::Open {
            if now() < self.open_until {
                return (Admission::Rejected, None);
            }
            self.state = State::HalfOpen;
            self.probes_in_flight = 0;
            self.probe_successes = 0;
            changed = Some(State::HalfOpen);
        }
        match self.state {
            State::Closed => (Admission::Allowed { probe: false }, changed),
            State::HalfOpen if self.probes_in_flight < self.settings.half_open_max_requests => {
                self.probes_in_flight += 1;
                (Admission::Allowed { probe: true }, changed)
            }
            _ => (Admission::Rejected, changed),
        }
    }

    /// A probe ended without an outcome (cancelled): frees its slot.
    pub fn release_probe(&mut self) {
        if self.state == State::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Records how a request ended. `jitter` in [0.9, 1.1] scales the next
    /// open period. Returns the new state if this changed it.
    pub fn record(
        &mut self,
        now: Instant,
        probe: bool,
        outcome: Outcome,
        took: Duration,
        jitter: f64,
    ) -> Option<State> {
        self.record_with(|| now, probe, outcome, took, jitter)
    }

    /// [`Machine::record`], reading the clock only if it needs the time:
    /// to trip, or for a rate rule's window. A closed breaker with only
    /// `consecutive_failures` records a success without it.
    pub fn record_with(
        &mut self,
        now: impl FnOnce() -> Instant,
        probe: bool,
        outcome: Outcome,
        took: Duration,
        jitter: f64,
    ) -> Option<State> {
        if outcome == Outcome::Ignored {
            if probe {
                self.release_probe();
            }
            return None;
        }
        let failed = outcome == Outcome::Failure;
        match self.state {
            State::HalfOpen if probe => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                if failed {
                    return Some(self.trip(now(), jitter));
                }
                self.probe_successes += 1;
                if self.probe_successes >= self.settings.half_open_max_requests {
                    self.close();
                    return Some(State::Closed);
                }
                None
            }
            // Outcomes of requests admitted before the breaker opened say
            // nothing about the upstream now.
            State::Open | State::HalfOpen => None,
            State::Closed => {
                self.consecutive_failures = if failed { self.consecutive_failures + 1 } else { 0 };
                if self.settings.failure_rate.is_none() && self.settings.slow_call.is_none() {
                    // No window is read: only the streak can trip.
                    let tripped = self.settings.consecutive_failures.is_some_and(|n| self.consecutive_failures >= n);
                    return tripped.then(|| self.trip(now(), jitter));
                }
                let now = now();
                let at = now.saturating_duration_since(self.epoch);
                self.failures.record(at, failed);
                if let Some(rule) = self.settings.slow_call {
                    self.slow.record(at, took >= rule.duration);
                }
                self.should_trip(at).then(|| self.trip(now, jitter))
            }
        }
    }

    fn should_trip(&self, at: Duration) -> bool {
        let s = &self.settings;
        if s.consecutive_failures.is_some_and(|n| self.consecutive_failures >= n) {
            return true;
        }
        let over = |(calls, hits): (u32, u32), threshold: f64, min: u32| {
            calls >= min && calls > 0 && f64::from(hits) / f64::from(calls) >= threshold
        };
        if let Some(r) = s.failure_rate {
            if over(self.failures.totals(at), r.threshold, r.min_requests) {
                return true;
            }
        }
        if let Some(r) = s.slow_call {
            if over(self.slow.totals(at), r.rate.threshold, r.rate.min_requests) {
                return true;
            }
        }
        false
    }

    fn trip(&mut self, now: Instant, jitter: f64) -> State {
        self.trips = self.trips.saturating_add(1);
        let factor = 2u32.saturating_pow(self.trips - 1);
        let base = self.settings.open_duration.saturating_mul(factor).min(self.settings.max_open_duration);
        let open_for = base.mul_f64(jitter.clamp(0.5, 1.5)).min(self.settings.max_open_duration.mul_f64(1.1));
        self.state = State::Open;
        self.open_until = now + open_for;
        self.reset_counts();
        State::Open
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.trips = 0;
        self.reset_counts();
    }

    fn reset_counts(&mut self) {
        self.consecutive_failures = 0;
        self.failures.clear();
        self.slow.clear();
        self.probes_in_flight = 0;
        self.probe_successes = 0;
    }
}
