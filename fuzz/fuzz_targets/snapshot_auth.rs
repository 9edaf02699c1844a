#![no_main]
//! The doorbell's `WWW-Authenticate` challenges: parsed from the network, must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = doorbell_bridge::digest::parse_challenges(data);
    let _ = doorbell_bridge::digest::choose([data]);
});
