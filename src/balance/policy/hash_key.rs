//! The key a hashing policy hashes: a header's value, a cookie's value or
//! the path, read in place (no allocation) and hashed with xxHash3, which
//! is fast and stable across processes and releases, so every proxy in a
//! mesh sends a key to the same endpoint.

use http::header::COOKIE;
use http::Request;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::balance::settings::HashOn;

/// The request's key hash, or `None` when it lacks the key.
pub fn of<B>(req: &Request<B>, on: &HashOn) -> Option<u64> {
    let key: &[u8] = match on {
        HashOn::Header(name) => req.headers().get(name)?.as_bytes(),
        HashOn::Cookie(name) => {
            req.headers().get_all(COOKIE).iter().find_map(|v| cookie(v.as_bytes(), name.as_bytes()))?
        }
        HashOn::Path => req.uri().path().as_bytes(),
    };
    Some(xxh3_64(key))
}

/// `name`'s value in one `Cookie` header (`a=1; b=2`).
fn cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let rest = pair.strip_prefix(name)?;
        rest.strip_prefix(b"=")
    })
}

/// A hash of an endpoint's address and a number (a ring point, a maglev
/// permutation parameter). Uses the address's bytes, not its text.
pub fn of_address(addr: std::net::SocketAddr, seed: u64) -> u64 {
    let mut buf = [0u8; 18];
    let len = match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            buf[..4].copy_from_slice(&ip.octets());
            4
        }
        std::net::IpAddr::V6(ip) => {
            buf[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    buf[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
    xxh3_64_with_seed(&buf[..len + 2], seed)
}

/// A second, independent hash of a key hash (for another try).
pub fn rehash(hash: u64, attempt: u64) -> u64 {
    xxh3_64_with_seed(&hash.to_le_bytes(), attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], path: &str) -> Request<()> {
        let mut b = Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    /// Header, cookie and path keys are found; equal keys hash equal; a
    /// request without the key has none.
    #[test]
    fn finds_each_kind_of_key() {
        let h = HashOn::Header(http::HeaderName::from_static("x-user"));
        assert_eq!(of(&req(&[("x-user", "ann")], "/a"), &h), of(&req(&[("x-user", "ann")], "/b"), &h));
        assert_ne!(of(&req(&[("x-user", "ann")], "/"), &h), of(&req(&[("x-user", "bob")], "/"), &h));
        assert_eq!(of(&req(&[], "/"), &h), None);

        let c = HashOn::Cookie("sid".into());
        let with = req(&[("cookie", "theme=dark; sid=42"), ("cookie", "x=1")], "/");
        assert_eq!(of(&with, &c), Some(xxh3_64(b"42")));
        assert_eq!(of(&req(&[("cookie", "sidx=1; asid=2")], "/"), &c), None);

        assert_eq!(of(&req(&[], "/users/7?x=1"), &HashOn::Path), Some(xxh3_64(b"/users/7")));
    }
}
