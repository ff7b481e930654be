//! `dns`: A/AAAA records of a name (with a port), or SRV records.
//!
//! DNS has no watch, so the source re-resolves when the answer's TTL runs
//! out, held between `min_ttl` (so a TTL of 0 does not become a busy loop)
//! and `max_ttl` (so a long TTL still notices changes). A failed lookup
//! (a timeout, NXDOMAIN, no records) keeps the last set: a flaky resolver
//! must not empty a cluster. Only a changed answer is reported.
//!
//! SRV: the records of the best (lowest) priority are used, each target
//! resolved to its addresses, with the record's port and weight (a weight
//! of 0 counts as 1). A target that does not resolve is left out; only
//! when none resolves is the lookup a failure.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::{self, BoxStream, StreamExt};
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Resolver, TokioResolver};

use super::{Discover, EndpointSpec, Update};
use crate::error::BoxError;

/// What to resolve.
#[derive(Debug, Clone)]
pub enum Target {
    /// A/AAAA of `name`, each address with `port`.
    Host {
        /// The name.
        name: String,
        /// The port.
        port: u16,
    },
    /// SRV records of the name.
    Srv(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Host { name, port } => write!(f, "{name}:{port}"),
            Target::Srv(name) => write!(f, "SRV {name}"),
        }
    }
}

/// A DNS name, re-resolved at its TTL.
#[derive(Clone)]
pub struct DnsSource {
    /// What to resolve.
    pub target: Target,
    /// Name servers; empty means the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Shortest re-resolve interval.
    pub min_ttl: Duration,
    /// Longest re-resolve interval.
    pub max_ttl: Duration,
}

/// What the stream carries between answers.
struct State {
    source: DnsSource,
    resolver: Option<TokioResolver>,
    /// The last answer, so an unchanged one is not reported again.
    last: Option<Result<Vec<EndpointSpec>, String>>,
    /// Wait this long before the next lookup (zero for the first).
    wait: Duration,
}

impl Discover for DnsSource {
    fn updates(&self) -> BoxStream<'static, Update> {
        let mut source = self.clone();
        source.max_ttl = source.max_ttl.max(source.min_ttl);
        stream::unfold(State { source, resolver: None, last: None, wait: Duration::ZERO }, next).boxed()
    }
}

async fn next(mut st: State) -> Option<(Update, State)> {
    loop {
        tokio::time::sleep(st.wait).await;
        let s = &st.source;
        let (answer, ttl) = match lookup(&mut st.resolver, s).await {
            Ok((eps, ttl)) => (Ok(eps), ttl),
            Err(e) => (Err(format!("dns {}: {e}", s.target)), s.min_ttl),
        };
        st.wait = ttl.clamp(s.min_ttl, s.max_ttl);
        if st.last.as_ref() != Some(&answer) {
            st.last = Some(answer.clone());
            return Some((answer.map_err(Into::into), st));
        }
    }
}

/// Builds the resolver on first use (reading the system's config may
/// fail; that is a failed lookup, retried), then looks up.
async fn lookup(
    resolver: &mut Option<TokioResolver>,
    s: &DnsSource,
) -> Result<(Vec<EndpointSpec>, Duration), BoxError> {
    let r = match resolver {
        Some(r) => r,
        None => resolver.insert(build(s)?),
    };
    resolve(r, &s.target).await
}

/// A resolver for the configured servers, or the system's. Its cache holds
/// nothing longer than `max_ttl`, nor a failure longer than `min_ttl`.
fn build(s: &DnsSource) -> Result<TokioResolver, BoxError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if s.servers.is_empty() {
        Resolver::builder(provider)?
    } else {
        let mut config = ResolverConfig::new();
        for addr in &s.servers {
            config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
        }
        Resolver::builder_with_config(config, provider)
    };
    let opts = builder.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.positive_max_ttl = Some(s.max_ttl);
    opts.negative_max_ttl = Some(s.min_ttl);
    Ok(builder.build())
}

/// One lookup: the endpoints and how long the answer is good for.
async fn resolve(r: &TokioResolver, target: &Target) -> Result<(Vec<EndpointSpec>, Duration), BoxError> {
    match target {
        Target::Host { name, port } => {
            let ips = r.lookup_ip(name.as_str()).await?;
            let eps = ips.iter().map(|ip| EndpointSpec::new(SocketAddr::new(ip, *port))).collect();
            Ok((eps, remaining(ips.valid_until())))
        }
        Target::Srv(name) => {
            let srv = r.srv_lookup(name.as_str()).await?;
            let best = srv.iter().map(|s| s.priority()).min().ok_or("no SRV records")?;
            let records: Vec<_> = srv.iter().filter(|s| s.priority() == best).collect();
            let targets = join_all(records.iter().map(|s| r.lookup_ip(s.target().clone()))).await;
            let mut ttl = remaining(srv.as_lookup().valid_until());
            let mut eps = Vec::new();
            let mut failed = None;
            for (rec, ips) in records.iter().zip(targets) {
                // One target that does not resolve leaves the others serving.
                let ips = match ips {
                    Ok(ips) => ips,
                    Err(e) => {
                        failed = Some(e);
                        continue;
                    }
                };
                ttl = ttl.min(remaining(ips.valid_until()));
                for ip in ips.iter() {
                    let mut ep = EndpointSpec::new(SocketAddr::new(ip, rec.port()));
                    ep.weight = u32::from(rec.weight()).max(1);
                    eps.push(ep);
                }
            }
            if let (true, Some(e)) = (eps.is_empty(), failed) {
                return Err(format!("no SRV target resolves: {e}").into());
            }
            eps.sort_by_key(|e| e.address);
            eps.dedup_by_key(|e| e.address);
            Ok((eps, ttl))
        }
    }
}

/// Time left until the resolver's deadline (the resolver keeps std time).
fn remaining(until: std::time::Instant) -> Duration {
    until.saturating_duration_since(std::time::Instant::now())
}
