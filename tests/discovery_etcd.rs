//! `etcd` discovery and self-registration, against a real etcd.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::etcd::Etcd;
use support::*;

/// How long a change may take to reach traffic (or etcd): a watch event is
/// normally there in milliseconds, but etcd is another process, and on a
/// loaded machine its disk writes alone can take seconds.
const FOLLOW: Duration = Duration::from_secs(10);

async fn proxy_on(etcd: &str, prefix: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
         clusters: [{{name: c, discovery: {{etcd: {{endpoints: [\"{etcd}\"], prefix: {prefix}}}}}}}]\n"
    ))
    .await
}

/// Keys registered, rewritten and deleted under the prefix move traffic;
/// a key outside the prefix changes nothing.
#[tokio::test]
async fn traffic_follows_keys_under_the_prefix() {
    let etcd = Etcd::start().await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    etcd.put("/services/orders/a", &a.addr.to_string()).await;
    etcd.put("/services/other/b", &b.addr.to_string()).await;
    let p = proxy_on(&etcd.url, "/services/orders/").await;
    traffic_moves_to(&p, a.addr, FOLLOW).await;

    // Delete before put, so no moment has both (see below).
    etcd.delete("/services/orders/a").await;
    etcd.put("/services/orders/b", &format!("{{\"address\": \"{}\", \"weight\": 2}}", b.addr)).await;
    traffic_moves_to(&p, b.addr, FOLLOW).await;

    etcd.put("/services/orders/b", &format!("\"{}\"", a.addr)).await;
    traffic_moves_to(&p, a.addr, FOLLOW).await;

    etcd.delete("/services/orders/b").await;
    eventually(FOLLOW, "an empty prefix empties the cluster", || async { served_by(&p).await == Err(503) }).await;
}

/// etcd dying keeps the last endpoints serving (the failure is counted and
/// shown); when it returns, the source reconnects and follows again.
#[tokio::test]
async fn etcd_outage_keeps_the_last_endpoints_and_reconnects() {
    let mut etcd = Etcd::start().await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    etcd.put("/s/a", &a.addr.to_string()).await;
    let p = proxy_on(&etcd.url, "/s/").await;
    traffic_moves_to(&p, a.addr, FOLLOW).await;

    etcd.kill();
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    eventually(Duration::from_secs(15), "the outage is counted", || async { p.metric(errors).await >= 1.0 }).await;
    assert_eq!(served_by(&p).await, Ok(a.addr.to_string()), "lost the last endpoints");
    assert_eq!(p.admin_get("/ready").await.0, 200, "a later failure must not unready the proxy");

    // Delete before put: the proxy may read between the two, and {a, b}
    // would be a fair answer that still sends traffic to a.
    etcd.restart().await;
    etcd.delete("/s/a").await;
    etcd.put("/s/b", &b.addr.to_string()).await;
    traffic_moves_to(&p, b.addr, Duration::from_secs(20)).await;
}

/// An etcd that cannot be reached at start: the cluster never gets its
/// first answer, so /ready stays 503 and requests get `no-endpoints`.
#[tokio::test]
async fn unreachable_etcd_at_start_keeps_ready_503() {
    let p = proxy_on(&format!("http://{}", refused_addr()), "/s/").await;
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    eventually(Duration::from_secs(15), "the failure is counted", || async { p.metric(errors).await >= 1.0 }).await;
    assert_eq!(p.admin_get("/ready").await.0, 503);
    let r = client().get(&p.url("/")).await;
    assert_eq!((r.status.as_u16(), r.header("x-outrigger-error")), (503, Some("no-endpoints")));
}

/// The real binary registers itself once ready; on SIGTERM its key is gone
/// the moment it has exited; on SIGKILL the key outlives it, then goes
/// within the lease's ttl.
#[tokio::test]
async fn the_binary_registers_and_deregisters() {
    let etcd = Etcd::start().await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.yaml");
    // Ports the binary binds, twice: reserved, not merely free a moment ago.
    let (me, admin) = (reserve_addr(), reserve_addr());
    let me_addr = me.addr;
    // The ttl leaves the key seconds after the SIGKILL (keep-alives come
    // every ttl/3), so "it outlived the process" holds on a loaded machine.
    std::fs::write(
        &path,
        format!(
            "admin: {{address: {}}}\ndrain_timeout: 1s\nregistration: {{etcd: {{endpoints: [\"{}\"], key: /services/orders/pod-1, address: \"{me_addr}\", ttl: 6s}}}}\n\
             listeners: [{{name: l, address: \"{me_addr}\", routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
            admin.addr, etcd.url, up.addr
        ),
    )
    .unwrap();
    let key = "/services/orders/pod-1";
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_outrigger")).arg("--config").arg(&path).stderr(Stdio::null()).spawn().unwrap()
    };
    let registered = || async { etcd.get(key).await == Some(me_addr.to_string()) };

    let mut child = start();
    eventually(Duration::from_secs(20), "the binary registers", registered).await;
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(etcd.get(key).await, None, "key left behind after SIGTERM");

    let mut child = start();
    eventually(Duration::from_secs(20), "the binary registers again", registered).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(registered().await, "nothing can remove the key but its lease");
    eventually(Duration::from_secs(20), "the lease expires", || async { etcd.get(key).await.is_none() }).await;
}

/// Registration follows the config: a reload that changes the key revokes
/// the old one and registers the new; one that drops `registration:`
/// revokes it; an unchanged reload keeps the same lease.
#[tokio::test]
async fn registration_follows_reloads() {
    let etcd = Etcd::start().await;
    let up = Upstream::start().await;
    let me = refused_addr();
    let cfg = |registration: &str| {
        format!(
            "admin: {{address: 127.0.0.1:0}}\n{registration}\
             listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
             clusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
            up.addr
        )
    };
    let reg = |key: &str| {
        format!("registration: {{etcd: {{endpoints: [\"{}\"], key: {key}, address: \"{me}\", ttl: 5s}}}}\n", etcd.url)
    };
    let p = TestProxy::start(&cfg(&reg("/svc/a"))).await;
    let has = |key: &'static str| {
        let etcd = &etcd;
        move || async move { etcd.get(key).await.is_some() }
    };
    eventually(FOLLOW, "registered as /svc/a", has("/svc/a")).await;
    let lease = etcd.lease_of("/svc/a").await;

    p.proxy.apply(outrigger::config::parse(&cfg(&reg("/svc/a")), "t").unwrap()).await.unwrap();
    assert_eq!(etcd.lease_of("/svc/a").await, lease, "an unchanged reload keeps the lease");

    p.proxy.apply(outrigger::config::parse(&cfg(&reg("/svc/b")), "t").unwrap()).await.unwrap();
    assert_eq!(etcd.get("/svc/a").await, None, "the old key is revoked before the reload returns");
    eventually(FOLLOW, "registered as /svc/b", has("/svc/b")).await;

    p.proxy.apply(outrigger::config::parse(&cfg(""), "t").unwrap()).await.unwrap();
    assert_eq!(etcd.get("/svc/b").await, None, "no registration, no key");
}
