//! A real dnsmasq on a free loopback port, answering from a hosts folder
//! that a test rewrites (dnsmasq re-reads it on change), killed when
//! dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::refused_addr;

pub struct Dnsmasq {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` (hosts-file lines) and extra arguments
    /// (e.g. `--srv-host=...`); waits until it answers on TCP.
    pub async fn start(hosts: &str, args: &[String]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hosts")).unwrap();
        std::fs::write(dir.path().join("hosts/h"), hosts).unwrap();
        let addr = refused_addr();
        let child = Command::new("dnsmasq")
            .args(["--no-daemon", "--conf-file=/dev/null", "--user=root", "--pid-file"])
            .arg(format!("--port={}", addr.port()))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"])
            .arg(format!("--hostsdir={}", dir.path().join("hosts").display()))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (scripts/test.sh installs dnsmasq-base)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "dnsmasq did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Dnsmasq { addr, child, dir }
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
