//! The one session per stream on the doorbell (retina, RTP over the RTSP TCP connection).
//! `run` loops over `run_once` with backoff; always-on streams reconnect at once after a drop,
//! on-demand ones open only while somebody watches and close after the linger time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use retina::client::{
    Credentials, PacketItem, PlayOptions, SessionGroup, SessionOptions, SetupOptions, TcpTransportOptions,
    TeardownPolicy, Transport,
};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result};
use crate::rtsp::hub::{StreamHub, UpstreamState};
use crate::rtsp::sdp;

pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// For this long after losing a playing session, retries back off to at most [`BACKOFF_FAST_MAX`]:
/// a doorbell that dropped its stream is usually back within seconds (Wi-Fi roam, RTSP restart).
pub const FAST_WINDOW: Duration = Duration::from_secs(15);
pub const BACKOFF_FAST_MAX: Duration = Duration::from_millis(800);
/// EZVIZ DB1 / Hikvision DS-HD1 (all firmware seen): at most 3 RTSP sessions; a 4th gets 453 or
/// 503, and sessions of a client that vanished count until they time out. Wait this long
/// before trying again so stale sessions can expire.
pub const SESSION_LIMIT_BACKOFF: Duration = Duration::from_secs(5);
/// No packet for this long means the session is dead.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that played this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Upstream {
    pub url: url::Url,
    pub creds: Option<Credentials>,
}

enum End {
    /// Nobody watched an on-demand stream for the linger time.
    Idle,
    Shutdown,
}

pub async fn run(hub: Arc<StreamHub>, up: Upstream, shutdown: CancellationToken) {
    let group = Arc::new(SessionGroup::default());
    let mut retry = Retry::default();
    let mut demand = hub.demand_watch();
    loop {
        if hub.config.on_demand {
            hub.set_state(UpstreamState::Idle);
            tokio::select! {
                r = demand.wait_for(|d| *d > 0) => if r.is_err() { break },
                _ = shutdown.cancelled() => break,
            }
        }
        hub.set_state(UpstreamState::Connecting);
        let started = Instant::now();
        let res = run_once(&hub, &up, &group, &shutdown).await;
        hub.end_session();
        // Dropping the session sent TEARDOWN; wait (bounded) so the doorbell's slot is free.
        let _ = tokio::time::timeout(Duration::from_secs(2), group.await_teardown()).await;
        match res {
            Ok(End::Shutdown) => break,
            Ok(End::Idle) => {
                retry.reset();
                continue;
            }
            Err(e) => {
                let played = hub.state() == UpstreamState::Connected;
                let limit = e.kind() == ErrorKind::Unavailable;
                let wait = retry.after(Instant::now(), played, started.elapsed(), limit, rand::random());
                tracing::warn!("stream {}: {}; retrying in {:.1}s", hub.name, one_line(&e.chain()), wait.as_secs_f64());
                hub.set_state(UpstreamState::Backoff);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {},
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    hub.set_state(UpstreamState::Stopped);
}

/// When to try the doorbell again, pure (time and chance passed in): the shared [`Backoff`] with
/// the doorbell's rules on top (at once after a loss, a lower ceiling for a while, 453/503).
pub struct Retry {
    backoff: Backoff,
    /// When a playing session was last lost and retried at once; retries stay fast for a while.
    instant_at: Option<Instant>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX), instant_at: None }
    }
}

impl Retry {
    /// After a session that ended well (an on-demand stream nobody watched): start from the minimum.
    pub fn reset(&mut self) {
        self.backoff.reset();
    }

    /// How long to wait after a session that ran for `ran` ended in an error at `now`: `played`
    /// when it had been playing, `limit` when the doorbell refused for its session limit;
    /// `rnd` in [0, 1) jitters the wait.
    pub fn after(&mut self, now: Instant, played: bool, ran: Duration, limit: bool, rnd: f64) -> Duration {
        if ran > HEALTHY_AFTER {
            self.backoff.reset();
        }
        let mut wait = self.backoff.peek_jittered(rnd);
        // The first retry after a loss goes at once, unless the last one was recent too (a
        // doorbell that plays and drops again must not be hammered: backoff keeps growing).
        if played && self.instant_at.is_none_or(|t| now.saturating_duration_since(t) > HEALTHY_AFTER) {
            self.instant_at = Some(now);
            self.backoff.reset();
            wait = Duration::ZERO;
        }
        if limit {
            // Its sessions are taken: give stale ones time to expire.
            wait = wait.max(SESSION_LIMIT_BACKOFF.mul_f64(1.0 + rnd * 0.5));
        }
        if !wait.is_zero() {
            let fast = self.instant_at.is_some_and(|t| now.saturating_duration_since(t) < FAST_WINDOW);
            self.backoff.advance_capped(if fast { BACKOFF_FAST_MAX } else { BACKOFF_MAX });
        }
        wait
    }
}

/// An error as one log line: retina's messages carry the connection's context on lines of their own.
pub fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

fn upstream_err(what: &str, e: retina::Error) -> Error {
    // 453 Not Enough Bandwidth / 503: the doorbell's session limit.
    let kind = match e.status_code() {
        Some(453) | Some(503) => ErrorKind::Unavailable,
        _ => ErrorKind::Upstream,
    };
    Error::wrap(kind, what.to_string(), e)
}

async fn run_once(
    hub: &Arc<StreamHub>,
    up: &Upstream,
    group: &Arc<SessionGroup>,
    shutdown: &CancellationToken,
) -> Result<End> {
    let opts = SessionOptions::default()
        .creds(up.creds.clone())
        .user_agent(format!("doorbell-bridge/{}", env!("CARGO_PKG_VERSION")))
        .session_group(group.clone())
        .teardown(TeardownPolicy::Auto);
    let mut session = tokio::time::timeout(CONNECT_TIMEOUT, retina::client::Session::describe(up.url.clone(), opts))
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "DESCRIBE timed out"))?
        .map_err(|e| upstream_err("DESCRIBE failed", e))?;
    let Some(mut desc) = sdp::parse(session.sdp()) else {
        return Err(Error::new(ErrorKind::Upstream, "the doorbell offers no H.264/H.265 video"));
    };
    // retina's stream index -> our track; retina lists the SDP's media sections in order.
    let mut track_of = vec![None; session.streams().len()];
    let mut kept = Vec::new();
    for (i, t) in std::mem::take(&mut desc.tracks).into_iter().enumerate() {
        if t.upstream >= track_of.len() {
            continue;
        }
        let setup = session
            .setup(t.upstream, SetupOptions::default().transport(Transport::Tcp(TcpTransportOptions::default())));
        match tokio::time::timeout(CONNECT_TIMEOUT, setup).await {
            Err(_) => return Err(Error::new(ErrorKind::Timeout, "SETUP timed out")),
            Ok(Err(e)) if i == 0 => return Err(upstream_err("SETUP failed", e)),
            // Sound is worth having, not worth losing the picture over.
            Ok(Err(e)) => {
                tracing::warn!("stream {}: {} track not set up: {}", hub.name, t.encoding, one_line(&e.to_string()));
                continue;
            }
            Ok(Ok(())) => {
                track_of[t.upstream] = Some(kept.len());
                kept.push(t);
            }
        }
    }
    desc.tracks = kept;
    let mut playing = tokio::time::timeout(CONNECT_TIMEOUT, session.play(PlayOptions::default()))
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "PLAY timed out"))?
        .map_err(|e| upstream_err("PLAY failed", e))?;
    tracing::info!("stream {}: playing {}", hub.name, up.url.path());
    hub.begin_session(desc);
    let mut demand = hub.demand_watch();
    let linger = hub.config.linger_secs;
    let mut idle_since: Option<Instant> = None;
    // One ticker checks for silence, rather than a timer armed and cancelled for every packet.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_data = Instant::now();
    loop {
        tokio::select! {
            item = playing.next() => match item {
                None => return Err(Error::new(ErrorKind::Upstream, "the doorbell closed the session")),
                Some(Err(e)) => return Err(upstream_err("session failed", e)),
                Some(Ok(PacketItem::Rtp(p))) => {
                    if let Some(&Some(track)) = track_of.get(p.stream_id()) {
                        last_data = Instant::now();
                        hub.packet(track, p.raw(), last_data);
                    }
                }
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                if last_data.elapsed() >= DATA_TIMEOUT {
                    return Err(Error::new(ErrorKind::Timeout, "no data from the doorbell"));
                }
                if !hub.config.on_demand {
                    continue;
                }
                if *demand.borrow_and_update() > 0 {
                    idle_since = None;
                } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= linger {
                    tracing::info!("stream {}: nobody watching; closing the doorbell session", hub.name);
                    return Ok(End::Idle);
                }
            }
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_is_retried_at_once_then_fast_then_backing_off_and_a_full_doorbell_is_left_alone() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        let ms = |d: Duration| d.as_millis() as u64;
        // A playing session is lost: at once.
        assert_eq!(r.after(t0, true, Duration::from_secs(60), false, 0.99), Duration::ZERO);
        // The doorbell is away: 250, 500, then at most 800 ms apart while the loss is recent.
        let mut t = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let w = r.after(t, false, Duration::ZERO, false, 0.99);
            waits.push(ms(w));
            t += w;
        }
        assert_eq!(&waits[..3], &[248, 497, 796]);
        assert!(waits.iter().all(|&w| w <= 800), "{waits:?}");
        // Past the fast window it backs off to 10 s.
        let mut w = Duration::ZERO;
        for _ in 0..10 {
            w = r.after(t0 + FAST_WINDOW + Duration::from_secs(1), false, Duration::ZERO, false, 0.99);
        }
        assert!(ms(w) > 9_000 && w <= BACKOFF_MAX, "{w:?}");
        // A second loss soon after the first is not retried at once.
        let soon = t0 + Duration::from_secs(20);
        assert!(r.after(soon, true, Duration::from_secs(5), false, 0.0) > Duration::ZERO);
        // Its 3 sessions taken (453/503): 5 s at least, even right after a loss.
        let mut r = Retry::default();
        assert!(r.after(t0, true, Duration::from_secs(60), true, 0.0) >= SESSION_LIMIT_BACKOFF);
        assert!(r.after(t0, false, Duration::ZERO, true, 0.99) <= SESSION_LIMIT_BACKOFF.mul_f64(1.5));
    }

    #[test]
    fn errors_log_on_one_line() {
        let e = "session failed: RTSP framing error\n\nconn: 127.0.0.1:1->127.0.0.1:2\r\n  msg: 7 bytes";
        assert_eq!(one_line(e), "session failed: RTSP framing error; conn: 127.0.0.1:1->127.0.0.1:2; msg: 7 bytes");
    }
}
