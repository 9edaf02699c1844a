//! Speaking through the doorbell: `probe` finds its ONVIF audio backchannel, `decode` turns an
//! audio file into 8 kHz mono, `g711` encodes it, `backchannel` sends it. `Talk` is the service
//! behind `POST /api/talk` and the `talk` key of `/api/status`: one talker at a time, probing at
//! start and whenever the doorbell comes back online.

pub mod backchannel;
pub mod decode;
pub mod g711;
pub mod probe;
pub mod tone;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{Bus, StatusSource};
use backchannel::Target;
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
    busy: Arc<tokio::sync::Mutex<()>>,
    pub talks_total: AtomicU64,
    pub talk_failures: AtomicU64,
    /// Microseconds of CPU-side work (decode + resample) in the last talk.
    pub last_decode_us: AtomicU64,
    /// Told when the state changes, so clients following `/api/events` learn it.
    bus: std::sync::OnceLock<Arc<Bus>>,
}

impl Talk {
    pub fn new(config: &Config) -> Arc<Talk> {
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

    fn set_state(&self, s: TalkState) {
        let changed = {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            // The first answer at start is part of the initial status, not news.
            let first = matches!(&*g, TalkState::Unknown(w) if w == NOT_PROBED);
            let differs = *g != s;
            if differs {
                tracing::info!("talk: {}", describe(&s));
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
        let s = match backchannel::probe(&self.target).await {
            Ok(Verdict::Supported(o)) => TalkState::Supported(o),
            Ok(Verdict::Unsupported(why)) => TalkState::Unsupported(why),
            Err(e) => TalkState::Unknown(e.to_string()),
        };
        self.set_state(s);
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

fn describe(s: &TalkState) -> String {
    match s {
        TalkState::Unknown(why) => format!("unknown ({why})"),
        TalkState::Supported(o) => format!("supported (G.711 {:?}-law)", o.law),
        TalkState::Unsupported(why) => format!("unsupported ({why})"),
    }
}

impl StatusSource for Talk {
    fn status(&self, body: &mut serde_json::Map<String, serde_json::Value>) {
        let v = match self.state() {
            TalkState::Unknown(why) => json!({"state": "unknown", "reason": why}),
            TalkState::Supported(o) => json!({
                "state": "supported",
                "reason": null,
                "codec": if o.law == g711::Law::Mu { "PCMU" } else { "PCMA" },
            }),
            TalkState::Unsupported(why) => json!({"state": "unsupported", "reason": why}),
        };
        body.insert("talk".into(), v);
    }

    fn metrics(&self, out: &mut String) {
        let supported = matches!(self.state(), TalkState::Supported(_)) as u8;
        out.push_str("# HELP doorbell_bridge_talk_supported Whether the doorbell offers an audio backchannel.\n");
        out.push_str("# TYPE doorbell_bridge_talk_supported gauge\n");
        out.push_str(&format!("doorbell_bridge_talk_supported {supported}\n"));
        out.push_str("# HELP doorbell_bridge_talks_total Messages played through the doorbell.\n");
        out.push_str("# TYPE doorbell_bridge_talks_total counter\n");
        out.push_str(&format!("doorbell_bridge_talks_total {}\n", self.talks_total.load(Ordering::Relaxed)));
        out.push_str("# HELP doorbell_bridge_talk_failures_total Talks the doorbell did not take.\n");
        out.push_str("# TYPE doorbell_bridge_talk_failures_total counter\n");
        out.push_str(&format!("doorbell_bridge_talk_failures_total {}\n", self.talk_failures.load(Ordering::Relaxed)));
    }
}
