//! A JPEG made from one H.264 keyframe (Annex B: SPS, PPS, IDR), for when the doorbell has no
//! snapshot URL or is slow: OpenH264 decodes, jpeg-encoder encodes straight from the YUV planes.

use openh264::decoder::{DecodeOptions, Decoder, Flush};
use openh264::formats::YUVSource;

use crate::error::{Error, ErrorKind, Result};

/// JPEG quality of pictures made from keyframes.
pub const JPEG_QUALITY: u8 = 85;
/// Largest keyframe we decode; a 1536x2048 IDR of the DB1 is a few hundred kB.
pub const MAX_KEYFRAME_BYTES: usize = 8 * 1024 * 1024;

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

/// Decodes the first picture of `annexb` and encodes it as JPEG. Returns the JPEG and its size.
/// CPU-bound (tens of milliseconds at 1536x2048): call it from a blocking thread.
pub fn keyframe_to_jpeg(annexb: &[u8], quality: u8) -> Result<(Vec<u8>, u16, u16)> {
    if annexb.len() > MAX_KEYFRAME_BYTES {
        return Err(Error::new(ErrorKind::Internal, "keyframe too large to decode"));
    }
    let mut dec = Decoder::new().map_err(|e| Error::new(ErrorKind::Internal, format!("H.264 decoder: {e}")))?;
    let bad = |e: openh264::Error| Error::new(ErrorKind::Upstream, format!("the keyframe does not decode: {e}"));
    // The whole access unit at once, flushed: a lone IDR is complete and should come out now.
    let pic = dec.decode_with_options(annexb, DecodeOptions::new().flush_after_decode(Flush::Flush)).map_err(bad)?;
    let encode = |pic: &openh264::decoder::DecodedYUV<'_>| -> Result<(Vec<u8>, u16, u16)> {
        let (w, h) = pic.dimensions();
        let (w, h) = (
            u16::try_from(w).map_err(|_| Error::new(ErrorKind::Upstream, "keyframe too wide"))?,
            u16::try_from(h).map_err(|_| Error::new(ErrorKind::Upstream, "keyframe too tall"))?,
        );
        if w == 0 || h == 0 {
            return Err(Error::new(ErrorKind::Upstream, "the keyframe has no picture"));
        }
        let planes = Planes { y: pic.y(), u: pic.u(), v: pic.v(), strides: pic.strides(), w, h };
        let mut out = Vec::with_capacity(w as usize * h as usize / 4);
        let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        enc.encode_image(planes).map_err(|e| Error::new(ErrorKind::Internal, format!("JPEG encoding: {e}")))?;
        // The picture is kept (ring history, unwritten ones counted by length): hold only its
        // length, not the up to twice as large capacity the buffer grew to.
        out.shrink_to_fit();
        Ok((out, w, h))
    };
    if let Some(pic) = pic {
        return encode(&pic);
    }
    let rest = dec.flush_remaining().map_err(bad)?;
    match rest.first() {
        Some(pic) => encode(pic),
        None => Err(Error::new(ErrorKind::Upstream, "the keyframe gave no picture (no IDR?)")),
    }
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
