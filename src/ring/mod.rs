//! Ring detection: sources (CoIoT, MQTT...) feed observations to a pure detector; rings and the
//! `ring` sensor go to the event bus, and each ring asks the snapshot service for its picture.

pub mod coiot;
pub mod detector;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::Bus;
use crate::snapshot::Snapshots;
use coiot::DeviceMatch;
use detector::{Detector, Output};

pub const COIOT_MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
pub const COIOT_PORT: u16 = 5683;

/// Where rings go: the bus, and the snapshot service for the ring's picture.
#[derive(Clone)]
pub struct RingSink {
    pub bus: Arc<Bus>,
    pub snapshots: Arc<Snapshots>,
}

impl RingSink {
    pub fn ring(&self, source: &str, press: Option<&str>) {
        let ring = self.bus.ring(source, press, Utc::now());
        tracing::info!(id = ring.id, source, "ring");
        let snaps = self.snapshots.clone();
        tokio::spawn(async move { snaps.take_for_ring(ring.id).await });
    }

    pub fn pressed(&self, on: bool) {
        self.bus.set_sensor("ring", Some(on), Utc::now());
    }
}

/// Binds the CoIoT sockets the configuration asks for (unicast first, so tests learn its port).
pub async fn bind_coiot(cfg: &Config) -> crate::error::Result<Vec<UdpSocket>> {
    let mut out = Vec::new();
    if !cfg.coiot.enabled {
        return Ok(out);
    }
    if let Some(port) = cfg.coiot.unicast_port {
        let ip: IpAddr = cfg.coiot.unicast_bind.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let s = UdpSocket::bind(SocketAddr::new(ip, port)).await.map_err(|e| {
            crate::error::Error::wrap(
                crate::error::ErrorKind::Io,
                format!("cannot listen for CoIoT on UDP port {port}"),
                e,
            )
        })?;
        out.push(s);
    }
    if cfg.coiot.multicast {
        match multicast_socket() {
            Ok(s) => out.push(s),
            Err(e) => tracing::warn!("cannot join CoIoT multicast {COIOT_MULTICAST}:{COIOT_PORT}: {e}"),
        }
    }
    Ok(out)
}

/// Shares port 5683 with Home Assistant's Shelly listener: multicast reaches every joined socket.
fn multicast_socket() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), COIOT_PORT).into())?;
    s.join_multicast_v4(&COIOT_MULTICAST, &Ipv4Addr::UNSPECIFIED)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Receives CoIoT datagrams on every socket and feeds the detector.
pub async fn run_coiot(cfg: Config, sockets: Vec<UdpSocket>, sink: RingSink, shutdown: CancellationToken) {
    if sockets.is_empty() {
        return;
    }
    let Some(device) = cfg.coiot.device_id.as_deref().and_then(DeviceMatch::parse) else {
        tracing::warn!("coiot.device_id is not set: CoIoT ring detection is off");
        return;
    };
    let source: Option<IpAddr> = cfg.coiot.source.as_deref().and_then(|s| s.parse().ok());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr)>(256);
    for sock in sockets {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; coiot::MAX_DATAGRAM + 1];
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = sock.recv_from(&mut buf) => match r {
                        Ok((n, from)) => { if tx.send((buf[..n].to_vec(), from)).await.is_err() { return; } }
                        Err(e) => { tracing::debug!("CoIoT receive error: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; }
                    },
                }
            }
        });
    }
    drop(tx);
    let start = Instant::now();
    let mut det = Detector::new(cfg.ring.min_gap_ms);
    let mut rejected: u64 = 0;
    loop {
        let (buf, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        if source.is_some_and(|s| s != from.ip()) {
            rejected += 1;
            continue;
        }
        let msg = match coiot::parse(&buf) {
            Ok(m) => m,
            Err(e) => {
                rejected += 1;
                tracing::debug!(%from, "CoIoT datagram rejected: {e} ({rejected} so far)");
                continue;
            }
        };
        if device.matches(msg.device_id).is_none() {
            continue;
        }
        let Ok(readings) = coiot::parse_status(msg.payload) else {
            rejected += 1;
            continue;
        };
        let st = coiot::input_status(&readings, cfg.coiot.input);
        sink.bus.set_source("coiot", true);
        let now_ms = start.elapsed().as_millis() as u64;
        for o in det.observe(now_ms, msg.serial, &st) {
            match o {
                Output::Ring { press } => sink.ring("coiot", Some(&press)),
                Output::Pressed(on) => sink.pressed(on),
            }
        }
    }
}
