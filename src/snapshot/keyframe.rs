//! A JPEG made from one H.264 keyframe (Annex B: SPS, PPS, IDR), for when the doorbell has no
//! snapshot URL or is slow: a pure-Rust decoder (rusty_h264) decodes, jpeg-encoder encodes straight
//! from the YUV planes.
//!
//! Memory is the point of the decoder's choice: one 1536x2048 picture takes ~16 MB of heap while it
//! decodes (OpenH264 took ~40 MB, more with more reference frames in the SPS), so a burst of rings
//! stays within the bridge's budget (docs/benchmarks.md, "Ring burst memory").

use std::panic::{catch_unwind, AssertUnwindSafe};

use rusty_h264_common::nal::{emulation_unprevent, split_annex_b};
use rusty_h264_decoder::{Decoder, Sps};

use crate::error::{Error, ErrorKind, Result};

/// JPEG quality of pictures made from keyframes.
pub const JPEG_QUALITY: u8 = 85;
/// Largest keyframe we decode; a 1536x2048 IDR of the DB1 is a few hundred kB.
pub const MAX_KEYFRAME_BYTES: usize = 8 * 1024 * 1024;
/// Largest picture we decode, in 16x16 macroblocks: H.264 level 5.1's largest frame (4096x2304).
/// The DB1's main stream is 12,288 (1536x2048). The decoder's own bound is four times this; an SPS
/// that claims more than we allow would make one decode take hundreds of MB.
pub const MAX_PICTURE_MACROBLOCKS: usize = 36_864;
/// NAL unit type of a sequence parameter set (H.264 table 7-1).
const NAL_SPS: u8 = 7;

/// Video range (16..235 luma, 16..240 chroma) to JPEG's full range.
struct RangeTables {
    y: [u8; 256],
    c: [u8; 256],
}

fn tables() -> &'static RangeTables {
    static T: std::sync::OnceLock<RangeTables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut y = [0u8; 256];
        let mut c = [0u8; 256];
        for i in 0..256 {
            let fy = (i as f32 - 16.0) * 255.0 / 219.0;
            y[i] = fy.round().clamp(0.0, 255.0) as u8;
            let fc = (i as f32 - 128.0) * 255.0 / 224.0 + 128.0;
            c[i] = fc.round().clamp(0.0, 255.0) as u8;
        }
        RangeTables { y, c }
    })
}

struct Planes<'a> {
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
    strides: (usize, usize, usize),
    w: u16,
    h: u16,
}

impl jpeg_encoder::ImageBuffer for Planes<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.w
    }

    fn height(&self) -> u16 {
        self.h
    }

    fn fill_buffers(&self, row: u16, buffers: &mut [Vec<u8>; 4]) {
        let t = tables();
        let row = row as usize;
        let yr = &self.y[row * self.strides.0..][..self.w as usize];
        let ur = &self.u[(row / 2) * self.strides.1..];
        let vr = &self.v[(row / 2) * self.strides.2..];
        for (x, &yv) in yr.iter().enumerate() {
            buffers[0].push(t.y[yv as usize]);
            buffers[1].push(t.c[ur[x / 2] as usize]);
            buffers[2].push(t.c[vr[x / 2] as usize]);
        }
    }
}

/// Refuses a keyframe whose SPS asks for a picture above [`MAX_PICTURE_MACROBLOCKS`], before the
/// decoder allocates anything for it.
fn check_picture_size(annexb: &[u8]) -> Result<()> {
    for nal in split_annex_b(annexb) {
        if nal.first().map(|h| h & 0x1F) != Some(NAL_SPS) {
            continue;
        }
        let sps = Sps::parse(&emulation_unprevent(&nal[1..]))
            .map_err(|e| Error::new(ErrorKind::Upstream, format!("the keyframe's SPS does not parse: {e}")))?;
        if sps.pic_width_in_mbs.saturating_mul(sps.pic_height_in_mbs) > MAX_PICTURE_MACROBLOCKS {
            return Err(Error::new(
                ErrorKind::Upstream,
                format!("keyframe picture too large ({}x{})", sps.coded_width(), sps.coded_height()),
            ));
        }
    }
    Ok(())
}

/// Decodes the first picture of `annexb` and encodes it as JPEG. Returns the JPEG and its size.
/// CPU-bound (tens of milliseconds at 1536x2048): call it from a blocking thread.
pub fn keyframe_to_jpeg(annexb: &[u8], quality: u8) -> Result<(Vec<u8>, u16, u16)> {
    if annexb.len() > MAX_KEYFRAME_BYTES {
        return Err(Error::new(ErrorKind::Internal, "keyframe too large to decode"));
    }
    // The decoder is written not to panic on any input (and is fuzzed for it here too); should it
    // still, the ring goes on without this picture instead of the bridge going down.
    catch_unwind(AssertUnwindSafe(|| decode_and_encode(annexb, quality)))
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::Internal, "the H.264 decoder failed on this keyframe")))
}

fn decode_and_encode(annexb: &[u8], quality: u8) -> Result<(Vec<u8>, u16, u16)> {
    check_picture_size(annexb)?;
    let bad = |e: rusty_h264_decoder::DecodeError| {
        Error::new(ErrorKind::Upstream, format!("the keyframe does not decode: {e}"))
    };
    // The whole access unit at once: a lone IDR is complete and comes out of this call.
    let pic = Decoder::new()
        .decode(annexb)
        .map_err(bad)?
        .ok_or_else(|| Error::new(ErrorKind::Upstream, "the keyframe gave no picture (no IDR?)"))?;
    let (w, h) = (
        u16::try_from(pic.width).map_err(|_| Error::new(ErrorKind::Upstream, "keyframe too wide"))?,
        u16::try_from(pic.height).map_err(|_| Error::new(ErrorKind::Upstream, "keyframe too tall"))?,
    );
    if w == 0 || h == 0 {
        return Err(Error::new(ErrorKind::Upstream, "the keyframe has no picture"));
    }
    // 4:2:0 with even sizes (H.264 crops 4:2:0 in steps of 2): tight planes, chroma half each way.
    let (cw, ch) = (pic.width / 2, pic.height / 2);
    if w % 2 != 0
        || h % 2 != 0
        || pic.y.len() != pic.width * pic.height
        || pic.u.len() != cw * ch
        || pic.v.len() != cw * ch
    {
        return Err(Error::new(ErrorKind::Upstream, "the keyframe's picture is not 4:2:0"));
    }
    let planes = Planes { y: &pic.y, u: &pic.u, v: &pic.v, strides: (pic.width, cw, cw), w, h };
    let mut out = Vec::with_capacity(w as usize * h as usize / 4);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode_image(planes).map_err(|e| Error::new(ErrorKind::Internal, format!("JPEG encoding: {e}")))?;
    // The picture is kept (ring history, unwritten ones counted by length): hold only its
    // length, not the up to twice as large capacity the buffer grew to.
    out.shrink_to_fit();
    Ok((out, w, h))
}

/// Width and height from a JPEG's SOF marker, without decoding it.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            if i + 9 > jpeg.len() {
                return None;
            }
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return Some((w, h));
        }
        if len < 2 {
            return None;
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(keyframe_to_jpeg(b"", 80).is_err());
        assert!(keyframe_to_jpeg(&[0, 0, 0, 1, 0x65, 1, 2, 3], 80).is_err());
    }

    #[test]
    fn jpeg_size_reads_sof() {
        let jpeg = crate::sim::image::snapshot_jpeg();
        assert_eq!(jpeg_size(&jpeg), Some((1536, 2048)));
        assert_eq!(jpeg_size(b"\xFF\xD8\xFF"), None);
        assert_eq!(jpeg_size(b"nope"), None);
    }

    proptest::proptest! {
        #[test]
        fn jpeg_size_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), sof in proptest::prelude::any::<bool>()) {
            if sof {
                bytes.splice(0..0, [0xFF, 0xD8, 0xFF, 0xC0]);
            }
            let _ = jpeg_size(&bytes);
        }
    }
}
