//! The simulated doorbell's audio backchannel (ONVIF Streaming Spec 5.3): a `sendonly` PCMU track
//! added to the SDP when a DESCRIBE carries `Require: www.onvif.org/ver20/backchannel`, and a
//! receiver that decodes the G.711 RTP it gets and reports, for the last talk, how long it was
//! (`backchannel_ms`) and its dominant frequency (`backchannel_hz`). `POST
//! /sim/backchannel?enabled=on|off` switches it (off: the DESCRIBE has no backchannel track).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use crate::rtsp::server::codec::Request;
use crate::talk::g711::Law;
use crate::talk::probe::REQUIRE_BACKCHANNEL;
use crate::talk::tone::dominant_hz;

/// The backchannel's control suffix (the DS-HD1 names its audio tracks after the video's).
pub const TRACK: &str = "trackID=4";
/// At most this much audio is kept per talk (2 minutes at 8 kHz).
const MAX_SAMPLES: usize = 8000 * 120;

#[derive(Default)]
pub struct Receiver {
    pub enabled: AtomicBool,
    /// Backchannel sessions set up since start.
    pub sessions: AtomicU64,
    /// Backchannel sessions the client tore down (the bridge must, as soon as a message played).
    pub teardowns: AtomicU64,
    last: Mutex<Last>,
}

#[derive(Default)]
struct Last {
    samples: Vec<i16>,
    packets: u64,
    bad_packets: u64,
    /// When the first packet of the last talk arrived (for the latency benchmark).
    first_packet_at: Option<Instant>,
}

impl Receiver {
    fn lock(&self) -> std::sync::MutexGuard<'_, Last> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SDP media section to append to a DESCRIBE answer (empty when not asked for or off).
    pub fn sdp(&self, req: &Request, base: &str) -> String {
        let asked = req.header("Require").is_some_and(|r| r.split(',').any(|t| t.trim() == REQUIRE_BACKCHANNEL));
        if !asked || !self.enabled.load(Ordering::SeqCst) {
            return String::new();
        }
        format!("m=audio 0 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\na=control:{base}{TRACK}\r\na=sendonly\r\n")
    }

    pub fn is_track(&self, uri: &str) -> bool {
        self.enabled.load(Ordering::SeqCst) && uri.trim_end_matches('/').ends_with(TRACK)
    }

    /// A new backchannel session: what the last talk received is forgotten.
    pub fn start(&self) {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        *self.lock() = Last::default();
    }

    /// One RTP packet from the client (RFC 3550 header; CSRCs, extension and padding honoured).
    pub fn packet(&self, data: &[u8]) {
        let mut g = self.lock();
        let Some((law, payload)) = parse_rtp(data) else {
            g.bad_packets += 1;
            return;
        };
        g.first_packet_at.get_or_insert_with(Instant::now);
        g.packets += 1;
        let room = MAX_SAMPLES.saturating_sub(g.samples.len());
        g.samples.extend(payload.iter().take(room).map(|&b| law.decode(b)));
    }

    pub fn first_packet_at(&self) -> Option<Instant> {
        self.lock().first_packet_at
    }

    pub fn status(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        let g = self.lock();
        let ms = g.samples.len() as u64 / 8;
        let hz = if g.samples.is_empty() { 0.0 } else { dominant_hz(&g.samples, 8000) };
        out.insert("backchannel".into(), json!(self.enabled.load(Ordering::SeqCst)));
        out.insert("backchannel_sessions".into(), json!(self.sessions.load(Ordering::SeqCst)));
        out.insert("backchannel_teardowns".into(), json!(self.teardowns.load(Ordering::SeqCst)));
        out.insert("backchannel_packets".into(), json!(g.packets));
        out.insert("backchannel_bad_packets".into(), json!(g.bad_packets));
        out.insert("backchannel_ms".into(), json!(ms));
        out.insert("backchannel_hz".into(), json!(hz));
    }
}

/// The law and payload of a G.711 RTP packet; None for anything else.
pub fn parse_rtp(p: &[u8]) -> Option<(Law, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let law = Law::from_payload_type(p[1] & 0x7f)?;
    let mut start = 12 + 4 * (p[0] & 0x0f) as usize;
    if p[0] & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(*p.last()? as usize)?;
    }
    Some((law, p.get(start..end)?))
}

#[derive(Deserialize)]
pub(super) struct Switch {
    enabled: String,
}

pub(super) async fn control(State(ctx): State<Ctx>, Query(q): Query<Switch>) -> Response {
    let on = match q.enabled.as_str() {
        "on" | "true" => true,
        "off" | "false" => false,
        _ => return (StatusCode::BAD_REQUEST, Json(json!({"error": "enabled must be on or off"}))).into_response(),
    };
    ctx.state.backchannel.enabled.store(on, Ordering::SeqCst);
    Json(json!({"backchannel": on})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_headers() {
        let mut p = vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&[0xff; 160]);
        assert_eq!(parse_rtp(&p).map(|(l, b)| (l, b.len())), Some((Law::Mu, 160)));
        p[1] = 8;
        assert_eq!(parse_rtp(&p).map(|(l, _)| l), Some(Law::A));
        p[1] = 96;
        assert!(parse_rtp(&p).is_none());
        // Padding longer than the packet, an extension past the end: refused, no panic.
        let bad = [0xa0, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
        assert!(parse_rtp(&bad).is_none());
        let ext = [0x90, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff];
        assert!(parse_rtp(&ext).is_none());
    }

    #[test]
    fn a_tone_received_is_measured() {
        let r = Receiver::default();
        r.enabled.store(true, Ordering::SeqCst);
        r.start();
        let tone = crate::talk::tone::sine(8000, 440.0, 1.0, 0.5);
        for chunk in tone.chunks(160) {
            let mut p = vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
            p.extend(chunk.iter().map(|v| Law::Mu.encode((v * 32767.0) as i16)));
            r.packet(&p);
        }
        let mut m = serde_json::Map::new();
        r.status(&mut m);
        assert_eq!(m["backchannel_ms"], 1000);
        assert!((m["backchannel_hz"].as_f64().unwrap() - 440.0).abs() <= 2.0, "{m:?}");
        r.start();
        let mut m = serde_json::Map::new();
        r.status(&mut m);
        assert_eq!(m["backchannel_ms"], 0);
    }

    proptest::proptest! {
        #[test]
        fn rtp_parser_never_panics(p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Some((_, b)) = parse_rtp(&p) {
                proptest::prop_assert!(b.len() <= p.len());
            }
        }
    }
}
