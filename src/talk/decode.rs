//! Audio file in, 8 kHz mono 16-bit PCM out: symphonia decodes (WAV, MP3, FLAC, OGG/Vorbis),
//! channels are averaged, and a windowed-sinc low-pass + linear interpolation resamples to the
//! 8 kHz the doorbell's G.711 backchannel takes. Pure (bytes in, samples out).
//!
//! OGG/Opus is refused (`Unsupported`): symphonia has no Opus decoder and no other well-kept
//! pure-Rust one exists, so a TTS engine must be set to MP3 or WAV output.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_OPUS};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The backchannel's rate (G.711).
pub const OUT_RATE: u32 = 8000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a format we read (415).
    Unsupported(String),
    /// A known format, but no audio could be decoded from it (400).
    Invalid(String),
    /// Longer than the limit (413).
    TooLong { limit_s: u32 },
}

/// Decodes `data` (with an optional MIME type as a hint) to 8 kHz mono, at most `max_secs` long.
pub fn decode_to_8k(data: &[u8], mime: Option<&str>, max_secs: u32) -> Result<Vec<i16>, DecodeError> {
    let mut hint = Hint::new();
    if let Some(m) = mime {
        hint.mime_type(m.split(';').next().unwrap_or(m).trim());
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(data.to_vec())), MediaSourceStreamOptions::default());
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|_| DecodeError::Unsupported("not a WAV, MP3, FLAC or OGG/Vorbis file".into()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| DecodeError::Invalid("the file holds no audio track".into()))?;
    if track.codec_params.codec == CODEC_TYPE_OPUS {
        return Err(DecodeError::Unsupported("Opus audio cannot be decoded; send WAV, MP3, FLAC or OGG/Vorbis".into()));
    }
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|_| DecodeError::Unsupported("this audio codec cannot be decoded".into()))?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut mono: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            // End of stream, or a truncated file: keep what was decoded.
            Err(SymError::IoError(_)) | Err(SymError::ResetRequired) => break,
            Err(_) => break,
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(_)) => continue, // one bad packet: skip it, as players do
            Err(_) => break,
        };
        let spec = *decoded.spec();
        rate = spec.rate;
        let ch = spec.channels.count().max(1);
        let b = buf.get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, spec));
        if b.capacity() < decoded.capacity() * ch {
            *b = SampleBuffer::new(decoded.capacity() as u64, spec);
        }
        b.copy_interleaved_ref(decoded);
        mono.extend(b.samples().chunks(ch).map(|f| f.iter().sum::<f32>() / ch as f32));
        if rate > 0 && mono.len() as u64 > max_secs as u64 * rate as u64 {
            return Err(DecodeError::TooLong { limit_s: max_secs });
        }
    }
    if mono.is_empty() || rate == 0 {
        return Err(DecodeError::Invalid("no audio could be decoded (truncated or damaged file?)".into()));
    }
    Ok(resample(&mono, rate, OUT_RATE).into_iter().map(to_i16).collect())
}

fn to_i16(x: f32) -> i16 {
    (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Low-pass below the output's Nyquist (windowed sinc), then linear interpolation.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let filtered;
    let src = if from > to {
        // Cut-off at 0.45 of the output rate: keeps speech up to 3.6 kHz, stops aliasing.
        filtered = lowpass(input, 0.45 * to as f32 / from as f32, 63);
        &filtered[..]
    } else {
        input
    };
    let step = from as f64 / to as f64;
    let n = ((input.len() as f64) / step).floor() as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * step;
            let k = pos as usize;
            let frac = (pos - k as f64) as f32;
            let a = src[k];
            let b = *src.get(k + 1).unwrap_or(&a);
            a + (b - a) * frac
        })
        .collect()
}

/// FIR low-pass with a Blackman window; `cutoff` as a fraction of the sample rate.
fn lowpass(x: &[f32], cutoff: f32, taps: usize) -> Vec<f32> {
    let m = (taps - 1) as f32;
    let mut h: Vec<f32> = (0..taps)
        .map(|i| {
            let t = i as f32 - m / 2.0;
            let sinc = if t == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f32::consts::PI * cutoff * t).sin() / (std::f32::consts::PI * t)
            };
            let w = 0.42 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / m).cos()
                + 0.08 * (4.0 * std::f32::consts::PI * i as f32 / m).cos();
            sinc * w
        })
        .collect();
    let sum: f32 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= sum);
    let half = taps / 2;
    (0..x.len())
        .map(|n| {
            let mut acc = 0.0;
            for (k, hk) in h.iter().enumerate() {
                let idx = n as isize + half as isize - k as isize;
                if idx >= 0 && (idx as usize) < x.len() {
                    acc += hk * x[idx as usize];
                }
            }
            acc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talk::tone;

    fn sine(rate: u32, hz: f32, secs: f32, channels: u16) -> Vec<u8> {
        tone::wav(rate, channels, &tone::sine(rate, hz, secs, 0.5))
    }

    #[test]
    fn wav_tone_resampled_keeps_its_pitch_and_length() {
        for rate in [8000, 16000, 22050, 44100, 48000] {
            let out = decode_to_8k(&sine(rate, 440.0, 1.0, 2), Some("audio/wav"), 60).unwrap();
            assert!((out.len() as i64 - 8000).abs() <= 2, "{rate}: {}", out.len());
            let hz = tone::dominant_hz(&out, OUT_RATE);
            assert!((hz - 440.0).abs() <= 3.0, "{rate}: {hz}");
        }
    }

    #[test]
    fn tones_above_4k_are_filtered_not_aliased() {
        let x = tone::sine(48000, 6000.0, 0.5, 0.5);
        let y = resample(&x, 48000, 8000);
        let rms = (y[100..].iter().map(|v| v * v).sum::<f32>() / (y.len() - 100) as f32).sqrt();
        assert!(rms < 0.02, "rms {rms}");
    }

    #[test]
    fn bad_inputs_get_their_answers() {
        assert!(matches!(decode_to_8k(b"hello world, not audio", None, 60), Err(DecodeError::Unsupported(_))));
        assert!(matches!(decode_to_8k(&[], None, 60), Err(DecodeError::Unsupported(_))));
        let wav = sine(8000, 440.0, 3.0, 1);
        assert_eq!(decode_to_8k(&wav, None, 2), Err(DecodeError::TooLong { limit_s: 2 }));
        // Truncated: what is there plays.
        let out = decode_to_8k(&wav[..wav.len() / 2], None, 60).unwrap();
        assert!(out.len() > 8000 && out.len() < 16000, "{}", out.len());
        // Only a header: nothing to play.
        assert!(decode_to_8k(&wav[..44], None, 60).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_damaged_files(cut in 0usize..2000, flip in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 0..8)) {
            let mut wav = sine(8000, 300.0, 0.2, 1);
            for (i, b) in flip {
                let n = wav.len();
                wav[i % n] ^= b;
            }
            wav.truncate(cut.min(wav.len()));
            let _ = decode_to_8k(&wav, None, 60);
        }
    }
}
