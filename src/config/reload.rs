//! What triggers a reload: SIGHUP and a change to the config file. (`POST
//! /reload` is in `admin`.) Each trigger calls [`Proxy::reload`], which
//! validates fully and keeps the old table on any error.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::fswatch::{read_settled, DirWatch, DEBOUNCE};
use crate::runtime::Proxy;

/// Reloads on every SIGHUP, until the process ends.
pub async fn on_sighup(proxy: Arc<Proxy>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading config");
        let _ = proxy.reload().await;
    }
}

/// Reloads whenever the config file's content changes, until `stop`.
///
/// Watches the file's folder (see [`crate::fswatch`]), so ConfigMap swaps
/// and editors' atomic saves are seen. The watch is set up before this
/// returns, so a change right after start is not missed. Holds the proxy
/// weakly: the watch never keeps a stopped proxy alive. A change that
/// leaves the bytes as they were (a touch, a sibling file) does not reload.
pub fn watch_file(proxy: &Arc<Proxy>, path: PathBuf, stop: CancellationToken) {
    let mut watch = match DirWatch::new(&path, DEBOUNCE) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot watch the config file; reload with SIGHUP or POST /reload");
            return;
        }
    };
    let mut last = std::fs::read(&path).ok();
    let proxy = Arc::downgrade(proxy);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                alive = watch.changed() => if !alive { return },
            }
            let now = read_settled(&path).await.ok();
            if now.is_none() || now == last {
                continue;
            }
            last = now;
            let Some(proxy) = proxy.upgrade() else { return };
            tracing::info!(file = %path.display(), "config file changed: reloading");
            let _ = proxy.reload().await;
        }
    });
}
