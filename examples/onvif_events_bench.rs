//! ONVIF event latency, against the simulated doorbell, in one run:
//!
//! A. The bridge: from the simulator releasing a PullMessages reply to the `sensor` event leaving
//!    `/api/events` (read by an SSE client), over N back-to-back motion changes.
//! B. Side by side on the same simulator: the bridge (next pull at once) and Home Assistant's
//!    pull strategy (`homeassistant/components/onvif/event.py`: PullMessages Timeout 60 s,
//!    MessageLimit 100, then a fixed PULLPOINT_COOLDOWN_TIME of 0.75 s before the next pull),
//!    re-enacted with the bridge's own SOAP client. M motion changes at random gaps of 0-1 s;
//!    delay = motion change -> event received.
//!
//! `cargo run --release --example onvif_events_bench -- [N] [M]` (defaults 1000 and 200).

use std::time::{Duration, Instant};

use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::onvif::device::{Device, CALL_TIMEOUT};
use doorbell_bridge::onvif::soap;
use doorbell_bridge::sim::{Sim, SimOptions};
use doorbell_bridge::App;
use tokio_util::sync::CancellationToken;

/// From Home Assistant's ONVIF integration (event.py).
const HA_PULLPOINT_POLL_TIME_SECS: u64 = 60;
const HA_PULLPOINT_MESSAGE_LIMIT: u32 = 100;
const HA_PULLPOINT_COOLDOWN: Duration = Duration::from_millis(750);

struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// Waits for the sensor `name` to reach `state` (an event, or the initial state body).
    async fn wait(&mut self, name: &str, state: bool) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let (mut ev, mut data) = ("", String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev = if v.trim() == "sensor" { "sensor" } else { "other" };
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                let hit =
                    if ev == "sensor" { v["name"] == name && v["state"] == state } else { v["sensors"][name] == state };
                if hit {
                    return Instant::now();
                }
            }
            let left = deadline.checked_duration_since(Instant::now()).expect("event did not arrive in 20 s");
            let c = tokio::time::timeout(left, self.resp.chunk()).await.expect("timeout").unwrap().unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&c));
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn row(name: &str, v: &mut [f64]) -> (f64, f64) {
    let (p50, p95, p99) = (pct(v, 0.5), pct(v, 0.95), pct(v, 0.99));
    let max = v.iter().cloned().fold(0.0, f64::max);
    println!("| {name} | {} | {p50:.2} | {p95:.2} | {p99:.2} | {max:.2} |", v.len());
    (p50, p95)
}

fn set_motion(sim: &Sim, on: bool) -> Instant {
    sim.state.motion.lock().unwrap().insert("pir".into(), on);
    let t = Instant::now();
    sim.state.onvif.motion("pir", on);
    t
}

/// Home Assistant's pull loop: every reply with messages is reported with its arrival time.
async fn ha_strategy(cfg: doorbell_bridge::config::Config, tx: tokio::sync::mpsc::UnboundedSender<Instant>) {
    let dev = Device::new(&cfg).unwrap();
    let events = dev.services().await.unwrap().events.unwrap();
    let env = dev
        .call(soap::ACTION_CREATE_PULLPOINT, &events, "", &soap::body_create_pullpoint("PT600S"), CALL_TIMEOUT)
        .await
        .unwrap();
    let sub = soap::parse_create_pullpoint(&env).unwrap();
    let addr = dev.rebase(&sub.address);
    // Drop the Initialized messages.
    let body = soap::body_pull_messages(HA_PULLPOINT_POLL_TIME_SECS, HA_PULLPOINT_MESSAGE_LIMIT);
    let _ = dev.call(soap::ACTION_PULL_MESSAGES, &addr, "", &body, Duration::from_secs(70)).await;
    loop {
        tokio::time::sleep(HA_PULLPOINT_COOLDOWN).await;
        let Ok(env) = dev.call(soap::ACTION_PULL_MESSAGES, &addr, "", &body, Duration::from_secs(70)).await else {
            return;
        };
        let at = Instant::now();
        if soap::parse_pull_messages(&env).is_some_and(|p| !p.messages.is_empty()) && tx.send(at).is_err() {
            return;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(1000);
    let m = args.get(1).copied().unwrap_or(200);
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let mut cfg = demo_config(&DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None }, &sim);
    cfg.coiot.unicast_port = None;
    cfg.onvif.pull_timeout_secs = Duration::from_secs(60);
    let dir = std::env::temp_dir().join(format!("onvif-bench-{}", std::process::id()));
    let app = App::build(cfg.clone(), dir.clone()).await.unwrap();
    let http = app.http_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    let resp = reqwest::get(format!("http://{http}/api/events")).await.unwrap();
    let mut sse = Sse { resp, buf: String::new() };
    sse.wait("pir_motion", false).await;

    // A. release -> SSE, back to back.
    let (mut rel, mut trig) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let on = i % 2 == 0;
        let t0 = set_motion(&sim, on);
        let t1 = sse.wait("pir_motion", on).await;
        let released = sim.state.onvif.last_release.lock().unwrap().expect("a reply was released");
        rel.push((t1 - released).as_secs_f64() * 1000.0);
        trig.push((t1 - t0).as_secs_f64() * 1000.0);
    }
    // The last change left pir_motion at (n-1) % 2 == 0.
    let mut state = (n - 1) % 2 == 0;

    // B. side by side with Home Assistant's strategy, same simulator, same motion changes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ha = tokio::spawn(ha_strategy(cfg.clone(), tx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut ours, mut theirs) = (Vec::with_capacity(m), Vec::with_capacity(m));
    for _ in 0..m {
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 1000)).await;
        state = !state;
        while rx.try_recv().is_ok() {}
        let t0 = set_motion(&sim, state);
        let t1 = sse.wait("pir_motion", state).await;
        let t2 = tokio::time::timeout(Duration::from_secs(70), rx.recv()).await.unwrap().unwrap();
        ours.push((t1 - t0).as_secs_f64() * 1000.0);
        theirs.push((t2 - t0).as_secs_f64() * 1000.0);
    }
    ha.abort();

    println!("ONVIF events, simulated doorbell on loopback ({} cores)", std::thread::available_parallelism().unwrap());
    println!();
    println!("| measurement | events | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    row("A. bridge: sim releases PullMessages reply -> `sensor` event read from /api/events", &mut rel);
    row("A. bridge: motion change in sim -> `sensor` event read from /api/events", &mut trig);
    let (o50, o95) = row("B. bridge (next pull at once): motion change -> SSE event", &mut ours);
    let (h50, h95) =
        row("B. Home Assistant's strategy (0.75 s pause between pulls): motion change -> reply", &mut theirs);
    println!();
    println!("B ratios (HA / bridge): p50 {:.0}x, p95 {:.0}x", h50 / o50.max(0.001), h95 / o95.max(0.001));
    shutdown.cancel();
    let _ = task.await;
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
