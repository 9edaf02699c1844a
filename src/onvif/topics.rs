//! Topic -> sensor, as data. Which ONVIF topic is the PIR is disputed on the DB1 (see the add-on
//! docs for the tape test), so every mapping comes from `OnvifConfig` and only the defaults live here.

use std::collections::HashSet;

use super::xml::Notification;
use crate::config::OnvifConfig;
use crate::domain::Sensor;

/// A topic the DB1 / DS-HD1 sends (firmware 200321), the kind we call it and its state's Data item.
pub struct KnownTopic {
    pub topic: &'static str,
    pub kind: &'static str,
    pub data_item: &'static str,
}

/// Seen on EZVIZ DB1 / Hikvision DS-HD1 firmware 200321.
pub const KNOWN_TOPICS: [KnownTopic; 3] = [
    KnownTopic {
        topic: "tns1:RuleEngine/CellMotionDetector/Motion",
        kind: "cell_motion_detection",
        data_item: "IsMotion",
    },
    KnownTopic { topic: "tns1:VideoSource/MotionAlarm", kind: "motion_alarm", data_item: "State" },
    KnownTopic { topic: "tns1:RuleEngine/FieldDetector/ObjectsInside", kind: "field_detection", data_item: "IsInside" },
];

/// A message read as a state change of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub kind: String,
    /// kind + every Source value in document order.
    pub id: String,
    /// `None` = unknown (Deleted, or an unreadable value).
    pub state: Option<bool>,
}

/// `true`/`1` and `false`/`0`, any case, trimmed; anything else is unknown.
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") || s == "1" {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" {
        Some(false)
    } else {
        None
    }
}

/// The state a message carries: the named Data item, else the first one (as Home Assistant does).
pub fn state_of(msg: &Notification, data_item: &str) -> Option<bool> {
    if msg.property_operation.as_deref() == Some("Deleted") {
        return None;
    }
    let item = msg.data.iter().find(|(n, _)| n == data_item).or_else(|| msg.data.first())?;
    parse_bool(&item.1)
}

/// The entity a message describes, when its topic is one we know.
pub fn entity(msg: &Notification) -> Option<Entity> {
    let k = KNOWN_TOPICS.iter().find(|k| k.topic == msg.topic)?;
    let mut id = k.kind.to_string();
    for (_, v) in &msg.source {
        id.push('/');
        id.push_str(v);
    }
    Some(Entity { kind: k.kind.into(), id, state: state_of(msg, k.data_item) })
}

/// One row of the bridge's table: a topic drives one bus sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub topic: String,
    pub sensor: Sensor,
    pub data_item: String,
}

/// A state change for the bus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub sensor: Sensor,
    pub state: Option<bool>,
    /// An `Initialized` message: the current state, not an event that just happened.
    pub initialized: bool,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub rules: Vec<Rule>,
    /// Unknown topics already logged, so each is logged once (bounded).
    seen_unknown: HashSet<String>,
}

/// Unknown topics remembered for "log once"; past this, they are not logged at all.
const MAX_UNKNOWN_LOGGED: usize = 64;

fn canonical(topic: &str) -> String {
    let mut t = topic.trim();
    loop {
        let before = t;
        t = t.trim_end_matches("//.").trim_end_matches('/');
        if t == before {
            break;
        }
    }
    t.to_string()
}

impl Table {
    pub fn from_config(cfg: &OnvifConfig) -> Table {
        let mut rules = Vec::new();
        for (topic, sensor) in [
            (&cfg.pir_topic, Sensor::PirMotion),
            (&cfg.video_motion_topic, Sensor::VideoMotion),
            (&cfg.field_detection_topic, Sensor::FieldDetection),
        ] {
            let topic = canonical(topic);
            if topic.is_empty() {
                continue; // an empty topic switches the sensor off
            }
            let data_item =
                KNOWN_TOPICS.iter().find(|k| k.topic == topic).map(|k| k.data_item.to_string()).unwrap_or_default();
            rules.push(Rule { topic, sensor, data_item });
        }
        Table { rules, seen_unknown: HashSet::new() }
    }

    pub fn sensors(&self) -> impl Iterator<Item = Sensor> + '_ {
        self.rules.iter().map(|r| r.sensor)
    }

    /// Every change a batch of messages makes, in document order (a short intrusion that turns on
    /// and off within one reply is two changes, not none).
    pub fn apply(&mut self, msgs: &[Notification]) -> Vec<Change> {
        let mut out = Vec::new();
        for m in msgs {
            let mut matched = false;
            for r in self.rules.iter().filter(|r| r.topic == m.topic) {
                matched = true;
                out.push(Change {
                    sensor: r.sensor,
                    state: state_of(m, &r.data_item),
                    initialized: m.property_operation.as_deref() == Some("Initialized"),
                });
            }
            if !matched
                && self.seen_unknown.len() < MAX_UNKNOWN_LOGGED
                && self.seen_unknown.insert(m.topic.chars().take(200).collect())
            {
                tracing::info!(topic = %m.topic, "ONVIF topic not mapped to a sensor; ignored");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, op: &str, data: &[(&str, &str)]) -> Notification {
        Notification {
            topic: topic.into(),
            property_operation: Some(op.into()),
            data: data.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn mapping_is_configurable() {
        let mut cfg = OnvifConfig::default();
        let mut t = Table::from_config(&cfg);
        let c = t.apply(&[msg("tns1:RuleEngine/CellMotionDetector/Motion", "Changed", &[("IsMotion", "true")])]);
        assert_eq!(c, vec![Change { sensor: Sensor::PirMotion, state: Some(true), initialized: false }]);
        // The other opinion: MotionAlarm is the PIR.
        cfg.pir_topic = "tns1:VideoSource/MotionAlarm/".into();
        cfg.video_motion_topic = "tns1:RuleEngine/CellMotionDetector/Motion".into();
        let mut t = Table::from_config(&cfg);
        let c = t.apply(&[msg("tns1:VideoSource/MotionAlarm", "Initialized", &[("State", "1")])]);
        assert_eq!(c, vec![Change { sensor: Sensor::PirMotion, state: Some(true), initialized: true }]);
    }

    #[test]
    fn data_item_by_name_and_deleted() {
        let m = msg("x", "Changed", &[("Other", "true"), ("IsMotion", "false")]);
        assert_eq!(state_of(&m, "IsMotion"), Some(false));
        assert_eq!(state_of(&m, "Missing"), Some(true));
        assert_eq!(state_of(&msg("x", "Deleted", &[("IsMotion", "true")]), "IsMotion"), None);
        assert_eq!(parse_bool(" TRUE "), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }
}
