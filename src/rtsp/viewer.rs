//! One viewer's end of a stream's hub: a bounded queue of frames (video and audio), the tracks it
//! plays, and skipping to a keyframe when it falls behind. The queue is the only way frames reach
//! a viewer: the hub puts them here and wakes the viewer's connection task, which alone writes
//! the socket, so nothing here knows of sockets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::rtsp::hub::{Frame, VIEWER_QUEUE_FRAMES};

struct Queue {
    frames: VecDeque<Arc<Frame>>,
    /// Waiting for a keyframe before queueing anything.
    skipping: bool,
    /// Tracks this viewer plays (bit i = track i).
    tracks: u8,
    /// The wait is because this viewer fell behind (counted), not because it just joined.
    lagged: bool,
    limit: usize,
}

/// What became of a frame handed to a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued in an empty queue: the viewer's writer may be waiting and must be woken.
    Wake,
    /// Queued behind others: the writer was woken for those and takes this one with them.
    Queued,
    /// Not for this viewer (not its track, or waiting for a keyframe).
    Skipped,
}

/// One viewer's end of the hub: a bounded queue of frames and a wake-up.
pub struct Viewer {
    queue: Mutex<Queue>,
    pub notify: Notify,
    /// Frames this viewer lost by falling behind.
    pub skipped: AtomicU64,
}

impl Viewer {
    /// A viewer of the tracks in `tracks` (bit i = track i) starting with `burst`; with nothing
    /// to start with, it waits for a keyframe.
    pub(crate) fn new(burst: VecDeque<Arc<Frame>>, tracks: u8) -> Viewer {
        Viewer {
            queue: Mutex::new(Queue {
                skipping: burst.is_empty(),
                lagged: false,
                limit: burst.len() + VIEWER_QUEUE_FRAMES,
                tracks,
                frames: burst,
            }),
            notify: Notify::new(),
            skipped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every queued frame into `out` (for the viewer's writer). A frame pushed after this
    /// finds the queue empty and wakes the writer again, so the writer never misses one if it
    /// takes again after each write before it waits.
    pub fn take(&self, out: &mut Vec<Arc<Frame>>) {
        out.extend(self.lock().frames.drain(..));
    }

    /// Hands a frame to this viewer; returns what became of it and the frames it lost just now.
    pub(crate) fn push(&self, f: &Arc<Frame>) -> (Pushed, u64) {
        let mut q = self.lock();
        if q.tracks & (1 << f.track) == 0 {
            return (Pushed::Skipped, 0);
        }
        if q.skipping {
            if !f.key {
                let lost = q.lagged as u64;
                self.skipped.fetch_add(lost, Ordering::Relaxed);
                return (Pushed::Skipped, lost);
            }
            q.skipping = false;
            q.lagged = false;
        }
        let mut lost = 0;
        if q.frames.len() >= q.limit {
            // Too far behind: drop what waits and resume at a keyframe (this one, or the next).
            // Frames the writer took are whole on their way, so no packet is cut.
            lost = q.frames.len() as u64;
            q.frames.clear();
            q.limit = VIEWER_QUEUE_FRAMES;
            if !f.key {
                q.skipping = true;
                q.lagged = true;
                self.skipped.fetch_add(lost + 1, Ordering::Relaxed);
                return (Pushed::Skipped, lost + 1);
            }
            self.skipped.fetch_add(lost, Ordering::Relaxed);
        }
        let wake = q.frames.is_empty();
        q.frames.push_back(f.clone());
        (if wake { Pushed::Wake } else { Pushed::Queued }, lost)
    }

    pub(crate) fn skip_to_keyframe(&self) {
        self.lock().skipping = true;
    }
}
