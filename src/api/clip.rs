//! `GET /api/rings/{id}/clip.mp4`: a ring's clip, under the same access rule as its picture.
//! `404` until the clip is written; `Range` requests are honoured (tower-http's file service), so
//! a browser or phone seeks without downloading all of it.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::ApiState;
use crate::error::{Error, ErrorKind};

pub async fn ring_clip(State(st): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return Error::new(ErrorKind::BadRequest, "ring id must be a number").into_response();
    };
    let not_found = || Error::new(ErrorKind::NotFound, format!("no clip for ring {id} (yet)")).into_response();
    let Some(path) = st.clips.as_ref().and_then(|c| c.file(id)) else { return not_found() };
    // `video/mp4` from the name. The file may be pruned between the lookup and the open: then it is a 404 like any other.
    match tower_http::services::ServeFile::new(&path).oneshot(req).await {
        Ok(resp) if resp.status() == axum::http::StatusCode::NOT_FOUND => not_found(),
        Ok(resp) => {
            let mut resp = resp.into_response();
            // A clip never changes once written, but ids start over with a new data directory.
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
            resp
        }
        Err(e) => Error::new(ErrorKind::Io, format!("cannot read the clip of ring {id}: {e}")).into_response(),
    }
}
