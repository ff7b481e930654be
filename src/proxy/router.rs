//! Which route a request takes: the first whose rules all hold, in file
//! order.

use std::collections::HashMap;

use http::{HeaderName, HeaderValue, Method, Request};

/// A route's match rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    /// Host rule; port ignored.
    pub host: Option<HostMatch>,
    /// Path rule.
    pub path: PathMatch,
    /// Allowed methods.
    pub methods: Option<Vec<Method>>,
    /// Required headers with exact values.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `host:` exact, or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Exact (lower case).
    Exact(String),
    /// Ends with this (lower case, with the leading dot).
    Suffix(String),
}

impl HostMatch {
    /// Reads `orders` or `*.example.com`.
    pub fn parse(s: &str) -> Self {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
            None => HostMatch::Exact(strip_port(&s).to_owned()),
        }
    }

    fn matches(&self, host: &str) -> bool {
        let host = strip_port(host);
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(sfx) => {
                host.len() > sfx.len()
                    && host.is_char_boundary(host.len() - sfx.len())
                    && host[host.len() - sfx.len()..].eq_ignore_ascii_case(sfx)
            }
        }
    }
}

/// `host:port` -> `host` (IPv6 literals in brackets kept whole).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

/// Path rule.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// Exactly this path.
    Exact(String),
    /// Starts with this.
    Prefix(String),
    /// The whole path matches (anchored when built).
    Regex(regex::Regex),
}

impl PartialEq for PathMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PathMatch::Any, PathMatch::Any) => true,
            (PathMatch::Exact(a), PathMatch::Exact(b)) | (PathMatch::Prefix(a), PathMatch::Prefix(b)) => a == b,
            (PathMatch::Regex(a), PathMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl RouteMatch {
    /// Whether `req` satisfies every rule.
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
        if let Some(h) = &self.host {
            match request_host(req) {
                Some(host) if h.matches(host) => {}
                _ => return false,
            }
        }
        let ok_path = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => req.uri().path() == p,
            PathMatch::Prefix(p) => req.uri().path().starts_with(p.as_str()),
            PathMatch::Regex(re) => re.is_match(req.uri().path()),
        };
        if !ok_path {
            return false;
        }
        if let Some(ms) = &self.methods {
            if !ms.contains(req.method()) {
                return false;
            }
        }
        self.headers.iter().all(|(n, v)| req.headers().get_all(n).iter().any(|x| x == v))
    }
}

/// The request's host: the Host header, else the URI authority (HTTP/2).
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().host())
}

/// Routes in match order, with routes on an exact host indexed by that
/// host: a request only tries the routes for its own host and the routes
/// without an exact host, still in file order. With 1,000 host routes a
/// match costs a hash lookup instead of 1,000 comparisons.
pub struct Router<R> {
    routes: Vec<(RouteMatch, R)>,
    by_host: HashMap<String, Vec<usize>>,
    /// Routes with no host rule or a wildcard one, in order.
    generic: Vec<usize>,
}

impl<R> Router<R> {
    /// A router over `routes`, in order.
    pub fn new(routes: Vec<(RouteMatch, R)>) -> Self {
        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        let mut generic = Vec::new();
        for (i, (m, _)) in routes.iter().enumerate() {
            match &m.host {
                Some(HostMatch::Exact(h)) => by_host.entry(h.clone()).or_default().push(i),
                _ => generic.push(i),
            }
        }
        Router { routes, by_host, generic }
    }

    /// The first route whose rules hold.
    pub fn route<B>(&self, req: &Request<B>) -> Option<&R> {
        // Most sidecars route on paths alone: no host to read then.
        let host = if self.by_host.is_empty() { None } else { request_host(req).map(strip_port) };
        let exact: &[usize] = match host {
            Some(h) if h.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.by_host.get(&h.to_ascii_lowercase()).map_or(&[], Vec::as_slice)
            }
            Some(h) => self.by_host.get(h).map_or(&[], Vec::as_slice),
            None => &[],
        };
        // Merge the two ascending index lists, trying each in file order.
        let (mut a, mut b) = (exact.iter().peekable(), self.generic.iter().peekable());
        loop {
            let i = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => *a.next()?,
                (Some(_), Some(_)) | (None, Some(_)) => *b.next()?,
                (Some(_), None) => *a.next()?,
                (None, None) => return None,
            };
            let (m, r) = &self.routes[i];
            if m.matches(req) {
                return Some(r);
            }
        }
    }

    /// All routes, in order.
    pub fn routes(&self) -> impl Iterator<Item = &R> {
        self.routes.iter().map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, path: &str) -> Request<()> {
        Request::builder().uri(path).header("host", host).body(()).unwrap()
    }

    fn any() -> RouteMatch {
        RouteMatch { host: None, path: PathMatch::Any, methods: None, headers: vec![] }
    }

    /// Host rules ignore the port and case; wildcards need a label before
    /// the suffix.
    #[test]
    fn host_rules() {
        let exact = RouteMatch { host: Some(HostMatch::parse("orders")), ..any() };
        assert!(exact.matches(&req("orders:8080", "/")));
        assert!(exact.matches(&req("ORDERS", "/")));
        assert!(!exact.matches(&req("orders.x", "/")));
        let wild = RouteMatch { host: Some(HostMatch::parse("*.example.com")), ..any() };
        assert!(wild.matches(&req("a.example.com:80", "/")));
        assert!(!wild.matches(&req("example.com", "/")));
    }

    /// First match wins, in file order.
    #[test]
    fn first_match_wins() {
        let r = Router::new(vec![
            (RouteMatch { path: PathMatch::Prefix("/api/".into()), ..any() }, "api"),
            (any(), "fallback"),
        ]);
        assert_eq!(r.route(&req("x", "/api/v1")), Some(&"api"));
        assert_eq!(r.route(&req("x", "/other")), Some(&"fallback"));
    }

    /// Host-indexed and generic routes still match in file order.
    #[test]
    fn indexed_hosts_keep_file_order() {
        let host = |h: &str, p: &str| RouteMatch {
            host: Some(HostMatch::parse(h)),
            path: PathMatch::Prefix(p.into()),
            ..any()
        };
        let r = Router::new(vec![
            (host("a", "/x"), 0),
            (RouteMatch { path: PathMatch::Prefix("/x".into()), ..any() }, 1),
            (host("a", "/"), 2),
            (host("*.b", "/"), 3),
            (host("b", "/"), 4),
            (any(), 5),
        ]);
        assert_eq!(r.route(&req("a", "/x")), Some(&0));
        assert_eq!(r.route(&req("A:80", "/y")), Some(&2));
        assert_eq!(r.route(&req("c", "/x")), Some(&1));
        assert_eq!(r.route(&req("x.b", "/")), Some(&3));
        assert_eq!(r.route(&req("b", "/")), Some(&4));
        assert_eq!(r.route(&req("c", "/")), Some(&5));
    }
}
