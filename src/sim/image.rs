//! The simulated doorbell's still picture: a real JPEG, portrait like the DB1's, made once.

use std::sync::OnceLock;

use bytes::Bytes;

pub const WIDTH: u16 = 1536;
pub const HEIGHT: u16 = 2048;

/// A door-ish picture (sky gradient, a dark door frame in the middle), drawn a row at a time as
/// the encoder asks for it: a whole 1536x2048 RGB buffer would be 9 MB in the demo's memory.
struct Door;

impl Door {
    fn rgb(x: usize, y: usize) -> (u8, u8, u8) {
        let (w, h) = (WIDTH as usize, HEIGHT as usize);
        if (w / 3..2 * w / 3).contains(&x) && y > h / 4 {
            (90, 60, 40)
        } else {
            ((x * 255 / w) as u8, (y * 255 / h) as u8, 180)
        }
    }
}

impl jpeg_encoder::ImageBuffer for Door {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        WIDTH
    }

    fn height(&self) -> u16 {
        HEIGHT
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        for x in 0..WIDTH as usize {
            let (r, g, b) = Self::rgb(x, y as usize);
            let (yy, cb, cr) = jpeg_encoder::rgb_to_ycbcr(r, g, b);
            buffers[0].push(yy);
            buffers[1].push(cb);
            buffers[2].push(cr);
        }
    }
}

pub fn snapshot_jpeg() -> Bytes {
    static JPEG: OnceLock<Bytes> = OnceLock::new();
    JPEG.get_or_init(|| {
        let mut out = Vec::new();
        let enc = jpeg_encoder::Encoder::new(&mut out, 80);
        enc.encode_image(Door).expect("encoding to memory");
        Bytes::from(out)
    })
    .clone()
}
