//! The bridge's RTSP server for viewers: `rtsp://HOST:PORT/<stream>`, RTP interleaved over the
//! RTSP connection. A semaphore caps connections; shutdown waits for every connection task.

pub mod auth;
pub mod codec;
pub mod conn;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::rtsp::Hub;

pub struct ServerCtx {
    pub hub: Arc<Hub>,
    pub access: Arc<Access>,
    /// A viewer whose socket accepts nothing for this long is disconnected.
    pub stall: Duration,
}

pub async fn serve(listener: TcpListener, ctx: Arc<ServerCtx>, max_connections: usize, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (mut sock, peer) = tokio::select! {
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: say so rather than leave the client hanging.
            conns.spawn(async move {
                let r = codec::response(503, None, &[], b"");
                let _ = tokio::time::timeout(Duration::from_secs(2), sock.write_all(&r)).await;
            });
            continue;
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        conns.spawn(async move {
            conn::run(sock, peer, ctx, sd).await;
            drop(permit);
        });
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}
