//! Ring clip benchmark (see docs/benchmarks.md, "Ring clips"). Run through `bench/clips.sh`.
//!
//! 1. Pre-roll memory at 2 Mbit/s: the recorder fed 60 s of a synthetic 2 Mbit/s stream shaped
//!    like the DB1's (15 fps, a keyframe every 2 s eight times a P frame, AAC 16 kHz packets).
//! 2. In one run against the simulated doorbell (bridge and simulator in this process), for each
//!    of PRESSES presses: press -> clip available at `/api/rings/{id}/clip.mp4`, and, started at
//!    the same press, `ffmpeg -c copy` recording PRE + POST seconds from the doorbell's stream
//!    (its own RTSP session; it must wait for a keyframe): press -> file complete, its CPU time,
//!    and the simulator frame its recording starts at.
//! 3. CPU time to mux and write one clip: the last clip's frames muxed and written again, timed
//!    with this thread's CPU clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use doorbell_bridge::clips::mp4;
use doorbell_bridge::clips::recorder::{Recorder, Timed};
use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::rtsp::hub::Frame;
use doorbell_bridge::rtsp::keyframe::split_annexb;
use doorbell_bridge::sim::rtsp::frame_number_of;
use doorbell_bridge::sim::{Sim, SimOptions};
use doorbell_bridge::App;
use tokio_util::sync::CancellationToken;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU time of this thread (user + system) in ms, at the clock's resolution (not /proc's 10 ms).
fn thread_cpu_ms() -> f64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// CPU time (user + system, ms) of the children this process has waited for.
fn children_cpu_ms() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn preroll_at_2mbit() {
    let (fps, gop) = (15u64, 30u64);
    let per_gop = 2_000_000 / 8 * gop / fps; // bytes of video per GOP
    let p = per_gop / (gop - 1 + 8);
    let mut rec = Recorder::new(Duration::from_secs(4), Duration::from_secs(10));
    let t0 = Instant::now();
    let (mut held, mut frames, mut extra) = (Vec::new(), Vec::new(), Vec::new());
    let mut gop_bytes = 0usize;
    for n in 0..60 * fps {
        let at = t0 + Duration::from_nanos(n * 1_000_000_000 / fps);
        let key = n % gop == 0;
        let bytes = if key { 8 * p } else { p } as usize;
        gop_bytes = if key { bytes } else { gop_bytes + bytes };
        let v = Frame { wire: Bytes::from(vec![0u8; bytes]), track: 0, key, seq: 0, ts: 0, bytes };
        rec.frame(at, Arc::new(v));
        for _ in 0..1 + (n % 15 != 0) as u32 {
            let a = Frame { wire: Bytes::from(vec![0u8; 200]), track: 1, key: false, seq: 0, ts: 0, bytes: 200 };
            rec.frame(at, Arc::new(a));
        }
        if n >= 10 * fps {
            held.push(rec.buffer.bytes() as f64);
            frames.push(rec.buffer.len() as f64);
            // What the pre-roll keeps alive beyond the GOP cache (which holds the current GOP).
            extra.push(rec.buffer.bytes().saturating_sub(gop_bytes) as f64);
        }
    }
    for v in [&mut held, &mut frames, &mut extra] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "pre-roll 4 s at 2 Mbit/s: bytes held p50 {:.0} max {:.0} ({:.2} MB max), frames p50 {:.0} max {:.0}, beyond the GOP cache p50 {:.0} max {:.0} bytes",
        pct(&held, 50.0),
        pct(&held, 100.0),
        pct(&held, 100.0) / 1e6,
        pct(&frames, 50.0),
        pct(&frames, 100.0),
        pct(&extra, 50.0),
        pct(&extra, 100.0)
    );
}

async fn get_status(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

/// The simulator's frame numbers in an MP4 (they count from each RTSP session's PLAY).
fn frame_numbers(path: &std::path::Path) -> Vec<u64> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    split_annexb(&out).into_iter().filter_map(frame_number_of).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    preroll_at_2mbit();

    let presses = env_u64("PRESSES", 8);
    let (pre, post) = (env_u64("PRE", 4), env_u64("POST", 10));
    let sim = Sim::start(SimOptions { chime: Duration::from_millis(50), ..SimOptions::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = demo_config(&DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None }, &sim);
    cfg.onvif.enabled = false;
    cfg.ring.min_gap_ms = 0;
    cfg.clips.pre_roll_secs = Duration::from_secs(pre);
    cfg.clips.post_roll_secs = Duration::from_secs(post);
    cfg.log_level = "warn".into();
    let app = App::build(cfg, dir.path().to_path_buf()).await.unwrap();
    let http = app.http_addr();
    let hub = app.rtsp_hub.get("main").unwrap().clone();
    sim.set_coiot_target(app.coiot_addr().unwrap());
    let shutdown = CancellationToken::new();
    let bridge = tokio::spawn(app.run(shutdown.clone()));
    // Our own recorder on the same hub, to mux the last clip again for the CPU figure.
    let mut tap = hub.frames();
    let mine = Arc::new(std::sync::Mutex::new(Recorder::new(Duration::from_secs(pre), Duration::from_secs(post))));
    let last_clip: Arc<std::sync::Mutex<Vec<Timed>>> = Arc::default();
    {
        let (mine, last_clip) = (mine.clone(), last_clip.clone());
        tokio::spawn(async move {
            while let Ok(f) = tap.recv().await {
                if let Some(done) = mine.lock().unwrap().frame(Instant::now(), f) {
                    *last_clip.lock().unwrap() = done.frames;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(pre + 4)).await;
    let rtsp = format!("rtsp://{}:{}@{}/Streaming/Channels/101/", sim.opts.username, sim.opts.password, sim.rtsp_addr);

    let (mut bridge_ms, mut ffmpeg_ms, mut ffmpeg_cpu, mut ffmpeg_start) = (vec![], vec![], vec![], vec![]);
    for i in 0..presses {
        let out = dir.path().join(format!("ffmpeg-{i}.mp4"));
        let t = Instant::now();
        sim.ring();
        let mut ff = tokio::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-rtsp_transport", "tcp", "-i", &rtsp, "-t"])
            .arg(format!("{}", pre + post))
            .args(["-c", "copy", "-movflags", "+faststart"])
            .arg(&out)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        mine.lock().unwrap().ring(i + 1, t);
        let id = i + 1;
        let url = format!("http://{http}/api/rings/{id}/clip.mp4");
        let mut done_bridge = None;
        let mut done_ffmpeg = None;
        let cpu0 = children_cpu_ms();
        while done_bridge.is_none() || done_ffmpeg.is_none() {
            if done_bridge.is_none() && get_status(&url).await == Some(200) {
                done_bridge = Some(t.elapsed());
            }
            if done_ffmpeg.is_none() {
                if let Ok(Some(st)) = ff.try_wait() {
                    assert!(st.success(), "ffmpeg failed");
                    done_ffmpeg = Some(t.elapsed());
                }
            }
            assert!(t.elapsed() < Duration::from_secs(pre + post + 30), "press {id}: no clip");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ffmpeg_cpu.push(children_cpu_ms() - cpu0);
        let (b, f) = (done_bridge.unwrap().as_secs_f64() * 1000.0, done_ffmpeg.unwrap().as_secs_f64() * 1000.0);
        bridge_ms.push(b);
        ffmpeg_ms.push(f);
        // ffmpeg's own session numbers its frames from 0 at its PLAY: its first frame came when
        // the file was complete less the frames it holds.
        let n = frame_numbers(&out).len() as f64;
        let start = f - n * 1000.0 / 15.0;
        ffmpeg_start.push(start);
        println!(
            "press {id}: bridge clip after {b:.0} ms; ffmpeg file after {f:.0} ms holding {n} frames, so its first frame came {start:.0} ms after the press"
        );
        // Apart, so each press makes a clip of its own.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for v in [&mut bridge_ms, &mut ffmpeg_ms, &mut ffmpeg_cpu, &mut ffmpeg_start] {
        v.sort_by(f64::total_cmp);
    }
    let metrics = reqwest::get(format!("http://{http}/metrics")).await.unwrap().text().await.unwrap();
    let metric =
        |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(f64::NAN);
    println!(
        "press -> clip available ({presses} presses, pre {pre} s + post {post} s): bridge p50 {:.0} ms p95 {:.0} ms; ffmpeg -c copy p50 {:.0} ms p95 {:.0} ms",
        pct(&bridge_ms, 50.0),
        pct(&bridge_ms, 95.0),
        pct(&ffmpeg_ms, 50.0),
        pct(&ffmpeg_ms, 95.0)
    );
    println!(
        "ffmpeg: CPU per recording p50 {:.0} ms; its first frame p50 {:.0} ms after the press (the bridge's clip starts {} s before it)",
        pct(&ffmpeg_cpu, 50.0),
        pct(&ffmpeg_start, 50.0),
        pre
    );
    println!(
        "bridge: {} clips written, {:.1} ms wall per clip muxing + writing (from /metrics), pre-roll held {:.0} bytes of the simulator's stream",
        metric("doorbell_bridge_clips_written_total"),
        metric("doorbell_bridge_clips_write_seconds_total") * 1000.0 / metric("doorbell_bridge_clips_written_total"),
        metric("doorbell_bridge_clips_preroll_bytes")
    );

    // CPU of muxing and writing the last clip, 20 times.
    let frames = last_clip.lock().unwrap().clone();
    let desc = hub.description().unwrap();
    let mut cpu = Vec::new();
    let mut size = 0;
    for k in 0..20 {
        let c0 = thread_cpu_ms();
        let (body, _) = mp4::mux(&desc, &frames).unwrap();
        doorbell_bridge::datadir::write_atomic(
            &dir.path().join(format!("again-{k}.mp4")),
            &body,
            doorbell_bridge::datadir::Access::Default,
        )
        .unwrap();
        cpu.push(thread_cpu_ms() - c0);
        size = body.len();
    }
    cpu.sort_by(f64::total_cmp);
    println!(
        "mux + write one clip ({} frames, {size} bytes): CPU p50 {:.2} ms, mean {:.2} ms over 20",
        frames.len(),
        pct(&cpu, 50.0),
        cpu.iter().sum::<f64>() / cpu.len() as f64
    );
    shutdown.cancel();
    let _ = bridge.await;
    sim.stop().await;
}
