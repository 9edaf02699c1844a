//! Admission under a flood from the network, end to end: the test makes a network namespace and a
//! veth pair, so the flood (bench/flood.py: 300 half-open HTTP and 200 half-open RTSP connections
//! held for 30 s) and an authenticated viewer come from an outside address of their own, while
//! loopback clients (Home Assistant's place) watch, ask `/healthz` and run `healthcheck` here.
//! The bridge runs as its own process so its memory is its own.
//!
//! Making a namespace needs root (CAP_NET_ADMIN) and iproute2: without them this test FAILS, it
//! never skips, so CI cannot pass without having run it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::sim::{Sim, SimOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_doorbell-bridge");
const TOKEN: &str = "flood-test-token-0123456789";
const VIEWER: (&str, &str) = ("viewer", "flood-pass-42");
const HOLD_SECS: u64 = 30;
const RSS_LIMIT_KB: u64 = 40 * 1024;

/// A namespace with one end of a veth pair; the other end stays here. Removed on drop.
struct Netns {
    name: String,
    veth: String,
    /// Our end's address, which the outside client connects to.
    inside_peer: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Netns {
    fn create() -> Netns {
        let pid = std::process::id();
        // 10.200.0.0/16 exists only between the two ends of this pair.
        let net = format!("10.200.{}", pid % 250 + 1);
        let ns = Netns { name: format!("dbb-adm-{pid}"), veth: format!("dbba{pid}"), inside_peer: format!("{net}.1") };
        let peer = format!("dbbb{pid}");
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), ns.name.clone()],
            vec![
                "link".into(),
                "add".into(),
                ns.veth.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                peer.clone(),
            ],
            vec!["link".into(), "set".into(), peer.clone(), "netns".into(), ns.name.clone()],
            vec!["addr".into(), "add".into(), format!("{net}.1/24"), "dev".into(), ns.veth.clone()],
            vec!["link".into(), "set".into(), ns.veth.clone(), "up".into()],
            vec![
                "-n".into(),
                ns.name.clone(),
                "addr".into(),
                "add".into(),
                format!("{net}.2/24"),
                "dev".into(),
                peer.clone(),
            ],
            vec!["-n".into(), ns.name.clone(), "link".into(), "set".into(), peer, "up".into()],
            vec!["-n".into(), ns.name.clone(), "link".into(), "set".into(), "lo".into(), "up".into()],
        ];
        for s in steps {
            let args: Vec<&str> = s.iter().map(String::as_str).collect();
            if let Err(e) = ip(&args) {
                panic!(
                    "this test needs a network namespace (root, iproute2) and could not make one: {e}. \
                     It does not skip: run the tests as root."
                );
            }
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
}

/// Milliseconds from connecting to the first RTP packet of `main`, as a loopback viewer.
async fn loopback_viewer(rtsp: SocketAddr) -> f64 {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(rtsp).await.unwrap();
    let url = format!("rtsp://{rtsp}/main");
    let mut buf = Vec::new();
    let mut session = String::new();
    for (i, (method, uri, extra)) in [
        ("DESCRIBE", url.clone(), String::new()),
        ("SETUP", format!("{url}/trackID=0"), "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n".to_string()),
        ("PLAY", url.clone(), String::new()),
    ]
    .into_iter()
    .enumerate()
    {
        let sess = if session.is_empty() { String::new() } else { format!("Session: {session}\r\n") };
        let req = format!("{method} {uri} RTSP/1.0\r\nCSeq: {}\r\n{extra}{sess}\r\n", i + 1);
        s.write_all(req.as_bytes()).await.unwrap();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    assert!(head.starts_with("RTSP/1.0 200"), "{method}: {head}");
                    if let Some(v) = head.lines().find_map(|l| l.strip_prefix("Session:")) {
                        session = v.trim().split(';').next().unwrap().to_string();
                    }
                    buf.drain(..end + 4 + len);
                    break;
                }
            }
            let mut tmp = [0u8; 8192];
            let n = s.read(&mut tmp).await.unwrap();
            assert!(n > 0, "closed during {method}");
            buf.extend_from_slice(&tmp[..n]);
        }
    }
    while buf.first() != Some(&b'$') {
        let mut tmp = [0u8; 8192];
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "closed before the first packet");
        buf.extend_from_slice(&tmp[..n]);
    }
    t0.elapsed().as_secs_f64() * 1000.0
}

fn write_config(dir: &Path, sim: &Sim, http_port: u16, rtsp_port: u16) -> std::path::PathBuf {
    let opts = DemoOptions { http_port, rtsp_port, sim_port: 0, data_dir: None };
    let mut v = serde_json::to_value(demo_config(&opts, sim)).unwrap();
    v["doorbell"]["password"] = json!(sim.opts.password);
    v["server"] = json!({
        "bind": "0.0.0.0", "http_port": http_port, "rtsp_port": rtsp_port, "api_token": TOKEN,
        "rtsp_username": VIEWER.0, "rtsp_password": VIEWER.1,
    });
    v["coiot"] = json!({"enabled": false});
    v["mqtt"] = json!({});
    v["data_dir"] = json!(dir.join("data"));
    v["log_level"] = json!("warn");
    let path = dir.join("bridge.yaml");
    std::fs::File::create(&path).unwrap().write_all(serde_yaml::to_string(&v).unwrap().as_bytes()).unwrap();
    path
}

fn p99(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_the_network_refuses_no_loopback_or_authenticated_client() {
    let ns = Netns::create();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (http_port, rtsp_port) = (free_port(), free_port());
    let config = write_config(dir.path(), &sim, http_port, rtsp_port);
    let mut bridge =
        Command::new(BIN).arg("--config").arg(&config).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    let pid = bridge.id();
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let rtsp: SocketAddr = format!("127.0.0.1:{rtsp_port}").parse().unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    // Up, with the doorbell's main stream playing (so a viewer's start is the bridge's doing).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the bridge did not start playing in time");
        if let Ok(r) = client.get(format!("http://{http}/api/status")).send().await {
            let st: Value = r.json().await.unwrap_or_default();
            if st["streams"]["main"]["upstream"] == "connected" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let flood_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/flood.py");
    let flood = tokio::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3"])
        .arg(&flood_script)
        .args(["--host", &ns.inside_peer, "--http-port", &http_port.to_string()])
        .args(["--rtsp-port", &rtsp_port.to_string(), "--http", "300", "--rtsp", "200"])
        .args(["--hold", &HOLD_SECS.to_string(), "--token", TOKEN, "--rtsp-user", VIEWER.0, "--rtsp-pass", VIEWER.1])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let flood = tokio::spawn(flood.wait_with_output());

    // Let the flood build up, then measure from loopback until it ends.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut healthz = Vec::new();
    let mut viewers = Vec::new();
    let mut checks = 0;
    let mut rss_max = 0;
    let until = Instant::now() + Duration::from_secs(HOLD_SECS - 6);
    let mut next_probe = Instant::now();
    while Instant::now() < until {
        let t0 = Instant::now();
        let r = client.get(format!("http://{http}/healthz")).timeout(Duration::from_secs(5)).send().await;
        assert!(r.is_ok_and(|r| r.status() == 200), "/healthz failed under the flood");
        healthz.push(t0.elapsed().as_secs_f64() * 1000.0);
        rss_max = rss_max.max(rss_kb(pid, "VmRSS:"));
        if Instant::now() >= next_probe {
            next_probe = Instant::now() + Duration::from_secs(3);
            viewers.push(tokio::time::timeout(Duration::from_secs(5), loopback_viewer(rtsp)).await.expect("viewer"));
            let ok = tokio::process::Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .arg("healthcheck")
                .stderr(Stdio::null())
                .status()
                .await
                .unwrap()
                .success();
            assert!(ok, "healthcheck failed under the flood");
            checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = flood.await.unwrap().unwrap();
    let outside: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("flood output: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    let hwm = rss_kb(pid, "VmHWM:");
    let _ = bridge.kill();
    let _ = bridge.wait();
    sim.stop().await;

    let hz_p99 = p99(&mut healthz.clone());
    let viewer_max = viewers.iter().cloned().fold(0.0, f64::max);
    println!(
        "healthz n={} p99={hz_p99:.1} ms; loopback viewer starts {viewers:.0?} ms; {checks} healthchecks; RSS max \
         {rss_max} kB (HWM {hwm} kB); outside: {outside}",
        healthz.len()
    );
    // The flood really happened, from the outside address.
    assert!(outside["http_connects"].as_u64().unwrap() >= 300, "{outside}");
    assert!(outside["rtsp_connects"].as_u64().unwrap() >= 200, "{outside}");
    // Loopback: never refused, never slow.
    assert!(hz_p99 <= 100.0, "/healthz p99 {hz_p99:.1} ms");
    assert!(viewers.len() >= 5 && viewer_max < 1000.0, "loopback viewer starts {viewers:?} ms");
    assert!(checks >= 5);
    // The authenticated outside viewer too, every time.
    let outside_viewers = outside["viewer_ms"].as_array().unwrap();
    assert!(outside_viewers.len() >= 5, "{outside}");
    for v in outside_viewers {
        assert!(v.as_f64().is_some_and(|ms| ms < 1000.0), "outside viewer: {v} ({outside})");
    }
    // /metrics follows the access rule, before and during the flood; the token opens the API through it.
    assert_eq!(outside["before_metrics_no_token"], 401, "{outside}");
    assert_eq!(outside["before_metrics_token"], 200, "{outside}");
    for (key, want) in [("metrics_no_token", 401), ("metrics_token", 200), ("status_token", 200)] {
        let got = outside[key].as_array().unwrap();
        assert!(!got.is_empty());
        for g in got {
            assert_eq!(g[0], want, "{key}: {g} ({outside})");
            assert!(g[1].as_f64().unwrap() < 1000.0, "{key}: {g}");
        }
    }
    assert!(rss_max < RSS_LIMIT_KB && hwm < RSS_LIMIT_KB, "RSS {rss_max} kB, peak {hwm} kB");
}
