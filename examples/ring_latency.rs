//! Ring-detection benchmark (see docs/benchmarks.md, "Ring detection"; run by bench/ring_latency.sh).
//!
//! Runs the bridge in-process with a CoIoT unicast socket on loopback, watches `GET /api/events`
//! over a real HTTP connection, and sends Shelly Uni status datagrams over real UDP — each one also
//! to a second listener, `bench/aioshelly_ha_rule.py` (aioshelly's CoIoT parser + Home Assistant's
//! counter rule), so both judge the same datagrams in the same run.
//!
//! 1. latency: datagram with the rising edge sent -> `event: ring` read from /api/events.
//! 2. first report: presses with a real chime time (mechanical 300 ms, electronic 3 s hold):
//!    when does each side first report the press, counted from the rising edge?
//! 3. losses: presses with 5 % of datagrams dropped (seeded): presses reported by each side.
//! 4. parse cost per datagram: the bridge's `judge` vs aioshelly `CoapMessage` + rule.
//!
//! Usage: cargo run --release --example ring_latency -- PYTHON [PRESSES]

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use doorbell_bridge::config::Config;
use doorbell_bridge::ring::coiot::{self, DeviceMatch};
use doorbell_bridge::App;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const UNI: &str = "SHUNI-1#C45BBE6B9A12#2";

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Shelly {
    sock: UdpSocket,
    bridge: std::net::SocketAddr,
    ha: std::net::SocketAddr,
    serial: u16,
    cnt: u64,
    sent: Vec<Vec<u8>>,
}

impl Shelly {
    /// Sends the next status to both listeners (or to neither: a lost datagram); returns the time.
    fn status(&mut self, level: bool, event: &str, lost: bool) -> u128 {
        self.serial = self.serial.wrapping_add(1);
        let d = coiot::encode_status(
            self.serial,
            UNI,
            380,
            self.serial,
            coiot::uni_payload(level, event, self.cnt).as_bytes(),
        );
        let t = now_ns();
        if !lost {
            self.sock.send_to(&d, self.ha).unwrap();
            self.sock.send_to(&d, self.bridge).unwrap();
        }
        self.sent.push(d);
        t
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let python = args.get(1).cloned().unwrap_or_else(|| "python3".into());
    let presses: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/aioshelly_ha_rule.py");

    // The comparison listener.
    let mut py = tokio::process::Command::new(&python)
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python with aioshelly");
    let mut py_out = BufReader::new(py.stdout.take().unwrap()).lines();
    let ha_port: u16 = py_out.next_line().await.unwrap().unwrap().trim().parse().unwrap();
    let (ha_tx, mut ha_rx) = mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        while let Ok(Some(l)) = py_out.next_line().await {
            if let Ok(v) = serde_json::from_str(&l) {
                let _ = ha_tx.send(v);
            }
        }
    });

    // The bridge.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.doorbell.host = "127.0.0.1".into();
    cfg.doorbell.http_port = 9;
    cfg.server.bind = std::net::Ipv4Addr::LOCALHOST.into();
    cfg.server.http_port = 0;
    cfg.server.rtsp_port = 0;
    cfg.onvif.enabled = false;
    cfg.coiot.device_id = Some(UNI.into());
    cfg.coiot.multicast = false;
    cfg.coiot.unicast_bind = std::net::Ipv4Addr::LOCALHOST.into();
    cfg.coiot.unicast_port = Some(0);
    cfg.ring.min_gap_ms = 0;
    cfg.log_level = "warn".into();
    let app = App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    let (http, coiot_addr) = (app.http_addr(), app.coiot_addr().unwrap());
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    let bridge = tokio::spawn(async move { app.run(sd).await });

    // An SSE client: the time each `event: ring` is read.
    let (ring_tx, mut ring_rx) = mpsc::unbounded_channel::<u128>();
    let mut tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(format!("GET /api/events HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut tail = Vec::new();
        loop {
            let n = match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let t = now_ns();
            tail.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&tail).to_string();
            for _ in text.matches("event: ring\n") {
                let _ = ring_tx.send(t);
            }
            // Keep only what could be the start of a split marker.
            let keep = tail.len().saturating_sub(16);
            let cut = text.rfind("event: ring\n").map(|i| i + 12).unwrap_or(0).max(keep);
            tail.drain(..cut.min(tail.len()));
        }
    });

    let mut sh = Shelly {
        sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
        bridge: coiot_addr,
        ha: ([127, 0, 0, 1], ha_port).into(),
        serial: 256,
        cnt: 41,
        sent: Vec::new(),
    };
    sh.status(false, "S", false);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. Latency.
    let mut lat = Vec::with_capacity(presses);
    for _ in 0..presses {
        let t = sh.status(true, "S", false);
        let got = tokio::time::timeout(Duration::from_secs(2), ring_rx.recv()).await.expect("ring").unwrap();
        lat.push((got - t) as f64 / 1e6);
        sh.cnt += 1;
        sh.status(false, "S", false);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while ha_rx.try_recv().is_ok() {}
    while ring_rx.try_recv().is_ok() {}

    // 2. First report, counted from the rising edge, with real chime times.
    let mut report = String::new();
    for (label, hold, kind, n) in [
        ("mechanical chime (input high 300 ms)", Duration::from_millis(300), "S", 20),
        ("electronic chime (input held 3 s)", Duration::from_secs(3), "L", 5),
    ] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let t = sh.status(true, "S", false);
            let got = tokio::time::timeout(Duration::from_secs(2), ring_rx.recv()).await.expect("ring").unwrap();
            ours.push((got - t) as f64 / 1e6);
            tokio::time::sleep(hold).await;
            sh.cnt += 1;
            sh.status(false, kind, false);
            let ev = tokio::time::timeout(Duration::from_secs(2), ha_rx.recv()).await.expect("HA event").unwrap();
            theirs.push((ev["t_ns"].as_u64().unwrap() as u128 - t) as f64 / 1e6);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report.push_str(&format!(
            "| {label} | {n} | {:.2} ms | {:.0} ms | {:.0}x |\n",
            pct(&mut ours, 0.5),
            pct(&mut theirs, 0.5),
            pct(&mut theirs, 0.5) / pct(&mut ours, 0.5)
        ));
    }

    // 3. Losses: 5 % of datagrams dropped, presses 20 ms apart (a periodic repeat at the end).
    let loss_presses = 400;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    while ha_rx.try_recv().is_ok() {}
    let mut ours_n = 0usize;
    let mut dropped = 0;
    for _ in 0..loss_presses {
        let lost = rng.gen_bool(0.05);
        dropped += lost as usize;
        sh.status(true, "S", lost);
        tokio::time::sleep(Duration::from_millis(10)).await;
        sh.cnt += 1;
        let lost = rng.gen_bool(0.05);
        dropped += lost as usize;
        sh.status(false, "S", lost);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sh.serial = sh.serial.wrapping_sub(1);
    sh.status(false, "S", false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while ring_rx.try_recv().is_ok() {
        ours_n += 1;
    }
    let mut theirs_n = 0usize;
    while ha_rx.try_recv().is_ok() {
        theirs_n += 1;
    }

    // 4. Parse cost on the same datagrams.
    let device = DeviceMatch::parse(UNI).unwrap();
    let mut ours_ns = Vec::with_capacity(sh.sent.len());
    for d in &sh.sent {
        let t = Instant::now();
        std::hint::black_box(doorbell_bridge::ring::judge(&device, 1, std::hint::black_box(d)));
        ours_ns.push(t.elapsed().as_nanos() as f64);
    }
    sh.sock.send_to(b"END", sh.ha).unwrap();
    let summary = loop {
        let v = tokio::time::timeout(Duration::from_secs(10), ha_rx.recv()).await.expect("summary").unwrap();
        if v.get("parse_ns").is_some() {
            break v;
        }
    };
    let mut theirs_ns: Vec<f64> = summary["parse_ns"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();

    shutdown.cancel();
    let _ = bridge.await;
    let _ = py.wait().await;

    println!("## datagram sent -> `event: ring` read from /api/events ({presses} presses)");
    println!("p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms", pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
    println!();
    println!("## first report of a press, from its rising edge (same datagrams, same run)");
    println!("| press | n | bridge (first edge) median | aioshelly + HA counter rule (release) median | ratio |");
    println!("|---|---|---|---|---|");
    print!("{report}");
    println!();
    println!("## {loss_presses} presses 20 ms apart, {dropped} of {} datagrams dropped (seed 5)", 2 * loss_presses);
    println!("bridge reported {ours_n}, aioshelly + HA rule reported {theirs_n}");
    println!();
    println!("## parse cost per datagram ({} datagrams)", ours_ns.len());
    println!(
        "bridge judge(): median {:.2} us; aioshelly CoapMessage + rule: median {:.2} us ({:.0}x)",
        pct(&mut ours_ns, 0.5) / 1e3,
        pct(&mut theirs_ns, 0.5) / 1e3,
        pct(&mut theirs_ns, 0.5) / pct(&mut ours_ns, 0.5)
    );
}
