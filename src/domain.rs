//! The nouns every capability shares: the sensors the bridge reports, where a ring came from, a
//! ring and a sensor change. Times are `DateTime<Utc>` inside and RFC 3339 with milliseconds
//! (`2026-11-25T10:00:00.123Z`) on the wire.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The sensors the bridge reports (`sensors` in the status, `name` of a `sensor` event).
/// Declared in name order: maps keyed by them list them as before, alphabetically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sensor {
    FieldDetection,
    PirMotion,
    Ring,
    VideoMotion,
}

impl Sensor {
    pub const ALL: [Sensor; 4] = [Sensor::FieldDetection, Sensor::PirMotion, Sensor::Ring, Sensor::VideoMotion];

    pub fn as_str(self) -> &'static str {
        match self {
            Sensor::FieldDetection => "field_detection",
            Sensor::PirMotion => "pir_motion",
            Sensor::Ring => "ring",
            Sensor::VideoMotion => "video_motion",
        }
    }
}

impl fmt::Display for Sensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What saw a press: the sources of ring detection. `Other` keeps a name this version does not
/// know, read back from a ring history written by another version, as it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RingSource {
    Coiot,
    Mqtt,
    Dns,
    Other(String),
}

impl RingSource {
    pub fn as_str(&self) -> &str {
        match self {
            RingSource::Coiot => "coiot",
            RingSource::Mqtt => "mqtt",
            RingSource::Dns => "dns",
            RingSource::Other(s) => s,
        }
    }
}

impl From<&str> for RingSource {
    fn from(s: &str) -> RingSource {
        match s {
            "coiot" => RingSource::Coiot,
            "mqtt" => RingSource::Mqtt,
            "dns" => RingSource::Dns,
            other => RingSource::Other(other.to_string()),
        }
    }
}

impl fmt::Display for RingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RingSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RingSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RingSource, D::Error> {
        Ok(RingSource::from(String::deserialize(d)?.as_str()))
    }
}

impl JsonSchema for RingSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RingSource".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "What saw the press: coiot, mqtt or dns (another name from a kept history is passed on)."
        })
    }
}

/// The wire form of every time the bridge reports.
pub fn time_string(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `#[serde(with = "wire_time")]`: `time_string` out, any RFC 3339 time in.
pub mod wire_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time_string(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

/// The path of a ring's picture on the HTTP API (the one place it is formatted).
pub fn ring_picture_path(id: u64) -> String {
    format!("/api/rings/{id}/snapshot.jpg")
}

/// The path of a ring's clip on the HTTP API.
pub fn ring_clip_path(id: u64) -> String {
    format!("/api/rings/{id}/clip.mp4")
}

/// One press, as `/api/status` `last_ring`, the SSE `ring` event and the MQTT ring topic show it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Ring {
    pub id: u64,
    #[serde(with = "wire_time")]
    #[schemars(with = "String")]
    pub at: DateTime<Utc>,
    pub source: RingSource,
    /// Kind of press when known: `rising`, `S` (short), `L` (long, reported late from the counter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub press: Option<String>,
    /// Path of this ring's picture on the HTTP API.
    pub snapshot: String,
    /// Path of this ring's clip on the HTTP API when one is being recorded (`404` until it is
    /// written); null when clips are off.
    pub clip: Option<String>,
}

impl Ring {
    pub fn new(id: u64, at: DateTime<Utc>, source: RingSource, press: Option<String>) -> Ring {
        Ring { id, at, source, press, snapshot: ring_picture_path(id), clip: None }
    }

    /// The same ring, saying whether a clip of it will come.
    pub fn with_clip(mut self, clip: bool) -> Ring {
        self.clip = clip.then(|| ring_clip_path(self.id));
        self
    }
}

/// A sensor's new state (`None`: unknown), as the SSE `sensor` event shows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SensorChange {
    pub name: Sensor,
    pub state: Option<bool>,
    #[serde(with = "wire_time")]
    #[schemars(with = "String")]
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_are_the_contract_s() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:00:00.123Z").unwrap().with_timezone(&Utc);
        let ring = Ring::new(41, at, RingSource::Coiot, None);
        assert_eq!(
            serde_json::to_string(&ring).unwrap(),
            r#"{"id":41,"at":"2026-11-25T10:00:00.123Z","source":"coiot","snapshot":"/api/rings/41/snapshot.jpg","clip":null}"#
        );
        let change = SensorChange { name: Sensor::PirMotion, state: None, at };
        assert_eq!(
            serde_json::to_value(&change).unwrap(),
            serde_json::json!({"name": "pir_motion", "state": null, "at": "2026-11-25T10:00:00.123Z"})
        );
        for s in Sensor::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for name in ["coiot", "mqtt", "dns", "test"] {
            let src = RingSource::from(name);
            assert_eq!(serde_json::to_value(&src).unwrap(), name);
            assert_eq!(serde_json::from_value::<RingSource>(name.into()).unwrap(), src);
        }
        assert_eq!(RingSource::from("test"), RingSource::Other("test".into()));
    }
}
