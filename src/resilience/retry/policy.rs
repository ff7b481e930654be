//! What is worth retrying, and after how long: pure decisions over a try's
//! result, the clock and the budget, with no I/O, so each rule is tested
//! alone.
//!
//! Conditions (`on:`) name either local errors or response statuses:
//! `connect-failure`, `reset`, `timeout` (the per-try timeout), a status
//! code, `5xx`, `gateway-error` (502, 503, 504). A connect failure never
//! reached the upstream, and the edge would answer it as a 502, so `5xx`
//! and `gateway-error` cover it too. Outrigger's own refusals (breaker
//! open, bulkhead full, no endpoints) are never retried: retrying them
//! would only hammer the gate that just said no.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Response, StatusCode};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::settings::{RetryOn, RetrySettings};
use crate::error::{classify, BoxError, Refusal};

/// A route's retry rules.
#[derive(Debug, Clone)]
pub struct Policy {
    attempts: u32,
    on: RetryOn,
    methods: Vec<Method>,
    max_body_bytes: usize,
    backoff: Backoff,
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Hand this result back: it succeeded, is not retryable, the tries are
    /// used up, or a retry could not finish before the route deadline.
    Relay,
    /// Try again after this wait (a token is already taken).
    Retry(Duration),
    /// A retry was due but the budget forbade it.
    BudgetExhausted,
}

impl Policy {
    /// The rules of a `retry:` block.
    pub fn new(settings: &RetrySettings) -> Self {
        Policy {
            attempts: settings.attempts.max(1),
            on: settings.on.clone(),
            methods: settings.methods.clone(),
            max_body_bytes: settings.max_body_bytes,
            backoff: Backoff::new(settings.backoff_base, settings.backoff_max),
        }
    }

    /// Tries in all, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The largest request body kept for replay.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Whether requests with `method` may be retried at all.
    pub fn retries_method(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// Whether a try's result matches a retry condition.
    pub fn is_retryable<B>(&self, result: &Result<Response<B>, BoxError>) -> bool {
        match result {
            Ok(resp) => self.on.status(resp.status().as_u16()),
            Err(err) => match classify(err.as_ref()) {
                Refusal::UpstreamConnectFailure => self.on.connect_failure || self.on.gateway_error || self.on.any_5xx,
                Refusal::UpstreamReset => self.on.reset,
                Refusal::Timeout => self.on.timeout,
                _ => false,
            },
        }
    }

    /// Whether try number `tries` (1-based) failed in a way worth another
    /// try, with tries left: what [`Policy::decide`] asks first, before
    /// any clock, random number or budget token.
    pub fn may_retry<B>(&self, result: &Result<Response<B>, BoxError>, tries: u32) -> bool {
        tries < self.attempts && self.is_retryable(result)
    }

    /// Decides after try number `tries` (1-based). The wait is the
    /// response's `Retry-After` when a retryable 429 or 503 carries one,
    /// else the backoff; a retry whose wait would reach `deadline` is not
    /// made. `withdraw` is asked for a budget token only when a retry is
    /// otherwise due.
    pub fn decide<B>(
        &self,
        result: &Result<Response<B>, BoxError>,
        tries: u32,
        now: Instant,
        deadline: Option<Instant>,
        rng: &mut fastrand::Rng,
        withdraw: impl FnOnce() -> bool,
    ) -> Decision {
        if !self.may_retry(result, tries) {
            return Decision::Relay;
        }
        let told = match result {
            Ok(resp) if matches!(resp.status(), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => {
                retry_after(resp.headers(), SystemTime::now())
            }
            _ => None,
        };
        let wait = told.unwrap_or_else(|| self.backoff.delay(tries, rng));
        if deadline.is_some_and(|d| now + wait >= d) {
            return Decision::Relay;
        }
        if !withdraw() {
            return Decision::BudgetExhausted;
        }
        Decision::Retry(wait)
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an
/// HTTP-date (relative to `now`; a date in the past means at once).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::retry::test_settings;

    fn status(code: u16) -> Result<Response<()>, BoxError> {
        Ok(Response::builder().status(code).body(()).unwrap())
    }

    fn retry_after_response(code: u16, secs: u64) -> Result<Response<()>, BoxError> {
        Ok(Response::builder().status(code).header("retry-after", secs).body(()).unwrap())
    }

    fn error(r: Refusal) -> Result<Response<()>, BoxError> {
        Err(Box::new(r))
    }

    fn policy(on: RetryOn) -> Policy {
        Policy::new(&RetrySettings { on, ..test_settings() })
    }

    /// Each condition retries exactly what it names; breaker, bulkhead and
    /// discovery refusals are never retried, whatever is configured.
    #[test]
    fn conditions_retry_what_they_name() {
        let gateway = policy(RetryOn { gateway_error: true, ..Default::default() });
        assert!(gateway.is_retryable(&status(502)) && gateway.is_retryable(&status(504)));
        assert!(!gateway.is_retryable(&status(500)) && !gateway.is_retryable(&status(200)));
        assert!(gateway.is_retryable(&error(Refusal::UpstreamConnectFailure)));
        assert!(!gateway.is_retryable(&error(Refusal::UpstreamReset)));

        let any = policy(RetryOn { any_5xx: true, ..Default::default() });
        assert!(any.is_retryable(&status(500)) && any.is_retryable(&status(599)));
        assert!(!any.is_retryable(&status(429)) && !any.is_retryable(&status(404)));

        let codes = policy(RetryOn { codes: vec![429], ..Default::default() });
        assert!(codes.is_retryable(&status(429)) && !codes.is_retryable(&status(503)));

        let errors = policy(RetryOn { reset: true, timeout: true, ..Default::default() });
        assert!(errors.is_retryable(&error(Refusal::UpstreamReset)));
        assert!(errors.is_retryable(&error(Refusal::Timeout)));
        assert!(!errors.is_retryable(&error(Refusal::UpstreamConnectFailure)));

        let all = policy(RetryOn {
            connect_failure: true,
            reset: true,
            timeout: true,
            any_5xx: true,
            gateway_error: true,
            codes: vec![429],
        });
        for refusal in [Refusal::CircuitOpen, Refusal::BulkheadFull, Refusal::NoEndpoints] {
            assert!(!all.is_retryable(&error(refusal)), "{refusal} must not be retried");
        }
    }

    /// Only the configured methods are retried.
    #[test]
    fn only_listed_methods_are_retried() {
        let p = Policy::new(&test_settings());
        assert!(p.retries_method(&Method::GET) && p.retries_method(&Method::PUT));
        assert!(!p.retries_method(&Method::POST) && !p.retries_method(&Method::PATCH));
    }

    /// A retry waits within the backoff ceiling, takes a token, and stops
    /// when the tries are used up or the budget says no.
    #[tokio::test(start_paused = true)]
    async fn retries_until_attempts_or_budget_run_out() {
        let p = Policy::new(&test_settings());
        let mut rng = fastrand::Rng::with_seed(3);
        let now = Instant::now();
        let deadline = Some(now + Duration::from_secs(10));
        let mut took = 0;
        match p.decide(&status(503), 1, now, deadline, &mut rng, || {
            took += 1;
            true
        }) {
            Decision::Retry(wait) => assert!(wait <= test_settings().backoff_base),
            other => panic!("expected a retry, got {other:?}"),
        }
        assert_eq!(took, 1);
        assert_eq!(p.decide(&status(503), 3, now, deadline, &mut rng, || true), Decision::Relay);
        assert_eq!(p.decide(&status(503), 2, now, deadline, &mut rng, || false), Decision::BudgetExhausted);
        assert_eq!(
            p.decide(&status(200), 1, now, deadline, &mut rng, || panic!("no token for a success")),
            Decision::Relay
        );
    }

    /// `Retry-After` on a 429/503 replaces the backoff, but a wait that
    /// would reach the route deadline means no retry (and no token taken).
    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_up_to_the_deadline() {
        let p = policy(RetryOn { codes: vec![429, 503, 502], ..Default::default() });
        let mut rng = fastrand::Rng::with_seed(5);
        let now = Instant::now();
        let deadline = Some(now + Duration::from_secs(3));
        let two = retry_after_response(429, 2);
        assert_eq!(p.decide(&two, 1, now, deadline, &mut rng, || true), Decision::Retry(Duration::from_secs(2)));
        let five = retry_after_response(503, 5);
        assert_eq!(p.decide(&five, 1, now, deadline, &mut rng, || panic!("no token")), Decision::Relay);
        assert_eq!(p.decide(&five, 1, now, None, &mut rng, || true), Decision::Retry(Duration::from_secs(5)));
        // Only 429 and 503 carry a meaningful Retry-After.
        let other = retry_after_response(502, 5);
        assert!(
            matches!(p.decide(&other, 1, now, deadline, &mut rng, || true), Decision::Retry(w) if w < Duration::from_secs(1))
        );
    }

    /// A backoff that would end past the deadline is not started.
    #[tokio::test(start_paused = true)]
    async fn no_backoff_past_the_deadline() {
        let s = RetrySettings {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(1),
            ..test_settings()
        };
        let p = Policy::new(&s);
        let now = Instant::now();
        for seed in 0..50 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let d = p.decide(&status(503), 1, now, Some(now + Duration::from_millis(500)), &mut rng, || true);
            match d {
                Decision::Retry(w) => assert!(w < Duration::from_millis(500), "seed {seed}: {w:?}"),
                Decision::Relay => {}
                Decision::BudgetExhausted => panic!("budget was not asked to refuse"),
            }
        }
        assert_eq!(
            p.decide(&status(503), 1, now, Some(now), &mut fastrand::Rng::with_seed(1), || true),
            Decision::Relay
        );
    }

    /// Both `Retry-After` forms parse; garbage is ignored.
    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", later.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert("retry-after", earlier.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }
}
