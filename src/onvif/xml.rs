//! A small namespace-resolved element tree over quick-xml, and the NotificationMessage parser.
//!
//! Every lookup is by namespace URI + local name, never by prefix: firmwares pick their own
//! prefixes (`env:`/`s:`/`SOAP-ENV:`). Element text that is itself a QName (a fault `Value`, an
//! event `Topic`) is resolved in the scope of its element while parsing, since that scope is gone
//! afterwards. Input is bounded in size, depth and element count; nothing here panics.

use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::NsReader;

pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_WSA: &str = "http://www.w3.org/2005/08/addressing";
pub const NS_WSNT: &str = "http://docs.oasis-open.org/wsn/b-2";
pub const NS_TT: &str = "http://www.onvif.org/ver10/schema";
pub const NS_TDS: &str = "http://www.onvif.org/ver10/device/wsdl";
pub const NS_TRT: &str = "http://www.onvif.org/ver10/media/wsdl";
pub const NS_TEV: &str = "http://www.onvif.org/ver10/events/wsdl";
pub const NS_TER: &str = "http://www.onvif.org/ver10/error";
pub const NS_WSRF_R: &str = "http://docs.oasis-open.org/wsrf/r-2";
pub const NS_TOPICS: &str = "http://www.onvif.org/ver10/topics";
pub const NS_HIK_TOPICS: &str = "http://www.hikvision.com/2011/event/topics";
pub const NS_WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const NS_WSU: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";

/// Largest reply accepted. A PullMessages reply of 100 messages is ~100 KiB.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_DEPTH: usize = 64;
pub const MAX_ELEMENTS: usize = 50_000;
/// Longest text kept per element; the rest is dropped (no value we read is anywhere near it).
pub const MAX_TEXT: usize = 16 * 1024;

/// Local names whose text is a QName or a path of QNames, resolved while the scope is known.
const QNAME_TEXT: [&str; 2] = ["Value", "Topic"];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub ns: String,
    pub name: String,
    /// Attributes by local name, in document order.
    pub attrs: Vec<(String, String)>,
    pub text: String,
    /// For `Value`/`Topic`: the text split at `/`, each segment's prefix resolved to its namespace
    /// (`None` when it had no prefix or the prefix is not bound).
    pub qtext: Vec<(Option<String>, String)>,
    pub children: Vec<Element>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum XmlError {
    /// Not well-formed, truncated, or over a limit.
    Malformed(String),
    /// Well-formed enough to see the root, but not a SOAP envelope (an HTML error page...).
    NotSoap { root: String },
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::Malformed(m) => write!(f, "malformed XML: {m}"),
            XmlError::NotSoap { root } => write!(f, "not a SOAP envelope (root element <{root}>)"),
        }
    }
}

impl std::error::Error for XmlError {}

impl Element {
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name && c.ns == ns)
    }

    pub fn children_named<'a>(&'a self, ns: &'a str, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name && c.ns == ns)
    }

    /// Child by local name in any namespace (for elements whose namespace varies between firmwares).
    pub fn child_any(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text_trim(&self) -> &str {
        self.text.trim()
    }

    /// Depth-first search by namespace + local name.
    pub fn find(&self, ns: &str, name: &str) -> Option<&Element> {
        if self.ns == ns && self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(ns, name))
    }

    /// Follows a path of (namespace, local name) steps.
    pub fn path(&self, steps: &[(&str, &str)]) -> Option<&Element> {
        let mut cur = self;
        for (ns, name) in steps {
            cur = cur.child(ns, name)?;
        }
        Some(cur)
    }
}

fn resolve_prefix(reader: &NsReader<&[u8]>, prefix: &str) -> Option<String> {
    let q = format!("{prefix}:x");
    match reader.resolve_element(QName(q.as_bytes())).0 {
        ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
        _ => None,
    }
}

fn split_qtext(reader: &NsReader<&[u8]>, text: &str) -> Vec<(Option<String>, String)> {
    text.trim()
        .split('/')
        .take(32)
        .map(|seg| match seg.split_once(':') {
            Some((p, local)) if !p.is_empty() => match resolve_prefix(reader, p) {
                Some(ns) => (Some(ns), local.to_string()),
                None => (None, seg.to_string()),
            },
            _ => (None, seg.to_string()),
        })
        .collect()
}

fn start_element(reader: &NsReader<&[u8]>, e: &quick_xml::events::BytesStart<'_>) -> Result<Element, XmlError> {
    let (res, local) = reader.resolve_element(e.name());
    let ns = match res {
        ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
        _ => String::new(),
    };
    let mut el = Element { ns, name: String::from_utf8_lossy(local.as_ref()).into_owned(), ..Default::default() };
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|e| XmlError::Malformed(e.to_string()))?;
        if a.key.as_ref().starts_with(b"xmlns") {
            continue;
        }
        let v = a.unescape_value().map_err(|e| XmlError::Malformed(e.to_string()))?;
        if el.attrs.len() < 64 {
            el.attrs.push((String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(), v.into_owned()));
        }
    }
    Ok(el)
}

/// Parses a whole SOAP reply into a tree. The root must be a SOAP 1.2 `Envelope`.
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    if input.len() > MAX_BYTES {
        return Err(XmlError::Malformed(format!("reply larger than {MAX_BYTES} bytes")));
    }
    let mut reader = NsReader::from_reader(input);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    let mut root: Option<Element> = None;
    loop {
        let ev = reader.read_event().map_err(|e| XmlError::Malformed(e.to_string()))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(XmlError::Malformed("too many or too deeply nested elements".into()));
                }
                let el = start_element(&reader, e)?;
                if stack.is_empty() && !(el.ns == NS_SOAP && el.name == "Envelope") {
                    return Err(XmlError::NotSoap { root: el.name });
                }
                if empty {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err(XmlError::Malformed("unexpected closing tag".into()));
                };
                if QNAME_TEXT.contains(&el.name.as_str()) && el.children.is_empty() {
                    el.qtext = split_qtext(&reader, &el.text);
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(el) = stack.last_mut() {
                    let s = t.unescape().map_err(|e| XmlError::Malformed(e.to_string()))?;
                    push_text(el, &s);
                } else if !t.iter().all(|b| b.is_ascii_whitespace()) {
                    return Err(XmlError::Malformed("text outside the root element".into()));
                }
            }
            Event::CData(t) => {
                if let Some(el) = stack.last_mut() {
                    push_text(el, &String::from_utf8_lossy(&t));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(format!("unexpected end of input inside <{}>", stack.last().unwrap().name)));
    }
    root.ok_or_else(|| XmlError::Malformed("no root element".into()))
}

fn push_text(el: &mut Element, s: &str) {
    let room = MAX_TEXT.saturating_sub(el.text.len());
    if room == 0 {
        return;
    }
    let mut cut = s.len().min(room);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    el.text.push_str(&s[..cut]);
}

/// The SOAP body's first element.
pub fn body(env: &Element) -> Option<&Element> {
    env.child(NS_SOAP, "Body")?.children.first()
}

/// One `wsnt:NotificationMessage`, as read (no interpretation yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notification {
    /// The Topic text, trimmed.
    pub topic_raw: String,
    /// With prefixes rewritten to the canonical ones (`tns1:`, `tnshik:`) and trailing `/` or `//.` removed.
    pub topic: String,
    pub dialect: String,
    pub property_operation: Option<String>,
    pub utc_time: Option<String>,
    pub source: Vec<(String, String)>,
    pub key: Vec<(String, String)>,
    pub data: Vec<(String, String)>,
}

/// The prefix the table and the configuration use for a topic namespace.
fn canonical_prefix(ns: &str) -> Option<&'static str> {
    match ns {
        NS_TOPICS => Some("tns1"),
        NS_HIK_TOPICS => Some("tnshik"),
        _ => None,
    }
}

/// Canonical topic from the resolved segments of a Topic element.
pub fn canonical_topic(segments: &[(Option<String>, String)]) -> String {
    let mut parts: Vec<String> = segments
        .iter()
        .map(|(ns, local)| match ns {
            Some(ns) => match canonical_prefix(ns) {
                Some(p) => format!("{p}:{local}"),
                None => format!("{{{ns}}}{local}"),
            },
            None => local.clone(),
        })
        .collect();
    // `a/b/` and `a/b//.` (a ConcreteSet written as an XPath) name the same topic as `a/b`.
    while parts.last().is_some_and(|p| p.is_empty() || p == ".") {
        parts.pop();
    }
    parts.join("/")
}

fn simple_items(el: Option<&Element>) -> Vec<(String, String)> {
    let Some(el) = el else { return Vec::new() };
    el.children_named(NS_TT, "SimpleItem")
        .map(|i| (i.attr("Name").unwrap_or("").to_string(), i.attr("Value").unwrap_or("").to_string()))
        .collect()
}

/// Reads one `wsnt:NotificationMessage` element.
pub fn notification(nm: &Element) -> Option<Notification> {
    let topic_el = nm.child(NS_WSNT, "Topic")?;
    let msg = nm.child(NS_WSNT, "Message")?.child(NS_TT, "Message");
    let topic_raw = topic_el.text_trim().to_string();
    Some(Notification {
        topic: canonical_topic(&topic_el.qtext),
        topic_raw,
        dialect: topic_el.attr("Dialect").unwrap_or("").to_string(),
        property_operation: msg.and_then(|m| m.attr("PropertyOperation")).map(str::to_string),
        utc_time: msg.and_then(|m| m.attr("UtcTime")).map(str::to_string),
        source: simple_items(msg.and_then(|m| m.child(NS_TT, "Source"))),
        key: simple_items(msg.and_then(|m| m.child(NS_TT, "Key"))),
        data: simple_items(msg.and_then(|m| m.child(NS_TT, "Data"))),
    })
}

/// All notification messages of a PullMessages reply body, in document order.
pub fn notifications(resp: &Element) -> Vec<Notification> {
    resp.children_named(NS_WSNT, "NotificationMessage").filter_map(notification).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_matter() {
        let a = br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><x:A xmlns:x="urn:a" k="v">t</x:A></s:Body></s:Envelope>"#;
        let b = br#"<E:Envelope xmlns:E="http://www.w3.org/2003/05/soap-envelope"><E:Body><A xmlns="urn:a" k="v">t</A></E:Body></E:Envelope>"#;
        let ea = parse(a).unwrap();
        let eb = parse(b).unwrap();
        assert_eq!(body(&ea).unwrap(), body(&eb).unwrap());
        assert_eq!(body(&ea).unwrap().ns, "urn:a");
    }

    #[test]
    fn truncated_and_html_are_errors() {
        assert!(matches!(
            parse(b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>"),
            Err(XmlError::Malformed(_))
        ));
        assert_eq!(parse(b"<!DOCTYPE html><html><br></html>"), Err(XmlError::NotSoap { root: "html".into() }));
        assert!(parse(b"").is_err());
    }

    #[test]
    fn topic_canonical_form() {
        let x = br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><w:Topic xmlns:w="http://docs.oasis-open.org/wsn/b-2" xmlns:q="http://www.onvif.org/ver10/topics"> q:RuleEngine/CellMotionDetector/Motion//. </w:Topic></s:Body></s:Envelope>"#;
        let env = parse(x).unwrap();
        let t = body(&env).unwrap();
        assert_eq!(canonical_topic(&t.qtext), "tns1:RuleEngine/CellMotionDetector/Motion");
    }
}
