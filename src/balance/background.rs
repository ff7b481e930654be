//! A cluster's balancing tasks: the ejection-expiry watcher (with outlier
//! detection), the health checker (with `health_check`), and the sweep of
//! idle upstream connections. They hold the balancer weakly and are aborted
//! when the cluster drops this handle.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::{health_check, outlier, Balancer};
use crate::config::settings::ClusterSettings;

/// The running tasks; dropping this stops them.
#[derive(Debug, Default)]
pub struct Background {
    tasks: Vec<AbortHandle>,
}

impl Background {
    /// Starts the tasks `settings` asks for. Needs a tokio runtime.
    pub fn start(balancer: &Arc<Balancer>, settings: &ClusterSettings) -> Self {
        let mut tasks = vec![tokio::spawn(close_idle(Arc::downgrade(balancer), settings.idle_timeout)).abort_handle()];
        if settings.outlier_detection.is_some() {
            let watch = outlier::expire(Arc::downgrade(balancer), balancer.changed());
            tasks.push(tokio::spawn(watch).abort_handle());
        }
        if let Some(hc) = &settings.health_check {
            // A client of its own, so probes do not take connections from
            // (or leave them to) traffic.
            let client = crate::upstream::client(settings.connect_timeout, settings.protocol);
            let probe = health_check::http_probe(client, hc.path.clone(), settings.protocol.version());
            tasks.push(tokio::spawn(health_check::run(Arc::downgrade(balancer), hc.clone(), probe)).abort_handle());
        }
        Background { tasks }
    }
}

/// Every half `idle_timeout`, closes the endpoints' connections unused for
/// `idle_timeout`: one is closed between 1 and 1.5 `idle_timeout` after
/// its last use, traffic or not.
async fn close_idle(balancer: Weak<Balancer>, idle_timeout: Duration) {
    // At least a millisecond: `interval` refuses a zero period, which a
    // 1ns idle_timeout would make.
    let mut tick = tokio::time::interval((idle_timeout / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(balancer) = balancer.upgrade() else { return };
        for endpoint in &balancer.snapshot().endpoints {
            if let Some(pool) = endpoint.pool.get() {
                pool.close_expired();
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
