#![no_main]
//! The configuration parser takes a user's file: it must report problems, never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = doorbell_bridge::config::Config::parse(s);
    }
});
