//! One viewer connection: a reader that answers requests and a writer that owns the socket's
//! write half, its only writer. Responses and media share the writer, so they never interleave
//! mid-message; media goes out as every frame queued since the last write, in one `writev`.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auth::Challenge;
use super::codec::{self, Item, Request};
use super::ServerCtx;
use crate::admission::{Ticket, HEAD_DEADLINE};
use crate::rtsp::hub::{default_channel, Demand, Frame, StreamHub, Subscription, Viewer};
use crate::rtsp::sdp::{self, MAX_TRACKS};

/// A connection that has not started playing and sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Session timeout we announce; over TCP the connection itself carries liveness.
pub const SESSION_TIMEOUT_SECS: u32 = 60;
/// How long DESCRIBE waits for a stream whose doorbell session is still opening.
pub const DESCRIBE_WAIT: Duration = Duration::from_secs(10);
/// Send buffer per viewer: small enough that a viewer who stops reading is noticed in seconds.
pub const SEND_BUFFER: usize = 256 * 1024;
const REALM: &str = "Doorbell Bridge";
/// Batch buffer capacity a viewer keeps between writes.
const BATCH_KEEP: usize = 64 * 1024;

/// Per track, the interleaved channel a viewer set it up on (None: not set up).
type Channels = [Option<u8>; MAX_TRACKS];

/// Whether every track set up uses its default channel (then frames go out as they are cached).
fn default_channels(ch: &Channels) -> bool {
    ch.iter().enumerate().all(|(i, c)| c.is_none_or(|c| c == default_channel(i)))
}

enum Out {
    Bytes(Vec<u8>),
    Play(Arc<Viewer>, Channels, Arc<StreamHub>),
    Stop,
    Close,
}

struct State {
    peer: SocketAddr,
    ticket: Arc<Ticket>,
    authed: bool,
    challenge: Challenge,
    session: Option<String>,
    stream: Option<Arc<StreamHub>>,
    channels: Channels,
    demand: Option<Demand>,
    sub: Option<Subscription>,
}

pub async fn run(
    sock: TcpStream,
    peer: SocketAddr,
    ticket: Arc<Ticket>,
    ctx: Arc<ServerCtx>,
    shutdown: CancellationToken,
) {
    let _ = sock.set_nodelay(true);
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(SEND_BUFFER);
    let (mut rd, wr) = sock.into_split();
    let (tx, rx) = mpsc::channel::<Out>(16);
    let done = shutdown.child_token();
    let writer = tokio::spawn(write_loop(wr, rx, ctx.stall, done.clone()));
    let mut st = State {
        peer,
        ticket,
        authed: ctx.access.trusted(peer.ip()),
        challenge: Challenge::new(REALM),
        session: None,
        stream: None,
        channels: [None; MAX_TRACKS],
        demand: None,
        sub: None,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut head_since: Option<Instant> = None;
    'conn: loop {
        loop {
            match codec::parse(&buf) {
                Ok(Some((item, used))) => {
                    buf.drain(..used);
                    if let Item::Request(req) = item {
                        st.ticket.spoke();
                        let close = handle(&mut st, &ctx, &tx, req).await;
                        if close {
                            let _ = tx.send(Out::Close).await;
                            break 'conn;
                        }
                    }
                    // Interleaved data from a viewer is RTCP receiver reports: nothing to do.
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("RTSP viewer {peer}: {} ({})", e.why, e.status);
                    let _ = tx.send(Out::Bytes(codec::response(e.status, None, &[], b""))).await;
                    let _ = tx.send(Out::Close).await;
                    break 'conn;
                }
            }
        }
        let mut idle = if st.sub.is_some() { Duration::from_secs(24 * 3600) } else { IDLE_TIMEOUT };
        // A started request must be complete by HEAD_DEADLINE, however slowly it trickles.
        head_since = if buf.is_empty() { None } else { head_since.or(Some(Instant::now())) };
        if head_since.is_some() {
            st.ticket.read_some();
        }
        if let Some(t0) = head_since {
            idle = HEAD_DEADLINE.saturating_sub(t0.elapsed());
        }
        tokio::select! {
            r = tokio::time::timeout(idle, rd.read_buf(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => {}
            },
            _ = done.cancelled() => break,
        }
    }
    drop(st);
    drop(tx);
    let _ = writer.await;
}

/// Answers one request; true when the connection should close after the answer.
async fn handle(st: &mut State, ctx: &ServerCtx, tx: &mpsc::Sender<Out>, req: Request) -> bool {
    let cseq = req.cseq().map(str::to_string);
    let respond = |status: u16, headers: &[(&str, String)], body: &[u8]| {
        Out::Bytes(codec::response(status, cseq.as_deref(), headers, body))
    };
    let method = req.method.as_str();
    if method != "OPTIONS" && !st.authed {
        let a = &ctx.access;
        if st.challenge.check(req.header("Authorization"), method, &a.rtsp_username, a.rtsp_password.expose())
            && !a.rtsp_password.is_empty()
        {
            st.authed = true;
            if !st.ticket.authenticated() {
                let _ = tx.send(respond(503, &[("Retry-After", "5".into())], b"")).await;
                return true;
            }
        } else {
            tracing::debug!("RTSP viewer {}: {method} without valid credentials", st.peer);
            let _ = tx.send(respond(401, &st.challenge.headers(true), b"")).await;
            return false;
        }
    }
    let session_hdr = |st: &State| st.session.as_ref().map(|s| format!("{s};timeout={SESSION_TIMEOUT_SECS}"));
    let path = codec::uri_path(&req.uri);
    let name = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let out = match method {
        "OPTIONS" => respond(
            200,
            &[("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER".into())],
            b"",
        ),
        "DESCRIBE" => {
            let Some(hub) = ctx.hub.get(name) else {
                let _ = tx.send(respond(404, &[], b"")).await;
                return false;
            };
            if st.demand.is_none() {
                st.demand = Some(hub.demand());
            }
            match hub.wait_description(DESCRIBE_WAIT).await {
                None => respond(503, &[("Retry-After", "5".into())], b""),
                Some(d) => {
                    let base = format!("{}/", req.uri.trim_end_matches('/'));
                    let sdp = d.viewer_sdp(&hub.name, hub.sdp_id);
                    respond(200, &[("Content-Type", "application/sdp".into()), ("Content-Base", base)], sdp.as_bytes())
                }
            }
        }
        "SETUP" => {
            let Some(hub) = ctx.hub.get(name).cloned() else {
                let _ = tx.send(respond(404, &[], b"")).await;
                return false;
            };
            if st.stream.as_ref().is_some_and(|s| !Arc::ptr_eq(s, &hub)) {
                let _ = tx.send(respond(459, &[], b"")).await;
                return false;
            }
            let Some(ch) = codec::tcp_interleaved(req.header("Transport").unwrap_or("")) else {
                // RTP over the RTSP connection only; a UDP client retries with TCP.
                let _ = tx.send(respond(461, &[], b"")).await;
                return false;
            };
            if st.demand.is_none() {
                // A client may SETUP without DESCRIBE: an on-demand stream must start for it too.
                st.demand = Some(hub.demand());
            }
            let desc = match hub.description() {
                Some(d) => Some(d),
                None => hub.wait_description(DESCRIBE_WAIT).await,
            };
            let Some(tracks) = desc.map(|d| d.tracks.len()) else {
                let _ = tx.send(respond(503, &[("Retry-After", "5".into())], b"")).await;
                return false;
            };
            let Some(track) = sdp::track_of(path, name).filter(|&t| t < tracks) else {
                let _ = tx.send(respond(404, &[], b"")).await;
                return false;
            };
            if st.sub.is_some() {
                // Tracks are fixed once playing.
                let _ = tx.send(respond(455, &[], b"")).await;
                return false;
            }
            let channel = ch.map_or(default_channel(track), |c| c.0);
            st.channels[track] = Some(channel);
            st.stream = Some(hub.clone());
            if st.session.is_none() {
                st.session = Some(format!("{:016X}", rand::random::<u64>()));
            }
            let transport = format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}",
                channel,
                channel.wrapping_add(1),
                hub.ssrc(track)
            );
            respond(200, &[("Transport", transport), ("Session", session_hdr(st).unwrap_or_default())], b"")
        }
        "PLAY" => {
            let (Some(hub), Some(_)) = (st.stream.clone(), st.session.as_ref()) else {
                let _ = tx.send(respond(455, &[], b"")).await;
                return false;
            };
            if req.session() != st.session.as_deref() {
                let _ = tx.send(respond(454, &[], b"")).await;
                return false;
            }
            if st.sub.is_none() {
                // `Range` is ignored: this is a live stream, everyone shares one timeline.
                let mask = st.channels.iter().enumerate().fold(0u8, |m, (i, c)| m | ((c.is_some() as u8) << i));
                let sub = hub.subscribe(mask);
                let mut base = req.uri.trim_end_matches('/');
                if let Some((b, last)) = base.rsplit_once('/').filter(|(_, l)| l.starts_with("trackID=")) {
                    let _ = last;
                    base = b;
                }
                let rtp_info: Vec<String> = (0..MAX_TRACKS)
                    .filter(|&i| st.channels[i].is_some())
                    .map(|i| {
                        let url = format!("{base}/{}", sdp::track_control(i));
                        match sub.first[i] {
                            Some((seq, ts)) => format!("url={url};seq={seq};rtptime={ts}"),
                            None => format!("url={url}"),
                        }
                    })
                    .collect();
                let rtp_info = rtp_info.join(",");
                let resp = respond(
                    200,
                    &[
                        ("Session", session_hdr(st).unwrap_or_default()),
                        ("Range", "npt=0.000-".into()),
                        ("RTP-Info", rtp_info),
                    ],
                    b"",
                );
                let _ = tx.send(resp).await;
                let _ = tx.send(Out::Play(sub.viewer.clone(), st.channels, hub.clone())).await;
                st.sub = Some(sub);
                return false;
            }
            respond(200, &[("Session", session_hdr(st).unwrap_or_default())], b"")
        }
        "PAUSE" => {
            st.sub = None;
            let _ = tx.send(Out::Stop).await;
            respond(200, &[("Session", session_hdr(st).unwrap_or_default())], b"")
        }
        "TEARDOWN" => {
            st.sub = None;
            let _ = tx.send(Out::Stop).await;
            let _ = tx.send(respond(200, &[], b"")).await;
            return true;
        }
        "GET_PARAMETER" | "SET_PARAMETER" => {
            let h: Vec<(&str, String)> = session_hdr(st).map(|s| ("Session", s)).into_iter().collect();
            respond(200, &h, b"")
        }
        _ => respond(501, &[], b""),
    };
    let _ = tx.send(out).await;
    false
}

/// Why the writer stops.
enum WriteEnd {
    Failed,
    Stalled,
}

/// Slices handed to one `writev`: the kernel takes at most `IOV_MAX` (1024 on Linux).
const MAX_SLICES: usize = 512;

/// Writes all of `bufs` (empty ones are skipped), giving up after `stall` without progress.
async fn write_all(wr: &mut OwnedWriteHalf, mut bufs: &mut [IoSlice<'_>], stall: Duration) -> Result<(), WriteEnd> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = bufs.len().min(MAX_SLICES);
        match tokio::time::timeout(stall, wr.write_vectored(&bufs[..n])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(WriteEnd::Failed),
            Ok(Ok(k)) => IoSlice::advance_slices(&mut bufs, k),
            Err(_) => return Err(WriteEnd::Stalled),
        }
    }
    Ok(())
}

/// Writes `frames` on the viewer's channels: one `writev` of the cached frames as they are when
/// the viewer uses the default channels, else re-framed into `buf`.
async fn write_frames(
    wr: &mut OwnedWriteHalf,
    ch: &Channels,
    stall: Duration,
    frames: &[Arc<Frame>],
    buf: &mut Vec<u8>,
) -> Result<(), WriteEnd> {
    if default_channels(ch) {
        let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(&f.wire)).collect();
        return write_all(wr, &mut slices, stall).await;
    }
    buf.clear();
    for f in frames {
        match ch[f.track as usize] {
            Some(c) if c == f.default_channel() => buf.extend_from_slice(&f.wire),
            Some(c) => f.packets().for_each(|p| codec::put_interleaved(buf, c, p)),
            None => {}
        }
    }
    let r = write_all(wr, &mut [IoSlice::new(buf)], stall).await;
    if buf.capacity() > BATCH_KEEP {
        // The GOP burst at PLAY is large and happens once: don't keep its buffer per viewer.
        *buf = Vec::new();
    }
    r
}

/// The only writer of a viewer's socket: responses from the reader and the frames the hub
/// queues for the viewer, each written whole, so nothing interleaves mid-message. Every frame
/// queued since the last write goes out in one `writev`.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Out>, stall: Duration, done: CancellationToken) {
    let mut play: Option<(Arc<Viewer>, Channels, Arc<StreamHub>)> = None;
    let mut frames: Vec<Arc<Frame>> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let end = loop {
        let wake = async {
            match &play {
                Some((v, _, _)) => v.notify.notified().await,
                None => std::future::pending().await,
            }
        };
        let msg = tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some(m) => m,
                None => break None,
            },
            _ = wake => {
                // A frame pushed after this `take` finds the queue empty and wakes us again.
                if let Some((v, ch, _)) = &play {
                    v.take(&mut frames);
                    let r = write_frames(&mut wr, ch, stall, &frames, &mut buf).await;
                    frames.clear();
                    if let Err(e) = r {
                        break Some(e);
                    }
                }
                continue;
            }
            _ = done.cancelled() => break None,
        };
        match msg {
            Out::Close => break None,
            Out::Bytes(b) => {
                if let Err(e) = write_all(&mut wr, &mut [IoSlice::new(&b)], stall).await {
                    break Some(e);
                }
            }
            Out::Play(v, ch, hub) => play = Some((v, ch, hub)),
            // Frames still queued are dropped with the subscription; none is on the wire in part.
            Out::Stop => play = None,
        }
    };
    if let Some((_, _, hub)) = play.take() {
        if matches!(end, Some(WriteEnd::Stalled)) {
            hub.stats.stalled.fetch_add(1, Ordering::Relaxed);
            tracing::info!("RTSP viewer of {} stopped reading; disconnecting it", hub.name);
        }
    }
    // Dropping the write half shuts the write side down.
    drop(wr);
    done.cancel();
}
