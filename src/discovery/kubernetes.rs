//! `kubernetes`: the EndpointSlices of a Service, watched.
//!
//! kube-runtime's watcher does the list-then-watch dance (relisting when
//! the API server answers 410 Gone, backing off on errors); this file only
//! turns slices into endpoints. A Service's endpoints may be spread over
//! several slices (one per address family, at most 100 endpoints each), so
//! every slice labelled `kubernetes.io/service-name=<service>` is kept and
//! the set is their union. A relist is buffered until it is complete, so a
//! half-listed Service never replaces the whole one.
//!
//! Which endpoints count: `ready` (absent means ready, per the API), and,
//! with `include_terminating`, those terminating but still `serving` (so a
//! rolling update's last pods keep taking requests until they stop).
//! FQDN slices are skipped; of an endpoint's addresses (fungible, per the
//! API) the first is used. The port is the slice port of that name, or the
//! given number.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Config};

use super::{Discover, EndpointSpec, PortRef, Update};
use crate::error::BoxError;

/// The label Kubernetes puts on a Service's slices.
const SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// The EndpointSlices of one Service.
#[derive(Clone)]
pub struct EndpointSlices {
    /// Service name.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// Which port of each endpoint.
    pub port: PortRef,
    /// Use terminating-but-serving endpoints too.
    pub include_terminating: bool,
    /// API server URL; `None`: in-cluster, else kubeconfig.
    pub api_server: Option<String>,
}

/// What the stream carries between answers.
struct State {
    source: EndpointSlices,
    events: Option<BoxStream<'static, Result<Event<EndpointSlice>, watcher::Error>>>,
    /// The slices by name, as last complete.
    slices: BTreeMap<String, EndpointSlice>,
    /// A relist in progress.
    relisting: Option<BTreeMap<String, EndpointSlice>>,
    /// The last set reported, so an unchanged one is not reported again.
    last: Option<Vec<EndpointSpec>>,
}

impl Discover for EndpointSlices {
    fn updates(&self) -> BoxStream<'static, Update> {
        let state = State { source: self.clone(), events: None, slices: BTreeMap::new(), relisting: None, last: None };
        stream::unfold(state, next).boxed()
    }
}

async fn next(mut st: State) -> Option<(Update, State)> {
    loop {
        let events = match &mut st.events {
            Some(events) => events,
            None => match watch(&st.source).await {
                Ok(events) => st.events.insert(events),
                Err(e) => {
                    // Not even a client (no kubeconfig): try again later.
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    st.last = None;
                    return Some((Err(format!("kubernetes: {e}").into()), st));
                }
            },
        };
        match events.next().await {
            None => st.events = None,
            // 410 Gone: the watch fell behind; the watcher relists. Routine,
            // not a failure.
            Some(Err(watcher::Error::WatchError(e))) if e.code == 410 => {
                tracing::debug!(service = %st.source.service, "kubernetes: watch expired; relisting");
            }
            Some(Err(e)) => {
                let e = format!("kubernetes {}/{}: {e}", st.source.namespace, st.source.service);
                // The next good set is reported even if unchanged, so the
                // cluster's last error clears once the watch recovers.
                st.last = None;
                return Some((Err(e.into()), st));
            }
            Some(Ok(ev)) => {
                if st.apply(ev) {
                    let set = endpoints(st.slices.values(), &st.source);
                    if st.last.as_ref() != Some(&set) {
                        st.last = Some(set.clone());
                        return Some((Ok(set), st));
                    }
                }
            }
        }
    }
}

impl State {
    /// Takes one watcher event in; true when the slice set is complete
    /// and may have changed.
    fn apply(&mut self, ev: Event<EndpointSlice>) -> bool {
        match ev {
            Event::Init => self.relisting = Some(BTreeMap::new()),
            Event::InitApply(s) => {
                self.relisting.get_or_insert_default().insert(name(&s), s);
            }
            Event::InitDone => {
                // The first complete list answers even when empty (`last`
                // is still None then).
                self.slices = self.relisting.take().unwrap_or_default();
                return true;
            }
            Event::Apply(s) => {
                self.slices.insert(name(&s), s);
                return true;
            }
            Event::Delete(s) => {
                self.slices.remove(&name(&s));
                return true;
            }
        }
        false
    }
}

/// Starts kube-runtime's watcher on the Service's slices.
async fn watch(
    s: &EndpointSlices,
) -> Result<BoxStream<'static, Result<Event<EndpointSlice>, watcher::Error>>, BoxError> {
    let config = match &s.api_server {
        Some(url) => Config::new(url.parse()?),
        None => Config::infer().await?,
    };
    let api: Api<EndpointSlice> = Api::namespaced(Client::try_from(config)?, &s.namespace);
    let config = watcher::Config::default().labels(&format!("{SERVICE_LABEL}={}", s.service));
    Ok(watcher::watcher(api, config).default_backoff().boxed())
}

fn name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// The union of every slice's usable endpoints, sorted, without repeats.
pub fn endpoints<'a>(slices: impl Iterator<Item = &'a EndpointSlice>, s: &EndpointSlices) -> Vec<EndpointSpec> {
    let mut out = Vec::new();
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        let Some(port) = port_of(slice, &s.port) else { continue };
        for ep in slice.endpoints.iter().filter(|e| usable(e, s.include_terminating)) {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
            let mut spec = EndpointSpec::new(SocketAddr::new(ip, port));
            if let Some(zone) = &ep.zone {
                spec.metadata.insert("zone".into(), zone.clone());
            }
            if let Some(node) = &ep.node_name {
                spec.metadata.insert("node".into(), node.clone());
            }
            out.push(spec);
        }
    }
    out.sort_by_key(|e| e.address);
    out.dedup_by_key(|e| e.address);
    out
}

/// The slice's port by name, or the number itself.
fn port_of(slice: &EndpointSlice, want: &PortRef) -> Option<u16> {
    match want {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.port?).ok()),
    }
}

fn usable(ep: &Endpoint, include_terminating: bool) -> bool {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    ready || (include_terminating && serving && terminating)
}
