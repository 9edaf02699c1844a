//! The ring archive's side of `Snapshots`: each ring's picture, taken once (keyframe first, then
//! the doorbell's full-quality one), served from memory until the disk has it, kept with the ring
//! history in the store. The store has one owner, a thread of its own that runs the archive's
//! commands one after another, so no lock guards it and its disk I/O never blocks the runtime;
//! the runtime's threads read `StoreView`, a copy made after each change.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::store::{self, Store};
use super::{err, lock, Image, Snapshots, RECENT_IN_MEMORY, UNWRITTEN_MAX_BYTES};
use crate::error::{ErrorKind, Result};
use crate::events::{Ring, RingSource};

impl Snapshots {
    /// Takes the picture for ring `id`: from the keyframe cache at once, then a full-quality
    /// fetch from the doorbell replaces it. Both kept on disk.
    pub async fn take_for_ring(&self, id: u64) {
        let asked = Instant::now();
        lock(&self.archive.pending).insert(id);
        let _done = Pending { archive: &self.archive, id };
        let ring = self
            .bus
            .state()
            .last_ring
            .filter(|r| r.id == id)
            .unwrap_or_else(|| Ring::new(id, Utc::now(), RingSource::Other("unknown".into()), None));
        self.archive.with_store(move |s| s.add_ring(&ring)).await;
        let mut have = false;
        if let Some(img) = self.keyframe_image().await {
            self.archive.put_ring_image(id, img, "keyframe").await;
            have = true;
            self.archive.ring_ready(id);
        }
        match self.refresh(asked, true).await {
            Ok(img) => self.archive.put_ring_image(id, img, "doorbell").await,
            Err(e) if !have => {
                // Last resort: the cached picture, however old, beats none.
                if let Some((img, _)) = self.cached() {
                    self.archive.put_ring_image(id, img, "cache").await;
                } else {
                    tracing::warn!(ring = id, "no picture for this ring: {}", e.msg());
                }
            }
            Err(_) => {}
        }
    }

    /// The picture of ring `id`; while it is being taken (the ring just happened), waits for it
    /// up to the fetch timeout.
    pub async fn ring_image(&self, id: u64) -> Result<Image> {
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(1);
        loop {
            let notified = self.archive.taken.notified();
            match self.archive.ring_image_now(id).await {
                Ok(img) => return Ok(img),
                Err(e) => {
                    let in_store = self.archive.with_store(move |s| s.entries.contains_key(&id)).await;
                    // Also the instant between the ring event and its picture task starting.
                    let just_rung = !in_store && self.bus.state().last_ring.is_some_and(|r| r.id == id);
                    if !(lock(&self.archive.pending).contains(&id) || just_rung) {
                        return Err(e);
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The persisted ring history, oldest first.
    pub fn ring_history(&self) -> Vec<store::Entry> {
        self.archive.store.view().entries.clone()
    }

    /// Rings whose picture is served from memory or still being taken (maybe not on disk yet).
    pub fn rings_in_flight(&self) -> std::collections::BTreeSet<u64> {
        let mut ids: std::collections::BTreeSet<u64> = lock(&self.archive.recent).iter().map(|(i, _)| *i).collect();
        ids.extend(lock(&self.archive.pending).iter().copied());
        ids
    }

    /// Bytes of ring pictures on disk.
    pub fn ring_images_bytes(&self) -> u64 {
        self.archive.store.view().bytes
    }
}

/// The ring pictures: the store (through its owner) and the pictures still in memory.
pub(super) struct Archive {
    store: StoreOwner,
    recent: Mutex<VecDeque<(u64, Image)>>,
    /// Pictures the disk refused, oldest first, at most UNWRITTEN_MAX_BYTES.
    unwritten: Mutex<VecDeque<(u64, Image, &'static str)>>,
    /// Rings whose first picture is being taken; requests for them wait instead of a 404.
    pending: Mutex<BTreeSet<u64>>,
    taken: tokio::sync::Notify,
    pub(super) ring_images: AtomicU64,
    pub(super) disk_errors: AtomicU64,
}

impl Archive {
    pub(super) fn new(store: Store) -> Archive {
        Archive {
            store: StoreOwner::spawn(store),
            recent: Mutex::new(VecDeque::new()),
            unwritten: Mutex::new(VecDeque::new()),
            pending: Mutex::new(BTreeSet::new()),
            taken: tokio::sync::Notify::new(),
            ring_images: AtomicU64::new(0),
            disk_errors: AtomicU64::new(0),
        }
    }

    /// Ring pictures waiting for the disk.
    pub(super) fn unwritten_len(&self) -> usize {
        lock(&self.unwritten).len()
    }

    pub(super) async fn with_store<R: Send + 'static>(&self, f: impl FnOnce(&mut Store) -> R + Send + 'static) -> R {
        self.store.run(f).await
    }

    /// Serves the picture from memory at once, then keeps it on disk (atomically, synced).
    pub(super) async fn put_ring_image(&self, id: u64, img: Image, origin: &'static str) {
        {
            let mut r = lock(&self.recent);
            r.retain(|(i, _)| *i != id);
            r.push_back((id, img.clone()));
            while r.len() > RECENT_IN_MEMORY {
                r.pop_front();
            }
        }
        self.taken.notify_waiters();
        self.ring_images.fetch_add(1, Relaxed);
        let ok = self.write_ring_image(id, img.clone(), origin).await;
        if ok {
            lock(&self.unwritten).retain(|(i, _, _)| *i != id);
            self.flush_unwritten().await;
        } else {
            self.disk_errors.fetch_add(1, Relaxed);
            let mut u = lock(&self.unwritten);
            u.retain(|(i, _, _)| *i != id);
            u.push_back((id, img, origin));
            while u.iter().map(|(_, i, _)| i.bytes.len()).sum::<usize>() > UNWRITTEN_MAX_BYTES {
                if let Some((old, _, _)) = u.pop_front() {
                    tracing::warn!(ring = old, "the disk refused this ring's picture and memory for such is full");
                }
            }
        }
    }

    /// Writes a ring's picture; drops from memory what retention dropped from disk.
    pub(super) async fn write_ring_image(&self, id: u64, img: Image, origin: &'static str) -> bool {
        let taken = crate::events::now_string(img.taken);
        let (ok, on_disk) = self
            .with_store(move |s| {
                let ok = s.put_image(id, &img.bytes, origin, &taken);
                let on_disk: std::collections::BTreeSet<u64> =
                    s.entries.values().filter(|e| e.image_bytes.is_some()).map(|e| e.id).collect();
                (ok, on_disk)
            })
            .await;
        // Pictures retention dropped from disk go from memory too (the one the disk refused stays).
        lock(&self.recent).retain(|(i, _)| (*i == id && !ok) || on_disk.contains(i));
        ok
    }

    /// The disk takes writes again: keep what it refused before.
    pub(super) async fn flush_unwritten(&self) {
        let waiting: Vec<(u64, Image, &'static str)> = lock(&self.unwritten).iter().cloned().collect();
        for (id, img, origin) in waiting {
            // When retention already dropped the ring, there is nothing to keep: go on.
            if !self.write_ring_image(id, img, origin).await
                && self.with_store(move |s| s.entries.contains_key(&id)).await
            {
                return;
            }
            lock(&self.unwritten).retain(|(i, _, _)| *i != id);
        }
    }

    pub(super) fn ring_ready(&self, id: u64) {
        lock(&self.pending).remove(&id);
        self.taken.notify_waiters();
    }

    pub(super) async fn ring_image_now(&self, id: u64) -> Result<Image> {
        let not_found = || err(ErrorKind::NotFound, format!("no picture for ring {id}"));
        if let Some((_, img)) = lock(&self.recent).iter().find(|(i, _)| *i == id) {
            return Ok(img.clone());
        }
        if let Some((_, img, _)) = lock(&self.unwritten).iter().find(|(i, _, _)| *i == id) {
            return Ok(img.clone());
        }
        // Through a blocking thread: the store's lock is held while a picture is synced to disk.
        let (path, taken) = self
            .with_store(move |s| {
                let e = s.entries.get(&id).filter(|e| e.image_bytes.is_some())?;
                Some((s.image_path(id), e.taken.clone()))
            })
            .await
            .ok_or_else(not_found)?;
        let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
        let taken = taken
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        Ok(Image::new(Bytes::from(bytes), taken))
    }
}

/// A command to the store's owner: runs there with the store, sends its answer back itself.
type Command = Box<dyn FnOnce(&mut Store) + Send>;

/// The handle to the thread that owns the ring store. Dropping it ends the thread once the
/// commands already sent have run.
pub(super) struct StoreOwner {
    commands: std::sync::mpsc::Sender<Command>,
    /// What the store held after its last command, for the runtime's threads (`/api/rings`,
    /// `/metrics`): they never wait on the store's disk I/O. Its lock is held only to swap it.
    view: Arc<Mutex<Arc<StoreView>>>,
}

impl StoreOwner {
    pub(super) fn spawn(mut store: Store) -> StoreOwner {
        let view = Arc::new(Mutex::new(Arc::new(StoreView::of(&store))));
        let (commands, rx) = std::sync::mpsc::channel::<Command>();
        let published = view.clone();
        let owner = move || {
            while let Ok(command) = rx.recv() {
                // A command that panics loses its answer (its caller sees that), not the store.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| command(&mut store)));
                *lock(&published) = Arc::new(StoreView::of(&store));
            }
        };
        if let Err(e) = std::thread::Builder::new().name("ring-archive".into()).spawn(owner) {
            tracing::error!("cannot start the ring archive: {e}");
        }
        StoreOwner { commands, view }
    }

    /// Runs `f` on the owner with the store and waits for its answer.
    pub(super) async fn run<R: Send + 'static>(&self, f: impl FnOnce(&mut Store) -> R + Send + 'static) -> R {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let command: Command = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        if self.commands.send(command).is_err() {
            panic!("the ring archive's owner thread is gone");
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => panic!("a ring archive command failed"),
        }
    }

    pub(super) fn view(&self) -> Arc<StoreView> {
        lock(&self.view).clone()
    }
}

/// A copy of the ring store's history and size, taken after each change.
pub(super) struct StoreView {
    entries: Vec<store::Entry>,
    bytes: u64,
}

impl StoreView {
    pub(super) fn of(s: &Store) -> StoreView {
        StoreView { entries: s.entries.values().cloned().collect(), bytes: s.total_bytes() }
    }
}

/// Marks a ring's picture as taken (or given up) however `take_for_ring` ends.
struct Pending<'a> {
    archive: &'a Archive,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.archive.ring_ready(self.id);
    }
}
