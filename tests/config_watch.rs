//! Reload on a change to the config file, under load.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

fn valid(up: &Upstream) -> String {
    format!(
        "admin: {{address: 127.0.0.1:0}}\nlisteners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
         clusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    )
}

/// Ways to get a config wrong, each refused by validation.
const INVALID: [&str; 5] = [
    "listeners: [ {name: l,\n",
    "listeners: []\nclusters: []\ncolour: red\n",
    "admin: {address: 127.0.0.1:0}\nlisteners: [{name: l, address: 127.0.0.1:0, routes: [{name: r, cluster: nowhere}]}]\nclusters: []\n",
    "admin: {address: 127.0.0.1:0}\ndrain_timeout: soon\nlisteners: []\nclusters: []\n",
    "admin: {address: 127.0.0.1:0}\nlisteners: []\nclusters: [{name: c, endpoints: [\"not-an-address\"]}]\n",
];

/// 2,000+ requests while the file is rewritten 20 times, half of the
/// versions invalid: not one request fails, each valid version is serving
/// the moment its reload is counted, and each invalid one is counted as an
/// error while the previous version keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_rewrites_under_load_fail_no_request() {
    let ups = [Upstream::start().await, Upstream::start().await];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outrigger.yaml");
    std::fs::write(&path, valid(&ups[0])).unwrap();
    let p = Arc::new(TestProxy::start_file(&path).await);
    // Discovery answers on another task: a request before it would get
    // no-endpoints, which is the start's business, not the reload's.
    eventually(Duration::from_secs(10), "the proxy to be ready", || async { p.admin_get("/ready").await.0 == 200 })
        .await;

    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (p, done, sent) = (Arc::clone(&p), Arc::clone(&done), Arc::clone(&sent));
            tokio::spawn(async move {
                let c = client();
                let mut failed = Vec::new();
                while !done.load(Ordering::Relaxed) || sent.load(Ordering::Relaxed) < 2000 {
                    let r = c.try_send(http::Request::get(p.url("/")).body(Default::default()).unwrap()).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failed.push(format!("{} {}", r.status, r.text())),
                        Err(e) => failed.push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
                failed
            })
        })
        .collect();

    let reloads = |result: &'static str| {
        let p = Arc::clone(&p);
        async move { p.metric(&format!("outrigger_config_reloads_total{{result=\"{result}\"}}")).await }
    };
    for i in 0..20 {
        let serving = &ups[(i / 2 + 1) % 2];
        let text = if i % 2 == 0 { valid(serving) } else { INVALID[i / 2 % INVALID.len()].to_owned() };
        std::fs::write(&path, text).unwrap();
        let (ok, err) = ((i / 2 + 1) as f64, (i / 2 + i % 2) as f64);
        eventually(Duration::from_secs(10), &format!("rewrite {i} is reloaded"), || async {
            reloads("success").await == ok && reloads("error").await == err
        })
        .await;
        // The latest valid version serves now, not eventually.
        let latest = &ups[(i / 2 + 1) % 2];
        assert_eq!(served_by(&p).await, Ok(latest.addr.to_string()), "after rewrite {i}");
    }
    done.store(true, Ordering::Relaxed);
    let mut failed = Vec::new();
    for l in load {
        failed.extend(l.await.unwrap());
    }
    println!("config rewrites under load: {} of {} requests failed", failed.len(), sent.load(Ordering::Relaxed));
    assert!(sent.load(Ordering::Relaxed) >= 2000);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        sent.load(Ordering::Relaxed),
        &failed[..failed.len().min(5)]
    );
}
