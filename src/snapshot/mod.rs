//! Still pictures. This module owns every fetch of a still from the doorbell: the latest picture
//! is served from cache and refreshed in the background; each ring keeps its own picture on disk.
//!
//! Sources, best first: the doorbell's snapshot URL (answering Digest or Basic, one fetch at a time,
//! never more often than `snapshot.min_interval_ms`), else a JPEG made from the RTSP hub's cached
//! keyframe (firmware 211101 removed the snapshot URL; the keyframe also exists the moment a ring
//! is detected, so a ring's picture is made from it first and replaced by a full fetch after).

mod archive;
mod fetcher;
pub mod keyframe;
mod latest;
pub mod store;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Bus, Payload};
use crate::media::KeyframeSource;
use archive::Archive;
use fetcher::Fetcher;
use latest::Latest;
use store::Store;

/// Largest picture we accept from the doorbell; its 1536x2048 JPEGs are a few hundred kB.
pub const MAX_JPEG_BYTES: usize = 8 * 1024 * 1024;
/// After a 404 (firmware 211101 has no snapshot URL) ask again only this much later.
pub const MISSING_RETRY: Duration = Duration::from_secs(600);
/// Ring pictures also kept in memory, so the phone's first request never touches the disk.
pub const RECENT_IN_MEMORY: usize = 8;
/// Ring pictures the disk refused, kept in memory (and served) until a write succeeds again.
pub const UNWRITTEN_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Motion pictures kept under `<data_dir>/motion/`.
pub const MOTION_KEEP: usize = 50;

#[derive(Clone, Debug)]
pub struct Image {
    pub bytes: Bytes,
    pub taken: DateTime<Utc>,
    pub etag: String,
}

impl Image {
    pub fn new(bytes: Bytes, taken: DateTime<Utc>) -> Image {
        use sha2::Digest;
        let etag = hex::encode(&sha2::Sha256::digest(&bytes)[..8]);
        Image { bytes, taken, etag }
    }
}

pub struct Snapshots {
    fetcher: Fetcher,
    on_motion: bool,
    latest: Latest,
    refreshing: AtomicBool,
    /// Ring pictures: the store's owner thread and the pictures still in memory.
    archive: Archive,
    data_dir: PathBuf,
    bus: Arc<Bus>,
    timeout: Duration,
    /// Id of the last bus event `run` acted on.
    handled: AtomicU64,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::new(kind, msg)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Snapshots {
    /// Opens the ring store under `data_dir` and tells `bus` where ring ids continue.
    pub fn new(cfg: &Config, data_dir: &Path, bus: Arc<Bus>) -> Snapshots {
        let timeout = cfg.snapshot.timeout_secs;
        let mut store =
            Store::open(data_dir, cfg.snapshot.ring_images_keep, cfg.snapshot.ring_images_max_mb * 1024 * 1024);
        store.health = bus.storage.clone();
        let bus_last_id = bus.last_id();
        if let Some(last) = store.last() {
            bus.set_next_ring_id(last.id + 1, Some(last.ring()));
        }
        let mut streams: Vec<String> = Vec::new();
        if cfg.streams.contains_key("main") {
            streams.push("main".into());
        }
        streams.extend(cfg.streams.keys().filter(|k| *k != "main").cloned());
        Snapshots {
            fetcher: Fetcher::new(cfg, timeout),
            on_motion: cfg.snapshot.on_motion,
            latest: Latest::new(cfg.snapshot.max_age_secs, streams),
            refreshing: AtomicBool::new(false),
            archive: Archive::new(store),
            data_dir: data_dir.to_path_buf(),
            bus,
            timeout,
            handled: AtomicU64::new(bus_last_id),
        }
    }

    /// The RTSP hub, for pictures made from its cached keyframe.
    pub fn set_keyframe_source(&self, src: Arc<dyn KeyframeSource>) {
        self.latest.set_keyframe_source(src);
    }

    /// Counts for tests and `/metrics`: (doorbell fetches, failures, keyframe JPEGs made).
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.fetcher.fetches.load(Relaxed),
            self.fetcher.failures.load(Relaxed),
            self.latest.keyframe_jpegs.load(Relaxed),
        )
    }

    fn cached(&self) -> Option<(Image, bool)> {
        self.latest.get()
    }

    fn set_latest(&self, image: Image) {
        self.latest.set(image);
    }

    /// The latest picture: the cached one at once (refreshed behind when old), or, with nothing
    /// cached, one fetch (else a keyframe picture).
    pub async fn latest(self: &Arc<Self>) -> Result<Image> {
        if let Some((img, stale)) = self.cached() {
            if stale && !self.refreshing.swap(true, Relaxed) {
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me.update(Instant::now(), false).await;
                    me.refreshing.store(false, Relaxed);
                });
            }
            return Ok(img);
        }
        self.update(Instant::now(), false).await
    }

    /// A picture arrived after `since`: from the doorbell, else from the keyframe cache.
    async fn update(&self, since: Instant, wait_interval: bool) -> Result<Image> {
        match self.refresh(since, wait_interval).await {
            Ok(img) => Ok(img),
            Err(e) => match self.keyframe_image().await {
                // A keyframe older than the cached picture (stream stalled) does not replace it.
                Some(img) if self.cached().is_some_and(|(c, _)| c.taken > img.taken) => Err(e),
                Some(img) => {
                    self.set_latest(img.clone());
                    Ok(img)
                }
                None => Err(e),
            },
        }
    }

    /// A picture from the doorbell that arrived after `since`. One fetch at a time; callers
    /// arriving meanwhile share its result, success or failure. With `wait_interval`, waits out
    /// the minimum interval instead of answering with the last result.
    pub async fn refresh(&self, since: Instant, wait_interval: bool) -> Result<Image> {
        self.fetcher.refresh(&self.latest, since, wait_interval).await
    }

    /// A JPEG of the newest keyframe the hub holds; made once per keyframe.
    pub async fn keyframe_image(&self) -> Option<Image> {
        self.latest.keyframe_image().await
    }

    /// The owner task of the pictures events ask for: one for every ring, and with
    /// `snapshot.on_motion` one at every motion start, kept under `<data_dir>/motion/`. It reads
    /// the bus from where it last stopped, so a ring during a restart of this task keeps its picture.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut sub = self.bus.subscribe(Some(self.handled.load(Relaxed)));
        let mut work = tokio::task::JoinSet::new();
        let mut due: VecDeque<Arc<crate::events::Record>> = std::mem::take(&mut sub.backlog).into();
        loop {
            while let Some(rec) = due.pop_front() {
                if rec.id <= self.handled.load(Relaxed) {
                    continue;
                }
                self.handled.store(rec.id, Relaxed);
                self.picture_for(&rec.payload, &mut work);
            }
            tokio::select! {
                r = sub.rx.recv() => match r {
                    Ok(rec) => due.push_back(rec),
                    // Fell behind the channel: the bus's history has what was missed.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        due.extend(self.bus.since(self.handled.load(Relaxed)).0);
                    }
                    Err(_) => break,
                },
                Some(_) = work.join_next() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Pictures being taken finish (each is bounded by the fetch timeout) or are left behind.
        let finish = async { while work.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(self.timeout + Duration::from_secs(1), finish).await;
    }

    fn picture_for(self: &Arc<Self>, payload: &Payload, work: &mut tokio::task::JoinSet<()>) {
        let me = self.clone();
        match payload {
            Payload::Ring(r) => {
                let id = r.id;
                work.spawn(async move { me.take_for_ring(id).await });
            }
            Payload::Sensor(s) if self.on_motion && s.state == Some(true) && s.name != crate::domain::Sensor::Ring => {
                let at = Utc::now();
                work.spawn(async move {
                    if let Ok(img) = me.update(Instant::now(), true).await {
                        let dir = me.data_dir.join("motion");
                        let _ = tokio::task::spawn_blocking(move || keep_motion_picture(&dir, &img.bytes, at)).await;
                    }
                });
            }
            _ => {}
        }
    }

    pub fn metrics(&self, out: &mut crate::metrics::Metrics) {
        use crate::metrics::Kind::{Counter, Gauge};
        let lines = [
            ("snapshot_fetches_total", Counter, "Pictures asked of the doorbell.", self.fetcher.fetches.load(Relaxed)),
            (
                "snapshot_failures_total",
                Counter,
                "Doorbell picture requests that failed.",
                self.fetcher.failures.load(Relaxed),
            ),
            (
                "snapshot_keyframe_jpegs_total",
                Counter,
                "Pictures made from a keyframe.",
                self.latest.keyframe_jpegs.load(Relaxed),
            ),
            ("snapshot_ring_images_total", Counter, "Ring pictures kept.", self.archive.ring_images.load(Relaxed)),
            (
                "snapshot_disk_errors_total",
                Counter,
                "Ring pictures the disk refused.",
                self.archive.disk_errors.load(Relaxed),
            ),
            ("snapshot_ring_images_bytes", Gauge, "Bytes of ring pictures on disk.", self.ring_images_bytes()),
            (
                "snapshot_unwritten_images",
                Gauge,
                "Ring pictures waiting for the disk.",
                self.archive.unwritten_len() as u64,
            ),
        ];
        for (name, kind, help, v) in lines {
            out.single(name, kind, help, v);
        }
    }
}

fn keep_motion_picture(dir: &Path, jpeg: &[u8], at: DateTime<Utc>) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let name = format!("{}.jpg", at.format("%Y%m%dT%H%M%S%.3fZ"));
    if let Err(e) = crate::datadir::write_atomic(&dir.join(&name), jpeg, crate::datadir::Access::Default) {
        tracing::warn!("cannot keep the motion picture: {e}");
    }
    // Names sort by time: drop the oldest beyond the limit.
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut names: Vec<PathBuf> =
            rd.flatten().map(|f| f.path()).filter(|p| p.extension().is_some_and(|e| e == "jpg")).collect();
        names.sort();
        let excess = names.len().saturating_sub(MOTION_KEEP);
        for p in names.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
    }
}
