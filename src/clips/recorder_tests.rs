use super::*;

use bytes::Bytes;

/// A 15 fps stream with a keyframe every 30 frames (2 s), one audio frame per video frame.
struct Stream {
    t0: Instant,
    n: u64,
}

const FRAME: Duration = Duration::from_nanos(1_000_000_000 / 15);

impl Stream {
    fn new() -> Stream {
        Stream { t0: Instant::now(), n: 0 }
    }
    fn now(&self) -> Instant {
        self.t0 + FRAME * self.n as u32
    }
    /// The next video frame and its audio; `seq` is the frame number.
    fn next(&mut self) -> [Timed; 2] {
        let at = self.now();
        let v = Frame {
            wire: Bytes::new(),
            track: 0,
            key: self.n % 30 == 0,
            seq: self.n as u16,
            ts: (self.n * 6000) as u32,
            bytes: 1000,
        };
        let a = Frame {
            wire: Bytes::new(),
            track: 1,
            key: false,
            seq: self.n as u16,
            ts: (self.n * 1024) as u32,
            bytes: 50,
        };
        self.n += 1;
        [(at, Arc::new(v)), (at, Arc::new(a))]
    }
}

fn run(rec: &mut Recorder, s: &mut Stream, frames: u64) -> Vec<Finished> {
    let mut out = Vec::new();
    for _ in 0..frames {
        for (at, f) in s.next() {
            out.extend(rec.frame(at, f));
        }
        out.extend(rec.tick(s.now()));
    }
    out
}

fn video_numbers(f: &Finished) -> Vec<u64> {
    f.frames.iter().filter(|(_, f)| f.track == 0).map(|(_, f)| f.seq as u64).collect()
}

#[test]
fn preroll_starts_at_a_keyframe_and_holds_about_pre_roll() {
    let mut rec = Recorder::new(Duration::from_secs(4), Duration::from_secs(10));
    let mut s = Stream::new();
    run(&mut rec, &mut s, 200);
    let first = rec.buffer.frames.front().unwrap();
    assert!(first.1.key && first.1.track == 0);
    let held = s.now() - first.0;
    assert!(held >= Duration::from_secs(4) && held <= Duration::from_secs(6) + FRAME, "{held:?}");
    assert_eq!(rec.buffer.bytes(), rec.buffer.frames.iter().map(|(_, f)| f.bytes).sum::<usize>());
}

#[test]
fn a_clip_runs_from_pre_roll_before_the_press_to_post_roll_after() {
    let mut rec = Recorder::new(Duration::from_secs(4), Duration::from_secs(10));
    let mut s = Stream::new();
    run(&mut rec, &mut s, 150); // 10 s
    let press_frame = s.n;
    assert!(rec.ring(1, s.now()).is_none());
    let done = run(&mut rec, &mut s, 200);
    assert_eq!(done.len(), 1);
    let nums = video_numbers(&done[0]);
    // From the keyframe at or before press - 4 s (60 frames), within one GOP (30 frames).
    assert_eq!(nums[0] % 30, 0);
    assert!(nums[0] <= press_frame - 60 && nums[0] + 30 >= press_frame - 60, "{} vs {press_frame}", nums[0]);
    let last = *nums.last().unwrap();
    assert!(last + 1 >= press_frame + 150 && last <= press_frame + 151, "{last}");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "no frame missing");
    assert_eq!(done[0].rings, vec![1]);
}

#[test]
fn presses_two_seconds_apart_share_one_clip_extended() {
    let mut rec = Recorder::new(Duration::from_secs(4), Duration::from_secs(10));
    let mut s = Stream::new();
    run(&mut rec, &mut s, 150);
    let p1 = s.n;
    rec.ring(1, s.now());
    assert!(run(&mut rec, &mut s, 30).is_empty());
    rec.ring(2, s.now());
    assert_eq!(rec.recording(), &[1, 2]);
    let done = run(&mut rec, &mut s, 300);
    assert_eq!(done.len(), 1, "one file for both presses");
    assert_eq!(done[0].rings, vec![1, 2]);
    let last = *video_numbers(&done[0]).last().unwrap();
    assert!(last + 1 >= p1 + 30 + 150, "extended to the second press's post-roll");
}

#[test]
fn a_press_just_after_a_clip_never_repeats_its_frames() {
    let mut rec = Recorder::new(Duration::from_secs(4), Duration::from_secs(2));
    let mut s = Stream::new();
    run(&mut rec, &mut s, 150);
    rec.ring(1, s.now());
    let first = run(&mut rec, &mut s, 45);
    assert_eq!(first.len(), 1);
    rec.ring(2, s.now());
    let second = run(&mut rec, &mut s, 100);
    assert_eq!(second.len(), 1);
    let (a, b) = (video_numbers(&first[0]), video_numbers(&second[0]));
    assert!(b[0] > *a.last().unwrap(), "{} <= {}", b[0], a.last().unwrap());
    assert_eq!(b[0] % 30, 0, "still from a keyframe");
}

#[test]
fn a_stalled_stream_ends_the_clip_with_what_it_has() {
    let mut rec = Recorder::new(Duration::from_secs(4), Duration::from_secs(10));
    let mut s = Stream::new();
    run(&mut rec, &mut s, 100);
    let at = s.now();
    rec.ring(1, at);
    assert!(rec.tick(at + Duration::from_secs(11)).is_none());
    let done = rec.tick(at + Duration::from_secs(13)).expect("written after the stall");
    assert!(!done.frames.is_empty());
}

#[test]
fn without_a_keyframe_yet_the_clip_starts_at_the_next_one() {
    let mut rec = Recorder::new(Duration::from_secs(4), Duration::from_secs(1));
    let mut s = Stream { t0: Instant::now(), n: 5 };
    rec.ring(1, s.now());
    let done = run(&mut rec, &mut s, 60);
    assert_eq!(done.len(), 1);
    let nums = video_numbers(&done[0]);
    assert_eq!(nums[0], 30);
    assert!(done[0].frames[0].1.key);
}

#[test]
fn preroll_is_bounded_in_bytes() {
    let mut p = PreRoll::default();
    let t0 = Instant::now();
    for i in 0..5000u32 {
        let f = Frame { wire: Bytes::new(), track: 0, key: i % 10 == 0, seq: 0, ts: 0, bytes: 64 * 1024 };
        p.push(t0 + FRAME * i, Arc::new(f), Duration::from_secs(3600));
        assert!(p.bytes() <= MAX_PREROLL_BYTES);
    }
    assert!(!p.is_empty() && p.len() <= MAX_PREROLL_BYTES / (64 * 1024));
}
