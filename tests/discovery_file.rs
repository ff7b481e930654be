//! `file` discovery: the endpoints file is watched, and traffic follows it.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

/// How long a change may take to reach traffic: the watch's debounce, and
/// for an empty read up to a second's grace, on a loaded machine.
const FOLLOW: Duration = Duration::from_secs(10);

/// A config in `dir` whose one cluster reads `endpoints` (relative to the
/// config's folder).
async fn proxy_reading(dir: &Path, endpoints: &str) -> TestProxy {
    let config = dir.join("outrigger.yaml");
    std::fs::write(
        &config,
        format!(
            "admin: {{address: 127.0.0.1:0}}\nlisteners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
             clusters: [{{name: c, discovery: {{file: {{path: {endpoints}}}}}}}]\n"
        ),
    )
    .unwrap();
    TestProxy::start_file(&config).await
}

/// Two upstreams, `a` and `b`, and a proxy whose cluster reads eps.yaml in
/// `dir`, which names `a`: traffic already reaches `a`.
async fn serving_a_of_two() -> (Upstream, Upstream, tempfile::TempDir, TestProxy) {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eps.yaml"), format!("- {}\n", a.addr)).unwrap();
    let p = proxy_reading(dir.path(), "eps.yaml").await;
    traffic_moves_to(&p, a.addr, FOLLOW).await;
    (a, b, dir, p)
}

/// Rewriting the file moves traffic to the new endpoints; a file that no
/// longer parses, or is empty, is counted as an error and the last good set
/// keeps serving.
#[tokio::test]
async fn traffic_follows_a_rewritten_file() {
    let (_a, b, dir, p) = serving_a_of_two().await;
    assert_eq!(p.admin_get("/ready").await.0, 200);

    std::fs::write(dir.path().join("eps.yaml"), format!("[{{\"address\": \"{}\", \"weight\": 2}}]", b.addr)).unwrap();
    traffic_moves_to(&p, b.addr, FOLLOW).await;

    // A rewrite may be read between its truncate and its write (an empty
    // file, itself an error), so wait for the error this content gives.
    std::fs::write(dir.path().join("eps.yaml"), "- not an address\n").unwrap();
    eventually(FOLLOW, "the bad file is reported", || async { last_error(&p).await.contains("not an address") }).await;
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    let counted = p.metric(errors).await;
    assert!(counted >= 1.0, "the bad file was not counted");
    assert_eq!(served_by(&p).await, Ok(b.addr.to_string()), "the last good set stopped serving");
    let (_, clusters) = p.admin_get("/clusters").await;
    let clusters: serde_json::Value = serde_json::from_str(&clusters).unwrap();
    assert_eq!(clusters["clusters"][0]["discovery"]["source"], "file");

    // What a truncate-then-write leaves for a moment is not "no endpoints".
    std::fs::write(dir.path().join("eps.yaml"), "").unwrap();
    eventually(FOLLOW, "the empty file is reported", || async { last_error(&p).await.contains("empty") }).await;
    assert!(p.metric(errors).await > counted, "the empty file was not counted");
    assert_eq!(served_by(&p).await, Ok(b.addr.to_string()), "an empty file dropped the endpoints");
}

/// The cluster's last discovery error in /clusters ("" when none).
async fn last_error(p: &TestProxy) -> String {
    let (_, clusters) = p.admin_get("/clusters").await;
    let clusters: serde_json::Value = serde_json::from_str(&clusters).unwrap();
    clusters["clusters"][0]["discovery"]["last_error"].as_str().unwrap_or_default().to_owned()
}

/// A ConfigMap-style update (the `..data` symlink swapped to a new
/// timestamped folder) is seen, though the file's own path never changes.
#[tokio::test]
async fn traffic_follows_a_configmap_symlink_swap() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    publish(d, "..2024_01", &format!("- {}\n", a.addr));
    std::os::unix::fs::symlink("..data/eps.yaml", d.join("eps.yaml")).unwrap();
    let p = proxy_reading(d, "eps.yaml").await;
    traffic_moves_to(&p, a.addr, FOLLOW).await;

    publish(d, "..2024_02", &format!("- {}\n", b.addr));
    traffic_moves_to(&p, b.addr, FOLLOW).await;
}

/// What the kubelet does: write a new folder, point `..data_tmp` at it,
/// rename it over `..data` (atomic), remove the old folder.
fn publish(dir: &Path, version: &str, content: &str) {
    std::fs::create_dir(dir.join(version)).unwrap();
    std::fs::write(dir.join(version).join("eps.yaml"), content).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// A file missing at start: the cluster has no first answer, so /ready is
/// 503 and requests get `no-endpoints`; once the file appears, both clear.
#[tokio::test]
async fn a_missing_file_keeps_ready_503_until_it_appears() {
    let a = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_reading(dir.path(), "eps.yaml").await;
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    eventually(FOLLOW, "the missing file is counted", || async { p.metric(errors).await == 1.0 }).await;
    assert_eq!(p.admin_get("/ready").await.0, 503);
    let r = client().get(&p.url("/")).await;
    assert_eq!((r.status.as_u16(), r.header("x-outrigger-error")), (503, Some("no-endpoints")));

    std::fs::write(dir.path().join("eps.yaml"), format!("- {}\n", a.addr)).unwrap();
    traffic_moves_to(&p, a.addr, FOLLOW).await;
    assert_eq!(p.admin_get("/ready").await.0, 200);
}

/// Once ready, the proxy stays ready when a reload adds a cluster whose
/// registry has not answered (Kubernetes would otherwise pull the pod from
/// its Services over one new route): that route answers `no-endpoints`,
/// /clusters shows the cluster not ready, every other route serves; when
/// the file appears, the new route serves too.
#[tokio::test]
async fn a_reload_adding_an_unanswered_cluster_keeps_the_proxy_ready() {
    let (a, b, dir, p) = serving_a_of_two().await;

    std::fs::write(
        dir.path().join("outrigger.yaml"),
        "admin: {address: 127.0.0.1:0}\nlisteners: [{name: l, address: 127.0.0.1:0, routes: [\
         {name: new, match: {path_prefix: /new}, cluster: d}, {name: r, cluster: c}]}]\n\
         clusters: [{name: c, discovery: {file: {path: eps.yaml}}}, {name: d, discovery: {file: {path: later.yaml}}}]\n",
    )
    .unwrap();
    p.proxy.reload().await.expect("a valid config");
    assert_eq!(p.admin_get("/ready").await.0, 200, "a new cluster took the proxy out of service");
    let r = client().get(&p.url("/new")).await;
    assert_eq!((r.status.as_u16(), r.header("x-outrigger-error")), (503, Some("no-endpoints")));
    assert_eq!(served_by(&p).await, Ok(a.addr.to_string()), "the old route stopped serving");
    let (_, clusters) = p.admin_get("/clusters").await;
    let clusters: serde_json::Value = serde_json::from_str(&clusters).unwrap();
    let d = clusters["clusters"].as_array().unwrap().iter().find(|c| c["name"] == "d").unwrap();
    assert_eq!(d["ready"], false, "{d}");

    std::fs::write(dir.path().join("later.yaml"), format!("- {}\n", b.addr)).unwrap();
    eventually(FOLLOW, "the new route to serve", || async {
        client().get(&p.url("/new")).await.header("x-upstream") == Some(&b.addr.to_string())
    })
    .await;
}
