//! What the doorbell's ONVIF media service says about its audio output, and how that is folded
//! into the talk verdict, pure. The DESCRIBE with the backchannel `Require` header decides the
//! state (it is the path a message takes); ONVIF's answer confirms it or explains it in the reason.

use super::TalkState;
use crate::onvif::audio_output::AudioOutput;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnvifAnswer {
    /// ONVIF is switched off in the configuration: not asked.
    Off,
    /// Not asked yet.
    Pending,
    /// The media service's audio output configurations (empty: none).
    Outputs(Vec<AudioOutput>),
    /// Unreachable, a fault, or an answer that could not be read.
    CouldNotTell(String),
}

impl OnvifAnswer {
    /// `onvif_audio_output` in `/api/status`: `null` unless ONVIF answered.
    pub fn audio_output(&self) -> Option<bool> {
        match self {
            OnvifAnswer::Outputs(o) => Some(!o.is_empty()),
            _ => None,
        }
    }

    /// What ONVIF said, for a reason; `None` when it was not asked.
    fn said(&self) -> Option<String> {
        match self {
            OnvifAnswer::Off | OnvifAnswer::Pending => None,
            OnvifAnswer::Outputs(o) if o.is_empty() => Some("ONVIF lists no audio output".into()),
            OnvifAnswer::Outputs(o) => {
                let duplex = if o.iter().any(AudioOutput::half_duplex) { " (half duplex)" } else { "" };
                Some(format!("ONVIF lists an audio output{duplex}"))
            }
            OnvifAnswer::CouldNotTell(why) => {
                Some(format!("ONVIF could not tell whether there is an audio output: {why}"))
            }
        }
    }
}

/// The `reason` of `/api/status` `talk`: the DESCRIBE's reason with what ONVIF said after it.
/// `None` when both say yes (or ONVIF was not asked and the DESCRIBE says yes).
pub fn reason(state: &TalkState, onvif: &OnvifAnswer) -> Option<String> {
    let said = onvif.said();
    match state {
        TalkState::Supported(_) if onvif.audio_output() == Some(true) => None,
        TalkState::Supported(_) => said.map(|s| format!("the doorbell offers a backchannel; {s}")),
        TalkState::Unsupported(why) | TalkState::Unknown(why) => Some(match said {
            Some(s) => format!("{why}; {s}"),
            None => why.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talk::g711::Law;
    use crate::talk::probe::Offer;

    fn supported() -> TalkState {
        TalkState::Supported(Offer { control: "rtsp://x/track".into(), law: Law::Mu, payload_type: 0 })
    }

    fn hik_output() -> AudioOutput {
        AudioOutput {
            token: "AudioOutputConfigToken".into(),
            output_token: "AudioOutputToken".into(),
            send_primacy: Some("www.onvif.org/ver20/HalfDuplex/Auto".into()),
        }
    }

    #[test]
    fn both_yes_is_supported_without_a_reason() {
        let onvif = OnvifAnswer::Outputs(vec![hik_output()]);
        assert_eq!(onvif.audio_output(), Some(true));
        assert_eq!(reason(&supported(), &onvif), None);
        assert_eq!(reason(&supported(), &OnvifAnswer::Off), None);
        assert_eq!(reason(&supported(), &OnvifAnswer::Pending), None);
    }

    #[test]
    fn no_backchannel_names_it_and_what_onvif_said() {
        let why = TalkState::Unsupported("the doorbell offers no audio backchannel".into());
        let r = reason(&why, &OnvifAnswer::Outputs(vec![])).unwrap();
        assert_eq!(r, "the doorbell offers no audio backchannel; ONVIF lists no audio output");
        let r = reason(&why, &OnvifAnswer::Outputs(vec![hik_output()])).unwrap();
        assert!(r.ends_with("ONVIF lists an audio output (half duplex)"), "{r}");
        assert_eq!(reason(&why, &OnvifAnswer::Off).unwrap(), "the doorbell offers no audio backchannel");
    }

    #[test]
    fn an_onvif_failure_keeps_the_describe_verdict_and_says_so() {
        let onvif = OnvifAnswer::CouldNotTell("no answer: timed out".into());
        assert_eq!(onvif.audio_output(), None);
        let r = reason(&supported(), &onvif).unwrap();
        assert!(r.starts_with("the doorbell offers a backchannel; ONVIF could not tell"), "{r}");
        let r = reason(&TalkState::Unknown("no answer".into()), &onvif).unwrap();
        assert!(r.starts_with("no answer; ONVIF could not tell") && r.ends_with("timed out"), "{r}");
        // Disagreement: the DESCRIBE decides, the reason says ONVIF lists nothing.
        let r = reason(&supported(), &OnvifAnswer::Outputs(vec![])).unwrap();
        assert!(r.contains("ONVIF lists no audio output"), "{r}");
    }
}
