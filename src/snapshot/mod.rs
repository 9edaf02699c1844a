//! Still pictures. This module owns every fetch of a still from the doorbell: the latest picture
//! is served from cache and refreshed in the background; each ring keeps its own picture.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};

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
    fetched: Instant,
}

pub struct Snapshots {
    url: String,
    username: String,
    password: crate::config::Secret,
    client: reqwest::Client,
    max_age: Duration,
    latest: Mutex<Option<Cached>>,
    rings: Mutex<BTreeMap<u64, Image>>,
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
    keyframes: std::sync::OnceLock<std::sync::Arc<dyn crate::media::KeyframeSource>>,
}

impl Snapshots {
    pub fn new(cfg: &Config) -> Snapshots {
        let url =
            cfg.snapshot.url.clone().unwrap_or_else(|| {
                format!("http://{}:{}/onvif/snapshot.jpg", cfg.doorbell.host, cfg.doorbell.http_port)
            });
        Snapshots {
            url,
            username: cfg.doorbell.username.clone(),
            password: cfg.doorbell.password.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(cfg.snapshot.timeout_secs))
                .build()
                .unwrap_or_default(),
            max_age: Duration::from_secs(cfg.snapshot.max_age_secs),
            latest: Mutex::new(None),
            rings: Mutex::new(BTreeMap::new()),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: Default::default(),
            failures: Default::default(),
            keyframes: std::sync::OnceLock::new(),
        }
    }

    /// The RTSP hub, for pictures made from its cached keyframe.
    pub fn set_keyframe_source(&self, src: std::sync::Arc<dyn crate::media::KeyframeSource>) {
        let _ = self.keyframes.set(src);
    }

    fn cached(&self) -> Option<(Image, bool)> {
        let g = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|c| (c.image.clone(), c.fetched.elapsed() > self.max_age))
    }

    /// The latest picture: the cached one at once (refreshed behind when old), or one fetch.
    pub async fn latest(self: &std::sync::Arc<Self>) -> Result<Image> {
        if let Some((img, stale)) = self.cached() {
            if stale {
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me.refresh().await;
                });
            }
            return Ok(img);
        }
        self.refresh().await
    }

    /// One fetch at a time; callers arriving meanwhile share its result.
    pub async fn refresh(&self) -> Result<Image> {
        let started = Instant::now();
        let _g = self.fetch_lock.lock().await;
        if let Some(c) = self.latest.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if c.fetched >= started {
                return Ok(c.image.clone());
            }
        }
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch().await {
            Ok(img) => {
                *self.latest.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Cached { image: img.clone(), fetched: Instant::now() });
                Ok(img)
            }
            Err(e) => {
                self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Image> {
        let resp = self
            .client
            .get(&self.url)
            .basic_auth(&self.username, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| Error::new(ErrorKind::Upstream, format!("snapshot fetch failed: {}", e.without_url())))?;
        if !resp.status().is_success() {
            return Err(Error::new(
                ErrorKind::Upstream,
                format!("doorbell answered {} to the snapshot request", resp.status()),
            ));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::new(ErrorKind::Upstream, format!("snapshot download failed: {}", e.without_url())))?;
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            return Err(Error::new(ErrorKind::Upstream, "the doorbell's snapshot is not a JPEG"));
        }
        Ok(Image::new(bytes, Utc::now()))
    }

    /// Takes the picture for a ring (kept in memory here).
    pub async fn take_for_ring(&self, id: u64) {
        let img = match self.cached() {
            Some((img, false)) => Some(img),
            _ => self.refresh().await.ok(),
        };
        if let Some(img) = img {
            self.rings.lock().unwrap_or_else(|e| e.into_inner()).insert(id, img);
        }
    }

    pub async fn ring_image(&self, id: u64) -> Result<Image> {
        self.rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no picture for ring {id}")))
    }

    pub fn metrics(&self, out: &mut String) {
        use std::sync::atomic::Ordering::Relaxed;
        out.push_str("# TYPE doorbell_bridge_snapshot_fetches_total counter\n");
        out.push_str(&format!("doorbell_bridge_snapshot_fetches_total {}\n", self.fetches.load(Relaxed)));
        out.push_str("# TYPE doorbell_bridge_snapshot_failures_total counter\n");
        out.push_str(&format!("doorbell_bridge_snapshot_failures_total {}\n", self.failures.load(Relaxed)));
    }
}
