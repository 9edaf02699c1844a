//! CoIoT datagrams: the CoAP frame, the options, the status and descriptor payloads.
#![no_main]
use doorbell_bridge::ring::coiot::{self, DeviceMatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let device = DeviceMatch::parse("SHUNI-1#C45BBE6B9A12#2").unwrap();
    let _ = doorbell_bridge::ring::judge(&device, 1, data);
    if let Ok(m) = coiot::parse(data) {
        let _ = coiot::parse_status(m.payload);
        let _ = coiot::parse_descriptor(m.payload);
    }
    let _ = doorbell_bridge::ring::dns::parse_query(data);
});
