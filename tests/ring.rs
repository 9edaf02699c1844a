//! Ring detection: every vector (CoIoT, MQTT, DNS), forged packets, a 10,000-press replay over
//! real UDP with losses, and a real Mosquitto broker with `mosquitto_pub` as the Shelly.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorbell_bridge::config::{Config, MqttConfig};
use doorbell_bridge::events::{Bus, Payload};
use doorbell_bridge::ring::coiot::{self, CoiotError, DeviceMatch, Identity};
use doorbell_bridge::ring::detector::{Detector, Observation, Output, Source};
use doorbell_bridge::ring::shelly_mqtt::MqttSources;
use doorbell_bridge::ring::{judge, Verdict};
use doorbell_bridge::App;
use proptest::prelude::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const UNI: &str = "SHUNI-1#C45BBE6B9A12#2";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/shelly").join(name)).unwrap()
}

fn device() -> DeviceMatch {
    DeviceMatch::parse(UNI).unwrap()
}

fn status(name: &str) -> (Observation, Identity) {
    match judge(&device(), 1, &data(name)) {
        Verdict::Status(ob, id) => (ob, id),
        other => panic!("{name}: expected an accepted status, got {other:?}"),
    }
}

fn rings(o: &[Output]) -> Vec<(String, bool)> {
    o.iter()
        .filter_map(|x| match x {
            Output::Ring { press, late, .. } => Some((press.clone(), *late)),
            _ => None,
        })
        .collect()
}

#[test]
fn coiot_vectors_parse_as_expected() {
    use CoiotError::*;
    let rejects: [(&str, CoiotError); 10] = [
        ("20_truncated_header.bin", TooShort),
        ("21_truncated_in_option.bin", TruncatedOption),
        ("22_no_payload.bin", NoPayload),
        ("23_truncated_json.bin", BadJson),
        ("24_get_request_cit_s.bin", NotStatus(1)),
        ("25_bad_version.bin", BadVersion(2)),
        ("27_reserved_option_nibble.bin", ReservedOption),
        ("28_marker_no_payload.bin", EmptyPayloadAfterMarker),
        ("30_serial_3_bytes.bin", BadOptionLength(coiot::OPT_SERIAL)),
        ("22_no_payload.bin", NoPayload),
    ];
    for (name, want) in rejects {
        match judge(&device(), 1, &data(name)) {
            Verdict::Rejected(e) => assert_eq!(e, want, "{name}: wrong reason"),
            other => panic!("{name}: expected a rejection, got {other:?}"),
        }
    }
    // Another device (a Shelly 1 whose input is high) never reaches the detector.
    assert_eq!(judge(&device(), 1, &data("11_shelly1_status.bin")), Verdict::Foreign);
    // Older firmware: 6-hex id suffix, accepted as a weaker identity.
    assert_eq!(status("12_uni_status_short_devid.bin").1, Identity::Suffix);
    assert_eq!(status("01_uni_status_idle.bin").1, Identity::Full);
    // The annotated vector, field by field.
    let raw = data("02_uni_status_in1_on.bin");
    let m = coiot::parse(&raw).unwrap();
    assert_eq!((m.code, m.message_id, m.serial, m.validity_secs), (30, 0x1a2c, Some(257), Some(38.0)));
    assert_eq!(m.device_id, UNI);
    // A 2.05 reply (no Uri-Path) is a status too.
    let (ob, _) = status("09_uni_reply_cit_s.bin");
    assert_eq!((ob.serial, ob.level, ob.counter.clone()), (Some(258), Some(false), Some((42, "S".into()))));
    // The descriptor maps IN_1 -> 2101/2102/2103 and IN_2 -> 2201/2202/2203.
    let raw = data("10_uni_reply_cit_d_descriptor.bin");
    assert_eq!(judge(&device(), 1, &raw), Verdict::Other);
    let desc = coiot::parse_descriptor(coiot::parse(&raw).unwrap().payload).unwrap();
    assert_eq!(coiot::input_sensors(&desc, 1), Some((2101, 2102, 2103)));
    assert_eq!(coiot::input_sensors(&desc, 2), Some((2201, 2202, 2203)));
}

#[test]
fn coiot_vector_sequence_rings_once_at_the_edge_and_late_for_a_missed_press() {
    let mut d = Detector::new(0, 10_000);
    let mut t = 0;
    let mut step = |name: &str| {
        t += 100;
        rings(&d.observe(t, &status(name).0))
    };
    assert!(step("01_uni_status_idle.bin").is_empty(), "first packet is a baseline");
    assert_eq!(step("02_uni_status_in1_on.bin"), vec![("rising".to_string(), false)]);
    assert!(step("03_uni_status_in1_on_duplicate.bin").is_empty(), "duplicate");
    assert!(step("04_uni_status_in1_off_event_S.bin").is_empty(), "the counter step belongs to 02's press");
    assert!(step("05_uni_status_periodic_repeat.bin").is_empty(), "periodic repeat, same serial");
    assert!(step("09_uni_reply_cit_s.bin").is_empty(), "reply with 05's serial");
    assert_eq!(step("06_uni_status_event_L.bin"), vec![("L".to_string(), true)], "late long press from the counter");
    assert!(step("08_uni_status_after_reboot.bin").is_empty(), "reboot: new baseline");
    // After the reboot's baseline the next press rings again.
    let p = coiot::uni_payload(true, "", 0);
    let b = coiot::encode_status(7, UNI, 380, 2, p.as_bytes());
    let Verdict::Status(ob, _) = judge(&device(), 1, &b) else { panic!() };
    assert_eq!(rings(&d.observe(t + 100, &ob)), vec![("rising".to_string(), false)]);
}

fn dns_hex(name: &str) -> Vec<u8> {
    hex::decode(String::from_utf8(data(name)).unwrap().trim()).unwrap()
}

#[test]
fn dns_vectors() {
    use doorbell_bridge::ring::dns::{parse_query, DnsError};
    let names = ["alarm.eu.s3.amazonaws.com".to_string(), "alarm.use.s3.amazonaws.com".to_string()];
    let q = parse_query(&dns_hex("40_dns_query_alarm_eu_A.dns.hex")).unwrap();
    assert_eq!((q.name.as_str(), q.qtype), ("alarm.eu.s3.amazonaws.com", 1));
    assert!(q.matches(&names));
    let q = parse_query(&dns_hex("41_dns_query_alarm_use_AAAA.dns.hex")).unwrap();
    assert_eq!((q.name.as_str(), q.qtype), ("alarm.use.s3.amazonaws.com", 28));
    assert!(q.matches(&names));
    let q = parse_query(&dns_hex("42_dns_query_litedev_A.dns.hex")).unwrap();
    assert_eq!(q.name, "litedev.ezvizlife.com");
    assert!(!q.matches(&names));
    assert_eq!(parse_query(&dns_hex("43_dns_query_truncated.dns.hex")), Err(DnsError::Truncated));
}

// ---------- MQTT vectors ----------

fn mqtt_vectors() -> Vec<Value> {
    let v: Value = serde_json::from_slice(&data("mqtt_vectors.json")).unwrap();
    ["gen1_uni", "gen2_plus", "generic"].iter().flat_map(|g| v[*g].as_array().unwrap().clone()).collect()
}

fn vector(id: &str) -> (String, Vec<u8>, bool) {
    let v = mqtt_vectors().into_iter().find(|v| v["id"] == id).unwrap_or_else(|| panic!("no vector {id}"));
    (
        v["topic"].as_str().unwrap().into(),
        v["payload"].as_str().unwrap().as_bytes().to_vec(),
        v["retain"].as_bool().unwrap(),
    )
}

/// Feeds vectors in order to one detector; returns per vector (rings, availability change, parsed?).
fn run_mqtt(cfg: &MqttConfig, ids: &[&str]) -> Vec<(usize, Option<bool>, bool)> {
    let s = MqttSources::from_config(cfg);
    let mut d = Detector::new(0, 10_000);
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (topic, payload, retain) = vector(id);
        let now = 1_000 * (i as u64 + 1) * if id.starts_with("g2-06") { 100 } else { 1 };
        match s.parse(&topic, &payload, retain) {
            Some(ob) => {
                let o = d.observe(now, &ob);
                let avail = o.iter().find_map(|x| match x {
                    Output::Online { online, .. } if ob.available.is_some() => Some(*online),
                    _ => None,
                });
                out.push((rings(&o).len(), avail, true));
            }
            None => out.push((0, None, false)),
        }
    }
    out
}

fn mq(f: impl FnOnce(&mut MqttConfig)) -> MqttConfig {
    let mut c = MqttConfig::default();
    f(&mut c);
    c
}

#[test]
fn mqtt_gen1_vectors() {
    let cfg = mq(|c| c.shelly_gen1_id = Some("shellyuni-C45BBE6B9A12".into()));
    let ids = [
        "g1-01", "g1-02", "g1-03", "g1-04", "g1-05", "g1-06", "g1-07", "g1-08", "g1-09", "g1-10", "g1-11", "g1-12",
        "g1-13", "g1-14",
    ];
    let r = run_mqtt(&cfg, &ids);
    let counts: Vec<usize> = r.iter().map(|x| x.0).collect();
    // g1-01 rising; g1-03 first counter = baseline; g1-04 counter advanced without an edge = late L.
    assert_eq!(counts, vec![1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r[8].1, Some(false), "g1-09 offline");
    assert_eq!(r[9].1, Some(true), "g1-10 online");
    for i in [6, 7, 10, 11, 12, 13] {
        assert!(!r[i].2, "{} must say nothing about the input", ids[i]);
    }
    // With a known counter, the release's counter step belongs to the press rung at the edge.
    let s = MqttSources::from_config(&cfg);
    let mut d = Detector::new(0, 10_000);
    let base = s.parse("shellies/shellyuni-C45BBE6B9A12/input_event/0", br#"{"event":"S","event_cnt":41}"#, true);
    assert!(rings(&d.observe(0, &base.unwrap())).is_empty());
    for (i, id) in ["g1-01", "g1-02", "g1-03"].iter().enumerate() {
        let (t, p, r) = vector(id);
        let n = rings(&d.observe(100 * (i as u64 + 1), &s.parse(&t, &p, r).unwrap())).len();
        assert_eq!(n, usize::from(i == 0), "{id}");
    }
    // The announce is discovery, never a ring.
    let (t, p, _) = vector("g1-11");
    assert_eq!(
        doorbell_bridge::ring::shelly_mqtt::announce(&t, &p),
        Some(("shellyuni-C45BBE6B9A12".to_string(), "SHUNI-1".to_string()))
    );
}

#[test]
fn mqtt_gen2_vectors() {
    let cfg = mq(|c| c.shelly_gen2_prefix = Some("shellyplusuni-c45bbe6b9a13".into()));
    let ids =
        ["g2-01", "g2-02", "g2-03", "g2-04", "g2-05", "g2-06", "g2-07", "g2-08", "g2-09", "g2-10", "g2-11", "g2-13"];
    let r = run_mqtt(&cfg, &ids);
    let counts: Vec<usize> = r.iter().map(|x| x.0).collect();
    // g2-05 single_push follows g2-03's btn_down: same press. g2-06 long_push without btn_down: late.
    assert_eq!(counts, vec![1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0]);
    assert_eq!(r[10].1, Some(false), "g2-11 offline");
    for i in [6, 7, 9, 11] {
        assert!(!r[i].2, "{} must say nothing about the input", ids[i]);
    }
    let i4 = mq(|c| {
        c.shelly_gen2_prefix = Some("shellyplusi4-a8032ab1fe78".into());
        c.shelly_input = 2;
    });
    assert_eq!(run_mqtt(&i4, &["g2-12"])[0].0, 1, "g2-12 rings when configured for input:2");
    assert_eq!(run_mqtt(&cfg, &["g2-12"])[0].0, 0, "g2-12 is another device");
}

#[test]
fn mqtt_generic_vectors() {
    let generic = |topic: &str, on: &str, off: Option<&str>, field: Option<&str>| {
        mq(|c| {
            c.generic_topic = Some(topic.into());
            c.generic_payload = Some(on.into());
            c.generic_off_payload = off.map(Into::into);
            c.generic_json_field = field.map(Into::into);
        })
    };
    let esphome = generic("doorbell/binary_sensor/chime/state", "ON", Some("OFF"), None);
    assert_eq!(run_mqtt(&esphome, &["gx-01", "gx-02", "gx-03"]).iter().map(|x| x.0).collect::<Vec<_>>(), [1, 0, 0]);
    // Retained first: state only; the next live ON after an OFF rings.
    assert_eq!(run_mqtt(&esphome, &["gx-03", "gx-02", "gx-01"]).iter().map(|x| x.0).collect::<Vec<_>>(), [0, 0, 1]);
    let z2m = generic("zigbee2mqtt/chime_reed", "false", Some("true"), Some("contact"));
    // z2m republishes the whole state: the same contact value again is no edge.
    assert_eq!(run_mqtt(&z2m, &["gx-04", "gx-06", "gx-05"]).iter().map(|x| x.0).collect::<Vec<_>>(), [1, 0, 0]);
    let tasmota = generic("stat/tasmota_chime/RESULT", "ON", None, Some("Switch1.Action"));
    assert_eq!(run_mqtt(&tasmota, &["gx-07"])[0].0, 1);
    let tele = generic("tele/tasmota_chime/SENSOR", "ON", None, Some("Switch1"));
    assert_eq!(run_mqtt(&tele, &["gx-08", "gx-08"]).iter().map(|x| x.0).collect::<Vec<_>>(), [1, 0], "only on change");
    let kruton = generic("ringdet-192.0.2.60/action", "{action:\"pressed\"}", None, None);
    assert_eq!(run_mqtt(&kruton, &["gx-09"])[0].0, 1, "not JSON: matched as text");
    let dns = generic("sensor/doorbell/button", "pressed", Some("not_pressed"), None);
    assert_eq!(
        run_mqtt(&dns, &["gx-10", "gx-11", "gx-11", "gx-10"]).iter().map(|x| x.0).collect::<Vec<_>>(),
        [1, 0, 0, 1],
        "heartbeat not_pressed never rings"
    );
    let home = generic("home/doorbell", "ON", Some("OFF"), None);
    assert_eq!(run_mqtt(&home, &["gx-12"])[0].0, 1, "case-insensitive");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn coiot_parser_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = judge(&device(), 1, &buf);
        if let Ok(m) = coiot::parse(&buf) {
            prop_assert!(m.payload.len() < buf.len());
            let _ = coiot::parse_status(m.payload);
            let _ = coiot::parse_descriptor(m.payload);
        }
    }

    #[test]
    fn coiot_mutated_vectors_never_panic(i in 0usize..600, b in any::<u8>(), cut in 0usize..260) {
        let mut v = data("02_uni_status_in1_on.bin");
        let n = v.len();
        v[i % n] = b;
        v.truncate(cut.max(1));
        let _ = judge(&device(), 1, &v);
    }

    #[test]
    fn mqtt_parser_never_panics(topic_sel in 0usize..6, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let cfg = mq(|c| {
            c.shelly_gen1_id = Some("shellyuni-C45BBE6B9A12".into());
            c.shelly_gen2_prefix = Some("plus".into());
            c.generic_topic = Some("g/#".into());
            c.generic_payload = Some("ON".into());
            c.generic_json_field = Some("a.b".into());
        });
        let topics = ["shellies/shellyuni-C45BBE6B9A12/input/0", "shellies/shellyuni-C45BBE6B9A12/input_event/0",
            "plus/events/rpc", "plus/status/input:0", "g/x", "shellies/announce"];
        let s = MqttSources::from_config(&cfg);
        let _ = s.parse(topics[topic_sel], &payload, false);
        let _ = doorbell_bridge::ring::shelly_mqtt::announce(topics[topic_sel], &payload);
        let _ = doorbell_bridge::ring::dns::parse_query(&payload);
    }

    /// Any sequence of presses, with any packets lost: never more rings than presses, and every
    /// press whose state reached the detector in some later packet is counted.
    #[test]
    fn detector_never_double_counts(drops in proptest::collection::vec(proptest::bool::weighted(0.2), 40)) {
        let mut d = Detector::new(0, 10_000);
        let mut total = 0usize;
        let mut serial = 1u16;
        let mut cnt = 10u64;
        let mut t = 0;
        let feed = |d: &mut Detector, level: bool, cnt: u64, serial: u16, drop: bool, t: u64| {
            if drop { return 0; }
            let ob = Observation { serial: Some(serial), level: Some(level), counter: Some((cnt, "S".into())),
                validity_ms: Some(38_000), ..Observation::new(Source::Coiot) };
            rings(&d.observe(t, &ob)).len()
        };
        total += feed(&mut d, false, cnt, serial, false, t);
        for pair in drops.chunks(2) {
            serial += 1; t += 100;
            total += feed(&mut d, true, cnt, serial, pair[0], t);
            serial += 1; cnt += 1; t += 100;
            total += feed(&mut d, false, cnt, serial, pair[1], t);
        }
        // The periodic repeat that always comes eventually.
        total += feed(&mut d, false, cnt, serial.wrapping_add(1), false, t + 15_000);
        prop_assert_eq!(total, drops.len() / 2);
    }
}

// ---------- over real sockets ----------

fn base_config(data_dir: &Path) -> Config {
    let mut cfg = Config { data_dir: Some(data_dir.to_path_buf()), ..Config::default() };
    cfg.doorbell.host = "127.0.0.1".into();
    // Nothing listens there: ring pictures fail fast and quietly.
    cfg.doorbell.http_port = 9;
    cfg.server.bind = std::net::Ipv4Addr::LOCALHOST.into();
    cfg.server.http_port = 0;
    cfg.server.rtsp_port = 0;
    cfg.onvif.enabled = false;
    cfg.coiot.device_id = Some(UNI.into());
    cfg.coiot.multicast = false;
    cfg.coiot.unicast_bind = std::net::Ipv4Addr::LOCALHOST.into();
    cfg.coiot.unicast_port = Some(0);
    cfg
}

struct Running {
    bus: Arc<Bus>,
    coiot: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(f: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config(dir.path());
    f(&mut cfg);
    let app = App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    let (bus, coiot) = (app.bus.clone(), app.coiot_addr());
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    let task = tokio::spawn(async move {
        app.run(sd).await.unwrap();
    });
    Running { bus, coiot, shutdown, task, _dir: dir }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rings_total(bus: &Bus) -> u64 {
    bus.rings_total.load(Ordering::SeqCst)
}

fn uni(serial: u16, level: bool, cnt: u64, id: &str) -> Vec<u8> {
    coiot::encode_status(serial, id, 380, serial, coiot::uni_payload(level, "S", cnt).as_bytes())
}

#[tokio::test]
async fn forged_packets_from_other_devices_never_ring() {
    let r = start(|c| c.coiot.source = Some(std::net::Ipv4Addr::LOCALHOST.into())).await;
    let to = r.coiot.unwrap();
    let real = StdUdp::bind("127.0.0.1:0").unwrap();
    real.send_to(&uni(1, false, 10, UNI), to).unwrap();
    // Other ids: another MAC, another model with our MAC, a 6-hex suffix of another device, a Shelly 1.
    for (i, id) in ["SHUNI-1#AABBCCDDEEFF#2", "SHSW-1#C45BBE6B9A12#2", "SHUNI-1#000000#2", "SHUNI-1#C45BBE6B9A1#2"]
        .iter()
        .enumerate()
    {
        let s = 100 + 10 * i as u16;
        real.send_to(&uni(s, false, 10, id), to).unwrap();
        real.send_to(&uni(s + 1, true, 10, id), to).unwrap();
        real.send_to(&uni(s + 2, false, 11, id), to).unwrap();
        real.send_to(&uni(s + 3, false, 99, id), to).unwrap();
    }
    real.send_to(&data("11_shelly1_status.bin"), to).unwrap();
    // The right id from the wrong address (all of 127/8 is local on Linux).
    let other = StdUdp::bind("127.0.0.2:0").unwrap();
    other.send_to(&uni(200, true, 10, UNI), to).unwrap();
    other.send_to(&uni(201, false, 15, UNI), to).unwrap();
    // Garbage.
    for name in ["20_truncated_header.bin", "25_bad_version.bin", "30_serial_3_bytes.bin"] {
        real.send_to(&data(name), to).unwrap();
    }
    let bus = r.bus.clone();
    wait_until("every forged datagram counted", Duration::from_secs(5), || {
        bus.status()["coiot"]["received"].as_u64() == Some(23)
    })
    .await;
    let st = bus.status();
    assert_eq!(st["coiot"]["foreign"], 19, "{st}");
    assert_eq!(st["coiot"]["rejected"], 3, "{st}");
    let mut m = doorbell_bridge::metrics::Metrics::new();
    bus.metrics(&mut m);
    let metrics = m.finish();
    assert!(metrics.contains("doorbell_bridge_coiot_datagrams_total{result=\"foreign\"} 19"), "{metrics}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rings_total(&bus), 0, "a forged packet rang");
    // The real device still rings.
    real.send_to(&uni(2, true, 10, UNI), to).unwrap();
    wait_until("the real press", Duration::from_secs(5), || rings_total(&bus) == 1).await;
    assert_eq!(bus.state().sources.get("coiot"), Some(&true));
    r.stop().await;
}

/// 10,000 presses, each a rising and a falling status like a Uni sends, 5 % of datagrams dropped
/// at random (seeded): every press rings exactly once (late when its edge was lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_10k_presses_with_losses() {
    use rand::{Rng, SeedableRng};
    const PRESSES: u64 = 10_000;
    let r = start(|c| {
        c.ring.min_gap_ms = 0;
        c.snapshot.ring_images_keep = 1;
    })
    .await;
    let to = r.coiot.unwrap();
    let mut rx = r.bus.subscribe(None).rx;
    let counter = tokio::spawn(async move {
        let (mut rising, mut late) = (0u64, 0u64);
        let t0 = Instant::now();
        while rising + late < PRESSES && t0.elapsed() < Duration::from_secs(120) {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Ok(rec)) => {
                    if let Payload::Ring(ring) = &rec.payload {
                        if ring.press.as_deref() == Some("rising") {
                            rising += 1
                        } else {
                            late += 1
                        }
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => panic!("lagged {n}"),
                _ => break,
            }
        }
        (rising, late)
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0005);
    let sock = StdUdp::bind("127.0.0.1:0").unwrap();
    let (mut sent, mut dropped) = (0u64, 0u64);
    let mut serial: u16 = 256;
    let mut cnt: u64 = 41;
    let mut packets: Vec<Vec<u8>> = vec![uni(serial, false, cnt, UNI)];
    for _ in 0..PRESSES {
        serial = serial.wrapping_add(1);
        packets.push(uni(serial, true, cnt, UNI));
        serial = serial.wrapping_add(1);
        cnt += 1;
        packets.push(uni(serial, false, cnt, UNI));
    }
    // The Uni repeats its status periodically: the last presses are learnt even if lost.
    for _ in 0..3 {
        packets.push(uni(serial, false, cnt, UNI));
    }
    let first = packets.remove(0);
    sock.send_to(&first, to).unwrap();
    for (i, p) in packets.iter().enumerate() {
        if rng.gen_bool(0.05) {
            dropped += 1;
            continue;
        }
        sock.send_to(p, to).unwrap();
        sent += 1;
        // Paced by what the bridge has read, so the socket buffer never overflows even on a loaded
        // machine (that would be a burst of losses we did not choose).
        if i % 32 == 31 {
            let t0 = Instant::now();
            while r.bus.status()["coiot"]["received"].as_u64().unwrap_or(0) + 64 < sent + 1 {
                assert!(t0.elapsed() < Duration::from_secs(10), "the bridge stopped reading");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    }
    let (rising, late) = counter.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rings_total(&r.bus);
    eprintln!("replay: {sent} sent, {dropped} dropped, {rising} rang at the edge, {late} late");
    assert!(dropped > 800 && dropped < 1200, "about 5 % dropped: {dropped}");
    assert_eq!(rising + late, PRESSES, "missed presses");
    assert_eq!(total, PRESSES, "duplicates or misses");
    assert!(late > 0, "losses must have made some presses late");
    r.stop().await;
}

// ---------- a real Mosquitto broker ----------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Broker {
    port: u16,
    conf: PathBuf,
    child: Child,
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Broker {
        let conf = dir.join("mosquitto.conf");
        // Persistence on, as in Home Assistant's Mosquitto add-on: sessions survive a restart.
        let store = dir.join("store");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(
            &conf,
            format!(
                // `user root`: started as root, mosquitto would otherwise drop to a user that
                // cannot write into this temporary directory (ignored when not root).
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location {}/\n",
                store.display()
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (scripts/test installs it)");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { port, conf, child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A clean stop (SIGTERM: the broker saves its sessions).
    fn stop_gracefully(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    /// Starts the same broker again (same port, same saved sessions).
    fn start_again(&mut self) {
        let dir = self.conf.parent().unwrap().to_path_buf();
        *self = Broker::start(&dir, self.port);
    }

    fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let mut c = Command::new("mosquitto_pub");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1", "-t", topic, "-m", payload]);
        if retain {
            c.arg("-r");
        }
        assert!(c.status().unwrap().success(), "mosquitto_pub failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

const G1: &str = "shellies/shellyuni-C45BBE6B9A12";
const G2: &str = "shellyplusuni-c45bbe6b9a13";

fn gen2_status(state: bool) -> String {
    format!(
        r#"{{"src":"{G2}","dst":"{G2}/events","method":"NotifyStatus","params":{{"ts":1.0,"input:0":{{"id":0,"state":{state}}}}}}}"#
    )
}

fn gen2_event(ev: &str) -> String {
    format!(
        r#"{{"src":"{G2}","dst":"{G2}/events","method":"NotifyEvent","params":{{"ts":1.0,"events":[{{"component":"input:0", "id":0, "event":"{ev}", "ts":1.0}}]}}}}"#
    )
}

/// One press through each kind of source; returns after its ring was seen.
async fn press_all(b: &Broker, bus: &Bus, cnt: &mut u64) {
    let before = rings_total(bus);
    b.publish(&format!("{G1}/input/0"), "1", false);
    b.publish(&format!("{G1}/input/0"), "0", false);
    *cnt += 1;
    b.publish(&format!("{G1}/input_event/0"), &format!("{{\"event\":\"S\",\"event_cnt\":{cnt}}}"), false);
    wait_until("the Gen1 ring", Duration::from_secs(5), || rings_total(bus) == before + 1).await;
    // Beyond the echo window: a press of its own.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    b.publish(&format!("{G2}/events/rpc"), &gen2_status(true), false);
    b.publish(&format!("{G2}/events/rpc"), &gen2_status(false), false);
    b.publish(&format!("{G2}/events/rpc"), &gen2_event("single_push"), false);
    wait_until("the Gen2 ring", Duration::from_secs(5), || rings_total(bus) == before + 2).await;
    b.publish("doorbell/binary_sensor/chime/state", "ON", false);
    b.publish("doorbell/binary_sensor/chime/state", "OFF", false);
    wait_until("the generic ring", Duration::from_secs(5), || rings_total(bus) == before + 3).await;
    // Nothing more comes (the release, counter and push event belonged to the presses).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rings_total(bus), before + 3, "a press rang twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_gen1_gen2_generic_ring_once_per_press_and_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), free_port());
    // Stale retained state from before the bridge started: never a ring.
    broker.publish(&format!("{G1}/input/0"), "1", true);
    broker.publish("doorbell/binary_sensor/chime/state", "ON", true);
    broker.publish(&format!("{G1}/input_event/0"), "{\"event\":\"S\",\"event_cnt\":41}", true);
    let port = broker.port;
    let r = start(|c| {
        c.coiot.enabled = false;
        c.ring.min_gap_ms = 0;
        c.mqtt.host = Some("127.0.0.1".into());
        c.mqtt.port = port;
        c.mqtt.shelly_gen1_id = Some("shellyuni-C45BBE6B9A12".into());
        c.mqtt.shelly_gen2_prefix = Some(G2.into());
        c.mqtt.generic_topic = Some("doorbell/binary_sensor/chime/state".into());
        c.mqtt.generic_payload = Some("ON".into());
        c.mqtt.generic_off_payload = Some("OFF".into());
    })
    .await;
    let bus = r.bus.clone();
    // Also watch what the bridge publishes about itself.
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "doorbell_bridge/ring", "-C", "3", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let connected = |bus: &Bus| bus.state().sources.get("mqtt_broker") == Some(&true);
    wait_until("the bridge connected", Duration::from_secs(10), || connected(&bus)).await;
    // The retained messages arrive right after the subscription.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rings_total(&bus), 0, "a retained message rang");
    let mut cnt = 41;
    press_all(&broker, &bus, &mut cnt).await;
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap()).await.unwrap();
    let published = String::from_utf8_lossy(&out.stdout);
    assert_eq!(published.lines().count(), 3, "the bridge publishes its rings: {published}");
    assert!(published.lines().all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["id"].is_u64())));

    broker.stop_gracefully();
    wait_until("the bridge saw the broker go", Duration::from_secs(10), || !connected(&bus)).await;
    // Down long enough for the bridge's backoff to grow past a second, then back: the bridge is
    // still waiting to retry when the next press is published.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    broker.start_again();
    // Pressed the moment the broker is back, before the bridge has reconnected: the broker queues
    // the press in the bridge's session and delivers it on reconnect.
    let reconnected_first = connected(&bus);
    let before = rings_total(&bus);
    broker.publish(&format!("{G1}/input/0"), "1", false);
    broker.publish(&format!("{G1}/input/0"), "0", false);
    cnt += 1;
    broker.publish(&format!("{G1}/input_event/0"), &format!("{{\"event\":\"S\",\"event_cnt\":{cnt}}}"), false);
    wait_until("the bridge reconnected", Duration::from_secs(20), || connected(&bus)).await;
    wait_until("the press made while away", Duration::from_secs(5), || rings_total(&bus) == before + 1).await;
    if reconnected_first {
        // Timing on a very busy machine: the press still had to ring once, which it did.
        eprintln!("note: the bridge reconnected before the press was published");
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..2 {
        press_all(&broker, &bus, &mut cnt).await;
    }
    assert_eq!(rings_total(&bus), 10);
    // The bridge's availability is retained "online" on the broker.
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "doorbell_bridge/availability", "-C", "1", "-W", "5"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "online");
    r.stop().await;
}

/// The simulated Uni sends every press over CoIoT and MQTT at once: one ring per press.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_uni_over_coiot_and_mqtt_rings_once_per_press() {
    use doorbell_bridge::sim::{Sim, SimOptions};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), free_port());
    let port = broker.port;
    let r = start(|c| {
        c.ring.min_gap_ms = 0;
        c.mqtt.host = Some("127.0.0.1".into());
        c.mqtt.port = port;
        c.mqtt.shelly_gen1_id = Some("shellyuni-C45BBE6B9A12".into());
    })
    .await;
    let bus = r.bus.clone();
    let sim = Sim::start(SimOptions {
        shelly_mqtt: Some(("127.0.0.1".into(), port)),
        chime: Duration::from_millis(300),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.set_coiot_target(r.coiot.unwrap());
    wait_until("both sources up", Duration::from_secs(10), || {
        let s = bus.state().sources;
        s.get("coiot") == Some(&true) && s.get("mqtt_broker") == Some(&true)
    })
    .await;
    // The simulated Shelly's own MQTT connection is up once its retained `online` reached the bridge.
    wait_until("the Shelly's MQTT side", Duration::from_secs(10), || bus.status()["sources"]["mqtt"] == true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 1..=3 {
        sim.ring();
        wait_until("the ring", Duration::from_secs(5), || rings_total(&bus) == i).await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(rings_total(&bus), i, "press {i} rang twice");
    }
    let st = bus.status();
    assert_eq!(st["last_ring"]["source"], "coiot", "{st}");
    assert_eq!(st["sources"]["mqtt"], true, "the Shelly's MQTT side was heard: {st}");
    assert_eq!(st["sensors"]["ring"], false);
    sim.stop().await;
    r.stop().await;
}

/// The DNS method: a forwarding resolver; the doorbell looking up its upload host is a press.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_method_forwards_and_rings_on_the_doorbells_lookup() {
    // The upstream: answers every query with its id and a marker.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = upstream.recv_from(&mut b).await {
            let mut a = b[..n].to_vec();
            a[2] |= 0x80;
            a.extend_from_slice(b"answer");
            let _ = upstream.send_to(&a, from).await;
        }
    });
    let listen = {
        let s = StdUdp::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let r = start(|c| {
        c.coiot.enabled = false;
        c.ring.min_gap_ms = 0;
        c.ring.dns_names = vec!["alarm.eu.s3.amazonaws.com".into(), "alarm.use.s3.amazonaws.com".into()];
        c.ring.dns_listen = Some(listen);
        c.ring.dns_upstream = Some(up_addr);
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ask = |from: &str, name: &str| {
        let s = StdUdp::bind(from).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let q = dns_hex(name);
        s.send_to(&q, listen).unwrap();
        let mut b = [0u8; 512];
        let (n, _) = s.recv_from(&mut b).expect("the upstream's answer comes back");
        assert_eq!(&b[..2], &q[..2], "same id");
        assert!(b[..n].ends_with(b"answer"));
    };
    ask("127.0.0.1:0", "42_dns_query_litedev_A.dns.hex");
    ask("127.0.0.2:0", "40_dns_query_alarm_eu_A.dns.hex");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rings_total(&r.bus), 0, "housekeeping lookups and other hosts never ring");
    ask("127.0.0.1:0", "40_dns_query_alarm_eu_A.dns.hex");
    wait_until("the DNS ring", Duration::from_secs(5), || rings_total(&r.bus) == 1).await;
    assert_eq!(r.bus.status()["last_ring"]["source"], "dns");
    r.stop().await;
}

/// Nothing within validity x1.2: the Shelly shows offline in the status; a lost release does not
/// leave the `ring` sensor on past `ring.pressed_max_secs`.
#[tokio::test]
async fn shelly_goes_offline_after_its_validity_and_the_sensor_times_out() {
    let r = start(|c| c.ring.pressed_max_secs = Duration::from_secs(1)).await;
    let to = r.coiot.unwrap();
    let s = StdUdp::bind("127.0.0.1:0").unwrap();
    // Validity 1.0 s (10 tenths).
    let pkt = |serial: u16, level: bool| {
        coiot::encode_status(serial, UNI, 10, serial, coiot::uni_payload(level, "S", 5).as_bytes())
    };
    s.send_to(&pkt(1, false), to).unwrap();
    let bus = r.bus.clone();
    wait_until("online", Duration::from_secs(3), || bus.status()["sources"]["coiot"] == true).await;
    s.send_to(&pkt(2, true), to).unwrap();
    wait_until("ring sensor on", Duration::from_secs(3), || bus.status()["sensors"]["ring"] == true).await;
    let t0 = Instant::now();
    // The release never comes, nor anything else.
    wait_until("ring sensor off", Duration::from_secs(3), || bus.status()["sensors"]["ring"] == false).await;
    wait_until("offline", Duration::from_secs(3), || bus.status()["sources"]["coiot"] == false).await;
    assert!(t0.elapsed() >= Duration::from_millis(900), "not before validity x1.2 / pressed_max");
    // It comes back with its next status, and that status is a baseline: no ring.
    s.send_to(&pkt(3, true), to).unwrap();
    wait_until("online again", Duration::from_secs(3), || bus.status()["sources"]["coiot"] == true).await;
    assert_eq!(rings_total(&bus), 1);
    r.stop().await;
}

#[test]
fn dns_method_and_generic_source_settings_are_checked() {
    let p = Config::parse("doorbell: {host: 192.0.2.10}\nring: {dns_listen: '127.0.0.1:5353'}\n").unwrap_err();
    let paths: Vec<&str> = p.0.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"ring.dns_upstream") && paths.contains(&"ring.dns_names"), "{paths:?}");
    let ok = "doorbell: {host: 192.0.2.10}\nring: {dns_listen: '0.0.0.0:53', dns_upstream: '192.0.2.1:53', dns_names: [alarm.eu.s3.amazonaws.com]}\nmqtt: {generic_topic: z/r, generic_json_field: contact, generic_payload: 'false', generic_off_payload: 'true'}\n";
    Config::parse(ok).unwrap_or_else(|p| panic!("{p}"));
    let p =
        Config::parse("doorbell: {host: h}\nmqtt: {generic_topic: z/r, generic_json_field: contact}\n").unwrap_err();
    assert!(p.0.iter().any(|p| p.path == "mqtt.generic_payload"), "{p}");
}
