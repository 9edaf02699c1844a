//! The latest picture, cached: served at once and refreshed behind when older than
//! `snapshot.max_age_secs`. Only memory is touched here, so a std lock suffices.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{lock, Image};

struct Cached {
    image: Image,
    /// When it arrived (fetched, or made from a keyframe).
    fetched: Instant,
}

pub(super) struct Latest {
    cell: Mutex<Option<Cached>>,
    max_age: Duration,
}

impl Latest {
    pub(super) fn new(max_age: Duration) -> Latest {
        Latest { cell: Mutex::new(None), max_age }
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
}
