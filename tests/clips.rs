//! Ring clips end to end: the bridge (its own process, so it can be killed) records the simulated
//! doorbell, whose every frame carries its number in an SEI. ffprobe and ffmpeg (real peers) read
//! the clips back; the frame numbers show which seconds a clip holds.
//!
//! The full-disk case mounts a small tmpfs (root): without it that test fails rather than skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::sim::rtsp::{frame_number_of, FPS};

use doorbell_bridge::sim::audio::SimAudio;
use doorbell_bridge::sim::{Sim, SimOptions};
use serde_json::{json, Value};

#[path = "support/clip_check.rs"]
mod clip_check;
use clip_check::*;
#[path = "support/bridge_process.rs"]
mod bridge_process;
use bridge_process::{free_tcp, free_udp, Bridge, Tmpfs};

/// The simulator's keyframe interval: a clip may start this much before its pre-roll.
const GOP_FRAMES: u64 = 2 * FPS as u64;

/// What the clip tests wait for on a running bridge.
trait ClipWaits {
    /// Waits until the main stream has played for `secs` (the pre-roll is full).
    async fn warm(&self, secs: u64);
    /// Waits for ring `id`'s clip; returns it and how long it took.
    async fn clip(&self, id: u64, within: Duration) -> (Vec<u8>, Duration);
}

impl ClipWaits for Bridge {
    async fn warm(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.json("/api/status").await["streams"]["main"]["upstream"] != "connected" {
            assert!(Instant::now() < deadline, "the main stream never connected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    async fn clip(&self, id: u64, within: Duration) -> (Vec<u8>, Duration) {
        let t = Instant::now();
        loop {
            let r = self.get(&format!("/api/rings/{id}/clip.mp4")).await;
            if r.status() == 200 {
                assert_eq!(r.headers()["content-type"], "video/mp4");
                return (r.bytes().await.unwrap().to_vec(), t.elapsed());
            }
            assert_eq!(r.status(), 404, "before it exists");
            assert!(t.elapsed() < within, "no clip for ring {id} within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Setup {
    sim: Sim,
    config: PathBuf,
    http: SocketAddr,
    data: PathBuf,
    _tmp: tempfile::TempDir,
}

/// The demo's configuration with clips of `pre` + `post` seconds, data in `data` (or a temp dir).
async fn setup(pre: u64, post: u64, data: Option<PathBuf>) -> Setup {
    setup_with(pre, post, data, SimAudio::Aac).await
}

async fn setup_with(pre: u64, post: u64, data: Option<PathBuf>, audio: SimAudio) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let opts = SimOptions { chime: Duration::from_millis(50), audio, ..SimOptions::default() };
    let sim = Sim::start(opts).await.unwrap();
    let (http_port, rtsp_port, coiot_port) = (free_tcp(), free_tcp(), free_udp());
    let opts = DemoOptions { http_port, rtsp_port, sim_port: 0, data_dir: None };
    let mut v = serde_json::to_value(demo_config(&opts, &sim)).unwrap();
    let data = data.unwrap_or_else(|| tmp.path().join("data"));
    v["doorbell"]["password"] = json!(sim.opts.password);
    v["server"]["api_token"] = Value::Null;
    v["server"]["rtsp_password"] = Value::Null;
    v["mqtt"] = json!({});
    v["coiot"]["unicast_port"] = json!(coiot_port);
    v["ring"]["min_gap_ms"] = json!(0);
    v["onvif"]["enabled"] = json!(false);
    v["clips"] = json!({"pre_roll_secs": pre, "post_roll_secs": post});
    v["data_dir"] = json!(data);
    v["log_level"] = json!("warn");
    let config = tmp.path().join("bridge.yaml");
    std::fs::write(&config, serde_yaml::to_string(&v).unwrap()).unwrap();
    sim.set_coiot_target(format!("127.0.0.1:{coiot_port}").parse().unwrap());
    let http = format!("127.0.0.1:{http_port}").parse().unwrap();
    Setup { sim, config, http, data, _tmp: tmp }
}

/// Presses and returns the ring event (from the event stream), when the press was made, and how
/// long the event took.
async fn press(s: &Setup) -> (Value, Instant, Duration) {
    let mut resp = reqwest::get(format!("http://{}/api/events", s.http)).await.unwrap();
    let t = Instant::now();
    s.sim.ring();
    let mut buf = String::new();
    loop {
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            if block.contains("event: ring") {
                let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                return (serde_json::from_str(data).unwrap(), t, t.elapsed());
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.expect("ring event").unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
}

/// The simulator's frame number over time, sampled every 50 ms: under load the simulator skips
/// ticks, so frame numbers do not follow the wall clock exactly.
struct FrameClock(std::sync::Arc<std::sync::Mutex<Vec<(Instant, u64)>>>, tokio::task::JoinHandle<()>);

impl FrameClock {
    fn start(sim_url: String) -> FrameClock {
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(r) = reqwest::get(format!("{sim_url}/sim/status")).await {
                    if let Ok(v) = r.json::<Value>().await {
                        s.lock().unwrap().push((Instant::now(), v["video_frame"].as_u64().unwrap_or(0)));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        FrameClock(samples, task)
    }

    /// The frame being sent at `t` (the last sample at or before it).
    fn at(&self, t: Instant) -> u64 {
        let s = self.0.lock().unwrap();
        s.iter().rev().find(|(at, _)| *at <= t).or(s.first()).map(|x| x.1).expect("samples")
    }
}

impl Drop for FrameClock {
    fn drop(&mut self) {
        self.1.abort();
    }
}

fn clip_files(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("rings"))
        .map(|rd| rd.flatten().map(|f| f.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.starts_with("clip-"));
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_press_gives_a_clip_from_pre_roll_before_to_post_roll_after() {
    let (pre, post) = (4u64, 10u64); // the defaults
    let s = setup(pre, post, None).await;
    let bridge = Bridge::start(&s.config, s.http).await;
    let clock = FrameClock::start(s.sim.url());
    bridge.warm(pre + 3).await;
    let (ring, pressed, event_after) = press(&s).await;
    let id = ring["id"].as_u64().unwrap();
    assert!(event_after < Duration::from_secs(2), "the ring event waited: {event_after:?}");
    assert_eq!(ring["clip"], format!("/api/rings/{id}/clip.mp4"), "{ring}");
    assert_eq!(bridge.json("/api/status").await["last_ring"]["clip"], ring["clip"]);
    assert_eq!(bridge.get(&format!("/api/rings/{id}/clip.mp4")).await.status(), 404, "not yet");
    let (mp4, took) = bridge.clip(id, Duration::from_secs(post + 2)).await;
    println!("clip of {} bytes available {took:?} after the ring event", mp4.len());

    // Fast-start: the index before the media.
    let boxes = top_level_boxes(&mp4);
    let pos = |n: &str| boxes.iter().position(|b| b == n).unwrap_or_else(|| panic!("no {n} in {boxes:?}"));
    assert!(pos("moov") < pos("mdat"), "{boxes:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, &mp4).unwrap();
    let probe = ffprobe(&path);
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{probe}");
    assert_eq!(probe["streams"][0]["width"], 1536);
    assert_eq!(probe["streams"][0]["height"], 2048);
    assert!(first_packet_is_key(&path), "the first frame is a keyframe");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    let want = (pre + post) as f64;
    assert!(duration >= want - 0.5 && duration <= want + 2.0 + 0.5, "duration {duration} vs {want} + one GOP");

    // The frame numbers: from pre-roll before the press (within one GOP), each frame once, to
    // post-roll after it.
    let nums = frame_numbers(&path);
    assert!(!nums.is_empty());
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "frames missing or repeated: {nums:?}");
    let (first, last) = (nums[0], *nums.last().unwrap());
    let (pre_at, press_at, post_at) = (
        clock.at(pressed - Duration::from_secs(pre)),
        clock.at(pressed),
        clock.at(pressed + Duration::from_secs(post)),
    );
    println!("frames {first}..={last}; the simulator sent {pre_at} at press - {pre} s, {press_at} at the press, {post_at} at press + {post} s");
    // Slack: the samples are 50 ms apart and the ring reaches the bridge a few ms after the press.
    let slack = 3;
    assert!(first <= pre_at + slack, "starts at {first}, after {pre_at}: pre-roll missing");
    assert!(first + GOP_FRAMES + slack >= pre_at, "starts at {first}, more than a GOP before {pre_at}");
    assert!(last + slack >= post_at, "ends at {last}, before {post_at}: post-roll missing");
    assert!(last <= post_at + GOP_FRAMES, "ends at {last}, long after {post_at}");
    assert_eq!(first % GOP_FRAMES, 0, "a clip starts at a keyframe of the simulator");

    // Range: the first 100 bytes, then the rest.
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/rings/{id}/clip.mp4", s.http);
    let r = client.get(&url).header("Range", "bytes=0-99").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 0-99/{}", mp4.len()));
    assert_eq!(&r.bytes().await.unwrap()[..], &mp4[..100]);
    let r = client.get(&url).header("Range", "bytes=100-").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &mp4[100..]);
    let r = client.get(&url).header("Range", format!("bytes={}-", mp4.len() + 10)).send().await.unwrap();
    assert_eq!(r.status(), 416);

    // History, metrics, and the file beside the ring's picture.
    let rings = bridge.json("/api/rings").await;
    assert_eq!(rings["rings"][0]["clip"], format!("/api/rings/{id}/clip.mp4"), "{rings}");
    let metrics = bridge.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("doorbell_bridge_clips_written_total 1\n"), "{metrics}");
    assert!(metrics.contains(&format!("doorbell_bridge_clips_bytes {}\n", mp4.len())), "{metrics}");
    assert_eq!(clip_files(&s.data), [format!("clip-{id}.mp4")]);
    assert_eq!(bridge.get("/api/rings/99999/clip.mp4").await.status(), 404);
    assert_eq!(bridge.get("/api/rings/x/clip.mp4").await.status(), 400);
    drop(bridge);
    s.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presses_two_seconds_apart_share_one_extended_clip() {
    let (pre, post) = (2u64, 3u64);
    let s = setup(pre, post, None).await;
    let bridge = Bridge::start(&s.config, s.http).await;
    let clock = FrameClock::start(s.sim.url());
    bridge.warm(pre + 2).await;
    let (a, pressed_a, _) = press(&s).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (b, pressed_b, _) = press(&s).await;
    let (ia, ib) = (a["id"].as_u64().unwrap(), b["id"].as_u64().unwrap());
    assert_eq!(ib, ia + 1);
    let (clip_a, _) = bridge.clip(ia, Duration::from_secs(2 + post + 3)).await;
    let (clip_b, _) = bridge.clip(ib, Duration::from_secs(2)).await;
    assert_eq!(clip_a, clip_b, "both rings are served the one clip");
    assert_eq!(clip_files(&s.data), [format!("clip-{ia}-{ib}.mp4")], "one file, never two overlapping");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, &clip_a).unwrap();
    let nums = frame_numbers(&path);
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    let (start, end) =
        (clock.at(pressed_a - Duration::from_secs(pre)), clock.at(pressed_b + Duration::from_secs(post)));
    assert!(nums[0] <= start + 3, "pre-roll of the first press: {} > {start}", nums[0]);
    assert!(*nums.last().unwrap() + 3 >= end, "post-roll of the second press: {} < {end}", nums.last().unwrap());
    drop(bridge);
    s.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_clip_leaves_no_partial_file_and_that_clip_is_lost() {
    let (pre, post) = (2u64, 4u64);
    let s = setup(pre, post, None).await;
    let bridge = Bridge::start(&s.config, s.http).await;
    bridge.warm(pre + 1).await;
    let (ring, _, _) = press(&s).await;
    let id = ring["id"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bridge.kill9();
    assert!(clip_files(&s.data).is_empty(), "nothing under a clip's name: {:?}", clip_files(&s.data));

    let bridge = Bridge::start(&s.config, s.http).await;
    tokio::time::sleep(Duration::from_secs(post)).await;
    // The documented outcome: that ring keeps its picture and history entry, its clip is gone.
    assert_eq!(bridge.get(&format!("/api/rings/{id}/clip.mp4")).await.status(), 404);
    let rings = bridge.json("/api/rings").await;
    let entry = rings["rings"].as_array().unwrap().iter().find(|r| r["id"] == id).expect("ring kept").clone();
    assert_eq!(entry["clip"], Value::Null, "{entry}");
    assert_eq!(bridge.json("/api/status").await["last_ring"]["clip"], Value::Null);
    let leftovers: Vec<String> = std::fs::read_dir(s.data.join("rings"))
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The next press after the restart gets its clip.
    bridge.warm(pre).await;
    let (ring, _, _) = press(&s).await;
    let next = ring["id"].as_u64().unwrap();
    assert!(next > id);
    bridge.clip(next, Duration::from_secs(post + 3)).await;
    // After a restart the last ring still says whether its clip is kept.
    drop(bridge);
    let bridge = Bridge::start(&s.config, s.http).await;
    let last = bridge.json("/api/status").await["last_ring"].clone();
    assert_eq!(last["id"], next);
    assert_eq!(last["clip"], format!("/api/rings/{next}/clip.mp4"), "{last}");
    drop(bridge);
    s.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_the_clip_never_the_ring() {
    let (pre, post) = (2u64, 2u64);
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("data"), "4m");
    let s = setup(pre, post, Some(disk.0.clone())).await;
    let bridge = Bridge::start(&s.config, s.http).await;
    bridge.warm(pre + 1).await;
    let filler = disk.fill();
    let (ring, _, event_after) = press(&s).await;
    assert!(event_after < Duration::from_secs(2), "{event_after:?}");
    let id = ring["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(post + 5);
    loop {
        let metrics = bridge.get("/metrics").await.text().await.unwrap();
        if metrics.contains("doorbell_bridge_clips_failed_total 1\n") {
            assert!(metrics.contains("doorbell_bridge_clips_written_total 0\n"), "{metrics}");
            assert!(metrics.contains("doorbell_bridge_storage_ok 0\n"), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "the failed clip was not counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(bridge.get(&format!("/api/rings/{id}/clip.mp4")).await.status(), 404);
    assert!(clip_files(&s.data).is_empty(), "{:?}", clip_files(&s.data));
    let status = bridge.json("/api/status").await;
    assert_eq!(status["clips"]["failed"], 1, "{status}");
    // Space again: the next press gets its clip.
    std::fs::remove_file(filler).unwrap();
    let (ring, _, _) = press(&s).await;
    bridge.clip(ring["id"].as_u64().unwrap(), Duration::from_secs(post + 3)).await;
    drop(bridge);
    s.sim.stop().await;
    drop(disk);
}

/// G.711 has no MP4 muxer in the crate registry: such a doorbell's clips are video only (DOCS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_g711_doorbell_gives_video_only_clips() {
    let (pre, post) = (1u64, 2u64);
    let s = setup_with(pre, post, None, SimAudio::Pcmu).await;
    let bridge = Bridge::start(&s.config, s.http).await;
    bridge.warm(pre + 2).await;
    let (ring, _, _) = press(&s).await;
    let (mp4, _) = bridge.clip(ring["id"].as_u64().unwrap(), Duration::from_secs(post + 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, &mp4).unwrap();
    let probe = ffprobe(&path);
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert_eq!(codecs, ["h264"], "{probe}");
    assert!(first_packet_is_key(&path));
    drop(bridge);
    s.sim.stop().await;
}

#[test]
fn frame_number_sei_round_trips() {
    let sei = doorbell_bridge::sim::rtsp::frame_number_sei(1234);
    assert_eq!(frame_number_of(&sei), Some(1234));
    assert!(!sei.windows(2).any(|w| w == [0, 0]), "no emulation prevention needed");
    assert_eq!(frame_number_of(&sei[..10]), None);
}

/// The page Chromium runs: it loads the clip, paints its first frame and one near the end on a
/// canvas and writes what it saw into the DOM, which `--dump-dom` prints.
const PAGE: &str = r#"<!doctype html><html><body><video id=v muted preload=auto src="clip.mp4"></video><pre id=out>pending</pre><script>
const v = document.getElementById('v'), o = document.getElementById('out');
function paint() {
  const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext('2d'); x.drawImage(v, 0, 0);
  const d = x.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0, n = 0;
  for (let i = 0; i < d.length; i += 4 * 97) { const y = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += y; sq += y * y; n++; }
  const mean = sum / n; return [d[3], mean.toFixed(1), Math.sqrt(sq / n - mean * mean).toFixed(1)].join(' ');
}
v.addEventListener('error', () => { o.textContent = 'error ' + (v.error && v.error.message); });
v.addEventListener('canplay', () => {
  o.textContent = 'duration ' + v.duration + ' size ' + v.videoWidth + ' ' + v.videoHeight + ' first ' + paint();
  v.addEventListener('seeked', () => { o.textContent += ' late ' + paint() + ' done'; }, { once: true });
  v.currentTime = 2.0; // the simulator's second keyframe: one frame to decode
}, { once: true });
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_plays_the_clip() {
    let (pre, post) = (2u64, 3u64);
    let s = setup(pre, post, None).await;
    let bridge = Bridge::start(&s.config, s.http).await;
    bridge.warm(pre + 1).await;
    let (ring, _, _) = press(&s).await;
    let (mp4, _) = bridge.clip(ring["id"].as_u64().unwrap(), Duration::from_secs(post + 3)).await;
    drop(bridge);
    s.sim.stop().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clip.mp4"), &mp4).unwrap();
    std::fs::write(dir.path().join("page.html"), PAGE).unwrap();
    // `--virtual-time-budget` runs the page's clock ahead of the media pipeline's threads: on a
    // loaded machine the seek can still be decoding when the DOM is dumped. Such a run says
    // nothing of the clip, so it is run again (fresh profile), up to three times.
    let mut text = String::new();
    for attempt in 0..3 {
        let profile = dir.path().join(format!("profile-{attempt}"));
        let out = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"])
            .args(["--virtual-time-budget=20000", "--dump-dom"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("file://{}", dir.path().join("page.html").display()))
            .output()
            .expect("chromium (Debian package `chromium`, installed by scripts/test) runs");
        let dom = String::from_utf8_lossy(&out.stdout);
        text = dom.split("<pre id=\"out\">").nth(1).and_then(|t| t.split('<').next()).unwrap_or("").to_string();
        println!("chromium saw: {text}");
        if text.ends_with("done") {
            break;
        }
    }
    let w: Vec<&str> = text.split_whitespace().collect();
    assert!(text.ends_with("done"), "chromium did not play the clip: {text:?}");
    let duration: f64 = w[1].parse().unwrap();
    assert!(duration >= (pre + post) as f64 - 0.5 && duration <= (pre + post + 2) as f64 + 0.5, "{text}");
    assert_eq!((w[3], w[4]), ("1536", "2048"), "{text}");
    // Each painted frame is opaque and has a picture in it (a failed decode paints nothing or a
    // flat colour).
    for at in ["first", "late"] {
        let i = w.iter().position(|x| *x == at).unwrap();
        let (alpha, stddev): (u32, f64) = (w[i + 1].parse().unwrap(), w[i + 3].parse().unwrap());
        assert_eq!(alpha, 255, "{at}: {text}");
        assert!(stddev > 5.0, "{at} frame is flat: {text}");
    }
}
