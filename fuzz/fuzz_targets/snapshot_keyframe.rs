#![no_main]
//! Keyframes come from the doorbell's RTSP stream and JPEGs from its snapshot URL: decoding one
//! or reading a JPEG's size must fail cleanly, never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = doorbell_bridge::snapshot::keyframe::jpeg_size(data);
    let _ = doorbell_bridge::snapshot::keyframe::keyframe_to_jpeg(data, 80);
});
