//! Upstream connections: [`pool`], each endpoint's own connections, for
//! proxied requests; and hyper-util's pooled client for health checks.

pub mod pool;

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::config::settings::Protocol;

/// A pooled HTTP client for one cluster's health checks.
pub type HttpClient = Client<HttpConnector, Body>;

/// Builds a cluster's client.
pub fn client(connect_timeout: Duration, protocol: Protocol) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256);
    if protocol == Protocol::Http2 {
        builder.http2_only(true);
    }
    builder.build(connector)
}
