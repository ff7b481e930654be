//! A real dnsmasq on a free loopback port, answering from a hosts folder
//! that a test rewrites (dnsmasq re-reads it on change), killed when
//! dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{reserve_addr, Reserved};

pub struct Dnsmasq {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
    /// Keeps the TCP port from other tests while dnsmasq binds it.
    _port: Reserved,
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` (hosts-file lines) and extra arguments
    /// (e.g. `--srv-host=...`); waits until it answers on TCP. The TCP port
    /// is reserved, but its UDP twin cannot be: if another socket has it,
    /// dnsmasq exits at once, and another port is tried.
    pub async fn start(hosts: &str, args: &[String]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hosts")).unwrap();
        std::fs::write(dir.path().join("hosts/h"), hosts).unwrap();
        for _ in 0..5 {
            let port = reserve_addr();
            let mut child = Command::new("dnsmasq")
                .args(["--no-daemon", "--conf-file=/dev/null", "--user=root", "--pid-file"])
                .arg(format!("--port={}", port.addr.port()))
                .args(["--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"])
                .arg(format!("--hostsdir={}", dir.path().join("hosts").display()))
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq is installed (scripts/test.sh installs dnsmasq-base)");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                if tokio::net::TcpStream::connect(port.addr).await.is_ok() {
                    return Dnsmasq { addr: port.addr, child, dir, _port: port };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // could not bind: try another port
                }
                assert!(tokio::time::Instant::now() < deadline, "dnsmasq did not start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("dnsmasq exited at start on 5 ports in a row");
    }

    /// Replaces the hosts lines.
    pub fn set_hosts(&self, hosts: &str) {
        let tmp = self.dir.path().join("h.tmp");
        std::fs::write(&tmp, hosts).unwrap();
        std::fs::rename(tmp, self.dir.path().join("hosts/h")).unwrap();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
