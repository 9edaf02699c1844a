//! RTSP fan-out end to end: the bridge in front of the simulated doorbell, with real clients
//! (ffprobe/ffmpeg, GStreamer's rtspsrc, retina) and a raw client that checks the bytes.

mod rtsp_common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use doorbell_bridge::media::VideoCodec;
use doorbell_bridge::rtsp::hub::rtp_payload;
use doorbell_bridge::rtsp::server::auth::digest_authorization;
use doorbell_bridge::rtsp::server::codec;
use futures::StreamExt;
use rtsp_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_play_and_a_new_viewer_starts_at_a_keyframe() {
    let rig = Rig::start(|_| {}).await;
    rig.wait_main().await;
    let url = rig.url("main");

    // ffprobe decodes frames: portrait 1536x2048 H.264.
    let out = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v",
            "-read_intervals",
            "%+2",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
            &url,
        ],
        Duration::from_secs(30),
    )
    .await;
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let s = &j["streams"][0];
    assert_eq!(s["codec_name"], "h264", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(1536), Some(2048)));
    let frames: u64 = s["nb_read_frames"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(frames >= 10, "ffprobe decoded only {frames} frames");

    // ffmpeg decodes without a single error: the first frame it gets is a whole keyframe.
    let out = run_tool(
        "ffmpeg",
        &["-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", &url, "-t", "2", "-f", "null", "-"],
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "ffmpeg reported: {}", String::from_utf8_lossy(&out.stderr));

    // GStreamer's rtspsrc plays it (trying UDP first, getting 461, falling back to TCP) and
    // decodes 20 frames.
    let loc = format!("location={url}");
    let out = run_tool(
        "gst-launch-1.0",
        &[
            "-q",
            "rtspsrc",
            &loc,
            "!",
            "rtph264depay",
            "!",
            "h264parse",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
            "num-buffers=20",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success(), "gst-launch failed: {}", String::from_utf8_lossy(&out.stderr));

    // retina reads it, and a new viewer's first frame is a keyframe, at once.
    let t0 = Instant::now();
    let mut session =
        retina::client::Session::describe(url::Url::parse(&url).unwrap(), Default::default()).await.unwrap();
    session
        .setup(0, retina::client::SetupOptions::default().transport(retina::client::Transport::Tcp(Default::default())))
        .await
        .unwrap();
    let play_at = Instant::now();
    let mut demuxed = session.play(Default::default()).await.unwrap().demuxed().unwrap();
    let mut first_key = None;
    let mut n = 0;
    while n < 20 {
        match tokio::time::timeout(Duration::from_secs(10), demuxed.next()).await.unwrap() {
            Some(Ok(retina::codec::CodecItem::VideoFrame(f))) => {
                if n == 0 {
                    assert!(f.is_random_access_point(), "first frame must be a keyframe");
                    first_key = Some(play_at.elapsed());
                }
                n += 1;
            }
            Some(Ok(_)) => {}
            other => panic!("retina: {other:?}"),
        }
    }
    let first_key = first_key.unwrap();
    assert!(first_key < Duration::from_millis(500), "first keyframe after {first_key:?} (GOP is 2 s)");
    assert!(t0.elapsed() < Duration::from_secs(10));
    drop(demuxed);

    // One session on the doorbell for all of them.
    assert_eq!(sim_status(&rig.sim).await["rtsp_sessions_peak"], 1);

    // The snapshot side gets the cached keyframe as Annex B that decodes on its own.
    use doorbell_bridge::media::KeyframeSource;
    use openh264::formats::YUVSource;
    let kf = rig.hub.latest_keyframe("main").expect("a keyframe is cached");
    assert_eq!(kf.codec, VideoCodec::H264);
    assert_eq!(&kf.annexb[..5], &[0, 0, 0, 1, 0x67]);
    let mut dec = openh264::decoder::Decoder::new().unwrap();
    let pic = dec.decode(&kf.annexb).unwrap().expect("one picture from the keyframe alone");
    assert_eq!(pic.dimensions(), (1536, 2048));
    assert!(rig.hub.latest_keyframe("sub").is_none(), "sub is on-demand and nobody watched it");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_viewers_hold_exactly_one_doorbell_session() {
    let rig = Rig::start(|_| {}).await;
    rig.wait_main().await;
    let url = rig.url("main");
    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(tokio::spawn({
            let (addr, url) = (rig.rtsp, url.clone());
            async move {
                let (mut c, play) = Raw::play(addr, &url).await;
                let at = Instant::now();
                let first = c.rtp().await.unwrap();
                let first_after = at.elapsed();
                let info = play.header("RTP-Info").unwrap();
                assert!(info.contains(&format!("seq={}", seq(&first))), "{info} vs {}", seq(&first));
                let mut last = seq(&first);
                let mut got = 1;
                while got < 60 {
                    let p = c.rtp().await.unwrap();
                    assert_eq!(seq(&p), last.wrapping_add(1), "a gap");
                    last = seq(&p);
                    got += 1;
                }
                (key(&first), first_after, c)
            }
        }));
    }
    let mut held = Vec::new();
    for v in viewers {
        let (first_is_key, after, c) = tokio::time::timeout(Duration::from_secs(30), v).await.unwrap().unwrap();
        assert!(first_is_key, "every viewer starts at a keyframe");
        assert!(after < Duration::from_millis(500), "first packet after {after:?}");
        held.push(c);
    }
    let st = status(rig.http).await;
    assert_eq!(st["streams"]["main"]["clients"], 20);
    assert_eq!(st["streams"]["main"]["upstream_sessions"], 1);
    assert_eq!(st["streams"]["main"]["upstream"], "connected");
    let sim = sim_status(&rig.sim).await;
    assert_eq!(sim["rtsp_sessions"], 1, "{sim}");
    assert_eq!(sim["rtsp_sessions_peak"], 1, "{sim}");
    let metrics = http_get(rig.http, "/metrics").await;
    assert!(metrics.contains("doorbell_bridge_rtsp_clients{stream=\"main\"} 20"), "{metrics}");
    drop(held);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_survive_a_doorbell_reboot_with_continuous_numbering() {
    let rig = Rig::start(|_| {}).await;
    rig.wait_main().await;
    let (mut c, _) = Raw::play(rig.rtsp, &rig.url("main")).await;
    let mut last = seq(&c.rtp().await.unwrap());
    let mut last_ts = 0u32;
    for _ in 0..30 {
        let p = c.rtp().await.unwrap();
        assert_eq!(seq(&p), last.wrapping_add(1));
        last = seq(&p);
        last_ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    }
    let mut s = TcpStream::connect(rig.sim.http_addr).await.unwrap();
    s.write_all(b"POST /sim/reboot HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let rebooted = Instant::now();
    let mut s2 = String::new();
    s.read_to_string(&mut s2).await.unwrap();
    // Drain what was sent before the doorbell went away, then wait for video to come back.
    let mut back_at = None;
    let mut keys_after = 0;
    let deadline = rebooted + Duration::from_secs(3 + 5 + 2);
    while Instant::now() < deadline {
        let p = match tokio::time::timeout(deadline - Instant::now(), c.rtp()).await {
            Ok(p) => p.expect("the viewer's connection stays open"),
            Err(_) => break,
        };
        assert_eq!(seq(&p), last.wrapping_add(1), "sequence numbers continue across the reboot");
        let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert!(ts.wrapping_sub(last_ts) < 90_000 * 30, "timestamps move forward");
        last = seq(&p);
        last_ts = ts;
        if rebooted.elapsed() > Duration::from_secs(2) && back_at.is_none() {
            back_at = Some(rebooted.elapsed());
        }
        if back_at.is_some() && key(&p) {
            keys_after += 1;
        }
        if keys_after > 0 && rebooted.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let back = back_at.expect("video came back");
    // The doorbell is away 3 s; it starts a new session at a keyframe, so video is back within
    // 1 s of the doorbell (the first retry goes at once, the next ones back off to <= 0.8 s).
    assert!(back < Duration::from_millis(3000 + 1000 + 200), "video back after {back:?}");
    println!("doorbell away 3 s: video back {:.0} ms after the reboot began", back.as_secs_f64() * 1000.0);
    assert!(keys_after > 0);
    let st = status(rig.http).await;
    assert!(st["streams"]["main"]["reconnects"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(sim_status(&rig.sim).await["rtsp_sessions"], 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_does_not_stall_the_others() {
    let rig = Rig::start(|c| c.server.rtsp_stall_secs = Duration::from_secs(2)).await;
    rig.wait_main().await;
    let url = rig.url("main");
    // The stalled viewer: tiny receive buffer, plays, never reads again.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stalled = sock.connect(rig.rtsp).await.unwrap();
    let mut stalled = Raw { sock: stalled, buf: Vec::new(), cseq: 0, session: None };
    assert_eq!(stalled.request("DESCRIBE", &url, &[]).await.status, 200);
    let t = ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1".to_string());
    assert_eq!(stalled.request("SETUP", &format!("{url}/trackID=0"), &[t]).await.status, 200);
    stalled.request("PLAY", &url, &[]).await;

    let (mut good, _) = Raw::play(rig.rtsp, &url).await;
    let start = Instant::now();
    let mut last = seq(&good.rtp().await.unwrap());
    let mut gap_max = Duration::ZERO;
    let mut prev = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let p = good.rtp().await.unwrap();
        assert_eq!(seq(&p), last.wrapping_add(1), "the reading viewer loses nothing");
        last = seq(&p);
        gap_max = gap_max.max(prev.elapsed());
        prev = Instant::now();
    }
    assert!(gap_max < Duration::from_millis(700), "longest wait between packets {gap_max:?}");
    let st = status(rig.http).await;
    let main = &st["streams"]["main"];
    eprintln!("after 8 s: {main}");
    assert!(main["stalled"].as_u64().unwrap() >= 1, "the stalled viewer was disconnected: {main}");
    drop(stalled);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_and_viewers_off_loopback_need_credentials() {
    let rig = Rig::start(|c| c.server.trust_loopback = false).await;
    let url = rig.url("main");
    let expect_status = |raw: &[u8], want: u16| {
        let text = String::from_utf8_lossy(raw).to_string();
        assert!(text.starts_with(&format!("RTSP/1.0 {want} ")), "wanted {want}, got {text:?}");
    };
    async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        out
    }
    expect_status(&exchange(rig.rtsp, b"\x16\x03\x01\x00\xa5garbage\r\n\r\n").await, 400);
    expect_status(&exchange(rig.rtsp, b"DESCRIBE rtsp://x/main RTSP/2.0\r\nCSeq: 1\r\n\r\n").await, 505);
    let mut big = b"DESCRIBE rtsp://x/main RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ".to_vec();
    big.resize(codec::MAX_REQUEST + 100, b'a');
    expect_status(&exchange(rig.rtsp, &big).await, 413);
    expect_status(
        &exchange(rig.rtsp, b"SET_PARAMETER rtsp://x/ RTSP/1.0\r\nContent-Length: 999999\r\n\r\n").await,
        413,
    );

    // Credentials: none -> 401 with a Digest challenge; Digest and Basic both work.
    let mut c = Raw::connect(rig.rtsp).await;
    let r = c.request("DESCRIBE", &url, &[]).await;
    assert_eq!(r.status, 401);
    let chal = r.header("WWW-Authenticate").unwrap();
    let nonce = chal.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rig._dir.path().join("credentials.json")).unwrap()).unwrap();
    let (user, pass) = (creds["rtsp_username"].as_str().unwrap(), creds["rtsp_password"].as_str().unwrap());
    let wrong = digest_authorization(user, "nope", "Doorbell Bridge", &nonce, "DESCRIBE", &url);
    assert_eq!(c.request("DESCRIBE", &url, &[("Authorization", wrong)]).await.status, 401);
    let good = digest_authorization(user, pass, "Doorbell Bridge", &nonce, "DESCRIBE", &url);
    let r = c.request("DESCRIBE", &url, &[("Authorization", good)]).await;
    assert_eq!(r.status, 200);
    // UDP is refused with 461; unknown streams are 404; the server still answers.
    let udp = ("Transport", "RTP/AVP;unicast;client_port=5000-5001".to_string());
    assert_eq!(c.request("SETUP", &format!("{url}/trackID=0"), &[udp]).await.status, 461);
    assert_eq!(c.request("DESCRIBE", &rig.url("nope"), &[]).await.status, 404);
    assert_eq!(c.request("PLAY", &url, &[]).await.status, 455);
    let mut b = Raw::connect(rig.rtsp).await;
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")));
    assert_eq!(b.request("OPTIONS", &url, &[]).await.status, 200);
    assert_eq!(b.request("DESCRIBE", &url, &[("Authorization", basic)]).await.status, 200);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_stream_frees_the_doorbell_slot_and_the_session_limit_is_respected() {
    let rig = Rig::start(|c| c.streams.get_mut("sub").unwrap().linger_secs = Duration::from_secs(1)).await;
    rig.wait_main().await;
    // Two more sessions on the doorbell taken by someone else: the sim is now full (3).
    let sim_url = format!("rtsp://{}/Streaming/Channels/102/", rig.sim.rtsp_addr);
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut o = Raw::connect(rig.sim.rtsp_addr).await;
        let r = o.request("DESCRIBE", &sim_url, &[]).await;
        let nonce = r
            .header("WWW-Authenticate")
            .unwrap()
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let a = |m: &str, u: &str| {
            ("Authorization", digest_authorization("admin", "ABCDEF", "IP Camera(C12345678)", &nonce, m, u))
        };
        let t = ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1".to_string());
        let su = format!("{sim_url}trackID=1");
        assert_eq!(o.request("SETUP", &su, &[t, a("SETUP", &su)]).await.status, 200);
        others.push(o);
    }
    assert_eq!(sim_status(&rig.sim).await["rtsp_sessions"], 3);
    // A viewer of `sub` makes the bridge try; it gets 453 and backs off, the limit is never exceeded.
    let sub_url = rig.url("sub");
    let waiter = tokio::spawn({
        let addr = rig.rtsp;
        async move {
            let mut c = Raw::connect(addr).await;
            c.request("DESCRIBE", &sub_url, &[]).await.status
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status(rig.http).await["streams"]["sub"]["upstream_sessions"], 0);
    // One slot frees: the bridge gets in after its backoff and the waiting viewer is answered.
    drop(others.pop());
    let st = tokio::time::timeout(Duration::from_secs(15), waiter).await.unwrap().unwrap();
    assert_eq!(st, 200);
    let (mut v, _) = Raw::play(rig.rtsp, &rig.url("sub")).await;
    assert!(key(&v.rtp().await.unwrap()));
    drop(v);
    // Nobody watches `sub` any more: after the linger time its doorbell session closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(rig.http).await;
        if st["streams"]["sub"]["upstream_sessions"] == 0 && st["streams"]["sub"]["upstream"] == "idle" {
            break;
        }
        assert!(Instant::now() < deadline, "sub never went idle: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.sim.state.rtsp_sessions.load(Ordering::SeqCst) != 2 {
        assert!(Instant::now() < deadline, "the doorbell still counts the closed session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rig.sim.state.rtsp_sessions_peak.load(Ordering::SeqCst) <= 3);
    // The DB1 counts a session whose client just vanished until it times out: the bridge ended
    // `sub` with a TEARDOWN, and ends `main` with one when it stops.
    assert_eq!(rig.sim.state.rtsp_teardowns.load(Ordering::SeqCst), 1);
    drop(others);
    rig.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), rig.app).await.expect("the bridge stops").unwrap();
    assert_eq!(rig.sim.state.rtsp_teardowns.load(Ordering::SeqCst), 2, "main torn down on stop");
    rig.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_change_reaches_watching_viewers_in_band_and_new_ones_in_the_sdp() {
    use base64::Engine;
    let rig = Rig::start(|_| {}).await;
    rig.wait_main().await;
    let url = rig.url("main");
    let (mut c, _) = Raw::play(rig.rtsp, &url).await;
    let small = doorbell_bridge::sim::rtsp::clip_of(1);
    let sps_b64 = small.sprop.split(',').next().unwrap().to_string();
    let sps = base64::engine::general_purpose::STANDARD.decode(&sps_b64).unwrap();
    let mut s = TcpStream::connect(rig.sim.http_addr).await.unwrap();
    s.write_all(
        b"POST /sim/resolution?size=768x1024 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The viewer who watches gets the new SPS, then PPS and an IDR, with no picture between.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let p = tokio::time::timeout_at(deadline.into(), c.rtp()).await.expect("the new SPS in time").unwrap();
        if rtp_payload(&p) == Some(&sps[..]) {
            break;
        }
    }
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let p = c.rtp().await.unwrap();
        let pl = rtp_payload(&p).unwrap();
        let t = if pl[0] & 0x1f == 28 { pl[1] & 0x1f } else { pl[0] & 0x1f };
        if t != 6 && kinds.last() != Some(&t) {
            kinds.push(t);
        }
    }
    assert_eq!(kinds, vec![8, 5, 1], "PPS, IDR, then pictures (SEI left aside)");
    // Whoever DESCRIBEs now is told the new parameter sets.
    let mut d = Raw::connect(rig.rtsp).await;
    let r = d.request("DESCRIBE", &url, &[]).await;
    assert_eq!(r.status, 200);
    let sdp = String::from_utf8_lossy(&r.body).to_string();
    assert!(sdp.contains(&format!("sprop-parameter-sets={sps_b64}")), "{sdp}");
    // And a new player decodes the new size.
    let out = run_tool(
        "ffprobe",
        &["-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=width,height", "-of", "csv=p=0", &url],
        Duration::from_secs(30),
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("768,1024"), "{}", String::from_utf8_lossy(&out.stdout));
    rig.stop().await;
}
