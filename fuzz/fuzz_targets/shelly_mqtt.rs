//! MQTT messages: first byte picks the topic, the rest is the payload.
#![no_main]
use doorbell_bridge::config::MqttConfig;
use doorbell_bridge::ring::shelly_mqtt::{announce, MqttSources};
use libfuzzer_sys::fuzz_target;

const TOPICS: [&str; 7] = [
    "shellies/shellyuni-C45BBE6B9A12/input/0",
    "shellies/shellyuni-C45BBE6B9A12/input_event/0",
    "shellies/shellyuni-C45BBE6B9A12/online",
    "plus/events/rpc",
    "plus/status/input:0",
    "generic/chime",
    "shellies/announce",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else { return };
    let cfg = MqttConfig {
        shelly_gen1_id: Some("shellyuni-C45BBE6B9A12".into()),
        shelly_gen2_prefix: Some("plus".into()),
        generic_topic: Some("generic/#".into()),
        generic_payload: Some("ON".into()),
        generic_json_field: if sel & 0x80 != 0 { Some("a.b".into()) } else { None },
        ..MqttConfig::default()
    };
    let topic = TOPICS[sel as usize % TOPICS.len()];
    let _ = MqttSources::from_config(&cfg).parse(topic, payload, sel & 0x40 != 0);
    let _ = announce(topic, payload);
});
