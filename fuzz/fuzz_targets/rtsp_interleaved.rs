//! The connection's framing loop: a byte stream of requests and `$`-interleaved data, cut at
//! arbitrary points, is consumed item by item without panics or unbounded buffering.
#![no_main]
use doorbell_bridge::rtsp::server::codec::{parse, MAX_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, as a socket would deliver the stream in pieces.
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = chunk as usize % 64 + 1;
    let mut buf = Vec::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match parse(&buf) {
                Ok(Some((_, used))) => {
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(_) => return, // the connection answers 4xx and closes
            }
        }
        // What waits for more is bounded: a request head, or one interleaved frame.
        assert!(buf.len() <= MAX_REQUEST.max(4 + 65535) + chunk);
    }
});
