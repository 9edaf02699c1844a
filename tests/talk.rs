//! Talking through the doorbell end to end: the bridge in front of the simulated doorbell, real
//! HTTP uploads to `POST /api/talk`, and the simulator's account of the G.711 it received.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use doorbell_bridge::demo::{demo_config, DemoOptions};
use doorbell_bridge::sim::{Sim, SimOptions};
use doorbell_bridge::talk::tone;
use doorbell_bridge::App;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Rig {
    sim: Sim,
    http: SocketAddr,
    shutdown: CancellationToken,
    app: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(backchannel: bool) -> Rig {
        Rig::start_with(backchannel, false).await
    }

    async fn start_with(backchannel: bool, onvif: bool) -> Rig {
        Rig::start_tuned(backchannel, onvif, |_| {}).await
    }

    async fn start_tuned(
        backchannel: bool,
        onvif: bool,
        tune: impl FnOnce(&mut doorbell_bridge::config::Config),
    ) -> Rig {
        let sim = Sim::start(SimOptions { backchannel, reboot_time: Duration::from_secs(1), ..SimOptions::default() })
            .await
            .unwrap();
        let opts = DemoOptions { http_port: 0, rtsp_port: 0, sim_port: 0, data_dir: None };
        let mut cfg = demo_config(&opts, &sim);
        cfg.coiot.enabled = false;
        cfg.onvif.enabled = onvif;
        tune(&mut cfg);
        let dir = tempfile::tempdir().unwrap();
        let app = App::build(cfg, dir.path().to_path_buf()).await.unwrap();
        let http = app.http_addr();
        let shutdown = CancellationToken::new();
        let sd = shutdown.clone();
        let app = tokio::spawn(async move {
            let _ = app.run(sd).await;
        });
        Rig { sim, http, shutdown, app, _dir: dir }
    }

    async fn talk_state(&self, want: &str) -> Value {
        self.talk_state_within(want, Duration::from_secs(10)).await
    }

    async fn talk_state_within(&self, want: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let s = get(&format!("http://{}/api/status", self.http)).await;
            if s["talk"]["state"] == want {
                return s["talk"].clone();
            }
            assert!(Instant::now() < deadline, "talk never became {want}: {}", s["talk"]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, body: Vec<u8>, mime: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/api/talk", self.http))
            .header("Content-Type", mime)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn sim_status(&self) -> Value {
        get(&format!("{}/sim/status", self.sim.url())).await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.app).await;
        self.sim.stop().await;
    }
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn tone_wav(hz: f32, secs: f32, rate: u32, channels: u16) -> Vec<u8> {
    tone::wav(rate, channels, &tone::sine(rate, hz, secs, 0.5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_second_tone_arrives_at_the_doorbell_then_bad_inputs_get_their_answers() {
    let rig = Rig::start(true).await;
    let talk = rig.talk_state("supported").await;
    assert_eq!(talk["codec"], "PCMU");
    // ONVIF is off in this rig: not asked, nothing said about it.
    assert_eq!((&talk["reason"], &talk["onvif_audio_output"]), (&Value::Null, &Value::Null), "{talk}");

    let before = rig.sim_status().await;
    let t = Instant::now();
    let (code, body) = rig.post(tone_wav(440.0, 2.0, 44100, 2), "audio/wav").await;
    let took = t.elapsed();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["packets"], 100);
    // Paced in real time: 2 s of audio takes about 2 s to send.
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(5), "{took:?}");
    let s = rig.sim_status().await;
    let ms = s["backchannel_ms"].as_u64().unwrap();
    let hz = s["backchannel_hz"].as_f64().unwrap();
    assert!((1950..=2050).contains(&ms), "{s}");
    assert!((hz - 440.0).abs() <= 10.0, "{s}");
    // Torn down at once: the doorbell counts one backchannel TEARDOWN more (the bridge's video
    // session may reconnect meanwhile on a loaded machine: counted apart), and no session stays open.
    assert_eq!(s["backchannel_teardowns"].as_u64(), before["backchannel_teardowns"].as_u64().map(|n| n + 1), "{s}");
    assert!(s["rtsp_sessions"].as_u64() <= before["rtsp_sessions"].as_u64(), "{before} {s}");

    // Two talkers at once: the second gets 409 while the first plays.
    let first = {
        let body = tone_wav(300.0, 1.5, 16000, 1);
        let url = format!("http://{}/api/talk", rig.http);
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("Content-Type", "audio/wav")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (code, body) = rig.post(tone_wav(500.0, 0.5, 8000, 1), "audio/wav").await;
    assert_eq!((code, body["error"].as_str()), (409, Some("busy")), "{body}");
    assert_eq!(first.await.unwrap().as_u16(), 200);

    // Not audio; Opus in OGG; a truncated header; empty; too large.
    let (code, body) = rig.post(b"this is not audio at all".to_vec(), "audio/wav").await;
    assert_eq!((code, body["error"].as_str()), (415, Some("unsupported_format")), "{body}");
    let opus = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/talk/tone440.opus")).unwrap();
    let (code, body) = rig.post(opus, "audio/ogg").await;
    assert_eq!(code, 415, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("Opus"), "{body}");
    let wav = tone_wav(440.0, 1.0, 8000, 1);
    let (code, body) = rig.post(wav[..40].to_vec(), "audio/wav").await;
    assert!(code == 400 || code == 415, "{code} {body}");
    let (code, _) = rig.post(Vec::new(), "audio/wav").await;
    assert_eq!(code, 400);
    // Too large: refused from its Content-Length, before the body is read (so a client is
    // answered without uploading it; reqwest would see the early close as a broken pipe).
    let head = format!(
        "POST /api/talk HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n\r\n",
        doorbell_bridge::talk::MAX_BODY_BYTES + 1
    );
    let mut sock = tokio::net::TcpStream::connect(rig.http).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&[0u8; 4096]).await.unwrap();
    let mut resp = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut resp)).await.unwrap().unwrap();
    let resp = String::from_utf8_lossy(&resp[..n]);
    assert!(resp.starts_with("HTTP/1.1 413") && resp.contains("too_large"), "{resp}");
    let long = tone_wav(440.0, doorbell_bridge::talk::MAX_SECONDS as f32 + 1.0, 8000, 1);
    let (code, _) = rig.post(long, "audio/wav").await;
    assert_eq!(code, 413);

    // Other formats TTS engines produce: MP3 and FLAC (made by ffmpeg).
    for (file, mime) in [("tone660.mp3", "audio/mpeg"), ("tone660.flac", "audio/flac")] {
        let data = std::fs::read(format!("{}/tests/data/talk/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let (code, body) = rig.post(data, mime).await;
        assert_eq!(code, 200, "{file}: {body}");
        let s = rig.sim_status().await;
        assert!((s["backchannel_hz"].as_f64().unwrap() - 660.0).abs() <= 10.0, "{file}: {s}");
        assert!((900..=1100).contains(&s["backchannel_ms"].as_u64().unwrap()), "{file}: {s}");
    }

    // And after all that, a talk still works.
    let (code, _) = rig.post(tone_wav(1000.0, 0.5, 22050, 1), "audio/wav").await;
    assert_eq!(code, 200);
    let s = rig.sim_status().await;
    assert!((s["backchannel_hz"].as_f64().unwrap() - 1000.0).abs() <= 10.0, "{s}");
    assert!((480..=520).contains(&s["backchannel_ms"].as_u64().unwrap()), "{s}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_backchannel_talk_is_unsupported_with_a_clear_error() {
    let rig = Rig::start(false).await;
    let talk = rig.talk_state("unsupported").await;
    assert!(talk["reason"].as_str().unwrap().contains("backchannel"), "{talk}");
    let (code, body) = rig.post(tone_wav(440.0, 0.5, 8000, 1), "audio/wav").await;
    assert_eq!((code, body["error"].as_str()), (501, Some("talk_unsupported")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("backchannel"), "{body}");
    let s = rig.sim_status().await;
    assert_eq!(s["backchannel_packets"], 0);
    assert_eq!(s["backchannel_sessions"], 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doorbell_is_probed_again_when_it_comes_back_online() {
    let rig = Rig::start_with(true, true).await;
    let talk = rig.talk_state("supported").await;
    // Both the DESCRIBE and ONVIF's media service say yes: no reason to give.
    assert_eq!((&talk["reason"], &talk["onvif_audio_output"]), (&Value::Null, &Value::Bool(true)), "{talk}");
    let c = reqwest::Client::new();
    let sim = rig.sim.url();
    assert!(c.post(format!("{sim}/sim/backchannel?enabled=off")).send().await.unwrap().status().is_success());
    // Nothing asks the doorbell until it reconnects: still supported.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.talk_state("supported").await;
    assert!(c.post(format!("{sim}/sim/reboot")).send().await.unwrap().status().is_success());
    let talk = rig.talk_state_within("unsupported", Duration::from_secs(30)).await;
    let reason = talk["reason"].as_str().unwrap();
    assert!(reason.contains("backchannel") && reason.ends_with("ONVIF lists no audio output"), "{talk}");
    assert_eq!(talk["onvif_audio_output"], false, "{talk}");
    // And back on: the next reconnect finds it again.
    assert!(c.post(format!("{sim}/sim/backchannel?enabled=on")).send().await.unwrap().status().is_success());
    assert!(c.post(format!("{sim}/sim/reboot")).send().await.unwrap().status().is_success());
    let talk = rig.talk_state_within("supported", Duration::from_secs(30)).await;
    assert_eq!((&talk["reason"], &talk["onvif_audio_output"]), (&Value::Null, &Value::Bool(true)), "{talk}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_does_not_cut_the_message_short() {
    let rig = Rig::start(true).await;
    rig.talk_state("supported").await;
    let before = rig.sim_status().await;
    let wav = tone_wav(440.0, 1.0, 8000, 1);
    let head = format!(
        "POST /api/talk HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n\r\n",
        wav.len()
    );
    let mut sock = tokio::net::TcpStream::connect(rig.http).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&wav).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(sock);
    // The message plays out and the session is torn down.
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = rig.sim_status().await;
        if s["backchannel_teardowns"].as_u64() > before["backchannel_teardowns"].as_u64() {
            break s;
        }
        assert!(Instant::now() < deadline, "no TEARDOWN: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!((980..=1020).contains(&s["backchannel_ms"].as_u64().unwrap()), "{s}");
    // And the talker slot is free again.
    let (code, body) = rig.post(tone_wav(700.0, 0.3, 8000, 1), "audio/wav").await;
    assert_eq!(code, 200, "{body}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reason_says_what_onvif_answered_when_there_is_no_backchannel() {
    let rig = Rig::start_with(false, true).await;
    let talk = rig.talk_state("unsupported").await;
    let reason = talk["reason"].as_str().unwrap();
    assert!(reason.contains("backchannel") && reason.ends_with("ONVIF lists no audio output"), "{talk}");
    assert_eq!(talk["onvif_audio_output"], false, "{talk}");
    // The ONVIF answer only explains: talking is refused on the DESCRIBE's word.
    let (code, body) = rig.post(tone_wav(440.0, 0.3, 8000, 1), "audio/wav").await;
    assert_eq!((code, body["error"].as_str()), (501, Some("talk_unsupported")), "{body}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_onvif_service_keeps_the_describe_verdict_and_says_so() {
    // A port nothing listens on: ONVIF gets connection refused, RTSP still answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let rig = Rig::start_tuned(true, true, |cfg| cfg.doorbell.http_port = closed).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let talk = loop {
        let talk = rig.talk_state("supported").await;
        if !talk["reason"].is_null() {
            break talk;
        }
        assert!(Instant::now() < deadline, "ONVIF never reported: {talk}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = talk["reason"].as_str().unwrap();
    assert!(reason.contains("ONVIF could not tell"), "{talk}");
    assert_eq!(talk["onvif_audio_output"], Value::Null, "{talk}");
    // And a message still plays.
    let (code, body) = rig.post(tone_wav(440.0, 0.3, 8000, 1), "audio/wav").await;
    assert_eq!(code, 200, "{body}");
    rig.stop().await;
}
