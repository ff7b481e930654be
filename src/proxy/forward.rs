//! What a proxy must change in a message as it passes: hop-by-hop headers
//! removed, `x-forwarded-for` appended, `x-forwarded-proto` set, Host kept.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Request;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// plus the `Proxy-*` family. `Connection` must stay first.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];
const TE_BIT: u8 = 1 << 2;

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including any named in `Connection`.
///
/// One pass of cheap name comparisons finds which are present, so only
/// those are removed (a removal hashes the name); most messages carry
/// none, or only `Connection: keep-alive`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let seen = Seen::scan(headers);
    strip(headers, &seen);
}

/// What one pass over a message's headers found.
#[derive(Default)]
struct Seen {
    /// Bit `i`: `HOP_BY_HOP[i]` is present.
    hop: u8,
    /// Some `Connection` value names more than `close`/`keep-alive`.
    connection_names_others: bool,
    host: bool,
    forwarded_for: bool,
}

impl Seen {
    fn scan(headers: &HeaderMap) -> Seen {
        let mut seen = Seen::default();
        for (name, value) in headers {
            if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
                seen.hop |= 1 << i;
                if i == 0 && !names_no_header(value.as_bytes()) {
                    seen.connection_names_others = true;
                }
            } else if name == header::HOST {
                seen.host = true;
            } else if name == X_FORWARDED_FOR {
                seen.forwarded_for = true;
            }
        }
        seen
    }
}

/// `close` or `keep-alive`: a `Connection` token (or a whole value of one
/// token, the usual one) that names no header to remove.
fn names_no_header(token: &[u8]) -> bool {
    let t = token.trim_ascii();
    t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
}

fn strip(headers: &mut HeaderMap, seen: &Seen) {
    if seen.hop == 0 {
        return;
    }
    // Other headers `Connection` names (`close` and `keep-alive` are not
    // headers to remove, or are removed anyway).
    let mut named: Vec<HeaderName> = Vec::new();
    if seen.connection_names_others {
        for value in headers.get_all(header::CONNECTION) {
            for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
                if token.is_empty() || names_no_header(token.as_bytes()) {
                    continue;
                }
                if let Ok(n) = HeaderName::try_from(token) {
                    if !is_hop_by_hop(&n) {
                        named.push(n);
                    }
                }
            }
        }
    }
    for n in named {
        headers.remove(n);
    }
    // `TE: trailers` is end-to-end in meaning for HTTP/2 (gRPC needs it).
    let te_trailers = seen.hop & TE_BIT != 0 && headers.get(header::TE).is_some_and(|v| v == "trailers");
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if seen.hop & (1 << i) != 0 {
            headers.remove(h);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Prepares a client's request for an upstream.
///
/// `client_ip` is the connection's peer address, formatted once per
/// connection.
pub fn prepare_request<B>(req: &mut Request<B>, client_ip: &HeaderValue) {
    // One pass over the names answers every "is it there?" below: each
    // lookup would hash a name.
    let seen = Seen::scan(req.headers());
    // HTTP/2 carries the host in :authority; an HTTP/1.1 upstream needs Host.
    if !seen.host {
        if let Some(auth) = req.uri().authority() {
            if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
    }
    let headers = req.headers_mut();
    strip(headers, &seen);
    // (`Connection` may have named it: look, only if it was there at all.)
    let prev = if seen.forwarded_for { headers.get(&X_FORWARDED_FOR) } else { None };
    let xff = match prev {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + client_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| client_ip.clone())
        }
        None => client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hop-by-hop headers go, including those named in Connection; XFF is
    /// appended; Host is kept.
    #[test]
    fn request_headers() {
        let mut req = Request::builder()
            .uri("/x")
            .header("host", "orders")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "basic")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-keep", "yes")
            .body(())
            .unwrap();
        prepare_request(&mut req, &HeaderValue::from_static("127.0.0.1"));
        let h = req.headers();
        assert_eq!(h["host"], "orders");
        assert!(!h.contains_key("connection") && !h.contains_key("x-secret") && !h.contains_key("keep-alive"));
        assert!(!h.contains_key("proxy-authorization"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-keep"], "yes");
    }

    /// A `Connection` of one token is still read: one naming a header
    /// removes it (even `x-forwarded-for`, which is then this hop's alone);
    /// `keep-alive` or `close` alone removes only itself.
    #[test]
    fn single_token_connection_values() {
        let ip = HeaderValue::from_static("127.0.0.1");
        let mut req = Request::builder()
            .header("connection", " X-Forwarded-For ")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-keep", "yes")
            .body(())
            .unwrap();
        prepare_request(&mut req, &ip);
        assert_eq!(req.headers()["x-forwarded-for"], "127.0.0.1");
        assert!(!req.headers().contains_key("connection"));
        assert_eq!(req.headers()["x-keep"], "yes");
        for value in ["keep-alive", "Close", " keep-alive "] {
            let mut h = HeaderMap::new();
            h.insert("connection", HeaderValue::from_static(value));
            h.insert("x-keep", HeaderValue::from_static("yes"));
            strip_hop_by_hop(&mut h);
            let left: Vec<_> = h.keys().map(|n| n.as_str()).collect();
            assert_eq!(left, ["x-keep"], "{value}");
        }
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("x-a"));
        h.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    /// Every `Connection` header counts; `TE: trailers` survives; a message
    /// with no hop-by-hop header is left as it is.
    #[test]
    fn response_headers() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close"));
        h.append("connection", HeaderValue::from_static("x-a, X-B"));
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("2"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap())).collect();
        assert_eq!(left, ["content-type: text/plain", "te: trailers"]);
        let before = h.clone();
        h.remove("te");
        let untouched = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, untouched);
        assert_ne!(before, untouched);
    }
}
