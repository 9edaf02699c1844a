//! The recorder, pure: a pre-roll window over the stream's frames and the clip being recorded.
//! Time is passed in (each frame's arrival), so the rules are tested without a clock.
//!
//! - The pre-roll holds the last `pre_roll` of frames, starting at a video keyframe: the same
//!   `Arc<Frame>`s the hub's GOP cache holds (nothing is copied), bounded in bytes.
//! - A ring starts a clip at the last keyframe at or before `press - pre_roll` (so up to one GOP
//!   more), never before the end of the previous clip: two clips never hold the same frames.
//! - A ring while a clip records adds its id to that clip and moves its end to `press + post_roll`
//!   (up to [`MAX_CLIP`]): one file for both, never two overlapping ones.
//! - The clip ends with the first video frame at or after its end; or, when the stream stops,
//!   [`STALL`] after its end with what it has.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rtsp::hub::Frame;

/// Longest clip one series of presses makes; a ring after that starts a clip of its own.
pub const MAX_CLIP: Duration = Duration::from_secs(120);
/// The pre-roll is cut to this many bytes (dropping whole GOPs from the front): about 64 s of the
/// doorbell's 2 Mbit/s main stream, so only a stream far beyond the DB1's rate meets it.
pub const MAX_PREROLL_BYTES: usize = 16 << 20;
/// A clip whose end passed this long ago without a video frame is written with what it has.
pub const STALL: Duration = Duration::from_secs(2);

/// One frame with its arrival time.
pub type Timed = (Instant, Arc<Frame>);

/// The last `secs` of the stream, from a keyframe.
#[derive(Default)]
pub struct PreRoll {
    frames: VecDeque<Timed>,
    bytes: usize,
    /// Arrival times of the video keyframes in `frames`, oldest first.
    keys: VecDeque<Instant>,
}

impl PreRoll {
    /// Bytes of the frames held (their RTP bytes; the frames themselves are shared).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Adds a frame and drops what is older than `keep` (a GOP stays whole).
    pub fn push(&mut self, at: Instant, f: Arc<Frame>, keep: Duration) {
        let video_key = f.track == 0 && f.key;
        if self.frames.is_empty() && !video_key {
            return; // the window starts at a keyframe
        }
        if video_key {
            self.keys.push_back(at);
        }
        self.bytes += f.bytes;
        self.frames.push_back((at, f));
        let horizon = at.checked_sub(keep);
        // Drop the oldest GOP while the next keyframe is itself old enough to start the window.
        while self.keys.len() >= 2 && (horizon.is_some_and(|h| self.keys[1] <= h) || self.bytes > MAX_PREROLL_BYTES) {
            self.drop_first_gop();
        }
        if self.bytes > MAX_PREROLL_BYTES {
            self.clear();
        }
    }

    fn drop_first_gop(&mut self) {
        self.keys.pop_front();
        let Some(&next) = self.keys.front() else { return self.clear() };
        while let Some((at, f)) = self.frames.front() {
            if *at == next && f.track == 0 && f.key {
                break;
            }
            self.bytes -= f.bytes;
            self.frames.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.keys.clear();
        self.bytes = 0;
    }

    /// The frames a clip of a press at `press` starts with: from the last keyframe at or before
    /// `press - pre_roll`, or the first keyframe after `after` (the previous clip's end) when that
    /// is later; nothing when no such keyframe is held.
    pub fn from(&self, press: Instant, pre_roll: Duration, after: Option<Instant>) -> Vec<Timed> {
        let start = press.checked_sub(pre_roll).unwrap_or(press);
        let mut begin = None;
        for (i, (at, f)) in self.frames.iter().enumerate() {
            if f.track != 0 || !f.key || after.is_some_and(|a| *at <= a) {
                continue;
            }
            if *at <= start || begin.is_none() {
                begin = Some(i);
            }
            if *at > start {
                break;
            }
        }
        begin.map(|b| self.frames.range(b..).cloned().collect()).unwrap_or_default()
    }
}

/// A clip being recorded.
pub struct Active {
    /// The rings it is for, in order (the first names the file).
    pub rings: Vec<u64>,
    pub frames: Vec<Timed>,
    pub bytes: usize,
    /// When the first ring came.
    pub first_press: Instant,
    /// It ends with the first video frame at or after this.
    pub until: Instant,
}

/// A finished clip, ready to be written.
pub struct Finished {
    pub rings: Vec<u64>,
    pub frames: Vec<Timed>,
}

pub struct Recorder {
    pub pre_roll: Duration,
    pub post_roll: Duration,
    pub buffer: PreRoll,
    pub active: Option<Active>,
    /// Arrival of the last frame of the last clip.
    last_end: Option<Instant>,
}

impl Recorder {
    pub fn new(pre_roll: Duration, post_roll: Duration) -> Recorder {
        Recorder { pre_roll, post_roll, buffer: PreRoll::default(), active: None, last_end: None }
    }

    /// A ring at `at`. Returns a clip finished by it (the one before hit [`MAX_CLIP`]).
    pub fn ring(&mut self, id: u64, at: Instant) -> Option<Finished> {
        let mut done = None;
        if let Some(a) = &mut self.active {
            let until = (at + self.post_roll).min(a.first_press + MAX_CLIP);
            if until > at {
                a.rings.push(id);
                a.until = a.until.max(until);
                return None;
            }
            done = self.finish();
        }
        let frames = self.buffer.from(at, self.pre_roll, self.last_end);
        let bytes = frames.iter().map(|(_, f)| f.bytes).sum();
        self.active = Some(Active { rings: vec![id], frames, bytes, first_press: at, until: at + self.post_roll });
        done
    }

    /// A frame of the stream; returns the clip it finished.
    pub fn frame(&mut self, at: Instant, f: Arc<Frame>) -> Option<Finished> {
        self.buffer.push(at, f.clone(), self.pre_roll);
        let a = self.active.as_mut()?;
        if f.track == 0 && at >= a.until && !a.frames.is_empty() {
            return self.finish();
        }
        // A clip with no keyframe yet starts at the next one; audio before it has no picture.
        if a.frames.is_empty() && !(f.track == 0 && f.key) {
            return None;
        }
        if a.bytes + f.bytes > MAX_PREROLL_BYTES * 4 {
            return self.finish(); // a runaway stream: keep what fits
        }
        a.bytes += f.bytes;
        a.frames.push((at, f));
        None
    }

    /// Time passes without frames: a clip whose end is [`STALL`] past is written as it is.
    pub fn tick(&mut self, now: Instant) -> Option<Finished> {
        let a = self.active.as_ref()?;
        (now >= a.until + STALL).then(|| self.finish()).flatten()
    }

    /// Ends the clip being recorded (at shutdown, or by the rules above).
    pub fn finish(&mut self) -> Option<Finished> {
        let a = self.active.take()?;
        if let Some((at, _)) = a.frames.last() {
            self.last_end = Some(*at);
        }
        Some(Finished { rings: a.rings, frames: a.frames })
    }

    /// The rings of the clip being recorded.
    pub fn recording(&self) -> &[u64] {
        self.active.as_ref().map_or(&[], |a| &a.rings)
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
