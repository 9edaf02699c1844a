//! The doorbell's sound through the bridge: AAC and G.711 doorbells (simulated), read by real
//! clients (ffprobe, GStreamer's rtspsrc, retina), tracks set up one by one, audio in step with
//! the video burst a new viewer starts with, and how soon libavformat has a first frame.

mod rtsp_common;

use std::time::{Duration, Instant};

use doorbell_bridge::sim::audio::SimAudio;
use doorbell_bridge::sim::SimOptions;
use rtsp_common::*;

async fn rig(audio: SimAudio) -> Rig {
    let rig = Rig::start_with(SimOptions { audio, ..SimOptions::default() }, |_| {}).await;
    rig.wait_main().await;
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aac_doorbell_is_heard_through_ffprobe_gstreamer_and_retina() {
    let rig = rig(SimAudio::Aac).await;
    let url = rig.url("main");
    let streams = ffprobe(&url).await;
    assert_eq!(streams.len(), 2, "{streams:?}");
    assert_eq!((streams[0].0.as_str(), streams[0].1.as_str()), ("video", "h264"));
    assert_eq!((streams[1].0.as_str(), streams[1].1.as_str(), streams[1].2), ("audio", "aac", 16000));
    // 2 s of 1024-sample frames at 16 kHz is ~31; the burst adds a little.
    assert!(streams[1].3 >= 20, "ffprobe decoded {} AAC frames", streams[1].3);
    gstreamer_decodes_both(&url, "mpeg4-generic").await;
    retina_reads_both(&url, "mpeg4-generic").await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g711_doorbells_are_heard_through_ffprobe_gstreamer_and_retina() {
    for (kind, ff, enc) in [(SimAudio::Pcmu, "pcm_mulaw", "pcmu"), (SimAudio::Pcma, "pcm_alaw", "pcma")] {
        let rig = rig(kind).await;
        let url = rig.url("main");
        let streams = ffprobe(&url).await;
        assert_eq!(streams.len(), 2, "{streams:?}");
        assert_eq!((streams[1].0.as_str(), streams[1].1.as_str(), streams[1].2), ("audio", ff, 8000));
        // 20 ms packets: 2 s is 100 of them.
        assert!(streams[1].3 >= 60, "ffprobe decoded {} {ff} frames", streams[1].3);
        gstreamer_decodes_both(&url, enc).await;
        retina_reads_both(&url, enc).await;
        rig.stop().await;
    }
}

fn rtp_ts(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[4], p[5], p[6], p[7]])
}

/// `seq` and `rtptime` of the `RTP-Info` entry for `track`.
fn rtp_info(play: &Resp, track: usize) -> (u16, u32) {
    let info = play.header("RTP-Info").unwrap();
    let entry = info.split(',').find(|e| e.contains(&format!("trackID={track};"))).unwrap_or_else(|| panic!("{info}"));
    let get = |k: &str| entry.split(';').find_map(|p| p.strip_prefix(k)).unwrap().parse::<u64>().unwrap();
    (get("seq=") as u16, get("rtptime=") as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_are_set_up_one_by_one_and_audio_starts_with_the_keyframe() {
    let rig = rig(SimAudio::Aac).await;
    let url = rig.url("main");
    let mut c = Raw::connect(rig.rtsp).await;
    let d = c.request("DESCRIBE", &url, &[]).await;
    assert_eq!(d.status, 200);
    let t = |a: u8| ("Transport", format!("RTP/AVP/TCP;unicast;interleaved={a}-{}", a + 1));
    // A track the stream does not have is not found.
    assert_eq!(c.request("SETUP", &format!("{url}/trackID=2"), &[t(4)]).await.status, 404);
    assert_eq!(c.request("SETUP", &format!("{url}/trackID=x"), &[t(4)]).await.status, 404);
    // Audio on channel 6, video on 0: the viewer chooses.
    assert_eq!(c.request("SETUP", &format!("{url}/trackID=1"), &[t(6)]).await.status, 200);
    assert_eq!(c.request("SETUP", &format!("{url}/trackID=0"), &[t(0)]).await.status, 200);
    let play = c.request("PLAY", &url, &[]).await;
    assert_eq!(play.status, 200);
    let played = Instant::now();
    let (v_seq, v_ts) = rtp_info(&play, 0);
    let (a_seq, a_ts) = rtp_info(&play, 1);
    let (mut first_v, mut first_a, mut last_v, mut last_a) = (None, None, 0u32, 0u32);
    while played.elapsed() < Duration::from_secs(3) {
        match tokio::time::timeout(Duration::from_secs(5), c.next()).await.unwrap().unwrap() {
            Got::Rtp(0, p) => {
                if first_v.is_none() {
                    assert!(key(&p), "video starts at a keyframe");
                    assert_eq!((seq(&p), rtp_ts(&p)), (v_seq, v_ts), "RTP-Info names the first video packet");
                    first_v = Some(played.elapsed());
                }
                last_v = rtp_ts(&p);
            }
            Got::Rtp(6, p) => {
                assert_eq!(p[1] & 0x7f, 97, "the doorbell's AAC payload type");
                if first_a.is_none() {
                    assert_eq!((seq(&p), rtp_ts(&p)), (a_seq, a_ts), "RTP-Info names the first audio packet");
                    first_a = Some(played.elapsed());
                }
                last_a = rtp_ts(&p);
            }
            Got::Rtp(ch, _) => panic!("data on channel {ch}, which nobody set up"),
            Got::Resp(_) => {}
        }
    }
    // Both arrive at once (the cache), and the two clocks, counted from RTP-Info, agree: a
    // player starting both at RTP-Info's times plays them in step.
    assert!(first_v.unwrap() < Duration::from_millis(300) && first_a.unwrap() < Duration::from_millis(300));
    let v = last_v.wrapping_sub(v_ts) as f64 / 90_000.0;
    let a = last_a.wrapping_sub(a_ts) as f64 / 16_000.0;
    assert!((v - a).abs() < 0.15, "video at {v:.3} s, audio at {a:.3} s since the start");
    rig.stop().await;
}
