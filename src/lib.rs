//! # Outrigger
//!
//! A service-mesh sidecar proxy: it carries an app's HTTP traffic and adds
//! circuit breaking, retries with budgets, bulkheads, load balancing and
//! discovery, each a tower layer configured per route in YAML.
//!
//! # Layout
//!
//! - `config`: YAML -> validated settings, errors with `FILE:LINE:COL`, reload.
//! - `proxy`: listeners, the edge handler, router, route stacks, clusters, table.
//! - `resilience`: timeout, retry, circuit breaker, bulkhead layers.
//! - `balance`: endpoint sets, LB policies, outlier ejection, health checks.
//! - `discovery`: one trait, one file per registry source.
//! - `upstream`: the pooled endpoint client.
//! - `admin`: `/metrics`, `/live`, `/ready`, `/config`, `/clusters`, `/reload`.
//! - `metrics`: every Prometheus family, registered into an injected registry.
//! - `error`: `BoxError`, the contract's refusals, `rescue()`.
//! - `fswatch`: a debounced watch on a file's folder (config and file discovery).
//! - `body`: the one body type, with drop guards.
//! - `clock`: the time, read once per poll of a connection's task.
//! - `runtime`: the running proxy: start, reload, drain.
//! - `demo`: small built-in upstreams for a first run.
//! - `telemetry`: tracing setup.
//! - `iptables`: the pod's redirect rules, applied or printed as a script.
//! - `socket`: a TCP stream whose repeated not-ready reads are one atomic load.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod balance;
pub mod body;
pub mod clock;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod fswatch;
pub mod iptables;
pub mod metrics;
pub mod proxy;
pub mod resilience;
pub mod runtime;
mod scoped;
pub mod socket;
pub mod telemetry;
pub mod upstream;
