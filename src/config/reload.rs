//! What triggers a reload: SIGHUP and a change to the config file. (`POST
//! /reload` is in `admin`.) Each trigger calls [`Proxy::reload`], which
//! validates fully and keeps the old table on any error.

use std::sync::Arc;

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
