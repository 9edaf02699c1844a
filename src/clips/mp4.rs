//! A clip's frames as an MP4, pure: RTP payloads back to H.264 access units (Annex B) and AAC
//! access units (RFC 3640, as ADTS frames), timed from their RTP timestamps, muxed by `muxide`
//! with the index first (fast-start), so a browser plays it while it downloads.
//!
//! Sound: AAC (`MPEG4-GENERIC`) goes in. G.711 (`PCMU`/`PCMA`), which some DB1 firmware sends,
//! has no muxer in the crate registry that writes it to MP4: such clips are video only.

use std::time::Instant;

use crate::media::VideoCodec;
use crate::rtsp::hub::rtp_payload;
use crate::rtsp::keyframe;
use crate::rtsp::sdp::{Description, Track};

use super::recorder::Timed;

/// Samples per AAC access unit (AAC-LC; the doorbell sends nothing else).
const AAC_FRAME_SAMPLES: u32 = 1024;
/// Largest access unit taken from an RTP packet (13-bit size field).
const MAX_AU: usize = 8191;

/// What the sound track of a clip is made from, read from the stream's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacTrack {
    /// Index of the track in the stream.
    pub index: u8,
    pub object_type: u8,
    pub freq_index: u8,
    pub channels: u8,
    pub clock_rate: u32,
    pub size_length: u32,
    pub index_length: u32,
}

/// The AAC track of a description when it can go into a clip (RFC 3640 AAC-hbr, LC/Main/SSR/LTP).
pub fn aac_track(desc: &Description) -> Option<AacTrack> {
    let (i, t) = desc.tracks.iter().enumerate().find(|(_, t)| t.media == "audio")?;
    aac_of(i as u8, t)
}

fn aac_of(index: u8, t: &Track) -> Option<AacTrack> {
    if t.encoding != "MPEG4-GENERIC" {
        return None;
    }
    let fmtp = t.media_lines.iter().find_map(|l| l.strip_prefix("a=fmtp:"))?;
    let params = fmtp.split_once(' ').map_or("", |x| x.1);
    let get = |k: &str| {
        params.split(';').filter_map(|p| p.trim().split_once('=')).find(|(n, _)| n.trim().eq_ignore_ascii_case(k))
    };
    let config = hex::decode(get("config")?.1.trim()).ok()?;
    let (&c0, &c1) = (config.first()?, config.get(1)?);
    let object_type = c0 >> 3;
    let freq_index = ((c0 & 7) << 1) | (c1 >> 7);
    let channels = (c1 >> 3) & 0x0f;
    let size_length = get("sizelength")?.1.trim().parse().ok()?;
    let index_length: u32 = get("indexlength").map_or(Some(0), |v| v.1.trim().parse().ok())?;
    let ok = (1..=4).contains(&object_type)
        && freq_index < 13
        && (1..=7).contains(&channels)
        && (1..=16).contains(&size_length)
        && index_length <= 8;
    ok.then_some(AacTrack {
        index,
        object_type,
        freq_index,
        channels,
        clock_rate: t.clock_rate,
        size_length,
        index_length,
    })
}

/// The access units of one RFC 3640 payload (AU-headers-length, AU headers, then the units).
/// Units cut across packets are skipped. Never panics on any input.
pub fn aac_units(payload: &[u8], size_length: u32, index_length: u32) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (Some(&h0), Some(&h1)) = (payload.first(), payload.get(1)) else { return out };
    let header_bits = u16::from_be_bytes([h0, h1]) as usize;
    let per = (size_length + index_length) as usize;
    if per == 0 {
        return out;
    }
    let header_bytes = header_bits.div_ceil(8);
    let Some(headers) = payload.get(2..2 + header_bytes) else { return out };
    let mut data = &payload[2 + header_bytes..];
    for k in 0..header_bits / per {
        let mut size = 0usize;
        for b in k * per..k * per + size_length as usize {
            size = (size << 1) | ((headers[b / 8] >> (7 - b % 8)) & 1) as usize;
        }
        if size == 0 || size > data.len() || size > MAX_AU {
            break;
        }
        out.push(&data[..size]);
        data = &data[size..];
    }
    out
}

/// A 7-byte ADTS header (MPEG-4, no CRC) for an access unit of `len` bytes.
pub fn adts_header(t: &AacTrack, len: usize) -> [u8; 7] {
    let full = len + 7;
    let profile = t.object_type - 1;
    [
        0xff,
        0xf1,
        (profile << 6) | (t.freq_index << 2) | ((t.channels >> 2) & 1),
        ((t.channels & 3) << 6) | ((full >> 11) & 3) as u8,
        ((full >> 3) & 0xff) as u8,
        (((full & 7) << 5) as u8) | 0x1f,
        0xfc,
    ]
}

/// Width and height from an H.264 SPS (without start code).
pub fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    // h264-reader 0.8 underflows on an empty unit; an SPS has at least a header and 3 bytes.
    if sps.len() < 4 || sps[0] & 0x1f != 7 {
        return None;
    }
    let rbsp = h264_reader::rbsp::decode_nal(sps).ok()?;
    let s = h264_reader::nal::sps::SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(&rbsp[..])).ok()?;
    s.pixel_dimensions().ok()
}

/// What a clip holds, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub video_frames: usize,
    pub audio_frames: usize,
    pub seconds: f64,
}

/// The frame rate from the first two video frames' timestamps (15 on the DB1 when unsure).
fn fps(frames: &[Timed]) -> f64 {
    let mut v = frames.iter().filter(|(_, f)| f.track == 0).map(|(_, f)| f.ts);
    match (v.next(), v.next()) {
        (Some(a), Some(b)) if b.wrapping_sub(a) > 0 && b.wrapping_sub(a) < 90_000 => {
            90_000.0 / b.wrapping_sub(a) as f64
        }
        _ => 15.0,
    }
}

/// Unwraps 32-bit RTP timestamps into seconds from the first one.
struct Clock {
    first: Option<u32>,
    last: u32,
    ticks: i64,
    rate: f64,
}

impl Clock {
    fn new(rate: u32) -> Clock {
        Clock { first: None, last: 0, ticks: 0, rate: rate.max(1) as f64 }
    }
    fn secs(&mut self, ts: u32) -> f64 {
        if self.first.is_none() {
            self.first = Some(ts);
            self.last = ts;
        }
        self.ticks += ts.wrapping_sub(self.last) as i32 as i64;
        self.last = ts;
        self.ticks as f64 / self.rate
    }
}

/// The MP4 of `frames` (which start at a video keyframe). Errors name what was wrong.
pub fn mux(desc: &Description, frames: &[Timed]) -> Result<(Vec<u8>, Summary), String> {
    if desc.codec != VideoCodec::H264 {
        return Err("clips are made of H.264 streams only".into());
    }
    let ps = keyframe::split_annexb(&desc.param_sets);
    let mut sps = ps.iter().find(|n| n.first().is_some_and(|b| b & 0x1f == 7)).copied();
    // The doorbell may send newer parameter sets in-band with the keyframe.
    let first_key = frames.iter().find(|(_, f)| f.track == 0 && f.key).ok_or("no keyframe")?;
    let mut first_au = Vec::new();
    keyframe::to_annexb(VideoCodec::H264, first_key.1.packets().filter_map(rtp_payload), &mut first_au);
    let inband = keyframe::split_annexb(&first_au).into_iter().find(|n| n.first().is_some_and(|b| b & 0x1f == 7));
    sps = inband.or(sps);
    let (width, height) = sps.and_then(sps_dimensions).ok_or("no readable SPS")?;
    let aac = aac_track(desc);
    let mut b =
        muxide::api::MuxerBuilder::new(Vec::new()).video(muxide::api::VideoCodec::H264, width, height, fps(frames));
    if let Some(a) = &aac {
        let profile = match a.object_type {
            1 => muxide::api::AacProfile::Main,
            3 => muxide::api::AacProfile::Ssr,
            4 => muxide::api::AacProfile::Ltp,
            _ => muxide::api::AacProfile::Lc,
        };
        b = b.audio(muxide::api::AudioCodec::Aac(profile), a.clock_rate, a.channels as u16);
    }
    let mut m = b.with_fast_start(true).build().map_err(|e| e.to_string())?;
    let t0: Instant = first_key.0;
    let (mut vclock, mut aclock) = (Clock::new(90_000), Clock::new(aac.as_ref().map_or(1, |a| a.clock_rate)));
    let mut audio_anchor: Option<f64> = None;
    let (mut last_v, mut last_a) = (-1.0f64, 0.0f64);
    let mut sum = Summary::default();
    let mut au = Vec::new();
    let mut adts = Vec::new();
    for (at, f) in frames.iter().skip_while(|(_, f)| !(f.track == 0 && f.key)) {
        if f.track == 0 {
            let pts = vclock.secs(f.ts);
            if pts <= last_v {
                continue;
            }
            au.clear();
            if sum.video_frames == 0 && inband.is_none() {
                au.extend_from_slice(&desc.param_sets);
            }
            keyframe::to_annexb(VideoCodec::H264, f.packets().filter_map(rtp_payload), &mut au);
            if au.is_empty() {
                continue;
            }
            m.write_video(pts, &au, f.key).map_err(|e| e.to_string())?;
            last_v = pts;
            sum.video_frames += 1;
        } else if let Some(a) = aac.as_ref().filter(|a| a.index == f.track) {
            // Sound and picture have clocks of their own: the first sound packet is placed by
            // when it arrived, the rest by their timestamps.
            let anchor = *audio_anchor.get_or_insert_with(|| at.saturating_duration_since(t0).as_secs_f64());
            let Some(raw) = f.packets().next() else { continue };
            let Some(payload) = rtp_payload(raw) else { continue };
            let base = anchor + aclock.secs(f.ts);
            for (k, unit) in aac_units(payload, a.size_length, a.index_length).into_iter().enumerate() {
                let pts = base + (k as u32 * AAC_FRAME_SAMPLES) as f64 / a.clock_rate.max(1) as f64;
                if pts < last_a || sum.video_frames == 0 {
                    continue;
                }
                adts.clear();
                adts.extend_from_slice(&adts_header(a, unit.len()));
                adts.extend_from_slice(unit);
                m.write_audio(pts, &adts).map_err(|e| e.to_string())?;
                last_a = pts;
                sum.audio_frames += 1;
            }
        }
    }
    if sum.video_frames == 0 {
        return Err("no video frames".into());
    }
    sum.seconds = last_v + 1.0 / fps(frames);
    m.finish_in_place().map_err(|e| e.to_string())?;
    Ok((m.into_writer(), sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(lines: &[&str]) -> Track {
        Track {
            media: "audio".into(),
            payload_type: 97,
            clock_rate: 16000,
            encoding: "MPEG4-GENERIC".into(),
            media_lines: lines.iter().map(|s| s.to_string()).collect(),
            upstream: 1,
        }
    }

    #[test]
    fn aac_track_from_the_doorbells_fmtp() {
        let t = track(&["a=rtpmap:97 MPEG4-GENERIC/16000/1", "a=fmtp:97 streamtype=5;profile-level-id=15;mode=AAC-hbr;config=1408;sizelength=13;indexlength=3;indexdeltalength=3"]);
        let a = aac_of(1, &t).unwrap();
        assert_eq!((a.object_type, a.freq_index, a.channels, a.size_length, a.index_length), (2, 8, 1, 13, 3));
        assert_eq!(aac_of(1, &Track { encoding: "PCMU".into(), ..t.clone() }), None);
        assert_eq!(aac_of(1, &track(&["a=fmtp:97 config=1408"])), None, "no sizelength");
    }

    #[test]
    fn aac_units_and_adts() {
        // Two AU headers (13-bit size, 3-bit index): sizes 3 and 2.
        let h = [(3u16 << 3).to_be_bytes(), (2u16 << 3).to_be_bytes()].concat();
        let mut p = vec![0, 32];
        p.extend_from_slice(&h);
        p.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert_eq!(aac_units(&p, 13, 3), vec![&[1u8, 2, 3][..], &[4, 5][..]]);
        assert_eq!(aac_units(&p[..10], 13, 3).len(), 1, "a cut unit is skipped");
        let t = AacTrack {
            index: 1,
            object_type: 2,
            freq_index: 8,
            channels: 1,
            clock_rate: 16000,
            size_length: 13,
            index_length: 3,
        };
        let hdr = adts_header(&t, 100);
        assert_eq!(&hdr[..2], &[0xff, 0xf1]);
        let len = (((hdr[3] & 3) as usize) << 11) | ((hdr[4] as usize) << 3) | (hdr[5] >> 5) as usize;
        assert_eq!(len, 107);
        assert_eq!((hdr[2] >> 6, (hdr[2] >> 2) & 0xf), (1, 8));
    }

    #[test]
    fn dimensions_of_the_simulators_sps() {
        let c = crate::sim::rtsp::clip();
        let sps =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, c.sprop.split(',').next().unwrap())
                .unwrap();
        assert_eq!(sps_dimensions(&sps), Some((1536, 2048)));
        assert_eq!(sps_dimensions(&[0x67]), None);
    }

    proptest::proptest! {
        #[test]
        fn aac_units_never_panic_and_stay_inside(p in proptest::collection::vec(proptest::num::u8::ANY, 0..300), s in 0u32..20, i in 0u32..10) {
            let units = aac_units(&p, s, i);
            let total: usize = units.iter().map(|u| u.len()).sum();
            proptest::prop_assert!(total <= p.len());
        }

        #[test]
        fn sps_parser_never_panics(p in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = sps_dimensions(&p);
            let mut sps = vec![0x67];
            sps.extend_from_slice(&p);
            let _ = sps_dimensions(&sps);
        }
    }
}
