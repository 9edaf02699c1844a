//! What the doorbell offers for talking, pure: the backchannel track in an SDP answered to a
//! DESCRIBE with `Require: www.onvif.org/ver20/backchannel` (ONVIF Streaming Spec 5.3).

use super::g711::Law;

/// The RTSP feature tag an ONVIF device needs to add its backchannel track to the SDP.
pub const REQUIRE_BACKCHANNEL: &str = "www.onvif.org/ver20/backchannel";

/// The doorbell's backchannel: where to SETUP it and which law it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub control: String,
    pub law: Law,
    pub payload_type: u8,
}

/// Why the doorbell cannot be talked through, or that it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Supported(Offer),
    Unsupported(String),
}

/// Joins a media `a=control` value with the session's base URL.
pub fn resolve_control(base: &str, control: &str) -> String {
    if control.starts_with("rtsp://") || control.starts_with("rtsps://") {
        return control.to_string();
    }
    if control == "*" || control.is_empty() {
        return base.to_string();
    }
    format!("{}/{}", base.trim_end_matches('/'), control.trim_start_matches('/'))
}

/// Finds an audio media section marked `sendonly` (the device receives, the client sends) whose
/// formats include PCMU or PCMA at 8 kHz. Bounded by the SDP's own size; never panics.
pub fn find_backchannel(sdp: &str, base: &str) -> Verdict {
    struct Media {
        audio: bool,
        sendonly: bool,
        control: Option<String>,
        formats: Vec<u8>,
        rtpmap: Vec<(u8, String)>,
    }
    let mut medias: Vec<Media> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or("");
            let formats = parts.skip(2).filter_map(|f| f.parse().ok()).collect();
            medias.push(Media { audio: kind == "audio", sendonly: false, control: None, formats, rtpmap: vec![] });
            continue;
        }
        let Some(cur) = medias.last_mut() else { continue };
        if line == "a=sendonly" {
            cur.sendonly = true;
        } else if let Some(c) = line.strip_prefix("a=control:") {
            cur.control = Some(c.trim().to_string());
        } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
            let mut it = r.splitn(2, ' ');
            if let (Some(Ok(pt)), Some(enc)) = (it.next().map(str::parse::<u8>), it.next()) {
                cur.rtpmap.push((pt, enc.trim().to_ascii_uppercase()));
            }
        }
    }
    let Some(m) = medias.iter().find(|m| m.audio && m.sendonly) else {
        return Verdict::Unsupported(
            "the doorbell's stream description has no backchannel (sendonly audio) track".into(),
        );
    };
    for &pt in &m.formats {
        let name = m.rtpmap.iter().find(|(p, _)| *p == pt).map(|(_, e)| e.as_str());
        let law = match name {
            Some(e) if e.starts_with("PCMU/8000") => Some(Law::Mu),
            Some(e) if e.starts_with("PCMA/8000") => Some(Law::A),
            Some(_) => None,
            None => Law::from_payload_type(pt),
        };
        if let Some(law) = law {
            let control = resolve_control(base, m.control.as_deref().unwrap_or(""));
            return Verdict::Supported(Offer { control, law, payload_type: pt });
        }
    }
    Verdict::Unsupported("the doorbell's backchannel takes no G.711 (PCMU/PCMA 8 kHz) audio".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "rtsp://10.0.0.5:554/Streaming/Channels/101/";

    #[test]
    fn hikvision_style_backchannel() {
        let sdp = "v=0\r\nm=video 0 RTP/AVP 96\r\na=recvonly\r\na=control:trackID=1\r\n\
                   m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:trackID=4\r\na=sendonly\r\n";
        let want = Offer { control: format!("{BASE}trackID=4"), law: Law::Mu, payload_type: 0 };
        assert_eq!(find_backchannel(sdp, BASE), Verdict::Supported(want));
        let pcma = sdp.replace("RTP/AVP 0", "RTP/AVP 8").replace("0 PCMU", "8 PCMA");
        assert!(matches!(find_backchannel(&pcma, BASE), Verdict::Supported(Offer { law: Law::A, .. })));
    }

    #[test]
    fn no_backchannel_or_wrong_codec() {
        let recv = "m=audio 0 RTP/AVP 0\r\na=recvonly\r\na=control:trackID=2\r\n";
        assert!(matches!(find_backchannel(recv, BASE), Verdict::Unsupported(_)));
        let aac = "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000\r\na=sendonly\r\n";
        assert!(matches!(find_backchannel(aac, BASE), Verdict::Unsupported(_)));
        assert!(matches!(find_backchannel("", BASE), Verdict::Unsupported(_)));
    }

    #[test]
    fn control_urls() {
        assert_eq!(resolve_control(BASE, "rtsp://x/y"), "rtsp://x/y");
        assert_eq!(resolve_control("rtsp://h/a", "trackID=4"), "rtsp://h/a/trackID=4");
        assert_eq!(resolve_control("rtsp://h/a/", "*"), "rtsp://h/a/");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(m=audio [0-9 ]{0,12} RTP/AVP [0-9 ]{0,8}|a=sendonly|a=rtpmap:[0-9]{0,4} [A-Z/0-9]{0,12}|a=control:.{0,10}|.{0,20})(\r\n(m=audio 0 RTP/AVP 0|a=sendonly|a=rtpmap:.{0,12}|.{0,12})){0,8}") {
            let _ = find_backchannel(&s, BASE);
        }
    }
}
