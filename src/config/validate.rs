//! Raw config -> settings, collecting every error with its position.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::duration::Dur;
use super::position::Positions;
use super::raw::*;
use super::settings::*;
use super::{ConfigError, ConfigErrors};
use crate::balance::settings::{HashOn, HealthCheckSettings, LbPolicy, OutlierSettings};
use crate::discovery::{DiscoverySettings, EndpointSpec, PortRef};
use crate::proxy::router::{HostMatch, PathMatch, RouteMatch};
use crate::resilience::bulkhead::BulkheadSettings;
use crate::resilience::circuit_breaker::{CircuitBreakerSettings, RateRule, SlowCallRule};
use crate::resilience::retry::{BudgetSettings, RetryOn, RetrySettings};

/// Collects errors; each names the path of the value it is about.
struct Ctx<'a> {
    file: &'a str,
    positions: &'a Positions,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            position: self.positions.find(path),
            message: message.into(),
        });
    }

    fn positive(&mut self, path: &str, d: Option<Dur>, default: Duration) -> Duration {
        match d {
            Some(d) if d.get().is_zero() => {
                self.err(path, format!("{} must be greater than zero", leaf(path)));
                default
            }
            Some(d) => d.get(),
            None => default,
        }
    }

    fn at_least_one<T: Into<u64> + Copy>(&mut self, path: &str, v: Option<T>, default: T) -> T {
        match v {
            Some(n) if n.into() == 0 => {
                self.err(path, format!("{} must be at least 1", leaf(path)));
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    fn fraction(&mut self, path: &str, v: f64) -> f64 {
        if !(v > 0.0 && v <= 1.0) {
            self.err(path, format!("{} must be in (0, 1], got {v}", leaf(path)));
        }
        v
    }

    fn addr(&mut self, path: &str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("invalid address {s:?}: expected IP:PORT"));
                None
            }
        }
    }
}

fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Checks `raw` fully; returns settings or every error found.
pub(super) fn validate(raw: RawConfig, file: &str, positions: &Positions) -> Result<Settings, ConfigErrors> {
    let mut cx = Ctx { file, positions, errors: Vec::new() };
    let admin = cx.addr("admin.address", &raw.admin.address);
    let drain_timeout = raw.drain_timeout.map_or(Duration::from_secs(10), Dur::get);
    let worker_threads = cx.at_least_one("worker_threads", raw.worker_threads.map(|n| n as u64), 1) as usize;

    let clusters: Vec<ClusterSettings> =
        raw.clusters.iter().enumerate().filter_map(|(i, c)| cluster(&mut cx, &format!("clusters.{i}"), c)).collect();
    let mut seen = HashSet::new();
    for (i, c) in raw.clusters.iter().enumerate() {
        if !seen.insert(c.name.as_str()) {
            cx.err(&format!("clusters.{i}.name"), format!("duplicate cluster name {:?}", c.name));
        }
    }
    let cluster_names: HashSet<&str> = raw.clusters.iter().map(|c| c.name.as_str()).collect();

    let mut listeners = Vec::new();
    let mut route_names = HashMap::new();
    let mut listener_names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let p = format!("listeners.{i}");
        if l.name.is_empty() {
            cx.err(&format!("{p}.name"), "listener name must not be empty");
        }
        if !listener_names.insert(l.name.as_str()) {
            cx.err(&format!("{p}.name"), format!("duplicate listener name {:?}", l.name));
        }
        let address = cx.addr(&format!("{p}.address"), &l.address);
        if let Some(a) = address {
            if a.port() != 0 && !addresses.insert(a) {
                cx.err(&format!("{p}.address"), format!("address {a} is used by another listener"));
            }
        }
        let mut routes = Vec::new();
        for (j, r) in l.routes.iter().enumerate() {
            let rp = format!("{p}.routes.{j}");
            if let Some(prev) = route_names.insert(r.name.clone(), rp.clone()) {
                cx.err(&format!("{rp}.name"), format!("duplicate route name {:?} (first at {prev})", r.name));
            }
            if let Some(rs) = route(&mut cx, &rp, r, &cluster_names) {
                routes.push(rs);
            }
        }
        let header_read_timeout = cx.positive(
            &format!("{p}.header_read_timeout"),
            l.header_read_timeout,
            ListenerSettings::DEFAULT_HEADER_READ_TIMEOUT,
        );
        let max_header_bytes = cx.at_least_one(
            &format!("{p}.max_header_bytes"),
            l.max_header_bytes.map(|n| n as u64),
            ListenerSettings::DEFAULT_MAX_HEADER_BYTES as u64,
        ) as usize;
        if let Some(address) = address {
            listeners.push(ListenerSettings {
                name: l.name.clone(),
                address,
                transparent: l.transparent,
                header_read_timeout,
                max_header_bytes,
                routes,
            });
        }
    }

    let registration = raw.registration.as_ref().and_then(|r| {
        let e = &r.etcd;
        #[cfg(not(feature = "etcd"))]
        cx.err("registration.etcd", crate::discovery::NO_ETCD);
        if e.endpoints.is_empty() {
            cx.err("registration.etcd.endpoints", "registration needs at least one etcd endpoint");
        }
        if e.key.is_empty() {
            cx.err("registration.etcd.key", "registration key must not be empty");
        }
        cx.addr("registration.etcd.address", &e.address)?;
        let ttl = cx.positive("registration.etcd.ttl", e.ttl, Duration::from_secs(10));
        if ttl < Duration::from_secs(2) {
            cx.err("registration.etcd.ttl", "registration ttl must be at least 2s (etcd leases are whole seconds)");
        }
        Some(RegistrationSettings {
            endpoints: e.endpoints.clone(),
            key: e.key.clone(),
            address: e.address.clone(),
            ttl,
        })
    });

    if !cx.errors.is_empty() {
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Settings {
        path: None,
        admin: admin.expect("checked"),
        drain_timeout,
        worker_threads,
        listeners,
        clusters,
        registration,
        raw,
    })
}

fn route(cx: &mut Ctx, p: &str, r: &RawRoute, clusters: &HashSet<&str>) -> Option<RouteSettings> {
    if r.name.is_empty() {
        cx.err(&format!("{p}.name"), "route name must not be empty");
    }
    let matcher = route_match(cx, &format!("{p}.match"), &r.matcher);
    let targets: Vec<(String, u32)> = match (&r.cluster, &r.clusters) {
        (Some(c), None) => vec![(c.clone(), 1)],
        (None, Some(split)) if !split.is_empty() => split.iter().map(|w| (w.name.clone(), w.weight)).collect(),
        (None, Some(_)) => {
            cx.err(&format!("{p}.clusters"), format!("route {:?}: clusters must not be empty", r.name));
            vec![]
        }
        (Some(_), Some(_)) => {
            cx.err(&format!("{p}.clusters"), format!("route {:?}: write either cluster or clusters, not both", r.name));
            vec![]
        }
        (None, None) => {
            cx.err(p, format!("route {:?} names no cluster (write cluster: NAME)", r.name));
            vec![]
        }
    };
    for (k, (name, _)) in targets.iter().enumerate() {
        if !clusters.contains(name.as_str()) {
            let at = if r.cluster.is_some() { format!("{p}.cluster") } else { format!("{p}.clusters.{k}.name") };
            cx.err(&at, format!("route {:?} names cluster {name:?}, which is not defined", r.name));
        }
    }
    if r.clusters.is_some() && !targets.is_empty() && targets.iter().all(|(_, w)| *w == 0) {
        cx.err(&format!("{p}.clusters"), format!("route {:?}: split weights must not all be zero", r.name));
    }
    let timeout = Some(cx.positive(&format!("{p}.timeout"), r.timeout, Duration::from_secs(15)));
    let retry = r.retry.as_ref().map(|x| retry(cx, &format!("{p}.retry"), x, timeout));
    let bulkhead = r.bulkhead.as_ref().map(|b| bulkhead(cx, &format!("{p}.bulkhead"), b));
    let circuit_breaker = r.circuit_breaker.as_ref().map(|b| breaker(cx, &format!("{p}.circuit_breaker"), b));
    Some(RouteSettings { name: r.name.clone(), matcher: matcher?, targets, timeout, retry, bulkhead, circuit_breaker })
}

fn route_match(cx: &mut Ctx, p: &str, m: &RawMatch) -> Option<RouteMatch> {
    let mut ok = true;
    let host = m.host.as_ref().map(|h| HostMatch::parse(h));
    let paths = [m.path.is_some(), m.path_prefix.is_some(), m.path_regex.is_some()];
    if paths.iter().filter(|x| **x).count() > 1 {
        cx.err(p, "write at most one of path, path_prefix, path_regex");
        ok = false;
    }
    let path = if let Some(x) = &m.path {
        PathMatch::Exact(x.clone())
    } else if let Some(x) = &m.path_prefix {
        PathMatch::Prefix(x.clone())
    } else if let Some(x) = &m.path_regex {
        match regex::Regex::new(&format!("^(?:{x})$")) {
            Ok(re) => PathMatch::Regex(re),
            Err(e) => {
                cx.err(
                    &format!("{p}.path_regex"),
                    format!("invalid path_regex {x:?}: {}", e.to_string().lines().last().unwrap_or("")),
                );
                ok = false;
                PathMatch::Any
            }
        }
    } else {
        PathMatch::Any
    };
    for (name, v) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
        if matches!(v, Some(s) if !s.starts_with('/')) {
            cx.err(&format!("{p}.{name}"), format!("{name} must start with /"));
            ok = false;
        }
    }
    let methods = m.methods.as_ref().map(|ms| methods(cx, &format!("{p}.methods"), ms));
    let mut headers = Vec::new();
    for (k, v) in m.headers.iter().flatten() {
        match (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => {
                cx.err(&format!("{p}.headers.{k}"), format!("invalid header {k:?}: {v:?}"));
                ok = false;
            }
        }
    }
    ok.then_some(RouteMatch { host, path, methods, headers })
}

fn methods(cx: &mut Ctx, p: &str, ms: &[String]) -> Vec<Method> {
    ms.iter()
        .enumerate()
        .filter_map(|(i, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                cx.err(&format!("{p}.{i}"), format!("invalid method {m:?}"));
                None
            }
        })
        .collect()
}

fn retry(cx: &mut Ctx, p: &str, r: &RawRetry, route_timeout: Option<Duration>) -> RetrySettings {
    let attempts = cx.at_least_one(&format!("{p}.attempts"), r.attempts, 2);
    let mut on = RetryOn::default();
    let default_on = [
        RawRetryOn::Name("connect-failure".into()),
        RawRetryOn::Name("reset".into()),
        RawRetryOn::Name("gateway-error".into()),
    ];
    for (i, c) in r.on.as_deref().unwrap_or(&default_on).iter().enumerate() {
        match c {
            RawRetryOn::Code(n) if (100..600).contains(n) => on.codes.push(*n),
            RawRetryOn::Code(n) => cx.err(&format!("{p}.on.{i}"), format!("{n} is not an HTTP status code")),
            RawRetryOn::Name(s) => match s.as_str() {
                "connect-failure" => on.connect_failure = true,
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                "5xx" => on.any_5xx = true,
                "gateway-error" => on.gateway_error = true,
                other => match other.parse::<u16>() {
                    Ok(n) if (100..600).contains(&n) => on.codes.push(n),
                    _ => cx.err(&format!("{p}.on.{i}"), format!("unknown retry condition {other:?} (expected connect-failure, reset, timeout, 5xx, gateway-error, or a status code)")),
                },
            },
        }
    }
    let per_try_timeout = r
        .per_try_timeout
        .map(|_| cx.positive(&format!("{p}.per_try_timeout"), r.per_try_timeout, Duration::from_secs(1)));
    let (backoff_base, backoff_max) = match &r.backoff {
        Some(b) => {
            let base = cx.positive(&format!("{p}.backoff.base"), Some(b.base), Duration::from_millis(25));
            let max = cx.positive(&format!("{p}.backoff.max"), Some(b.max), Duration::from_millis(250));
            if base > max {
                cx.err(&format!("{p}.backoff"), "backoff base must not exceed max");
            }
            (base, max)
        }
        None => (Duration::from_millis(25), Duration::from_millis(250)),
    };
    let budget = match &r.budget {
        Some(b) if b.disabled => None,
        Some(b) => {
            let d = BudgetSettings::default();
            let ratio = b.ratio.unwrap_or(d.ratio);
            if !(0.0..=10.0).contains(&ratio) {
                cx.err(&format!("{p}.budget.ratio"), format!("budget ratio must be between 0 and 10, got {ratio}"));
            }
            let window = cx.positive(&format!("{p}.budget.window"), b.window, d.window);
            Some(BudgetSettings { ratio, min_per_second: b.min_per_second.unwrap_or(d.min_per_second), window })
        }
        None => Some(BudgetSettings::default()),
    };
    let methods = match &r.methods {
        Some(ms) => methods(cx, &format!("{p}.methods"), ms),
        None => vec![Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT, Method::DELETE, Method::TRACE],
    };
    let max_body_bytes = r.max_body_bytes.unwrap_or(64 * 1024);
    RetrySettings {
        attempts,
        on,
        per_try_timeout,
        backoff_base,
        backoff_max,
        budget,
        methods,
        max_body_bytes,
        route_timeout,
    }
}

fn bulkhead(cx: &mut Ctx, p: &str, b: &RawBulkhead) -> BulkheadSettings {
    let max_concurrent = cx.at_least_one(&format!("{p}.max_concurrent"), Some(b.max_concurrent as u64), 1) as usize;
    let queue_timeout = cx.positive(&format!("{p}.queue_timeout"), b.queue_timeout, Duration::from_secs(1));
    let adaptive = b.adaptive.as_ref().map(|a| {
        if a.min == 0 || a.min > a.max {
            cx.err(
                &format!("{p}.adaptive"),
                format!("adaptive bounds need 1 <= min <= max, got min {} max {}", a.min, a.max),
            );
        } else if max_concurrent < a.min || max_concurrent > a.max {
            cx.err(
                &format!("{p}.max_concurrent"),
                format!(
                    "max_concurrent {max_concurrent} (the starting limit) must lie within adaptive min {} and max {}",
                    a.min, a.max
                ),
            );
        }
        (a.min, a.max)
    });
    BulkheadSettings { max_concurrent, max_queued: b.max_queued.unwrap_or(0), queue_timeout, adaptive }
}

fn breaker(cx: &mut Ctx, p: &str, b: &RawCircuitBreaker) -> CircuitBreakerSettings {
    if b.consecutive_failures.is_none() && b.failure_rate.is_none() && b.slow_call.is_none() {
        cx.err(p, "a circuit breaker needs at least one of consecutive_failures, failure_rate, slow_call");
    }
    let consecutive_failures =
        b.consecutive_failures.map(|n| cx.at_least_one(&format!("{p}.consecutive_failures"), Some(n), 5));
    let default_window = Duration::from_secs(10);
    let failure_rate = b.failure_rate.as_ref().map(|f| RateRule {
        threshold: cx.fraction(&format!("{p}.failure_rate.threshold"), f.threshold),
        window: cx.positive(&format!("{p}.failure_rate.window"), f.window, default_window),
        min_requests: cx.at_least_one(&format!("{p}.failure_rate.min_requests"), f.min_requests, 20),
    });
    let slow_call = b.slow_call.as_ref().map(|s| SlowCallRule {
        duration: cx.positive(&format!("{p}.slow_call.duration"), Some(s.duration), Duration::from_secs(1)),
        rate: RateRule {
            threshold: cx.fraction(&format!("{p}.slow_call.rate_threshold"), s.rate_threshold),
            window: cx.positive(
                &format!("{p}.slow_call.window"),
                s.window,
                failure_rate.map_or(default_window, |f| f.window),
            ),
            min_requests: cx.at_least_one(&format!("{p}.slow_call.min_requests"), s.min_requests, 20),
        },
    });
    let open_duration = cx.positive(&format!("{p}.open_duration"), b.open_duration, Duration::from_secs(10));
    let max_open_duration = cx.positive(&format!("{p}.max_open_duration"), b.max_open_duration, open_duration * 10);
    if max_open_duration < open_duration {
        cx.err(&format!("{p}.max_open_duration"), "max_open_duration must not be shorter than open_duration");
    }
    let half_open_max_requests = cx.at_least_one(&format!("{p}.half_open_max_requests"), b.half_open_max_requests, 1);
    CircuitBreakerSettings {
        consecutive_failures,
        failure_rate,
        slow_call,
        open_duration,
        max_open_duration,
        half_open_max_requests,
    }
}

fn endpoints(cx: &mut Ctx, p: &str, eps: &[RawEndpoint]) -> Vec<EndpointSpec> {
    let mut out = Vec::new();
    for (i, e) in eps.iter().enumerate() {
        let (addr, weight, metadata, ap) = match e {
            RawEndpoint::Address(a) => (a, None, None, format!("{p}.{i}")),
            RawEndpoint::Detailed(d) => (&d.address, d.weight, d.metadata.clone(), format!("{p}.{i}.address")),
        };
        let weight = cx.at_least_one(&format!("{p}.{i}.weight"), weight, 1);
        if let Some(address) = cx.addr(&ap, addr) {
            out.push(EndpointSpec { address, weight, metadata: metadata.unwrap_or_default() });
        }
    }
    out
}

fn cluster(cx: &mut Ctx, p: &str, c: &RawCluster) -> Option<ClusterSettings> {
    if c.name.is_empty() {
        cx.err(&format!("{p}.name"), "cluster name must not be empty");
    }
    let discovery = match (&c.endpoints, &c.discovery) {
        (Some(eps), None) => static_endpoints(cx, &format!("{p}.endpoints"), &c.name, eps),
        (None, Some(d)) => discovery(cx, &format!("{p}.discovery"), &c.name, d),
        (Some(_), Some(_)) => {
            cx.err(
                &format!("{p}.discovery"),
                format!("cluster {:?}: write either endpoints or discovery, not both", c.name),
            );
            None
        }
        (None, None) => {
            cx.err(p, format!("cluster {:?} has no endpoints (write endpoints: [IP:PORT] or discovery:)", c.name));
            None
        }
    };
    let load_balancer = match c.load_balancer.clone().unwrap_or(RawLoadBalancer::RoundRobin) {
        RawLoadBalancer::RoundRobin => LbPolicy::RoundRobin,
        RawLoadBalancer::Random => LbPolicy::Random,
        RawLoadBalancer::LeastRequest => LbPolicy::LeastRequest,
        RawLoadBalancer::PeakEwma => LbPolicy::PeakEwma,
        RawLoadBalancer::RingHash(h) => LbPolicy::RingHash(hash_on(cx, &format!("{p}.load_balancer"), &h)),
        RawLoadBalancer::Maglev(h) => LbPolicy::Maglev(hash_on(cx, &format!("{p}.load_balancer"), &h)),
    };
    let connect_timeout = cx.positive(&format!("{p}.connect_timeout"), c.connect_timeout, Duration::from_secs(1));
    let idle_timeout = cx.positive(&format!("{p}.idle_timeout"), c.idle_timeout, Duration::from_secs(90));
    let circuit_breaker = c.circuit_breaker.as_ref().map(|b| breaker(cx, &format!("{p}.circuit_breaker"), b));
    let bulkhead = c.bulkhead.as_ref().map(|b| bulkhead(cx, &format!("{p}.bulkhead"), b));
    let outlier_detection = c.outlier_detection.as_ref().map(|o| {
        let op = format!("{p}.outlier_detection");
        let base_ejection = cx.positive(&format!("{op}.base_ejection"), o.base_ejection, Duration::from_secs(30));
        let max_ejected_percent = o.max_ejected_percent.unwrap_or(50);
        if max_ejected_percent > 100 {
            cx.err(&format!("{op}.max_ejected_percent"), "max_ejected_percent must be at most 100");
        }
        OutlierSettings {
            consecutive_failures: cx.at_least_one(&format!("{op}.consecutive_failures"), o.consecutive_failures, 5),
            base_ejection,
            max_ejection: cx.positive(
                &format!("{op}.max_ejection"),
                o.max_ejection,
                Duration::from_secs(300).max(base_ejection),
            ),
            max_ejected_percent,
        }
    });
    let health_check = c.health_check.as_ref().map(|h| {
        let hp = format!("{p}.health_check");
        if !h.path.starts_with('/') {
            cx.err(&format!("{hp}.path"), "health_check path must start with /");
        }
        HealthCheckSettings {
            path: h.path.clone(),
            interval: cx.positive(&format!("{hp}.interval"), h.interval, Duration::from_secs(5)),
            timeout: cx.positive(&format!("{hp}.timeout"), h.timeout, Duration::from_secs(1)),
            healthy_threshold: cx.at_least_one(&format!("{hp}.healthy_threshold"), h.healthy_threshold, 2),
            unhealthy_threshold: cx.at_least_one(&format!("{hp}.unhealthy_threshold"), h.unhealthy_threshold, 3),
        }
    });
    let panic_threshold = c.panic_threshold.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&panic_threshold) {
        cx.err(&format!("{p}.panic_threshold"), "panic_threshold must be in [0, 1]");
    }
    let protocol = match c.protocol.unwrap_or_default() {
        RawProtocol::Http1 => Protocol::Http1,
        RawProtocol::Http2 => Protocol::Http2,
    };
    Some(ClusterSettings {
        name: c.name.clone(),
        discovery: discovery?,
        load_balancer,
        connect_timeout,
        protocol,
        idle_timeout,
        max_idle_connections: c.max_idle_connections,
        circuit_breaker,
        bulkhead,
        outlier_detection,
        health_check,
        panic_threshold,
    })
}

fn static_endpoints(cx: &mut Ctx, p: &str, name: &str, eps: &[RawEndpoint]) -> Option<DiscoverySettings> {
    if eps.is_empty() {
        cx.err(p, format!("cluster {name:?} has no endpoints: static discovery needs at least one"));
        return None;
    }
    Some(DiscoverySettings::Static(endpoints(cx, p, eps)))
}

fn hash_on(_cx: &mut Ctx, _p: &str, h: &RawHashPolicy) -> HashOn {
    match &h.hash_on {
        Some(RawHashOn::Header(n)) => match HeaderName::try_from(n.as_str()) {
            Ok(n) => HashOn::Header(n),
            Err(_) => {
                _cx.err(&format!("{_p}.hash_on.header"), format!("invalid header name {n:?}"));
                HashOn::Path
            }
        },
        Some(RawHashOn::Cookie(c)) => HashOn::Cookie(c.clone()),
        Some(RawHashOn::Path) | None => HashOn::Path,
    }
}

fn discovery(cx: &mut Ctx, p: &str, name: &str, d: &RawDiscovery) -> Option<DiscoverySettings> {
    let n = [d.static_.is_some(), d.file.is_some(), d.dns.is_some(), d.kubernetes.is_some(), d.etcd.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if n != 1 {
        cx.err(
            p,
            format!("cluster {name:?}: discovery must name exactly one source (static, file, dns, kubernetes, etcd)"),
        );
        return None;
    }
    if let Some(eps) = &d.static_ {
        return static_endpoints(cx, &format!("{p}.static"), name, eps);
    }
    if let Some(f) = &d.file {
        return Some(DiscoverySettings::File { path: f.path.clone().into() });
    }
    if let Some(dns) = &d.dns {
        let dp = format!("{p}.dns");
        let servers = dns
            .servers
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, s)| cx.addr(&format!("{dp}.servers.{i}"), s))
            .collect();
        let min_ttl = cx.positive(&format!("{dp}.min_ttl"), dns.min_ttl, Duration::from_secs(1));
        let max_ttl = cx.positive(&format!("{dp}.max_ttl"), dns.max_ttl, Duration::from_secs(60));
        if max_ttl < min_ttl {
            cx.err(&format!("{dp}.max_ttl"), format!("max_ttl ({max_ttl:?}) is below min_ttl ({min_ttl:?})"));
        }
        return match (&dns.name, dns.port, &dns.srv) {
            (Some(n), Some(port), None) => Some(DiscoverySettings::Dns {
                name: n.clone(),
                port: Some(port),
                srv: false,
                servers,
                min_ttl,
                max_ttl,
            }),
            (None, None, Some(s)) => {
                Some(DiscoverySettings::Dns { name: s.clone(), port: None, srv: true, servers, min_ttl, max_ttl })
            }
            _ => {
                cx.err(&dp, "dns discovery needs either {name, port} or {srv}");
                None
            }
        };
    }
    if let Some(k) = &d.kubernetes {
        let port = match &k.port {
            RawPortRef::Number(n) => PortRef::Number(*n),
            RawPortRef::Name(s) => match s.parse::<u16>() {
                Ok(n) => PortRef::Number(n),
                Err(_) => PortRef::Name(s.clone()),
            },
        };
        if let Some(url) = &k.api_server {
            if !url.parse::<http::Uri>().is_ok_and(|u| u.scheme().is_some() && u.host().is_some()) {
                cx.err(&format!("{p}.kubernetes.api_server"), format!("{url:?} is not a URL (http(s)://HOST:PORT)"));
            }
        }
        return Some(DiscoverySettings::Kubernetes {
            api_server: k.api_server.clone(),
            service: k.service.clone(),
            namespace: k.namespace.clone().unwrap_or_else(|| "default".into()),
            port,
            include_terminating: k.include_terminating,
        });
    }
    if let Some(e) = &d.etcd {
        #[cfg(not(feature = "etcd"))]
        cx.err(&format!("{p}.etcd"), crate::discovery::NO_ETCD);
        if e.endpoints.is_empty() {
            cx.err(&format!("{p}.etcd.endpoints"), "etcd discovery needs at least one endpoint");
        }
        return Some(DiscoverySettings::Etcd { endpoints: e.endpoints.clone(), prefix: e.prefix.clone() });
    }
    None
}
