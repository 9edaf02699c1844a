//! Keyframe detection and depacketization over RTP payloads, pure (RFC 6184 for H.264,
//! RFC 7798 for H.265): single NAL units, aggregation packets (STAP-A / AP) and fragmentation
//! units (FU-A / FU).

use crate::media::VideoCodec;

const H264_IDR: u8 = 5;
const H264_SPS: u8 = 7;
const H264_STAP_A: u8 = 24;
const H264_FU_A: u8 = 28;
const H265_AP: u8 = 48;
const H265_FU: u8 = 49;

fn h264_key_nal(t: u8) -> bool {
    t == H264_IDR || t == H264_SPS
}

/// IRAP pictures (BLA, IDR, CRA: 16..=21) and VPS/SPS (32, 33), which precede them.
fn h265_key_nal(t: u8) -> bool {
    (16..=21).contains(&t) || t == 32 || t == 33
}

/// NAL units inside an aggregation packet's payload after its header of `hdr` bytes.
fn aggregated(payload: &[u8], hdr: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = payload.get(hdr..).unwrap_or(&[]);
    std::iter::from_fn(move || {
        if rest.len() < 2 {
            return None;
        }
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let nal = rest.get(2..2 + n)?;
        rest = &rest[2 + n..];
        Some(nal)
    })
}

/// Whether an RTP payload starts (or contains) a keyframe: an IDR/IRAP slice or the parameter
/// sets sent just before one.
pub fn is_key(codec: VideoCodec, payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else { return false };
    match codec {
        VideoCodec::H264 => match b0 & 0x1f {
            H264_STAP_A => aggregated(payload, 1).any(|n| n.first().is_some_and(|b| h264_key_nal(b & 0x1f))),
            H264_FU_A => payload.get(1).is_some_and(|&fu| fu & 0x80 != 0 && h264_key_nal(fu & 0x1f)),
            t => h264_key_nal(t),
        },
        VideoCodec::H265 => match (b0 >> 1) & 0x3f {
            H265_AP => aggregated(payload, 2).any(|n| n.first().is_some_and(|b| h265_key_nal((b >> 1) & 0x3f))),
            H265_FU => payload.get(2).is_some_and(|&fu| fu & 0x80 != 0 && h265_key_nal(fu & 0x3f)),
            t => h265_key_nal(t),
        },
    }
}

/// The parameter-set NAL units (H.264 SPS/PPS, H.265 VPS/SPS/PPS) an RTP payload carries whole:
/// as a single NAL unit or inside an aggregation packet.
pub fn param_sets(codec: VideoCodec, payload: &[u8]) -> Vec<&[u8]> {
    let is_ps = |n: &[u8]| match codec {
        VideoCodec::H264 => matches!(n.first().map(|b| b & 0x1f), Some(7 | 8)),
        VideoCodec::H265 => matches!(n.first().map(|b| (b >> 1) & 0x3f), Some(32..=34)),
    };
    let Some(&b0) = payload.first() else { return Vec::new() };
    match codec {
        VideoCodec::H264 if b0 & 0x1f == H264_STAP_A => aggregated(payload, 1).filter(|n| is_ps(n)).collect(),
        VideoCodec::H265 if (b0 >> 1) & 0x3f == H265_AP => aggregated(payload, 2).filter(|n| is_ps(n)).collect(),
        _ if is_ps(payload) => vec![payload],
        _ => Vec::new(),
    }
}

/// Appends the NAL units of RTP payloads (in order, one access unit) to `out` as Annex B.
/// Fragments without their start are skipped; output is bounded by the input size plus start codes.
pub fn to_annexb<'a>(codec: VideoCodec, payloads: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    const START: [u8; 4] = [0, 0, 0, 1];
    let mut in_fu = false;
    for p in payloads {
        let Some(&b0) = p.first() else { continue };
        let (t, agg, fu, hdr) = match codec {
            VideoCodec::H264 => (b0 & 0x1f, H264_STAP_A, H264_FU_A, 1usize),
            VideoCodec::H265 => ((b0 >> 1) & 0x3f, H265_AP, H265_FU, 2usize),
        };
        if t == agg {
            for nal in aggregated(p, hdr) {
                out.extend_from_slice(&START);
                out.extend_from_slice(nal);
            }
            in_fu = false;
        } else if t == fu {
            let Some(&fh) = p.get(hdr) else { continue };
            let body = &p[hdr + 1..];
            if fh & 0x80 != 0 {
                out.extend_from_slice(&START);
                match codec {
                    VideoCodec::H264 => out.push((b0 & 0xe0) | (fh & 0x1f)),
                    VideoCodec::H265 => {
                        out.push((b0 & 0x81) | ((fh & 0x3f) << 1));
                        out.push(p[1]);
                    }
                }
                in_fu = true;
            }
            if in_fu {
                out.extend_from_slice(body);
            }
            if fh & 0x40 != 0 {
                in_fu = false;
            }
        } else {
            out.extend_from_slice(&START);
            out.extend_from_slice(p);
            in_fu = false;
        }
    }
}

/// NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), without the start codes.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map(|&n| n - 3).unwrap_or(data.len());
        // A 4-byte start code leaves one zero before the next 3-byte one.
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        if e > s {
            out.push(&data[s..e]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn h264_kinds() {
        assert!(is_key(VideoCodec::H264, &[0x65, 1, 2]));
        assert!(is_key(VideoCodec::H264, &[0x67, 1, 2]));
        assert!(!is_key(VideoCodec::H264, &[0x41, 1, 2]));
        assert!(is_key(VideoCodec::H264, &[0x7c, 0x85, 9]));
        assert!(!is_key(VideoCodec::H264, &[0x7c, 0x05, 9]), "not the first fragment");
        assert!(!is_key(VideoCodec::H264, &[0x7c, 0x81, 9]));
        assert!(is_key(VideoCodec::H264, &[0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 2]));
        assert!(!is_key(VideoCodec::H264, &[0x78, 0, 2, 0x06, 1]));
    }

    #[test]
    fn h265_kinds() {
        assert!(is_key(VideoCodec::H265, &[19 << 1, 1, 0]));
        assert!(is_key(VideoCodec::H265, &[32 << 1, 1, 0]));
        assert!(!is_key(VideoCodec::H265, &[1 << 1, 1, 0]));
        assert!(is_key(VideoCodec::H265, &[49 << 1, 1, 0x80 | 19, 7]));
        assert!(!is_key(VideoCodec::H265, &[49 << 1, 1, 19, 7]));
    }

    #[test]
    fn param_sets_single_and_aggregated() {
        assert_eq!(param_sets(VideoCodec::H264, &[0x67, 1, 2]), vec![&[0x67, 1, 2][..]]);
        let stap = [0x18, 0, 2, 0x67, 9, 0, 2, 0x68, 8, 0, 2, 0x65, 7];
        assert_eq!(param_sets(VideoCodec::H264, &stap), vec![&[0x67, 9][..], &[0x68, 8][..]]);
        assert!(param_sets(VideoCodec::H264, &[0x65, 1]).is_empty());
        assert_eq!(param_sets(VideoCodec::H265, &[0x42, 1, 5]), vec![&[0x42, 1, 5][..]]);
        assert!(param_sets(VideoCodec::H264, &[]).is_empty());
    }

    #[test]
    fn fu_a_reassembles() {
        let nal = [0x65u8, 1, 2, 3, 4, 5];
        let p1 = [0x7c, 0x85, 1, 2];
        let p2 = [0x7c, 0x45, 3, 4, 5];
        let mut out = Vec::new();
        to_annexb(VideoCodec::H264, [&[0x67u8, 9][..], &p1[..], &p2[..]], &mut out);
        let nals = split_annexb(&out);
        assert_eq!(nals, vec![&[0x67u8, 9][..], &nal[..]]);
    }

    proptest! {
        #[test]
        fn never_panics(ps in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut out = Vec::new();
            let total: usize = ps.iter().map(|p| p.len()).sum();
            to_annexb(VideoCodec::H264, ps.iter().map(|p| &p[..]), &mut out);
            to_annexb(VideoCodec::H265, ps.iter().map(|p| &p[..]), &mut out);
            prop_assert!(out.len() <= 2 * (total + 4 * 64 * ps.len() + 2 * ps.len()));
            for p in &ps {
                let _ = is_key(VideoCodec::H264, p);
                let _ = is_key(VideoCodec::H265, p);
                let _ = split_annexb(p);
            }
        }
    }
}
