//! `GET /api/rings?limit=N`: the kept ring history, newest first, for Home Assistant's media
//! browser. A picture is listed when one is on disk, in memory or being taken (its URL then
//! waits for it); a clip once it is written (`null` before, and when clips are off).

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiState;
use crate::domain::{ring_picture_path, time_string};
use crate::error::{Error, ErrorKind};
use crate::snapshot::store::Entry;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
}

/// `limit` as given: absent -> default; a number above the maximum is cut to it.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, Error> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.trim().parse::<u64>() {
            Ok(0) | Err(_) => Err(Error::new(ErrorKind::BadRequest, "limit must be a number from 1 to 500")),
            Ok(n) => Ok((n as usize).min(MAX_LIMIT)),
        },
    }
}

/// The body: `history` is oldest first (as the store keeps it); `in_flight` are rings whose
/// picture is not on disk yet but served from memory or being taken; `clip` gives a ring's clip link.
pub fn body(history: &[Entry], in_flight: &BTreeSet<u64>, clip: impl Fn(u64) -> Option<String>, limit: usize) -> Value {
    let rings: Vec<Value> = history
        .iter()
        .rev()
        .take(limit)
        .map(|e| {
            let has = e.image_bytes.is_some() || in_flight.contains(&e.id);
            let snapshot = has.then(|| ring_picture_path(e.id));
            json!({"id": e.id, "at": time_string(e.at), "source": e.source, "snapshot": snapshot, "clip": clip(e.id)})
        })
        .collect();
    json!({ "rings": rings })
}

pub async fn list(State(st): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    match parse_limit(q.limit.as_deref()) {
        Ok(limit) => {
            let clip = |id| st.clips.as_ref().and_then(|c| c.link(id));
            Json(body(&st.snapshots.ring_history(), &st.snapshots.rings_in_flight(), clip, limit)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, image: bool) -> Entry {
        Entry {
            id,
            at: chrono::DateTime::parse_from_rfc3339(&format!("2026-11-25T10:00:{id:02}.000Z")).unwrap().to_utc(),
            source: "coiot".into(),
            press: None,
            image_bytes: image.then_some(1000),
            origin: None,
            taken: None,
        }
    }

    #[test]
    fn newest_first_limited_and_pictures_only_when_kept() {
        let h: Vec<Entry> = (1..=5).map(|i| entry(i, i != 4 && i != 3)).collect();
        let b = body(&h, &BTreeSet::from([3]), |id| (id == 4).then(|| format!("/api/rings/{id}/clip.mp4")), 3);
        let ids: Vec<u64> = b["rings"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [5, 4, 3]);
        assert_eq!(b["rings"][0]["snapshot"], "/api/rings/5/snapshot.jpg");
        assert_eq!(b["rings"][1]["snapshot"], Value::Null);
        assert_eq!(b["rings"][2]["snapshot"], "/api/rings/3/snapshot.jpg", "in memory, not on disk yet");
        assert_eq!(b["rings"][0]["clip"], Value::Null);
        assert_eq!(b["rings"][1]["clip"], "/api/rings/4/clip.mp4");
        assert_eq!(b["rings"][0]["source"], "coiot");
        assert_eq!(body(&[], &BTreeSet::new(), |_| None, 50), json!({"rings": []}));
    }

    #[test]
    fn limit_defaults_caps_and_refuses_nonsense() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("7")).unwrap(), 7);
        assert_eq!(parse_limit(Some("100000000000")).unwrap(), 500);
        for bad in ["0", "-1", "x", "", "1.5"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
