//! Talk benchmark: `POST /api/talk` -> first audio packet at the simulated doorbell (p50/p95),
//! and CPU per second of speech of the bridge's decode -> 8 kHz -> G.711 path side by side with
//! ffmpeg doing the same conversion (`-ar 8000 -ac 1 -f mulaw`) on the same file.
//! Usage: `cargo run --release --example talk_bench -- [TALKS]` (needs ffmpeg).

use std::process::Command;
use std::time::{Duration, Instant};

use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::sim::{Sim, SimOptions};
use doorbell_bridge::talk::{decode, g711::Law};
use doorbell_bridge::App;
use tokio_util::sync::CancellationToken;

/// Run time of the calling thread in ns (Linux schedstat).
fn thread_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// user+sys of this whole process in seconds (/proc/self/stat, clock ticks of 10 ms).
fn process_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // After the name: state is not numeric, so utime/stime are the 11th and 12th numbers.
    (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) as f64 / 100.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn make(dir: &std::path::Path, name: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let ok = Command::new("ffmpeg")
        .args(["-y", "-hide_banner", "-loglevel", "error"])
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg runs")
        .success();
    assert!(ok, "ffmpeg failed for {name}");
    std::fs::read(path).unwrap()
}

/// user+sys seconds of one ffmpeg conversion to 8 kHz mu-law.
fn ffmpeg_cpu(input: &std::path::Path) -> f64 {
    let script = format!(
        "TIMEFORMAT='%3U %3S'; {{ time ffmpeg -hide_banner -loglevel error -i '{}' -ar 8000 -ac 1 -f mulaw - >/dev/null; }} 2>&1",
        input.display()
    );
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace().filter_map(|v| v.parse::<f64>().ok()).sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let talks: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    // What TTS engines hand over: MP3 at 44.1 kHz stereo (cloud) / 22.05 kHz mono WAV (Piper).
    let speech = "sine=frequency=440:duration=10:sample_rate=44100,aeval=val(0)*(0.6+0.4*sin(2*PI*3*t))";
    let mp3 = make(dir.path(), "msg.mp3", &["-f", "lavfi", "-i", speech, "-ac", "2", "-b:a", "128k"]);
    let wav = make(dir.path(), "msg.wav", &["-f", "lavfi", "-i", speech, "-ar", "22050", "-ac", "1"]);
    let short = make(dir.path(), "short.mp3", &["-f", "lavfi", "-i", "sine=frequency=440:duration=0.3", "-b:a", "64k"]);

    println!("CPU per second of speech (10 s message; median of 5 runs each, interleaved):");
    for (name, data, mime) in [("msg.mp3", &mp3, "audio/mpeg"), ("msg.wav", &wav, "audio/wav")] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = thread_ns();
            let pcm = decode::decode_to_8k(data, Some(mime), 60).unwrap();
            let g: Vec<u8> = pcm.iter().map(|&s| Law::Mu.encode(s)).collect();
            std::hint::black_box(g);
            ours.push((thread_ns() - t) as f64 / 1e9 / (pcm.len() as f64 / 8000.0));
            theirs.push(ffmpeg_cpu(&dir.path().join(name)) / 10.0);
        }
        let (o, f) = (pct(&mut ours, 0.5), pct(&mut theirs, 0.5));
        println!(
            "  {name}: bridge {:.2} ms CPU/s, ffmpeg {:.2} ms CPU/s (process incl. start), ratio {:.3}",
            o * 1e3,
            f * 1e3,
            o / f
        );
    }

    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let opts = DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
    let mut cfg = demo_config(&opts, &sim);
    cfg.coiot.enabled = false;
    cfg.onvif.enabled = false;
    let app = App::build(cfg, dir.path().join("data")).await.unwrap();
    let url = format!("http://{}/api/talk", app.http_addr());
    let status = format!("http://{}/api/status", app.http_addr());
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    let task = tokio::spawn(async move {
        let _ = app.run(sd).await;
    });
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: serde_json::Value = client.get(&status).send().await.unwrap().json().await.unwrap();
        if s["talk"]["state"] == "supported" {
            break;
        }
        assert!(Instant::now() < deadline, "talk never supported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::new();
    let mut speech = 0.0;
    let cpu0 = process_cpu();
    for _ in 0..talks {
        let t = Instant::now();
        let r = client.post(&url).header("Content-Type", "audio/mpeg").body(short.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        speech += body["seconds"].as_f64().unwrap_or(0.0);
        let first = sim.state.backchannel.first_packet_at().expect("audio arrived");
        lat.push(first.duration_since(t).as_secs_f64() * 1e3);
    }
    println!(
        "POST /api/talk (0.3 s MP3) -> first audio packet at the doorbell, {talks} talks: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.95),
        pct(&mut lat, 1.0)
    );
    let cpu = process_cpu() - cpu0;
    println!(
        "whole process (bridge + simulated doorbell + HTTP client) during those talks: {:.1} ms CPU per second of speech ({speech:.1} s of speech)",
        cpu * 1e3 / speech
    );
    shutdown.cancel();
    let _ = task.await;
    sim.stop().await;
}
