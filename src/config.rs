//! The configuration: one serde tree, read from YAML or from the add-on's `/data/options.json`
//! (same keys). Every optional field has a default written next to it; unknown keys are errors;
//! all problems are reported at once, each with its field path. Secrets print as `***`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod input;
mod values;
use input::{check_streams, too_deep, yaml_error};
pub use values::SnapshotUrl;

/// A value that must never appear in logs, errors or diagnostics.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    /// A code such as `123456` written without quotes in YAML is still a code.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Secret(s)),
            serde_json::Value::Number(n) => Ok(Secret(n.to_string())),
            _ => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    pub log_level: String,
    /// Where the bridge keeps generated credentials, ring history and ring pictures.
    /// Default: `/data` in the add-on, `./data` beside a config file.
    pub data_dir: Option<PathBuf>,
    pub doorbell: DoorbellConfig,
    pub server: ServerConfig,
    /// Streams re-served by the bridge, by name: `rtsp://HOST:8564/<name>`.
    /// A map (`main: {path: ...}`) or a list (`- name: main`), the add-on UI uses the list.
    #[serde(deserialize_with = "streams_map_or_list")]
    pub streams: BTreeMap<String, StreamConfig>,
    pub onvif: OnvifConfig,
    pub coiot: CoiotConfig,
    pub mqtt: MqttConfig,
    pub ring: RingConfig,
    pub snapshot: SnapshotConfig,
    pub clips: ClipsConfig,
    /// Add-on only: copy the bundled Home Assistant integration into `/homeassistant/custom_components`.
    pub install_integration: bool,
}

impl Default for Config {
    fn default() -> Self {
        let mut streams = BTreeMap::new();
        streams.insert(
            "main".to_string(),
            StreamConfig { path: "/Streaming/Channels/101/".into(), on_demand: false, linger_secs: DEFAULT_LINGER },
        );
        streams.insert(
            "sub".to_string(),
            StreamConfig { path: "/Streaming/Channels/102/".into(), on_demand: true, linger_secs: DEFAULT_LINGER },
        );
        Config {
            log_level: "info".into(),
            data_dir: None,
            doorbell: DoorbellConfig::default(),
            server: ServerConfig::default(),
            streams,
            onvif: OnvifConfig::default(),
            coiot: CoiotConfig::default(),
            mqtt: MqttConfig::default(),
            ring: RingConfig::default(),
            snapshot: SnapshotConfig::default(),
            clips: ClipsConfig::default(),
            install_integration: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoorbellConfig {
    /// Address of the doorbell (required).
    pub host: String,
    pub username: String,
    /// The 6-letter verification code on the doorbell's label.
    pub password: Secret,
    pub rtsp_port: u16,
    /// ONVIF and snapshot port.
    pub http_port: u16,
    /// Name shown in Home Assistant.
    pub name: String,
}

impl Default for DoorbellConfig {
    fn default() -> Self {
        DoorbellConfig {
            host: String::new(),
            username: "admin".into(),
            password: Secret::default(),
            rtsp_port: 554,
            http_port: 80,
            name: "Doorbell".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the RTSP and HTTP servers listen on.
    #[serde(deserialize_with = "values::ip")]
    pub bind: IpAddr,
    pub rtsp_port: u16,
    pub http_port: u16,
    /// When set, `/api/*` from a non-loopback address needs `Authorization: Bearer <token>`.
    /// When unset, one is generated once and kept in the data directory.
    pub api_token: Option<Secret>,
    /// Credentials RTSP viewers give (Digest or Basic). Generated when unset.
    pub rtsp_username: Option<String>,
    pub rtsp_password: Option<Secret>,
    /// Serve video, pictures and events to anyone on the network without credentials.
    pub open_access: bool,
    /// Clients on 127.0.0.0/8 and ::1 need no credentials.
    pub trust_loopback: bool,
    /// HTTP connections without credentials from the network (and, apart, from loopback), and
    /// with credentials; a newcomer over the cap closes a trickling connection of its kind.
    pub max_http_connections: usize,
    /// The same for RTSP connections.
    pub max_rtsp_connections: usize,
    /// An RTSP viewer that accepts no data for this long is disconnected (a slow one skips
    /// to the next keyframe long before).
    #[serde(with = "values::secs")]
    pub rtsp_stall_secs: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            rtsp_port: 8564,
            http_port: 8565,
            api_token: None,
            rtsp_username: None,
            rtsp_password: None,
            open_access: false,
            trust_loopback: true,
            max_http_connections: 256,
            max_rtsp_connections: 128,
            rtsp_stall_secs: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Path on the doorbell, e.g. `/Streaming/Channels/101/`.
    pub path: String,
    /// Open the doorbell session only while someone watches (frees a camera slot when idle).
    /// `false` keeps it open so new viewers start at once.
    pub on_demand: bool,
    /// On-demand streams stay open this long after the last viewer leaves.
    #[serde(with = "values::secs")]
    pub linger_secs: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig { path: String::new(), on_demand: false, linger_secs: DEFAULT_LINGER }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StreamsRepr {
    Map(BTreeMap<String, StreamConfig>),
    List(Vec<NamedStreamLoose>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedStreamLoose {
    name: String,
    path: String,
    #[serde(default)]
    on_demand: bool,
    #[serde(default = "default_linger", with = "values::secs")]
    linger_secs: Duration,
}

fn default_linger() -> Duration {
    DEFAULT_LINGER
}

const DEFAULT_LINGER: Duration = Duration::from_secs(30);

fn streams_map_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, StreamConfig>, D::Error> {
    match StreamsRepr::deserialize(d).map_err(|_| {
        serde::de::Error::custom(
            "expected a map of name -> {path, on_demand, linger_secs} or a list of {name, path, on_demand, linger_secs}",
        )
    })? {
        StreamsRepr::Map(m) => Ok(m),
        StreamsRepr::List(l) => Ok(l
            .into_iter()
            .map(|s| {
                (s.name, StreamConfig { path: s.path, on_demand: s.on_demand, linger_secs: s.linger_secs })
            })
            .collect()),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnvifConfig {
    pub enabled: bool,
    /// Topic whose events drive the PIR sensor. Which topic is the PIR is disputed on the DB1:
    /// a controlled test (lens taped) saw CellMotionDetector fire, so it is the default.
    pub pir_topic: String,
    pub video_motion_topic: String,
    pub field_detection_topic: String,
    /// Long-poll timeout of one PullMessages request.
    #[serde(with = "values::secs")]
    pub pull_timeout_secs: Duration,
    /// Requested subscription lifetime; renewed before it runs out.
    #[serde(with = "values::secs")]
    pub subscription_secs: Duration,
}

impl Default for OnvifConfig {
    fn default() -> Self {
        OnvifConfig {
            enabled: true,
            pir_topic: "tns1:RuleEngine/CellMotionDetector/Motion".into(),
            video_motion_topic: "tns1:VideoSource/MotionAlarm".into(),
            field_detection_topic: "tns1:RuleEngine/FieldDetector/ObjectsInside".into(),
            pull_timeout_secs: Duration::from_secs(20),
            subscription_secs: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoiotConfig {
    pub enabled: bool,
    /// The Shelly's id: its MAC (`C45BBE6B9A12`) or the full CoIoT id (`SHUNI-1#C45BBE6B9A12#2`).
    /// Packets from any other device are ignored. Required when CoIoT is enabled.
    pub device_id: Option<String>,
    /// Only accept packets from this address (recommended: the Shelly's fixed IP).
    #[serde(deserialize_with = "values::opt_ip")]
    pub source: Option<IpAddr>,
    /// Join 224.0.1.187:5683 (coexists with Home Assistant's Shelly integration).
    pub multicast: bool,
    /// Also listen for unicast status on this UDP port (set it as the Shelly's "CoIoT peer").
    /// A Gen1 Shelly has ONE unicast peer slot: pointing it here takes it from Home Assistant (whose
    /// integration then relies on multicast or polling). With two sockets on UDP 5683, unicast only
    /// reaches the one bound last, so use a port of its own (e.g. 5684), not 5683.
    pub unicast_port: Option<u16>,
    /// Address the unicast socket binds to.
    #[serde(deserialize_with = "values::ip")]
    pub unicast_bind: IpAddr,
    /// Which input of the Shelly is wired to the chime: 1 (IN_1) or 2 (IN_2).
    pub input: u8,
}

impl Default for CoiotConfig {
    fn default() -> Self {
        CoiotConfig {
            enabled: true,
            device_id: None,
            source: None,
            multicast: true,
            unicast_port: None,
            unicast_bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            input: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker address. Unset: the add-on asks the Supervisor; otherwise MQTT is off.
    pub host: Option<String>,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub client_id: String,
    /// Prefix of what the bridge publishes (ring, sensors, availability).
    pub topic_prefix: String,
    /// Shelly Gen1 device id as in its topics, e.g. `shellyuni-C45BBE6B9A12`.
    pub shelly_gen1_id: Option<String>,
    /// Topic prefix of a Shelly Gen2/Gen3/Plus device, e.g. `shellyplusi4-a8032ab12345`.
    pub shelly_gen2_prefix: Option<String>,
    /// Input index on the Shelly (0-based, as in its MQTT topics).
    pub shelly_input: u8,
    /// Any other chime sensor: a topic...
    pub generic_topic: Option<String>,
    /// ...and the payload that means "pressed" (exact match, trimmed)...
    pub generic_payload: Option<String>,
    /// ...or a JSON field (dotted path) and the value that means "pressed".
    pub generic_json_field: Option<String>,
    /// The payload (or JSON field value) that means "released". Unset with a plain payload: every
    /// pressed payload is a press of its own (DNS-based detectors, `{action:"pressed"}`).
    pub generic_off_payload: Option<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: None,
            port: 1883,
            username: None,
            password: None,
            client_id: "doorbell-bridge".into(),
            topic_prefix: "doorbell_bridge".into(),
            shelly_gen1_id: None,
            shelly_gen2_prefix: None,
            shelly_input: 0,
            generic_topic: None,
            generic_payload: None,
            generic_json_field: None,
            generic_off_payload: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingConfig {
    /// Presses closer together than this are one ring.
    pub min_gap_ms: u64,
    /// How long the `ring` sensor stays on when the input's release is never seen.
    #[serde(with = "values::secs")]
    pub pressed_max_secs: Duration,
    /// Optional "DNS method": ring when the doorbell looks up one of these names
    /// (e.g. `alarm.eu.s3.amazonaws.com`, `alarm.use.s3.amazonaws.com`).
    pub dns_names: Vec<String>,
    /// The DNS method's small forwarding resolver listens here (`IP:PORT`); point the doorbell's
    /// DNS server at it (DHCP or the router). Off when unset.
    #[serde(deserialize_with = "values::opt_socket")]
    pub dns_listen: Option<SocketAddr>,
    /// Where the resolver forwards every query (`IP:PORT`, e.g. the router `192.0.2.1:53`).
    #[serde(deserialize_with = "values::opt_socket")]
    pub dns_upstream: Option<SocketAddr>,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            min_gap_ms: 3000,
            pressed_max_secs: Duration::from_secs(10),
            dns_names: Vec::new(),
            dns_listen: None,
            dns_upstream: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Snapshot URL; default `http://<doorbell.host>:<http_port>/onvif/snapshot.jpg`.
    /// Empty: the doorbell has none (firmware 211101); pictures come from the stream's keyframes.
    pub url: SnapshotUrl,
    /// A cached picture older than this is refreshed in the background.
    #[serde(with = "values::secs")]
    pub max_age_secs: Duration,
    /// Never ask the doorbell for a picture more often than this.
    pub min_interval_ms: u64,
    #[serde(with = "values::secs")]
    pub timeout_secs: Duration,
    /// Pictures kept per ring, by count and by total size.
    pub ring_images_keep: usize,
    pub ring_images_max_mb: u64,
    /// Also keep a picture at every motion start.
    pub on_motion: bool,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            url: SnapshotUrl::Default,
            max_age_secs: Duration::from_secs(10),
            min_interval_ms: 1000,
            timeout_secs: Duration::from_secs(5),
            ring_images_keep: 200,
            ring_images_max_mb: 200,
            on_motion: false,
        }
    }
}

/// Ring clips: a video of each press, from `pre_roll_secs` before it to `post_roll_secs` after,
/// kept with the ring pictures (their count and size limits).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipsConfig {
    /// Seconds before the press (from the keyframe at or before, so up to one GOP more); 0 turns
    /// clips off.
    #[serde(with = "values::secs")]
    pub pre_roll_secs: Duration,
    #[serde(with = "values::secs")]
    pub post_roll_secs: Duration,
    /// The stream recorded (a key of `streams`).
    pub stream: String,
}

impl Default for ClipsConfig {
    fn default() -> Self {
        ClipsConfig {
            pre_roll_secs: Duration::from_secs(4),
            post_roll_secs: Duration::from_secs(10),
            stream: "main".into(),
        }
    }
}

/// Longest pre-roll and post-roll: the pre-roll is held in memory for every second of the day.
pub const MAX_PRE_ROLL_SECS: u64 = 30;
pub const MAX_POST_ROLL_SECS: u64 = 60;

/// One problem with a configuration: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", if self.path.is_empty() { "(top level)" } else { &self.path }, self.why)
    }
}

/// Every problem found in a configuration (at most [`MAX_PROBLEMS`]; `more` says there were more).
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

/// Problems printed one by one; the rest are counted.
pub const MAX_LISTED: usize = 64;
/// Problems looked for; past that the count says "at least".
pub const MAX_PROBLEMS: usize = 1000;
/// Largest configuration read: real ones are a few kB.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// Deepest nesting of maps and lists accepted: the configuration's own is 4.
pub const MAX_DEPTH: usize = 32;

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        let at_least = if n >= MAX_PROBLEMS { "at least " } else { "" };
        writeln!(f, "{at_least}{n} problem(s) in the configuration:")?;
        for p in self.0.iter().take(MAX_LISTED) {
            writeln!(f, "  - {p}")?;
        }
        if n > MAX_LISTED {
            writeln!(f, "  ... and {at_least}{} more problem(s) not shown", n - MAX_LISTED)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl Config {
    /// Reads a YAML file, or a JSON file (`options.json`); the format follows the content.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let cannot = |e: std::io::Error| {
            Problems(vec![Problem { path: String::new(), why: format!("cannot read {}: {e}", path.display()) }])
        };
        // Never more than the bound into memory, whatever the file holds.
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::fs::File::open(path).map_err(cannot)?, MAX_CONFIG_BYTES as u64 + 1),
            &mut text,
        )
        .map_err(cannot)?;
        Config::parse(&text)
    }

    /// Parses YAML (JSON is accepted too) and validates it, collecting every problem.
    pub fn parse(text: &str) -> Result<Config, Problems> {
        let top = |why: String| Problems(vec![Problem { path: String::new(), why }]);
        if text.len() > MAX_CONFIG_BYTES {
            return Err(top(format!(
                "the configuration is larger than {MAX_CONFIG_BYTES} bytes, the most that is read"
            )));
        }
        if let Some(line) = too_deep(text, MAX_DEPTH) {
            return Err(top(format!("line {line}: nested deeper than {MAX_DEPTH} levels")));
        }
        // Through serde_yaml's own Value first: its mappings refuse duplicate keys (with the line),
        // which a JSON map would silently let the last one win.
        let yaml: serde_yaml::Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => return Err(top(yaml_error(&e, text))),
        };
        let mut value: serde_json::Value = match serde_json::to_value(&yaml) {
            Ok(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
            Ok(v) => v,
            Err(e) => return Err(top(format!("not valid configuration: {}", redact_values(&e.to_string())))),
        };
        let mut problems = Vec::new();
        check_streams(&mut value, &mut problems);
        while problems.len() < MAX_PROBLEMS {
            match serde_path_to_error::deserialize::<_, Config>(&value) {
                Ok(cfg) => {
                    problems.extend(cfg.validate());
                    break;
                }
                Err(e) => {
                    let path = e.path().to_string();
                    let path = if path == "." { String::new() } else { path };
                    let why = redact_values(&e.inner().to_string());
                    let removed = remove_at(&mut value, &path, &why);
                    problems.push(Problem { path, why });
                    if !removed {
                        break;
                    }
                }
            }
        }
        if problems.is_empty() {
            // Safe: the loop ended on Ok.
            Ok(serde_path_to_error::deserialize::<_, Config>(&value).expect("validated above"))
        } else {
            Err(Problems(problems))
        }
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |path: &str, why: &str| p.push(Problem { path: path.into(), why: why.into() });
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            bad("log_level", "must be one of error, warn, info, debug, trace");
        }
        if self.doorbell.host.trim().is_empty() {
            bad("doorbell.host", "required: the doorbell's IP address or host name");
        } else if self.doorbell.host.contains(['/', ' ', '@']) {
            bad("doorbell.host", "must be a bare IP address or host name, without scheme, path or credentials");
        }
        if self.doorbell.username.is_empty() {
            bad("doorbell.username", "must not be empty");
        }
        for (path, port) in
            [("doorbell.rtsp_port", self.doorbell.rtsp_port), ("doorbell.http_port", self.doorbell.http_port)]
        {
            if port == 0 {
                bad(path, "must be a port number from 1 to 65535");
            }
        }
        if self.server.rtsp_port != 0 && self.server.rtsp_port == self.server.http_port {
            bad("server.http_port", "must differ from server.rtsp_port");
        }
        if let Some(t) = &self.server.api_token {
            if t.expose().len() < 16 {
                bad("server.api_token", "must be at least 16 characters long");
            }
        }
        if self.server.rtsp_password.is_some() != self.server.rtsp_username.is_some() {
            bad("server.rtsp_password", "set rtsp_username and rtsp_password together, or neither");
        }
        if self.server.max_http_connections == 0 {
            bad("server.max_http_connections", "must be at least 1");
        }
        if self.server.max_rtsp_connections == 0 {
            bad("server.max_rtsp_connections", "must be at least 1");
        }
        if self.streams.is_empty() {
            bad("streams", "at least one stream is needed");
        }
        for (name, s) in &self.streams {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                bad(&format!("streams.{name}"), "stream names may use letters, digits, '_' and '-' only");
            }
            if !s.path.starts_with('/') {
                bad(&format!("streams.{name}.path"), "must start with '/', e.g. /Streaming/Channels/101/");
            }
        }
        if self.coiot.enabled {
            if let Some(id) = &self.coiot.device_id {
                if crate::shelly_id::DeviceMatch::parse(id).is_none() {
                    bad(
                        "coiot.device_id",
                        "must be the Shelly's MAC (12 hex digits) or its CoIoT id such as SHUNI-1#C45BBE6B9A12#2",
                    );
                }
            }
            if !(1..=2).contains(&self.coiot.input) {
                bad("coiot.input", "must be 1 or 2 (the Shelly Uni has IN_1 and IN_2)");
            }
        }
        if self.mqtt.generic_topic.is_some()
            && self.mqtt.generic_payload.is_none()
            && self.mqtt.generic_json_field.is_none()
        {
            bad("mqtt.generic_payload", "set generic_payload or generic_json_field with generic_topic");
        }
        if self.mqtt.generic_json_field.is_some() && self.mqtt.generic_payload.is_none() {
            bad("mqtt.generic_payload", "the value of generic_json_field that means pressed, e.g. ON or false");
        }
        if self.ring.dns_listen.is_some() {
            if self.ring.dns_upstream.is_none() {
                bad("ring.dns_upstream", "required with dns_listen: IP:PORT of the real DNS server");
            }
            if self.ring.dns_names.is_empty() {
                bad("ring.dns_names", "required with dns_listen: the names a press looks up");
            }
        }
        if self.server.rtsp_stall_secs.is_zero() {
            bad("server.rtsp_stall_secs", "must be at least 1");
        }
        if self.snapshot.timeout_secs.is_zero() {
            bad("snapshot.timeout_secs", "must be at least 1");
        }
        if self.clips.pre_roll_secs.as_secs() > MAX_PRE_ROLL_SECS {
            bad("clips.pre_roll_secs", &format!("must be from 0 (no clips) to {MAX_PRE_ROLL_SECS}"));
        }
        if !(1..=MAX_POST_ROLL_SECS).contains(&self.clips.post_roll_secs.as_secs()) {
            bad("clips.post_roll_secs", &format!("must be from 1 to {MAX_POST_ROLL_SECS}"));
        }
        if !self.clips.pre_roll_secs.is_zero() && !self.streams.contains_key(&self.clips.stream) {
            bad("clips.stream", "must name one of the streams");
        }
        p
    }

    /// The configuration as YAML, secrets shown as `***`.
    pub fn redacted_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }
}

/// serde's messages quote the offending value (`invalid type: string "ABCDEF"`); a value may be a
/// secret, so values are dropped from every message but those naming a key.
fn redact_values(msg: &str) -> String {
    if msg.starts_with("unknown field") || msg.starts_with("missing field") {
        return msg.to_string();
    }
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    for c in msg.chars() {
        match (c, quote) {
            ('"' | '`', None) => {
                quote = Some(c);
                out.push_str("(value hidden)");
            }
            (c, Some(q)) if c == q => quote = None,
            (_, Some(_)) => {}
            (c, None) => out.push(c),
        }
    }
    out
}

/// Removes the key a deserialisation error points at so the next pass can find the next problem.
/// For an unknown field the path names the parent; the key is in the message.
fn remove_at(root: &mut serde_json::Value, path: &str, why: &str) -> bool {
    let segs: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('.').collect() };
    let mut cur = root;
    let mut parents: Vec<&str> = segs.clone();
    let last = parents.pop();
    for s in &parents {
        cur = match cur {
            serde_json::Value::Object(m) => match m.get_mut(*s) {
                Some(v) => v,
                None => return false,
            },
            serde_json::Value::Array(a) => match s.trim_matches(|c| c == '[' || c == ']').parse::<usize>() {
                Ok(i) if i < a.len() => &mut a[i],
                _ => return false,
            },
            _ => return false,
        };
    }
    if let Some(field) = why.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        // The path may or may not include the unknown key itself, depending on where serde stopped.
        if let Some(last) = last {
            if last == field {
                if let serde_json::Value::Object(m) = cur {
                    return m.remove(field).is_some();
                }
            }
            if let serde_json::Value::Object(m) = cur {
                if let Some(serde_json::Value::Object(inner)) = m.get_mut(last) {
                    return inner.remove(field).is_some();
                }
            }
            return false;
        }
        if let serde_json::Value::Object(m) = cur {
            return m.remove(field).is_some();
        }
        return false;
    }
    match (cur, last) {
        (serde_json::Value::Object(m), Some(last)) => m.remove(last).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../doorbell-bridge.example.yaml");
        let cfg = Config::parse(text).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(cfg.doorbell.host, "192.0.2.10");
    }

    #[test]
    fn all_problems_at_once() {
        let p = Config::parse("doorbell: {rtsp_port: x, extra: 1}\nserver: {bind: nowhere}\nlog_level: loud\n")
            .unwrap_err();
        let paths: Vec<&str> = p.0.iter().map(|p| p.path.as_str()).collect();
        for want in ["doorbell.rtsp_port", "doorbell.extra", "server.bind", "log_level", "doorbell.host"] {
            assert!(paths.contains(&want), "{want} not in {paths:?}");
        }
    }

    #[test]
    fn numeric_code_is_a_secret_too() {
        let cfg = Config::parse("doorbell: {host: h, password: 123456}").unwrap();
        assert_eq!(cfg.doorbell.password.expose(), "123456");
        let p = Config::parse("doorbell: {host: h, password: [1]}\nserver: {http_port: 123456}").unwrap_err();
        assert!(!p.to_string().contains("123456"), "{p}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = Config::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_yaml_like(s in "[a-z_]{1,10}: *(\\{[a-z_]{1,8}: *[a-z0-9\\[\\]{}]{0,6}\\}|[a-z0-9]{0,6})\n{0,3}") {
            let _ = Config::parse(&s);
        }
    }
}
