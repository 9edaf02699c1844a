//! Ring detection: sources feed observations to ONE pure detector (one physical chime input):
//! `run_coiot` (CoIoT over UDP, multicast and/or unicast), `crate::mqtt::run` (Shelly Gen1/Gen2 and
//! generic topics) and `dns::run` (the optional DNS method) all send to `run_detector`, which owns
//! the `Detector` and the clock. Rings and the `ring` sensor go to the event bus (where the
//! snapshot service hears of each ring and takes its picture).
//!
//! CoIoT coexistence: multicast 224.0.1.187:5683 reaches every joined socket, so the bridge and Home
//! Assistant's Shelly listener both hear it. Unicast goes to one "CoIoT peer" per Shelly (one slot),
//! and on a shared port only to the socket bound last: give the bridge's unicast socket its own port.

pub mod coiot;
pub mod detector;
pub mod dns;
pub mod shelly_mqtt;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{Bus, RingSource, Sensor, StatusSource};
use crate::metrics::{Kind, Metrics};
use crate::status::{CoiotStatus, Status};
use coiot::DeviceMatch;
use detector::{Detector, Observation, Output};

pub const COIOT_MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
pub const COIOT_PORT: u16 = 5683;
/// Receive buffer of the CoIoT sockets: a burst of status packets must not overflow the kernel's.
const RECV_BUFFER: usize = 1 << 20;
/// How often the detector looks at the clock (sensor timeout, source validity).
const TICK: Duration = Duration::from_millis(250);
/// Observations queued between the sources and the detector.
const QUEUE: usize = 1024;

/// Where rings go: the bus (whose listeners take the ring's picture, publish it...).
#[derive(Clone)]
pub struct RingSink {
    pub bus: Arc<Bus>,
}

impl RingSink {
    pub fn ring(&self, source: RingSource, press: Option<&str>) {
        let ring = self.bus.ring(source, press, Utc::now());
        tracing::info!(id = ring.id, source = %ring.source, "ring");
    }

    pub fn pressed(&self, on: bool) {
        self.bus.set_sensor(Sensor::Ring, Some(on), Utc::now());
    }
}

/// Binds the CoIoT sockets the configuration asks for (unicast first, so tests learn its port).
pub async fn bind_coiot(cfg: &Config) -> crate::error::Result<Vec<UdpSocket>> {
    let mut out = Vec::new();
    if !cfg.coiot.enabled {
        return Ok(out);
    }
    if let Some(port) = cfg.coiot.unicast_port {
        let ip = cfg.coiot.unicast_bind;
        let s = UdpSocket::bind(SocketAddr::new(ip, port)).await.map_err(|e| {
            crate::error::Error::wrap(
                crate::error::ErrorKind::Io,
                format!("cannot listen for CoIoT on UDP port {port}"),
                e,
            )
        })?;
        let _ = socket2::SockRef::from(&s).set_recv_buffer_size(RECV_BUFFER);
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
    let _ = s.set_recv_buffer_size(RECV_BUFFER);
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// What the CoIoT receiver counted: shown in `/api/status` (`coiot`) and `/metrics`.
#[derive(Default)]
pub struct CoiotStats {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    /// Malformed, wrong version/code, too large, bad payload.
    pub rejected: AtomicU64,
    /// Well-formed, but from another device id or another source address.
    pub foreign: AtomicU64,
    /// Accepted with only the 6-hex id suffix of older firmware (a weaker identity).
    pub weak_identity: AtomicU64,
}

impl StatusSource for CoiotStats {
    fn status(&self, status: &mut Status) {
        status.coiot = Some(CoiotStatus {
            received: self.received.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            foreign: self.foreign.load(Ordering::Relaxed),
            weak_identity: self.weak_identity.load(Ordering::Relaxed),
        });
    }

    fn metrics(&self, out: &mut Metrics) {
        const NAME: &str = "coiot_datagrams_total";
        out.family(NAME, Kind::Counter, "CoIoT datagrams received, by what became of them.");
        for (k, v) in [
            ("accepted", &self.accepted),
            ("rejected", &self.rejected),
            ("foreign", &self.foreign),
            ("weak_identity", &self.weak_identity),
        ] {
            out.sample(NAME, &[("result", k)], v.load(Ordering::Relaxed));
        }
    }
}

/// The one detector of the chime input: every source sends its observations here.
pub type ObservationTx = mpsc::Sender<Observation>;

pub fn observation_channel() -> (ObservationTx, mpsc::Receiver<Observation>) {
    mpsc::channel(QUEUE)
}

/// Owns the detector: applies observations and the clock, sends rings and sensor edges to the bus.
pub async fn run_detector(
    cfg: Config,
    rx: &mut mpsc::Receiver<Observation>,
    sink: RingSink,
    shutdown: CancellationToken,
) {
    let start = Instant::now();
    let mut det =
        Detector::new(cfg.ring.min_gap_ms, u64::try_from(cfg.ring.pressed_max_secs.as_millis()).unwrap_or(u64::MAX));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outs = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => det.tick(start.elapsed().as_millis() as u64),
            ob = rx.recv() => match ob {
                Some(ob) => det.observe(start.elapsed().as_millis() as u64, &ob),
                None => return,
            },
        };
        for o in outs {
            match o {
                Output::Ring { source, press, late } => {
                    if late {
                        tracing::info!(source = source.as_str(), press, "press reported late (its edge was not seen)");
                    }
                    sink.ring(source.ring_source(), Some(&press));
                }
                Output::Pressed(on) => sink.pressed(on),
                Output::Online { source, online } => {
                    if !online {
                        tracing::warn!(
                            source = source.as_str(),
                            "the chime sensor went quiet (nothing within its validity)"
                        );
                    }
                    sink.bus.set_source(source.as_str(), online)
                }
            }
        }
    }
}

/// One CoIoT datagram, pure: accepted as an observation, or why not.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Status(Observation, coiot::Identity),
    /// A descriptor (`/cit/d`) or another well-formed message without input status.
    Other,
    Foreign,
    Rejected(coiot::CoiotError),
}

pub fn judge(device: &DeviceMatch, input: u8, buf: &[u8]) -> Verdict {
    let msg = match coiot::parse(buf) {
        Ok(m) => m,
        Err(e) => return Verdict::Rejected(e),
    };
    let Some(identity) = device.matches(msg.device_id) else {
        return Verdict::Foreign;
    };
    match coiot::parse_status(msg.payload) {
        Ok(readings) => Verdict::Status(coiot::observation(&msg, &readings, input), identity),
        Err(e) => match coiot::parse_descriptor(msg.payload) {
            Ok(_) => Verdict::Other,
            Err(_) => Verdict::Rejected(e),
        },
    }
}

/// Receives CoIoT datagrams on every socket and feeds the detector.
pub async fn run_coiot(
    cfg: Config,
    sockets: Vec<UdpSocket>,
    tx: ObservationTx,
    stats: Arc<CoiotStats>,
    shutdown: CancellationToken,
) {
    if sockets.is_empty() {
        return;
    }
    let Some(device) = cfg.coiot.device_id.as_deref().and_then(DeviceMatch::parse) else {
        tracing::warn!("coiot.device_id is not set: CoIoT ring detection is off");
        return;
    };
    let source = cfg.coiot.source;
    let mut tasks = tokio::task::JoinSet::new();
    for sock in sockets {
        let (tx, stats, device, shutdown) = (tx.clone(), stats.clone(), device.clone(), shutdown.clone());
        let input = cfg.coiot.input;
        tasks.spawn(async move {
            let mut buf = vec![0u8; coiot::MAX_DATAGRAM + 1];
            loop {
                let (n, from) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = sock.recv_from(&mut buf) => match r {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!("CoIoT receive error: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                stats.received.fetch_add(1, Ordering::Relaxed);
                if source.is_some_and(|s| s != from.ip()) {
                    stats.foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match judge(&device, input, &buf[..n]) {
                    Verdict::Status(ob, identity) => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                        if identity == coiot::Identity::Suffix {
                            stats.weak_identity.fetch_add(1, Ordering::Relaxed);
                        }
                        if tx.send(ob).await.is_err() {
                            return;
                        }
                    }
                    Verdict::Other => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Foreign => {
                        stats.foreign.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Rejected(e) => {
                        let k = stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::debug!(%from, "CoIoT datagram rejected: {e} ({k} so far)");
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
