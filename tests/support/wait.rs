//! Waiting for something that happens in the background (a discovery
//! update, a reload), bounded: poll, and fail with a message at the limit.

use std::future::Future;
use std::time::Duration;

use super::{client, TestProxy};

/// Polls `check` every 20 ms until it is true; panics with `what` once
/// `limit` has passed.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which upstream answered a GET through the proxy (`x-upstream`), or the
/// status when the proxy answered itself.
pub async fn served_by(p: &TestProxy) -> Result<String, u16> {
    let r = client().get(&p.url("/")).await;
    match r.header("x-upstream") {
        Some(u) => Ok(u.to_owned()),
        None => Err(r.status.as_u16()),
    }
}

/// Waits until requests land on `addr`, then checks the next `n` all do.
pub async fn traffic_moves_to(p: &TestProxy, addr: std::net::SocketAddr, limit: Duration) {
    let want = addr.to_string();
    eventually(limit, &format!("traffic reaches {want}"), || async { served_by(p).await.as_deref() == Ok(&want) })
        .await;
    for _ in 0..5 {
        assert_eq!(served_by(p).await, Ok(want.clone()), "traffic went back");
    }
}
