//! RTSP fan-out: one session per stream on the doorbell (`upstream`), a hub per stream that
//! re-stamps and fans its RTP out with a GOP cache (`hub`), and the server viewers connect to
//! (`server`). `keyframe` and `sdp` are pure helpers.

pub mod hub;
pub mod keyframe;
pub mod sdp;
pub mod server;
pub mod upstream;
pub mod viewer;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::config::Config;
use crate::events::StatusSource;
use crate::media::{Keyframe, KeyframeSource};
use crate::metrics::Metrics;
use crate::status::{Status, StreamStatus};
use hub::StreamHub;

/// Every stream's hub, by name.
pub struct Hub {
    pub streams: BTreeMap<String, Arc<StreamHub>>,
}

impl Hub {
    pub fn new(config: &Config) -> Arc<Hub> {
        let streams = config.streams.iter().map(|(n, s)| (n.clone(), StreamHub::new(n, s.clone()))).collect();
        Arc::new(Hub { streams })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<StreamHub>> {
        self.streams.get(name)
    }
}

fn drops(s: &StreamHub) -> u64 {
    s.stats.drops.load(Ordering::Relaxed)
}

impl StatusSource for Hub {
    fn status(&self, status: &mut Status) {
        for (name, s) in &self.streams {
            let st = &s.stats;
            status.streams.insert(
                name.clone(),
                StreamStatus {
                    upstream: s.state().as_str().to_string(),
                    upstream_sessions: st.upstream_sessions.load(Ordering::Relaxed) as u64,
                    clients: st.clients.load(Ordering::Relaxed) as u64,
                    on_demand: s.config.on_demand,
                    bytes_in: st.bytes_in.load(Ordering::Relaxed),
                    bytes_out: st.bytes_out.load(Ordering::Relaxed),
                    frames_in: st.frames_in.load(Ordering::Relaxed),
                    drops: drops(s),
                    stalled: st.stalled.load(Ordering::Relaxed),
                    reconnects: st.reconnects.load(Ordering::Relaxed),
                },
            );
        }
    }

    fn metrics(&self, out: &mut Metrics) {
        use crate::metrics::Kind::{Counter, Gauge};
        type Get = fn(&StreamHub) -> u64;
        let rows: [(&str, crate::metrics::Kind, &str, Get); 8] = [
            ("rtsp_upstream_connected", Gauge, "Whether the doorbell session of a stream is playing.", |s| {
                (s.state() == hub::UpstreamState::Connected) as u64
            }),
            ("rtsp_upstream_sessions", Gauge, "RTSP sessions held on the doorbell.", |s| {
                s.stats.upstream_sessions.load(Ordering::Relaxed) as u64
            }),
            ("rtsp_clients", Gauge, "Viewers playing a stream.", |s| s.stats.clients.load(Ordering::Relaxed) as u64),
            ("rtsp_bytes_in_total", Counter, "RTP bytes received from the doorbell.", |s| {
                s.stats.bytes_in.load(Ordering::Relaxed)
            }),
            ("rtsp_bytes_out_total", Counter, "RTP bytes queued to viewers.", |s| {
                s.stats.bytes_out.load(Ordering::Relaxed)
            }),
            ("rtsp_dropped_frames_total", Counter, "Frames viewers skipped after falling behind.", drops),
            ("rtsp_stalled_viewers_total", Counter, "Viewers disconnected for not reading.", |s| {
                s.stats.stalled.load(Ordering::Relaxed)
            }),
            ("rtsp_upstream_reconnects_total", Counter, "Doorbell sessions opened after the first.", |s| {
                s.stats.reconnects.load(Ordering::Relaxed)
            }),
        ];
        for (name, kind, help, get) in rows {
            out.family(name, kind, help);
            for (stream, s) in &self.streams {
                out.sample(name, &[("stream", stream)], get(s));
            }
        }
    }
}

impl KeyframeSource for Hub {
    fn latest_keyframe(&self, stream: &str) -> Option<Keyframe> {
        self.streams.get(stream)?.latest_keyframe()
    }
}

/// Starts every upstream and the viewer server; returns when `shutdown` is cancelled and all stopped.
pub async fn run(
    config: Config,
    hub: Arc<Hub>,
    access: Arc<Access>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let d = &config.doorbell;
    let creds = (!d.password.is_empty())
        .then(|| retina::client::Credentials { username: d.username.clone(), password: d.password.expose().into() });
    for (name, s) in &hub.streams {
        let url = format!("rtsp://{}:{}{}", d.host, d.rtsp_port, s.config.path);
        let Ok(url) = url::Url::parse(&url) else {
            tracing::error!("stream {name}: {} does not make a valid RTSP URL", s.config.path);
            continue;
        };
        let up = upstream::Upstream { url, creds: creds.clone() };
        tasks.spawn(upstream::run(s.clone(), up, shutdown.clone()));
    }
    let ctx = Arc::new(server::ServerCtx { hub: hub.clone(), access, stall: config.server.rtsp_stall_secs });
    tasks.spawn(server::serve(listener, ctx, config.server.max_rtsp_connections, shutdown.clone()));
    while tasks.join_next().await.is_some() {}
}
