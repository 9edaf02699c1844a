//! The simulated doorbell's `/onvif/snapshot.jpg`, switchable by `POST /sim/snapshot?mode=...`:
//! - `ok` (default): the 401 offers Digest and Basic, like a DS-HD1 set to "digest/basic";
//! - `digest` / `basic`: only that scheme;
//! - `slow`: as `ok`, answering after `delay_ms` (default 2000), like the DB1 on a bad day;
//! - `fail`: 500 after authentication; `missing`: 404, as firmware 211101 (no snapshot URL).
//!
//! `delay_ms` adds latency to any mode. Every request is counted in `SimState.snapshot_requests`,
//! every picture served in `SnapshotControl.served`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use crate::digest as auth;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Digest,
    Basic,
    Slow,
    Fail,
    Missing,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "ok" => Mode::Ok,
            "digest" => Mode::Digest,
            "basic" => Mode::Basic,
            "slow" => Mode::Slow,
            "fail" => Mode::Fail,
            "missing" => Mode::Missing,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Digest => "digest",
            Mode::Basic => "basic",
            Mode::Slow => "slow",
            Mode::Fail => "fail",
            Mode::Missing => "missing",
        }
    }
}

/// Default added latency of `slow`.
pub const SLOW_DEFAULT_MS: u64 = 2000;
pub const REALM: &str = "DS-HD1";

pub struct SnapshotControl {
    pub mode: Mutex<Mode>,
    pub delay_ms: AtomicU64,
    /// Pictures actually served (200 answers).
    pub served: AtomicU64,
    nonce: String,
}

impl Default for SnapshotControl {
    fn default() -> Self {
        SnapshotControl {
            mode: Mutex::new(Mode::Ok),
            delay_ms: AtomicU64::new(0),
            served: AtomicU64::new(0),
            nonce: hex::encode(rand::random::<[u8; 16]>()),
        }
    }
}

impl SnapshotControl {
    pub fn set(&self, mode: Mode, delay_ms: Option<u64>) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
        let d = delay_ms.unwrap_or(if mode == Mode::Slow { SLOW_DEFAULT_MS } else { 0 });
        self.delay_ms.store(d, Ordering::SeqCst);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn basic_ok(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let want = auth::basic_authorization(&ctx.opts.username, &ctx.opts.password);
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == want)
}

fn digest_ok(ctx: &Ctx, headers: &HeaderMap, nonce: &str) -> bool {
    let Some(h) = headers.get(header::AUTHORIZATION) else { return false };
    let Some(a) = auth::parse_authorization(h.as_bytes()) else { return false };
    if a.scheme != "digest" || a.param("nonce") != Some(nonce) || a.param("username") != Some(&ctx.opts.username) {
        return false;
    }
    let Some(Scheme::Digest(ch)) = auth::choose([format!(
        "Digest realm=\"{REALM}\", nonce=\"{nonce}\", qop=\"auth\", algorithm={}",
        a.param("algorithm").unwrap_or("MD5")
    )
    .as_bytes()]) else {
        return false;
    };
    let uri = a.param("uri").unwrap_or("");
    let nc = a.param("nc").and_then(|n| u32::from_str_radix(n, 16).ok()).unwrap_or(0);
    let cnonce = a.param("cnonce").unwrap_or("");
    uri.starts_with("/onvif/snapshot.jpg")
        && a.param("response")
            == Some(auth::digest_response(&ch, &ctx.opts.username, &ctx.opts.password, "GET", uri, nc, cnonce).as_str())
}

use auth::Scheme;

pub(super) async fn snapshot(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    use std::sync::atomic::Ordering::SeqCst;
    if !ctx.state.online.load(SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    ctx.state.snapshot_requests.fetch_add(1, SeqCst);
    let ctl = &ctx.state.snapshot;
    let mode = ctl.mode();
    let delay = ctl.delay_ms.load(SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if mode == Mode::Missing {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (digest, basic) = match mode {
        Mode::Digest => (true, false),
        Mode::Basic => (false, true),
        _ => (true, true),
    };
    let authed = (digest && digest_ok(&ctx, &headers, &ctl.nonce)) || (basic && basic_ok(&ctx, &headers));
    if !authed {
        let mut resp = StatusCode::UNAUTHORIZED.into_response();
        let h = resp.headers_mut();
        if digest {
            let v = format!("Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{}\", stale=\"FALSE\"", ctl.nonce);
            if let Ok(v) = v.parse() {
                h.append(header::WWW_AUTHENTICATE, v);
            }
        }
        if basic {
            if let Ok(v) = format!("Basic realm=\"{REALM}\"").parse() {
                h.append(header::WWW_AUTHENTICATE, v);
            }
        }
        return resp;
    }
    if mode == Mode::Fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, "snapshot failed").into_response();
    }
    ctl.served.fetch_add(1, SeqCst);
    ([(header::CONTENT_TYPE, "image/jpeg")], super::image::snapshot_jpeg()).into_response()
}

#[derive(Deserialize)]
pub(super) struct ControlQuery {
    mode: Option<String>,
    delay_ms: Option<u64>,
}

/// `POST /sim/snapshot?mode=ok|slow|fail|digest|basic|missing&delay_ms=N`
pub(super) async fn control(State(ctx): State<Ctx>, Query(q): Query<ControlQuery>) -> Response {
    let ctl = &ctx.state.snapshot;
    let mode = match q.mode.as_deref() {
        None => ctl.mode(),
        Some(m) => match Mode::parse(m) {
            Some(m) => m,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "mode must be ok, slow, fail, digest, basic or missing"})),
                )
                    .into_response()
            }
        },
    };
    ctl.set(mode, q.delay_ms);
    Json(status(&ctx)).into_response()
}

pub(super) fn status(ctx: &Ctx) -> serde_json::Value {
    let ctl = &ctx.state.snapshot;
    json!({
        "mode": ctl.mode().as_str(),
        "delay_ms": ctl.delay_ms.load(Ordering::SeqCst),
        "requests": ctx.state.snapshot_requests.load(Ordering::SeqCst),
        "served": ctl.served.load(Ordering::SeqCst),
    })
}
