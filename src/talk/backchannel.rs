//! A small RTSP client for the ONVIF audio backchannel (retina only plays, it cannot send):
//! DESCRIBE with the backchannel `Require`, SETUP of the `sendonly` track over TCP, PLAY, G.711
//! in RTP interleaved on the connection paced in real time, then TEARDOWN at once — a
//! backchannel left open blocks the doorbell's own calls on some Hikvision firmware.
//! `parse_response` is pure and bounded; the rest is the thin async shell.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::g711::Law;
use super::probe::{self, Offer, Verdict, REQUIRE_BACKCHANNEL};
use crate::digest::{parse_challenges, simple_authorization as digest_authorization};
use crate::rtsp::server::codec;

/// Largest response head / body we buffer.
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 64 * 1024;
/// 20 ms of 8 kHz audio per RTP packet (the G.711 packet time devices expect).
pub const SAMPLES_PER_PACKET: usize = 160;
const PACKET_TIME: Duration = Duration::from_millis(20);
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Response(Response),
    /// Interleaved data from the doorbell (RTCP, video it sends anyway): skipped.
    Interleaved,
}

/// One response or interleaved frame from the front of `buf`; `Ok(None)`: more bytes needed.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Parsed, usize)>, &'static str> {
    if buf.first() == Some(&b'$') {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        return Ok((buf.len() >= 4 + len).then_some((Parsed::Interleaved, 4 + len)));
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Err("response head too large") } else { Ok(None) };
    };
    if end > MAX_HEAD {
        return Err("response head too large");
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("RTSP/")) {
        return Err("not an RTSP response");
    }
    let status = parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or("bad status code")?;
    let mut headers = Vec::new();
    for l in lines {
        if headers.len() >= codec::MAX_HEADERS {
            return Err("too many headers");
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.parse::<usize>().map_err(|_| "bad Content-Length"))
        .transpose()?
        .unwrap_or(0);
    if len > MAX_BODY {
        return Err("response body too large");
    }
    let total = end + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let body = buf[end + 4..total].to_vec();
    Ok(Some((Parsed::Response(Response { status, headers, body }), total)))
}

/// `realm` and `nonce` of a Digest challenge (the shared parser of [`crate::digest`]).
fn digest_challenge(v: &str) -> Option<(String, String)> {
    let c = parse_challenges(v.as_bytes()).into_iter().find(|c| c.scheme == "digest")?;
    Some((c.param("realm")?.to_string(), c.param("nonce")?.to_string()))
}

/// Where and as whom to reach the doorbell.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub user: String,
    pub pass: String,
}

impl Target {
    pub fn url(&self) -> String {
        format!("rtsp://{}:{}{}", self.host, self.port, self.path)
    }
}

struct Client {
    sock: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    user: String,
    pass: String,
    auth: Option<(String, String)>,
    session: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the doorbell's RTSP port: {0}")]
    Connect(String),
    #[error("the doorbell did not answer in time")]
    Timeout,
    #[error("the doorbell answered {1} to {0}")]
    Status(&'static str, u16),
    #[error("the doorbell's RTSP reply is malformed: {0}")]
    Malformed(&'static str),
    #[error("the connection to the doorbell was lost")]
    Closed,
}

impl Client {
    async fn connect(t: &Target) -> Result<Client, ClientError> {
        let sock = timeout(REPLY_TIMEOUT, TcpStream::connect((t.host.as_str(), t.port)))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::Connect(e.kind().to_string()))?;
        let _ = sock.set_nodelay(true);
        Ok(Client {
            sock,
            buf: Vec::with_capacity(4096),
            cseq: 0,
            user: t.user.clone(),
            pass: t.pass.clone(),
            auth: None,
            session: None,
        })
    }

    fn request_bytes(&mut self, method: &str, uri: &str, extra: &[(&str, String)]) -> Vec<u8> {
        self.cseq += 1;
        let mut r = format!("{method} {uri} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: doorbell-bridge\r\n", self.cseq);
        if let Some((realm, nonce)) = &self.auth {
            let a = digest_authorization(&self.user, &self.pass, realm, nonce, method, uri);
            r.push_str(&format!("Authorization: {a}\r\n"));
        }
        if let Some(s) = &self.session {
            r.push_str(&format!("Session: {s}\r\n"));
        }
        for (k, v) in extra {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }

    /// Consumes what is buffered; returns a response if one is complete.
    fn take_response(&mut self) -> Result<Option<Response>, ClientError> {
        loop {
            match parse_response(&self.buf).map_err(ClientError::Malformed)? {
                None => return Ok(None),
                Some((p, used)) => {
                    self.buf.drain(..used);
                    if let Parsed::Response(r) = p {
                        return Ok(Some(r));
                    }
                }
            }
        }
    }

    async fn read_some(&mut self) -> Result<(), ClientError> {
        match self.sock.read_buf(&mut self.buf).await {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(ClientError::Closed),
        }
    }

    async fn request(
        &mut self,
        method: &'static str,
        uri: &str,
        extra: &[(&str, String)],
    ) -> Result<Response, ClientError> {
        for attempt in 0..2 {
            let req = self.request_bytes(method, uri, extra);
            self.sock.write_all(&req).await.map_err(|_| ClientError::Closed)?;
            let resp = timeout(REPLY_TIMEOUT, async {
                loop {
                    if let Some(r) = self.take_response()? {
                        return Ok::<_, ClientError>(r);
                    }
                    self.read_some().await?;
                }
            })
            .await
            .map_err(|_| ClientError::Timeout)??;
            if resp.status == 401 && attempt == 0 {
                if let Some(c) = resp.header("WWW-Authenticate").and_then(digest_challenge) {
                    self.auth = Some(c);
                    continue;
                }
            }
            if resp.status != 200 {
                return Err(ClientError::Status(method, resp.status));
            }
            return Ok(resp);
        }
        Err(ClientError::Status(method, 401))
    }

    /// DESCRIBE with the backchannel `Require`. A device without a backchannel answers 551
    /// (Option not supported) or an SDP without a `sendonly` track.
    async fn describe(&mut self, url: &str) -> Result<Verdict, ClientError> {
        let h = [("Require", REQUIRE_BACKCHANNEL.to_string()), ("Accept", "application/sdp".to_string())];
        match self.request("DESCRIBE", url, &h).await {
            Ok(r) => {
                let base = r.header("Content-Base").unwrap_or(url).to_string();
                Ok(probe::find_backchannel(&String::from_utf8_lossy(&r.body), &base))
            }
            Err(ClientError::Status(_, 551)) => {
                Ok(Verdict::Unsupported("the doorbell does not support the ONVIF backchannel (551)".into()))
            }
            Err(e) => Err(e),
        }
    }
}

/// Asks the doorbell whether it offers a backchannel.
pub async fn probe(t: &Target) -> Result<Verdict, ClientError> {
    let mut c = Client::connect(t).await?;
    let v = c.describe(&t.url()).await;
    let _ = c.sock.shutdown().await;
    v
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(pt | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// What a talk did.
#[derive(Debug, Clone)]
pub struct Sent {
    pub offer: Offer,
    pub packets: usize,
    /// From the call to the first RTP packet written.
    pub first_packet: Duration,
}

/// Plays `samples` (8 kHz mono) over the doorbell's backchannel; returns once the audio has played
/// and the session is torn down.
pub async fn talk(t: &Target, samples: &[i16]) -> Result<Result<Sent, String>, ClientError> {
    let started = Instant::now();
    let mut c = Client::connect(t).await?;
    let url = t.url();
    let offer = match c.describe(&url).await? {
        Verdict::Supported(o) => o,
        Verdict::Unsupported(why) => return Ok(Err(why)),
    };
    let req = ("Require", REQUIRE_BACKCHANNEL.to_string());
    let tr = ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1".to_string());
    let setup = c.request("SETUP", &offer.control, &[tr, req.clone()]).await?;
    let session = setup.header("Session").map(|s| s.split(';').next().unwrap_or("").trim().to_string());
    c.session = session.filter(|s| !s.is_empty());
    let channel = setup.header("Transport").and_then(codec::tcp_interleaved).flatten().map(|(a, _)| a).unwrap_or(0);
    c.request("PLAY", &url, &[req.clone(), ("Range", "npt=0.000-".to_string())]).await?;
    let law: Law = offer.law;
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    let t0 = Instant::now();
    let first_packet = t0 - started;
    let mut packets = 0usize;
    let mut out = Vec::with_capacity(SAMPLES_PER_PACKET + 16);
    let mut payload = Vec::with_capacity(SAMPLES_PER_PACKET);
    let sent = async {
        for (i, chunk) in samples.chunks(SAMPLES_PER_PACKET).enumerate() {
            let due = t0 + PACKET_TIME * i as u32;
            // Read (and drop) whatever the doorbell sends while we wait, so its writes never stall.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    r = c.sock.read_buf(&mut c.buf) => {
                        if !matches!(r, Ok(n) if n > 0) { return Err(ClientError::Closed) }
                        while c.take_response()?.is_some() {}
                    }
                }
            }
            payload.clear();
            payload.extend(chunk.iter().map(|&s| law.encode(s)));
            out.clear();
            codec::put_interleaved(&mut out, channel, &rtp(offer.payload_type, i == 0, seq, ts, ssrc, &payload));
            c.sock.write_all(&out).await.map_err(|_| ClientError::Closed)?;
            packets += 1;
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(chunk.len() as u32);
        }
        // The last packet has to play out before the session ends.
        tokio::time::sleep(PACKET_TIME).await;
        Ok(())
    }
    .await;
    // TEARDOWN at once, whatever happened while sending.
    let _ = c.request("TEARDOWN", &url, &[req]).await;
    let _ = c.sock.shutdown().await;
    sent?;
    Ok(Ok(Sent { offer, packets, first_packet }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_interleaved_frames() {
        let mut b = b"$\x01\x00\x02ab".to_vec();
        b.extend_from_slice(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nsdp");
        let (p, used) = parse_response(&b).unwrap().unwrap();
        assert_eq!((p, used), (Parsed::Interleaved, 6));
        let (p, used) = parse_response(&b[6..]).unwrap().unwrap();
        assert_eq!(used, b.len() - 6);
        let Parsed::Response(r) = p else { panic!() };
        assert_eq!((r.status, r.header("cseq"), r.body.as_slice()), (200, Some("2"), &b"sdp"[..]));
        assert_eq!(parse_response(&b[6..20]).unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response(&vec![b'x'; MAX_HEAD + 1]).is_err());
        assert!(parse_response(b"RTSP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n").is_err());
    }

    #[test]
    fn digest_challenges() {
        let c = digest_challenge("Digest realm=\"IP Camera(C1)\", nonce=\"abc\", stale=\"FALSE\"");
        assert_eq!(c, Some(("IP Camera(C1)".into(), "abc".into())));
        assert_eq!(digest_challenge("Basic realm=\"x\""), None);
        assert_eq!(digest_challenge("Digest nonce=\"n\""), None);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), head in "(RTSP/1.0 [0-9]{1,4} OK\r\n(Content-Length: [0-9]{0,6}\r\n|[A-Za-z-]{1,8}: .{0,8}\r\n){0,3}\r\n)?") {
            let mut v = head.into_bytes();
            v.extend_from_slice(&b);
            if let Ok(Some((_, used))) = parse_response(&v) {
                proptest::prop_assert!(used <= v.len());
            }
            let _ = digest_challenge(&String::from_utf8_lossy(&b));
        }
    }
}
