//! One endpoint and the state kept about it while it stays in the set.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use http::uri::Authority;

use crate::discovery::EndpointSpec;

/// An endpoint with its running counters. Shared (`Arc`) between the
/// endpoint set, in-flight requests and the admin view; it survives an
/// endpoint-set update when its address remains.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The URI authority for requests to it, made once.
    pub authority: Authority,
    /// What discovery said about it last.
    pub spec: EndpointSpec,
    /// Requests sent and not yet finished.
    pub in_flight: AtomicU32,
    /// Requests sent.
    pub requests: AtomicU64,
    /// Failures (connect, reset, timeout, 5xx).
    pub failures: AtomicU64,
}

impl Endpoint {
    /// A fresh endpoint.
    pub fn new(spec: EndpointSpec) -> Self {
        let authority = Authority::try_from(spec.address.to_string().as_str()).expect("socket address is an authority");
        Endpoint {
            address: spec.address,
            authority,
            spec,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Requests in flight now.
    pub fn load(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}
