//! Ring clips: for every ring, an MP4 of the main stream from `clips.pre_roll_secs` before the
//! press to `clips.post_roll_secs` after it, kept beside the ring's picture and pruned with the
//! ring pictures. The task listens to the event bus for rings and to the stream hub for frames;
//! the ring event never waits for it. Muxing and writing run on a blocking thread.
//!
//! A clip being recorded when the bridge stops is written with what it has on a clean stop;
//! after a crash it is lost (never half-written: files are renamed into place), and its rings'
//! clips stay `404`.

pub mod files;
pub mod mp4;
pub mod recorder;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::datadir::{self, Health};
use crate::events::{Bus, Payload, StatusSource};
use crate::metrics::{Kind, Metrics};
use crate::rtsp::hub::StreamHub;
use crate::snapshot::Snapshots;
use crate::status::{ClipsStatus, Status};
use files::{ClipFile, ClipIndex};
use recorder::{Finished, Recorder};

#[derive(Default)]
pub struct Counters {
    pub written: AtomicU64,
    pub failed: AtomicU64,
    pub write_us_total: AtomicU64,
    pub preroll_bytes: AtomicU64,
    pub recording: AtomicU64,
}

pub struct Clips {
    pub enabled: bool,
    pub stream: String,
    pub pre_roll: Duration,
    pub post_roll: Duration,
    max_bytes: u64,
    index: Mutex<ClipIndex>,
    pub counters: Counters,
    health: Arc<Health>,
}

impl Clips {
    /// Opens the clips in `<data_dir>/rings`; drops those whose rings the history no longer holds.
    pub fn new(config: &Config, data_dir: &Path, bus: &Bus, snapshots: &Snapshots) -> Arc<Clips> {
        let c = &config.clips;
        let enabled = !c.pre_roll_secs.is_zero() && config.streams.contains_key(&c.stream);
        let clips = Clips {
            enabled,
            stream: c.stream.clone(),
            pre_roll: c.pre_roll_secs,
            post_roll: c.post_roll_secs,
            max_bytes: config.snapshot.ring_images_max_mb * 1024 * 1024,
            index: Mutex::new(ClipIndex::open(&data_dir.join("rings"))),
            counters: Counters::default(),
            health: bus.storage.clone(),
        };
        clips.prune(snapshots);
        Arc::new(clips)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, ClipIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prune(&self, snapshots: &Snapshots) {
        let kept: std::collections::BTreeSet<u64> = snapshots.ring_history().iter().map(|e| e.id).collect();
        let gone = self.index().retain(|id| kept.contains(&id), self.max_bytes);
        if gone > 0 {
            tracing::debug!("{gone} ring clips pruned");
        }
    }

    /// The file of ring `id`'s clip, when it is on disk.
    pub fn file(&self, id: u64) -> Option<std::path::PathBuf> {
        let idx = self.index();
        idx.find(id).map(|c| idx.path(&c))
    }

    /// The clip's path on the API once it is written (the ring history lists only those).
    pub fn link(&self, id: u64) -> Option<String> {
        self.index().find(id).map(|_| format!("/api/rings/{id}/clip.mp4"))
    }

    /// Records clips until `shutdown`; on a clean stop the clip being recorded is written as it is.
    pub async fn run(
        self: Arc<Self>,
        hub: Arc<StreamHub>,
        bus: Arc<Bus>,
        snapshots: Arc<Snapshots>,
        sd: CancellationToken,
    ) {
        let mut rec = Recorder::new(self.pre_roll, self.post_roll);
        let mut frames = hub.frames();
        let mut events = bus.subscribe(None).rx;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let done = tokio::select! {
                f = frames.recv() => match f {
                    Ok(f) => rec.frame(Instant::now(), f),
                    Err(RecvError::Lagged(n)) => {
                        // Frames are missing: what is held would not decode cleanly past the gap.
                        tracing::warn!("ring clips lost {n} frames of stream {}; starting over at the next keyframe", self.stream);
                        rec.buffer.clear();
                        rec.finish()
                    }
                    Err(RecvError::Closed) => return,
                },
                e = events.recv() => match e {
                    Ok(r) => match &r.payload {
                        Payload::Ring(ring) => rec.ring(ring.id, Instant::now()),
                        _ => None,
                    },
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => rec.tick(Instant::now()),
                _ = sd.cancelled() => {
                    if let Some(done) = rec.finish() {
                        self.clone().write(hub.clone(), done, snapshots.clone()).await;
                    }
                    return;
                }
            };
            self.counters.preroll_bytes.store(rec.buffer.bytes() as u64, Relaxed);
            self.counters.recording.store(rec.recording().len() as u64, Relaxed);
            if let Some(done) = done {
                tokio::spawn(self.clone().write(hub.clone(), done, snapshots.clone()));
            }
        }
    }

    /// Muxes and writes a finished clip (on a blocking thread), then applies retention.
    async fn write(self: Arc<Self>, hub: Arc<StreamHub>, done: Finished, snapshots: Arc<Snapshots>) {
        let me = self.clone();
        let rings = done.rings.clone();
        let res = tokio::task::spawn_blocking(move || me.write_blocking(&hub, done)).await;
        match res {
            Ok(Ok(c)) => {
                self.counters.written.fetch_add(1, Relaxed);
                tracing::info!("clip of ring {} kept ({} bytes)", rings.first().copied().unwrap_or(0), c.bytes);
            }
            Ok(Err(e)) => {
                self.counters.failed.fetch_add(1, Relaxed);
                tracing::warn!("no clip for ring {rings:?}: {e}");
            }
            Err(e) => {
                self.counters.failed.fetch_add(1, Relaxed);
                tracing::warn!("no clip for ring {rings:?}: {e}");
            }
        }
        self.prune(&snapshots);
    }

    fn write_blocking(&self, hub: &StreamHub, done: Finished) -> Result<ClipFile, String> {
        let started = Instant::now();
        let desc = hub.description().ok_or("the stream has no description")?;
        let (first, last) = match (done.rings.first(), done.rings.last()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => return Err("no ring".into()),
        };
        let (body, sum) = mp4::mux(&desc, &done.frames)?;
        let file = ClipFile { first, last, bytes: body.len() as u64 };
        let path = self.index().path(&file);
        let res = datadir::write_atomic(&path, &body, datadir::Access::Default);
        self.health.record(&res, || format!("cannot write ring clips in {}", path.display()));
        res.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.index().files.insert(first, file);
        self.counters.write_us_total.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        tracing::debug!(
            "clip {}: {} video and {} audio frames, {:.1} s",
            file.name(),
            sum.video_frames,
            sum.audio_frames,
            sum.seconds
        );
        Ok(file)
    }
}

impl StatusSource for Clips {
    fn status(&self, status: &mut Status) {
        let c = &self.counters;
        status.clips = Some(ClipsStatus {
            enabled: self.enabled,
            stream: self.stream.clone(),
            pre_roll_secs: self.pre_roll.as_secs(),
            post_roll_secs: self.post_roll.as_secs(),
            recording: c.recording.load(Relaxed) > 0,
            written: c.written.load(Relaxed),
            failed: c.failed.load(Relaxed),
        });
    }

    fn metrics(&self, out: &mut Metrics) {
        let c = &self.counters;
        out.single("clips_written_total", Kind::Counter, "Ring clips written.", c.written.load(Relaxed))
            .single(
                "clips_failed_total",
                Kind::Counter,
                "Ring clips lost to a write error or a bad stream.",
                c.failed.load(Relaxed),
            )
            .single("clips_bytes", Kind::Gauge, "Bytes of ring clips on disk.", self.index().total_bytes())
            .single(
                "clips_preroll_bytes",
                Kind::Gauge,
                "RTP bytes the pre-roll holds (shared with the GOP cache).",
                c.preroll_bytes.load(Relaxed),
            )
            .single("clips_recording", Kind::Gauge, "Rings whose clip is being recorded.", c.recording.load(Relaxed))
            .single(
                "clips_write_seconds_total",
                Kind::Counter,
                "Time spent muxing and writing clips.",
                format!("{:.6}", c.write_us_total.load(Relaxed) as f64 / 1e6),
            );
    }
}
