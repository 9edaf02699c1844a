//! The keyframe decoder (ring pictures are decoded from the stream's latest keyframe): the same
//! picture as ffmpeg's decoder, bit for bit, for the profiles a doorbell sends; hostile keyframes
//! are refused before they cost memory and never panic; and the decoder crate brings no allocator
//! of its own into the process.

use doorbell_bridge::snapshot::keyframe::{jpeg_size, keyframe_to_jpeg, MAX_PICTURE_MACROBLOCKS};
use proptest::prelude::*;
use std::process::Command;
use std::time::{Duration, Instant};

const MAIN: &str = "tests/data/snapshot/keyframe-1536x2048.h264";
const HIGH: &str = "tests/data/snapshot/keyframe-high-1536x2048.h264";
const SIM_CLIP: &str = "tests/data/rtsp/doorbell_1536x2048_15fps.h264";
const SIM_CLIP_SMALL: &str = "tests/data/rtsp/doorbell_768x1024_15fps.h264";

/// The first access unit of an Annex B stream: every NAL up to and including the first slice of
/// an IDR (what the stream hub caches as the latest keyframe).
fn first_keyframe(stream: &[u8]) -> Vec<u8> {
    let mut i = 0;
    while i + 4 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] && stream[i + 3] & 0x1F == 5 {
            let next = (i + 4..stream.len().saturating_sub(3))
                .find(|&j| stream[j..j + 3] == [0, 0, 1])
                .unwrap_or(stream.len());
            return stream[..next].to_vec();
        }
        i += 1;
    }
    panic!("no IDR in the stream");
}

/// ffmpeg's own decode of the first picture, as I420.
fn ffmpeg_i420(annexb: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kf.h264");
    std::fs::write(&path, annexb).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i"])
        .arg(&path)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn decodes_main_and_high_profile_keyframes_exactly_like_ffmpeg() {
    let sim = first_keyframe(&std::fs::read(SIM_CLIP).unwrap());
    for (name, annexb) in [("main", std::fs::read(MAIN).unwrap()), ("high", std::fs::read(HIGH).unwrap()), ("sim", sim)]
    {
        let pic = rusty_h264_decoder::Decoder::new().decode(&annexb).unwrap().expect("a picture");
        assert_eq!((pic.width, pic.height), (1536, 2048), "{name}");
        let reference = ffmpeg_i420(&annexb);
        let ours = [pic.y.as_slice(), &pic.u, &pic.v].concat();
        assert_eq!(ours.len(), reference.len(), "{name}");
        let differing = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{name}: {differing} samples differ from ffmpeg's decode");
        // And the bridge's path (decode, then JPEG) takes it.
        let (jpeg, w, h) = keyframe_to_jpeg(&annexb, 85).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((w, h), (1536, 2048));
        assert_eq!(jpeg_size(&jpeg), Some((1536, 2048)));
    }
}

/// Exp-Golomb bits, MSB first, for hand-made parameter sets.
#[derive(Default)]
struct Bits(Vec<bool>);

impl Bits {
    fn u(&mut self, n: u32, v: u32) -> &mut Self {
        self.0.extend((0..n).rev().map(|i| v >> i & 1 == 1));
        self
    }
    fn ue(&mut self, v: u32) -> &mut Self {
        let n = 32 - (v + 1).leading_zeros();
        self.u(n - 1, 0).u(n, v + 1)
    }
    /// pic_init_qp, pic_init_qs, chroma_qp_index_offset (se(v) = 0 each), then the PPS's three flags.
    fn se0(&mut self) -> &mut Self {
        self.ue(0).ue(0).ue(0).u(1, 0).u(1, 0).u(1, 0)
    }
    fn nal(&mut self, header: u8) -> Vec<u8> {
        self.u(1, 1);
        while self.0.len() % 8 != 0 {
            self.0.push(false);
        }
        let mut out = vec![0, 0, 0, 1, header];
        out.extend(self.0.chunks(8).map(|b| b.iter().fold(0u8, |acc, &bit| acc << 1 | bit as u8)));
        out
    }
}

/// A Baseline SPS (id 0) for a picture of `w_mbs` x `h_mbs` macroblocks.
fn sps(w_mbs: u32, h_mbs: u32) -> Vec<u8> {
    let mut b = Bits::default();
    b.u(8, 66).u(8, 0).u(8, 51).ue(0); // profile, constraints, level, id
    b.ue(0).ue(2).ue(0).u(1, 0); // log2_max_frame_num-4, poc type 2, refs, gaps
    b.ue(w_mbs - 1).ue(h_mbs - 1).u(1, 1).u(1, 1).u(1, 0).u(1, 0); // size, frame_mbs_only, direct8x8, crop, vui
    b.nal(0x67)
}

/// A PPS and an IDR slice header with nothing after it.
fn pps_idr() -> Vec<u8> {
    let pps = Bits::default().ue(0).ue(0).u(1, 0).u(1, 0).ue(0).ue(0).ue(0).u(1, 0).u(2, 0).se0().nal(0x68);
    let idr = Bits::default().ue(0).ue(7).ue(0).u(4, 0).ue(0).ue(0).nal(0x65);
    [pps, idr].concat()
}

#[test]
fn a_keyframe_claiming_a_huge_picture_is_refused_before_decoding() {
    // 6144x4096: within the decoder's own bound (4x level 5.2's largest frame), beyond ours; one
    // decode of it would allocate ~130 MB.
    let started = Instant::now();
    let err = keyframe_to_jpeg(&[sps(384, 256), pps_idr()].concat(), 85).expect_err("refused");
    assert!(err.to_string().contains("keyframe picture too large (6144x4096)"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500), "refused only after {:?}", started.elapsed());
    // A picture exactly at the bound is not refused for its size (its slice is junk).
    let at_bound = sps(256, (MAX_PICTURE_MACROBLOCKS / 256) as u32);
    let err = keyframe_to_jpeg(&[at_bound, pps_idr()].concat(), 85).expect_err("junk slice");
    assert!(!err.to_string().contains("too large"), "{err}");
}

#[test]
fn the_decoder_installs_no_allocator_of_its_own() {
    // rusty_h264's default `global-alloc` feature makes its allocator the whole process's; the
    // bridge turns it off. Cargo.lock lists an optional dependency only when something enables it.
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    assert!(lock.contains("name = \"rusty_h264-decoder\""), "the decoder is in the lock");
    assert!(!lock.contains("name = \"rusty_alloc"), "an allocator crate came in with the decoder");
    assert!(!lock.contains("name = \"rusty_h264-accel\""), "the decoder's unsafe SIMD crate came in");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Keyframes cut anywhere or with flipped bits: an error or a picture, never a panic.
    #[test]
    fn damaged_keyframes_never_panic(cut in 0.0f64..1.0, flips in prop::collection::vec((0.0f64..1.0, 0u8..8), 0..6)) {
        static KF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let kf = KF.get_or_init(|| first_keyframe(&std::fs::read(SIM_CLIP_SMALL).unwrap()));
        let mut data = kf[..(kf.len() as f64 * cut) as usize].to_vec();
        for (at, bit) in flips {
            if !data.is_empty() {
                let i = ((data.len() - 1) as f64 * at) as usize;
                data[i] ^= 1 << bit;
            }
        }
        if let Ok((jpeg, w, h)) = keyframe_to_jpeg(&data, 80) {
            prop_assert_eq!(jpeg_size(&jpeg), Some((w, h)));
        }
    }
}
