//! G.711 (ITU-T G.711) mu-law and A-law, pure. The doorbell's backchannel takes 8 kHz mono in
//! the law its SDP names (PCMU = payload type 0, PCMA = 8).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Mu,
    A,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }

    pub fn encode(self, s: i16) -> u8 {
        match self {
            Law::Mu => mulaw_encode(s),
            Law::A => alaw_encode(s),
        }
    }

    pub fn decode(self, b: u8) -> i16 {
        match self {
            Law::Mu => mulaw_decode(b),
            Law::A => alaw_decode(b),
        }
    }
}

const MU_BIAS: i32 = 0x84;
const MU_CLIP: i32 = 32635;

pub fn mulaw_encode(s: i16) -> u8 {
    let mut v = s as i32;
    let sign = if v < 0 { 0x80 } else { 0 };
    if v < 0 {
        v = -v;
    }
    v = v.min(MU_CLIP) + MU_BIAS;
    let exp = (31 - (v as u32).leading_zeros()) as i32 - 7; // position of the top bit above bit 7
    let exp = exp.clamp(0, 7);
    let mant = (v >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) as u8 | mant as u8)
}

pub fn mulaw_decode(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exp = ((b >> 4) & 0x07) as i32;
    let mant = (b & 0x0f) as i32;
    let v = (((mant << 3) + MU_BIAS) << exp) - MU_BIAS;
    (if sign != 0 { -v } else { v }) as i16
}

pub fn alaw_encode(s: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let v = s as i32 >> 3;
    let (sign, mag) = if v >= 0 { (0x80u8, v) } else { (0x00u8, -v - 1) };
    let mag = mag.min(0x0fff);
    let out = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let exp = (31 - (mag as u32).leading_zeros()) as i32 - 4; // 1..=7
        let mant = (mag >> exp) & 0x0f;
        ((exp << 4) as u8) | mant as u8
    };
    (out | sign) ^ 0x55
}

pub fn alaw_decode(b: u8) -> i16 {
    let b = b ^ 0x55;
    let exp = ((b >> 4) & 0x07) as i32;
    let mant = (b & 0x0f) as i32;
    let mag = if exp == 0 { (mant << 4) + 8 } else { ((mant << 4) + 0x108) << (exp - 1) };
    (if b & 0x80 != 0 { mag } else { -mag }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_codes() {
        assert_eq!(mulaw_encode(0), 0xff);
        assert_eq!(mulaw_encode(-1), 0x7f);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
        assert_eq!(mulaw_decode(0xff), 0);
        assert_eq!(alaw_decode(0xd5), 8);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for b in 0..=255u8 {
            for law in [Law::Mu, Law::A] {
                let s = law.decode(b);
                let back = law.encode(s);
                // mu-law has two zeros (0x7f, 0xff); everything else maps back to itself.
                if !(law == Law::Mu && b == 0x7f) {
                    assert_eq!(back, b, "{law:?} {b:#x} -> {s}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip_error_is_within_a_step(s in any::<i16>()) {
            for law in [Law::Mu, Law::A] {
                let d = law.decode(law.encode(s)) as i32;
                let err = (d - s as i32).abs();
                // Logarithmic quantisation: the step grows with the magnitude (1/16 of it, + the bias).
                let bound = (s as i32).abs() / 16 + 80;
                prop_assert!(err <= bound, "{:?}: {} -> {} (err {})", law, s, d, err);
                prop_assert_eq!(d.signum() * (s as i32).signum() >= 0, true);
            }
        }

        #[test]
        fn encoding_is_monotonic(a in any::<i16>(), b in any::<i16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            for law in [Law::Mu, Law::A] {
                prop_assert!(law.decode(law.encode(lo)) <= law.decode(law.encode(hi)));
            }
        }
    }
}
