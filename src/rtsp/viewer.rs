//! One viewer's end of a stream's hub: a bounded queue of frames (video and audio), the tracks it
//! plays, skipping to a keyframe when it falls behind, and the direct path that writes a frame
//! straight to an idle viewer's socket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::rtsp::hub::{Frame, VIEWER_QUEUE_FRAMES};

/// Where a viewer's bytes can be written without waiting: its socket, for the direct path.
pub trait Sink: Send + Sync {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
}

impl Sink for tokio::net::tcp::OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        tokio::net::tcp::OwnedWriteHalf::try_write(self, buf)
    }
}

struct Queue {
    frames: VecDeque<Arc<Frame>>,
    /// Bytes of the first queued frame's `wire` already on the socket (a direct write the
    /// socket took only part of).
    head_written: usize,
    /// The viewer's writer has bytes in flight: nobody else may write to the socket.
    busy: bool,
    /// Set while the viewer plays on interleaved channel 0 with nothing pending: the hub then
    /// writes each frame straight to the socket, with no task wake-up per viewer and frame.
    direct: Option<Arc<dyn Sink>>,
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
    /// On the socket already.
    Sent,
    /// Queued for the viewer's writer, which must be woken.
    Queued,
    /// Not for this viewer (waiting for a keyframe).
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
                head_written: 0,
                busy: false,
                direct: None,
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

    /// Moves every queued frame into `out` and claims the socket for the caller (the viewer's
    /// writer) until [`Viewer::release`]. Returns how many bytes of the first frame's `wire` are
    /// on the socket already.
    pub fn take(&self, out: &mut Vec<Arc<Frame>>) -> usize {
        let mut q = self.lock();
        q.busy = true;
        out.extend(q.frames.drain(..));
        std::mem::take(&mut q.head_written)
    }

    /// Gives the socket back to the hub's direct path if nothing is queued; false when frames
    /// arrived meanwhile and the writer must take them first.
    pub fn release(&self) -> bool {
        let mut q = self.lock();
        if q.frames.is_empty() {
            q.busy = false;
            true
        } else {
            false
        }
    }

    /// Lets the hub write frames straight to `sink` (None: only through the writer).
    pub fn set_direct(&self, sink: Option<Arc<dyn Sink>>) {
        self.lock().direct = sink;
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
        if q.frames.is_empty() && !q.busy {
            if let Some(sink) = &q.direct {
                // Written under the queue lock: the writer can't start a write meanwhile.
                let n = match sink.try_write(&f.wire) {
                    Ok(n) if n == f.wire.len() => return (Pushed::Sent, 0),
                    Ok(n) => n,
                    // WouldBlock, or an error the writer will meet and end the viewer on.
                    Err(_) => 0,
                };
                q.head_written = n;
                q.frames.push_back(f.clone());
                return (Pushed::Queued, 0);
            }
        }
        let mut lost = 0;
        if q.frames.len() >= q.limit {
            // Too far behind: drop what waits and resume at a keyframe (this one, or the next).
            // A frame partly on the socket is kept, or the viewer would get half a packet.
            let keep = (q.head_written > 0) as usize;
            lost = (q.frames.len() - keep) as u64;
            q.frames.truncate(keep);
            q.limit = VIEWER_QUEUE_FRAMES;
            if !f.key {
                q.skipping = true;
                q.lagged = true;
                self.skipped.fetch_add(lost + 1, Ordering::Relaxed);
                return (Pushed::Skipped, lost + 1);
            }
            self.skipped.fetch_add(lost, Ordering::Relaxed);
        }
        q.frames.push_back(f.clone());
        (Pushed::Queued, lost)
    }

    pub(crate) fn skip_to_keyframe(&self) {
        self.lock().skipping = true;
    }
}
