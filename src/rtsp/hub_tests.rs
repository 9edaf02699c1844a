//! The hub's tests: re-stamping, the GOP cache and bursts, tracks, falling behind, one writer.

use super::*;
use crate::rtsp::sdp::Track;
use crate::rtsp::viewer::Pushed;

fn rtp(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn desc() -> Description {
    let track = |media: &str, pt: u8, clock_rate: u32, encoding: &str, upstream: usize| Track {
        media: media.into(),
        payload_type: pt,
        clock_rate,
        encoding: encoding.into(),
        media_lines: vec![],
        upstream,
    };
    Description {
        codec: VideoCodec::H264,
        tracks: vec![track("video", 96, 90_000, "H264", 0), track("audio", 0, 8000, "PCMU", 1)],
        param_sets: vec![0, 0, 0, 1, 0x67, 1],
    }
}

/// A hub whose doorbell session is playing.
fn playing() -> Arc<StreamHub> {
    let hub = StreamHub::new("main", StreamConfig::default());
    hub.begin_session(desc());
    hub
}

fn seqs(v: &Viewer) -> Vec<u16> {
    let mut fs = Vec::new();
    v.take(&mut fs);
    fs.iter().flat_map(|f| f.packets().map(|p| u16::from_be_bytes([p[2], p[3]]))).collect::<Vec<_>>()
}

#[test]
fn new_viewer_starts_at_the_cached_keyframe_and_restamps_continue() {
    let hub = playing();
    let t0 = Instant::now();
    hub.packet(0, &rtp(100, 1000, false, &[0x7c, 0x85, 1]), t0);
    hub.packet(0, &rtp(101, 1000, true, &[0x7c, 0x45, 2]), t0);
    hub.packet(0, &rtp(102, 7000, true, &[0x41, 3]), t0);
    let sub = hub.subscribe(1);
    let s = seqs(&sub.viewer);
    assert_eq!(s.len(), 3);
    assert!(s.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    let kf = hub.latest_keyframe().unwrap();
    assert_eq!(&kf.annexb[..], &[0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65, 1, 2]);
    // The doorbell reboots: new session, new numbering. The viewer sees no gap.
    hub.end_session();
    hub.begin_session(desc());
    let t1 = t0 + Duration::from_secs(3);
    hub.packet(0, &rtp(5, 50, true, &[0x65, 9]), t1);
    let s2 = seqs(&sub.viewer);
    assert_eq!(s2, vec![s[2].wrapping_add(1)]);
    assert_eq!(hub.stats.reconnects.load(Ordering::Relaxed), 1);
}

#[test]
fn slow_viewer_skips_to_the_next_keyframe() {
    let hub = playing();
    let t = Instant::now();
    let slow = hub.subscribe(1);
    let mut seq = 0u16;
    let mut ts = 0u32;
    for i in 0..(VIEWER_QUEUE_FRAMES + 10) {
        let nal = if i % 100 == 0 { 0x65 } else { 0x41 };
        hub.packet(0, &rtp(seq, ts, true, &[nal, 0]), t);
        seq += 1;
        ts += 6000;
    }
    assert!(slow.viewer.skipped.load(Ordering::Relaxed) > 0);
    let mut fs = Vec::new();
    slow.viewer.take(&mut fs);
    assert!(fs.is_empty(), "dropped until the next keyframe");
    hub.packet(0, &rtp(seq, ts, true, &[0x65, 0]), t);
    slow.viewer.take(&mut fs);
    assert!(fs.len() == 1 && fs[0].key);
}

#[test]
fn the_hub_queues_and_wakes_an_idle_writer_once() {
    let hub = playing();
    let t = Instant::now();
    let sub = hub.subscribe(0b11);
    let v = &sub.viewer;
    // The first frame into an empty queue wakes the writer; the ones behind it do not, the
    // writer takes them with it.
    let f = |key: bool, ts: u32| Arc::new(Frame { wire: Bytes::new(), track: 0, key, seq: 0, ts, bytes: 0 });
    assert_eq!(v.push(&f(true, 0)).0, Pushed::Wake);
    assert_eq!(v.push(&f(false, 1)).0, Pushed::Queued);
    let mut fs = Vec::new();
    v.take(&mut fs);
    assert_eq!(fs.len(), 2);
    assert_eq!(v.push(&f(false, 2)).0, Pushed::Wake, "taken empty: the next frame wakes again");
    v.take(&mut fs);
    // Through the hub: a frame becomes a wake-up permit for the viewer's writer task.
    hub.packet(0, &rtp(1, 9000, true, &[0x41, 1]), t);
    let woken = woken(v);
    assert!(woken, "the writer is woken");
    fs.clear();
    v.take(&mut fs);
    assert_eq!(fs.len(), 1);
    assert_eq!(&fs[0].wire[..2], &[b'$', 0], "framed for channel 0, written by the writer");
}

/// Whether a wake-up for `v` is pending (without waiting for one).
fn woken(v: &Viewer) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_millis(1), v.notify.notified()).await.is_ok() })
}

/// The single-writer rule, kept by construction: the hub's side (the hub and the viewer queues
/// it fills) has no socket to write to, so only a viewer's connection task can write its socket.
#[test]
fn the_hub_has_no_socket_type() {
    for (name, src) in [("hub.rs", include_str!("hub.rs")), ("viewer.rs", include_str!("viewer.rs"))] {
        let code: String = src.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        for word in ["TcpStream", "OwnedWriteHalf", "WriteHalf", "AsyncWrite", "try_write", "std::io::Write", "net::"] {
            assert!(!code.contains(word), "{name} mentions {word}");
        }
    }
}

#[test]
fn a_viewer_falling_behind_keeps_what_its_writer_took() {
    let hub = playing();
    let t = Instant::now();
    let sub = hub.subscribe(1);
    let v = &sub.viewer;
    hub.packet(0, &rtp(0, 0, true, &[0x65, 0]), t);
    // The writer took the keyframe and is stuck writing it; the hub keeps going.
    let mut taken = Vec::new();
    v.take(&mut taken);
    let mut ts = 6000u32;
    for i in 1..(VIEWER_QUEUE_FRAMES + 3) {
        hub.packet(0, &rtp(i as u16, ts, true, &[0x41, i as u8]), t);
        ts += 6000;
    }
    assert!(v.skipped.load(Ordering::Relaxed) > 0);
    assert!(taken.len() == 1 && taken[0].key, "what the writer holds is whole");
    let mut fs = Vec::new();
    v.take(&mut fs);
    assert!(fs.is_empty(), "nothing until the next keyframe");
    hub.packet(0, &rtp(999, ts, true, &[0x65, 1]), t);
    v.take(&mut fs);
    assert!(fs.len() == 1 && fs[0].key);
}

#[test]
fn audio_is_cached_from_the_keyframe_on_and_dropped_with_the_video() {
    let hub = playing();
    let t = Instant::now();
    hub.packet(1, &rtp(7, 0, true, &[0xaa]), t); // before any keyframe: nobody could start with it
    hub.packet(0, &rtp(1, 0, true, &[0x65, 1]), t);
    hub.packet(1, &rtp(8, 160, true, &[0xab]), t);
    hub.packet(0, &rtp(2, 6000, true, &[0x41, 2]), t);
    let both = hub.subscribe(0b11);
    let video = hub.subscribe(0b01);
    let audio = hub.subscribe(0b10);
    let tracks = |v: &Viewer| {
        let mut fs = Vec::new();
        v.take(&mut fs);
        fs.iter().map(|f| f.track).collect::<Vec<_>>()
    };
    assert_eq!(tracks(&both.viewer), vec![0, 1, 0]);
    assert_eq!(tracks(&video.viewer), vec![0, 0]);
    assert_eq!(tracks(&audio.viewer), vec![1]);
    // Each track has its own SSRC and numbering.
    assert_ne!(hub.ssrc(0), hub.ssrc(1));
    // `both` stops reading: once too far behind, audio is dropped along with the video until
    // the next keyframe, and both count.
    let mut a_ts = 320u32;
    for i in 0..VIEWER_QUEUE_FRAMES + 5 {
        hub.packet(1, &rtp(9 + i as u16, a_ts, true, &[0xac]), t);
        a_ts += 160;
    }
    let lost = both.viewer.skipped.load(Ordering::Relaxed);
    assert!(lost > 0);
    hub.packet(1, &rtp(500, a_ts, true, &[0xad]), t);
    assert_eq!(both.viewer.skipped.load(Ordering::Relaxed), lost + 1, "audio waits for the keyframe too");
    let mut fs = Vec::new();
    both.viewer.take(&mut fs);
    assert!(fs.is_empty());
    hub.packet(0, &rtp(3, 12000, true, &[0x65, 3]), t);
    hub.packet(1, &rtp(501, a_ts + 160, true, &[0xae]), t);
    assert_eq!(tracks(&both.viewer), vec![0, 1]);
    assert!(hub.stats.drops.load(Ordering::Relaxed) > lost);
}

#[test]
fn a_viewer_joining_a_young_gop_gets_the_one_before_too() {
    let hub = playing();
    let t = Instant::now();
    let mut ts = 0u32;
    let mut frame = |hub: &StreamHub, key: bool| {
        hub.packet(0, &rtp(0, ts, true, &[if key { 0x65 } else { 0x41 }, 0]), t);
        ts += 6000;
    };
    frame(&hub, true);
    for _ in 0..BURST_VIDEO_FRAMES + 5 {
        frame(&hub, false);
    }
    frame(&hub, true);
    frame(&hub, false);
    let sub = hub.subscribe(1);
    let mut fs = Vec::new();
    sub.viewer.take(&mut fs);
    assert_eq!(fs.len(), BURST_VIDEO_FRAMES + 8, "both GOPs");
    assert!(fs[0].key && fs[BURST_VIDEO_FRAMES + 6].key);
    assert_eq!(sub.first[0], Some((fs[0].seq, fs[0].ts)));
    // A GOP old enough is a burst of its own.
    for _ in 0..BURST_VIDEO_FRAMES {
        frame(&hub, false);
    }
    let sub = hub.subscribe(1);
    fs.clear();
    sub.viewer.take(&mut fs);
    assert_eq!(fs.len(), BURST_VIDEO_FRAMES + 2);
    assert!(fs[0].key);
}

#[test]
fn new_parameter_sets_reach_new_viewers_in_the_sdp_and_old_ones_in_band() {
    let hub = playing();
    let t = Instant::now();
    hub.packet(0, &rtp(1, 0, true, &[0x65, 1]), t);
    let old = hub.subscribe(1);
    let mut fs = Vec::new();
    old.viewer.take(&mut fs);
    // The owner switches resolution: the doorbell sends new SPS/PPS in-band before the IDR.
    hub.packet(0, &rtp(2, 6000, false, &[0x67, 0x4d, 0x00, 0x1f]), t);
    hub.packet(0, &rtp(3, 6000, false, &[0x68, 0xee]), t);
    hub.packet(0, &rtp(4, 6000, true, &[0x65, 2]), t);
    let d = hub.description().unwrap();
    assert_eq!(d.param_sets, vec![0, 0, 0, 1, 0x67, 0x4d, 0x00, 0x1f, 0, 0, 0, 1, 0x68, 0xee]);
    assert!(d.viewer_sdp("main", 1).contains("sprop-parameter-sets=Z00AHw==,aO4="));
    fs.clear();
    old.viewer.take(&mut fs);
    let firsts: Vec<u8> = fs.iter().flat_map(|f| f.packets().filter_map(rtp_payload).map(|p| p[0])).collect();
    assert_eq!(firsts, vec![0x67, 0x68, 0x65], "the viewer who stayed got them before the IDR");

    // A new session whose SDP has other parameter sets, and a doorbell that does not repeat
    // them in-band: the hub puts them before the next IDR, numbered in sequence.
    hub.end_session();
    let mut d2 = desc();
    d2.param_sets = vec![0, 0, 0, 1, 0x67, 0x64, 0, 0x28, 0, 0, 0, 1, 0x68, 0xce];
    hub.begin_session(d2);
    hub.packet(0, &rtp(900, 50, true, &[0x65, 3]), t + Duration::from_secs(1));
    fs.clear();
    old.viewer.take(&mut fs);
    assert_eq!(fs.len(), 1);
    let ps: Vec<&[u8]> = fs[0].packets().collect();
    let payloads: Vec<u8> = ps.iter().filter_map(|p| rtp_payload(p)).map(|p| p[0]).collect();
    assert_eq!(payloads, vec![0x67, 0x68, 0x65]);
    assert!(ps
        .windows(2)
        .all(|w| u16::from_be_bytes([w[1][2], w[1][3]]) == u16::from_be_bytes([w[0][2], w[0][3]]).wrapping_add(1)));
    assert!(ps.iter().all(|p| p[4..8] == ps[2][4..8]), "one timestamp");
    assert!(fs[0].key);
    // Only once.
    hub.packet(0, &rtp(901, 6050, true, &[0x65, 4]), t + Duration::from_secs(1));
    fs.clear();
    old.viewer.take(&mut fs);
    assert_eq!(fs[0].packets().count(), 1);
}

#[test]
fn a_doorbell_with_short_gops_still_gives_a_full_burst() {
    let hub = playing();
    let t = Instant::now();
    let mut ts = 0u32;
    let mut frame = |hub: &StreamHub, key: bool| {
        hub.packet(0, &rtp(0, ts, true, &[if key { 0x65 } else { 0x41 }, 0]), t);
        ts += 6000;
    };
    // GOPs of 10 frames: four of them, then a new one of 2 frames.
    for _ in 0..4 {
        frame(&hub, true);
        for _ in 0..9 {
            frame(&hub, false);
        }
    }
    frame(&hub, true);
    frame(&hub, false);
    let sub = hub.subscribe(1);
    let mut fs = Vec::new();
    sub.viewer.take(&mut fs);
    // The three GOPs before the current one bring its 2 frames to 32, at least BURST_VIDEO_FRAMES
    // (28; two would give 22).
    assert_eq!(fs.len(), 32);
    assert!(fs[0].key);
    assert_eq!(fs.iter().filter(|f| f.key).count(), 4);
    assert_eq!(sub.first[0], Some((fs[0].seq, fs[0].ts)));
    // The oldest GOP is no longer kept: the three after it hold enough.
    assert_eq!(hub.lock().prev_gops.len(), 3);
}
