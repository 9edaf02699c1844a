//! The RTSP request parser: any bytes, never a panic, never more consumed than given, and a
//! parsed request always within the size bounds.
#![no_main]
use doorbell_bridge::rtsp::server::codec::{parse, Item, MAX_BODY, MAX_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((item, used))) = parse(data) {
        assert!(used > 0 && used <= data.len());
        if let Item::Request(r) = item {
            assert!(used <= MAX_REQUEST + 4 + MAX_BODY);
            assert!(r.body.len() <= MAX_BODY);
            let _ = r.cseq();
            let _ = r.session();
            let _ = doorbell_bridge::rtsp::server::codec::tcp_interleaved(r.header("Transport").unwrap_or(""));
        }
    }
});
