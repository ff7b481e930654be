//! Self-registration: this proxy publishes its own address in etcd, under
//! a lease, for as long as it is ready.
//!
//! Why a lease: a crashed or killed proxy cannot clean up after itself; its
//! key must still go. The key is bound to a lease of `ttl`, kept alive at
//! a third of it; stop the keep-alives (SIGKILL, a partition) and etcd
//! deletes the key within `ttl`. A clean stop revokes the lease, which
//! deletes the key at once, before draining begins, so callers stop
//! sending while in-flight requests finish.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio_util::sync::CancellationToken;

use super::etcd::connect_options;
use crate::config::settings::RegistrationSettings;
use crate::error::BoxError;
use crate::resilience::retry::backoff::Backoff;

/// How often readiness is checked before registering.
const READY_POLL: Duration = Duration::from_millis(100);
/// The longest a clean stop waits for etcd to revoke the lease.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running registration; [`Registration::deregister`] removes the key.
pub struct Registration {
    stop: CancellationToken,
    /// Cancelled by the task as it ends (after revoking).
    done: CancellationToken,
}

/// How one registration ended.
enum Ended {
    /// Asked to stop; the lease is revoked.
    Stopped,
    /// The proxy stopped being ready; the lease is revoked.
    NotReady,
}

impl Registration {
    /// Starts registering once `ready()` is true, re-registering after any
    /// failure with a backoff.
    pub fn start(settings: RegistrationSettings, ready: impl Fn() -> bool + Send + Sync + 'static) -> Registration {
        let (stop, done) = (CancellationToken::new(), CancellationToken::new());
        let ready = Arc::new(ready);
        let (task_stop, task_done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            let _done = task_done.drop_guard();
            let (backoff, mut rng, mut failures) =
                (Backoff::new(Duration::from_millis(200), Duration::from_secs(5)), fastrand::Rng::new(), 0);
            loop {
                while !ready() {
                    tokio::select! {
                        _ = task_stop.cancelled() => return,
                        _ = tokio::time::sleep(READY_POLL) => {}
                    }
                }
                match register(&settings, &*ready, &task_stop).await {
                    Ok(Ended::Stopped) => return,
                    Ok(Ended::NotReady) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(key = %settings.key, error = %e, "etcd registration failed; retrying");
                        tokio::select! {
                            _ = task_stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff.delay(failures, &mut rng).max(Duration::from_millis(100))) => {}
                        }
                    }
                }
            }
        });
        Registration { stop, done }
    }

    /// Removes the key now (revokes the lease) and stops; waits at most
    /// [`REVOKE_TIMEOUT`] for etcd.
    pub async fn deregister(&self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(REVOKE_TIMEOUT + Duration::from_millis(200), self.done.cancelled()).await;
    }
}

/// Grants a lease, puts the key on it, keeps it alive while ready.
///
/// A stop is heeded at every step, not only once the key is up: a stop
/// while connecting or granting ends at once (a lease granted unseen has
/// no key and lapses at its ttl); a stop while putting revokes the lease,
/// which removes the key whether or not the put landed. So once
/// [`Registration::deregister`] returns, no put of this task is still to
/// come.
async fn register(
    s: &RegistrationSettings,
    ready: &(dyn Fn() -> bool + Send + Sync),
    stop: &CancellationToken,
) -> Result<Ended, BoxError> {
    let ttl = i64::try_from(s.ttl.as_secs()).unwrap_or(i64::MAX).max(2);
    let setup = async {
        let mut client = Client::connect(&s.endpoints, Some(connect_options())).await?;
        let lease = client.lease_grant(ttl, None).await?.id();
        Ok::<_, BoxError>((client, lease))
    };
    let (mut client, lease) = tokio::select! {
        _ = stop.cancelled() => return Ok(Ended::Stopped),
        r = setup => r?,
    };
    let put = client.put(s.key.as_bytes(), s.address.as_bytes(), Some(PutOptions::new().with_lease(lease)));
    let ended = tokio::select! {
        _ = stop.cancelled() => Some(Ended::Stopped),
        r = put => {
            r?;
            None
        }
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            tracing::info!(key = %s.key, address = %s.address, lease, "registered in etcd");
            keep_alive(&mut client, lease, s, ready, stop).await?
        }
    };
    match tokio::time::timeout(REVOKE_TIMEOUT, client.lease_revoke(lease)).await {
        Ok(Ok(_)) => tracing::info!(key = %s.key, "deregistered from etcd"),
        Ok(Err(e)) => tracing::warn!(key = %s.key, error = %e, "etcd lease revoke failed; the key goes at its ttl"),
        Err(_) => tracing::warn!(key = %s.key, "etcd lease revoke timed out; the key goes at its ttl"),
    }
    Ok(ended)
}

/// Keeps `lease` alive while ready, until stopped; an expired lease is an
/// error (the key is gone: register again).
async fn keep_alive(
    client: &mut Client,
    lease: i64,
    s: &RegistrationSettings,
    ready: &(dyn Fn() -> bool + Send + Sync),
    stop: &CancellationToken,
) -> Result<Ended, BoxError> {
    let (mut keeper, mut acks) = client.lease_keep_alive(lease).await?;
    let mut tick = tokio::time::interval(s.ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(Ended::Stopped),
            _ = tick.tick() => {
                if !ready() {
                    return Ok(Ended::NotReady);
                }
                keeper.keep_alive().await?;
            }
            ack = acks.message() => match ack? {
                Some(a) if a.ttl() > 0 => {}
                _ => return Err("etcd lease expired".into()),
            },
        }
    }
}
