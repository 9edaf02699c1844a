//! SDP, pure: pick the tracks of the doorbell's description we relay (its H.264/H.265 video and
//! every audio section) and rewrite them for viewers (our own origin and control URLs, the
//! doorbell's codec parameters kept as they are).

use base64::Engine;

use crate::media::VideoCodec;

/// Most tracks relayed per stream (one video, the rest audio).
pub const MAX_TRACKS: usize = 4;
/// Lines of SDP read at most; a real doorbell sends < 30.
const MAX_LINES: usize = 1000;

/// One relayed track: a media section of the doorbell's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// `video` or `audio`.
    pub media: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// The encoding name as in `a=rtpmap` (`H264`, `MPEG4-GENERIC`, `PCMU`, ...).
    pub encoding: String,
    /// The section's attribute lines, without `a=control` (we add our own).
    pub media_lines: Vec<String>,
    /// Index of the section in the doorbell's SDP (retina's stream index).
    pub upstream: usize,
}

/// What the bridge tells its viewers about one stream, and what it knows of the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub codec: VideoCodec,
    /// Track 0 is the video; the others are audio, in the doorbell's order.
    pub tracks: Vec<Track>,
    /// Parameter sets from `sprop-*` as Annex B, put before a keyframe made into a picture.
    pub param_sets: Vec<u8>,
}

/// Control URL (relative to the stream URL) of track `i`.
pub fn track_control(i: usize) -> String {
    format!("trackID={i}")
}

/// The track a control URL names: `.../trackID=N` -> N; the stream URL itself -> 0 (clients
/// that SETUP a single-track stream by its own URL). None for anything else.
pub fn track_of(uri_path: &str, stream: &str) -> Option<usize> {
    let p = uri_path.trim_end_matches('/');
    match p.rsplit_once('/') {
        Some((_, last)) if last.starts_with("trackID=") => last["trackID=".len()..].parse().ok(),
        _ if p.trim_start_matches('/') == stream => Some(0),
        _ => None,
    }
}

/// Clock rates of static payload types (RFC 3551) that audio sections may use without rtpmap.
fn static_audio(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("PCMU", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        _ => None,
    }
}

fn sections(text: &str) -> Vec<Vec<&str>> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in text.lines().map(str::trim_end).take(MAX_LINES) {
        if line.starts_with("m=") {
            sections.push(vec![line]);
        } else if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    sections
}

/// One media section as a track, with the parameter sets it carries.
fn track(sec: &[&str], upstream: usize, param_sets: &mut Vec<u8>) -> Option<Track> {
    let mut f = sec.first()?.strip_prefix("m=")?.split_whitespace();
    let media = f.next()?.to_string();
    let payload_type: u8 = f.nth(2)?.parse().ok()?;
    let (mut encoding, mut clock_rate) = match static_audio(payload_type) {
        Some((e, c)) if media == "audio" => (Some(e.to_string()), c),
        _ => (None, 90_000),
    };
    let mut media_lines = Vec::new();
    for l in &sec[1..] {
        if let Some(v) = l.strip_prefix("a=rtpmap:") {
            let (pt, enc) = v.split_once(' ')?;
            if pt.trim().parse::<u8>().ok()? == payload_type {
                let mut e = enc.split('/');
                encoding = Some(e.next()?.trim().to_ascii_uppercase());
                clock_rate = e.next().and_then(|c| c.trim().parse().ok()).filter(|&c| c > 0).unwrap_or(clock_rate);
            }
        }
        if let Some(v) = l.strip_prefix("a=fmtp:") {
            for p in v.split_once(' ').map(|x| x.1).unwrap_or("").split(';') {
                let Some((k, val)) = p.trim().split_once('=') else { continue };
                if matches!(k.trim(), "sprop-parameter-sets" | "sprop-vps" | "sprop-sps" | "sprop-pps") {
                    for b in val.split(',').take(8) {
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
    Some(Track { media, payload_type, clock_rate, encoding: encoding?, media_lines, upstream })
}

/// The tracks of `sdp` we relay: the first H.264/H.265 video section, then every audio section
/// with a known encoding. Other media (ONVIF metadata, a second video) are left out: libavformat
/// would hold a viewer's start waiting for codec parameters of a stream it cannot decode.
pub fn parse(sdp: &[u8]) -> Option<Description> {
    let text = std::str::from_utf8(sdp).ok()?;
    let mut video = None;
    let mut audio = Vec::new();
    for (i, sec) in sections(text).iter().enumerate() {
        let mut ps = Vec::new();
        let Some(t) = track(sec, i, &mut ps) else { continue };
        if t.media_lines.iter().any(|l| l == "a=sendonly") {
            // The doorbell's speaker (an ONVIF backchannel): nothing to relay to viewers.
            continue;
        }
        if t.media == "video" && video.is_none() {
            let codec = match t.encoding.as_str() {
                "H264" => VideoCodec::H264,
                "H265" | "HEVC" => VideoCodec::H265,
                _ => continue,
            };
            video = Some((codec, t, ps));
        } else if t.media == "audio" && audio.len() + 1 < MAX_TRACKS {
            audio.push(t);
        }
    }
    let (codec, v, param_sets) = video?;
    let mut tracks = vec![v];
    tracks.extend(audio);
    Some(Description { codec, tracks, param_sets })
}

impl Description {
    /// This description with `nals` (NAL units without start codes) as the video's parameter
    /// sets: in `param_sets`, and in the `a=fmtp` line's `sprop-*` for viewers who DESCRIBE next.
    pub fn with_param_sets(&self, nals: &[&[u8]]) -> Description {
        let b64 = |n: &&[u8]| base64::engine::general_purpose::STANDARD.encode(n);
        let mut d = self.clone();
        d.param_sets.clear();
        for n in nals {
            d.param_sets.extend_from_slice(&[0, 0, 0, 1]);
            d.param_sets.extend_from_slice(n);
        }
        let sprop = match self.codec {
            VideoCodec::H264 => {
                vec![format!("sprop-parameter-sets={}", nals.iter().map(b64).collect::<Vec<_>>().join(","))]
            }
            VideoCodec::H265 => [(32, "vps"), (33, "sps"), (34, "pps")]
                .iter()
                .filter_map(|&(t, k)| {
                    let v: Vec<String> =
                        nals.iter().filter(|n| n.first().map(|b| (b >> 1) & 0x3f) == Some(t)).map(b64).collect();
                    (!v.is_empty()).then(|| format!("sprop-{k}={}", v.join(",")))
                })
                .collect(),
        };
        let v = &mut d.tracks[0];
        let prefix = format!("a=fmtp:{} ", v.payload_type);
        match v.media_lines.iter_mut().find(|l| l.starts_with(&prefix)) {
            Some(line) => {
                let kept = line[prefix.len()..]
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty() && !p.starts_with("sprop-"));
                let params: Vec<String> = kept.map(String::from).chain(sprop).collect();
                *line = format!("{prefix}{}", params.join("; "));
            }
            None => v.media_lines.push(format!("{prefix}{}", sprop.join("; "))),
        }
        d
    }

    /// The video track (always present).
    pub fn video(&self) -> &Track {
        &self.tracks[0]
    }

    /// The SDP a viewer gets for stream `name`.
    pub fn viewer_sdp(&self, name: &str, session_id: u64) -> String {
        let mut s = format!(
            "v=0\r\no=- {session_id} 1 IN IP4 0.0.0.0\r\ns=Doorbell Bridge {name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=control:*\r\na=range:npt=0-\r\n"
        );
        for (i, t) in self.tracks.iter().enumerate() {
            s.push_str(&format!("m={} 0 RTP/AVP {}\r\n", t.media, t.payload_type));
            for l in &t.media_lines {
                s.push_str(l);
                s.push_str("\r\n");
            }
            s.push_str(&format!("a=control:{}\r\n", track_control(i)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HIK: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=Media Presentation\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
        a=control:rtsp://192.0.2.10:554/Streaming/Channels/101/?transportmode=unicast\r\n\
        m=video 0 RTP/AVP 96\r\nb=AS:4096\r\na=control:rtsp://192.0.2.10:554/Streaming/Channels/101/trackID=1\r\n\
        a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=420029; packetization-mode=1; sprop-parameter-sets=Z01AKI2NQDwBE/LAPEiJqA==,aO44gA==\r\n\
        m=audio 0 RTP/AVP 0\r\na=control:rtsp://192.0.2.10:554/Streaming/Channels/101/trackID=2\r\n\
        m=application 0 RTP/AVP 107\r\na=rtpmap:107 isapi.metadata/90000\r\n\
        m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n";

    #[test]
    fn picks_video_and_audio_and_rewrites() {
        let d = parse(HIK.as_bytes()).unwrap();
        assert_eq!(d.codec, VideoCodec::H264);
        assert_eq!(d.tracks.len(), 2, "metadata and the backchannel are not relayed");
        assert_eq!(d.video().payload_type, 96);
        assert_eq!((d.tracks[1].encoding.as_str(), d.tracks[1].clock_rate, d.tracks[1].upstream), ("PCMU", 8000, 1));
        assert_eq!(&d.param_sets[..5], &[0, 0, 0, 1, 0x67]);
        let sdp = d.viewer_sdp("main", 7);
        assert!(sdp.contains("a=rtpmap:96 H264/90000"));
        assert!(sdp.contains("a=control:trackID=0\r\nm=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\n"), "{sdp}");
        assert!(!sdp.contains("192.0.2.10"), "{sdp}");
        assert!(!sdp.contains("isapi"), "{sdp}");
        assert!(parse(b"garbage").is_none());
        assert!(parse(b"m=audio 0 RTP/AVP 0\r\n").is_none(), "no video, nothing to relay");
    }

    #[test]
    fn aac_keeps_its_fmtp() {
        let sdp = "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio 0 RTP/AVP 97\r\n\
                   a=rtpmap:97 MPEG4-GENERIC/16000/1\r\na=fmtp:97 streamtype=5;mode=AAC-hbr;config=1408;sizelength=13\r\n";
        let d = parse(sdp.as_bytes()).unwrap();
        let a = &d.tracks[1];
        assert_eq!((a.encoding.as_str(), a.clock_rate, a.payload_type), ("MPEG4-GENERIC", 16000, 97));
        assert!(d.viewer_sdp("main", 1).contains("a=fmtp:97 streamtype=5;mode=AAC-hbr;config=1408;sizelength=13\r\n"));
    }

    #[test]
    fn new_parameter_sets_replace_the_sprop() {
        let d = parse(HIK.as_bytes()).unwrap().with_param_sets(&[&[0x67, 1, 2, 3], &[0x68, 4]]);
        assert_eq!(d.param_sets, vec![0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 4]);
        let sdp = d.viewer_sdp("main", 1);
        assert!(
            sdp.contains(
                "a=fmtp:96 profile-level-id=420029; packetization-mode=1; sprop-parameter-sets=ZwECAw==,aAQ=\r\n"
            ),
            "{sdp}"
        );
        assert!(!sdp.contains("Z01AKI2N"), "{sdp}");
    }

    #[test]
    fn track_urls() {
        assert_eq!(track_of("/main/trackID=1", "main"), Some(1));
        assert_eq!(track_of("/main/trackID=0/", "main"), Some(0));
        assert_eq!(track_of("/main", "main"), Some(0));
        assert_eq!(track_of("/main/trackID=x", "main"), None);
        assert_eq!(track_of("/main/audio", "main"), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_bounded(lines in proptest::collection::vec("(m=|a=rtpmap:|a=fmtp:)?[ -~]{0,40}", 0..60)) {
            let text = lines.join("\r\n");
            if let Some(d) = parse(text.as_bytes()) {
                prop_assert!(!d.tracks.is_empty() && d.tracks.len() <= MAX_TRACKS);
                prop_assert_eq!(d.tracks[0].media.as_str(), "video");
                let _ = d.viewer_sdp("x", 1);
            }
        }
    }
}
