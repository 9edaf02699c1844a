//! The simulated doorbell's RTSP server: the DB1's paths (`/Streaming/Channels/101/` and `/102/`),
//! Digest auth (Basic accepted too), RTP over the RTSP connection, its 3-session limit (a 4th
//! SETUP gets 453), a bundled H.264 clip (1536x2048 portrait, 15 fps, keyframe every 2 s)
//! looped forever with continuous timestamps, and a tone as its sound (`SimOptions::audio`: AAC
//! or G.711, see `audio`). While the doorbell is "rebooting" every session is dropped and
//! connections are refused.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::audio::{self, Sound};
use super::{SimOptions, SimState};
use crate::media::VideoCodec;
use crate::rtsp::keyframe::split_annexb;
use crate::rtsp::server::auth::Challenge;
use crate::rtsp::server::codec::{self, Item, Request};

/// Raw Annex B H.264, made by `tests/data/rtsp/make_clip.sh`: the main stream, and the same at
/// half the resolution (`POST /sim/resolution`).
static CLIP: &[u8] = include_bytes!("../../tests/data/rtsp/doorbell_1536x2048_15fps.h264");
static CLIP_SMALL: &[u8] = include_bytes!("../../tests/data/rtsp/doorbell_768x1024_15fps.h264");
pub const CLIP_SIZES: [&str; 2] = ["1536x2048", "768x1024"];
pub const FPS: u32 = 15;
const TS_PER_FRAME: u32 = 90_000 / FPS;
/// EZVIZ DB1 / Hikvision DS-HD1: at most 3 simultaneous RTSP sessions; the 4th gets 453.
pub const MAX_SESSIONS: usize = 3;
pub const PATHS: [&str; 2] = ["/Streaming/Channels/101", "/Streaming/Channels/102"];
const REALM: &str = "IP Camera(C12345678)";
const MAX_PAYLOAD: usize = 1400;
const PT: u8 = 96;

pub struct Clip {
    /// Per access unit, its RTP payloads (single NAL units or FU-A fragments, RFC 6184).
    pub frames: Vec<Vec<Vec<u8>>>,
    pub sprop: String,
    pub profile_level_id: String,
    pub codec: VideoCodec,
}

pub fn clip() -> &'static Clip {
    clip_of(0)
}

/// The clip for `CLIP_SIZES[i]` (the first past the end).
pub fn clip_of(i: usize) -> &'static Clip {
    static C: [OnceLock<Clip>; 2] = [OnceLock::new(), OnceLock::new()];
    let i = i.min(1);
    C[i].get_or_init(|| build_clip([CLIP, CLIP_SMALL][i]))
}

fn packetize(nal: &[u8], out: &mut Vec<Vec<u8>>) {
    if nal.len() <= MAX_PAYLOAD {
        out.push(nal.to_vec());
        return;
    }
    let (hdr, body) = (nal[0], &nal[1..]);
    let chunks: Vec<&[u8]> = body.chunks(MAX_PAYLOAD - 2).collect();
    for (i, c) in chunks.iter().enumerate() {
        let mut fu = (hdr & 0x1f) | if i == 0 { 0x80 } else { 0 };
        if i == chunks.len() - 1 {
            fu |= 0x40;
        }
        let mut p = vec![(hdr & 0xe0) | 28, fu];
        p.extend_from_slice(c);
        out.push(p);
    }
}

pub fn build_clip(data: &[u8]) -> Clip {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut sps, mut pps) = (None, None);
    let mut frames = Vec::new();
    let mut cur = Vec::new();
    let mut cur_has_slice = false;
    for nal in split_annexb(data) {
        let t = nal[0] & 0x1f;
        match t {
            7 => sps = sps.or(Some(nal)),
            8 => pps = pps.or(Some(nal)),
            9 => continue, // access unit delimiters are not sent over RTP by cameras
            _ => {}
        }
        // A new picture starts at a non-slice NAL after slices, or at a slice whose
        // first_mb_in_slice is 0 (ue(v) 0 is a single 1 bit).
        let is_slice = matches!(t, 1 | 5);
        let starts_picture = !is_slice || nal.get(1).is_some_and(|b| b & 0x80 != 0);
        if cur_has_slice && starts_picture {
            frames.push(std::mem::take(&mut cur));
            cur_has_slice = false;
        }
        packetize(nal, &mut cur);
        cur_has_slice |= is_slice;
    }
    if cur_has_slice {
        frames.push(cur);
    }
    let sps = sps.unwrap_or(&[0x67, 0x4d, 0x00, 0x28]);
    let pps = pps.unwrap_or(&[0x68]);
    Clip {
        frames,
        sprop: format!("{},{}", b64.encode(sps), b64.encode(pps)),
        profile_level_id: hex::encode_upper(sps.get(1..4).unwrap_or(&[0x4d, 0, 0x28])),
        codec: VideoCodec::H264,
    }
}

pub async fn start(
    opts: &SimOptions,
    state: Arc<SimState>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(SocketAddr::new(opts.bind, opts.rtsp_port)).await?;
    let addr = listener.local_addr()?;
    let opts = opts.clone();
    let _ = clip();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let sock = tokio::select! {
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                _ = shutdown.cancelled() => break,
            };
            while conns.try_join_next().is_some() {}
            if !state.online.load(Ordering::SeqCst) {
                drop(sock); // rebooting: nobody answers
                continue;
            }
            conns.spawn(conn(sock, addr, opts.clone(), state.clone(), shutdown.clone()));
        }
        conns.shutdown().await;
    });
    Ok((addr, task))
}

struct Session {
    id: String,
    /// The video's interleaved channel, once set up.
    channel: Option<u8>,
    ssrc: u32,
    seq: u16,
    ts: u32,
    frame: usize,
    /// Index of the clip being streamed (follows `SimState::resolution` at its keyframes).
    clip: usize,
    /// Video frames sent since PLAY: the clock the sound follows.
    ticks: u64,
    playing: bool,
    audio: Option<AudioOut>,
    /// The interleaved channel the client sends backchannel audio on.
    backchannel: Option<u8>,
}

/// The sound's side of a session.
struct AudioOut {
    sound: &'static Sound,
    channel: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    /// Packets sent since PLAY.
    sent: u64,
}

async fn conn(mut sock: TcpStream, addr: SocketAddr, opts: SimOptions, state: Arc<SimState>, sd: CancellationToken) {
    let _ = sock.set_nodelay(true);
    let challenge = Challenge::new(REALM);
    let mut sess: Option<Session> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    'conn: loop {
        loop {
            match codec::parse(&buf) {
                Ok(Some((item, used))) => {
                    buf.drain(..used);
                    if let Item::Request(req) = item {
                        let (resp, close) = answer(&req, addr, &opts, &state, &challenge, &mut sess);
                        if sock.write_all(&resp).await.is_err() || close {
                            break 'conn;
                        }
                    } else if let Item::Interleaved { channel, data } = item {
                        if sess.as_ref().and_then(|s| s.backchannel) == Some(channel) {
                            state.backchannel.packet(&data);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = sock.write_all(&codec::response(e.status, None, &[], b"")).await;
                    break 'conn;
                }
            }
        }
        tokio::select! {
            r = sock.read_buf(&mut buf) => if !matches!(r, Ok(n) if n > 0) { break },
            _ = tick.tick() => {
                if !state.online.load(Ordering::SeqCst) {
                    break; // rebooting: every session drops
                }
                if let Some(s) = sess.as_mut().filter(|s| s.playing) {
                    let want = state.resolution.load(Ordering::SeqCst);
                    if want != s.clip {
                        // Like the doorbell: the new stream starts at a keyframe, SPS/PPS in-band.
                        s.clip = want;
                        s.frame = 0;
                    }
                    state.video_frame.store(s.ticks, Ordering::SeqCst);
                    let mut out = next_frame(s);
                    next_audio(s, &mut out);
                    if sock.write_all(&out).await.is_err() {
                        break;
                    }
                }
            }
            _ = sd.cancelled() => break,
        }
    }
    if sess.is_some() {
        state.rtsp_sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The audio packets due by the video frame just sent, so sound and picture share one clock.
fn next_audio(s: &mut Session, out: &mut Vec<u8>) {
    let frames = s.ticks;
    let Some(a) = s.audio.as_mut() else { return };
    let due = frames * a.sound.clock_rate as u64 / FPS as u64;
    while (a.sent + 1) * a.sound.samples as u64 <= due {
        let p = &a.sound.payloads[(a.sent % a.sound.payloads.len() as u64) as usize];
        let mut pkt = Vec::with_capacity(12 + p.len());
        pkt.push(0x80);
        pkt.push(a.sound.payload_type | 0x80);
        pkt.extend_from_slice(&a.seq.to_be_bytes());
        pkt.extend_from_slice(&a.ts.to_be_bytes());
        pkt.extend_from_slice(&a.ssrc.to_be_bytes());
        pkt.extend_from_slice(p);
        codec::put_interleaved(out, a.channel, &pkt);
        a.seq = a.seq.wrapping_add(1);
        a.ts = a.ts.wrapping_add(a.sound.samples);
        a.sent += 1;
    }
}

fn next_frame(s: &mut Session) -> Vec<u8> {
    let Some(channel) = s.channel else { return Vec::new() };
    let c = clip_of(s.clip);
    let payloads = &c.frames[s.frame % c.frames.len()];
    let mut out = Vec::with_capacity(payloads.iter().map(|p| p.len() + 16).sum::<usize>() + 64);
    // The frame's number rides in an SEI just before its first slice (after SPS/PPS, so the
    // keyframe still starts the access unit): tests read it back from what viewers and clips get.
    let sei = frame_number_sei(s.ticks);
    let first_slice = payloads.iter().position(|p| is_slice(p)).unwrap_or(0);
    let with_sei = payloads[..first_slice].iter().chain([&sei]).chain(&payloads[first_slice..]);
    for (i, p) in with_sei.enumerate() {
        let last = i == payloads.len();
        let mut pkt = Vec::with_capacity(12 + p.len());
        pkt.push(0x80);
        pkt.push(PT | if last { 0x80 } else { 0 });
        pkt.extend_from_slice(&s.seq.to_be_bytes());
        pkt.extend_from_slice(&s.ts.to_be_bytes());
        pkt.extend_from_slice(&s.ssrc.to_be_bytes());
        pkt.extend_from_slice(p);
        codec::put_interleaved(&mut out, channel, &pkt);
        s.seq = s.seq.wrapping_add(1);
    }
    s.ts = s.ts.wrapping_add(TS_PER_FRAME);
    s.frame += 1;
    s.ticks += 1;
    out
}

/// The SEI `user_data_unregistered` UUID the simulator's frame numbers carry.
pub const FRAME_SEI_UUID: [u8; 16] = *b"DoorbellSimFrame";

/// An SEI NAL unit (type 6, payload 5) with `frame NNNNNNNNNN` in ASCII: no zero bytes, so no
/// emulation prevention is needed.
pub fn frame_number_sei(n: u64) -> Vec<u8> {
    let text = format!("frame {:010}", n % 10_000_000_000);
    let mut nal = vec![0x06, 0x05, (16 + text.len()) as u8];
    nal.extend_from_slice(&FRAME_SEI_UUID);
    nal.extend_from_slice(text.as_bytes());
    nal.push(0x80);
    nal
}

/// The frame number in an SEI NAL unit made by [`frame_number_sei`].
pub fn frame_number_of(nal: &[u8]) -> Option<u64> {
    let rest = nal.strip_prefix(&[0x06, 0x05])?.get(1..)?.strip_prefix(&FRAME_SEI_UUID[..])?;
    std::str::from_utf8(rest.get(..16)?).ok()?.strip_prefix("frame ")?.parse().ok()
}

/// Whether an RTP payload (single NAL unit or FU-A) carries a slice.
fn is_slice(p: &[u8]) -> bool {
    let t = match p.first().map(|b| b & 0x1f) {
        Some(28) => p.get(1).map(|b| b & 0x1f),
        t => t,
    };
    matches!(t, Some(1 | 5))
}

fn path_of(uri: &str) -> Option<&'static str> {
    let p = codec::uri_path(uri);
    let p = p.split('?').next().unwrap_or(p);
    PATHS.iter().copied().find(|k| p.starts_with(k))
}

fn answer(
    req: &Request,
    addr: SocketAddr,
    opts: &SimOptions,
    state: &SimState,
    challenge: &Challenge,
    sess: &mut Option<Session>,
) -> (Vec<u8>, bool) {
    let cseq = req.cseq();
    let r = |status: u16, headers: &[(&str, String)], body: &[u8]| codec::response(status, cseq, headers, body);
    let server = ("Server", "Hikvision-Webs (simulated)".to_string());
    if req.method == "OPTIONS" {
        let public = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER".to_string();
        return (r(200, &[("Public", public), server], b""), false);
    }
    if !challenge.check(req.header("Authorization"), &req.method, &opts.username, &opts.password) {
        return (r(401, &challenge.headers(false), b""), false);
    }
    let Some(path) = path_of(&req.uri) else { return (r(404, &[], b""), false) };
    let base = format!("rtsp://{addr}{path}/");
    let session_hdr = |s: &Session| ("Session", format!("{};timeout=60", s.id));
    match req.method.as_str() {
        "DESCRIBE" => {
            let res = state.resolution.load(Ordering::SeqCst).min(CLIP_SIZES.len() - 1);
            let c = clip_of(res);
            let dims = CLIP_SIZES[res].replace('x', ",");
            let sdp = format!(
                "v=0\r\no=- 1109162014219182 1109162014219192 IN IP4 {ip}\r\ns=Media Presentation\r\ne=NONE\r\n\
                 b=AS:5050\r\nt=0 0\r\na=control:{base}\r\nm=video 0 RTP/AVP {PT}\r\nc=IN IP4 0.0.0.0\r\n\
                 b=AS:5000\r\na=recvonly\r\na=x-dimensions:{dims}\r\na=control:{base}trackID=1\r\n\
                 a=rtpmap:{PT} H264/90000\r\na=fmtp:{PT} profile-level-id={pl}; packetization-mode=1; \
                 sprop-parameter-sets={sp}\r\na=framerate:{FPS}.0\r\n",
                ip = addr.ip(),
                pl = c.profile_level_id,
                sp = c.sprop,
            );
            let mut sdp = sdp;
            if let Some(a) = audio::sound(opts.audio) {
                sdp.push_str(&format!(
                    "m=audio 0 RTP/AVP {pt}\r\nc=IN IP4 0.0.0.0\r\nb=AS:50\r\na=recvonly\r\n\
                     a=control:{base}trackID=2\r\n{lines}",
                    pt = a.payload_type,
                    lines = a.sdp
                ));
            }
            sdp.push_str(&state.backchannel.sdp(req, &base));
            let h = [("Content-Type", "application/sdp".to_string()), ("Content-Base", base), server];
            (r(200, &h, sdp.as_bytes()), false)
        }
        "SETUP" => {
            let Some(ch) = codec::tcp_interleaved(req.header("Transport").unwrap_or("")) else {
                return (r(461, &[], b""), false);
            };
            // Hikvision numbers its tracks from 1: video trackID=1, audio trackID=2; the
            // backchannel (when offered) is its own track.
            let backchannel = state.backchannel.is_track(&req.uri);
            let track = match codec::uri_path(&req.uri).trim_end_matches('/').rsplit('/').next() {
                _ if backchannel => 0,
                Some("trackID=1") => 1,
                Some("trackID=2") if audio::sound(opts.audio).is_some() => 2,
                Some(t) if t.starts_with("trackID=") => return (r(404, &[], b""), false),
                _ => 1, // the stream's own URL: its video
            };
            if sess.is_none() {
                let taken = state
                    .rtsp_sessions
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX_SESSIONS).then_some(n + 1));
                match taken {
                    Err(_) => return (r(453, &[], b""), false),
                    Ok(n) => {
                        state.rtsp_sessions_peak.fetch_max(n + 1, Ordering::SeqCst);
                    }
                }
                *sess = Some(Session {
                    id: format!("{}", rand::random::<u32>()),
                    channel: None,
                    ssrc: rand::random(),
                    seq: rand::random(),
                    ts: rand::random(),
                    frame: 0,
                    clip: state.resolution.load(Ordering::SeqCst),
                    ticks: 0,
                    playing: false,
                    audio: None,
                    backchannel: None,
                });
            }
            let s = sess.as_mut().expect("set above");
            let (channel, ssrc, mode) = if backchannel {
                let channel = ch.map(|c| c.0).unwrap_or(4);
                s.backchannel = Some(channel);
                state.backchannel.start();
                (channel, s.ssrc, "record")
            } else if track == 1 {
                let channel = ch.map(|c| c.0).unwrap_or(0);
                s.channel = Some(channel);
                (channel, s.ssrc, "play")
            } else {
                let channel = ch.map(|c| c.0).unwrap_or(2);
                let a = s.audio.get_or_insert_with(|| AudioOut {
                    sound: audio::sound(opts.audio).expect("checked above"),
                    channel,
                    ssrc: rand::random(),
                    seq: rand::random(),
                    ts: rand::random(),
                    sent: 0,
                });
                a.channel = channel;
                (channel, a.ssrc, "play")
            };
            let t = format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08x};mode=\"{mode}\"",
                channel,
                channel.wrapping_add(1),
                ssrc
            );
            (r(200, &[("Transport", t), session_hdr(s), server], b""), false)
        }
        "PLAY" => {
            let Some(s) = sess.as_mut() else { return (r(454, &[], b""), false) };
            if !s.playing {
                s.playing = true;
                s.frame = 0; // a camera starts a new client at a keyframe
                s.ticks = 0;
                if let Some(a) = s.audio.as_mut() {
                    a.sent = 0;
                }
            }
            let mut info = format!("url={base}trackID=1;seq={};rtptime={}", s.seq, s.ts);
            if let Some(a) = &s.audio {
                info.push_str(&format!(",url={base}trackID=2;seq={};rtptime={}", a.seq, a.ts));
            }
            (r(200, &[session_hdr(s), ("RTP-Info", info), ("Range", "npt=now-".into()), server], b""), false)
        }
        "TEARDOWN" => {
            if let Some(s) = sess.take() {
                state.rtsp_sessions.fetch_sub(1, Ordering::SeqCst);
                state.rtsp_teardowns.fetch_add(1, Ordering::SeqCst);
                if s.backchannel.is_some() {
                    state.backchannel.teardowns.fetch_add(1, Ordering::SeqCst);
                }
            }
            (r(200, &[server], b""), true)
        }
        "GET_PARAMETER" | "SET_PARAMETER" => {
            let h: Vec<(&str, String)> = sess.as_ref().map(session_hdr).into_iter().collect();
            (r(200, &h, b""), false)
        }
        _ => (r(405, &[], b""), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_is_portrait_15fps_with_a_keyframe_every_2s() {
        let c = clip();
        assert_eq!(c.frames.len(), 60);
        let keys: Vec<usize> = c
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.iter().any(|p| crate::rtsp::keyframe::is_key(VideoCodec::H264, p)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(keys, vec![0, 30]);
        assert!(c.frames.iter().flatten().all(|p| p.len() <= MAX_PAYLOAD));
    }
}
