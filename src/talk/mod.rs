//! Speaking through the doorbell: `probe` finds its ONVIF audio backchannel, `decode` turns an
//! audio file into 8 kHz mono, `g711` encodes it, `backchannel` sends it. `Talk` is the service
//! behind `POST /api/talk` and the `talk` key of `/api/status`: one talker at a time, probing at
//! start and whenever the doorbell comes back online. A probe is the DESCRIBE with the backchannel
//! `Require` header and, when ONVIF is on, the media service's audio outputs (`onvif_answer`).

pub mod backchannel;
pub mod decode;
pub mod g711;
pub mod onvif_answer;
pub mod probe;
pub mod tone;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{Bus, StatusSource};
use crate::metrics::{Kind, Metrics};
use crate::onvif::{audio_output, device::Device};
use crate::status::{Status, TalkStatus, TalkSupport};
use backchannel::Target;
use onvif_answer::OnvifAnswer;
use probe::Verdict;

/// Largest audio body accepted (a minute of 44.1 kHz stereo WAV is ~10 MiB).
pub const MAX_BODY_BYTES: usize = 12 * 1024 * 1024;
/// Longest message played.
pub const MAX_SECONDS: u32 = 60;
/// Hikvision DS-HD1 / EZVIZ DB1: the backchannel is offered on the main channel's URL.
pub const BACKCHANNEL_PATH: &str = "/Streaming/Channels/101";
const NOT_PROBED: &str = "not probed yet";
/// How often an unknown state (doorbell unreachable) is probed again.
const RETRY_UNKNOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TalkState {
    Unknown(String),
    Supported(probe::Offer),
    Unsupported(String),
}

#[derive(Debug)]
pub enum TalkError {
    Busy,
    TooLarge(String),
    UnsupportedFormat(String),
    BadAudio(String),
    /// The doorbell has no backchannel.
    NotSupported(String),
    /// The doorbell could not be reached or failed mid-talk.
    Doorbell(String),
}

/// The result of a talk.
#[derive(Debug, Clone)]
pub struct Spoken {
    pub seconds: f64,
    pub packets: usize,
    pub first_packet_ms: f64,
}

pub struct Talk {
    target: Target,
    state: Mutex<TalkState>,
    /// The ONVIF media service, when ONVIF is on.
    device: Option<Arc<Device>>,
    onvif: Mutex<OnvifAnswer>,
    busy: Arc<tokio::sync::Mutex<()>>,
    pub talks_total: AtomicU64,
    pub talk_failures: AtomicU64,
    /// Microseconds of CPU-side work (decode + resample) in the last talk.
    pub last_decode_us: AtomicU64,
    /// Told when the state changes, so clients following `/api/events` learn it.
    bus: std::sync::OnceLock<Arc<Bus>>,
}

impl Talk {
    /// `device`: the doorbell's ONVIF endpoint, asked for its audio outputs at every probe.
    pub fn new(config: &Config, device: Option<Arc<Device>>) -> Arc<Talk> {
        let d = &config.doorbell;
        Arc::new(Talk {
            target: Target {
                host: d.host.clone(),
                port: d.rtsp_port,
                path: BACKCHANNEL_PATH.to_string(),
                user: d.username.clone(),
                pass: d.password.expose().to_string(),
            },
            state: Mutex::new(TalkState::Unknown(NOT_PROBED.into())),
            onvif: Mutex::new(if device.is_some() { OnvifAnswer::Pending } else { OnvifAnswer::Off }),
            device,
            busy: Arc::new(tokio::sync::Mutex::new(())),
            talks_total: AtomicU64::new(0),
            talk_failures: AtomicU64::new(0),
            last_decode_us: AtomicU64::new(0),
            bus: std::sync::OnceLock::new(),
        })
    }

    pub fn state(&self) -> TalkState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn onvif(&self) -> OnvifAnswer {
        self.onvif.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_state(&self, s: TalkState) {
        self.set_probed(s, None)
    }

    /// Stores a verdict and, from a probe, ONVIF's answer; tells the bus when either changed.
    fn set_probed(&self, s: TalkState, onvif: Option<OnvifAnswer>) {
        let changed = {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut o = self.onvif.lock().unwrap_or_else(|e| e.into_inner());
            // The first answer at start is part of the initial status, not news.
            let first = matches!(&*g, TalkState::Unknown(w) if w == NOT_PROBED);
            let onvif_differs = onvif.as_ref().is_some_and(|a| *a != *o);
            if let Some(a) = onvif {
                *o = a;
            }
            let differs = *g != s || onvif_differs;
            if differs {
                tracing::info!("talk: {}", describe(&s, &o));
            }
            *g = s;
            differs && !first
        };
        // Outside the lock: the bus asks every status source, this one included.
        if let Some(bus) = self.bus.get().filter(|_| changed) {
            bus.status_changed();
        }
    }

    pub async fn probe(&self) {
        let ask_onvif = async {
            let device = self.device.as_ref()?;
            Some(match audio_output::ask(device).await {
                Ok(outputs) => OnvifAnswer::Outputs(outputs),
                Err(e) => OnvifAnswer::CouldNotTell(e.to_string()),
            })
        };
        let (verdict, onvif) = tokio::join!(backchannel::probe(&self.target), ask_onvif);
        let s = match verdict {
            Ok(Verdict::Supported(o)) => TalkState::Supported(o),
            Ok(Verdict::Unsupported(why)) => TalkState::Unsupported(why),
            Err(e) => TalkState::Unknown(e.to_string()),
        };
        self.set_probed(s, onvif);
    }

    /// Probes at start, again whenever the doorbell comes back online, and every 30 s while
    /// the answer is unknown.
    pub async fn run(self: Arc<Self>, bus: Arc<Bus>, shutdown: CancellationToken) {
        let _ = self.bus.set(bus.clone());
        let mut was_online = bus.state().doorbell_online;
        self.probe().await;
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.cancelled() => return,
            }
            let online = bus.state().doorbell_online;
            let unknown = matches!(self.state(), TalkState::Unknown(_));
            if (online && !was_online) || (unknown && since.elapsed() >= RETRY_UNKNOWN) {
                self.probe().await;
                since = tokio::time::Instant::now();
            }
            was_online = online;
        }
    }

    /// Decodes `body` and plays it on the doorbell; returns when it has played.
    pub async fn speak(&self, body: bytes::Bytes, mime: Option<String>) -> Result<Spoken, TalkError> {
        let guard = self.busy.clone().try_lock_owned().map_err(|_| TalkError::Busy)?;
        if let TalkState::Unsupported(why) = self.state() {
            return Err(TalkError::NotSupported(why));
        }
        let t = std::time::Instant::now();
        let decoded = tokio::task::spawn_blocking(move || decode::decode_to_8k(&body, mime.as_deref(), MAX_SECONDS))
            .await
            .unwrap_or_else(|_| Err(decode::DecodeError::Invalid("the audio could not be decoded".into())));
        self.last_decode_us.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        let samples = decoded.map_err(|e| match e {
            decode::DecodeError::Unsupported(m) => TalkError::UnsupportedFormat(m),
            decode::DecodeError::Invalid(m) => TalkError::BadAudio(m),
            decode::DecodeError::TooLong { limit_s } => {
                TalkError::TooLarge(format!("the message is longer than {limit_s} s"))
            }
        })?;
        self.talks_total.fetch_add(1, Ordering::Relaxed);
        let seconds = samples.len() as f64 / decode::OUT_RATE as f64;
        // Its own task: a client that hangs up mid-message does not cut the session short, so
        // the message plays out and the TEARDOWN is sent; the talker slot is held until then.
        let target = self.target.clone();
        let res = tokio::spawn(async move {
            let r = backchannel::talk(&target, &samples).await;
            drop(guard);
            r
        })
        .await
        .unwrap_or(Err(backchannel::ClientError::Closed));
        match res {
            Ok(Ok(sent)) => {
                self.set_state(TalkState::Supported(sent.offer.clone()));
                Ok(Spoken { seconds, packets: sent.packets, first_packet_ms: sent.first_packet.as_secs_f64() * 1000.0 })
            }
            Ok(Err(why)) => {
                self.talk_failures.fetch_add(1, Ordering::Relaxed);
                self.set_state(TalkState::Unsupported(why.clone()));
                Err(TalkError::NotSupported(why))
            }
            Err(e) => {
                self.talk_failures.fetch_add(1, Ordering::Relaxed);
                Err(TalkError::Doorbell(e.to_string()))
            }
        }
    }
}

fn describe(s: &TalkState, onvif: &OnvifAnswer) -> String {
    let why = onvif_answer::reason(s, onvif);
    match s {
        TalkState::Unknown(_) => format!("unknown ({})", why.unwrap_or_default()),
        TalkState::Supported(o) => match why {
            Some(w) => format!("supported (G.711 {:?}-law; {w})", o.law),
            None => format!("supported (G.711 {:?}-law)", o.law),
        },
        TalkState::Unsupported(_) => format!("unsupported ({})", why.unwrap_or_default()),
    }
}

impl StatusSource for Talk {
    fn status(&self, status: &mut Status) {
        let (state, onvif) = (self.state(), self.onvif());
        let reason = onvif_answer::reason(&state, &onvif);
        let (support, codec) = match state {
            TalkState::Unknown(_) => (TalkSupport::Unknown, None),
            TalkState::Supported(o) => {
                (TalkSupport::Supported, Some(if o.law == g711::Law::Mu { "PCMU" } else { "PCMA" }))
            }
            TalkState::Unsupported(_) => (TalkSupport::Unsupported, None),
        };
        status.talk = Some(TalkStatus {
            state: support,
            reason,
            codec: codec.map(str::to_string),
            onvif_audio_output: onvif.audio_output(),
        });
    }

    fn metrics(&self, out: &mut Metrics) {
        let supported = matches!(self.state(), TalkState::Supported(_)) as u8;
        out.single("talk_supported", Kind::Gauge, "Whether the doorbell offers an audio backchannel.", supported);
        let talks = self.talks_total.load(Ordering::Relaxed);
        out.single("talks_total", Kind::Counter, "Messages played through the doorbell.", talks);
        let failures = self.talk_failures.load(Ordering::Relaxed);
        out.single("talk_failures_total", Kind::Counter, "Talks the doorbell did not take.", failures);
    }
}
