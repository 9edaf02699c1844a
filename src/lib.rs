//! Doorbell Bridge: a local bridge for the EZVIZ DB1 / Hikvision DS-HD1 doorbell.
//!
//! `App::build(config)` binds every listener (so tests learn the real ports), `App::run(shutdown)`
//! runs every capability until the token is cancelled. `main.rs` and the tests drive the same App.

pub mod access;
pub mod admission;
pub mod api;
pub mod backoff;
pub mod clips;
pub mod config;
pub mod datadir;
pub mod demo;
pub mod digest;
pub mod domain;
pub mod error;
pub mod events;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod onvif;
pub mod ports;
pub mod ring;
pub mod ring_ids;
pub mod rtsp;
pub mod shelly_id;
pub mod sim;
pub mod snapshot;
pub mod status;
pub mod supervisor;
pub mod talk;
pub mod tasks;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::events::Bus;
use crate::snapshot::Snapshots;
use crate::tasks::Tasks;

pub struct App {
    pub config: Config,
    pub data_dir: PathBuf,
    pub bus: Arc<Bus>,
    pub access: Arc<Access>,
    pub snapshots: Arc<Snapshots>,
    http: TcpListener,
    coiot: Vec<UdpSocket>,
    pub rtsp_hub: Arc<rtsp::Hub>,
    rtsp: TcpListener,
    /// The capability tasks `run` supervises (restarts, and a way to fail one on purpose).
    pub tasks: Arc<tasks::Registry>,
}

async fn bind_tcp(ip: IpAddr, port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, port)).await.map_err(|e| {
        Error::wrap(
            ErrorKind::Io,
            format!("cannot listen on {ip}:{port} for {what} (is another program using the port?)"),
            e,
        )
    })
}

/// File in the data dir holding the bridge's stable id (`/api/status` `bridge_id`).
pub const BRIDGE_ID_FILE: &str = "bridge_id";

/// The bridge's id: generated once, then read back, so it survives restarts and updates.
fn bridge_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join(BRIDGE_ID_FILE);
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Ok(s.to_string());
        }
    }
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    datadir::write_atomic(&path, id.as_bytes(), datadir::Access::Default)
        .map_err(|e| Error::wrap(ErrorKind::Io, format!("cannot write {}", path.display()), e))?;
    Ok(id)
}

impl App {
    pub async fn build(config: Config, data_dir: PathBuf) -> Result<App> {
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            Error::wrap(ErrorKind::Io, format!("cannot create data directory {}", data_dir.display()), e)
        })?;
        let access = Arc::new(Access::resolve(&config, &data_dir)?);
        let bus = Bus::new();
        bus.set_bridge_id(bridge_id(&data_dir)?);
        let snapshots = Arc::new(Snapshots::new(&config, &data_dir, bus.clone()));
        // After the history is read: ids continue above both it and the reservation on disk.
        let (ids, next) = ring_ids::RingIds::open(&data_dir, bus.next_ring_id(), bus.storage.clone());
        bus.set_ring_ids(ids, next);
        let ip = config.server.bind;
        let http = bind_tcp(ip, config.server.http_port, "the HTTP API").await?;
        let coiot = ring::bind_coiot(&config).await?;
        let rtsp = bind_tcp(ip, config.server.rtsp_port, "RTSP").await?;
        let rtsp_hub = rtsp::Hub::new(&config);
        bus.add_status_source(rtsp_hub.clone());
        let tasks = Arc::new(tasks::Registry::default());
        bus.add_status_source(tasks.clone());
        Ok(App { config, data_dir, bus, access, snapshots, http, coiot, rtsp_hub, rtsp, tasks })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound socket has an address")
    }

    pub fn rtsp_addr(&self) -> SocketAddr {
        self.rtsp.local_addr().expect("bound socket has an address")
    }

    /// The unicast CoIoT socket's address, when one is configured.
    pub fn coiot_addr(&self) -> Option<SocketAddr> {
        self.config.coiot.unicast_port?;
        self.coiot.first().and_then(|s| s.local_addr().ok())
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let onvif_state = self.data_dir.join(onvif::STATE_FILE);
        let App { config, data_dir, bus, access, snapshots, http, coiot, rtsp_hub, rtsp, tasks: registry, .. } = self;
        let rtsp_hub_for_clips = rtsp_hub.clone();
        let reopen = |e: std::io::Error| Error::wrap(ErrorKind::Io, "cannot take over a listening socket", e);
        let (http, rtsp) = (http.into_std().map_err(reopen)?, rtsp.into_std().map_err(reopen)?);
        let coiot: Vec<std::net::UdpSocket> =
            coiot.into_iter().map(|s| s.into_std()).collect::<std::io::Result<_>>().map_err(reopen)?;
        let mut tasks = Tasks::new(registry, shutdown.clone());
        let sd = shutdown.clone();

        snapshots.set_keyframe_source(rtsp_hub.clone());
        let (cfg, hub, acc) = (config.clone(), rtsp_hub.clone(), access.clone());
        tasks.supervise("rtsp", move || {
            let listener = rtsp.try_clone().and_then(TcpListener::from_std);
            let (cfg, hub, acc, sd) = (cfg.clone(), hub.clone(), acc.clone(), sd.clone());
            async move {
                match listener {
                    Ok(l) => rtsp::run(cfg, hub, acc, l, sd).await,
                    Err(e) => tracing::error!("cannot listen for RTSP viewers: {e}"),
                }
            }
        });

        let sink = ring::RingSink { bus: bus.clone() };
        let (observations, observed) = ring::observation_channel();
        let observed = Arc::new(tokio::sync::Mutex::new(observed));
        let coiot_stats = Arc::new(ring::CoiotStats::default());
        bus.add_status_source(coiot_stats.clone());
        let (cfg, sd) = (config.clone(), shutdown.clone());
        tasks.supervise("ring_detector", move || {
            let (cfg, rx, sink, sd) = (cfg.clone(), observed.clone(), sink.clone(), sd.clone());
            async move { ring::run_detector(cfg, &mut *rx.lock().await, sink, sd).await }
        });
        if !coiot.is_empty() {
            let (cfg, tx, sd) = (config.clone(), observations.clone(), shutdown.clone());
            tasks.supervise("coiot", move || {
                let sockets: std::io::Result<Vec<_>> =
                    coiot.iter().map(|s| s.try_clone().and_then(tokio::net::UdpSocket::from_std)).collect();
                let (cfg, tx, stats, sd) = (cfg.clone(), tx.clone(), coiot_stats.clone(), sd.clone());
                async move {
                    match sockets {
                        Ok(s) => ring::run_coiot(cfg, s, tx, stats, sd).await,
                        Err(e) => tracing::error!("cannot listen for CoIoT: {e}"),
                    }
                }
            });
        }
        if config.mqtt.host.is_some() {
            let (cfg, bus, tx, sd) = (config.clone(), bus.clone(), observations.clone(), shutdown.clone());
            tasks.supervise("mqtt", move || mqtt::run(cfg.clone(), bus.clone(), tx.clone(), sd.clone()));
        }
        if config.ring.dns_listen.is_some() {
            let (cfg, tx, sd) = (config.clone(), observations.clone(), shutdown.clone());
            tasks.supervise("dns", move || ring::dns::run(cfg.clone(), tx.clone(), sd.clone()));
        }
        // Held open while the bridge runs: with no source configured the detector waits, rather
        // than ending (and being restarted) when the last sender is gone.
        let _sources_open = observations;

        let identity = onvif::identity::Identity::new(&config.doorbell.name);
        bus.add_status_source(identity.clone());
        let mut commands: Option<Arc<dyn ports::Commands>> = None;
        let mut onvif_device = None;
        if config.onvif.enabled && !config.doorbell.host.is_empty() {
            let c = onvif::start(&config, onvif_state, bus.clone(), identity, shutdown.clone(), &mut tasks)?;
            onvif_device = Some(c.device.clone());
            commands = Some(c);
        }
        let (snaps, sd) = (snapshots.clone(), shutdown.clone());
        tasks.supervise("snapshots", move || snaps.clone().run(sd.clone()));
        let clips = clips::Clips::new(&config, &data_dir, &bus, &snapshots);
        bus.add_status_source(clips.clone());
        let clip_hub = rtsp_hub_for_clips.get(&clips.stream).cloned().filter(|_| clips.enabled);
        let clips = match clip_hub {
            Some(hub) => {
                bus.set_clips(true, |id| clips.file(id).is_some());
                let (c, bus, snaps, sd) = (clips.clone(), bus.clone(), snapshots.clone(), shutdown.clone());
                tasks.supervise("clips", move || c.clone().run(hub.clone(), bus.clone(), snaps.clone(), sd.clone()));
                Some(clips)
            }
            None => None,
        };
        let talk = (!config.doorbell.host.is_empty()).then(|| talk::Talk::new(&config, onvif_device));
        if let Some(t) = &talk {
            bus.add_status_source(t.clone());
            let (t, bus, sd) = (t.clone(), bus.clone(), shutdown.clone());
            tasks.supervise("talk", move || t.clone().run(bus.clone(), sd.clone()));
        }

        let state = api::ApiState {
            bus: bus.clone(),
            access: access.clone(),
            snapshots: snapshots.clone(),
            commands,
            talk,
            clips,
            shutdown: shutdown.clone(),
        };
        let router = api::router(state);
        let (max, sd) = (config.server.max_http_connections, shutdown.clone());
        tasks.supervise("http", move || {
            let listener = http.try_clone().and_then(TcpListener::from_std);
            let (router, sd) = (router.clone(), sd.clone());
            async move {
                match listener {
                    Ok(l) => api::serve(l, router, max, sd).await,
                    Err(e) => tracing::error!("cannot listen for HTTP: {e}"),
                }
            }
        });
        let (b, sd) = (bus.clone(), shutdown.clone());
        tasks.supervise("online", move || watch_online(b.clone(), sd.clone()));

        shutdown.cancelled().await;
        // Every task watches the token; give them a moment to close connections and say goodbye.
        tasks.drain(std::time::Duration::from_secs(8)).await;
        Ok(())
    }
}

/// `doorbell.online` also follows the RTSP sessions, which tell no one when they change.
async fn watch_online(bus: Arc<Bus>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => bus.recheck_online(),
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod bridge_id_tests {
    use super::*;

    #[test]
    fn generated_once_then_kept() {
        let dir = std::env::temp_dir().join(format!("doorbell-bridge-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = bridge_id(&dir).unwrap();
        assert!(a.len() == 16 && a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(bridge_id(&dir).unwrap(), a);
        // A damaged file is replaced rather than served.
        std::fs::write(dir.join(BRIDGE_ID_FILE), "bad id\n\0").unwrap();
        let b = bridge_id(&dir).unwrap();
        assert_ne!(b, a);
        assert!(b.bytes().all(|c| c.is_ascii_alphanumeric()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
