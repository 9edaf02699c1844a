//! MQTT messages -> detector observations, pure. Shelly Gen1 (`shellies/<id>/input/N`,
//! `input_event/N`, `online`), Gen2/Gen3/Plus (`<prefix>/events/rpc` NotifyStatus/NotifyEvent,
//! `<prefix>/status/input:N`, `<prefix>/online`) and a generic chime sensor (a topic with a payload
//! match or a JSON field: ESPHome, Tasmota, zigbee2mqtt...).
//!
//! Payloads are matched as strings before any JSON decoding: Gen1 `input/0` is `"1"`/`"0"`, which
//! JSON would turn into numbers. Retained messages are state, never a ring (the detector sees
//! `retained`).

use serde_json::Value;

use super::detector::{Observation, Source};
use crate::config::MqttConfig;

/// Larger payloads are ignored: no chime message is anywhere near this.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Most Gen2 events looked at in one NotifyEvent.
pub const MAX_EVENTS: usize = 32;

/// Gen2 push events known only after release.
const GEN2_PUSHES: [&str; 4] = ["single_push", "double_push", "triple_push", "long_push"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Generic {
    topic: String,
    on: Option<String>,
    off: Option<String>,
    json_field: Option<String>,
}

/// What the bridge listens to on the broker, from `mqtt.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSources {
    gen1_id: Option<String>,
    gen2_prefix: Option<String>,
    input: u8,
    generic: Option<Generic>,
}

impl MqttSources {
    pub fn from_config(cfg: &MqttConfig) -> MqttSources {
        let nonempty = |s: &Option<String>| s.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        MqttSources {
            gen1_id: nonempty(&cfg.shelly_gen1_id),
            gen2_prefix: nonempty(&cfg.shelly_gen2_prefix).map(|p| p.trim_end_matches('/').to_string()),
            input: cfg.shelly_input,
            generic: nonempty(&cfg.generic_topic).map(|topic| Generic {
                topic,
                on: nonempty(&cfg.generic_payload),
                off: nonempty(&cfg.generic_off_payload),
                json_field: nonempty(&cfg.generic_json_field),
            }),
        }
    }

    /// Whether anything is configured to listen to.
    pub fn any(&self) -> bool {
        self.gen1_id.is_some() || self.gen2_prefix.is_some() || self.generic.is_some()
    }

    /// Topic filters to subscribe to (QoS 1), again after every (re)connection.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(id) = &self.gen1_id {
            out.push(format!("shellies/{id}/input/{}", self.input));
            out.push(format!("shellies/{id}/input_event/{}", self.input));
            out.push(format!("shellies/{id}/online"));
        }
        if let Some(p) = &self.gen2_prefix {
            out.push(format!("{p}/events/rpc"));
            out.push(format!("{p}/status/input:{}", self.input));
            out.push(format!("{p}/online"));
        }
        if let Some(g) = &self.generic {
            out.push(g.topic.clone());
        }
        out
    }

    /// One message from the broker. `None` when it says nothing about the chime input.
    pub fn parse(&self, topic: &str, payload: &[u8], retained: bool) -> Option<Observation> {
        if payload.len() > MAX_PAYLOAD {
            return None;
        }
        let mut ob =
            self.gen1(topic, payload).or_else(|| self.gen2(topic, payload)).or_else(|| self.generic(topic, payload))?;
        ob.retained = retained;
        Some(ob)
    }

    fn gen1(&self, topic: &str, payload: &[u8]) -> Option<Observation> {
        let id = self.gen1_id.as_deref()?;
        let rest = topic.strip_prefix("shellies/")?.strip_prefix(id)?.strip_prefix('/')?;
        let n = self.input.to_string();
        let text = std::str::from_utf8(payload).ok()?.trim();
        let mut ob = Observation::new(Source::Mqtt);
        if rest == "online" {
            ob.available = Some(parse_bool_word(text)?);
        } else if rest.strip_prefix("input/") == Some(&n) {
            // Gen1 publishes the level on change: a live message is an edge.
            ob.level = Some(match text {
                "1" => true,
                "0" => false,
                _ => return None,
            });
            ob.live_edge = true;
        } else if rest.strip_prefix("input_event/") == Some(&n) {
            let v: Value = serde_json::from_str(text).ok()?;
            let cnt = v.get("event_cnt")?.as_u64()?;
            let kind = v.get("event").and_then(Value::as_str).unwrap_or("").to_string();
            ob.counter = Some((cnt, kind));
        } else {
            return None;
        }
        Some(ob)
    }

    fn gen2(&self, topic: &str, payload: &[u8]) -> Option<Observation> {
        let prefix = self.gen2_prefix.as_deref()?;
        let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
        let component = format!("input:{}", self.input);
        let mut ob = Observation::new(Source::Mqtt);
        if rest == "online" {
            ob.available = Some(parse_bool_word(std::str::from_utf8(payload).ok()?.trim())?);
            return Some(ob);
        }
        let v: Value = serde_json::from_slice(payload).ok()?;
        if rest.strip_prefix("status/") == Some(component.as_str()) {
            // Button-type inputs report `state: null`: nothing to learn.
            ob.level = Some(v.get("state")?.as_bool()?);
            ob.live_edge = true;
            return Some(ob);
        }
        if rest != "events/rpc" {
            return None;
        }
        let params = v.get("params")?;
        match v.get("method")?.as_str()? {
            "NotifyStatus" => {
                ob.level = Some(params.get(&component)?.get("state")?.as_bool()?);
                ob.live_edge = true;
            }
            "NotifyEvent" => {
                for e in params.get("events")?.as_array()?.iter().take(MAX_EVENTS) {
                    if e.get("component").and_then(Value::as_str) != Some(component.as_str()) {
                        continue;
                    }
                    match e.get("event").and_then(Value::as_str) {
                        Some("btn_down") => {
                            ob.level = Some(true);
                            ob.live_edge = true;
                        }
                        Some("btn_up") => ob.level = Some(false),
                        Some(p) if GEN2_PUSHES.contains(&p) => ob.push = Some(p.to_string()),
                        _ => {}
                    }
                }
                if ob.level.is_none() && ob.push.is_none() {
                    return None;
                }
            }
            _ => return None,
        }
        Some(ob)
    }

    fn generic(&self, topic: &str, payload: &[u8]) -> Option<Observation> {
        let g = self.generic.as_ref()?;
        if !rumqttc::mqttbytes::matches(topic, &g.topic) {
            return None;
        }
        let text = std::str::from_utf8(payload).ok()?.trim();
        let value = match &g.json_field {
            Some(path) => json_field(text, path)?,
            None => text.to_string(),
        };
        let is = |want: &Option<String>| want.as_deref().is_some_and(|w| w.eq_ignore_ascii_case(&value));
        let mut ob = Observation::new(Source::Mqtt);
        match (is(&g.on), &g.off) {
            // Without an off value, a JSON field still has a level: anything else is "off".
            (on, None) if g.json_field.is_some() => {
                ob.level = Some(on);
                ob.live_edge = true;
            }
            // A payload without an off state only says "pressed".
            (true, None) => ob.trigger = true,
            (false, None) => return None,
            (true, Some(_)) => {
                ob.level = Some(true);
                ob.live_edge = true;
            }
            (false, Some(_)) if is(&g.off) => ob.level = Some(false),
            (false, Some(_)) => return None,
        }
        Some(ob)
    }
}

/// A Gen1 announce (`shellies/announce`): the device's id and model, for discovery. Never a ring.
pub fn announce(topic: &str, payload: &[u8]) -> Option<(String, String)> {
    if topic != "shellies/announce" || payload.len() > MAX_PAYLOAD {
        return None;
    }
    let v: Value = serde_json::from_slice(payload).ok()?;
    Some((v.get("id")?.as_str()?.to_string(), v.get("model")?.as_str()?.to_string()))
}

fn parse_bool_word(s: &str) -> Option<bool> {
    match s {
        "true" | "1" | "online" => Some(true),
        "false" | "0" | "offline" => Some(false),
        _ => None,
    }
}

/// The value at a dotted path, as text: strings as they are, other values as JSON (`false`, `1`).
fn json_field(text: &str, path: &str) -> Option<String> {
    let mut v: Value = serde_json::from_str(text).ok()?;
    for key in path.split('.') {
        v = v.get_mut(key)?.take();
    }
    match v {
        Value::String(s) => Some(s),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MqttConfig {
        MqttConfig { shelly_gen1_id: Some("shellyuni-C45BBE6B9A12".into()), ..MqttConfig::default() }
    }

    #[test]
    fn gen1_strings_are_not_json() {
        let s = MqttSources::from_config(&cfg());
        let ob = s.parse("shellies/shellyuni-C45BBE6B9A12/input/0", b"1", false).unwrap();
        assert_eq!(ob.level, Some(true));
        assert!(s.parse("shellies/shellyuni-C45BBE6B9A12/input/0", b"true", false).is_none());
        assert!(s.parse("shellies/shellyuni-C45BBE6B9A12/input/1", b"1", false).is_none());
    }

    #[test]
    fn subscriptions_follow_config() {
        let s = MqttSources::from_config(&cfg());
        assert!(s.subscriptions().contains(&"shellies/shellyuni-C45BBE6B9A12/input_event/0".to_string()));
        assert!(!MqttSources::from_config(&MqttConfig::default()).any());
    }
}
