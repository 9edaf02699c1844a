//! The bridge as its own process, for end-to-end tests that kill it or fill its disk: start it
//! on a config file and wait for `/healthz`, `kill -9` it, read its HTTP API; and a small tmpfs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_doorbell-bridge");

pub fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running bridge; killed when dropped.
pub struct Bridge {
    child: Child,
    pub http: SocketAddr,
}

impl Bridge {
    pub async fn start(config: &Path, http: SocketAddr) -> Bridge {
        let child = Command::new(BIN).arg("--config").arg(config).stdout(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while reqwest::get(format!("http://{http}/healthz")).await.is_err() {
            assert!(Instant::now() < deadline, "the bridge did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Bridge { child, http }
    }

    pub fn kill9(mut self) {
        let _ = Command::new("kill").args(["-9", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("http://{}{path}", self.http)).await.unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small tmpfs, unmounted when dropped. Mounting needs root: without it the test fails rather
/// than skip.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
        match out {
            Ok(o) if o.status.success() => Tmpfs(at.to_path_buf()),
            Ok(o) => panic!(
                "this test needs a small tmpfs (root) and could not mount one: {}. It does not skip.",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount: {e}"),
        }
    }

    /// Writes a file until the disk refuses.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
