//! Snapshot benchmark (see docs/benchmarks.md, "Snapshots"). Run through `bench/snapshot.sh`.
//!
//! Without arguments: starts the simulated doorbell (snapshot URL in `slow` mode) and the bridge
//! in this process, then runs the same open-loop load (RATE requests/s for SECS seconds) from a
//! second process, first at the bridge's cached `/api/snapshot.jpg`, then straight at the
//! doorbell's `/onvif/snapshot.jpg`; then times keyframe -> JPEG and ring -> ring picture.
//!
//! `snapshot_bench load URL RATE SECS [USER:PASS]`: the load generator (the second process); prints
//! one JSON line with latency percentiles measured from the moment each request is issued
//! (open-loop: requests are issued on schedule whatever the server does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use doorbell_bridge::media::{Keyframe, KeyframeSource, VideoCodec};
use doorbell_bridge::sim::snapshot::Mode;
use doorbell_bridge::sim::{Sim, SimOptions};

const KEYFRAME: &str = "tests/data/snapshot/keyframe-1536x2048.h264";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU time of this thread (user + system) in ms, from /proc (10 ms ticks): unlike wall time it
/// does not grow when other programs share the cores.
fn thread_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the command name.
    let ticks: f64 = f.get(11..13).map(|x| x.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(f64::NAN);
    ticks * 10.0
}

/// A hub whose keyframe is always new, so every ring decodes (no reuse of an earlier JPEG).
struct FreshKeyframes(Bytes);

impl KeyframeSource for FreshKeyframes {
    fn latest_keyframe(&self, stream: &str) -> Option<Keyframe> {
        (stream == "main").then(|| Keyframe {
            stream: "main".into(),
            codec: VideoCodec::H264,
            annexb: self.0.clone(),
            captured: Utc::now(),
        })
    }
}

async fn load(url: String, rate: u64, secs: u64, basic: Option<String>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).build().unwrap();
    let auth = basic.map(|up| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(up))
    });
    let n = rate * secs;
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let at = start + period * i as u32;
        tokio::time::sleep_until(at).await;
        // tokio's timer wakes up to 1 ms after `at` (its granularity): that is the load
        // generator's lateness, not the server's, so latency runs from the moment the request is
        // issued. Sends stay open-loop (each request in its own task), so a slow server cannot
        // hold back the next send (no coordinated omission).
        let issued = tokio::time::Instant::now();
        let c = client.clone();
        let url = url.clone();
        let auth = auth.clone();
        set.spawn(async move {
            let mut req = c.get(&url);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let ok = match req.send().await {
                Ok(r) => {
                    r.status().is_success()
                        && r.bytes().await.is_ok_and(|b| b.starts_with(&[0xFF, 0xD8]) || &b[..] == b"ok")
                }
                Err(_) => false,
            };
            (ok, (tokio::time::Instant::now() - issued).as_secs_f64() * 1000.0)
        });
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    while let Some(r) = set.join_next().await {
        let (ok, ms) = r.unwrap();
        if ok {
            lat.push(ms);
        } else {
            errors += 1;
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{}",
        serde_json::json!({
            "requests": n, "errors": errors,
            "p50_ms": pct(&lat, 50.0), "p90_ms": pct(&lat, 90.0), "p99_ms": pct(&lat, 99.0),
            "max_ms": lat.last().copied().unwrap_or(f64::NAN),
        })
    );
}

fn run_load(url: &str, rate: u64, secs: u64, basic: Option<&str>) -> serde_json::Value {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["load", url, &rate.to_string(), &secs.to_string()]);
    if let Some(b) = basic {
        cmd.arg(b);
    }
    let out = cmd.output().expect("start the load process");
    assert!(out.status.success(), "load process failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(out.stdout.trim_ascii()).expect("load output")
}

async fn orchestrate() {
    let rate = env_u64("RATE", 200);
    let secs = env_u64("SECS", 10);
    let slow_ms = env_u64("SLOW_MS", 1000);
    let rings = env_u64("RINGS", 50);

    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = doorbell_bridge::demo::DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
    let cfg = doorbell_bridge::demo::demo_config(&opts, &sim);
    let app = doorbell_bridge::App::build(cfg.clone(), dir.path().to_path_buf()).await.unwrap();
    let http = app.http_addr();
    let snaps = app.snapshots.clone();
    let bus = app.bus.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(app.run(shutdown.clone()));
    // Prime the cache, then make the doorbell slow.
    snaps.latest().await.expect("first picture");
    sim.state.snapshot.set(Mode::Slow, Some(slow_ms));
    let before = sim.state.snapshot_requests.load(std::sync::atomic::Ordering::SeqCst);

    let bridge_url = format!("http://{http}/api/snapshot.jpg");
    let doorbell_url = format!("{}/onvif/snapshot.jpg", sim.url());
    let b = tokio::task::spawn_blocking(move || run_load(&bridge_url, rate, secs, None)).await.unwrap();
    let bridge_doorbell_requests = sim.state.snapshot_requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    let up = format!("{}:{}", sim.opts.username, sim.opts.password);
    let d = tokio::task::spawn_blocking(move || run_load(&doorbell_url, rate, secs, Some(&up))).await.unwrap();
    // The floor of this machine: the same load at `/healthz` (same HTTP stack, a 2-byte body).
    let health_url = format!("http://{http}/healthz");
    let hz = tokio::task::spawn_blocking(move || run_load(&health_url, rate, secs, None)).await.unwrap();
    sim.state.snapshot.set(Mode::Ok, None);

    // Keyframe -> JPEG, 1536x2048, in this process.
    let annexb = std::fs::read(KEYFRAME).expect("run from the repository root");
    let mut kf = Vec::new();
    let cpu0 = thread_cpu_ms();
    for _ in 0..20 {
        let t = Instant::now();
        let (jpeg, w, h) = doorbell_bridge::snapshot::keyframe::keyframe_to_jpeg(&annexb, 85).unwrap();
        kf.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!((w, h, jpeg.is_empty()), (1536, 2048, false));
    }
    let kf_cpu = (thread_cpu_ms() - cpu0) / 20.0;
    kf.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // Ring -> ring picture available, from the keyframe cache (a new keyframe every ring).
    snaps.set_keyframe_source(Arc::new(FreshKeyframes(Bytes::from(annexb))));
    let mut ring_ms = Vec::new();
    for _ in 0..rings {
        let t = Instant::now();
        // The bridge's snapshot task hears of the ring on the bus and takes its picture.
        let id = bus.ring("bench", None, Utc::now()).id;
        while snaps.ring_image(id).await.is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ring_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ring_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "## Snapshot benchmark: {rate} requests/s for {secs} s from a second process; doorbell slow mode {slow_ms} ms"
    );
    println!();
    println!("| target | requests | errors | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (name, v) in [
        ("bridge `/api/snapshot.jpg` (cached)", &b),
        ("doorbell `/onvif/snapshot.jpg` (slow mode)", &d),
        ("bridge `/healthz` (floor: no picture)", &hz),
    ] {
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            v["requests"],
            v["errors"],
            f(v, "p50_ms"),
            f(v, "p90_ms"),
            f(v, "p99_ms"),
            f(v, "max_ms")
        );
    }
    println!();
    println!(
        "ratio doorbell/bridge: p50 {:.0}x, p99 {:.0}x; the bridge asked the doorbell {} times for {} client requests",
        f(&d, "p50_ms") / f(&b, "p50_ms"),
        f(&d, "p99_ms") / f(&b, "p99_ms"),
        bridge_doorbell_requests,
        b["requests"]
    );
    println!("picture size: {} bytes", snaps.latest().await.map(|i| i.bytes.len()).unwrap_or(0));
    println!();
    println!(
        "keyframe -> JPEG 1536x2048 (20 runs): wall p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms; CPU {:.1} ms per picture",
        pct(&kf, 50.0),
        pct(&kf, 95.0),
        kf[0],
        kf_cpu
    );
    println!(
        "ring -> ring picture available ({rings} rings, keyframe decoded each time): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        pct(&ring_ms, 50.0),
        pct(&ring_ms, 95.0),
        ring_ms.last().copied().unwrap_or(f64::NAN)
    );
    shutdown.cancel();
    let _ = run.await;
    sim.stop().await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if args.get(1).map(String::as_str) == Some("load") {
        let url = args[2].clone();
        let rate = args[3].parse().unwrap();
        let secs = args[4].parse().unwrap();
        rt.block_on(load(url, rate, secs, args.get(5).cloned()));
    } else {
        rt.block_on(orchestrate());
    }
}
