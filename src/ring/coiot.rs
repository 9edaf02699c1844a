//! CoIoT (Shelly Gen1): CoAP over UDP. Pure parsing and encoding over bytes; no I/O here.
//!
//! Strict where the RFC is strict (RFC 7252 §3: version 1 only, reserved option nibble 15,
//! payload marker with an empty payload), size-capped, never panics.

pub use crate::shelly_id::{DeviceMatch, Identity};
use serde_json::Value;

/// Larger datagrams are dropped before parsing. A Uni's descriptor (`/cit/d`) is ~1.2 KB.
pub const MAX_DATAGRAM: usize = 4096;
/// Most readings taken from one status payload.
pub const MAX_READINGS: usize = 256;

pub const OPT_URI_PATH: u32 = 11;
pub const OPT_DEVICE_ID: u32 = 3332;
pub const OPT_VALIDITY: u32 = 3412;
pub const OPT_SERIAL: u32 = 3420;

/// CoIoT status publish: code 0.30.
pub const CODE_STATUS: u8 = 30;
/// Reply to a GET: 2.05 Content.
pub const CODE_CONTENT: u8 = 69;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoiotError {
    TooLarge,
    TooShort,
    BadVersion(u8),
    BadTokenLength,
    NotStatus(u8),
    TruncatedOption,
    ReservedOption,
    EmptyPayloadAfterMarker,
    NoPayload,
    MissingDeviceId,
    BadOptionLength(u32),
    BadJson,
    BadShape,
}

impl std::fmt::Display for CoiotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            CoiotError::TooLarge => "datagram too large",
            CoiotError::TooShort => "shorter than a CoAP header",
            CoiotError::BadVersion(_) => "CoAP version is not 1",
            CoiotError::BadTokenLength => "token length over 8",
            CoiotError::NotStatus(_) => "not a status message (code 0.30 or 2.05)",
            CoiotError::TruncatedOption => "option cut short",
            CoiotError::ReservedOption => "reserved option nibble 15",
            CoiotError::EmptyPayloadAfterMarker => "payload marker without payload",
            CoiotError::NoPayload => "no payload",
            CoiotError::MissingDeviceId => "no device id option (3332)",
            CoiotError::BadOptionLength(_) => "option with a wrong length",
            CoiotError::BadJson => "payload is not valid JSON",
            CoiotError::BadShape => "payload is not {\"G\": [[channel, sensor, value], ...]}",
        };
        f.write_str(s)
    }
}

impl std::error::Error for CoiotError {}

/// A parsed CoIoT message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    pub code: u8,
    pub message_id: u16,
    pub uri_path: Vec<&'a [u8]>,
    /// `MODEL#DEVICEID#VERSION`, e.g. `SHUNI-1#C45BBE6B9A12#2`.
    pub device_id: &'a str,
    /// Seconds the status stays valid.
    pub validity_secs: Option<f64>,
    pub serial: Option<u16>,
    pub payload: &'a [u8],
}

/// Parses the CoAP frame and the CoIoT options. The JSON payload is left as bytes.
pub fn parse(buf: &[u8]) -> Result<Message<'_>, CoiotError> {
    if buf.len() > MAX_DATAGRAM {
        return Err(CoiotError::TooLarge);
    }
    if buf.len() < 4 {
        return Err(CoiotError::TooShort);
    }
    let version = buf[0] >> 6;
    if version != 1 {
        return Err(CoiotError::BadVersion(version));
    }
    let tkl = (buf[0] & 0x0f) as usize;
    if tkl > 8 {
        return Err(CoiotError::BadTokenLength);
    }
    let code = buf[1];
    if code != CODE_STATUS && code != CODE_CONTENT {
        return Err(CoiotError::NotStatus(code));
    }
    let message_id = u16::from_be_bytes([buf[2], buf[3]]);
    let mut pos = 4 + tkl;
    if pos > buf.len() {
        return Err(CoiotError::TruncatedOption);
    }
    let mut number: u32 = 0;
    let mut uri_path = Vec::new();
    let mut device_id = None;
    let mut validity_secs = None;
    let mut serial = None;
    let mut payload: Option<&[u8]> = None;
    while pos < buf.len() {
        let b = buf[pos];
        pos += 1;
        if b == 0xff {
            if pos == buf.len() {
                return Err(CoiotError::EmptyPayloadAfterMarker);
            }
            payload = Some(&buf[pos..]);
            break;
        }
        let delta = ext(b >> 4, buf, &mut pos)?;
        let len = ext(b & 0x0f, buf, &mut pos)? as usize;
        number = number.checked_add(delta).ok_or(CoiotError::TruncatedOption)?;
        let end = pos.checked_add(len).ok_or(CoiotError::TruncatedOption)?;
        if end > buf.len() {
            return Err(CoiotError::TruncatedOption);
        }
        let value = &buf[pos..end];
        pos = end;
        match number {
            OPT_URI_PATH if uri_path.len() < 8 => uri_path.push(value),
            OPT_DEVICE_ID => {
                device_id = Some(std::str::from_utf8(value).map_err(|_| CoiotError::MissingDeviceId)?);
            }
            OPT_VALIDITY => {
                if value.len() != 2 {
                    return Err(CoiotError::BadOptionLength(number));
                }
                let v = u16::from_be_bytes([value[0], value[1]]);
                // Low bit 0: units of 0.1 s; 1: units of 4 s.
                validity_secs = Some(if v & 1 == 0 { v as f64 / 10.0 } else { v as f64 * 4.0 });
            }
            OPT_SERIAL => {
                if value.len() != 2 {
                    return Err(CoiotError::BadOptionLength(number));
                }
                serial = Some(u16::from_be_bytes([value[0], value[1]]));
            }
            _ => {}
        }
    }
    let payload = payload.ok_or(CoiotError::NoPayload)?;
    let device_id = device_id.ok_or(CoiotError::MissingDeviceId)?;
    Ok(Message { code, message_id, uri_path, device_id, validity_secs, serial, payload })
}

fn ext(nibble: u8, buf: &[u8], pos: &mut usize) -> Result<u32, CoiotError> {
    match nibble {
        13 => {
            let v = *buf.get(*pos).ok_or(CoiotError::TruncatedOption)? as u32 + 13;
            *pos += 1;
            Ok(v)
        }
        14 => {
            if *pos + 2 > buf.len() {
                return Err(CoiotError::TruncatedOption);
            }
            let v = u16::from_be_bytes([buf[*pos], buf[*pos + 1]]) as u32 + 269;
            *pos += 2;
            Ok(v)
        }
        15 => Err(CoiotError::ReservedOption),
        n => Ok(n as u32),
    }
}

/// One reading of a status payload: `[channel, sensor id, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub channel: i64,
    pub sensor: u32,
    pub value: Value,
}

/// Parses `{"G":[[ch, sensor, value], ...]}`, capped at [`MAX_READINGS`].
pub fn parse_status(payload: &[u8]) -> Result<Vec<Reading>, CoiotError> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| CoiotError::BadJson)?;
    let g = v.get("G").and_then(Value::as_array).ok_or(CoiotError::BadShape)?;
    let mut out = Vec::with_capacity(g.len().min(MAX_READINGS));
    for item in g.iter().take(MAX_READINGS) {
        let a = item.as_array().ok_or(CoiotError::BadShape)?;
        if a.len() != 3 {
            return Err(CoiotError::BadShape);
        }
        let channel = a[0].as_i64().ok_or(CoiotError::BadShape)?;
        let sensor = a[1].as_u64().and_then(|s| u32::try_from(s).ok()).ok_or(CoiotError::BadShape)?;
        out.push(Reading { channel, sensor, value: a[2].clone() });
    }
    Ok(out)
}

/// What a Uni reports about one input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputStatus {
    /// Level of the input (sensor x101).
    pub level: Option<bool>,
    /// Last input event: `S`, `L`, or empty after boot (x102).
    pub event: Option<String>,
    /// Event counter (x103).
    pub event_cnt: Option<u64>,
}

/// Sensor ids of input `n` (1 or 2) on a Uni, CoIoT v2: 2101/2102/2103 and 2201/2202/2203.
pub fn input_status(readings: &[Reading], input: u8) -> InputStatus {
    let base = 2001 + 100 * input as u32;
    let mut s = InputStatus::default();
    for r in readings {
        if r.sensor == base {
            s.level = r.value.as_i64().map(|v| v != 0).or_else(|| r.value.as_bool());
        } else if r.sensor == base + 1 {
            s.event = r.value.as_str().map(str::to_string);
        } else if r.sensor == base + 2 {
            s.event_cnt = r.value.as_u64();
        }
    }
    s
}

/// The status as a detector observation: level, counter and kind of input `input`, serial, validity.
pub fn observation(msg: &Message<'_>, readings: &[Reading], input: u8) -> super::detector::Observation {
    use super::detector::{Observation, Source};
    let st = input_status(readings, input);
    Observation {
        serial: msg.serial,
        validity_ms: msg.validity_secs.map(|s| (s * 1000.0) as u64),
        level: st.level,
        counter: st.event_cnt.map(|c| (c, st.event.unwrap_or_default())),
        ..Observation::new(Source::Coiot)
    }
}

/// One sensor of a descriptor (`/cit/d`): id, description (`input`, `inputEvent`...), block link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorDesc {
    pub id: u32,
    pub desc: String,
    pub link: i64,
}

/// Most sensors taken from a descriptor.
pub const MAX_SENSORS: usize = 256;

/// Parses a descriptor `{"blk":[...],"sen":[{"I":2101,"D":"input","L":1,...}, ...]}`.
pub fn parse_descriptor(payload: &[u8]) -> Result<Vec<SensorDesc>, CoiotError> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| CoiotError::BadJson)?;
    if !v.get("blk").is_some_and(Value::is_array) {
        return Err(CoiotError::BadShape);
    }
    let sen = v.get("sen").and_then(Value::as_array).ok_or(CoiotError::BadShape)?;
    let mut out = Vec::with_capacity(sen.len().min(MAX_SENSORS));
    for s in sen.iter().take(MAX_SENSORS) {
        let id = s.get("I").and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()).ok_or(CoiotError::BadShape)?;
        let desc = s.get("D").and_then(Value::as_str).ok_or(CoiotError::BadShape)?.to_string();
        let link = s.get("L").and_then(Value::as_i64).ok_or(CoiotError::BadShape)?;
        out.push(SensorDesc { id, desc, link });
    }
    Ok(out)
}

/// Sensor ids (level, event, counter) of input `input` (1-based block link) in a descriptor.
pub fn input_sensors(desc: &[SensorDesc], input: u8) -> Option<(u32, u32, u32)> {
    let find = |d: &str| desc.iter().find(|s| s.desc == d && s.link == input as i64).map(|s| s.id);
    Some((find("input")?, find("inputEvent")?, find("inputEventCnt")?))
}

/// Encodes a CoIoT status publish like a Uni's (used by the simulated doorbell and tests).
pub fn encode_status(message_id: u16, device_id: &str, validity_decis: u16, serial: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + payload.len());
    out.extend_from_slice(&[0x50, CODE_STATUS]);
    out.extend_from_slice(&message_id.to_be_bytes());
    let mut last = 0u32;
    let mut opt = |out: &mut Vec<u8>, number: u32, value: &[u8]| {
        let delta = number - last;
        last = number;
        let (dn, dext) = nibble(delta);
        let (ln, lext) = nibble(value.len() as u32);
        out.push((dn << 4) | ln);
        out.extend_from_slice(&dext);
        out.extend_from_slice(&lext);
        out.extend_from_slice(value);
    };
    opt(&mut out, OPT_URI_PATH, b"cit");
    opt(&mut out, OPT_URI_PATH, b"s");
    opt(&mut out, OPT_DEVICE_ID, device_id.as_bytes());
    opt(&mut out, OPT_VALIDITY, &(validity_decis & !1).to_be_bytes());
    opt(&mut out, OPT_SERIAL, &serial.to_be_bytes());
    out.push(0xff);
    out.extend_from_slice(payload);
    out
}

fn nibble(v: u32) -> (u8, Vec<u8>) {
    if v < 13 {
        (v as u8, vec![])
    } else if v < 269 {
        (13, vec![(v - 13) as u8])
    } else {
        (14, ((v - 269) as u16).to_be_bytes().to_vec())
    }
}

/// The payload a Uni sends, with IN_1 at `level`, its last event and counter.
pub fn uni_payload(level: bool, event: &str, cnt: u64) -> String {
    format!(
        "{{\"G\":[[0,9103,0],[0,1101,0],[0,1201,0],[0,2101,{}],[0,2102,\"{}\"],[0,2103,{}],[0,2201,0],[0,2202,\"\"],[0,2203,0],[0,3118,12.09]]}}",
        level as u8, event, cnt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_encoded_status() {
        let p = uni_payload(true, "S", 41);
        let b = encode_status(0x1a2c, "SHUNI-1#C45BBE6B9A12#2", 380, 257, p.as_bytes());
        let m = parse(&b).unwrap();
        assert_eq!(m.device_id, "SHUNI-1#C45BBE6B9A12#2");
        assert_eq!(m.serial, Some(257));
        assert_eq!(m.validity_secs, Some(38.0));
        assert_eq!(m.uri_path, vec![&b"cit"[..], &b"s"[..]]);
        let st = input_status(&parse_status(m.payload).unwrap(), 1);
        assert_eq!(st, InputStatus { level: Some(true), event: Some("S".into()), event_cnt: Some(41) });
    }

    #[test]
    fn rejects_garbage_without_panic() {
        for len in 0..64 {
            let b: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse(&b);
        }
        assert_eq!(parse(&[0x50, 30, 0, 1, 0xff]), Err(CoiotError::EmptyPayloadAfterMarker));
        assert_eq!(parse(&[0x90, 30, 0, 1]).unwrap_err(), CoiotError::BadVersion(2));
    }
}
