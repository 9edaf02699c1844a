//! `POST /api/talk`: an audio body played on the doorbell's speaker (see `crate::talk`).
//! Answers: 200 once played; 400 audio that cannot be decoded; 409 another talk is playing;
//! 413 body or message too large/long; 415 a format we do not read (Opus included); 501 the
//! doorbell has no backchannel; 502 the doorbell failed. Same access rule as the rest of /api.
//! It has its own body limit (the rest of the API takes no uploads).

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::error::json_error;
use super::ApiState;
use crate::talk::{TalkError, MAX_BODY_BYTES};

pub fn router(state: ApiState) -> Router<ApiState> {
    Router::new()
        .route("/api/talk", post(talk))
        .route_layer(middleware::from_fn_with_state(state, super::require_auth))
        .layer(DefaultBodyLimit::disable())
}

fn too_large() -> Response {
    let detail = format!("the audio is larger than {} MiB", MAX_BODY_BYTES / (1024 * 1024));
    json_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &detail)
}

async fn talk(State(st): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let Some(t) = st.talk.clone() else {
        return json_error(StatusCode::NOT_IMPLEMENTED, "talk_unsupported", "talking is not available on this bridge");
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else { return too_large() };
    if bytes.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "bad_request", "the body must hold the audio to play");
    }
    let mime = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    match t.speak(bytes, mime).await {
        Ok(s) => Json(json!({
            "result": "spoken",
            "seconds": s.seconds,
            "packets": s.packets,
            "first_packet_ms": s.first_packet_ms,
        }))
        .into_response(),
        Err(e) => {
            let (status, error, detail) = match e {
                TalkError::Busy => (StatusCode::CONFLICT, "busy", "another message is playing".to_string()),
                TalkError::TooLarge(d) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", d),
                TalkError::UnsupportedFormat(d) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format", d),
                TalkError::BadAudio(d) => (StatusCode::BAD_REQUEST, "bad_audio", d),
                TalkError::NotSupported(d) => {
                    (StatusCode::NOT_IMPLEMENTED, "talk_unsupported", format!("the doorbell cannot play audio: {d}"))
                }
                TalkError::Doorbell(d) => (StatusCode::BAD_GATEWAY, "upstream", d),
            };
            if status.is_server_error() {
                tracing::warn!("talk failed: {detail}");
            }
            json_error(status, error, &detail)
        }
    }
}
