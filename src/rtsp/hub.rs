//! The hub: one per stream. It takes the doorbell's RTP packets from the upstream, track by
//! track (video first, then audio), re-stamps them (sequence, timestamp, SSRC per track) so
//! viewers see one continuous stream across upstream reconnects, groups video into frames (to
//! the marker bit; each audio packet is a frame of its own), keeps every track's frames since
//! the last keyframe (the GOP cache a new viewer starts from, audio in step with video) and hands
//! every frame to each viewer's bounded queue. It never waits on a viewer: a full queue makes
//! that viewer skip, audio and video together, to the next keyframe, counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::config::StreamConfig;
use crate::media::{Keyframe, VideoCodec};
use crate::rtsp::keyframe;
use crate::rtsp::sdp::{Description, MAX_TRACKS};
use crate::rtsp::viewer::Pushed;
pub use crate::rtsp::viewer::Viewer;

/// Frames (video and audio) a viewer may have queued beyond the burst it started with before
/// it skips ahead: about 2 s of 25 fps video with 50 audio packets a second.
pub const VIEWER_QUEUE_FRAMES: usize = 160;
/// The GOP cache is dropped (and rebuilt at the next keyframe) past these bounds.
pub const GOP_MAX_FRAMES: usize = 2000;
pub const GOP_MAX_BYTES: usize = 16 << 20;
/// Video frames a new viewer's burst holds at least, when the GOPs cached before the current one allow:
/// libavformat's `avformat_find_stream_info` (HA's stream worker, Frigate, ffmpeg) reads until
/// it has timestamps of 20 video frames (`fps_analyze_framecount`, so 21 frames with a DTS) for
/// H.264/H.265 over RTSP, whose SDP cannot give it `r_frame_rate`. For H.264 without
/// `max_num_reorder_frames` in the SPS it gives no DTS before 7 frames are decoded
/// (`has_decode_delay_been_guessed`): 28 frames in all (traced with `-fdebug ts`). A shorter burst
/// makes it wait for live frames, 67 ms each at 15 fps.
pub const BURST_VIDEO_FRAMES: usize = 28;
/// Frames a reader of [`StreamHub::frames`] may lag behind: over 10 s of 25 fps video with audio.
pub const TAP_FRAMES: usize = 1024;

/// One access unit's RTP packets (or one audio packet), already re-stamped, stored once: framed
/// for interleaved channel `2 * track` (what nearly every viewer uses), so each viewer's write is
/// a plain copy-free send, and read back packet by packet for the rest.
#[derive(Debug)]
pub struct Frame {
    pub wire: Bytes,
    /// Index into the stream's tracks (0 = video).
    pub track: u8,
    pub key: bool,
    pub seq: u16,
    pub ts: u32,
    /// RTP bytes (without the interleaved headers).
    pub bytes: usize,
}

impl Frame {
    /// The RTP packets, in order.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        let w = &self.wire[..];
        let mut off = 0;
        std::iter::from_fn(move || {
            let n = u16::from_be_bytes([*w.get(off + 2)?, *w.get(off + 3)?]) as usize;
            let p = w.get(off + 4..off + 4 + n)?;
            off += 4 + n;
            Some(p)
        })
    }

    /// The interleaved channel `wire` is framed for.
    pub fn default_channel(&self) -> u8 {
        default_channel(self.track as usize)
    }
}

/// Appends `raw` framed for track `track`'s default channel, re-stamped.
fn put_packet(out: &mut Vec<u8>, track: usize, raw: &[u8], seq: u16, ts: u32, ssrc: u32) {
    let at = out.len() + 4;
    crate::rtsp::server::codec::put_interleaved(out, default_channel(track), raw);
    out[at + 2..at + 4].copy_from_slice(&seq.to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&ts.to_be_bytes());
    out[at + 8..at + 12].copy_from_slice(&ssrc.to_be_bytes());
}

/// The interleaved channel of track `i` unless a viewer asks for another.
pub fn default_channel(i: usize) -> u8 {
    (2 * i) as u8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpstreamState {
    /// On-demand stream with nobody watching: no session on the doorbell.
    Idle = 0,
    Connecting = 1,
    Connected = 2,
    /// Waiting before the next attempt after a failure.
    Backoff = 3,
    Stopped = 4,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Idle => "idle",
            UpstreamState::Connecting => "connecting",
            UpstreamState::Connected => "connected",
            UpstreamState::Backoff => "reconnecting",
            UpstreamState::Stopped => "stopped",
        }
    }
    fn from_u8(v: u8) -> Self {
        match v {
            0 => UpstreamState::Idle,
            1 => UpstreamState::Connecting,
            2 => UpstreamState::Connected,
            3 => UpstreamState::Backoff,
            _ => UpstreamState::Stopped,
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_in: AtomicU64,
    /// Frames viewers skipped because they fell behind.
    pub drops: AtomicU64,
    /// Upstream sessions opened after the first.
    pub reconnects: AtomicU64,
    pub sessions_opened: AtomicU64,
    /// Viewers disconnected because they stopped reading.
    pub stalled: AtomicU64,
    pub clients: AtomicUsize,
    pub upstream_sessions: AtomicUsize,
}

/// One track's re-stamping: its own SSRC, sequence and clock.
struct Restamp {
    ssrc: u32,
    next_seq: u16,
    offset: u32,
    last_out: Option<(u32, Instant)>,
    fresh: bool,
    clock: u32,
}

impl Restamp {
    fn new() -> Restamp {
        Restamp {
            ssrc: rand::random(),
            next_seq: rand::random(),
            offset: rand::random(),
            last_out: None,
            fresh: true,
            clock: 90_000,
        }
    }

    /// The timestamp a packet of the doorbell's `in_ts` gets at `now`.
    fn ts(&mut self, in_ts: u32, now: Instant) -> u32 {
        if self.fresh {
            // A new session: time continues from where the last one stopped, by the wall clock.
            let out = match self.last_out {
                Some((t, at)) => {
                    let ticks = (now.saturating_duration_since(at).as_secs_f64() * self.clock as f64) as u64;
                    t.wrapping_add(ticks.clamp(1, u32::MAX as u64 / 2) as u32)
                }
                None => in_ts.wrapping_add(self.offset),
            };
            self.offset = out.wrapping_sub(in_ts);
            self.fresh = false;
        }
        let ts = in_ts.wrapping_add(self.offset);
        self.last_out = Some((ts, now));
        ts
    }

    fn seq(&mut self) -> u16 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }
}

struct Inner {
    /// Every track's frames since the last video keyframe, in arrival order.
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
    gop_video: usize,
    gop_at: Option<DateTime<Utc>>,
    /// Whole GOPs before `gop`, oldest first, with their video frame counts and bytes: as many
    /// as a burst of [`BURST_VIDEO_FRAMES`] needs for a viewer joining while `gop` is young (one,
    /// unless the doorbell's GOPs are shorter than that), within [`GOP_MAX_BYTES`] but the newest.
    prev_gops: VecDeque<(usize, usize, Vec<Arc<Frame>>)>,
    /// The video frame being assembled, framed for channel 0.
    pending: Vec<u8>,
    pending_ts: Option<u32>,
    pending_key: bool,
    pending_seq: u16,
    pending_packets: usize,
    viewers: Vec<Arc<Viewer>>,
    rs: Vec<Restamp>,
    tracks: usize,
    codec: VideoCodec,
    /// The parameter sets changed with a new session: put them before the next keyframe, for
    /// viewers who stay (their decoders know only the old ones) unless the doorbell sends them.
    inject: Option<Vec<Vec<u8>>>,
    /// Frames made by the packet being handled, for the fan-out after the lock is released.
    outbox: Vec<Arc<Frame>>,
}

/// The fan-out's scratch: frames to hand out and the viewers to hand them to. Its lock is taken
/// before the hub's and kept while frames go into viewers' queues, so frames reach viewers in
/// order while the hub's own lock is free for joins and leaves. No lock here is ever held across
/// a system call: the hub only queues and wakes; each viewer's connection task writes.
#[derive(Default)]
struct Fanout {
    frames: Vec<Arc<Frame>>,
    viewers: Vec<Arc<Viewer>>,
}

pub struct StreamHub {
    pub name: String,
    pub config: StreamConfig,
    pub stats: Stats,
    /// Origin id of the SDP we serve.
    pub sdp_id: u64,
    inner: Mutex<Inner>,
    fanout: Mutex<Fanout>,
    desc: watch::Sender<Option<Arc<Description>>>,
    demand: watch::Sender<usize>,
    state: AtomicU8,
    /// Every frame as it is published, for readers that keep their own window of the stream
    /// (ring clips); the same `Arc`s the GOP cache holds, nothing copied.
    tap: tokio::sync::broadcast::Sender<Arc<Frame>>,
}

/// Holds a stream wanted (a viewer connecting or watching): on-demand upstreams run while any exist.
pub struct Demand(Arc<StreamHub>);

impl Drop for Demand {
    fn drop(&mut self) {
        self.0.demand.send_modify(|d| *d = d.saturating_sub(1));
    }
}

/// A viewer's subscription; dropping it leaves the hub.
pub struct Subscription {
    pub viewer: Arc<Viewer>,
    hub: Arc<StreamHub>,
    /// Per track, the sequence number and timestamp of the first packet the viewer will get
    /// (for `RTP-Info`).
    pub first: [Option<(u16, u32)>; MAX_TRACKS],
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut g = self.hub.lock();
        g.viewers.retain(|v| !Arc::ptr_eq(v, &self.viewer));
        self.hub.stats.clients.store(g.viewers.len(), Ordering::Relaxed);
    }
}

/// The RTP payload of a packet (after CSRCs and the extension, before padding).
pub fn rtp_payload(raw: &[u8]) -> Option<&[u8]> {
    if raw.len() < 12 || raw[0] >> 6 != 2 {
        return None;
    }
    let cc = (raw[0] & 0x0f) as usize;
    let mut start = 12 + 4 * cc;
    if raw[0] & 0x10 != 0 {
        let ext = raw.get(start + 2..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    let mut end = raw.len();
    if raw[0] & 0x20 != 0 {
        end = end.checked_sub(*raw.last()? as usize)?;
    }
    raw.get(start..end)
}

impl StreamHub {
    pub fn new(name: &str, config: StreamConfig) -> Arc<StreamHub> {
        Arc::new(StreamHub {
            name: name.to_string(),
            config,
            stats: Stats::default(),
            sdp_id: rand::random::<u32>() as u64,
            inner: Mutex::new(Inner {
                gop: Vec::new(),
                gop_bytes: 0,
                gop_video: 0,
                gop_at: None,
                prev_gops: VecDeque::new(),
                pending: Vec::new(),
                pending_ts: None,
                pending_key: false,
                pending_seq: 0,
                pending_packets: 0,
                viewers: Vec::new(),
                rs: (0..MAX_TRACKS).map(|_| Restamp::new()).collect(),
                tracks: 1,
                codec: VideoCodec::H264,
                inject: None,
                outbox: Vec::new(),
            }),
            fanout: Mutex::new(Fanout::default()),
            desc: watch::channel(None).0,
            demand: watch::channel(0).0,
            state: AtomicU8::new(UpstreamState::Idle as u8),
            tap: tokio::sync::broadcast::channel(TAP_FRAMES).0,
        })
    }

    /// Every frame (video and audio) published from now on, in order. A reader that falls more
    /// than [`TAP_FRAMES`] behind learns it from `RecvError::Lagged`; the hub never waits for it.
    pub fn frames(&self) -> tokio::sync::broadcast::Receiver<Arc<Frame>> {
        self.tap.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> UpstreamState {
        UpstreamState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: UpstreamState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    pub fn demand(self: &Arc<Self>) -> Demand {
        self.demand.send_modify(|d| *d += 1);
        Demand(self.clone())
    }

    pub fn demand_watch(&self) -> watch::Receiver<usize> {
        self.demand.subscribe()
    }

    pub fn description(&self) -> Option<Arc<Description>> {
        self.desc.borrow().clone()
    }

    /// The description, waiting up to `wait` for the upstream to provide one.
    pub async fn wait_description(&self, wait: Duration) -> Option<Arc<Description>> {
        let mut rx = self.desc.subscribe();
        let r = tokio::time::timeout(wait, rx.wait_for(|d| d.is_some())).await;
        match r {
            Ok(Ok(d)) => d.clone(),
            _ => None,
        }
    }

    /// A new upstream session is playing: time continues from where the last one stopped.
    pub fn begin_session(&self, desc: Description) {
        let changed = self.description().is_some_and(|old| old.param_sets != desc.param_sets);
        let mut g = self.lock();
        g.inject = (changed && !desc.param_sets.is_empty())
            .then(|| keyframe::split_annexb(&desc.param_sets).into_iter().map(<[u8]>::to_vec).collect());
        for (rs, t) in g.rs.iter_mut().zip(&desc.tracks) {
            rs.fresh = true;
            rs.clock = t.clock_rate.max(1);
        }
        g.tracks = desc.tracks.len().min(MAX_TRACKS);
        g.codec = desc.codec;
        g.pending.clear();
        g.pending_packets = 0;
        g.pending_ts = None;
        g.pending_key = false;
        g.gop.clear();
        g.prev_gops.clear();
        g.gop_bytes = 0;
        g.gop_video = 0;
        for v in &g.viewers {
            v.skip_to_keyframe();
        }
        drop(g);
        if self.stats.sessions_opened.fetch_add(1, Ordering::Relaxed) > 0 {
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.upstream_sessions.store(1, Ordering::Relaxed);
        self.desc.send_replace(Some(Arc::new(desc)));
        self.set_state(UpstreamState::Connected);
    }

    pub fn end_session(&self) {
        let mut g = self.lock();
        g.pending.clear();
        g.pending_packets = 0;
        g.pending_ts = None;
        self.stats.upstream_sessions.store(0, Ordering::Relaxed);
    }

    /// One RTP packet of track `track` from the doorbell. `now` is passed in so time is the caller's.
    pub fn packet(&self, track: usize, raw: &[u8], now: Instant) {
        let Some(payload) = rtp_payload(raw) else { return };
        if raw.len() > u16::MAX as usize {
            return;
        }
        self.stats.bytes_in.fetch_add(raw.len() as u64, Ordering::Relaxed);
        let in_ts = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let marker = raw[1] & 0x80 != 0;
        let mut fan = self.fanout.lock().unwrap_or_else(|e| e.into_inner());
        let mut guard = self.lock();
        if track >= guard.tracks {
            return;
        }
        self.take_packet(&mut guard, track, raw, payload, in_ts, marker, now);
        if guard.outbox.is_empty() {
            return;
        }
        let fan = &mut *fan;
        std::mem::swap(&mut fan.frames, &mut guard.outbox);
        fan.viewers.extend(guard.viewers.iter().cloned());
        drop(guard);
        for f in fan.frames.drain(..) {
            self.deliver(&f, &fan.viewers);
        }
        fan.viewers.clear();
    }

    /// Re-stamps a packet into the frame being assembled or a frame of its own (audio).
    #[allow(clippy::too_many_arguments)]
    fn take_packet(
        &self,
        g: &mut Inner,
        track: usize,
        raw: &[u8],
        payload: &[u8],
        in_ts: u32,
        marker: bool,
        now: Instant,
    ) {
        let ts = g.rs[track].ts(in_ts, now);
        let ssrc = g.rs[track].ssrc;
        if track != 0 {
            // Audio: every packet stands alone.
            let seq = g.rs[track].seq();
            let mut wire = Vec::with_capacity(raw.len() + 4);
            put_packet(&mut wire, track, raw, seq, ts, ssrc);
            let f = Frame { wire: Bytes::from(wire), track: track as u8, key: false, seq, ts, bytes: raw.len() };
            self.publish(g, Arc::new(f));
            return;
        }
        if g.pending_ts.is_some_and(|p| p != ts) {
            self.flush(g);
        }
        let key = keyframe::is_key(g.codec, payload);
        if key && g.pending_packets == 0 && g.inject.is_some() {
            let inject = g.inject.take().unwrap_or_default();
            if keyframe::param_sets(g.codec, payload).is_empty() {
                for nal in &inject {
                    let mut ps = Vec::with_capacity(12 + nal.len());
                    ps.extend_from_slice(&[0x80, raw[1] & 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                    ps.extend_from_slice(nal);
                    self.stage(g, &ps, ts);
                }
            }
        }
        self.stage(g, raw, ts);
        g.pending_key |= key;
        if marker || g.pending_packets > 4096 {
            self.flush(g);
        }
    }

    /// Adds a video packet to the frame being assembled, numbered next.
    fn stage(&self, g: &mut Inner, raw: &[u8], ts: u32) {
        let seq = g.rs[0].seq();
        if g.pending_packets == 0 {
            g.pending_seq = seq;
        }
        put_packet(&mut g.pending, 0, raw, seq, ts, g.rs[0].ssrc);
        g.pending_packets += 1;
        g.pending_ts = Some(ts);
    }

    /// Makes the assembled video frame a frame and publishes it.
    fn flush(&self, g: &mut Inner) {
        if g.pending_packets == 0 {
            return;
        }
        let cap = g.pending.len();
        let wire = std::mem::replace(&mut g.pending, Vec::with_capacity(cap));
        let f = Arc::new(Frame {
            bytes: wire.len() - 4 * g.pending_packets,
            wire: Bytes::from(wire),
            track: 0,
            key: g.pending_key,
            seq: g.pending_seq,
            ts: g.pending_ts.take().unwrap_or(0),
        });
        g.pending_key = false;
        g.pending_packets = 0;
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        if f.key {
            self.learn_param_sets(g.codec, &f);
        }
        self.publish(g, f);
    }

    /// Parameter sets sent in-band that differ from the description (the owner changed the
    /// resolution) replace it, so viewers who DESCRIBE from now on get them in the SDP.
    fn learn_param_sets(&self, codec: VideoCodec, f: &Frame) {
        let nals: Vec<&[u8]> =
            f.packets().filter_map(rtp_payload).flat_map(|p| keyframe::param_sets(codec, p)).take(8).collect();
        if nals.is_empty() {
            return;
        }
        let Some(cur) = self.description() else { return };
        let mut annexb = Vec::new();
        for n in &nals {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(n);
        }
        if annexb != cur.param_sets {
            tracing::info!("stream {}: new parameter sets from the doorbell", self.name);
            self.desc.send_replace(Some(Arc::new(cur.with_param_sets(&nals))));
        }
    }

    /// Caches a frame and puts it in the outbox for every viewer.
    fn publish(&self, g: &mut Inner, f: Arc<Frame>) {
        if f.key {
            // The finished GOP stays for young-GOP joins if it was whole (began at a keyframe);
            // older ones go once the newer ones alone hold a burst's worth of video.
            let done = std::mem::take(&mut g.gop);
            if done.first().is_some_and(|f| f.key) {
                let (video, bytes) = (g.gop_video, g.gop_bytes);
                g.prev_gops.push_back((video, bytes, done));
                while g.prev_gops.len() > 1 {
                    let newer = g.prev_gops.iter().skip(1);
                    let (v, b) = newer.fold((0, 0), |(v, b), g| (v + g.0, b + g.1));
                    if v < BURST_VIDEO_FRAMES && b <= GOP_MAX_BYTES {
                        break;
                    }
                    g.prev_gops.pop_front();
                }
            } else {
                g.prev_gops.clear();
            }
            g.gop_bytes = 0;
            g.gop_video = 0;
            g.gop_at = Some(Utc::now());
        }
        if !g.gop.is_empty() || f.key {
            if g.gop.len() >= GOP_MAX_FRAMES || g.gop_bytes + f.bytes > GOP_MAX_BYTES {
                g.gop.clear();
                g.prev_gops.clear();
                g.gop_bytes = 0;
                g.gop_video = 0;
            } else {
                g.gop_bytes += f.bytes;
                g.gop_video += (f.track == 0) as usize;
                g.gop.push(f.clone());
            }
        }
        if self.tap.receiver_count() > 0 {
            let _ = self.tap.send(f.clone());
        }
        g.outbox.push(f);
    }

    /// Hands a frame to each viewer's queue, waking the writers that were idle.
    fn deliver(&self, f: &Arc<Frame>, viewers: &[Arc<Viewer>]) {
        let (mut out, mut dropped) = (0u64, 0u64);
        for v in viewers {
            let (pushed, lost) = v.push(f);
            dropped += lost;
            if pushed != Pushed::Skipped {
                out += f.bytes as u64;
            }
            if pushed == Pushed::Wake {
                v.notify.notify_one();
            }
        }
        self.stats.bytes_out.fetch_add(out, Ordering::Relaxed);
        self.stats.drops.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Joins a viewer playing the tracks in `tracks` (bit i = track i): its queue starts with the
    /// GOP cache (and the GOPs before it while the current one is young, see
    /// [`BURST_VIDEO_FRAMES`]), so its first frame is a keyframe with the audio of its time.
    pub fn subscribe(self: &Arc<Self>, tracks: u8) -> Subscription {
        let mut g = self.lock();
        // The newest earlier GOPs that bring the burst to BURST_VIDEO_FRAMES video frames.
        let mut need = BURST_VIDEO_FRAMES.saturating_sub(g.gop_video);
        let mut from = g.prev_gops.len();
        while need > 0 && from > 0 {
            from -= 1;
            need = need.saturating_sub(g.prev_gops[from].0);
        }
        let burst = g.prev_gops.range(from..).flat_map(|(_, _, fs)| fs).chain(&g.gop);
        let frames: VecDeque<Arc<Frame>> = burst.filter(|f| tracks & (1 << f.track) != 0).cloned().collect();
        let mut first = [None; MAX_TRACKS];
        for f in &frames {
            first[f.track as usize].get_or_insert((f.seq, f.ts));
        }
        for (i, rs) in g.rs.iter().enumerate().take(g.tracks) {
            // A track with nothing cached starts with its next packet.
            if first[i].is_none() && tracks & (1 << i) != 0 {
                first[i] = rs.last_out.map(|(ts, _)| (rs.next_seq, ts));
            }
        }
        let any = !frames.is_empty();
        let viewer = Arc::new(Viewer::new(frames, tracks));
        if any {
            viewer.notify.notify_one();
        }
        g.viewers.push(viewer.clone());
        self.stats.clients.store(g.viewers.len(), Ordering::Relaxed);
        Subscription { viewer, hub: self.clone(), first }
    }

    /// The SSRC of track `i`'s packets.
    pub fn ssrc(&self, track: usize) -> u32 {
        self.lock().rs.get(track).map_or(0, |r| r.ssrc)
    }

    /// The keyframe that starts the cached GOP, as Annex B with the parameter sets first.
    pub fn latest_keyframe(&self) -> Option<Keyframe> {
        let desc = self.description()?;
        let g = self.lock();
        let f = g.gop.first().filter(|f| f.key)?.clone();
        let captured = g.gop_at.unwrap_or_else(Utc::now);
        drop(g);
        let mut annexb = desc.param_sets.clone();
        keyframe::to_annexb(desc.codec, f.packets().filter_map(rtp_payload), &mut annexb);
        Some(Keyframe { stream: self.name.clone(), codec: desc.codec, annexb: Bytes::from(annexb), captured })
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
