//! The simulated doorbell: what `demo` and the tests run against. It is shaped after the real
//! device's replies (see the test vectors), serves only on loopback, and can be driven over HTTP:
//! `POST /sim/ring`, `POST /sim/motion?sensor=pir|video|field&state=on|off`, `POST /sim/reboot`,
//! `POST /sim/snapshot?mode=ok|slow|fail|digest|basic|missing&delay_ms=N`, `GET /sim/status`.

pub mod audio;
pub mod backchannel;
pub mod image;
pub mod onvif;
pub mod rtsp;
pub mod shelly;
pub mod snapshot;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub bind: IpAddr,
    /// ONVIF, snapshot and `/sim/*` controls. 0 = any free port.
    pub http_port: u16,
    pub rtsp_port: u16,
    pub username: String,
    pub password: String,
    /// The simulated Shelly Uni's CoIoT id.
    pub shelly_id: String,
    /// Where the simulated Shelly sends CoIoT status (the bridge's unicast port).
    pub coiot_target: Option<SocketAddr>,
    /// Period of the Shelly's repeated status.
    pub coiot_period: Duration,
    /// How long the doorbell drives the chime input per press.
    pub chime: Duration,
    /// How long `/sim/reboot` keeps the doorbell away.
    pub reboot_time: Duration,
    /// When set, the simulated Shelly also publishes its presses to this MQTT broker (host, port)
    /// as a Gen1 Uni: `shellies/shellyuni-<MAC>/input/0`, `input_event/0`, `online`.
    pub shelly_mqtt: Option<(String, u16)>,
    /// The doorbell's sound track (AAC by default, G.711 like some firmware, or none).
    pub audio: audio::SimAudio,
    /// Whether the doorbell offers an audio backchannel (`POST /sim/backchannel` switches it).
    pub backchannel: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 0,
            rtsp_port: 0,
            username: "admin".into(),
            password: "ABCDEF".into(),
            shelly_id: "SHUNI-1#C45BBE6B9A12#2".into(),
            coiot_target: None,
            coiot_period: Duration::from_secs(15),
            chime: Duration::from_millis(400),
            reboot_time: Duration::from_secs(3),
            shelly_mqtt: None,
            audio: audio::SimAudio::default(),
            backchannel: true,
        }
    }
}

/// Counters and switches shared by the simulator's parts; tests read them.
#[derive(Default)]
pub struct SimState {
    /// RTSP sessions open on the simulated doorbell right now.
    pub rtsp_sessions: AtomicUsize,
    /// Most sessions ever open at once.
    pub rtsp_sessions_peak: AtomicUsize,
    /// Sessions a client ended with TEARDOWN (the DB1 keeps the others counted until they time out).
    pub rtsp_teardowns: AtomicUsize,
    /// Which clip (index into `rtsp::CLIP_SIZES`) the video streams.
    pub resolution: AtomicUsize,
    pub snapshot_requests: AtomicU64,
    pub rings: AtomicU64,
    pub coiot_sent: AtomicU64,
    /// False while rebooting: every server refuses.
    pub online: AtomicBool,
    pub reboots: AtomicU64,
    pub coiot_target: Mutex<Option<SocketAddr>>,
    pub motion: Mutex<std::collections::BTreeMap<String, bool>>,
    /// How `/onvif/snapshot.jpg` behaves (`POST /sim/snapshot`).
    pub snapshot: snapshot::SnapshotControl,
    /// The ONVIF device: clock, PullPoint subscriptions.
    pub onvif: onvif::OnvifSim,
    pub backchannel: backchannel::Receiver,
    /// Number of the last video frame sent (frames since PLAY of the latest session to play);
    /// each frame carries its number in an SEI (`rtsp::frame_number_sei`).
    pub video_frame: AtomicU64,
}

pub struct Sim {
    pub http_addr: SocketAddr,
    /// The simulated doorbell's RTSP server (`opts.rtsp_port`, or an ephemeral port for 0).
    pub rtsp_addr: SocketAddr,
    pub state: Arc<SimState>,
    pub opts: SimOptions,
    presses: tokio::sync::mpsc::UnboundedSender<shelly::Cmd>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct Ctx {
    state: Arc<SimState>,
    opts: SimOptions,
    presses: tokio::sync::mpsc::UnboundedSender<shelly::Cmd>,
    shutdown: CancellationToken,
}

impl Sim {
    pub async fn start(opts: SimOptions) -> std::io::Result<Sim> {
        let state = Arc::new(SimState { online: AtomicBool::new(true), ..Default::default() });
        *state.coiot_target.lock().unwrap() = opts.coiot_target;
        state.backchannel.enabled.store(opts.backchannel, Ordering::SeqCst);
        let shutdown = CancellationToken::new();
        let (ptx, prx) = tokio::sync::mpsc::unbounded_channel();
        let listener = TcpListener::bind(SocketAddr::new(opts.bind, opts.http_port)).await?;
        let http_addr = listener.local_addr()?;
        let ctx = Ctx { state: state.clone(), opts: opts.clone(), presses: ptx.clone(), shutdown: shutdown.clone() };
        let app = router(ctx).merge(onvif::router(
            state.clone(),
            opts.clone(),
            format!("http://{http_addr}"),
            shutdown.clone(),
        ));
        let sd = shutdown.clone();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(sd.cancelled_owned()).await;
        }));
        let sock = tokio::net::UdpSocket::bind(SocketAddr::new(opts.bind, 0)).await?;
        tasks.push(tokio::spawn(shelly::run(opts.clone(), state.clone(), sock, prx, shutdown.clone())));
        let (rtsp_addr, rtsp_task) = rtsp::start(&opts, state.clone(), shutdown.clone()).await?;
        tasks.push(rtsp_task);
        Ok(Sim { http_addr, rtsp_addr, state, opts, presses: ptx, shutdown, tasks })
    }

    pub fn set_coiot_target(&self, target: SocketAddr) {
        *self.state.coiot_target.lock().unwrap() = Some(target);
        // A real Shelly sends its status as soon as a peer is set: the bridge gets its baseline.
        let _ = self.presses.send(shelly::Cmd::Announce);
    }

    /// A press of the button, as `POST /sim/ring` does.
    pub fn ring(&self) {
        self.state.rings.fetch_add(1, Ordering::SeqCst);
        let _ = self.presses.send(shelly::Cmd::Press);
    }

    pub fn rtsp_addr(&self) -> SocketAddr {
        self.rtsp_addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/onvif/snapshot.jpg", get(snapshot::snapshot))
        .route("/sim/snapshot", post(snapshot::control))
        .route("/sim/ring", post(sim_ring))
        .route("/sim/motion", post(sim_motion))
        .route("/sim/reboot", post(sim_reboot))
        .route("/sim/resolution", post(sim_resolution))
        .route("/sim/status", get(sim_status))
        .route("/sim/backchannel", post(backchannel::control))
        .with_state(ctx)
}

async fn sim_ring(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    let n = ctx.state.rings.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = ctx.presses.send(shelly::Cmd::Press);
    Json(json!({"result": "pressed", "presses": n}))
}

#[derive(Deserialize)]
struct MotionQuery {
    sensor: String,
    state: String,
}

async fn sim_motion(State(ctx): State<Ctx>, Query(q): Query<MotionQuery>) -> Response {
    let sensor = match q.sensor.as_str() {
        "pir" | "video" | "field" => q.sensor.clone(),
        _ => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "sensor must be pir, video or field"})))
                .into_response()
        }
    };
    let on = match q.state.as_str() {
        "on" => true,
        "off" => false,
        _ => return (StatusCode::BAD_REQUEST, Json(json!({"error": "state must be on or off"}))).into_response(),
    };
    ctx.state.motion.lock().unwrap().insert(sensor.clone(), on);
    ctx.state.onvif.motion(&sensor, on);
    Json(json!({"sensor": sensor, "state": on})).into_response()
}

#[derive(Deserialize)]
struct ResolutionQuery {
    size: String,
}

/// The owner changes the main stream's resolution in the app: the stream goes on with new
/// parameter sets in-band before the next keyframe.
async fn sim_resolution(State(ctx): State<Ctx>, Query(q): Query<ResolutionQuery>) -> Response {
    let Some(i) = rtsp::CLIP_SIZES.iter().position(|s| *s == q.size) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "size must be one of the clips' sizes"})))
            .into_response();
    };
    ctx.state.resolution.store(i, Ordering::SeqCst);
    Json(json!({"size": q.size})).into_response()
}

async fn sim_reboot(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    ctx.state.reboots.fetch_add(1, Ordering::SeqCst);
    ctx.state.online.store(false, Ordering::SeqCst);
    ctx.state.onvif.reboot();
    let state = ctx.state.clone();
    let wait = ctx.opts.reboot_time;
    let sd = ctx.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = sd.cancelled() => {} }
        state.online.store(true, Ordering::SeqCst);
    });
    Json(json!({"result": "rebooting", "seconds": wait.as_secs_f64()}))
}

async fn sim_status(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    let s = &ctx.state;
    let mut v = json!({
        "online": s.online.load(Ordering::SeqCst),
        "rtsp_sessions": s.rtsp_sessions.load(Ordering::SeqCst),
        "rtsp_sessions_peak": s.rtsp_sessions_peak.load(Ordering::SeqCst),
        "rtsp_teardowns": s.rtsp_teardowns.load(Ordering::SeqCst),
        "snapshot_requests": s.snapshot_requests.load(Ordering::SeqCst),
        "presses": s.rings.load(Ordering::SeqCst),
        "coiot_sent": s.coiot_sent.load(Ordering::SeqCst),
        "reboots": s.reboots.load(Ordering::SeqCst),
        "video_frame": s.video_frame.load(Ordering::SeqCst),
        "motion": *s.motion.lock().unwrap(),
        "snapshot": snapshot::status(&ctx),
        "onvif_subscriptions": s.onvif.live(),
        "onvif_subscriptions_peak": s.onvif.subs_peak.load(Ordering::SeqCst),
        "onvif_subscriptions_created": s.onvif.subs_created.load(Ordering::SeqCst),
        "onvif_auth_failures": s.onvif.auth_failures.load(Ordering::SeqCst),
        "onvif_clock_offset_secs": s.onvif.clock_offset_secs.load(Ordering::SeqCst),
    });
    if let Some(m) = v.as_object_mut() {
        s.backchannel.status(m);
    }
    Json(v)
}
