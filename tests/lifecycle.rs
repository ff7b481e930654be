//! Starting, draining and stopping, in process and as the real binary.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// Draining: /ready turns 503, a request in flight completes with 200,
/// new connections are refused, shutdown reports every connection done.
#[tokio::test]
async fn drain_finishes_in_flight_requests() {
    let up = Upstream::start_with(Fault::Delay(Duration::from_millis(500), 200)).await;
    let p = TestProxy::start(&format!(
        "drain_timeout: 5s\nlisteners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    assert_eq!(p.admin_get("/ready").await.0, 200);
    let url = p.url("/slow");
    let in_flight = tokio::spawn(async move { client().get(&url).await });
    eventually(Duration::from_secs(5), "the request reaches the upstream", || async { up.hits() > 0 }).await;
    let proxy = p.proxy.clone();
    let shutdown = tokio::spawn(async move { proxy.shutdown().await });
    eventually(Duration::from_secs(2), "draining: /ready 503 and no new connections", || async {
        p.admin_get("/ready").await.0 == 503 && tokio::net::TcpStream::connect(p.addr).await.is_err()
    })
    .await;
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(shutdown.await.unwrap(), "drain did not finish");
}

/// The real binary: SIGTERM with a request in flight; the request gets its
/// 200 and the process exits 0.
#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let up = Upstream::start_with(Fault::Delay(Duration::from_millis(700), 200)).await;
    let port = refused_addr().port();
    let admin = refused_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.yaml");
    std::fs::write(
        &path,
        format!(
            "admin: {{address: 127.0.0.1:{admin}}}\ndrain_timeout: 5s\nlisteners: [{{name: l, address: 127.0.0.1:{port}, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
            up.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outrigger"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it says it is listening.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx.recv_timeout(deadline - std::time::Instant::now()).expect("proxy did not start");
        if line.contains("listening") && line.contains(&port.to_string()) {
            break;
        }
    }
    let url = format!("http://127.0.0.1:{port}/slow");
    let req = tokio::spawn(async move { client().get(&url).await });
    while up.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let r = req.await.unwrap();
    assert_eq!(r.status, 200);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}
