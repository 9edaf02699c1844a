//! Whether the doorbell's ONVIF media service lists an audio output: Media1
//! `GetAudioOutputConfigurations`. The talk probe folds this answer into its verdict next to the
//! DESCRIBE with the backchannel `Require` header.
//!
//! `parse_audio_output_configurations` is pure and never panics; `ask` is the one request.

use super::device::{CallError, Device, CALL_TIMEOUT};
use super::xml::{self, Element, NS_TRT, NS_TT};

pub const ACTION_GET_AUDIO_OUTPUT_CONFIGURATIONS: &str =
    "http://www.onvif.org/ver10/media/wsdl/GetAudioOutputConfigurations";
/// At most this many configurations are kept: a broken device must not fill the status.
pub const MAX_OUTPUTS: usize = 8;
/// Longest token or primacy kept.
pub const MAX_FIELD_CHARS: usize = 128;
/// Hikvision DS-HD1 / EZVIZ DB1 (firmware V5.2.x): the one output is half duplex, which is all a
/// one-way message needs.
pub const HALF_DUPLEX: &str = "www.onvif.org/ver20/HalfDuplex";

/// One `AudioOutputConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudioOutput {
    pub token: String,
    pub output_token: String,
    /// `www.onvif.org/ver20/HalfDuplex/Server`, `.../Client`, `.../Auto` or `FullDuplex`.
    pub send_primacy: Option<String>,
}

impl AudioOutput {
    pub fn half_duplex(&self) -> bool {
        self.send_primacy.as_deref().is_some_and(|p| p.starts_with(HALF_DUPLEX))
    }
}

pub fn body_get_audio_output_configurations() -> String {
    r#"<GetAudioOutputConfigurations xmlns="http://www.onvif.org/ver10/media/wsdl"/>"#.into()
}

/// Reads a `GetAudioOutputConfigurationsResponse` (an empty one means no audio output);
/// `None` when the body is another element.
pub fn parse_audio_output_configurations(env: &Element) -> Option<Vec<AudioOutput>> {
    let b = xml::body(env).filter(|b| b.ns == NS_TRT && b.name == "GetAudioOutputConfigurationsResponse")?;
    let text = |e: Option<&Element>| {
        e.map(|e| e.text_trim().chars().filter(|c| !c.is_control()).take(MAX_FIELD_CHARS).collect::<String>())
            .filter(|s| !s.is_empty())
    };
    Some(
        b.children_named(NS_TRT, "Configurations")
            .take(MAX_OUTPUTS)
            .map(|c| AudioOutput {
                token: c.attr("token").unwrap_or("").chars().take(MAX_FIELD_CHARS).collect(),
                output_token: text(c.child(NS_TT, "OutputToken")).unwrap_or_default(),
                send_primacy: text(c.child(NS_TT, "SendPrimacy")),
            })
            .collect(),
    )
}

/// Asks the media service (its address from GetCapabilities, signed with WS-Security on the
/// doorbell's clock).
pub async fn ask(device: &Device) -> Result<Vec<AudioOutput>, CallError> {
    let media = device.services().await?.media.ok_or(CallError::Unexpected("no media service"))?;
    let env = device
        .call(ACTION_GET_AUDIO_OUTPUT_CONFIGURATIONS, &media, "", &body_get_audio_output_configurations(), CALL_TIMEOUT)
        .await?;
    parse_audio_output_configurations(&env).ok_or(CallError::Unexpected("no GetAudioOutputConfigurationsResponse"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(inner: &str) -> Element {
        let s = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:trt="http://www.onvif.org/ver10/media/wsdl"><env:Body>{inner}</env:Body></env:Envelope>"#
        );
        xml::parse(s.as_bytes()).unwrap()
    }

    /// As a Hikvision DS-HD1 answers (whitespace and field order as it sends them).
    const HIKVISION: &str = "<trt:GetAudioOutputConfigurationsResponse>\n<trt:Configurations token=\"AudioOutputConfigToken\">\n<tt:Name>AudioOutputConfig</tt:Name>\n<tt:UseCount>2</tt:UseCount>\n<tt:OutputToken>AudioOutputToken</tt:OutputToken>\n<tt:SendPrimacy>www.onvif.org/ver20/HalfDuplex/Auto</tt:SendPrimacy>\n<tt:OutputLevel>10</tt:OutputLevel>\n</trt:Configurations>\n</trt:GetAudioOutputConfigurationsResponse>";

    #[test]
    fn reads_a_hikvision_half_duplex_output() {
        let outs = parse_audio_output_configurations(&reply(HIKVISION)).unwrap();
        assert_eq!(
            outs,
            vec![AudioOutput {
                token: "AudioOutputConfigToken".into(),
                output_token: "AudioOutputToken".into(),
                send_primacy: Some("www.onvif.org/ver20/HalfDuplex/Auto".into()),
            }]
        );
        assert!(outs[0].half_duplex());
    }

    #[test]
    fn an_empty_answer_is_no_output_and_another_body_is_none() {
        let outs = parse_audio_output_configurations(&reply("<trt:GetAudioOutputConfigurationsResponse/>")).unwrap();
        assert!(outs.is_empty());
        assert_eq!(parse_audio_output_configurations(&reply("<trt:GetProfilesResponse/>")), None);
        // Full duplex, no primacy: still an output, not half duplex.
        let outs = parse_audio_output_configurations(&reply(
            "<trt:GetAudioOutputConfigurationsResponse><trt:Configurations token=\"a\"><tt:OutputToken>o</tt:OutputToken></trt:Configurations></trt:GetAudioOutputConfigurationsResponse>",
        ))
        .unwrap();
        assert_eq!(outs.len(), 1);
        assert!(!outs[0].half_duplex());
    }

    #[test]
    fn many_or_long_configurations_are_cut() {
        let long = "x".repeat(5_000);
        let one = format!(
            "<trt:Configurations token=\"{long}\"><tt:OutputToken>{long}</tt:OutputToken></trt:Configurations>"
        );
        let env = reply(&format!(
            "<trt:GetAudioOutputConfigurationsResponse>{}</trt:GetAudioOutputConfigurationsResponse>",
            one.repeat(50)
        ));
        let outs = parse_audio_output_configurations(&env).unwrap();
        assert_eq!(outs.len(), MAX_OUTPUTS);
        assert_eq!(outs[0].token.len(), MAX_FIELD_CHARS);
        assert_eq!(outs[0].output_token.len(), MAX_FIELD_CHARS);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(inner in "(<trt:Configurations( token=\"[a-z]{0,4}\")?>|</trt:Configurations>|<tt:SendPrimacy>|</tt:SendPrimacy>|<tt:OutputToken>[^<]{0,6}</tt:OutputToken>|[a-zA-Z/.&;<> ]{0,10}){0,12}") {
            let s = format!(
                r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:trt="http://www.onvif.org/ver10/media/wsdl"><env:Body><trt:GetAudioOutputConfigurationsResponse>{inner}</trt:GetAudioOutputConfigurationsResponse></env:Body></env:Envelope>"#
            );
            if let Ok(env) = xml::parse(s.as_bytes()) {
                let outs = parse_audio_output_configurations(&env);
                proptest::prop_assert!(outs.is_some_and(|o| o.len() <= MAX_OUTPUTS));
            }
        }
    }
}
