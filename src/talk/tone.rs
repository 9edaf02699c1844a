//! Tones, pure: a sine generator and a 16-bit WAV writer (test signals for talk), and the
//! dominant frequency of a signal by a Goertzel scan (what the simulated doorbell reports).

/// `secs` of a sine at `hz`, amplitude `amp` (of full scale 1.0).
pub fn sine(rate: u32, hz: f32, secs: f32, amp: f32) -> Vec<f32> {
    let n = (rate as f32 * secs) as usize;
    (0..n).map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin()).collect()
}

/// A PCM WAV file (16-bit), `mono` copied to every channel.
pub fn wav(rate: u32, channels: u16, mono: &[f32]) -> Vec<u8> {
    let data_len = (mono.len() * channels as usize * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in mono {
        let v = (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
        for _ in 0..channels {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Power of `x` at `hz` (Goertzel).
fn goertzel(x: &[f32], rate: u32, hz: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * hz / rate as f32;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The strongest frequency between 50 Hz and just below Nyquist, to about 1 Hz: a 10 Hz scan,
/// then a 1 Hz scan around its peak. Looks at the first second at most (bounded work).
pub fn dominant_hz(samples: &[i16], rate: u32) -> f32 {
    let n = samples.len().min(rate as usize);
    if n < 64 {
        return 0.0;
    }
    let x: Vec<f32> = samples[..n].iter().map(|&s| s as f32 / 32768.0).collect();
    let top = rate as f32 / 2.0 - 50.0;
    let best = |lo: f32, hi: f32, step: f32| {
        let mut f = lo;
        let (mut bf, mut bp) = (lo, -1.0f32);
        while f <= hi {
            let p = goertzel(&x, rate, f);
            if p > bp {
                (bf, bp) = (f, p);
            }
            f += step;
        }
        bf
    };
    let coarse = best(50.0, top, 10.0);
    best((coarse - 10.0).max(50.0), (coarse + 10.0).min(top), 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tone() {
        for hz in [200.0, 440.0, 1000.0, 3100.0] {
            let x: Vec<i16> = sine(8000, hz, 0.5, 0.4).iter().map(|v| (v * 32767.0) as i16).collect();
            let got = dominant_hz(&x, 8000);
            assert!((got - hz).abs() <= 2.0, "{hz}: {got}");
        }
        assert_eq!(dominant_hz(&[0; 10], 8000), 0.0);
    }

    #[test]
    fn wav_header_is_well_formed() {
        let w = wav(8000, 2, &[0.0; 10]);
        assert_eq!(w.len(), 44 + 40);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(w[40..44].try_into().unwrap()), 40);
    }
}
