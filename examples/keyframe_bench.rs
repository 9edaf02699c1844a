//! Keyframe decoder benchmark: the bridge's decoder (rusty_h264, as built into the bridge) side by
//! side with OpenH264 (the decoder it replaced, a dev-dependency) on the same keyframe: decode time
//! (median of 10, the two interleaved) and, in a fresh process each, the RSS one decode adds.
//! Usage: `cargo run --release --example keyframe_bench -- FILE.h264`
//! (`-- FILE.h264 once rusty|openh264` is the one-decode child the memory figure comes from).

use std::process::Command;
use std::time::Instant;

/// Decodes the first picture; returns its luma size.
fn rusty(annexb: &[u8]) -> (usize, usize) {
    let pic = rusty_h264_decoder::Decoder::new().decode(annexb).expect("decodes").expect("a picture");
    (pic.width, pic.height)
}

fn openh264(annexb: &[u8]) -> (usize, usize) {
    use openh264::decoder::{DecodeOptions, Decoder, Flush};
    use openh264::formats::YUVSource;
    let mut dec = Decoder::new().expect("decoder");
    let opts = DecodeOptions::new().flush_after_decode(Flush::Flush);
    match dec.decode_with_options(annexb, opts).expect("decodes") {
        Some(pic) => pic.dimensions(),
        None => dec.flush_remaining().expect("flushes").first().expect("a picture").dimensions(),
    }
}

fn vm_hwm_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2] + v[(v.len() - 1) / 2]) / 2.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args.get(1).expect("usage: keyframe_bench FILE.h264 [once rusty|openh264]");
    let annexb = std::fs::read(file).unwrap();
    if args.get(2).map(String::as_str) == Some("once") {
        let before = vm_hwm_kb();
        let size = if args[3] == "rusty" { rusty(&annexb) } else { openh264(&annexb) };
        println!("{} {}", size.0 * size.1, vm_hwm_kb().saturating_sub(before));
        return;
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = Instant::now();
        let a = rusty(&annexb);
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let b = openh264(&annexb);
        theirs.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(a, b, "the two decoders disagree on the picture size");
    }
    let once = |which: &str| -> u64 {
        let out = Command::new(&args[0]).args([file.as_str(), "once", which]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("the child's figure")
    };
    let (ours_kb, theirs_kb) = (once("rusty"), once("openh264"));
    let (m_ours, m_theirs) = (median(ours), median(theirs));
    println!("{file}");
    println!(
        "decode time, median of 10: rusty_h264 {m_ours:.1} ms, OpenH264 {m_theirs:.1} ms, ratio {:.2}",
        m_ours / m_theirs
    );
    println!(
        "RSS added by one decode: rusty_h264 {:.1} MB, OpenH264 {:.1} MB, ratio {:.2}",
        ours_kb as f64 / 1000.0,
        theirs_kb as f64 / 1000.0,
        ours_kb as f64 / theirs_kb as f64
    );
}
