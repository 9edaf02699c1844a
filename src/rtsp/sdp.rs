//! SDP, pure: pick the video section of the doorbell's description and rewrite it for viewers
//! (our own origin and control URLs, the doorbell's codec parameters kept as they are).

use base64::Engine;

use crate::media::VideoCodec;

/// What the bridge tells its viewers about one stream, and what it knows of the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub codec: VideoCodec,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// The video `m=` section's attribute lines, without `a=control` (we add our own).
    pub media_lines: Vec<String>,
    /// Parameter sets from `sprop-*` as Annex B, put before a keyframe made into a picture.
    pub param_sets: Vec<u8>,
}

/// Control URL (relative to the stream URL) of our single track.
pub const TRACK: &str = "trackID=0";

/// The `index`-th media section of `sdp` (0-based, in the order retina lists streams), when it
/// is H.264 or H.265 video.
pub fn video_section(sdp: &[u8], index: usize) -> Option<Description> {
    let text = std::str::from_utf8(sdp).ok()?;
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in text.lines().map(str::trim_end).take(1000) {
        if line.starts_with("m=") {
            sections.push(vec![line]);
        } else if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    let sec = sections.get(index)?;
    let m = sec[0].strip_prefix("m=")?;
    let mut f = m.split_whitespace();
    if f.next()? != "video" {
        return None;
    }
    let payload_type: u8 = f.nth(2)?.parse().ok()?;
    let mut codec = None;
    let mut clock_rate = 90_000;
    let mut param_sets = Vec::new();
    let mut media_lines = Vec::new();
    for l in &sec[1..] {
        if let Some(v) = l.strip_prefix("a=rtpmap:") {
            let (pt, enc) = v.split_once(' ')?;
            if pt.trim().parse::<u8>().ok()? == payload_type {
                let mut e = enc.split('/');
                codec = match e.next()?.to_ascii_uppercase().as_str() {
                    "H264" => Some(VideoCodec::H264),
                    "H265" | "HEVC" => Some(VideoCodec::H265),
                    _ => None,
                };
                clock_rate = e.next().and_then(|c| c.trim().parse().ok()).unwrap_or(90_000);
            }
        }
        if let Some(v) = l.strip_prefix("a=fmtp:") {
            for p in v.split_once(' ').map(|x| x.1).unwrap_or("").split(';') {
                let Some((k, val)) = p.trim().split_once('=') else { continue };
                if matches!(k.trim(), "sprop-parameter-sets" | "sprop-vps" | "sprop-sps" | "sprop-pps") {
                    for b in val.split(',') {
                        if let Ok(nal) = base64::engine::general_purpose::STANDARD.decode(b.trim()) {
                            param_sets.extend_from_slice(&[0, 0, 0, 1]);
                            param_sets.extend_from_slice(&nal);
                        }
                    }
                }
            }
        }
        if l.starts_with("a=control:") || l.starts_with("c=") || l.starts_with("b=") || l.is_empty() {
            continue;
        }
        media_lines.push(l.to_string());
    }
    Some(Description { codec: codec?, payload_type, clock_rate, media_lines, param_sets })
}

impl Description {
    /// The SDP a viewer gets for stream `name`.
    pub fn viewer_sdp(&self, name: &str, session_id: u64) -> String {
        let mut s = format!(
            "v=0\r\no=- {session_id} 1 IN IP4 0.0.0.0\r\ns=Doorbell Bridge {name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=control:*\r\na=range:npt=0-\r\nm=video 0 RTP/AVP {}\r\n",
            self.payload_type
        );
        for l in &self.media_lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str(&format!("a=control:{TRACK}\r\n"));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIK: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=Media Presentation\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
        a=control:rtsp://192.0.2.10:554/Streaming/Channels/101/?transportmode=unicast\r\n\
        m=video 0 RTP/AVP 96\r\nb=AS:4096\r\na=control:rtsp://192.0.2.10:554/Streaming/Channels/101/trackID=1\r\n\
        a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=420029; packetization-mode=1; sprop-parameter-sets=Z01AKI2NQDwBE/LAPEiJqA==,aO44gA==\r\n\
        m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn picks_video_and_rewrites() {
        let d = video_section(HIK.as_bytes(), 0).unwrap();
        assert_eq!(d.codec, VideoCodec::H264);
        assert_eq!(d.payload_type, 96);
        assert_eq!(&d.param_sets[..5], &[0, 0, 0, 1, 0x67]);
        let sdp = d.viewer_sdp("main", 7);
        assert!(sdp.contains("a=rtpmap:96 H264/90000"));
        assert!(sdp.contains("a=control:trackID=0"));
        assert!(!sdp.contains("192.0.2.10"), "{sdp}");
        assert!(video_section(HIK.as_bytes(), 1).is_none(), "audio is not video");
        assert!(video_section(b"garbage", 0).is_none());
    }
}
