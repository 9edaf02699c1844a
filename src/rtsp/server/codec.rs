//! RTSP 1.0 framing, pure: requests and `$`-interleaved binary data in one byte stream, and the
//! responses we write. Used by the bridge's server and by the simulated doorbell. Input is
//! bounded: a request head larger than [`MAX_REQUEST`] or a body larger than [`MAX_BODY`] is
//! refused before it is buffered.

/// Largest request head (request line + headers) accepted. Real clients send < 1 KiB.
pub const MAX_REQUEST: usize = 8192;
/// Largest request body (SET_PARAMETER/GET_PARAMETER) accepted.
pub const MAX_BODY: usize = 4096;
pub const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn cseq(&self) -> Option<&str> {
        self.header("CSeq")
    }

    /// The session id from a `Session` header, without its parameters.
    pub fn session(&self) -> Option<&str> {
        self.header("Session").map(|s| s.split(';').next().unwrap_or("").trim())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Request(Request),
    /// Binary data on an interleaved channel (RTCP from a client, RTP from a server).
    Interleaved {
        channel: u8,
        data: Vec<u8>,
    },
}

/// Why a buffer cannot be parsed; `status` is the RTSP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub status: u16,
    pub why: &'static str,
}

fn bad(why: &'static str) -> ParseError {
    ParseError { status: 400, why }
}

/// Parses one item from the front of `buf`. `Ok(None)`: more bytes are needed (and the buffer is
/// still within bounds). `Ok(Some((item, used)))`: `used` bytes make up `item`.
pub fn parse(buf: &[u8]) -> Result<Option<(Item, usize)>, ParseError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() < 4 + len {
            return Ok(None);
        }
        return Ok(Some((Item::Interleaved { channel: buf[1], data: buf[4..4 + len].to_vec() }, 4 + len)));
    }
    let window = &buf[..buf.len().min(MAX_REQUEST)];
    let Some(end) = find(window, b"\r\n\r\n") else {
        if buf.len() >= MAX_REQUEST {
            return Err(ParseError { status: 413, why: "request head too large" });
        }
        // A request line must be printable ASCII: reject garbage without waiting for more.
        if buf.iter().any(|&b| b != b'\r' && b != b'\n' && b != b'\t' && !(0x20..0x7f).contains(&b)) {
            return Err(bad("request is not text"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-') {
        return Err(bad("malformed method"));
    }
    if uri.is_empty() || uri.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad("malformed URI"));
    }
    if version != "RTSP/1.0" {
        return Err(ParseError { status: 505, why: "only RTSP/1.0 is supported" });
    }
    let mut headers = Vec::new();
    for l in lines {
        if headers.len() == MAX_HEADERS {
            return Err(ParseError { status: 400, why: "too many headers" });
        }
        let Some((k, v)) = l.split_once(':') else { return Err(bad("malformed header line")) };
        let k = k.trim();
        if k.is_empty() || k.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(bad("malformed header name"));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut req = Request { method: method.to_string(), uri: uri.to_string(), headers, body: Vec::new() };
    let body_len = match req.header("Content-Length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?,
    };
    if body_len > MAX_BODY {
        return Err(ParseError { status: 413, why: "request body too large" });
    }
    let total = end + 4 + body_len;
    if buf.len() < total {
        return Ok(None);
    }
    req.body = buf[end + 4..total].to_vec();
    Ok(Some((Item::Request(req), total)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response. `cseq` is echoed when the request had one.
pub fn response(status: u16, cseq: Option<&str>, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut s = format!("RTSP/1.0 {status} {}\r\n", reason(status));
    if let Some(c) = cseq {
        // A CSeq with CR/LF in it would let a client inject headers into our answer.
        if !c.contains(['\r', '\n']) {
            s.push_str(&format!("CSeq: {c}\r\n"));
        }
    }
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Appends one interleaved frame (`$`, channel, 16-bit length, data) to `out`.
pub fn put_interleaved(out: &mut Vec<u8>, channel: u8, data: &[u8]) {
    let len = data.len().min(u16::MAX as usize);
    out.push(b'$');
    out.push(channel);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&data[..len]);
}

/// The stream path of a request URI: `rtsp://host:port/main/trackID=0` -> `/main/trackID=0`.
pub fn uri_path(uri: &str) -> &str {
    let rest = match uri.find("://") {
        Some(i) => &uri[i + 3..],
        None => return uri,
    };
    match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    }
}

/// `interleaved=a-b` of a `Transport` header value when it asks for RTP over TCP.
/// `Some(None)`: TCP without channels (we pick). `None`: not TCP (or unreadable channels).
pub fn tcp_interleaved(transport: &str) -> Option<Option<(u8, u8)>> {
    // Clients may offer several transports separated by commas; take the first TCP one.
    for t in transport.split(',') {
        let mut parts = t.split(';').map(str::trim);
        let proto = parts.next().unwrap_or("");
        if !proto.eq_ignore_ascii_case("RTP/AVP/TCP") {
            continue;
        }
        for p in parts {
            if let Some(v) = p.strip_prefix("interleaved=") {
                let (a, b) = v.split_once('-').unwrap_or((v, ""));
                let a: u8 = a.trim().parse().ok()?;
                let b: u8 = b.trim().parse().unwrap_or(a.wrapping_add(1));
                return Some(Some((a, b)));
            }
        }
        return Some(None);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_request_and_interleaved_data() {
        let mut buf = b"OPTIONS rtsp://127.0.0.1:8564/main RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: x\r\n\r\n".to_vec();
        buf.extend_from_slice(&[b'$', 1, 0, 3, 9, 9, 9]);
        let (item, n) = parse(&buf).unwrap().unwrap();
        let Item::Request(r) = item else { panic!() };
        assert_eq!(r.method, "OPTIONS");
        assert_eq!(r.cseq(), Some("1"));
        let (item, m) = parse(&buf[n..]).unwrap().unwrap();
        assert_eq!(item, Item::Interleaved { channel: 1, data: vec![9, 9, 9] });
        assert_eq!(n + m, buf.len());
    }

    #[test]
    fn partial_input_waits_and_oversize_is_refused() {
        assert_eq!(parse(b"DESCRIBE rtsp://x/main RTSP/1.0\r\nCSeq: 2\r\n"), Ok(None));
        assert_eq!(parse(&[b'$', 0, 1]), Ok(None));
        let mut big = b"DESCRIBE rtsp://x/main RTSP/1.0\r\nX: ".to_vec();
        big.resize(MAX_REQUEST + 10, b'a');
        assert_eq!(parse(&big).unwrap_err().status, 413);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().status, 505);
        assert_eq!(parse(b"\x00\x01\x02").unwrap_err().status, 400);
        let body = format!("SET_PARAMETER rtsp://x/ RTSP/1.0\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(parse(body.as_bytes()).unwrap_err().status, 413);
    }

    #[test]
    fn transports() {
        assert_eq!(tcp_interleaved("RTP/AVP/TCP;unicast;interleaved=2-3"), Some(Some((2, 3))));
        assert_eq!(tcp_interleaved("RTP/AVP;unicast;client_port=5000-5001"), None);
        assert_eq!(tcp_interleaved("RTP/AVP;unicast;client_port=1-2,RTP/AVP/TCP;unicast"), Some(None));
        assert_eq!(uri_path("rtsp://h:1/main/trackID=0"), "/main/trackID=0");
        assert_eq!(uri_path("rtsp://h:1"), "/");
    }

    #[test]
    fn cseq_cannot_inject_headers() {
        let r = response(200, Some("1\r\nX-Evil: 1"), &[], b"");
        assert!(!String::from_utf8(r).unwrap().contains("X-Evil"));
    }

    proptest! {
        #[test]
        fn never_panics_and_consumes_within_bounds(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(Some((_, used))) = parse(&data) {
                prop_assert!(used > 0 && used <= data.len());
            }
        }

        #[test]
        fn a_stream_cut_anywhere_parses_the_same(chunk in 1usize..40, n in 1usize..6, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            // Requests and interleaved frames back to back, delivered in pieces.
            let mut stream = Vec::new();
            for i in 0..n {
                stream.extend_from_slice(format!("GET_PARAMETER rtsp://h/main RTSP/1.0\r\nCSeq: {i}\r\n\r\n").as_bytes());
                put_interleaved(&mut stream, 1, &payload);
            }
            let mut buf = Vec::new();
            let mut items = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some((item, used)) = parse(&buf).unwrap() {
                    buf.drain(..used);
                    items.push(item);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(items.len(), 2 * n);
            prop_assert_eq!(&items[1], &Item::Interleaved { channel: 1, data: payload.clone() });
        }

        #[test]
        fn requests_round_trip(method in "[A-Z_]{1,12}", path in "/[a-z0-9/]{0,20}", cseq in 0u32..100000) {
            let text = format!("{method} rtsp://h{path} RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n");
            let (item, used) = parse(text.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(used, text.len());
            let Item::Request(r) = item else { unreachable!() };
            prop_assert_eq!(&r.method, &method);
            prop_assert_eq!(r.cseq().map(str::to_string), Some(cseq.to_string()));
        }
    }
}
