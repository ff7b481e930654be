//! The running proxy: binds listeners and the admin server, swaps the
//! routing table on reload, drains on shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::settings::RegistrationSettings;
use crate::config::{self, ConfigErrors, Settings};
use crate::discovery::registration::Registration;
use crate::error::BoxError;
use crate::metrics::Metrics;
use crate::proxy::listener::{accept_loop, Limits};
use crate::proxy::state::StateStore;
use crate::proxy::table::{build_clusters, build_listener, Clusters, ListenerRoutes};

/// The longest a reload waits for new clusters' first discovery answer.
pub const WARM_UP: Duration = Duration::from_secs(5);

/// A listener that is bound and accepting.
struct Running {
    address: SocketAddr,
    local: SocketAddr,
    limits: Limits,
    routes: Arc<ArcSwap<ListenerRoutes>>,
    stop: CancellationToken,
}

/// The whole proxy.
pub struct Proxy {
    /// The registry /metrics serves.
    pub registry: Registry,
    /// Metric families.
    pub metrics: Metrics,
    settings: ArcSwap<Settings>,
    clusters: ArcSwap<Clusters>,
    listeners: Mutex<HashMap<String, Running>>,
    draining: AtomicBool,
    /// Set the first time every cluster had its first answer: from then on
    /// a cluster a reload adds does not take the proxy out of service
    /// while its discovery answers (see [`Proxy::is_ready`]).
    was_ready: AtomicBool,
    /// Stops every accept loop.
    stop: CancellationToken,
    /// Tells every connection to finish its in-flight requests and close.
    drain: CancellationToken,
    connections: TaskTracker,
    admin_addr: SocketAddr,
    /// Breakers, bulkheads and budgets kept across reloads.
    pub state: StateStore,
    /// This proxy's own key in etcd, when `registration:` asks for one,
    /// with the settings it was made from (a reload that changes them
    /// replaces it).
    registration: Mutex<Option<(RegistrationSettings, Registration)>>,
    /// Itself, for tasks that must not keep it alive.
    me: Weak<Proxy>,
    /// Reloads (SIGHUP, file watch, POST /reload) take turns, so a slower
    /// one that read an older file cannot land after a newer one.
    applying: Mutex<()>,
}

impl Proxy {
    /// Builds everything, binds every listener and the admin server.
    pub async fn start(settings: Settings) -> Result<Arc<Proxy>, BoxError> {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry)?;
        let clusters = build_clusters(&settings, &HashMap::new(), &metrics)?;
        let admin = TcpListener::bind(settings.admin)
            .await
            .map_err(|e| format!("cannot bind admin address {}: {e}", settings.admin))?;
        let admin_addr = admin.local_addr()?;
        let proxy = Arc::new_cyclic(|me| Proxy {
            registry,
            metrics,
            admin_addr,
            settings: ArcSwap::from_pointee(settings.clone()),
            clusters: ArcSwap::from_pointee(clusters),
            listeners: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            was_ready: AtomicBool::new(false),
            stop: CancellationToken::new(),
            drain: CancellationToken::new(),
            connections: TaskTracker::new(),
            state: StateStore::default(),
            registration: Mutex::new(None),
            me: me.clone(),
            applying: Mutex::new(()),
        });
        proxy.apply_listeners(&settings).await?;
        tokio::spawn(crate::admin::serve(admin, Arc::clone(&proxy), proxy.stop.clone()));
        proxy.apply_registration(settings.registration.clone()).await;
        if let Some(path) = settings.path.clone() {
            config::reload::watch_file(&proxy, path, proxy.stop.clone());
        }
        Ok(proxy)
    }

    /// Binds new listeners, re-routes kept ones, closes removed ones.
    async fn apply_listeners(&self, settings: &Settings) -> Result<(), BoxError> {
        let clusters = self.clusters.load();
        let mut running = self.listeners.lock().await;
        self.state.begin();
        // Bind everything new first, so a bind failure changes nothing.
        let mut bound = HashMap::new();
        for l in &settings.listeners {
            let keep = running
                .get(&l.name)
                .is_some_and(|r| r.address == l.address && r.limits.header_read_timeout == l.header_read_timeout);
            if !keep {
                let tcp = TcpListener::bind(l.address)
                    .await
                    .map_err(|e| format!("listener {:?}: cannot bind {}: {e}", l.name, l.address))?;
                bound.insert(l.name.clone(), tcp);
            }
        }
        let wanted: HashMap<&str, _> = settings.listeners.iter().map(|l| (l.name.as_str(), l)).collect();
        running.retain(|name, r| {
            let keep = wanted.contains_key(name.as_str()) && !bound.contains_key(name);
            if !keep {
                tracing::info!(listener = %name, address = %r.local, "closing listener");
                r.stop.cancel();
            }
            keep
        });
        for l in &settings.listeners {
            let routes = build_listener(l, &clusters, &self.metrics, &self.state);
            match bound.remove(&l.name) {
                None => {
                    let r = &running[&l.name];
                    r.routes.store(Arc::new(routes));
                }
                Some(tcp) => {
                    let local = tcp.local_addr()?;
                    tracing::info!(listener = %l.name, address = %local, "listening");
                    let routes = Arc::new(ArcSwap::from_pointee(routes));
                    let stop = self.stop.child_token();
                    let limits = Limits::from(l);
                    tokio::spawn(accept_loop(
                        tcp,
                        limits,
                        Arc::clone(&routes),
                        stop.clone(),
                        self.drain.clone(),
                        self.connections.clone(),
                    ));
                    running.insert(l.name.clone(), Running { address: l.address, local, limits, routes, stop });
                }
            }
        }
        // State no route or cluster asked for any more goes now, and its
        // gauges with it; a route removed and added back later starts fresh.
        for (kind, scope, name) in self.state.sweep() {
            self.metrics.forget_state(kind, scope.label(), &name);
        }
        Ok(())
    }

    /// Reloads the config file: validate fully, then swap; on any error
    /// keep serving the old table.
    pub async fn reload(&self) -> Result<(), ConfigErrors> {
        let path = self.settings.load().path.clone();
        let Some(path) = path else {
            return Err(ConfigErrors(vec![config::ConfigError {
                file: "<inline>".into(),
                position: None,
                message: "this proxy was not started from a file".into(),
            }]));
        };
        let _turn = self.applying.lock().await;
        let result = match config::load(&path) {
            Ok(settings) => self.apply_in_turn(settings).await.map_err(|e| {
                ConfigErrors(vec![config::ConfigError {
                    file: path.display().to_string(),
                    position: None,
                    message: e.to_string(),
                }])
            }),
            Err(errs) => Err(errs),
        };
        match &result {
            Ok(()) => {
                tracing::info!(file = %path.display(), "config reloaded");
                self.metrics.config_reloads.with_label_values(&["success"]).inc();
            }
            Err(errs) => {
                for e in &errs.0 {
                    tracing::error!("config reload refused: {e}");
                }
                self.metrics.config_reloads.with_label_values(&["error"]).inc();
            }
        }
        result
    }

    /// Swaps in a validated config. New clusters warm up first: the swap
    /// waits (up to [`WARM_UP`]) for their discovery's first answer, so no
    /// request meets a new cluster with no endpoints yet.
    pub async fn apply(&self, settings: Settings) -> Result<(), BoxError> {
        let _turn = self.applying.lock().await;
        self.apply_in_turn(settings).await
    }

    /// [`Proxy::apply`] for a caller holding the turn.
    async fn apply_in_turn(&self, settings: Settings) -> Result<(), BoxError> {
        let old = self.clusters.load_full();
        let clusters = build_clusters(&settings, &old, &self.metrics)?;
        let warming: Vec<_> = clusters
            .iter()
            .filter(|(name, c)| !old.get(*name).is_some_and(|o| Arc::ptr_eq(o, c)))
            .map(|(_, c)| c.first_answer())
            .collect();
        if tokio::time::timeout(WARM_UP, futures_util::future::join_all(warming)).await.is_err() {
            tracing::warn!(
                ?WARM_UP,
                "a new cluster has no endpoints yet; swapping anyway (its routes answer no-endpoints until it has)"
            );
        }
        // Latch readiness earned by the clusters serving now, even if no
        // probe asked since, before a new cluster could hide it.
        let _ = self.is_ready();
        let previous = self.clusters.swap(Arc::new(clusters));
        if let Err(e) = self.apply_listeners(&settings).await {
            self.clusters.store(previous);
            return Err(e);
        }
        for gone in old.keys().filter(|name| !self.clusters.load().contains_key(*name)) {
            self.metrics.forget_cluster(gone);
        }
        self.apply_registration(settings.registration.clone()).await;
        self.settings.store(Arc::new(settings));
        Ok(())
    }

    /// Registers as `wanted` says: unchanged settings keep the running
    /// registration (and its lease); changed or removed ones revoke the old
    /// key first, so the registry never lists this proxy twice.
    async fn apply_registration(&self, wanted: Option<RegistrationSettings>) {
        let mut current = self.registration.lock().await;
        if current.as_ref().map(|(s, _)| s) == wanted.as_ref() {
            return;
        }
        if let Some((old, registration)) = current.take() {
            tracing::info!(key = %old.key, "registration changed; revoking the old key");
            registration.deregister().await;
        }
        if let Some(settings) = wanted.filter(|_| !self.is_draining()) {
            let me = self.me.clone();
            let registration =
                Registration::start(settings.clone(), move || me.upgrade().is_some_and(|p| p.is_ready()));
            *current = Some((settings, registration));
        }
    }

    /// The running config.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The running clusters.
    pub fn clusters(&self) -> Arc<Clusters> {
        self.clusters.load_full()
    }

    /// Where the admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where a listener is bound (its real port when configured as :0).
    pub async fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.lock().await.get(name).map(|r| r.local)
    }

    /// Ready: not draining, and every cluster has had discovery's first
    /// answer, or did once. A reload that adds a cluster whose registry is
    /// slow (or down) must not make Kubernetes pull this pod from its
    /// Services, nor take its etcd registration away, while every other
    /// route serves: that new cluster answers `no-endpoints` until its first
    /// answer, and /clusters shows it not ready.
    pub fn is_ready(&self) -> bool {
        if self.draining.load(Ordering::Acquire) {
            return false;
        }
        if self.was_ready.load(Ordering::Acquire) {
            return true;
        }
        let ready = self.clusters.load().values().all(|c| c.is_ready());
        if ready {
            self.was_ready.store(true, Ordering::Release);
        }
        ready
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops accepting, marks /ready 503, lets in-flight requests finish for
    /// up to `drain_timeout`. Returns whether every connection finished.
    pub async fn shutdown(&self) -> bool {
        let timeout = self.settings.load().drain_timeout;
        self.draining.store(true, Ordering::Release);
        tracing::info!(?timeout, "draining");
        // Callers learn first, so they stop sending while we drain.
        if let Some((_, r)) = self.registration.lock().await.take() {
            r.deregister().await;
        }
        for r in self.listeners.lock().await.values() {
            r.stop.cancel();
        }
        self.drain.cancel();
        self.connections.close();
        let done = tokio::time::timeout(timeout, self.connections.wait()).await.is_ok();
        if !done {
            tracing::warn!("drain timeout passed with requests still in flight");
        }
        self.stop.cancel();
        done
    }
}
