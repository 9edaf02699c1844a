//! The bridge's RTSP server for viewers: `rtsp://HOST:PORT/<stream>`, RTP interleaved over the
//! RTSP connection. Admission caps connections; shutdown waits for every connection task.

pub mod auth;
pub mod codec;
pub mod conn;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::admission::{self, Admission};
use crate::rtsp::Hub;

pub struct ServerCtx {
    pub hub: Arc<Hub>,
    pub access: Arc<Access>,
    /// A viewer whose socket accepts nothing for this long is disconnected.
    pub stall: Duration,
}

pub async fn serve(listener: TcpListener, ctx: Arc<ServerCtx>, max_connections: usize, shutdown: CancellationToken) {
    // No number of unauthenticated connections from the network refuses loopback or viewers with
    // credentials: a newcomer displaces the least valuable of its kind (see `admission`).
    let adm = Admission::new(max_connections, admission::PER_ADDRESS);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("RTSP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        while conns.try_join_next().is_some() {}
        let ticket = Arc::new(adm.admit(peer.ip()));
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        conns.spawn(async move {
            let t = ticket.clone();
            tokio::select! {
                _ = conn::run(sock, peer, ticket, ctx, sd) => {}
                _ = t.displaced() => tracing::debug!("RTSP {peer}: closed for a newer connection (admission)"),
            }
        });
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}
