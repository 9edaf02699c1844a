//! `doorbell-bridge demo`: the whole bridge against the simulated doorbell, on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Secret};
use crate::error::Result;
use crate::sim::{Sim, SimOptions};
use crate::App;

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub http_port: u16,
    pub rtsp_port: u16,
    /// The simulator's control/ONVIF port; its RTSP uses the next port, CoIoT the one after.
    pub sim_port: u16,
    pub data_dir: Option<PathBuf>,
}

/// Test and benchmark knobs of `demo`, kept apart from `DemoOptions` so its users are unaffected.
#[derive(Clone, Debug, Default)]
pub struct DemoTuning {
    /// Overrides `ring.min_gap_ms` (the end-to-end benchmark presses faster than a person would).
    pub ring_min_gap_ms: Option<u64>,
    /// Loopback clients need the API token too (to exercise authentication from loopback).
    pub require_token: bool,
    /// The simulated doorbell offers no audio backchannel.
    pub no_backchannel: bool,
    /// Overrides `clips.post_roll_secs` (tests wait less for a clip).
    pub clip_post_roll_secs: Option<u64>,
}

impl DemoTuning {
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(gap) = self.ring_min_gap_ms {
            cfg.ring.min_gap_ms = gap;
        }
        if self.require_token {
            cfg.server.trust_loopback = false;
        }
        if let Some(s) = self.clip_post_roll_secs {
            cfg.clips.post_roll_secs = std::time::Duration::from_secs(s);
        }
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { http_port: 8565, rtsp_port: 8564, sim_port: 8580, data_dir: None }
    }
}

/// The configuration `demo` runs with: the bridge wired to the simulator, all on loopback.
pub fn demo_config(opts: &DemoOptions, sim: &Sim) -> Config {
    let mut cfg = Config::default();
    cfg.doorbell.host = "127.0.0.1".into();
    cfg.doorbell.password = Secret::new(sim.opts.password.clone());
    cfg.doorbell.http_port = sim.http_addr.port();
    cfg.doorbell.rtsp_port = sim.rtsp_addr.port();
    cfg.doorbell.name = "Demo doorbell".into();
    cfg.server.bind = std::net::Ipv4Addr::LOCALHOST.into();
    cfg.server.http_port = opts.http_port;
    cfg.server.rtsp_port = opts.rtsp_port;
    cfg.coiot.device_id = Some(sim.opts.shelly_id.clone());
    cfg.coiot.multicast = false;
    cfg.coiot.unicast_bind = std::net::Ipv4Addr::LOCALHOST.into();
    cfg.coiot.unicast_port = Some(if opts.sim_port == 0 { 0 } else { opts.sim_port + 2 });
    cfg
}

pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> Result<()> {
    run_tuned(opts, DemoTuning::default(), shutdown).await
}

pub async fn run_tuned(opts: DemoOptions, tuning: DemoTuning, shutdown: CancellationToken) -> Result<()> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let sim_opts = SimOptions {
        bind: lo,
        http_port: opts.sim_port,
        rtsp_port: if opts.sim_port == 0 { 0 } else { opts.sim_port + 1 },
        backchannel: !tuning.no_backchannel,
        ..SimOptions::default()
    };
    let sim = Sim::start(sim_opts).await.map_err(|e| {
        crate::error::Error::wrap(
            crate::error::ErrorKind::Io,
            format!("cannot start the simulated doorbell on port {}", opts.sim_port),
            e,
        )
    })?;
    let mut cfg = demo_config(&opts, &sim);
    tuning.apply(&mut cfg);
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("doorbell-bridge-demo"));
    let app = App::build(cfg, data_dir).await?;
    if let Some(a) = app.coiot_addr() {
        sim.set_coiot_target(SocketAddr::new(lo, a.port()));
    }
    let http = app.http_addr();
    println!("Doorbell Bridge {} — demo with a simulated doorbell (Ctrl-C stops)", env!("CARGO_PKG_VERSION"));
    println!();
    println!("  Bridge HTTP API   http://{http}/api/status");
    println!("  Live events       http://{http}/api/events");
    println!("  Latest picture    http://{http}/api/snapshot.jpg");
    println!("  Ring clips        http://{http}/api/rings/<id>/clip.mp4  (ids in http://{http}/api/rings)");
    println!("  Metrics           http://{http}/metrics");
    println!("  Health            http://{http}/healthz");
    println!();
    let rtsp = app.rtsp_addr();
    println!("  Live video (main)   rtsp://{rtsp}/main");
    println!("  Live video (sub)    rtsp://{rtsp}/sub");
    println!();
    println!("  Simulated doorbell  {}", sim.url());
    println!("    press the button  curl -X POST {}/sim/ring", sim.url());
    println!("    motion            curl -X POST '{}/sim/motion?sensor=pir&state=on'", sim.url());
    println!("    reboot            curl -X POST {}/sim/reboot", sim.url());
    println!("    snapshot URL      curl -X POST '{}/sim/snapshot?mode=slow&delay_ms=2000'  (ok|slow|fail|digest|basic|missing)", sim.url());
    println!("    its state         curl {}/sim/status", sim.url());
    println!("    talk through it   curl -X POST -H 'Content-Type: audio/wav' --data-binary @message.wav http://{http}/api/talk");
    println!();
    println!(
        "  Loopback clients need no credentials; others use the ones in {}",
        app.access.credentials_path.display()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let res = app.run(shutdown).await;
    sim.stop().await;
    res
}
