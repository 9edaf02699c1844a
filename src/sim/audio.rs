//! The simulated doorbell's sound: a 440 Hz tone as AAC-LC 16 kHz mono (RFC 3640 `AAC-hbr`, a
//! bundled clip made by `tests/data/rtsp/make_tone.sh`) or G.711 mu-law / A-law 8 kHz (20 ms
//! packets, encoded here). DB1 units differ by firmware: AAC on some, G.711 mu-law on others.

use std::sync::OnceLock;

use crate::talk::g711;

/// Which sound the simulated doorbell offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimAudio {
    None,
    #[default]
    Aac,
    Pcmu,
    Pcma,
}

impl std::str::FromStr for SimAudio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(SimAudio::None),
            "aac" => Ok(SimAudio::Aac),
            "pcmu" | "g711u" | "mulaw" => Ok(SimAudio::Pcmu),
            "pcma" | "g711a" | "alaw" => Ok(SimAudio::Pcma),
            _ => Err(format!("unknown sound {s:?}: none, aac, pcmu or pcma")),
        }
    }
}

/// Raw ADTS AAC-LC, 16 kHz mono, 64 frames (4.096 s).
static TONE_AAC: &[u8] = include_bytes!("../../tests/data/rtsp/tone_16k_mono.aac");
pub const PT: u8 = 97;
const G711_RATE: u32 = 8000;
const G711_PACKET: usize = 160;

/// What the sound needs for one RTP packet at a time.
pub struct Sound {
    pub clock_rate: u32,
    /// Samples (RTP clock ticks) per packet.
    pub samples: u32,
    pub payload_type: u8,
    /// The `m=` line's attributes (`a=rtpmap`, `a=fmtp`), CRLF-terminated.
    pub sdp: String,
    /// Every packet's payload, looped.
    pub payloads: Vec<Vec<u8>>,
}

/// The sound for `kind`, built once.
pub fn sound(kind: SimAudio) -> Option<&'static Sound> {
    static AAC: OnceLock<Sound> = OnceLock::new();
    static PCMU: OnceLock<Sound> = OnceLock::new();
    static PCMA: OnceLock<Sound> = OnceLock::new();
    match kind {
        SimAudio::None => None,
        SimAudio::Aac => Some(AAC.get_or_init(|| aac(TONE_AAC))),
        SimAudio::Pcmu => Some(PCMU.get_or_init(|| g711(0, "PCMU", g711::mulaw_encode))),
        SimAudio::Pcma => Some(PCMA.get_or_init(|| g711(8, "PCMA", g711::alaw_encode))),
    }
}

/// One second of the tone (440 whole cycles, so it loops seamlessly), at 8 kHz.
fn tone_8k() -> impl Iterator<Item = i16> {
    (0..G711_RATE).map(|n| {
        let t = n as f64 / G711_RATE as f64;
        ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 0.3 * i16::MAX as f64) as i16
    })
}

fn g711(pt: u8, name: &str, enc: fn(i16) -> u8) -> Sound {
    let bytes: Vec<u8> = tone_8k().map(enc).collect();
    Sound {
        clock_rate: G711_RATE,
        samples: G711_PACKET as u32,
        payload_type: pt,
        sdp: format!("a=rtpmap:{pt} {name}/{G711_RATE}\r\n"),
        payloads: bytes.chunks(G711_PACKET).map(<[u8]>::to_vec).collect(),
    }
}

/// The ADTS frames of `data` as RTP payloads (AU-headers-length 16, 13-bit size, 3-bit index).
fn aac(data: &[u8]) -> Sound {
    let mut payloads = Vec::new();
    let mut config = 0x1408u16; // AAC-LC, 16 kHz, mono
    let mut rate = 16000;
    let mut off = 0;
    while off + 7 <= data.len() {
        let h = &data[off..];
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            break;
        }
        let len = (((h[3] & 0x03) as usize) << 11) | ((h[4] as usize) << 3) | (h[5] >> 5) as usize;
        let head = if h[1] & 0x01 == 0 { 9 } else { 7 };
        if len <= head || off + len > data.len() {
            break;
        }
        let aot = ((h[2] >> 6) + 1) as u16;
        let sri = ((h[2] >> 2) & 0x0f) as u16;
        let ch = (((h[2] & 0x01) << 2) | (h[3] >> 6)) as u16;
        config = (aot << 11) | (sri << 7) | (ch << 3);
        rate = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350]
            .get(sri as usize)
            .copied()
            .unwrap_or(16000);
        let au = &data[off + head..off + len];
        let mut p = vec![0x00, 0x10, (au.len() >> 5) as u8, ((au.len() & 0x1f) << 3) as u8];
        p.extend_from_slice(au);
        payloads.push(p);
        off += len;
    }
    Sound {
        clock_rate: rate,
        samples: 1024,
        payload_type: PT,
        sdp: format!(
            "a=rtpmap:{PT} MPEG4-GENERIC/{rate}/1\r\na=fmtp:{PT} streamtype=5;profile-level-id=15;mode=AAC-hbr;\
             config={config:04X};sizelength=13;indexlength=3;indexdeltalength=3\r\n"
        ),
        payloads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_clip_is_64_frames_of_16k_mono() {
        let s = sound(SimAudio::Aac).unwrap();
        assert_eq!(s.clock_rate, 16000);
        assert!((64..=66).contains(&s.payloads.len()), "{}", s.payloads.len());
        assert!(s.sdp.contains("config=1408;"), "{}", s.sdp);
        let pcmu = sound(SimAudio::Pcmu).unwrap();
        assert_eq!(pcmu.payloads.len(), 50);
        assert!(pcmu.payloads.iter().all(|p| p.len() == 160));
    }
}
