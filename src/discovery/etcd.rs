//! `etcd`: every key under a prefix is one endpoint.
//!
//! The classic list-then-watch: read the prefix whole, answer, then watch
//! from the revision just after that read, so no change between the two is
//! lost and none is seen twice. Any failure (etcd gone, the watch cancelled
//! or compacted away) reports an error, which keeps the last good set, and
//! starts over with a fresh read after a backoff; the fresh read makes the
//! set right again whatever was missed.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions, WatchStream};
use futures_util::stream::{self, BoxStream, StreamExt};

use super::{wire, Discover, EndpointSpec, Update};
use crate::error::BoxError;
use crate::resilience::retry::backoff::Backoff;

/// Reconnect waits grow from here...
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// ...to here.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Connection options shared by discovery and registration: fail fast on a
/// dead server (HTTP/2 pings), so the last good set is kept and a
/// reconnect starts instead of a call hanging.
pub(crate) fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
}

/// Keys under `prefix` in the etcd cluster at `endpoints`.
pub struct EtcdSource {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix.
    pub prefix: String,
}

/// What the stream carries between answers.
struct State {
    endpoints: Vec<String>,
    prefix: String,
    client: Option<Client>,
    watch: Option<WatchStream>,
    /// Endpoints by key: the set as etcd has it now.
    set: BTreeMap<Vec<u8>, EndpointSpec>,
    /// Failures in a row, for the backoff.
    failures: u32,
    rng: fastrand::Rng,
}

impl Discover for EtcdSource {
    fn updates(&self) -> BoxStream<'static, Update> {
        let state = State {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.clone(),
            client: None,
            watch: None,
            set: BTreeMap::new(),
            failures: 0,
            rng: fastrand::Rng::new(),
        };
        stream::unfold(state, next).boxed()
    }
}

async fn next(mut st: State) -> Option<(Update, State)> {
    loop {
        if st.failures > 0 {
            let wait = Backoff::new(BACKOFF_BASE, BACKOFF_MAX).delay(st.failures, &mut st.rng);
            tokio::time::sleep(wait.max(BACKOFF_BASE / 2)).await;
        }
        let step = match st.watch.is_some() {
            false => list_and_watch(&mut st).await.map(|()| true),
            true => watch_step(&mut st).await,
        };
        match step {
            Ok(true) => {
                st.failures = 0;
                let set = st.set.values().cloned().collect();
                return Some((Ok(set), st));
            }
            Ok(false) => continue,
            Err(e) => {
                st.watch = None;
                st.client = None;
                st.failures = st.failures.saturating_add(1);
                let e = format!("etcd {}: {e}", st.prefix).into();
                return Some((Err(e), st));
            }
        }
    }
}

/// Reads the whole prefix and starts a watch just after it.
async fn list_and_watch(st: &mut State) -> Result<(), BoxError> {
    if st.client.is_none() {
        st.client = Some(Client::connect(&st.endpoints, Some(connect_options())).await?);
    }
    let client = st.client.as_mut().expect("connected above");
    let resp = client.get(st.prefix.as_bytes(), Some(GetOptions::new().with_prefix())).await?;
    let revision = resp.header().map(|h| h.revision()).ok_or("etcd answered without a revision")?;
    st.set = resp.kvs().iter().filter_map(|kv| entry(kv.key(), kv.value())).collect();
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    st.watch = Some(client.watch(st.prefix.as_bytes(), Some(options)).await?);
    tracing::debug!(prefix = %st.prefix, revision, endpoints = st.set.len(), "etcd: listed, watching");
    Ok(())
}

/// Applies one watch message. `Ok(true)` when the set changed.
async fn watch_step(st: &mut State) -> Result<bool, BoxError> {
    let watch = st.watch.as_mut().expect("watching");
    let msg = watch.message().await?.ok_or("etcd closed the watch")?;
    if msg.canceled() {
        let why = match msg.compact_revision() {
            0 => msg.cancel_reason().to_owned(),
            rev => format!("history compacted to revision {rev}"),
        };
        return Err(format!("etcd cancelled the watch: {why}").into());
    }
    let mut changed = false;
    for ev in msg.events() {
        let Some(kv) = ev.kv() else { continue };
        changed = true;
        match ev.event_type() {
            EventType::Put => match entry(kv.key(), kv.value()) {
                Some((k, spec)) => st.set.insert(k, spec),
                None => st.set.remove(kv.key()),
            },
            EventType::Delete => st.set.remove(kv.key()),
        };
    }
    Ok(changed)
}

/// One key's endpoint; a value that does not read is left out (one bad key
/// must not stop the rest of the set from updating) and logged.
fn entry(key: &[u8], value: &[u8]) -> Option<(Vec<u8>, EndpointSpec)> {
    match wire::parse_value(value) {
        Ok(spec) => Some((key.to_vec(), spec)),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "etcd: ignoring a key whose value is not an endpoint");
            None
        }
    }
}
