//! The HTTP API (CONTRACT.md): health, status, live events, snapshots, metrics.
//! `router(state)` is public so tests drive it directly; `serve` adds the connection limits.

pub mod clip;
pub mod error;
pub mod rings;
pub mod sse;
pub mod talk;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::access::Access;
use crate::admission::{self, Admission, Ticket, Watched};
use crate::error::{Error, ErrorKind};
use crate::events::Bus;
use crate::metrics::{Kind, Metrics};
use crate::ports::Commands;
use crate::snapshot::{Image, Snapshots};

/// Largest request head (request line + headers) we read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body; the API takes no uploads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A client that has not sent its request head by then is dropped (bytes trickling in do not
/// extend it).
pub const HEAD_TIMEOUT: Duration = admission::HEAD_DEADLINE;

/// The admission ticket of the connection a request came on.
#[derive(Clone)]
pub struct ConnTicket(pub Arc<Ticket>);

#[derive(Clone)]
pub struct ApiState {
    pub bus: Arc<Bus>,
    pub access: Arc<Access>,
    pub snapshots: Arc<Snapshots>,
    pub commands: Option<Arc<dyn Commands>>,
    /// `POST /api/talk`; None when the bridge has no doorbell to talk through.
    pub talk: Option<Arc<crate::talk::Talk>>,
    /// Ring clips; None when they are off.
    pub clips: Option<Arc<crate::clips::Clips>>,
    pub shutdown: CancellationToken,
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/api/snapshot.jpg", get(snapshot))
        .route("/api/rings", get(rings::list))
        .route("/api/rings/{id}/snapshot.jpg", get(ring_snapshot))
        .route("/api/rings/{id}/clip.mp4", get(clip::ring_clip))
        .route("/api/reboot", post(reboot))
        // Same rule as the rest: it tells live motion, rings and viewers.
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
        .fallback(|| async { Error::new(ErrorKind::NotFound, "no such endpoint") })
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .merge(talk::router(state.clone())) // after the limit: it takes audio uploads
        .with_state(state)
}

async fn require_auth(
    State(st): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let auth = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(e) = st.access.check_bearer(peer.ip(), auth) {
        return e.into_response();
    }
    // A client with the token (or trusted, like Home Assistant's event stream on loopback) is not
    // displaced by newcomers, unless the room for such is full.
    if let Some(ConnTicket(t)) = req.extensions().get::<ConnTicket>() {
        if !t.authenticated() && !st.access.trusted(peer.ip()) {
            return Error::new(ErrorKind::Unavailable, "too many authenticated connections").into_response();
        }
    }
    next.run(req).await
}

async fn status(State(st): State<ApiState>) -> Json<crate::status::Status> {
    Json(st.bus.report())
}

async fn events(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    let last = sse::parse_last_event_id(headers.get("last-event-id"));
    sse::stream(st.bus.clone(), last, st.shutdown.clone()).into_response()
}

/// How a picture may be cached. A ring picture is revalidated on every view (`no-cache`) and its
/// ETag names the bridge and the ring, so a cache can never show one ring's picture for another
/// (say, after the data directory was replaced and ids started over).
enum Caching<'a> {
    Latest,
    Ring { bridge: &'a str, id: u64 },
}

fn image_response(img: Image, headers: &HeaderMap, caching: Caching) -> Response {
    let (etag, cache_control) = match caching {
        Caching::Latest => (format!("\"{}\"", img.etag), "private, max-age=1".to_string()),
        Caching::Ring { bridge, id } => (format!("\"{bridge}-{id}-{}\"", img.etag), "private, no-cache".to_string()),
    };
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut resp = (StatusCode::OK, img.bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    let lm = img.taken.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(v) = HeaderValue::from_str(&lm) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache_control) {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

async fn snapshot(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    match st.snapshots.latest().await {
        Ok(img) => image_response(img, &headers, Caching::Latest),
        Err(e) => e.into_response(),
    }
}

async fn ring_snapshot(State(st): State<ApiState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return Error::new(ErrorKind::BadRequest, "ring id must be a number").into_response();
    };
    match st.snapshots.ring_image(id).await {
        Ok(img) => image_response(img, &headers, Caching::Ring { bridge: st.bus.bridge_id(), id }),
        Err(e) => e.into_response(),
    }
}

async fn reboot(State(st): State<ApiState>) -> Response {
    match &st.commands {
        Some(c) => match c.reboot().await {
            Ok(()) => (StatusCode::ACCEPTED, Json(serde_json::json!({"result": "rebooting"}))).into_response(),
            Err(e) => e.into_response(),
        },
        None => {
            Error::new(ErrorKind::Unavailable, "ONVIF is disabled, so the doorbell cannot be rebooted").into_response()
        }
    }
}

async fn metrics(State(st): State<ApiState>) -> Response {
    let mut m = Metrics::new();
    let state = st.bus.state();
    m.single("doorbell_online", Kind::Gauge, "Whether the doorbell answers.", state.doorbell_online as u8);
    m.family("sensor", Kind::Gauge, "State of each sensor (-1 unknown).");
    for (name, v) in state.sensors.iter() {
        m.sample("sensor", &[("name", name.as_str())], v.map_or(-1, i32::from));
    }
    m.single("last_event_id", Kind::Counter, "Id of the newest event.", st.bus.last_id());
    let rings = st.bus.rings_total.load(std::sync::atomic::Ordering::Relaxed);
    m.single("rings_total", Kind::Counter, "Rings since start.", rings);
    st.bus.metrics(&mut m);
    st.snapshots.metrics(&mut m);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.finish()).into_response()
}

/// Serves `router` on `listener` until `shutdown`; then waits (bounded) for open connections,
/// which end promptly because event streams watch the same token. Admission (see `admission`)
/// keeps a network flood from refusing loopback clients and clients with the token.
pub async fn serve(listener: TcpListener, router: Router, max_connections: usize, shutdown: CancellationToken) {
    serve_with(listener, router, Admission::new(max_connections, admission::PER_ADDRESS), shutdown).await
}

pub async fn serve_with(listener: TcpListener, router: Router, adm: Arc<Admission>, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let ticket = Arc::new(adm.admit(peer.ip()));
        let _ = stream.set_nodelay(true);
        let t = ticket.clone();
        let svc = router.clone().map_request(move |req: hyper::Request<hyper::body::Incoming>| {
            t.spoke();
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(ConnTicket(t.clone()));
            req
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(Watched::new(stream, ticket.clone())), TowerToHyperService::new(svc));
        let fut = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                // Displaced by a newcomer: dropping the connection closes it.
                _ = ticket.displaced() => {}
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => tracing::warn!("some HTTP connections did not close in time"),
    }
}
