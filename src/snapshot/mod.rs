//! Still pictures. This module owns every fetch of a still from the doorbell: the latest picture
//! is served from cache and refreshed in the background; each ring keeps its own picture on disk.
//!
//! Sources, best first: the doorbell's snapshot URL (answering Digest or Basic, one fetch at a time,
//! never more often than `snapshot.min_interval_ms`), else a JPEG made from the RTSP hub's cached
//! keyframe (firmware 211101 removed the snapshot URL; the keyframe also exists the moment a ring
//! is detected, so a ring's picture is made from it first and replaced by a full fetch after).

mod archive;
use crate::digest as auth;
pub mod keyframe;
pub mod store;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SnapshotUrl};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Bus, Payload};
use crate::media::{KeyframeSource, VideoCodec};
use archive::StoreView;
use auth::Scheme;
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

struct Cached {
    image: Image,
    /// When it arrived (fetched, or made from a keyframe).
    fetched: Instant,
}

/// What the fetcher remembers between fetches; guarded by the single-flight lock.
#[derive(Default)]
struct FetchState {
    last_start: Option<Instant>,
    /// The last failure, when it ended, shared with everyone who waited for it.
    last_err: Option<(Instant, ErrorKind, String)>,
    /// The doorbell said 404: no snapshot URL until then.
    missing_until: Option<Instant>,
    /// The scheme the doorbell asked for last; later requests answer it at once.
    auth: Option<Scheme>,
    nc: u32,
    cnonce: String,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    failures: AtomicU64,
    keyframe_jpegs: AtomicU64,
    ring_images: AtomicU64,
    disk_errors: AtomicU64,
}

pub struct Snapshots {
    url: Option<String>,
    username: String,
    password: crate::config::Secret,
    client: reqwest::Client,
    max_age: Duration,
    min_interval: Duration,
    streams: Vec<String>,
    on_motion: bool,
    latest: Mutex<Option<Cached>>,
    fetch: tokio::sync::Mutex<FetchState>,
    refreshing: AtomicBool,
    /// Locked only on blocking threads (`with_store`): it is held while pictures sync to disk.
    store: Arc<Mutex<Store>>,
    /// What the store held after its last change, for the runtime's threads (`/api/rings`,
    /// `/metrics`): they never wait on the store's disk I/O.
    store_view: Arc<Mutex<Arc<StoreView>>>,
    recent: Mutex<VecDeque<(u64, Image)>>,
    /// Pictures the disk refused, oldest first, at most UNWRITTEN_MAX_BYTES.
    unwritten: Mutex<VecDeque<(u64, Image, &'static str)>>,
    keyframes: OnceLock<Arc<dyn KeyframeSource>>,
    /// The last keyframe turned into a JPEG: (stream, captured) -> picture.
    keyframe_jpeg: Mutex<Option<(String, DateTime<Utc>, Image)>>,
    /// One keyframe decode at a time: a 1536x2048 decoder holds tens of MB, and a burst of rings
    /// asks for the same keyframe many times over (the later ones then find it made).
    decoding: tokio::sync::Mutex<()>,
    data_dir: PathBuf,
    bus: Arc<Bus>,
    counters: Counters,
    /// Rings whose first picture is being taken; requests for them wait instead of a 404.
    pending: Mutex<std::collections::BTreeSet<u64>>,
    taken: tokio::sync::Notify,
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
        // `snapshot.url: ""` means the doorbell has none: pictures come from keyframes only.
        let url = match &cfg.snapshot.url {
            SnapshotUrl::None => None,
            SnapshotUrl::Url(u) => Some(u.to_string()),
            SnapshotUrl::Default if cfg.doorbell.host.is_empty() => None,
            SnapshotUrl::Default => {
                Some(format!("http://{}:{}/onvif/snapshot.jpg", cfg.doorbell.host, cfg.doorbell.http_port))
            }
        };
        let timeout = cfg.snapshot.timeout_secs;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()
            .unwrap_or_default();
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
            url,
            username: cfg.doorbell.username.clone(),
            password: cfg.doorbell.password.clone(),
            client,
            max_age: cfg.snapshot.max_age_secs,
            min_interval: Duration::from_millis(cfg.snapshot.min_interval_ms),
            streams,
            on_motion: cfg.snapshot.on_motion,
            latest: Mutex::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            refreshing: AtomicBool::new(false),
            store_view: Arc::new(Mutex::new(Arc::new(StoreView::of(&store)))),
            store: Arc::new(Mutex::new(store)),
            recent: Mutex::new(VecDeque::new()),
            unwritten: Mutex::new(VecDeque::new()),
            keyframes: OnceLock::new(),
            keyframe_jpeg: Mutex::new(None),
            decoding: tokio::sync::Mutex::new(()),
            data_dir: data_dir.to_path_buf(),
            bus,
            counters: Counters::default(),
            pending: Mutex::new(Default::default()),
            taken: tokio::sync::Notify::new(),
            timeout,
            handled: AtomicU64::new(bus_last_id),
        }
    }

    /// The RTSP hub, for pictures made from its cached keyframe.
    pub fn set_keyframe_source(&self, src: Arc<dyn KeyframeSource>) {
        let _ = self.keyframes.set(src);
    }

    /// Counts for tests and `/metrics`: (doorbell fetches, failures, keyframe JPEGs made).
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.counters.fetches.load(Relaxed),
            self.counters.failures.load(Relaxed),
            self.counters.keyframe_jpegs.load(Relaxed),
        )
    }

    fn cached(&self) -> Option<(Image, bool)> {
        let g = lock(&self.latest);
        g.as_ref().map(|c| (c.image.clone(), c.fetched.elapsed() > self.max_age))
    }

    fn set_latest(&self, image: Image) {
        *lock(&self.latest) = Some(Cached { image, fetched: Instant::now() });
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
        let mut st = self.fetch.lock().await;
        if let Some(c) = lock(&self.latest).as_ref() {
            if c.fetched >= since {
                return Ok(c.image.clone());
            }
        }
        if let Some((done, kind, msg)) = &st.last_err {
            if *done >= since {
                return Err(err(*kind, msg.clone()));
            }
        }
        if st.missing_until.is_some_and(|t| Instant::now() < t) {
            return Err(err(ErrorKind::NotFound, "the doorbell has no snapshot URL"));
        }
        let Some(url) = self.url.clone() else {
            return Err(err(ErrorKind::NotFound, "no snapshot URL is known"));
        };
        if let Some(next) = st.last_start.map(|t| t + self.min_interval) {
            if Instant::now() < next {
                if wait_interval {
                    tokio::time::sleep_until(next.into()).await;
                } else if let Some((img, _)) = self.cached() {
                    return Ok(img);
                } else if let Some((_, kind, msg)) = &st.last_err {
                    return Err(err(*kind, msg.clone()));
                } else {
                    tokio::time::sleep_until(next.into()).await;
                }
            }
        }
        st.last_start = Some(Instant::now());
        self.counters.fetches.fetch_add(1, Relaxed);
        match self.fetch_once(&mut st, &url).await {
            Ok(img) => {
                st.last_err = None;
                self.set_latest(img.clone());
                Ok(img)
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Relaxed);
                if e.kind() == ErrorKind::NotFound {
                    st.missing_until = Some(Instant::now() + MISSING_RETRY);
                }
                tracing::debug!("snapshot fetch failed: {}", e.msg());
                st.last_err = Some((Instant::now(), e.kind(), e.msg().to_string()));
                Err(e)
            }
        }
    }

    fn authorization(&self, st: &mut FetchState, uri: &str) -> Option<String> {
        match st.auth.as_ref()? {
            Scheme::Basic => Some(auth::basic_authorization(&self.username, self.password.expose())),
            Scheme::Digest(ch) => {
                st.nc = st.nc.wrapping_add(1);
                Some(auth::digest_authorization(
                    ch,
                    &self.username,
                    self.password.expose(),
                    "GET",
                    uri,
                    st.nc,
                    &st.cnonce,
                ))
            }
        }
    }

    /// One picture from `url`: answers a 401 once with the scheme it asks for.
    async fn fetch_once(&self, st: &mut FetchState, url: &str) -> Result<Image> {
        let parsed = url::Url::parse(url).map_err(|_| err(ErrorKind::Config, "the snapshot URL is not a URL"))?;
        let uri = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let mut header = self.authorization(st, &uri);
        for attempt in 0..2 {
            let mut req = self.client.get(parsed.clone());
            if let Some(h) = &header {
                req = req.header(reqwest::header::AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(|e| {
                let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Upstream };
                err(kind, format!("snapshot fetch failed: {}", e.without_url()))
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                let challenges = resp.headers().get_all(reqwest::header::WWW_AUTHENTICATE);
                let scheme = auth::choose(challenges.iter().map(|v| v.as_bytes()));
                // A second 401 to a fresh answer is a wrong password, unless the nonce just went stale.
                let stale = matches!(&scheme, Some(Scheme::Digest(d)) if d.stale);
                if attempt == 1 && !stale {
                    st.auth = None;
                    return Err(err(
                        ErrorKind::Unauthenticated,
                        "the doorbell refused the username or password for snapshots",
                    ));
                }
                let Some(scheme) = scheme else {
                    return Err(err(
                        ErrorKind::Upstream,
                        "the doorbell asks for an authentication the bridge cannot answer",
                    ));
                };
                st.auth = Some(scheme);
                st.nc = 0;
                st.cnonce = auth::new_cnonce();
                header = self.authorization(st, &uri);
                continue;
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(err(ErrorKind::NotFound, "the doorbell has no snapshot URL (404)"));
            }
            if !status.is_success() {
                return Err(err(
                    ErrorKind::Upstream,
                    format!("the doorbell answered {status} to the snapshot request"),
                ));
            }
            let body = read_limited(resp, MAX_JPEG_BYTES).await?;
            if !body.starts_with(&[0xFF, 0xD8]) {
                return Err(err(ErrorKind::Upstream, "the doorbell's snapshot is not a JPEG"));
            }
            return Ok(Image::new(body, Utc::now()));
        }
        Err(err(ErrorKind::Unauthenticated, "the doorbell refused the snapshot request"))
    }

    /// A JPEG of the newest keyframe the hub holds; made once per keyframe.
    pub async fn keyframe_image(&self) -> Option<Image> {
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
                self.counters.keyframe_jpegs.fetch_add(1, Relaxed);
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
        let c = &self.counters;
        let lines = [
            ("snapshot_fetches_total", Counter, "Pictures asked of the doorbell.", c.fetches.load(Relaxed)),
            ("snapshot_failures_total", Counter, "Doorbell picture requests that failed.", c.failures.load(Relaxed)),
            (
                "snapshot_keyframe_jpegs_total",
                Counter,
                "Pictures made from a keyframe.",
                c.keyframe_jpegs.load(Relaxed),
            ),
            ("snapshot_ring_images_total", Counter, "Ring pictures kept.", c.ring_images.load(Relaxed)),
            ("snapshot_disk_errors_total", Counter, "Ring pictures the disk refused.", c.disk_errors.load(Relaxed)),
            ("snapshot_ring_images_bytes", Gauge, "Bytes of ring pictures on disk.", self.ring_images_bytes()),
            (
                "snapshot_unwritten_images",
                Gauge,
                "Ring pictures waiting for the disk.",
                lock(&self.unwritten).len() as u64,
            ),
        ];
        for (name, kind, help, v) in lines {
            out.single(name, kind, help, v);
        }
    }
}

/// Reads a body, refusing more than `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Bytes> {
    if resp.content_length().is_some_and(|n| n as usize > limit) {
        return Err(err(ErrorKind::Upstream, "the doorbell's snapshot is too large"));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| err(ErrorKind::Upstream, format!("snapshot download failed: {}", e.without_url())))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(err(ErrorKind::Upstream, "the doorbell's snapshot is too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
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
