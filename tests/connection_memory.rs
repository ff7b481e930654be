//! Heap memory an idle keep-alive connection costs the proxy, measured with
//! an instrumented global allocator: N clients each send one request, all
//! held at the upstream at once (so the proxy opens N upstream connections,
//! as under load), then sit idle on their open connections. The proxy's
//! share is the heap still held then, through the proxy minus directly.
//! Everything runs on one thread, in this process of its own (the counts
//! are process-wide).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 100;

/// Live heap bytes added while `N` connections to `addr` each made one
/// request (held at `up` until all arrived) and stayed open, idle.
async fn held_bytes(addr: SocketAddr, up: &Upstream) -> i64 {
    let gate = Gate::new();
    up.set_default(Fault::Gated(gate.clone(), 200));
    let (hits, open) = (up.hits(), up.open_connections());
    let region = Region::new(GLOBAL);
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: memory.test\r\n\r\n").await.unwrap();
        conns.push(s);
    }
    eventually(Duration::from_secs(10), "every request held at the upstream", || async { up.hits() >= hits + N }).await;
    gate.open();
    for s in &mut conns {
        let (head, _) = read_response(s, &mut Vec::new()).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // Let every connection task go back to waiting for its next request.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let c = region.change();
    let held = c.bytes_allocated as i64 + c.bytes_reallocated as i64 - c.bytes_deallocated as i64;
    drop(conns);
    // What these connections hold at the upstream is freed before the
    // next measurement starts, not during it.
    if addr == up.addr {
        eventually(Duration::from_secs(10), "the upstream closed its side", || async { up.open_connections() <= open })
            .await;
    }
    held
}

/// An idle client connection and the upstream connection it brought cost
/// the proxy at most 12 KiB of heap together (about 4 KiB today; 45 KiB
/// with hyper's 8 KiB read and write buffers held for a connection's life
/// on both sides and its 16 KiB request queue per upstream connection).
#[tokio::test(flavor = "current_thread")]
async fn an_idle_connection_holds_little_memory() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    // Warm up what is allocated once (the proxy's first connections, the
    // per-thread read buffer, metric series).
    let cl = client();
    for _ in 0..20 {
        cl.get(&p.url("/")).await;
    }
    let direct = held_bytes(up.addr, &up).await;
    let proxied = held_bytes(p.addr, &up).await;
    let per_connection = (proxied - direct) as f64 / N as f64 / 1024.0;
    println!(
        "heap held per idle connection: direct {direct} B, proxied {proxied} B, proxy's share {per_connection:.1} KiB"
    );
    assert!(per_connection <= 12.0, "an idle connection holds {per_connection:.1} KiB in the proxy");
}
