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
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::config::Config;
use crate::events::StatusSource;
use crate::media::{Keyframe, KeyframeSource};
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
    fn status(&self, body: &mut serde_json::Map<String, serde_json::Value>) {
        let streams = body.entry("streams").or_insert_with(|| serde_json::json!({}));
        let Some(map) = streams.as_object_mut() else { return };
        for (name, s) in &self.streams {
            let st = &s.stats;
            map.insert(
                name.clone(),
                serde_json::json!({
                    "upstream": s.state().as_str(),
                    "upstream_sessions": st.upstream_sessions.load(Ordering::Relaxed),
                    "clients": st.clients.load(Ordering::Relaxed),
                    "on_demand": s.config.on_demand,
                    "bytes_in": st.bytes_in.load(Ordering::Relaxed),
                    "bytes_out": st.bytes_out.load(Ordering::Relaxed),
                    "frames_in": st.frames_in.load(Ordering::Relaxed),
                    "drops": drops(s),
                    "stalled": st.stalled.load(Ordering::Relaxed),
                    "reconnects": st.reconnects.load(Ordering::Relaxed),
                }),
            );
        }
    }

    fn metrics(&self, out: &mut String) {
        type Get = fn(&StreamHub) -> u64;
        let rows: [(&str, &str, &str, Get); 8] = [
            ("rtsp_upstream_connected", "gauge", "Whether the doorbell session of a stream is playing.", |s| {
                (s.state() == hub::UpstreamState::Connected) as u64
            }),
            ("rtsp_upstream_sessions", "gauge", "RTSP sessions held on the doorbell.", |s| {
                s.stats.upstream_sessions.load(Ordering::Relaxed) as u64
            }),
            ("rtsp_clients", "gauge", "Viewers playing a stream.", |s| s.stats.clients.load(Ordering::Relaxed) as u64),
            ("rtsp_bytes_in_total", "counter", "RTP bytes received from the doorbell.", |s| {
                s.stats.bytes_in.load(Ordering::Relaxed)
            }),
            ("rtsp_bytes_out_total", "counter", "RTP bytes queued to viewers.", |s| {
                s.stats.bytes_out.load(Ordering::Relaxed)
            }),
            ("rtsp_dropped_frames_total", "counter", "Frames viewers skipped after falling behind.", drops),
            ("rtsp_stalled_viewers_total", "counter", "Viewers disconnected for not reading.", |s| {
                s.stats.stalled.load(Ordering::Relaxed)
            }),
            ("rtsp_upstream_reconnects_total", "counter", "Doorbell sessions opened after the first.", |s| {
                s.stats.reconnects.load(Ordering::Relaxed)
            }),
        ];
        for (name, kind, help, get) in rows {
            let _ = writeln!(out, "# HELP doorbell_bridge_{name} {help}");
            let _ = writeln!(out, "# TYPE doorbell_bridge_{name} {kind}");
            for (stream, s) in &self.streams {
                let _ = writeln!(out, "doorbell_bridge_{name}{{stream=\"{stream}\"}} {}", get(s));
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
    let ctx = Arc::new(server::ServerCtx {
        hub: hub.clone(),
        access,
        stall: Duration::from_secs(config.server.rtsp_stall_secs.max(1)),
    });
    tasks.spawn(server::serve(listener, ctx, config.server.max_rtsp_connections, shutdown.clone()));
    while tasks.join_next().await.is_some() {}
}
