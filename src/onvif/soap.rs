//! SOAP 1.2 for the ONVIF subset the bridge speaks: request envelopes with WS-Addressing and
//! WS-Security UsernameToken (PasswordDigest on the device's clock), and the replies and faults
//! read back, all pure functions over strings and bytes with time passed in.

use base64::Engine;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sha1::{Digest, Sha1};

use super::xml::{self, Element, XmlError, NS_SOAP, NS_TDS, NS_TER, NS_TEV, NS_TRT, NS_TT, NS_WSA, NS_WSNT, NS_WSRF_R};

pub const ACTION_GET_SYSTEM_DATE_AND_TIME: &str = "http://www.onvif.org/ver10/device/wsdl/GetSystemDateAndTime";
pub const ACTION_GET_CAPABILITIES: &str = "http://www.onvif.org/ver10/device/wsdl/GetCapabilities";
pub const ACTION_GET_SERVICES: &str = "http://www.onvif.org/ver10/device/wsdl/GetServices";
pub const ACTION_SYSTEM_REBOOT: &str = "http://www.onvif.org/ver10/device/wsdl/SystemReboot";
pub const ACTION_GET_DEVICE_INFORMATION: &str = "http://www.onvif.org/ver10/device/wsdl/GetDeviceInformation";
pub const ACTION_GET_PROFILES: &str = "http://www.onvif.org/ver10/media/wsdl/GetProfiles";
pub const ACTION_GET_STREAM_URI: &str = "http://www.onvif.org/ver10/media/wsdl/GetStreamUri";
pub const ACTION_GET_SNAPSHOT_URI: &str = "http://www.onvif.org/ver10/media/wsdl/GetSnapshotUri";
pub const ACTION_CREATE_PULLPOINT: &str =
    "http://www.onvif.org/ver10/events/wsdl/EventPortType/CreatePullPointSubscriptionRequest";
pub const ACTION_PULL_MESSAGES: &str =
    "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription/PullMessagesRequest";
pub const ACTION_RENEW: &str = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewRequest";
pub const ACTION_UNSUBSCRIBE: &str = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeRequest";

/// `Base64(SHA1(nonce || created || password))`, the UsernameToken PasswordDigest.
/// `created` must be byte-identical to the `wsu:Created` sent.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(created.as_bytes());
    h.update(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// The time as ONVIF devices write it (`2024-03-01T10:00:07Z`).
pub fn onvif_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// The device's clock relative to ours, in milliseconds (device = host + offset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockOffset(pub i64);

impl ClockOffset {
    pub fn measure(device_utc: DateTime<Utc>, host_utc: DateTime<Utc>) -> Self {
        ClockOffset((device_utc - host_utc).num_milliseconds())
    }
    pub fn device_now(self, host_now: DateTime<Utc>) -> DateTime<Utc> {
        host_now + chrono::Duration::milliseconds(self.0)
    }
}

/// What goes into a `wsse:UsernameToken`; the password itself never leaves this struct's builder.
pub struct UsernameToken {
    pub username: String,
    pub nonce: [u8; 16],
    pub created: String,
    pub digest: String,
}

impl UsernameToken {
    pub fn new(username: &str, password: &str, nonce: [u8; 16], device_now: DateTime<Utc>) -> Self {
        let created = onvif_time(device_now);
        let digest = password_digest(&nonce, &created, password);
        UsernameToken { username: username.to_string(), nonce, created, digest }
    }
}

impl std::fmt::Debug for UsernameToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsernameToken").field("username", &self.username).field("created", &self.created).finish()
    }
}

pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A whole request. `reference_parameters` is the raw XML of the subscription reference's
/// `ReferenceParameters` children, copied into the header as WS-Addressing asks.
pub fn envelope(
    action: &str,
    to: &str,
    message_id: &str,
    token: Option<&UsernameToken>,
    reference_parameters: &str,
    body: &str,
) -> String {
    let mut s = String::with_capacity(1024 + body.len());
    s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    s.push_str(r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing"><s:Header>"#);
    s.push_str(&format!(
        r#"<wsa:Action s:mustUnderstand="1">{}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID><wsa:To s:mustUnderstand="1">{}</wsa:To>"#,
        escape(action),
        escape(message_id),
        escape(to)
    ));
    s.push_str(reference_parameters);
    if let Some(t) = token {
        let nonce = base64::engine::general_purpose::STANDARD.encode(t.nonce);
        s.push_str(&format!(
            concat!(
                r#"<wsse:Security s:mustUnderstand="1" xmlns:wsse="{wsse}" xmlns:wsu="{wsu}"><wsse:UsernameToken>"#,
                r#"<wsse:Username>{u}</wsse:Username>"#,
                r#"<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{d}</wsse:Password>"#,
                r#"<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{n}</wsse:Nonce>"#,
                r#"<wsu:Created>{c}</wsu:Created></wsse:UsernameToken></wsse:Security>"#
            ),
            wsse = xml::NS_WSSE,
            wsu = xml::NS_WSU,
            u = escape(&t.username),
            d = t.digest,
            n = nonce,
            c = escape(&t.created)
        ));
    }
    s.push_str("</s:Header><s:Body>");
    s.push_str(body);
    s.push_str("</s:Body></s:Envelope>");
    s
}

/// A random RFC 4122 version-4 id for `wsa:MessageID`.
pub fn message_id(r: [u8; 16]) -> String {
    let mut b = r;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

// ---------------------------------------------------------------- request bodies

pub fn body_get_system_date_and_time() -> String {
    r#"<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>"#.into()
}
pub fn body_get_capabilities() -> String {
    r#"<GetCapabilities xmlns="http://www.onvif.org/ver10/device/wsdl"><Category>All</Category></GetCapabilities>"#
        .into()
}
pub fn body_get_services() -> String {
    r#"<GetServices xmlns="http://www.onvif.org/ver10/device/wsdl"><IncludeCapability>false</IncludeCapability></GetServices>"#.into()
}
pub fn body_get_device_information() -> String {
    r#"<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>"#.into()
}
pub fn body_system_reboot() -> String {
    r#"<SystemReboot xmlns="http://www.onvif.org/ver10/device/wsdl"/>"#.into()
}
pub fn body_get_profiles() -> String {
    r#"<GetProfiles xmlns="http://www.onvif.org/ver10/media/wsdl"/>"#.into()
}
pub fn body_get_stream_uri(profile: &str) -> String {
    format!(
        r#"<GetStreamUri xmlns="http://www.onvif.org/ver10/media/wsdl"><StreamSetup><Stream xmlns="http://www.onvif.org/ver10/schema">RTP-Unicast</Stream><Transport xmlns="http://www.onvif.org/ver10/schema"><Protocol>RTSP</Protocol></Transport></StreamSetup><ProfileToken>{}</ProfileToken></GetStreamUri>"#,
        escape(profile)
    )
}
pub fn body_get_snapshot_uri(profile: &str) -> String {
    format!(
        r#"<GetSnapshotUri xmlns="http://www.onvif.org/ver10/media/wsdl"><ProfileToken>{}</ProfileToken></GetSnapshotUri>"#,
        escape(profile)
    )
}
/// `termination` is `PT600S` or an absolute device time.
pub fn body_create_pullpoint(termination: &str) -> String {
    format!(
        r#"<CreatePullPointSubscription xmlns="http://www.onvif.org/ver10/events/wsdl"><InitialTerminationTime>{}</InitialTerminationTime></CreatePullPointSubscription>"#,
        escape(termination)
    )
}
pub fn body_pull_messages(timeout_secs: u64, limit: u32) -> String {
    format!(
        r#"<PullMessages xmlns="http://www.onvif.org/ver10/events/wsdl"><Timeout>PT{timeout_secs}S</Timeout><MessageLimit>{limit}</MessageLimit></PullMessages>"#
    )
}
pub fn body_renew(termination: &str) -> String {
    format!(
        r#"<Renew xmlns="http://docs.oasis-open.org/wsn/b-2"><TerminationTime>{}</TerminationTime></Renew>"#,
        escape(termination)
    )
}
pub fn body_unsubscribe() -> String {
    r#"<Unsubscribe xmlns="http://docs.oasis-open.org/wsn/b-2"/>"#.into()
}

/// `PT60S`, `PT1M30S`, `PT0.5S`, `P1DT2H` -> seconds. Bounded; `None` when not a duration.
pub fn parse_duration_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut total = 0f64;
    let mut num = String::new();
    for (part, units) in [(date, &[('D', 86400f64)][..]), (time, &[('H', 3600f64), ('M', 60f64), ('S', 1f64)][..])] {
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                if num.len() > 20 {
                    return None;
                }
                num.push(c);
            } else {
                let mult = units.iter().find(|(u, _)| *u == c)?.1;
                total += num.parse::<f64>().ok()? * mult;
                num.clear();
            }
        }
        if !num.is_empty() {
            return None;
        }
    }
    (total.is_finite() && (!date.is_empty() || !time.is_empty())).then_some(total)
}

// ---------------------------------------------------------------- faults

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultClass {
    /// `ActionNotSupported`: do not retry this operation.
    UnsupportedOperation,
    /// `InvalidArgVal`/`InvalidArgs`: e.g. a relative termination time refused.
    InvalidArgument,
    /// `NotAuthorized`: wrong code, or the clock is off: re-measure and retry once.
    AuthOrClockSkew,
    /// A PullMessages fault with the device's limits: clamp and continue.
    PullLimits,
    /// `ResourceUnknownFault`: the subscription expired or the device rebooted.
    SubscriptionGone,
    Other,
}

impl FaultClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultClass::UnsupportedOperation => "unsupported_operation",
            FaultClass::InvalidArgument => "invalid_argument",
            FaultClass::AuthOrClockSkew => "auth_or_clock_skew",
            FaultClass::PullLimits => "pull_limits",
            FaultClass::SubscriptionGone => "subscription_gone",
            FaultClass::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub class: FaultClass,
    /// Code value then every Subcode value, as (namespace, local name).
    pub code_chain: Vec<(String, String)>,
    pub reason: String,
    pub max_timeout: Option<String>,
    pub max_message_limit: Option<String>,
}

fn qvalue(v: &Element) -> (String, String) {
    match v.qtext.first() {
        Some((Some(ns), local)) => (ns.clone(), local.clone()),
        Some((None, local)) => (String::new(), local.clone()),
        None => (String::new(), v.text_trim().to_string()),
    }
}

pub fn parse_fault(env: &Element) -> Option<Fault> {
    let f = xml::body(env).filter(|b| b.ns == NS_SOAP && b.name == "Fault")?;
    let mut chain = Vec::new();
    let mut cur = f.child(NS_SOAP, "Code");
    while let Some(c) = cur {
        if chain.len() >= 8 {
            break;
        }
        if let Some(v) = c.child(NS_SOAP, "Value") {
            chain.push(qvalue(v));
        }
        cur = c.child(NS_SOAP, "Subcode");
    }
    let reason = f
        .child(NS_SOAP, "Reason")
        .and_then(|r| r.child(NS_SOAP, "Text"))
        .map(|t| t.text_trim().to_string())
        .unwrap_or_default();
    let limits = f.child(NS_SOAP, "Detail").and_then(|d| d.find(NS_TEV, "PullMessagesFaultResponse"));
    let has = |ns: &str, name: &str| chain.iter().any(|(n, l)| n == ns && l == name);
    let class = if limits.is_some() {
        FaultClass::PullLimits
    } else if has(NS_WSA, "ActionNotSupported") || has(NS_TER, "ActionNotSupported") {
        FaultClass::UnsupportedOperation
    } else if has(NS_TER, "NotAuthorized") {
        FaultClass::AuthOrClockSkew
    } else if has(NS_WSRF_R, "ResourceUnknownFault") {
        FaultClass::SubscriptionGone
    } else if has(NS_TER, "InvalidArgVal") || has(NS_TER, "InvalidArgs") {
        FaultClass::InvalidArgument
    } else {
        FaultClass::Other
    };
    let lim = |name: &str| limits.and_then(|l| l.child(NS_TEV, name)).map(|e| e.text_trim().to_string());
    Some(Fault {
        class,
        code_chain: chain,
        reason,
        max_timeout: lim("MaxTimeout"),
        max_message_limit: lim("MaxMessageLimit"),
    })
}

/// What a reply turned out to be, before interpreting its body.
#[derive(Debug)]
pub enum Reply {
    Ok(Element),
    Fault(Fault),
}

/// Parses a reply body whose HTTP status was already checked (2xx, or 400/500 which carry faults).
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, XmlError> {
    let env = xml::parse(bytes)?;
    if let Some(f) = parse_fault(&env) {
        return Ok(Reply::Fault(f));
    }
    if xml::body(&env).is_none() {
        return Err(XmlError::Malformed("SOAP envelope without a body element".into()));
    }
    Ok(Reply::Ok(env))
}

// ---------------------------------------------------------------- replies

#[derive(Debug, Clone, PartialEq)]
pub struct SystemDateTime {
    pub date_time_type: String,
    pub daylight_savings: String,
    pub tz: String,
    pub utc: Option<DateTime<Utc>>,
    pub local: Option<DateTime<Utc>>,
}

fn date_time(el: Option<&Element>) -> Option<DateTime<Utc>> {
    let el = el?;
    let t = el.child(NS_TT, "Time")?;
    let d = el.child(NS_TT, "Date")?;
    let n = |e: &Element, name: &str| e.child(NS_TT, name)?.text_trim().parse::<u32>().ok();
    let date = NaiveDate::from_ymd_opt(n(d, "Year")? as i32, n(d, "Month")?, n(d, "Day")?)?;
    Some(date.and_hms_opt(n(t, "Hour")?, n(t, "Minute")?, n(t, "Second")?)?.and_utc())
}

pub fn parse_system_date_time(env: &Element) -> Option<SystemDateTime> {
    let sdt = xml::body(env)?.child(NS_TDS, "SystemDateAndTime")?;
    let txt = |e: Option<&Element>| e.map(|e| e.text_trim().to_string()).unwrap_or_default();
    Some(SystemDateTime {
        date_time_type: txt(sdt.child(NS_TT, "DateTimeType")),
        daylight_savings: txt(sdt.child(NS_TT, "DaylightSavings")),
        tz: txt(sdt.child(NS_TT, "TimeZone").and_then(|z| z.child(NS_TT, "TZ"))),
        utc: date_time(sdt.child(NS_TT, "UTCDateTime")),
        local: date_time(sdt.child(NS_TT, "LocalDateTime")),
    })
}

/// GetCapabilities: service name (`Events`, `Media`, ... or an extension's local name) -> XAddr.
pub fn parse_capabilities(env: &Element) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(caps) = xml::body(env).and_then(|b| b.child(NS_TDS, "Capabilities")) else { return out };
    for c in &caps.children {
        if let Some(x) = c.child_any("XAddr") {
            out.push((c.name.clone(), x.text_trim().to_string()));
        }
        // Vendor capabilities sit under `Extension` (Hikvision: `hikCapabilities`, `DeviceIO`).
        if c.name == "Extension" {
            for e in &c.children {
                if let Some(x) = e.child_any("XAddr") {
                    out.push((e.name.clone(), x.text_trim().to_string()));
                }
            }
        }
    }
    out
}

/// GetServices: namespace -> XAddr.
pub fn parse_services(env: &Element) -> Vec<(String, String)> {
    let Some(b) = xml::body(env) else { return Vec::new() };
    b.children_named(NS_TDS, "Service")
        .filter_map(|s| {
            Some((
                s.child(NS_TDS, "Namespace")?.text_trim().to_string(),
                s.child(NS_TDS, "XAddr")?.text_trim().to_string(),
            ))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub address: String,
    /// Raw XML of the reference parameters, to copy into every request's header.
    pub reference_parameters: String,
    pub current_time: Option<DateTime<Utc>>,
    pub termination_time: Option<DateTime<Utc>>,
}

fn reference_parameters_xml(rp: Option<&Element>) -> String {
    fn write(e: &Element, top: bool, out: &mut String) {
        if out.len() > 8192 {
            return;
        }
        out.push_str(&format!("<{} xmlns=\"{}\"", e.name, escape(&e.ns)));
        if top {
            // WS-Addressing marks each copied reference parameter (`wsa` is declared on the envelope).
            out.push_str(" wsa:IsReferenceParameter=\"true\"");
        }
        for (k, v) in &e.attrs {
            out.push_str(&format!(" {}=\"{}\"", k, escape(v)));
        }
        out.push('>');
        out.push_str(&escape(e.text.trim()));
        for c in &e.children {
            write(c, false, out);
        }
        out.push_str(&format!("</{}>", e.name));
    }
    let mut out = String::new();
    if let Some(rp) = rp {
        for c in &rp.children {
            write(c, true, &mut out);
        }
    }
    out
}

pub fn parse_create_pullpoint(env: &Element) -> Option<Subscription> {
    let b = xml::body(env).filter(|b| b.name == "CreatePullPointSubscriptionResponse")?;
    let r = b.child(NS_TEV, "SubscriptionReference")?;
    Some(Subscription {
        address: r.child(NS_WSA, "Address")?.text_trim().to_string(),
        reference_parameters: reference_parameters_xml(r.child(NS_WSA, "ReferenceParameters")),
        current_time: b.child(NS_WSNT, "CurrentTime").and_then(|e| parse_time(&e.text)),
        termination_time: b.child(NS_WSNT, "TerminationTime").and_then(|e| parse_time(&e.text)),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct PullMessages {
    pub current_time: Option<DateTime<Utc>>,
    pub termination_time: Option<DateTime<Utc>>,
    pub messages: Vec<xml::Notification>,
}

pub fn parse_pull_messages(env: &Element) -> Option<PullMessages> {
    let b = xml::body(env).filter(|b| b.ns == NS_TEV && b.name == "PullMessagesResponse")?;
    Some(PullMessages {
        current_time: b.child(NS_TEV, "CurrentTime").and_then(|e| parse_time(&e.text)),
        termination_time: b.child(NS_TEV, "TerminationTime").and_then(|e| parse_time(&e.text)),
        messages: xml::notifications(b),
    })
}

/// The times a Renew reply gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewed {
    pub current_time: Option<DateTime<Utc>>,
    pub termination_time: Option<DateTime<Utc>>,
}

pub fn parse_renew(env: &Element) -> Option<Renewed> {
    let b = xml::body(env).filter(|b| b.ns == NS_WSNT && b.name == "RenewResponse")?;
    Some(Renewed {
        current_time: b.child(NS_WSNT, "CurrentTime").and_then(|e| parse_time(&e.text)),
        termination_time: b.child(NS_WSNT, "TerminationTime").and_then(|e| parse_time(&e.text)),
    })
}

pub fn is_unsubscribe_response(env: &Element) -> bool {
    xml::body(env).is_some_and(|b| b.ns == NS_WSNT && b.name == "UnsubscribeResponse")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub token: String,
    pub name: String,
    pub encoding: String,
    pub width: u32,
    pub height: u32,
}

pub fn parse_profiles(env: &Element) -> Vec<Profile> {
    let Some(b) = xml::body(env) else { return Vec::new() };
    b.children_named(NS_TRT, "Profiles")
        .map(|p| {
            let enc = p.child(NS_TT, "VideoEncoderConfiguration");
            let res = enc.and_then(|e| e.child(NS_TT, "Resolution"));
            let num =
                |n: &str| res.and_then(|r| r.child(NS_TT, n)).and_then(|e| e.text_trim().parse().ok()).unwrap_or(0);
            Profile {
                token: p.attr("token").unwrap_or("").to_string(),
                name: p.child(NS_TT, "Name").map(|e| e.text_trim().to_string()).unwrap_or_default(),
                encoding: enc
                    .and_then(|e| e.child(NS_TT, "Encoding"))
                    .map(|e| e.text_trim().to_string())
                    .unwrap_or_default(),
                width: num("Width"),
                height: num("Height"),
            }
        })
        .collect()
}

/// GetStreamUri / GetSnapshotUri: the `MediaUri/Uri`.
pub fn parse_media_uri(env: &Element) -> Option<String> {
    let b = xml::body(env)?;
    Some(b.child(NS_TRT, "MediaUri")?.child(NS_TT, "Uri")?.text_trim().to_string())
}

pub fn parse_system_reboot(env: &Element) -> Option<String> {
    let b = xml::body(env).filter(|b| b.ns == NS_TDS && b.name == "SystemRebootResponse")?;
    Some(b.child(NS_TDS, "Message").map(|m| m.text_trim().to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("PT60S"), Some(60.0));
        assert_eq!(parse_duration_secs("PT1M30S"), Some(90.0));
        assert_eq!(parse_duration_secs("P1DT1H"), Some(90000.0));
        assert_eq!(parse_duration_secs("PT0.5S"), Some(0.5));
        assert_eq!(parse_duration_secs("2024-03-01T10:00:00Z"), None);
        assert_eq!(parse_duration_secs("P"), None);
        assert_eq!(parse_duration_secs("PT5"), None);
    }

    #[test]
    fn message_ids_are_v4() {
        let id = message_id([0xff; 16]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn reference_parameters_are_copied_into_the_header() {
        let reply = br#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:t="http://www.onvif.org/ver10/events/wsdl" xmlns:n="http://docs.oasis-open.org/wsn/b-2"><e:Body><t:CreatePullPointSubscriptionResponse><t:SubscriptionReference><a:Address>http://d/sub</a:Address><a:ReferenceParameters><x:SubId xmlns:x="urn:vendor">7&amp;8</x:SubId></a:ReferenceParameters></t:SubscriptionReference><n:CurrentTime>2024-03-01T10:00:00Z</n:CurrentTime><n:TerminationTime>2024-03-01T10:10:00Z</n:TerminationTime></t:CreatePullPointSubscriptionResponse></e:Body></e:Envelope>"#;
        let sub = parse_create_pullpoint(&xml::parse(reply).unwrap()).unwrap();
        let env = envelope(ACTION_PULL_MESSAGES, &sub.address, "id", None, &sub.reference_parameters, "<x/>");
        let env = xml::parse(env.as_bytes()).unwrap();
        let h = env.child(NS_SOAP, "Header").unwrap();
        let p = h.child("urn:vendor", "SubId").unwrap();
        assert_eq!(p.text, "7&8");
        assert_eq!(p.attr("IsReferenceParameter"), Some("true"));
        assert_eq!(h.child(NS_WSA, "To").unwrap().text, "http://d/sub");
    }

    #[test]
    fn envelope_carries_no_password() {
        let t = UsernameToken::new("admin", "SECRETCODE", [1; 16], Utc::now());
        let e = envelope(ACTION_RENEW, "http://x/sub", "id", Some(&t), "", &body_renew("PT600S"));
        assert!(!e.contains("SECRETCODE"));
        assert!(e.contains(&t.digest));
        let env = xml::parse(e.as_bytes()).unwrap();
        assert_eq!(xml::body(&env).unwrap().name, "Renew");
    }
}
