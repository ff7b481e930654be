//! Balancing a cluster's requests over its endpoints.
//!
//! Split by concern, as pingora's load balancer is:
//!
//! - [`policy`]: pure selection (round robin, random, least request,
//!   peak EWMA, ring hash, maglev) over endpoint indices, precomputed per
//!   endpoint set; it knows nothing of discovery or health.
//! - [`balancer`]: the [`Balancer`]: the current [`EndpointSet`], swapped
//!   whole (`ArcSwap`) on each discovery update; per-endpoint state
//!   (in flight, EWMA, ejection, health) survives for endpoints that
//!   remain. A pick reads the set without locks or allocation.
//! - [`outlier`]: passive health (eject after failures in a row).
//! - [`health_check`]: active health (a task probing each endpoint).
//! - [`census`]: endpoint counts by state, their gauges, panic mode.
//! - [`background`]: the per-cluster tasks, stopped with the cluster.
//! - [`service`]: the tower service that picks, sends and records.

pub mod background;
pub mod balancer;
pub mod census;
pub mod clock;
pub mod endpoint;
pub mod health_check;
pub mod outlier;
pub mod policy;
mod served_by;
pub mod service;
pub mod settings;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use balancer::{Balancer, EndpointSet};
pub use endpoint::{Endpoint, EndpointState, EndpointView};
pub use served_by::{served_by, EndpointError};
pub use settings::BalancerSettings;

/// A request extension the retry layer sets on a retried request: the
/// endpoint the previous try failed on, which the balancer avoids when
/// another endpoint is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvoidEndpoint(pub SocketAddr);
