#![no_main]
//! The Supervisor's replies and an installed integration's version are read from outside the
//! bridge: errors, never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let status = data.first().map(|b| 100 + u16::from(*b) * 2).unwrap_or(200);
    let _ = doorbell_bridge::supervisor::parse_reply(status, data);
    if let Ok(s) = std::str::from_utf8(data) {
        let (a, b) = s.split_at(s.len() / 2);
        let _ = doorbell_bridge::supervisor::compare_versions(a, b);
    }
});
