//! What the RTSP hub offers the rest of the bridge: the access unit that starts the current GOP
//! of a stream, so a picture can be made the moment a ring is detected, without a camera session.

use bytes::Bytes;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

/// A keyframe as Annex B bytes: start codes, parameter sets (SPS/PPS, and VPS for H.265), then
/// the IDR slices. Everything a decoder needs to make one picture.
#[derive(Debug, Clone)]
pub struct Keyframe {
    pub stream: String,
    pub codec: VideoCodec,
    pub annexb: Bytes,
    pub captured: DateTime<Utc>,
}

pub trait KeyframeSource: Send + Sync {
    /// The latest keyframe of `stream`, if the hub has one.
    fn latest_keyframe(&self, stream: &str) -> Option<Keyframe>;
}
