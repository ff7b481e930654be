//! Which endpoint a try went to, so a retry can steer away from the one
//! that just failed (see [`AvoidEndpoint`](super::AvoidEndpoint)).
//!
//! A response names its endpoint already: its body holds the lease on the
//! endpoint's connection, so nothing is added per request. An error has no extensions, so the balancer wraps a failed
//! try's error in [`EndpointError`]; its `source()` is the cause, so
//! [`classify`](crate::error::classify) still sees through it.

use std::net::SocketAddr;

use http::Response;

use crate::body::Body;
use crate::error::BoxError;

/// A try that failed on a known endpoint.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {source}")]
pub struct EndpointError {
    /// The endpoint the try went to.
    pub endpoint: SocketAddr,
    /// What went wrong.
    #[source]
    pub source: BoxError,
}

/// The endpoint behind a try's result, when it is known.
pub fn served_by(result: &Result<Response<Body>, BoxError>) -> Option<SocketAddr> {
    match result {
        Ok(resp) => resp.body().served_by(),
        Err(err) => {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
            while let Some(e) = cur {
                if let Some(failed) = e.downcast_ref::<EndpointError>() {
                    return Some(failed.endpoint);
                }
                cur = e.source();
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{classify, Refusal};

    /// An endpoint error names its endpoint through any wrapping, and its
    /// cause is still what `classify` reports.
    #[test]
    fn endpoint_errors_name_the_endpoint_and_keep_the_cause() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let err: BoxError = Box::new(EndpointError { endpoint: addr, source: Box::new(Refusal::Timeout) });
        assert_eq!(classify(err.as_ref()), Refusal::Timeout);
        let result: Result<Response<Body>, BoxError> = Err(err);
        assert_eq!(served_by(&result), Some(addr));
        let unknown: Result<Response<Body>, BoxError> = Err(Box::new(Refusal::NoEndpoints));
        assert_eq!(served_by(&unknown), None);
    }

    /// A response from an endpoint's pool names the endpoint that sent it.
    #[tokio::test]
    async fn responses_name_their_endpoint() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        });
        let settings = crate::upstream::pool::PoolSettings::new(
            std::time::Duration::from_secs(1),
            crate::config::settings::Protocol::Http1,
        );
        let pool = std::sync::Arc::new(crate::upstream::pool::Pool::new(addr, std::sync::Arc::new(settings)));
        let req = http::Request::get("/").header("host", "x").body(Body::empty()).unwrap();
        let result = pool.send(req).await;
        assert_eq!(served_by(&result), Some(addr));
    }
}
