//! Where a cluster's endpoints come from.
//!
//! One trait, [`Discover`]: a stream of endpoint-set updates. One file per
//! source. A driver task feeds each update into the cluster's balancer;
//! discovery never touches the routing table.
//!
//! Why whole sets and not add/remove events: every registry here can
//! lose events (a dropped watch, a missed inotify, DNS has none), and each
//! source recovers by re-reading everything; a whole set makes that
//! recovery the normal path. A source reports an error instead of a set
//! when it cannot answer; the driver then keeps the last good set. Sources
//! report only changed sets, so a quiet registry costs no rebalancing.
//!
//! - `static_`: the config's list. `file`: a watched YAML/JSON file.
//! - `dns`: A/AAAA or SRV, re-resolved at the TTL. `kubernetes`:
//!   EndpointSlices, watched. `etcd`: keys under a prefix, watched.
//! - `wire`: the endpoint shapes files and etcd values share.
//! - `registration`: this proxy's own key in etcd, under a lease.

pub mod dns;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod file;
pub mod kubernetes;
#[cfg(feature = "etcd")]
pub mod registration;
#[cfg(not(feature = "etcd"))]
#[path = "registration_off.rs"]
pub mod registration;
pub mod static_;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::stream::BoxStream;
use serde::Serialize;

use crate::error::BoxError;

/// One endpoint as a registry describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointSpec {
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative weight (>= 1).
    pub weight: u32,
    /// Free-form labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl EndpointSpec {
    /// An endpoint of weight 1 without metadata.
    pub fn new(address: SocketAddr) -> Self {
        EndpointSpec { address, weight: 1, metadata: BTreeMap::new() }
    }
}

/// A port by name or number (Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// By number.
    Number(u16),
    /// By name.
    Name(String),
}

/// A validated `discovery:` block.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoverySettings {
    /// A fixed list.
    Static(Vec<EndpointSpec>),
    /// A watched file.
    File {
        /// Path (relative paths are resolved against the config's folder).
        path: PathBuf,
    },
    /// DNS.
    Dns {
        /// A/AAAA name, or SRV name when `srv`.
        name: String,
        /// Port for A/AAAA.
        port: Option<u16>,
        /// Resolve SRV.
        srv: bool,
        /// Name servers; empty = system.
        servers: Vec<SocketAddr>,
        /// Shortest re-resolve interval.
        min_ttl: Duration,
        /// Longest re-resolve interval.
        max_ttl: Duration,
    },
    /// Kubernetes EndpointSlices.
    Kubernetes {
        /// Service name.
        service: String,
        /// Namespace.
        namespace: String,
        /// Port.
        port: PortRef,
        /// Use terminating-but-serving endpoints.
        include_terminating: bool,
        /// API server URL; `None`: in-cluster, else kubeconfig.
        api_server: Option<String>,
    },
    /// etcd keys.
    Etcd {
        /// Client URLs.
        endpoints: Vec<String>,
        /// Key prefix.
        prefix: String,
    },
}

impl DiscoverySettings {
    /// The source's kind, for /clusters.
    pub fn kind(&self) -> &'static str {
        match self {
            DiscoverySettings::Static(_) => "static",
            DiscoverySettings::File { .. } => "file",
            DiscoverySettings::Dns { .. } => "dns",
            DiscoverySettings::Kubernetes { .. } => "kubernetes",
            DiscoverySettings::Etcd { .. } => "etcd",
        }
    }
}

/// What a source says: a whole new endpoint set, or that it failed (the
/// last good set stays).
pub type Update = Result<Vec<EndpointSpec>, BoxError>;

/// A registry, seen as a stream of endpoint-set updates for one cluster.
pub trait Discover: Send + Sync + 'static {
    /// Starts watching; the stream ends only when the source gives up for
    /// good (static sources end after their one answer).
    fn updates(&self) -> BoxStream<'static, Update>;
}

/// Makes the source a cluster's settings name.
pub fn source(settings: &DiscoverySettings, base_dir: Option<&std::path::Path>) -> Result<Box<dyn Discover>, BoxError> {
    match settings {
        DiscoverySettings::Static(eps) => Ok(Box::new(static_::Static(eps.clone()))),
        DiscoverySettings::File { path } => {
            let path = match base_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.clone(),
            };
            Ok(Box::new(file::FileSource { path }))
        }
        DiscoverySettings::Dns { name, port, srv, servers, min_ttl, max_ttl } => {
            let target = match (srv, port) {
                (true, _) => dns::Target::Srv(name.clone()),
                (false, Some(port)) => dns::Target::Host { name: name.clone(), port: *port },
                (false, None) => return Err("dns discovery needs a port for A/AAAA lookups".into()),
            };
            let (servers, min_ttl, max_ttl) = (servers.clone(), *min_ttl, *max_ttl);
            Ok(Box::new(dns::DnsSource { target, servers, min_ttl, max_ttl }))
        }
        DiscoverySettings::Kubernetes { service, namespace, port, include_terminating, api_server } => {
            Ok(Box::new(kubernetes::EndpointSlices {
                service: service.clone(),
                namespace: namespace.clone(),
                port: port.clone(),
                include_terminating: *include_terminating,
                api_server: api_server.clone(),
            }))
        }
        #[cfg(feature = "etcd")]
        DiscoverySettings::Etcd { endpoints, prefix } => {
            Ok(Box::new(etcd::EtcdSource { endpoints: endpoints.clone(), prefix: prefix.clone() }))
        }
        #[cfg(not(feature = "etcd"))]
        DiscoverySettings::Etcd { .. } => Err(NO_ETCD.into()),
    }
}

/// What a build without the `etcd` feature says to etcd settings.
#[cfg(not(feature = "etcd"))]
pub const NO_ETCD: &str = "this build has no etcd support: build with the default `etcd` feature (it needs protoc)";

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn cluster(discovery: &str) -> String {
        format!("listeners: []\nclusters:\n  - name: c\n    discovery: {discovery}\n")
    }

    /// Discovery blocks that cannot work are refused at their place.
    #[test]
    fn bad_discovery_blocks_are_refused_with_positions() {
        let errs =
            parse(&cluster("{kubernetes: {service: s, port: 80, api_server: not a url}}"), "x.yaml").unwrap_err();
        assert!(errs.to_string().starts_with("x.yaml:4:") && errs.to_string().contains("is not a URL"), "{errs}");
        let errs = parse(&cluster("{dns: {name: n, port: 80, min_ttl: 10s, max_ttl: 1s}}"), "x.yaml").unwrap_err();
        assert!(errs.to_string().contains("below min_ttl"), "{errs}");
        let errs = parse(&cluster("{dns: {name: n}}"), "x.yaml").unwrap_err();
        assert!(errs.to_string().contains("{name, port} or {srv}"), "{errs}");
    }

    /// A build without etcd refuses etcd settings at their place, saying
    /// why, rather than failing when the cluster starts.
    #[cfg(not(feature = "etcd"))]
    #[test]
    fn etcd_settings_are_refused_without_the_feature() {
        let errs = parse(&cluster("{etcd: {endpoints: [\"http://127.0.0.1:1\"], prefix: /p/}}"), "x.yaml").unwrap_err();
        assert!(errs.to_string().starts_with("x.yaml:4:") && errs.to_string().contains("no etcd support"), "{errs}");
        let reg = "registration: {etcd: {endpoints: [\"http://127.0.0.1:1\"], key: /k, address: \"127.0.0.1:1\"}}\n";
        let errs = parse(&format!("{reg}listeners: []\nclusters: []\n"), "x.yaml").unwrap_err();
        assert!(errs.to_string().contains("no etcd support"), "{errs}");
    }

    /// Every source builds from valid settings (no I/O happens until its
    /// stream is polled).
    #[test]
    fn every_source_builds() {
        for d in [
            "{file: {path: eps.yaml}}",
            "{dns: {srv: _http._tcp.x, servers: [\"127.0.0.1:53\"]}}",
            "{kubernetes: {service: s, port: http, api_server: \"http://127.0.0.1:1\"}}",
            #[cfg(feature = "etcd")]
            "{etcd: {endpoints: [\"http://127.0.0.1:1\"], prefix: /p/}}",
        ] {
            let s = parse(&cluster(d), "x.yaml").unwrap_or_else(|e| panic!("{d}: {e}"));
            assert!(super::source(&s.clusters[0].discovery, None).is_ok(), "{d}");
        }
    }
}
