//! `/api/status` as types: the one definition the HTTP API, the SSE `state` event and the
//! published JSON schema (`docs/status.schema.json`) all come from. Capabilities fill their own
//! parts through `events::StatusSource`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::domain::{Ring, Sensor};

/// Where the committed schema lives, relative to the repository root.
pub const SCHEMA_FILE: &str = "docs/status.schema.json";

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(title = "Doorbell Bridge status", description = "The body of GET /api/status and of the SSE `state` event.")]
pub struct Status {
    pub version: String,
    /// Stable id of this bridge install (kept in its data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge_id: Option<String>,
    pub doorbell: DoorbellStatus,
    pub storage: StorageStatus,
    /// Per stream name (`main`, `sub`...).
    pub streams: BTreeMap<String, StreamStatus>,
    pub sensors: SensorStates,
    /// Per source (`onvif`, `coiot`, `mqtt`, `dns`): whether it is currently delivering.
    pub sources: BTreeMap<String, bool>,
    pub last_ring: Option<Ring>,
    /// Id of the newest event (SSE `id:`).
    pub last_event_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coiot: Option<CoiotStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub talk: Option<TalkStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clips: Option<ClipsStatus>,
    /// The capability tasks the bridge runs, by name, and how often each was restarted.
    pub tasks: BTreeMap<String, TaskStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DoorbellStatus {
    pub online: bool,
    /// What decided `online`: `onvif` or `rtsp`; null before either said anything.
    pub online_source: Option<String>,
    /// What ONVIF tells of the device, once the bridge asks it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub identity: Option<DoorbellIdentity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DoorbellIdentity {
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    Ok,
    Failing,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StorageStatus {
    pub state: StorageState,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StreamStatus {
    /// `idle`, `connecting`, `connected`, `reconnecting` or `stopped`.
    pub upstream: String,
    /// RTSP sessions the bridge holds open on the doorbell for this stream.
    pub upstream_sessions: u64,
    pub clients: u64,
    pub on_demand: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames_in: u64,
    pub drops: u64,
    pub stalled: u64,
    pub reconnects: u64,
}

/// Each sensor's state; null while unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SensorStates {
    pub field_detection: Option<bool>,
    pub pir_motion: Option<bool>,
    pub ring: Option<bool>,
    pub video_motion: Option<bool>,
}

impl SensorStates {
    pub fn get(&self, s: Sensor) -> Option<bool> {
        match s {
            Sensor::FieldDetection => self.field_detection,
            Sensor::PirMotion => self.pir_motion,
            Sensor::Ring => self.ring,
            Sensor::VideoMotion => self.video_motion,
        }
    }

    /// Sets one; returns the state it had.
    pub fn set(&mut self, s: Sensor, state: Option<bool>) -> Option<bool> {
        let slot = match s {
            Sensor::FieldDetection => &mut self.field_detection,
            Sensor::PirMotion => &mut self.pir_motion,
            Sensor::Ring => &mut self.ring,
            Sensor::VideoMotion => &mut self.video_motion,
        };
        std::mem::replace(slot, state)
    }

    /// In name order, as `/metrics` lists them.
    pub fn iter(&self) -> impl Iterator<Item = (Sensor, Option<bool>)> + '_ {
        Sensor::ALL.into_iter().map(|s| (s, self.get(s)))
    }
}

/// What the CoIoT receiver counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CoiotStatus {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub foreign: u64,
    pub weak_identity: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TalkSupport {
    Supported,
    Unsupported,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TalkStatus {
    pub state: TalkSupport,
    pub reason: Option<String>,
    /// `PCMU` or `PCMA`, when supported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Whether ONVIF lists an audio output; null when it did not say.
    pub onvif_audio_output: Option<bool>,
}

/// Ring clips: the settings in use and what was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ClipsStatus {
    pub enabled: bool,
    pub stream: String,
    pub pre_roll_secs: u64,
    pub post_roll_secs: u64,
    /// Whether a clip is being recorded now.
    pub recording: bool,
    pub written: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TaskStatus {
    /// Whether the task is running now (false while it waits to be restarted).
    pub running: bool,
    /// Times it returned or panicked and was started again.
    pub restarts: u64,
    /// Why it last ended, when it did.
    pub last_failure: Option<String>,
}

/// The schema of `Status`, as committed in `SCHEMA_FILE` (pretty, with a final newline).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Status);
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_states_by_name() {
        let mut s = SensorStates::default();
        assert_eq!(s.set(Sensor::PirMotion, Some(true)), None);
        assert_eq!(s.get(Sensor::PirMotion), Some(true));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({"field_detection": null, "pir_motion": true, "ring": null, "video_motion": null})
        );
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["field_detection", "pir_motion", "ring", "video_motion"]);
    }
}
