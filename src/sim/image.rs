//! The simulated doorbell's still picture: a real JPEG, portrait like the DB1's, made once.

use std::sync::OnceLock;

use bytes::Bytes;

pub const WIDTH: u16 = 1536;
pub const HEIGHT: u16 = 2048;

pub fn snapshot_jpeg() -> Bytes {
    static JPEG: OnceLock<Bytes> = OnceLock::new();
    JPEG.get_or_init(|| {
        let (w, h) = (WIDTH as usize, HEIGHT as usize);
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                // A door-ish picture: sky gradient, a dark door frame in the middle.
                let door = (w / 3..2 * w / 3).contains(&x) && y > h / 4;
                rgb[i] = if door { 90 } else { (x * 255 / w) as u8 };
                rgb[i + 1] = if door { 60 } else { (y * 255 / h) as u8 };
                rgb[i + 2] = if door { 40 } else { 180 };
            }
        }
        let mut out = Vec::new();
        let enc = jpeg_encoder::Encoder::new(&mut out, 80);
        enc.encode(&rgb, WIDTH, HEIGHT, jpeg_encoder::ColorType::Rgb).expect("encoding to memory");
        Bytes::from(out)
    })
    .clone()
}
