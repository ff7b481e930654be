//! The request head a retry sends again, kept flat.
//!
//! The first try takes the request's own head; the retry layer keeps a
//! copy for the tries after it. A `HeaderMap` clone for that copy cost two
//! allocations and frees and about 600 instructions on every retryable
//! request, retried or not. [`KeptHead`] keeps the header lines as a list
//! of (name, value) pairs instead (each a reference count, no hashing) in
//! a vector reused from a small per-thread pool, and builds a `HeaderMap`
//! only when a retry is really sent.

use std::cell::RefCell;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

type Lines = Vec<(HeaderName, HeaderValue)>;

/// Vectors kept for reuse per thread, at most this many...
const POOL: usize = 64;
/// ...each holding at most this many lines (a larger one is freed).
const LINES: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Lines>> = const { RefCell::new(Vec::new()) };
}

/// A copy of a request head, for the retries of one request.
pub(super) struct KeptHead {
    method: Method,
    uri: Uri,
    version: Version,
    lines: Lines,
    extensions: Extensions,
}

impl KeptHead {
    /// A copy of `parts`.
    pub(super) fn of(parts: &Parts) -> KeptHead {
        let mut lines = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
        lines.reserve(parts.headers.len());
        lines.extend(parts.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
        KeptHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            lines,
            extensions: parts.extensions.clone(),
        }
    }

    /// A request with this head (the same lines, in the same order per
    /// name) and `body`.
    pub(super) fn request<B>(&self, body: B) -> Request<B> {
        let mut headers = HeaderMap::with_capacity(self.lines.len());
        for (name, value) in &self.lines {
            headers.append(name.clone(), value.clone());
        }
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = headers;
        *req.extensions_mut() = self.extensions.clone();
        req
    }
}

impl Drop for KeptHead {
    fn drop(&mut self) {
        let mut lines = std::mem::take(&mut self.lines);
        if lines.capacity() > LINES {
            return;
        }
        lines.clear();
        // `try_with`: a head dropped while the thread exits frees its vector.
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < POOL {
                    spare.push(lines);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: Request<()>) -> Parts {
        req.into_parts().0
    }

    /// A kept head sends what the original would have: method, target,
    /// version, every line (a repeated name's values in order, sensitive
    /// ones still marked) and the extensions.
    #[test]
    fn a_kept_head_is_the_request_head() {
        let mut sensitive = HeaderValue::from_static("secret");
        sensitive.set_sensitive(true);
        let mut original = Request::builder()
            .method(Method::PUT)
            .uri("/orders/7?x=1")
            .version(Version::HTTP_10)
            .header("host", "orders")
            .header("accept", "a")
            .header("x-custom", "1")
            .header("accept", "b")
            .header("authorization", sensitive)
            .body(())
            .unwrap();
        original.extensions_mut().insert(42u32);
        let original = parts(original);
        let kept = KeptHead::of(&original);
        let again = parts(kept.request(()));
        assert_eq!(again.method, Method::PUT);
        assert_eq!(again.uri, "/orders/7?x=1");
        assert_eq!(again.version, Version::HTTP_10);
        assert_eq!(again.headers, original.headers);
        let accept: Vec<_> = again.headers.get_all("accept").iter().collect();
        assert_eq!(accept, ["a", "b"]);
        assert!(again.headers["authorization"].is_sensitive());
        assert_eq!(again.extensions.get::<u32>(), Some(&42));
        // Twice: a kept head serves every retry.
        assert_eq!(parts(kept.request(())).headers, original.headers);
    }

    /// A dropped head's vector is reused by the next one, cleared; a very
    /// large one is not kept.
    #[test]
    fn vectors_are_reused_cleared() {
        SPARE.with_borrow_mut(Vec::clear);
        let first = parts(Request::builder().header("a", "1").header("b", "2").body(()).unwrap());
        drop(KeptHead::of(&first));
        assert_eq!(SPARE.with_borrow(Vec::len), 1);
        let small = parts(Request::builder().header("c", "3").body(()).unwrap());
        let kept = KeptHead::of(&small);
        assert_eq!(SPARE.with_borrow(Vec::len), 0, "the spare vector was taken");
        assert_eq!(kept.lines.len(), 1, "and cleared before use");
        assert_eq!(parts(kept.request(())).headers, small.headers);
        drop(kept);

        let mut many = Request::builder();
        for i in 0..=LINES {
            many = many.header(format!("x-{i}"), "v");
        }
        drop(KeptHead::of(&parts(many.body(()).unwrap())));
        assert_eq!(SPARE.with_borrow(Vec::len), 0, "a vector past {LINES} lines is freed");
    }
}
