//! libavformat clients (the ffmpeg CLI with its defaults, PyAV opened as Home Assistant's stream
//! worker opens it) and a third-party camera (gst-rtsp-server, bench/gst_rtsp_camera.py) with
//! AAC or G.711 sound behind the bridge: every client reads video and audio, and a viewer
//! joining at any moment of the GOP has its first picture at once.

mod rtsp_common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use doorbell_bridge::sim::SimOptions;
use rtsp_common::*;
use tokio::io::AsyncBufReadExt;

/// The Python with PyAV that scripts/test makes (`DOORBELL_BRIDGE_TEST_PYAV`).
fn pyav() -> String {
    let p = std::env::var("DOORBELL_BRIDGE_TEST_PYAV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/pyav/bin/python"));
    assert!(p.exists(), "{} missing: scripts/test makes a venv with PyAV", p.display());
    p.to_string_lossy().into_owned()
}

fn bench(script: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench").join(script).to_string_lossy().into_owned()
}

/// gst-rtsp-server serving H.264 and a tone as `sound`; ends when dropped (stdin closes, killed).
struct Camera {
    _child: tokio::process::Child,
    port: u16,
}

async fn camera(sound: &str) -> Camera {
    let mut child = tokio::process::Command::new("/usr/bin/python3")
        .args([bench("gst_rtsp_camera.py").as_str(), sound])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3-gi and gst-rtsp-server (scripts/test installs them)");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let port = line.strip_prefix("ready ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    Camera { _child: child, port }
}

/// The bridge with the camera as its doorbell.
async fn bridge_on(cam: &Camera) -> Rig {
    let port = cam.port;
    let rig = Rig::start_with(SimOptions::default(), |c| {
        c.doorbell.rtsp_port = port;
        c.streams.get_mut("main").unwrap().path = "/Streaming/Channels/101".into();
    })
    .await;
    rig.wait_main().await;
    rig
}

async fn pyav_decode(url: &str) -> serde_json::Value {
    let out = run_tool(&pyav(), &[&bench("first_frame.py"), "--decode", url], Duration::from_secs(40)).await;
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("PyAV: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gst_rtsp_server_camera_with_aac_or_g711_is_heard_by_every_client() {
    for (sound, ff, retina_codec) in [("aac", "aac", "mpeg4-generic"), ("pcmu", "pcm_mulaw", "pcmu")] {
        let cam = camera(sound).await;
        let rig = bridge_on(&cam).await;
        let url = rig.url("main");
        // ffprobe: both streams, audio decoded.
        let streams = ffprobe(&url).await;
        assert_eq!(streams.len(), 2, "{streams:?}");
        assert_eq!((streams[0].1.as_str(), streams[1].1.as_str()), ("h264", ff), "{streams:?}");
        assert!(streams[1].3 >= 10, "{streams:?}");
        // PyAV as Home Assistant opens it.
        let p = pyav_decode(&url).await;
        assert_eq!(p["codecs"], serde_json::json!(["video:h264", format!("audio:{ff}")]), "{p}");
        assert!(p["video"].as_u64() >= Some(10) && p["audio"].as_u64() >= Some(10), "{p}");
        // GStreamer: both branches decode; retina demuxes both.
        gstreamer_decodes_both(&url, retina_codec).await;
        retina_reads_both(&url, retina_codec).await;
        rig.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyav_hears_the_simulated_aac_and_g711_doorbells() {
    use doorbell_bridge::sim::audio::SimAudio;
    for (audio, ff) in [(SimAudio::Aac, "aac"), (SimAudio::Pcmu, "pcm_mulaw")] {
        let rig = Rig::start_with(SimOptions { audio, ..SimOptions::default() }, |_| {}).await;
        rig.wait_main().await;
        let p = pyav_decode(&rig.url("main")).await;
        assert_eq!(p["codecs"], serde_json::json!(["video:h264", format!("audio:{ff}")]), "{p}");
        assert!(p["video"].as_u64() >= Some(10) && p["audio"].as_u64() >= Some(10), "{p}");
        rig.stop().await;
    }
}

/// p95 of a client's first-frame times over random joins, per URL, from bench/first_frame.py.
async fn first_frames(urls: &[&str], joins: usize) -> serde_json::Value {
    let joins = joins.to_string();
    let mut args = vec![bench("first_frame.py"), "--json".into(), "--joins".into(), joins, "--clients".into()];
    args.push("ffmpeg,pyav".into());
    args.extend(urls.iter().map(|u| u.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_tool(&pyav(), &args, Duration::from_secs(240)).await;
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("first_frame.py: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libavformat_clients_have_a_first_frame_at_any_moment_of_the_gop() {
    let sim = Rig::start(|_| {}).await;
    sim.wait_main().await;
    let cam = camera("aac").await;
    let on_cam = bridge_on(&cam).await;
    let (a, b) = (sim.url("main"), on_cam.url("main"));
    // Let both hubs hold a GOP before and after the current one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = first_frames(&[&a, &b], 8).await;
    // Without the longer burst, ffmpeg and PyAV wait for 20 live frames (1.3 s at 15 fps) after
    // joining early in a GOP. The machine is shared with builds: the bound has headroom; the
    // measured figures are in docs/benchmarks.md.
    for (k, v) in r.as_object().unwrap() {
        let p95 = v["p95_ms"].as_f64().unwrap();
        assert!(p95 < 700.0, "{k}: p95 {p95} ms ({v})");
    }
    on_cam.stop().await;
    sim.stop().await;
}

/// Video packets libavformat reads before `avformat_find_stream_info` is done ("All info found"),
/// from ffprobe's `-v debug -fdebug ts` log (one `read_frame_internal` line per packet read).
async fn video_packets_to_stream_info(url: &str) -> usize {
    let args = ["-v", "debug", "-fdebug", "ts", "-rtsp_transport", "tcp", url];
    let out = run_tool("ffprobe", &args, Duration::from_secs(30)).await;
    let log = String::from_utf8_lossy(&out.stderr);
    let (before, _) = log.split_once("All info found").unwrap_or_else(|| panic!("ffprobe found no stream info: {log}"));
    before.lines().filter(|l| l.contains("read_frame_internal stream=0,")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shortest_burst_holds_what_libavformat_reads_before_it_knows_the_streams() {
    use doorbell_bridge::rtsp::hub::BURST_VIDEO_FRAMES;
    let rig = Rig::start(|_| {}).await;
    rig.wait_main().await;
    // Two GOPs cached, so every join gets a burst of at least BURST_VIDEO_FRAMES video frames.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A viewer joining when the current GOP holds fewer frames than ffmpeg reads here waits for
    // live ones (67 ms each at 15 fps): the slow joins of the ffmpeg CLI's first-frame figure.
    let n = video_packets_to_stream_info(&rig.url("main")).await;
    assert!(n >= 20, "ffprobe read only {n} video packets: is the log format still the one parsed here?");
    assert!(
        n <= BURST_VIDEO_FRAMES,
        "libavformat reads {n} video frames before it knows the streams; the burst holds {BURST_VIDEO_FRAMES}"
    );
    rig.stop().await;
}
