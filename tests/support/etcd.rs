//! A real etcd on free loopback ports with a temporary data folder,
//! killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, GetOptions, PutOptions};

use super::{reserve_addr, Reserved};

pub struct Etcd {
    /// The client URL (`http://127.0.0.1:PORT`).
    pub url: String,
    peer: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The client and peer ports, kept from other tests for the whole
    /// test, so a restart finds them free.
    _ports: [Reserved; 2],
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Etcd {
        let ports = [reserve_addr(), reserve_addr()];
        let url = format!("http://{}", ports[0].addr);
        let peer = format!("http://{}", ports[1].addr);
        let mut e = Etcd { url, peer, child: None, dir: tempfile::tempdir().unwrap(), _ports: ports };
        e.restart().await;
        e
    }

    /// Kills etcd (SIGKILL); its data stays for [`Etcd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same ports and data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url, "--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &self.peer, "--initial-advertise-peer-urls", &self.peer])
            .args(["--initial-cluster", &format!("t={}", self.peer)])
            .args([
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (scripts/test.sh installs etcd-server)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(1), Client::connect([&self.url], None)).await
            {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), c.get("probe", None)).await {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("etcd exited at start: {status}");
            }
            assert!(tokio::time::Instant::now() < deadline, "etcd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect([&self.url], None).await.unwrap()
    }

    pub async fn put(&self, key: &str, value: &str) {
        self.client().await.put(key, value, None::<PutOptions>).await.unwrap();
    }

    pub async fn delete(&self, key: &str) {
        self.client().await.delete(key, None::<DeleteOptions>).await.unwrap();
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: &str) -> Option<String> {
        let r = self.client().await.get(key, None::<GetOptions>).await.unwrap();
        r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    }

    /// The lease `key` is attached to (0: none, or no key).
    pub async fn lease_of(&self, key: &str) -> i64 {
        let r = self.client().await.get(key, None::<GetOptions>).await.unwrap();
        r.kvs().first().map_or(0, |kv| kv.lease())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
