//! Reading a clip back with real tools: ffprobe's view, the first packet's flags, and the
//! simulator's frame numbers (SEI) through ffmpeg's own H.264 stream copy.

use std::path::Path;
use std::process::Command;

use doorbell_bridge::rtsp::keyframe::split_annexb;
use doorbell_bridge::sim::rtsp::frame_number_of;
use serde_json::Value;

/// Names of the top-level MP4 boxes, in order.
pub fn top_level_boxes(mp4: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[i..i + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&mp4[i + 4..i + 8]).into_owned());
        if size < 8 {
            break;
        }
        i += size;
    }
    out
}

pub fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether the first video packet is flagged a keyframe and decodes as an I picture.
pub fn first_packet_is_key(path: &Path) -> bool {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_frames", "-read_intervals", "%+#1"])
        .args(["-show_entries", "frame=key_frame,pict_type", "-print_format", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["frames"][0];
    f["key_frame"] == 1 && f["pict_type"] == "I"
}

/// The simulator's frame numbers in a clip, in order.
pub fn frame_numbers(path: &Path) -> Vec<u64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    split_annexb(&out.stdout).into_iter().filter_map(frame_number_of).collect()
}
