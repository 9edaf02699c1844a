//! Snapshots against the simulated doorbell: Digest and Basic, failing/slow/missing snapshot URL,
//! the keyframe fallback (a real H.264 keyframe made by ffmpeg, see tests/data/snapshot/), per-ring
//! pictures with retention and restart, and single-flight counted by the simulator.

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use doorbell_bridge::config::{Config, Secret};
use doorbell_bridge::error::ErrorKind;
use doorbell_bridge::events::Bus;
use doorbell_bridge::media::{Keyframe, KeyframeSource, VideoCodec};
use doorbell_bridge::sim::snapshot::Mode;
use doorbell_bridge::sim::{Sim, SimOptions};
use doorbell_bridge::snapshot::keyframe::{jpeg_size, keyframe_to_jpeg};
use doorbell_bridge::snapshot::store::Store;
use doorbell_bridge::snapshot::Snapshots;

const KEYFRAME: &str = "tests/data/snapshot/keyframe-1536x2048.h264";

/// Serves the bundled keyframe file as the RTSP hub would serve its cached one.
struct FileKeyframes(Bytes);

impl KeyframeSource for FileKeyframes {
    fn latest_keyframe(&self, stream: &str) -> Option<Keyframe> {
        (stream == "main").then(|| Keyframe {
            stream: "main".into(),
            codec: VideoCodec::H264,
            annexb: self.0.clone(),
            captured: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        })
    }
}

fn keyframes() -> Arc<dyn KeyframeSource> {
    Arc::new(FileKeyframes(Bytes::from(std::fs::read(KEYFRAME).expect("bundled keyframe"))))
}

fn config(sim: &Sim) -> Config {
    let mut cfg = Config::default();
    cfg.doorbell.host = "127.0.0.1".into();
    cfg.doorbell.http_port = sim.http_addr.port();
    cfg.doorbell.password = Secret::new(sim.opts.password.clone());
    cfg.snapshot.min_interval_ms = 0;
    cfg.snapshot.timeout_secs = Duration::from_secs(5);
    cfg
}

fn service(cfg: &Config, dir: &Path) -> (Arc<Snapshots>, Arc<Bus>) {
    let bus = Bus::new();
    (Arc::new(Snapshots::new(cfg, dir, bus.clone())), bus)
}

fn is_jpeg_of(bytes: &[u8], w: u16, h: u16) {
    assert!(bytes.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    assert!(bytes.ends_with(&[0xFF, 0xD9]), "JPEG without end marker");
    assert_eq!(jpeg_size(bytes), Some((w, h)));
}

#[tokio::test]
async fn digest_then_preemptive_answers() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.state.snapshot.set(Mode::Digest, None);
    let dir = tempfile::tempdir().unwrap();
    let (snaps, _) = service(&config(&sim), dir.path());
    let img = snaps.refresh(Instant::now(), true).await.expect("digest fetch");
    is_jpeg_of(&img.bytes, 1536, 2048);
    // The 401's challenge, then the answer.
    assert_eq!(sim.state.snapshot_requests.load(SeqCst), 2);
    assert_eq!(sim.state.snapshot.served.load(SeqCst), 1);
    // Later fetches answer the known challenge at once (next nc): one request each.
    snaps.refresh(Instant::now(), true).await.expect("second digest fetch");
    assert_eq!(sim.state.snapshot_requests.load(SeqCst), 3);
    assert_eq!(sim.state.snapshot.served.load(SeqCst), 2);
    sim.stop().await;
}

#[tokio::test]
async fn basic_only_doorbell() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.state.snapshot.set(Mode::Basic, None);
    let dir = tempfile::tempdir().unwrap();
    let (snaps, _) = service(&config(&sim), dir.path());
    let img = snaps.latest().await.expect("basic fetch");
    is_jpeg_of(&img.bytes, 1536, 2048);
    assert_eq!(sim.state.snapshot.served.load(SeqCst), 1);
    sim.stop().await;
}

#[tokio::test]
async fn wrong_password_is_unauthenticated_and_not_leaked() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.doorbell.password = Secret::new("WRONGPW".to_string());
    let (snaps, _) = service(&cfg, dir.path());
    let e = snaps.latest().await.expect_err("wrong password must fail");
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert!(!e.chain().contains("WRONGPW"));
    assert_eq!(sim.state.snapshot.served.load(SeqCst), 0);
    sim.stop().await;
}

#[tokio::test]
async fn failing_doorbell_still_serves_cached_picture() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.snapshot.max_age_secs = Duration::ZERO; // always stale: every request triggers a background refresh
    let (snaps, _) = service(&cfg, dir.path());
    let first = snaps.latest().await.expect("first fetch");
    sim.state.snapshot.set(Mode::Fail, None);
    for _ in 0..5 {
        let img = snaps.latest().await.expect("cached picture despite failures");
        assert_eq!(img.etag, first.etag);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (fetches, failures, _) = snaps.counts();
    assert!(failures >= 1, "the background refreshes reached the failing doorbell ({fetches} fetches)");
    // Nothing cached and a failing doorbell without keyframes: an error, not a hang.
    let dir2 = tempfile::tempdir().unwrap();
    let (fresh, _) = service(&cfg, dir2.path());
    let e = fresh.latest().await.expect_err("no picture anywhere");
    assert_eq!(e.kind(), ErrorKind::Upstream);
    sim.stop().await;
}

#[tokio::test]
async fn slow_doorbell_cached_picture_at_once() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.snapshot.max_age_secs = Duration::ZERO;
    let (snaps, _) = service(&cfg, dir.path());
    snaps.latest().await.expect("first fetch");
    sim.state.snapshot.set(Mode::Slow, Some(3000));
    // The doorbell now takes 3 s; the cached picture must come without waiting for it.
    for _ in 0..3 {
        let t = Instant::now();
        snaps.latest().await.expect("cached");
        assert!(t.elapsed() < Duration::from_millis(1000), "waited on the slow doorbell: {:?}", t.elapsed());
    }
    // And the background refresh is single-flight: one slow request in progress, not three.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.state.snapshot_requests.load(SeqCst), 3, "401 + first picture + one refresh");
    sim.stop().await;
}

#[tokio::test]
async fn timeout_falls_back_to_keyframe() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.state.snapshot.set(Mode::Slow, Some(5000));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.snapshot.timeout_secs = Duration::from_secs(1);
    let (snaps, _) = service(&cfg, dir.path());
    snaps.set_keyframe_source(keyframes());
    let t = Instant::now();
    let img = snaps.latest().await.expect("keyframe picture after the timeout");
    assert!(t.elapsed() < Duration::from_secs(4), "timeout not applied: {:?}", t.elapsed());
    is_jpeg_of(&img.bytes, 1536, 2048);
    sim.stop().await;
}

#[tokio::test]
async fn missing_snapshot_url_uses_keyframe_of_stream_size() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.state.snapshot.set(Mode::Missing, None);
    let dir = tempfile::tempdir().unwrap();
    let (snaps, _) = service(&config(&sim), dir.path());
    snaps.set_keyframe_source(keyframes());
    let img = snaps.latest().await.expect("keyframe fallback");
    is_jpeg_of(&img.bytes, 1536, 2048);
    assert_eq!(img.taken, Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap());
    // A 404 is remembered: the doorbell is not asked again at once.
    let before = sim.state.snapshot_requests.load(SeqCst);
    snaps.refresh(Instant::now(), false).await.expect_err("still missing");
    assert_eq!(sim.state.snapshot_requests.load(SeqCst), before);

    // ffprobe (a real decoder) agrees it is a 1536x2048 picture.
    let path = dir.path().join("fallback.jpg");
    std::fs::write(&path, &img.bytes).unwrap();
    if let Ok(out) = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(&path)
        .output()
    {
        assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1536,2048");
    }
    sim.stop().await;
}

#[tokio::test]
async fn no_url_configured_never_asks_the_doorbell() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.snapshot.url = doorbell_bridge::config::SnapshotUrl::None;
    let (snaps, _) = service(&cfg, dir.path());
    assert_eq!(snaps.latest().await.expect_err("no source at all").kind(), ErrorKind::NotFound);
    snaps.set_keyframe_source(keyframes());
    is_jpeg_of(&snaps.latest().await.expect("keyframe").bytes, 1536, 2048);
    assert_eq!(sim.state.snapshot_requests.load(SeqCst), 0);
    sim.stop().await;
}

#[test]
fn keyframe_decodes_to_jpeg_of_stream_size() {
    let annexb = std::fs::read(KEYFRAME).unwrap();
    let (jpeg, w, h) = keyframe_to_jpeg(&annexb, 85).expect("decode + encode");
    assert_eq!((w, h), (1536, 2048));
    is_jpeg_of(&jpeg, 1536, 2048);
    // Kept pictures hold no spare capacity (their memory is bounded by length).
    assert_eq!(jpeg.capacity(), jpeg.len());
    // Colours and range right: ffmpeg compares our JPEG with its own decode of the keyframe.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kf.jpg");
    std::fs::write(&path, &jpeg).unwrap();
    if let Ok(out) = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(&path)
        .args(["-i", KEYFRAME, "-lavfi", "[0:v]format=rgb24[a];[1:v]format=rgb24[b];[a][b]psnr", "-f", "null", "-"])
        .output()
    {
        let log = String::from_utf8_lossy(&out.stderr);
        let psnr: f64 = log
            .rsplit("average:")
            .next()
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no PSNR in ffmpeg output: {log}"));
        assert!(psnr > 30.0, "JPEG differs from the keyframe: PSNR {psnr} dB");
    }
    // Truncated keyframes are errors, never panics.
    for cut in [0, 10, 40, annexb.len() / 2] {
        let _ = keyframe_to_jpeg(&annexb[..cut], 85);
    }
}

#[tokio::test]
async fn concurrent_requests_cause_one_fetch() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.state.snapshot.set(Mode::Ok, Some(300));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.snapshot.min_interval_ms = 1000;
    let (snaps, _) = service(&cfg, dir.path());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let s = snaps.clone();
        set.spawn(async move { s.latest().await.map(|i| i.etag) });
    }
    let mut etags = Vec::new();
    while let Some(r) = set.join_next().await {
        etags.push(r.unwrap().expect("picture"));
    }
    assert_eq!(etags.len(), 32);
    assert!(etags.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(sim.state.snapshot.served.load(SeqCst), 1, "one picture fetched for 32 callers");
    assert_eq!(snaps.counts().0, 1);
    sim.stop().await;
}

#[tokio::test]
async fn ring_picture_from_keyframe_then_doorbell_and_survives_restart() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sim);
    let (snaps, bus) = service(&cfg, dir.path());
    snaps.set_keyframe_source(keyframes());
    let mut etags = Vec::new();
    for _ in 0..3 {
        let ring = bus.ring("test", Some("S"), Utc::now());
        snaps.take_for_ring(ring.id).await;
        let img = snaps.ring_image(ring.id).await.expect("ring picture");
        is_jpeg_of(&img.bytes, 1536, 2048);
        etags.push((ring.id, img.etag));
    }
    let hist = snaps.ring_history();
    assert_eq!(hist.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    // The full-quality fetch replaced the keyframe picture.
    assert!(hist.iter().all(|e| e.origin.as_deref() == Some("doorbell")), "{hist:?}");
    assert_eq!(snaps.counts().2, 1, "one keyframe decoded, reused for the same keyframe");
    assert!(dir.path().join("rings/2.jpg").exists());
    drop(snaps);
    drop(bus);

    // Restart: a new bus and service on the same data directory.
    let (snaps, bus) = service(&cfg, dir.path());
    for (id, etag) in &etags {
        assert_eq!(&snaps.ring_image(*id).await.expect("kept across restart").etag, etag);
    }
    assert_eq!(bus.status()["last_ring"]["id"], 3);
    assert_eq!(bus.status()["last_ring"]["source"], "test");
    assert_eq!(bus.ring("test", None, Utc::now()).id, 4, "ring ids continue");
    assert_eq!(snaps.ring_image(99).await.expect_err("unknown ring").kind(), ErrorKind::NotFound);
    sim.stop().await;
}

#[tokio::test]
async fn ring_retention_by_count() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.snapshot.ring_images_keep = 3;
    let (snaps, bus) = service(&cfg, dir.path());
    for _ in 0..6 {
        let ring = bus.ring("test", None, Utc::now());
        snaps.take_for_ring(ring.id).await;
    }
    let ids: Vec<u64> = snaps.ring_history().iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![4, 5, 6]);
    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("rings"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, vec!["4.jpg", "5.jpg", "6.jpg", "index.json"]);
    assert_eq!(snaps.ring_image(1).await.expect_err("dropped").kind(), ErrorKind::NotFound);
    sim.stop().await;
}

#[test]
fn ring_retention_by_size_and_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 100, 1000);
    let bus = Bus::new();
    for _ in 0..10 {
        let r = bus.ring("test", None, Utc::now());
        store.add_ring(&r);
        assert!(store.put_image(r.id, &[0xAB; 300], "doorbell", &doorbell_bridge::domain::time_string(r.at)));
        assert!(store.total_bytes() <= 1000);
    }
    // The newest three pictures fit; every ring stays in the history.
    let with: Vec<u64> = store.entries.values().filter(|e| e.image_bytes.is_some()).map(|e| e.id).collect();
    assert_eq!(with, vec![8, 9, 10]);
    assert_eq!(store.entries.len(), 10);
    assert!(!dir.path().join("rings/7.jpg").exists());
    // A leftover file (crash between picture and index) is removed on the next open.
    std::fs::write(dir.path().join("rings/77.jpg"), b"x").unwrap();
    drop(store);
    let store = Store::open(dir.path(), 100, 1000);
    assert!(!dir.path().join("rings/77.jpg").exists());
    assert_eq!(store.read_image(9).as_deref(), Some(&[0xAB; 300][..]));
}

#[tokio::test]
async fn unwritable_data_dir_keeps_running() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // `rings` is a file: every write into it fails, as on a full or read-only disk.
    std::fs::write(dir.path().join("rings"), b"not a directory").unwrap();
    let (snaps, bus) = service(&config(&sim), dir.path());
    let ring = bus.ring("test", None, Utc::now());
    snaps.take_for_ring(ring.id).await;
    assert!(snaps.latest().await.is_ok());
    let mut m = doorbell_bridge::metrics::Metrics::new();
    snaps.metrics(&mut m);
    let out = m.finish();
    assert!(out.contains("doorbell_bridge_snapshot_disk_errors_total 1"), "{out}");
    sim.stop().await;
}

#[tokio::test]
async fn api_serves_cached_snapshot_and_ring_picture_end_to_end() {
    use doorbell_bridge::demo::{demo_config, DemoOptions};
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
    let mut cfg = demo_config(&opts, &sim);
    cfg.snapshot.min_interval_ms = 0;
    let app = doorbell_bridge::App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    let http = app.http_addr();
    let snaps = app.snapshots.clone();
    let bus = app.bus.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(app.run(shutdown.clone()));
    let client = reqwest::Client::new();

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let c = client.clone();
        set.spawn(async move { c.get(format!("http://{http}/api/snapshot.jpg")).send().await });
    }
    let mut etag = None;
    while let Some(r) = set.join_next().await {
        let r = r.unwrap().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert!(r.headers().contains_key("last-modified") && r.headers().contains_key("cache-control"));
        etag = Some(r.headers()["etag"].to_str().unwrap().to_string());
    }
    assert_eq!(sim.state.snapshot.served.load(SeqCst), 1, "16 clients, one fetch from the doorbell");
    let r = client
        .get(format!("http://{http}/api/snapshot.jpg"))
        .header("if-none-match", etag.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let ring = bus.ring("test", None, Utc::now());
    snaps.take_for_ring(ring.id).await;
    let r = client.get(format!("http://{http}{}", ring.snapshot)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    is_jpeg_of(&r.bytes().await.unwrap(), 1536, 2048);
    let r = client.get(format!("http://{http}/api/rings/12345/snapshot.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    shutdown.cancel();
    let _ = run.await;
    sim.stop().await;
}

#[tokio::test]
async fn sim_control_endpoint_switches_modes() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let c = reqwest::Client::new();
    let r = c.post(format!("{}/sim/snapshot?mode=missing", sim.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.state.snapshot.mode(), Mode::Missing);
    assert_eq!(c.get(format!("{}/onvif/snapshot.jpg", sim.url())).send().await.unwrap().status(), 404);
    let r = c.post(format!("{}/sim/snapshot?mode=slow&delay_ms=150", sim.url())).send().await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["mode"], "slow");
    assert_eq!(body["delay_ms"], 150);
    let r = c.post(format!("{}/sim/snapshot?mode=bogus", sim.url())).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let st: serde_json::Value = c.get(format!("{}/sim/status", sim.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(st["snapshot"]["requests"], 1);
    sim.stop().await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
    /// Damaged keyframes (bytes flipped anywhere) give an error or a picture, never a panic.
    #[test]
    fn damaged_keyframes_never_panic(flips in proptest::collection::vec((0usize..45_000, proptest::prelude::any::<u8>()), 1..20)) {
        let mut annexb = std::fs::read(KEYFRAME).unwrap();
        for (at, v) in flips {
            let n = annexb.len();
            annexb[at % n] ^= v;
        }
        if let Ok((jpeg, w, h)) = keyframe_to_jpeg(&annexb, 80) {
            proptest::prop_assert_eq!(jpeg_size(&jpeg), Some((w, h)));
        }
    }
}

#[tokio::test]
async fn ring_picture_requested_before_it_is_taken_waits_for_it() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.state.snapshot.set(Mode::Slow, Some(400));
    let dir = tempfile::tempdir().unwrap();
    let (snaps, bus) = service(&config(&sim), dir.path());
    let ring = bus.ring("test", None, Utc::now());
    // The phone asks at once, before the (slow, no keyframe) picture exists.
    let s = snaps.clone();
    let early = tokio::spawn(async move { s.ring_image(ring.id).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    snaps.take_for_ring(ring.id).await;
    let img = early.await.unwrap().expect("waited for the picture");
    is_jpeg_of(&img.bytes, 1536, 2048);
    sim.stop().await;
}

#[tokio::test]
async fn picture_at_motion_start_when_enabled() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim);
    cfg.snapshot.on_motion = true;
    let (snaps, bus) = service(&cfg, dir.path());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(snaps.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.set_sensor(doorbell_bridge::domain::Sensor::PirMotion, Some(true), Utc::now());
    let motion = dir.path().join("motion");
    let mut found = Vec::new();
    for _ in 0..100 {
        found = std::fs::read_dir(&motion).map(|d| d.flatten().map(|f| f.path()).collect()).unwrap_or_default();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found.len(), 1, "one picture for one motion start");
    is_jpeg_of(&std::fs::read(&found[0]).unwrap(), 1536, 2048);
    // Motion ending takes no picture.
    bus.set_sensor(doorbell_bridge::domain::Sensor::PirMotion, Some(false), Utc::now());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_dir(&motion).unwrap().count(), 1);
    shutdown.cancel();
    task.await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn press_on_simulated_doorbell_gets_its_picture_over_the_api() {
    use doorbell_bridge::demo::{demo_config, DemoOptions};
    use doorbell_bridge::events::Payload;
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
    let cfg = demo_config(&opts, &sim);
    let app = doorbell_bridge::App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    app.snapshots.set_keyframe_source(keyframes());
    let http = app.http_addr();
    let coiot = app.coiot_addr().expect("unicast CoIoT port");
    let mut sub = app.bus.subscribe(None);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(app.run(shutdown.clone()));
    sim.set_coiot_target(coiot);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.ring();
    let ring = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Payload::Ring(r) = &sub.rx.recv().await.unwrap().payload {
                return r.clone();
            }
        }
    })
    .await
    .expect("a ring event");
    // Asked at once, as a phone notification would.
    let r = reqwest::get(format!("http://{http}{}", ring.snapshot)).await.unwrap();
    assert_eq!(r.status(), 200);
    is_jpeg_of(&r.bytes().await.unwrap(), 1536, 2048);
    // The history lists it (the media browser of Home Assistant reads this), newest first.
    let list: serde_json::Value =
        reqwest::get(format!("http://{http}/api/rings?limit=5")).await.unwrap().json().await.unwrap();
    let first = &list["rings"][0];
    assert_eq!(first["id"], ring.id);
    assert_eq!(first["at"], doorbell_bridge::domain::time_string(ring.at).as_str());
    assert_eq!(first["source"], ring.source.as_str());
    assert_eq!(first["snapshot"], ring.snapshot.as_str());
    assert_eq!(first["clip"], serde_json::Value::Null);
    let r = reqwest::get(format!("http://{http}/api/rings?limit=zero")).await.unwrap();
    assert_eq!(r.status(), 400);
    shutdown.cancel();
    let _ = run.await;
    sim.stop().await;
}
