//! Errors inside the proxy, and the one place they become responses.
//!
//! Layers return `BoxError`. The few causes a client must be told about
//! are [`Refusal`]s; anything else is classified by [`classify`]. The edge
//! calls [`rescue`] exactly once, so each local response is made in one
//! place and always carries `x-outrigger-error`.

use bytes::Bytes;
use http::{header::HeaderValue, Response, StatusCode};

use crate::body::Body;

/// The error type every layer returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The header naming why Outrigger answered instead of an upstream.
pub const ERROR_HEADER: &str = "x-outrigger-error";
/// The header counting the tries behind a relayed response (set when > 1).
pub const ATTEMPTS_HEADER: &str = "x-outrigger-attempts";

/// Why Outrigger said no: each one is a row of the contract's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No route matched.
    NoRoute,
    /// The circuit breaker is open (or half-open and full).
    CircuitOpen,
    /// The bulkhead's pool and queue were full, or the queue wait timed out.
    BulkheadFull,
    /// Discovery has no usable endpoint.
    NoEndpoints,
    /// The last try failed and the retry budget forbade another.
    RetryBudgetExhausted,
    /// The last try could not connect.
    UpstreamConnectFailure,
    /// The last try was reset or closed before a response.
    UpstreamReset,
    /// The route timeout or the last per-try timeout passed.
    Timeout,
    /// The request was malformed.
    BadRequest,
    /// The request's headers were too large.
    HeadersTooLarge,
}

impl Refusal {
    /// Every refusal, for building per-reason handles up front.
    pub const ALL: [Refusal; 10] = [
        Refusal::NoRoute,
        Refusal::CircuitOpen,
        Refusal::BulkheadFull,
        Refusal::NoEndpoints,
        Refusal::RetryBudgetExhausted,
        Refusal::UpstreamConnectFailure,
        Refusal::UpstreamReset,
        Refusal::Timeout,
        Refusal::BadRequest,
        Refusal::HeadersTooLarge,
    ];

    /// The `x-outrigger-error` token (also the `reason` metric label).
    pub fn token(self) -> &'static str {
        match self {
            Refusal::NoRoute => "no-route",
            Refusal::CircuitOpen => "circuit-open",
            Refusal::BulkheadFull => "bulkhead-full",
            Refusal::NoEndpoints => "no-endpoints",
            Refusal::RetryBudgetExhausted => "retry-budget-exhausted",
            Refusal::UpstreamConnectFailure => "upstream-connect-failure",
            Refusal::UpstreamReset => "upstream-reset",
            Refusal::Timeout => "timeout",
            Refusal::BadRequest | Refusal::HeadersTooLarge => "bad-request",
        }
    }

    /// The status the client sees.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NoRoute => StatusCode::NOT_FOUND,
            Refusal::CircuitOpen | Refusal::BulkheadFull | Refusal::NoEndpoints | Refusal::RetryBudgetExhausted => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::UpstreamConnectFailure | Refusal::UpstreamReset => StatusCode::BAD_GATEWAY,
            Refusal::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// A one-line explanation for the body, so a person reading it with
    /// curl learns what happened and what to look at.
    pub fn explanation(self) -> &'static str {
        match self {
            Refusal::NoRoute => {
                "no-route: no route of this listener matched the request (host, path, method, headers)\n"
            }
            Refusal::CircuitOpen => {
                "circuit-open: the circuit breaker is open after recent upstream failures; the request was not sent\n"
            }
            Refusal::BulkheadFull => {
                "bulkhead-full: the concurrency limit and its queue are full; the request was not sent\n"
            }
            Refusal::NoEndpoints => "no-endpoints: the cluster has no healthy endpoint right now\n",
            Refusal::RetryBudgetExhausted => {
                "retry-budget-exhausted: the last try failed and the retry budget forbade another\n"
            }
            Refusal::UpstreamConnectFailure => "upstream-connect-failure: could not connect to the upstream\n",
            Refusal::UpstreamReset => "upstream-reset: the upstream closed or reset the connection before answering\n",
            Refusal::Timeout => "timeout: the upstream did not answer within the route's timeout\n",
            Refusal::BadRequest => "bad-request: the request is malformed\n",
            Refusal::HeadersTooLarge => "bad-request: the request's headers are too large\n",
        }
    }

    /// Whether this refusal means the upstream misbehaved (for breakers,
    /// outlier detection and retry conditions), as opposed to Outrigger
    /// declining to send.
    pub fn is_upstream_failure(self) -> bool {
        matches!(self, Refusal::UpstreamConnectFailure | Refusal::UpstreamReset | Refusal::Timeout)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

impl std::error::Error for Refusal {}

/// Names the cause of an error in the contract's terms.
///
/// Walks the source chain: a [`Refusal`] anywhere wins; the client's own
/// request body failing is a bad request (not the upstream's doing): over
/// HTTP/1 the error itself says so, over HTTP/2 hyper only reports the
/// stream reset it sent because of it (initiated by the user, neither by
/// the peer nor by the h2 library); a client error raised while connecting
/// is a connect failure; a timeout is a timeout; anything else that broke
/// an exchange is a reset.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Refusal {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Refusal>() {
            return *r;
        }
        if e.is::<crate::body::ClientBodyError>() {
            return Refusal::BadRequest;
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if h2.is_reset() && !h2.is_remote() && !h2.is_library() {
                return Refusal::BadRequest;
            }
        }
        if e.is::<crate::upstream::pool::ConnectError>() {
            return Refusal::UpstreamConnectFailure;
        }
        if let Some(c) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            if c.is_connect() {
                return Refusal::UpstreamConnectFailure;
            }
        }
        if e.is::<tokio::time::error::Elapsed>() {
            return Refusal::Timeout;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return Refusal::Timeout;
            }
        }
        cur = e.source();
    }
    Refusal::UpstreamReset
}

/// Turns an error into the contract's local response. Called once, at the
/// edge.
pub fn rescue(err: &BoxError) -> (Refusal, Response<Body>) {
    let refusal = classify(err.as_ref());
    (refusal, local_response(refusal))
}

/// The response Outrigger makes up for a refusal.
pub fn local_response(refusal: Refusal) -> Response<Body> {
    let mut resp = Response::new(Body::from(Bytes::from_static(refusal.explanation().as_bytes())));
    *resp.status_mut() = refusal.status();
    let headers = resp.headers_mut();
    headers.insert(ERROR_HEADER, HeaderValue::from_static(refusal.token()));
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Whether an upstream exchange failed, as breakers and outlier detection
/// count it: connect failure, reset, timeout, or a 5xx. 4xx is a success.
/// Outrigger's own refusals (breaker open, bulkhead full) are not the
/// upstream's fault and count as neither.
pub fn outcome<B>(result: &Result<Response<B>, BoxError>) -> Outcome {
    match result {
        Ok(resp) if resp.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(e) => {
            if classify(e.as_ref()).is_upstream_failure() {
                Outcome::Failure
            } else {
                Outcome::Ignored
            }
        }
    }
}

/// What one upstream exchange means to a health tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered, and not with a 5xx.
    Success,
    /// Connect failure, reset, timeout or 5xx.
    Failure,
    /// Not the upstream's doing (a local refusal).
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal boxed deep in a chain is still found, and becomes the
    /// contract's status and token.
    #[test]
    fn rescue_maps_refusals_to_contract_responses() {
        for r in Refusal::ALL {
            let err: BoxError = Box::new(r);
            let (got, resp) = rescue(&err);
            assert_eq!(got, r);
            assert_eq!(resp.status(), r.status());
            assert_eq!(resp.headers()[ERROR_HEADER], r.token());
        }
        let io: BoxError = Box::new(std::io::Error::other("peer reset"));
        assert_eq!(rescue(&io).0, Refusal::UpstreamReset);
    }

    /// 4xx counts as success, 5xx and upstream errors as failure, local
    /// refusals as neither.
    #[test]
    fn outcomes_follow_the_contract() {
        let ok = |s: u16| -> Result<Response<()>, BoxError> { Ok(Response::builder().status(s).body(()).unwrap()) };
        assert_eq!(outcome(&ok(200)), Outcome::Success);
        assert_eq!(outcome(&ok(404)), Outcome::Success);
        assert_eq!(outcome(&ok(503)), Outcome::Failure);
        let timeout: Result<Response<()>, BoxError> = Err(Box::new(Refusal::Timeout));
        assert_eq!(outcome(&timeout), Outcome::Failure);
        let open: Result<Response<()>, BoxError> = Err(Box::new(Refusal::CircuitOpen));
        assert_eq!(outcome(&open), Outcome::Ignored);
    }
}
