//! The latest picture, cached: served at once and refreshed behind when older than
//! `snapshot.max_age_secs`; and pictures made from the RTSP hub's cached keyframe, once per
//! keyframe. Only memory is touched under the std locks here.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{keyframe, lock, Image};
use crate::media::{KeyframeSource, VideoCodec};

struct Cached {
    image: Image,
    /// When it arrived (fetched, or made from a keyframe).
    fetched: Instant,
}

pub(super) struct Latest {
    cell: Mutex<Option<Cached>>,
    max_age: Duration,
    /// Streams asked for a keyframe, best first.
    streams: Vec<String>,
    keyframes: OnceLock<Arc<dyn KeyframeSource>>,
    /// The last keyframe turned into a JPEG: (stream, captured) -> picture.
    keyframe_jpeg: Mutex<Option<(String, DateTime<Utc>, Image)>>,
    /// One keyframe decode at a time: a 1536x2048 decoder holds tens of MB, and a burst of rings
    /// asks for the same keyframe many times over (the later ones then find it made).
    decoding: tokio::sync::Mutex<()>,
    pub(super) keyframe_jpegs: AtomicU64,
}

impl Latest {
    pub(super) fn new(max_age: Duration, streams: Vec<String>) -> Latest {
        Latest {
            cell: Mutex::new(None),
            max_age,
            streams,
            keyframes: OnceLock::new(),
            keyframe_jpeg: Mutex::new(None),
            decoding: tokio::sync::Mutex::new(()),
            keyframe_jpegs: AtomicU64::new(0),
        }
    }

    pub(super) fn set_keyframe_source(&self, src: Arc<dyn KeyframeSource>) {
        let _ = self.keyframes.set(src);
    }

    /// The cached picture and whether it is older than the maximum age.
    pub(super) fn get(&self) -> Option<(Image, bool)> {
        lock(&self.cell).as_ref().map(|c| (c.image.clone(), c.fetched.elapsed() > self.max_age))
    }

    /// The cached picture if it arrived at or after `since`.
    pub(super) fn arrived_since(&self, since: Instant) -> Option<Image> {
        lock(&self.cell).as_ref().filter(|c| c.fetched >= since).map(|c| c.image.clone())
    }

    pub(super) fn set(&self, image: Image) {
        *lock(&self.cell) = Some(Cached { image, fetched: Instant::now() });
    }

    /// A JPEG of the newest keyframe the hub holds; made once per keyframe.
    pub(super) async fn keyframe_image(&self) -> Option<Image> {
        let src = self.keyframes.get()?.clone();
        let kf = self.streams.iter().find_map(|s| src.latest_keyframe(s))?;
        if kf.codec != VideoCodec::H264 {
            return None;
        }
        let _one = self.decoding.lock().await;
        if let Some((stream, captured, img)) = lock(&self.keyframe_jpeg).as_ref() {
            if *stream == kf.stream && *captured == kf.captured {
                return Some(img.clone());
            }
        }
        let annexb = kf.annexb.clone();
        let made =
            tokio::task::spawn_blocking(move || keyframe::keyframe_to_jpeg(&annexb, keyframe::JPEG_QUALITY)).await;
        match made {
            Ok(Ok((jpeg, _, _))) => {
                self.keyframe_jpegs.fetch_add(1, Relaxed);
                let img = Image::new(Bytes::from(jpeg), kf.captured);
                *lock(&self.keyframe_jpeg) = Some((kf.stream.clone(), kf.captured, img.clone()));
                Some(img)
            }
            Ok(Err(e)) => {
                tracing::warn!("cannot make a picture from the {} stream's keyframe: {}", kf.stream, e.msg());
                None
            }
            Err(_) => None,
        }
    }
}
