//! The simulated doorbell's ONVIF device: device service (clock, capabilities, services, reboot),
//! media (profiles, stream and snapshot URIs) and events with a PullPoint subscription manager
//! that honours long polls, expiry, Renew and Unsubscribe. Replies are shaped like the DS-HD1's
//! (see the test vectors). WS-Security is checked for real: the digest, and `Created` against
//! the simulated device's own clock, which `POST /sim/clock?offset_secs=N` (or `?epoch_secs=N`)
//! moves.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{SimOptions, SimState};
use crate::onvif::soap::{self, onvif_time, parse_duration_secs, parse_time};
use crate::onvif::xml::{self, Element, NS_SOAP, NS_WSSE, NS_WSU};

/// `Created` may differ from the device's clock by this much (a real DS-HD1 is stricter or
/// looser depending on firmware; a few seconds is what the ONVIF test tool expects).
pub const MAX_CLOCK_SKEW_SECS: i64 = 5;
/// Longest PullMessages timeout accepted; longer ones get the PullMessagesFaultResponse.
pub const MAX_PULL_TIMEOUT_SECS: f64 = 60.0;
pub const MAX_MESSAGE_LIMIT: usize = 100;
/// Messages queued per subscription; older ones are dropped past this.
const MAX_QUEUE: usize = 1024;
/// Subscriptions the device holds at once (the real one allows a handful).
const MAX_SUBSCRIPTIONS: usize = 10;

struct Sub {
    expires: Instant,
    queue: VecDeque<Msg>,
}

#[derive(Clone)]
struct Msg {
    sensor: &'static str,
    op: &'static str,
    state: bool,
    at: DateTime<Utc>,
}

/// The ONVIF part of the simulator's state.
pub struct OnvifSim {
    /// Device clock = host clock + this.
    pub clock_offset_secs: AtomicI64,
    subs: Mutex<BTreeMap<u64, Sub>>,
    next_sub: AtomicU64,
    wake: tokio::sync::Notify,
    /// Most subscriptions ever live at once.
    pub subs_peak: AtomicUsize,
    pub subs_created: AtomicU64,
    pub auth_failures: AtomicU64,
    pub pulls: AtomicU64,
    /// Refuse relative termination times (`PT600S`) as some firmwares do.
    pub refuse_relative: AtomicBool,
    /// When the last PullMessages reply carrying messages was released (benchmark hook).
    pub last_release: Mutex<Option<Instant>>,
}

impl Default for OnvifSim {
    fn default() -> Self {
        OnvifSim {
            clock_offset_secs: AtomicI64::new(0),
            subs: Mutex::new(BTreeMap::new()),
            next_sub: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            subs_peak: AtomicUsize::new(0),
            subs_created: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            pulls: AtomicU64::new(0),
            refuse_relative: AtomicBool::new(false),
            last_release: Mutex::new(None),
        }
    }
}

/// Simulator sensor -> the topic and Data item the device sends for it (matching the bridge's
/// default table: the PIR as CellMotionDetector).
fn topic_of(sensor: &str) -> (&'static str, &'static str, &'static [(&'static str, &'static str)]) {
    const CELL_SRC: &[(&str, &str)] = &[
        ("VideoSourceConfigurationToken", "VideoSourceToken"),
        ("VideoAnalyticsConfigurationToken", "VideoAnalyticsToken"),
        ("Rule", "MyMotionDetectorRule"),
    ];
    const FIELD_SRC: &[(&str, &str)] = &[
        ("VideoSourceConfigurationToken", "VideoSourceToken"),
        ("VideoAnalyticsConfigurationToken", "VideoAnalyticsToken"),
        ("Rule", "MyFieldDetector1"),
    ];
    match sensor {
        "video" => ("tns1:VideoSource/MotionAlarm", "State", &[("Source", "VideoSource_1")]),
        "field" => ("tns1:RuleEngine/FieldDetector/ObjectsInside", "IsInside", FIELD_SRC),
        _ => ("tns1:RuleEngine/CellMotionDetector/Motion", "IsMotion", CELL_SRC),
    }
}

impl OnvifSim {
    pub fn device_now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.clock_offset_secs.load(Ordering::SeqCst))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Sub>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn purge(subs: &mut BTreeMap<u64, Sub>) {
        let now = Instant::now();
        subs.retain(|_, s| s.expires > now);
    }

    /// Subscriptions alive right now.
    pub fn live(&self) -> usize {
        let mut g = self.lock();
        Self::purge(&mut g);
        g.len()
    }

    /// A sensor changed: every subscription gets a `Changed` message and waiting pulls wake.
    pub fn motion(&self, sensor: &str, on: bool) {
        let sensor = topic_of(sensor).0;
        let at = self.device_now();
        {
            let mut g = self.lock();
            Self::purge(&mut g);
            for s in g.values_mut() {
                if s.queue.len() == MAX_QUEUE {
                    s.queue.pop_front();
                }
                s.queue.push_back(Msg { sensor, op: "Changed", state: on, at });
            }
        }
        self.wake.notify_waiters();
    }

    /// The device restarts: every subscription is gone and waiting pulls end.
    pub fn reboot(&self) {
        self.lock().clear();
        self.wake.notify_waiters();
    }

    fn wake_all(&self) {
        self.wake.notify_waiters();
    }
}

#[derive(Clone)]
struct Ctx {
    state: Arc<SimState>,
    opts: SimOptions,
    base: String,
    shutdown: CancellationToken,
}

pub fn router(state: Arc<SimState>, opts: SimOptions, base: String, shutdown: CancellationToken) -> Router {
    let ctx = Ctx { state, opts, base, shutdown };
    Router::new()
        .route("/onvif/device_service", post(device_service))
        .route("/onvif/Media", post(media))
        .route("/onvif/Events", post(events))
        .route("/onvif/Events/{sub}", post(subscription))
        .route("/sim/clock", post(sim_clock))
        .with_state(ctx)
}

#[derive(Deserialize)]
struct ClockQuery {
    offset_secs: Option<i64>,
    /// Set the device clock to this Unix time (0 = 1970).
    epoch_secs: Option<i64>,
}

async fn sim_clock(State(ctx): State<Ctx>, Query(q): Query<ClockQuery>) -> Response {
    let off = match (q.offset_secs, q.epoch_secs) {
        (Some(o), _) => o,
        (None, Some(e)) => e - Utc::now().timestamp(),
        _ => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "give offset_secs or epoch_secs"}))).into_response()
        }
    };
    ctx.state.onvif.clock_offset_secs.store(off, Ordering::SeqCst);
    Json(json!({"offset_secs": off, "device_time": onvif_time(ctx.state.onvif.device_now())})).into_response()
}

// ---------------------------------------------------------------- replies

const ENV_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    "\n",
    r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:tev="http://www.onvif.org/ver10/events/wsdl" xmlns:ter="http://www.onvif.org/ver10/error" xmlns:tns1="http://www.onvif.org/ver10/topics" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsrf-r="http://docs.oasis-open.org/wsrf/r-2" xmlns:tnshik="http://www.hikvision.com/2011/event/topics">"#
);

fn soap_response(status: StatusCode, action: Option<&str>, body: &str) -> Response {
    let header =
        action.map(|a| format!("<env:Header><wsa:Action>{a}</wsa:Action>\n</env:Header>\n")).unwrap_or_default();
    let xml = format!("{ENV_OPEN}{header}<env:Body>{body}</env:Body>\n</env:Envelope>\n");
    (status, [(header::CONTENT_TYPE, "application/soap+xml; charset=utf-8")], xml).into_response()
}

fn ok(action: &str, body: &str) -> Response {
    soap_response(StatusCode::OK, Some(action), body)
}

/// A SOAP 1.2 fault; Sender faults are HTTP 400, Receiver faults 500.
fn fault(code: &str, subcode: &str, reason: &str, detail: &str) -> Response {
    let status = if code == "Sender" { StatusCode::BAD_REQUEST } else { StatusCode::INTERNAL_SERVER_ERROR };
    let detail = if detail.is_empty() { String::new() } else { format!("<env:Detail>{detail}</env:Detail>") };
    let body = format!(
        "<env:Fault><env:Code><env:Value>env:{code}</env:Value>\n<env:Subcode><env:Value>{subcode}</env:Value></env:Subcode>\n</env:Code>\n<env:Reason><env:Text xml:lang=\"en\">{reason}</env:Text></env:Reason>\n{detail}</env:Fault>"
    );
    soap_response(status, None, &body)
}

fn not_authorized() -> Response {
    fault(
        "Sender",
        "ter:NotAuthorized",
        "The action requested requires authorization and the sender is not authorized",
        "",
    )
}

fn not_supported() -> Response {
    fault("Sender", "wsa:ActionNotSupported", "The action requested is not supported by this service", "")
}

fn invalid_arg(reason: &str) -> Response {
    fault("Sender", "ter:InvalidArgVal", reason, "")
}

fn resource_unknown() -> Response {
    fault(
        "Receiver",
        "wsrf-r:ResourceUnknownFault",
        "The subscription does not exist or has expired",
        "<wsrf-r:ResourceUnknownFault/>",
    )
}

fn date_time_xml(t: DateTime<Utc>) -> String {
    format!(
        "<tt:Time><tt:Hour>{}</tt:Hour>\n<tt:Minute>{}</tt:Minute>\n<tt:Second>{}</tt:Second>\n</tt:Time>\n<tt:Date><tt:Year>{}</tt:Year>\n<tt:Month>{}</tt:Month>\n<tt:Day>{}</tt:Day>\n</tt:Date>\n",
        t.hour(),
        t.minute(),
        t.second(),
        t.year(),
        t.month(),
        t.day()
    )
}

// ---------------------------------------------------------------- requests

/// Parses a request; `Err` is the response to give (offline, unreadable, not authorized).
// The error is the reply itself; handlers return it as is.
#[allow(clippy::result_large_err)]
fn accept(ctx: &Ctx, body: &[u8], needs_auth: impl Fn(&str) -> bool) -> Result<(Element, String), Response> {
    if !ctx.state.online.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
    }
    let env = xml::parse(body).map_err(|_| fault("Sender", "ter:WellFormed", "The request is not well formed", ""))?;
    let op = xml::body(&env).map(|b| b.name.clone()).unwrap_or_default();
    if needs_auth(&op) && !authorized(ctx, &env) {
        ctx.state.onvif.auth_failures.fetch_add(1, Ordering::SeqCst);
        return Err(not_authorized());
    }
    Ok((env, op))
}

/// The UsernameToken's digest, and its `Created` within a few seconds of this device's clock.
fn authorized(ctx: &Ctx, env: &Element) -> bool {
    let Some(tok) = env
        .child(NS_SOAP, "Header")
        .and_then(|h| h.child(NS_WSSE, "Security"))
        .and_then(|s| s.child(NS_WSSE, "UsernameToken"))
    else {
        return false;
    };
    let text = |ns: &str, n: &str| tok.child(ns, n).map(|e| e.text_trim().to_string());
    let (Some(user), Some(pass), Some(nonce), Some(created)) =
        (text(NS_WSSE, "Username"), text(NS_WSSE, "Password"), text(NS_WSSE, "Nonce"), text(NS_WSU, "Created"))
    else {
        return false;
    };
    let Ok(nonce) = base64::engine::general_purpose::STANDARD.decode(nonce.as_bytes()) else { return false };
    let want = soap::password_digest(&nonce, &created, &ctx.opts.password);
    if user != ctx.opts.username || !bool::from(subtle::ConstantTimeEq::ct_eq(want.as_bytes(), pass.as_bytes())) {
        return false;
    }
    let Some(created) = parse_time(&created) else { return false };
    (created - ctx.state.onvif.device_now()).num_seconds().abs() <= MAX_CLOCK_SKEW_SECS
}

fn child_text<'a>(el: &'a Element, name: &str) -> Option<&'a str> {
    el.child_any(name).map(|e| e.text_trim())
}

async fn device_service(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let (_, op) = match accept(&ctx, &body, |op| op != "GetSystemDateAndTime") {
        Ok(x) => x,
        Err(r) => return r,
    };
    let b = &ctx.base;
    match op.as_str() {
        "GetSystemDateAndTime" => {
            let t = ctx.state.onvif.device_now();
            ok(
                "http://www.onvif.org/ver10/device/wsdl/GetSystemDateAndTimeResponse",
                &format!(
                    "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>Manual</tt:DateTimeType>\n<tt:DaylightSavings>false</tt:DaylightSavings>\n<tt:TimeZone><tt:TZ>GMT0</tt:TZ>\n</tt:TimeZone>\n<tt:UTCDateTime>{0}</tt:UTCDateTime>\n<tt:LocalDateTime>{0}</tt:LocalDateTime>\n</tds:SystemDateAndTime>\n</tds:GetSystemDateAndTimeResponse>\n",
                    date_time_xml(t)
                ),
            )
        }
        "GetCapabilities" => ok(
            "http://www.onvif.org/ver10/device/wsdl/GetCapabilitiesResponse",
            &format!(
                "<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Device><tt:XAddr>{b}/onvif/device_service</tt:XAddr>\n</tt:Device>\n<tt:Events><tt:XAddr>{b}/onvif/Events</tt:XAddr>\n<tt:WSSubscriptionPolicySupport>true</tt:WSSubscriptionPolicySupport>\n<tt:WSPullPointSupport>true</tt:WSPullPointSupport>\n<tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport>\n</tt:Events>\n<tt:Media><tt:XAddr>{b}/onvif/Media</tt:XAddr>\n</tt:Media>\n</tds:Capabilities>\n</tds:GetCapabilitiesResponse>\n"
            ),
        ),
        "GetServices" => {
            let svc = |ns: &str, path: &str| {
                format!("<tds:Service><tds:Namespace>{ns}</tds:Namespace>\n<tds:XAddr>{b}{path}</tds:XAddr>\n<tds:Version><tt:Major>2</tt:Major>\n<tt:Minor>40</tt:Minor>\n</tds:Version>\n</tds:Service>\n")
            };
            ok(
                "http://www.onvif.org/ver10/device/wsdl/GetServicesResponse",
                &format!(
                    "<tds:GetServicesResponse>{}{}{}</tds:GetServicesResponse>\n",
                    svc("http://www.onvif.org/ver10/device/wsdl", "/onvif/device_service"),
                    svc("http://www.onvif.org/ver10/media/wsdl", "/onvif/Media"),
                    svc("http://www.onvif.org/ver10/events/wsdl", "/onvif/Events")
                ),
            )
        }
        // What a DS-HD1 / DB1 on firmware 200321 is reported to answer (values of the demo unit).
        "GetDeviceInformation" => ok(
            "http://www.onvif.org/ver10/device/wsdl/GetDeviceInformationResponse",
            "<tds:GetDeviceInformationResponse><tds:Manufacturer>EZVIZ</tds:Manufacturer>\n<tds:Model>DB1</tds:Model>\n<tds:FirmwareVersion>V5.2.4 build 200321</tds:FirmwareVersion>\n<tds:SerialNumber>DB1SIM0000001</tds:SerialNumber>\n<tds:HardwareId>88</tds:HardwareId>\n</tds:GetDeviceInformationResponse>\n",
        ),
        "SystemReboot" => {
            let state = ctx.state.clone();
            let wait = ctx.opts.reboot_time;
            let sd = ctx.shutdown.clone();
            tokio::spawn(async move {
                // The reply leaves before the device goes away, as on the real one.
                tokio::time::sleep(Duration::from_millis(100)).await;
                state.reboots.fetch_add(1, Ordering::SeqCst);
                state.online.store(false, Ordering::SeqCst);
                state.onvif.reboot();
                tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = sd.cancelled() => {} }
                state.online.store(true, Ordering::SeqCst);
            });
            ok(
                "http://www.onvif.org/ver10/device/wsdl/SystemRebootResponse",
                "<tds:SystemRebootResponse><tds:Message>Rebooting in 10 seconds.</tds:Message>\n</tds:SystemRebootResponse>\n",
            )
        }
        _ => not_supported(),
    }
}

async fn media(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let (_, op) = match accept(&ctx, &body, |_| true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match op.as_str() {
        "GetProfiles" => {
            let profile = |tok: &str, name: &str, enc: &str, w: u32, h: u32| {
                format!("<trt:Profiles token=\"{tok}\" fixed=\"true\"><tt:Name>{name}</tt:Name>\n<tt:VideoEncoderConfiguration token=\"{enc}\"><tt:Name>{enc}</tt:Name>\n<tt:Encoding>H264</tt:Encoding>\n<tt:Resolution><tt:Width>{w}</tt:Width>\n<tt:Height>{h}</tt:Height>\n</tt:Resolution>\n</tt:VideoEncoderConfiguration>\n</trt:Profiles>\n")
            };
            ok(
                "http://www.onvif.org/ver10/media/wsdl/GetProfilesResponse",
                &format!(
                    "<trt:GetProfilesResponse>{}{}</trt:GetProfilesResponse>\n",
                    profile("Profile_1", "mainStream", "VideoEncoderToken_1", 1536, 2048),
                    profile("Profile_2", "subStream", "VideoEncoderToken_2", 480, 640)
                ),
            )
        }
        // As the DS-HD1 answers: one half-duplex output while it offers a backchannel.
        "GetAudioOutputConfigurations" => {
            let on = ctx.state.backchannel.enabled.load(Ordering::SeqCst);
            let config = "<trt:Configurations token=\"AudioOutputConfigToken\">\n<tt:Name>AudioOutputConfig</tt:Name>\n<tt:UseCount>2</tt:UseCount>\n<tt:OutputToken>AudioOutputToken</tt:OutputToken>\n<tt:SendPrimacy>www.onvif.org/ver20/HalfDuplex/Auto</tt:SendPrimacy>\n<tt:OutputLevel>10</tt:OutputLevel>\n</trt:Configurations>\n";
            ok(
                "http://www.onvif.org/ver10/media/wsdl/GetAudioOutputConfigurationsResponse",
                &format!(
                    "<trt:GetAudioOutputConfigurationsResponse>{}</trt:GetAudioOutputConfigurationsResponse>\n",
                    if on { config } else { "" }
                ),
            )
        }
        "GetStreamUri" => ok(
            "http://www.onvif.org/ver10/media/wsdl/GetStreamUriResponse",
            &format!(
                "<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>rtsp://{}:{}/Streaming/Channels/101?transportmode=unicast&amp;profile=Profile_1</tt:Uri>\n</trt:MediaUri>\n</trt:GetStreamUriResponse>\n",
                ctx.opts.bind, ctx.opts.rtsp_port
            ),
        ),
        "GetSnapshotUri" => ok(
            "http://www.onvif.org/ver10/media/wsdl/GetSnapshotUriResponse",
            &format!(
                "<trt:GetSnapshotUriResponse><trt:MediaUri><tt:Uri>{}/onvif/snapshot.jpg</tt:Uri>\n</trt:MediaUri>\n</trt:GetSnapshotUriResponse>\n",
                ctx.base
            ),
        ),
        _ => not_supported(),
    }
}

/// A requested termination: `PT600S` (refused when the device refuses relative times) or an
/// absolute time on the device's clock. Returns the lifetime.
#[allow(clippy::result_large_err)]
fn lifetime(ctx: &Ctx, requested: Option<&str>) -> Result<Duration, Response> {
    let Some(req) = requested else { return Ok(Duration::from_secs(60)) };
    if let Some(secs) = parse_duration_secs(req) {
        if ctx.state.onvif.refuse_relative.load(Ordering::SeqCst) {
            return Err(fault("Sender", "ter:InvalidArgVal", "The argument value is invalid", ""));
        }
        return Ok(Duration::from_secs_f64(secs.clamp(1.0, 86_400.0)));
    }
    let at = parse_time(req).ok_or_else(|| invalid_arg("The argument value is invalid"))?;
    let secs = (at - ctx.state.onvif.device_now()).num_milliseconds();
    if secs <= 0 {
        return Err(invalid_arg("Termination time in the past"));
    }
    Ok(Duration::from_millis((secs as u64).min(86_400_000)))
}

fn times_xml(prefix: &str, now: DateTime<Utc>, life: Duration) -> String {
    let term = now + chrono::Duration::from_std(life).unwrap_or_default();
    format!(
        "<{prefix}:CurrentTime>{}</{prefix}:CurrentTime>\n<{prefix}:TerminationTime>{}</{prefix}:TerminationTime>\n",
        onvif_time(now),
        onvif_time(term)
    )
}

async fn events(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let (env, op) = match accept(&ctx, &body, |_| true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if op != "CreatePullPointSubscription" {
        return not_supported();
    }
    let req = xml::body(&env).and_then(|b| child_text(b, "InitialTerminationTime"));
    let life = match lifetime(&ctx, req) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let o = &ctx.state.onvif;
    let id = o.next_sub.fetch_add(1, Ordering::SeqCst);
    let at = o.device_now();
    {
        let mut g = o.lock();
        OnvifSim::purge(&mut g);
        if g.len() >= MAX_SUBSCRIPTIONS {
            return fault("Receiver", "ter:Action", "Too many subscriptions", "");
        }
        // The first pull reports every property's current state.
        let motion = ctx.state.motion.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let queue = ["video", "pir", "field"]
            .iter()
            .map(|s| Msg {
                sensor: topic_of(s).0,
                op: "Initialized",
                state: motion.get(*s).copied().unwrap_or(false),
                at,
            })
            .collect();
        g.insert(id, Sub { expires: Instant::now() + life, queue });
        o.subs_created.fetch_add(1, Ordering::SeqCst);
        o.subs_peak.fetch_max(g.len(), Ordering::SeqCst);
    }
    ok(
        "http://www.onvif.org/ver10/events/wsdl/EventPortType/CreatePullPointSubscriptionResponse",
        &format!(
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa:Address>{}/onvif/Events/PullSubManager_{}</wsa:Address>\n</tev:SubscriptionReference>\n{}</tev:CreatePullPointSubscriptionResponse>\n",
            ctx.base,
            id,
            times_xml("wsnt", at, life)
        ),
    )
}

fn message_xml(m: &Msg) -> String {
    let (topic, item, source) = topic_of(match m.sensor {
        "tns1:VideoSource/MotionAlarm" => "video",
        "tns1:RuleEngine/FieldDetector/ObjectsInside" => "field",
        _ => "pir",
    });
    let src: String =
        source.iter().map(|(n, v)| format!("<tt:SimpleItem Name=\"{n}\" Value=\"{v}\"/>\n")).collect::<String>();
    let key =
        if item == "IsInside" { "<tt:Key><tt:SimpleItem Name=\"ObjectId\" Value=\"0\"/>\n</tt:Key>\n" } else { "" };
    format!(
        "<wsnt:NotificationMessage><wsnt:Topic Dialect=\"http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet\">{topic}</wsnt:Topic>\n<wsnt:Message><tt:Message UtcTime=\"{}\" PropertyOperation=\"{}\"><tt:Source>{src}</tt:Source>\n{key}<tt:Data><tt:SimpleItem Name=\"{item}\" Value=\"{}\"/>\n</tt:Data>\n</tt:Message>\n</wsnt:Message>\n</wsnt:NotificationMessage>\n",
        onvif_time(m.at),
        m.op,
        m.state
    )
}

fn sub_id(path: &str) -> Option<u64> {
    path.strip_prefix("PullSubManager_")?.parse().ok()
}

async fn subscription(State(ctx): State<Ctx>, Path(sub): Path<String>, body: Bytes) -> Response {
    let (env, op) = match accept(&ctx, &body, |_| true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let o = &ctx.state.onvif;
    let Some(id) = sub_id(&sub) else { return resource_unknown() };
    let req = xml::body(&env).cloned().unwrap_or_default();
    match op.as_str() {
        "PullMessages" => {
            o.pulls.fetch_add(1, Ordering::SeqCst);
            let timeout = child_text(&req, "Timeout").and_then(parse_duration_secs).unwrap_or(10.0);
            let limit: usize = child_text(&req, "MessageLimit").and_then(|m| m.parse().ok()).unwrap_or(1);
            if !(0.0..=MAX_PULL_TIMEOUT_SECS).contains(&timeout) || limit > MAX_MESSAGE_LIMIT {
                return fault(
                    "Sender",
                    "ter:InvalidArgVal",
                    "Timeout or MessageLimit exceeds the device limits",
                    &format!("<tev:PullMessagesFaultResponse><tev:MaxTimeout>PT{}S</tev:MaxTimeout><tev:MaxMessageLimit>{}</tev:MaxMessageLimit></tev:PullMessagesFaultResponse>", MAX_PULL_TIMEOUT_SECS as u64, MAX_MESSAGE_LIMIT),
                );
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout);
            loop {
                // Register for wake-ups before looking, so a change in between is not missed.
                let notified = o.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !ctx.state.online.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let taken = {
                    let mut g = o.lock();
                    OnvifSim::purge(&mut g);
                    let Some(s) = g.get_mut(&id) else { return resource_unknown() };
                    let n = s.queue.len().min(limit.max(1));
                    let msgs: Vec<Msg> = s.queue.drain(..n).collect();
                    (msgs, s.expires)
                };
                let (msgs, expires) = taken;
                let now_inst = Instant::now();
                if !msgs.is_empty() || tokio::time::Instant::now() >= deadline || ctx.shutdown.is_cancelled() {
                    let now = o.device_now();
                    let left = expires.saturating_duration_since(now_inst);
                    let body = format!(
                        "<tev:PullMessagesResponse>{}{}</tev:PullMessagesResponse>\n",
                        times_xml("tev", now, left),
                        msgs.iter().map(message_xml).collect::<String>()
                    );
                    if !msgs.is_empty() {
                        *o.last_release.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    }
                    return ok(
                        "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription/PullMessagesResponse",
                        &body,
                    );
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = ctx.shutdown.cancelled() => {}
                }
            }
        }
        "Renew" => {
            let life = match lifetime(&ctx, child_text(&req, "TerminationTime")) {
                Ok(l) => l,
                Err(r) => return r,
            };
            let mut g = o.lock();
            OnvifSim::purge(&mut g);
            let Some(s) = g.get_mut(&id) else { return resource_unknown() };
            s.expires = Instant::now() + life;
            ok(
                "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewResponse",
                &format!("<wsnt:RenewResponse>{}</wsnt:RenewResponse>\n", times_xml("wsnt", o.device_now(), life)),
            )
        }
        "Unsubscribe" => {
            let removed = {
                let mut g = o.lock();
                OnvifSim::purge(&mut g);
                g.remove(&id).is_some()
            };
            if !removed {
                return resource_unknown();
            }
            o.wake_all();
            ok(
                "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeResponse",
                "<wsnt:UnsubscribeResponse/>\n",
            )
        }
        _ => not_supported(),
    }
}
