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
    // The request stays in flight until the drain has been seen (once it
    // ends, the drain finishes and the admin server stops answering).
    let gate = Gate::new();
    let up = Upstream::start_with(Fault::Gated(gate.clone(), 200)).await;
    let p = TestProxy::start(&format!(
        "drain_timeout: 60s\nlisteners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    assert_eq!(p.admin_get("/ready").await.0, 200);
    let url = p.url("/slow");
    let in_flight = tokio::spawn(async move { client().get(&url).await });
    eventually(Duration::from_secs(10), "the request reaches the upstream", || async { up.hits() > 0 }).await;
    let proxy = p.proxy.clone();
    let shutdown = tokio::spawn(async move { proxy.shutdown().await });
    eventually(Duration::from_secs(10), "draining: /ready 503 and no new connections", || async {
        p.admin_get("/ready").await.0 == 503 && tokio::net::TcpStream::connect(p.addr).await.is_err()
    })
    .await;
    assert!(!shutdown.is_finished(), "the drain ended with a request in flight");
    gate.open();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(shutdown.await.unwrap(), "drain did not finish");
}

/// Draining closes a kept-alive connection that sits idle between
/// requests at once, not when the drain timeout runs out.
#[tokio::test]
async fn drain_closes_idle_keep_alive_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    let p = TestProxy::start(&format!(
        "drain_timeout: 60s\nlisteners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    let mut conn = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    conn.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
    let proxy = p.proxy.clone();
    let shutdown = tokio::spawn(async move { proxy.shutdown().await });
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection stayed open after the drain began");
    let done = tokio::time::timeout(Duration::from_secs(10), shutdown).await;
    assert!(done.expect("the drain waited for an idle connection").unwrap(), "drain did not finish");
}

/// The real binary: SIGTERM with a request in flight; the request gets its
/// 200 and the process exits 0.
#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    // The request is held until the binary says it is draining.
    let gate = Gate::new();
    let up = Upstream::start_with(Fault::Gated(gate.clone(), 200)).await;
    // Ports the binary binds: reserved, not merely free a moment ago.
    let (listener, admin) = (reserve_addr(), reserve_addr());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.yaml");
    std::fs::write(
        &path,
        format!(
            "admin: {{address: {}}}\ndrain_timeout: 60s\nlisteners: [{{name: l, address: {}, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
            admin.addr, listener.addr, up.addr
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
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Waits for a log line with all of `words`. It blocks this test's
    // runtime, which has nothing to do meanwhile (the upstream holds the
    // request until the gate opens).
    let wait_for_line = |words: Vec<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no log line with {words:?}"));
            if words.iter().all(|w| line.contains(w.as_str())) {
                break;
            }
        }
    };
    wait_for_line(vec!["listening".into(), listener.addr.to_string()]);
    let url = format!("http://{}/slow", listener.addr);
    let req = tokio::spawn(async move { client().get(&url).await });
    eventually(Duration::from_secs(10), "the request reaches the upstream", || async { up.hits() > 0 }).await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    wait_for_line(vec!["draining".into()]);
    assert!(!req.is_finished(), "the request did not wait for the upstream");
    gate.open();
    let r = req.await.unwrap();
    assert_eq!(r.status, 200);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}
