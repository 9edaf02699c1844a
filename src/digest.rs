//! HTTP and RTSP Digest authentication (RFC 7616 / RFC 2617 / RFC 2069), one implementation for
//! both sides: the bridge answering the doorbell's challenges (snapshot URL, RTSP back channel) and
//! the bridge checking its own viewers' answers (RTSP server, simulated doorbell). Header parsing,
//! quoting and the response hash live here. Pure functions: the caller passes nonces in.

use base64::Engine;
use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Longest challenge header we look at; the doorbell's are a few hundred bytes.
pub const MAX_CHALLENGE_LEN: usize = 4096;
/// Most parameters kept per challenge, and most challenges kept per header.
pub const MAX_PARAMS: usize = 16;
pub const MAX_CHALLENGES: usize = 8;

/// One challenge: its scheme (lowercased) and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: Option<&str>) -> Option<Algorithm> {
        match s.map(|s| s.to_ascii_uppercase()).as_deref() {
            None | Some("MD5") => Some(Algorithm::Md5),
            Some("MD5-SESS") => Some(Algorithm::Md5Sess),
            Some("SHA-256") => Some(Algorithm::Sha256),
            Some("SHA-256-SESS") => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    pub fn hash(self, s: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(s.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex::encode(Sha256::digest(s.as_bytes())),
        }
    }
}

/// What a Digest challenge asks; kept between requests so later ones authenticate at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `auth` when offered; `None` for the RFC 2069 form without qop.
    pub qop: Option<Qop>,
    pub stale: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    Auth,
    /// Only when the server offers nothing else; our requests are GETs with an empty body.
    AuthInt,
}

impl Qop {
    pub fn name(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// The scheme to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Digest(DigestChallenge),
    Basic,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses one `WWW-Authenticate` value, which may hold several challenges. Never panics; keeps
/// at most [`MAX_CHALLENGES`] challenges of [`MAX_PARAMS`] parameters; ignores what it cannot read.
pub fn parse_challenges(header: &[u8]) -> Vec<Challenge> {
    let s = &header[..header.len().min(MAX_CHALLENGE_LEN)];
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t' || s[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= s.len() {
            break;
        }
        let start = i;
        while i < s.len() && is_tchar(s[i]) {
            i += 1;
        }
        if i == start {
            // Not a token: skip the byte.
            i += 1;
            continue;
        }
        let token = String::from_utf8_lossy(&s[start..i]).to_ascii_lowercase();
        let mut j = i;
        while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
            j += 1;
        }
        if j < s.len() && s[j] == b'=' {
            // A parameter of the current challenge (or token68 padding, which we ignore).
            j += 1;
            while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
                j += 1;
            }
            let value = if j < s.len() && s[j] == b'"' {
                j += 1;
                let mut v = Vec::new();
                while j < s.len() && s[j] != b'"' {
                    if s[j] == b'\\' && j + 1 < s.len() {
                        j += 1;
                    }
                    v.push(s[j]);
                    j += 1;
                }
                j += 1; // closing quote (or end)
                String::from_utf8_lossy(&v).into_owned()
            } else {
                let vs = j;
                while j < s.len() && s[j] != b',' && s[j] != b' ' && s[j] != b'\t' {
                    j += 1;
                }
                String::from_utf8_lossy(&s[vs..j]).into_owned()
            };
            i = j;
            if let Some(c) = out.last_mut() {
                if c.params.len() < MAX_PARAMS {
                    c.params.push((token, value));
                }
            }
        } else {
            // A new challenge's scheme.
            if out.len() >= MAX_CHALLENGES {
                break;
            }
            out.push(Challenge { scheme: token, params: Vec::new() });
            i = j;
        }
    }
    out
}

/// Picks the challenge to answer among all `WWW-Authenticate` headers: a Digest we can compute
/// (MD5 or SHA-256, qop auth) first, else Basic. `None` when nothing fits.
pub fn choose<'a>(headers: impl IntoIterator<Item = &'a [u8]>) -> Option<Scheme> {
    let mut basic = false;
    let mut best: Option<DigestChallenge> = None;
    for h in headers {
        for c in parse_challenges(h) {
            match c.scheme.as_str() {
                "basic" => basic = true,
                "digest" => {
                    if let Some(d) = digest_challenge(&c) {
                        // Prefer SHA-256 when the server offers both (RFC 7616 section 3.7).
                        let better = match &best {
                            None => true,
                            Some(b) => b.algorithm == Algorithm::Md5 && d.algorithm == Algorithm::Sha256,
                        };
                        if better {
                            best = Some(d);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    best.map(Scheme::Digest).or(if basic { Some(Scheme::Basic) } else { None })
}

fn digest_challenge(c: &Challenge) -> Option<DigestChallenge> {
    let nonce = c.param("nonce")?.to_string();
    let algorithm = Algorithm::parse(c.param("algorithm"))?;
    let qop = match c.param("qop") {
        None => None,
        Some(q) => {
            let offered: Vec<String> = q.split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
            if offered.iter().any(|s| s == "auth") {
                Some(Qop::Auth)
            } else if offered.iter().any(|s| s == "auth-int") {
                Some(Qop::AuthInt)
            } else {
                return None;
            }
        }
    };
    Some(DigestChallenge {
        realm: c.param("realm").unwrap_or("").to_string(),
        nonce,
        opaque: c.param("opaque").map(str::to_string),
        algorithm,
        qop,
        stale: c.param("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

/// `H(A1)`: the secret part of the response; the `-sess` algorithms fold in both nonces.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str, nonce: &str, cnonce: &str) -> String {
    let ha1 = alg.hash(&format!("{username}:{realm}:{password}"));
    if matches!(alg, Algorithm::Md5Sess | Algorithm::Sha256Sess) {
        alg.hash(&format!("{ha1}:{nonce}:{cnonce}"))
    } else {
        ha1
    }
}

/// `H(A2)` of a request with an empty body (`auth-int` hashes that empty body).
pub fn ha2(alg: Algorithm, method: &str, uri: &str, auth_int: bool) -> String {
    if auth_int {
        alg.hash(&format!("{method}:{uri}:{}", alg.hash("")))
    } else {
        alg.hash(&format!("{method}:{uri}"))
    }
}

/// The `qop`, `nc` and `cnonce` fields exactly as they travel in the header.
#[derive(Debug, Clone, Copy)]
pub struct QopFields<'a> {
    pub qop: &'a str,
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// `response` from its parts: `H(HA1:nonce:nc:cnonce:qop:HA2)`, or `H(HA1:nonce:HA2)` without qop.
pub fn response(alg: Algorithm, ha1: &str, nonce: &str, ha2: &str, qop: Option<QopFields<'_>>) -> String {
    match qop {
        None => alg.hash(&format!("{ha1}:{nonce}:{ha2}")),
        Some(q) => alg.hash(&format!("{ha1}:{nonce}:{}:{}:{}:{ha2}", q.nc, q.cnonce, q.qop)),
    }
}

/// The `response` value of RFC 7616 section 3.4.1.
pub fn digest_response(
    ch: &DigestChallenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let alg = ch.algorithm;
    let ha1 = ha1(alg, username, &ch.realm, password, &ch.nonce, cnonce);
    let ha2 = ha2(alg, method, uri, ch.qop == Some(Qop::AuthInt));
    let nc = format!("{nc:08x}");
    response(alg, &ha1, &ch.nonce, &ha2, ch.qop.map(|q| QopFields { qop: q.name(), nc: &nc, cnonce }))
}

/// A quoted-string: `"` and `\` escaped, as [`parse_challenges`] reads them back.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The `Authorization` header value answering `ch`.
pub fn digest_authorization(
    ch: &DigestChallenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let response = digest_response(ch, username, password, method, uri, nc, cnonce);
    let mut h = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, algorithm={}, response=\"{response}\"",
        quote(username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        ch.algorithm.name()
    );
    if let Some(q) = ch.qop {
        h.push_str(&format!(", qop={}, nc={nc:08x}, cnonce={}", q.name(), quote(cnonce)));
    }
    if let Some(o) = &ch.opaque {
        h.push_str(&format!(", opaque={}", quote(o)));
    }
    h
}

pub fn basic_authorization(username: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")))
}

/// A client nonce: 16 random bytes, hex.
pub fn new_cnonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The RFC 2069 form (MD5, no qop) that RTSP cameras and clients speak: what the bridge sends the
/// doorbell's RTSP server and what tests send the bridge's.
pub fn simple_authorization(user: &str, pass: &str, realm: &str, nonce: &str, method: &str, uri: &str) -> String {
    let alg = Algorithm::Md5;
    let resp = response(alg, &ha1(alg, user, realm, pass, nonce, ""), nonce, &ha2(alg, method, uri, false), None);
    format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{resp}\"",
        quote(user),
        quote(realm),
        quote(nonce),
        quote(uri)
    )
}

/// Reads a Digest `Authorization` header (the simulator checks answers with it).
pub fn parse_authorization(header: &[u8]) -> Option<Challenge> {
    parse_challenges(header).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(h: &str) -> DigestChallenge {
        match choose([h.as_bytes()]) {
            Some(Scheme::Digest(d)) => d,
            other => panic!("not a digest challenge: {other:?}"),
        }
    }

    #[test]
    fn rfc2617_example() {
        let c = ch(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let r = digest_response(&c, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b");
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
        let h = digest_authorization(&c, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b");
        assert!(h.contains("nc=00000001") && h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""), "{h}");
    }

    #[test]
    fn rfc7616_examples_md5_and_sha256() {
        let hdr_sha = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let hdr_md5 = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let sha = ch(hdr_sha);
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        assert_eq!(
            digest_response(&sha, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, cnonce),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let md5 = ch(hdr_md5);
        assert_eq!(
            digest_response(&md5, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, cnonce),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        // Both offered (two headers): SHA-256 wins.
        match choose([hdr_md5.as_bytes(), hdr_sha.as_bytes()]) {
            Some(Scheme::Digest(d)) => assert_eq!(d.algorithm, Algorithm::Sha256),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn digest_preferred_over_basic_in_one_header() {
        let h = br#"Basic realm="DS-HD1", Digest realm="DS-HD1", nonce="abc", qop="auth""#;
        let cs = parse_challenges(h);
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[1].param("nonce"), Some("abc"));
        assert!(matches!(choose([&h[..]]), Some(Scheme::Digest(_))));
        assert_eq!(choose([&b"Basic realm=\"x\""[..]]), Some(Scheme::Basic));
        assert_eq!(choose([&b"Bearer realm=\"x\""[..]]), None);
        // Unknown algorithm and no Basic: nothing we can answer.
        assert_eq!(choose([&b"Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256"[..]]), None);
    }

    #[test]
    fn basic_header() {
        assert_eq!(basic_authorization("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics_and_stays_bounded(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6000)) {
            let cs = parse_challenges(&bytes);
            proptest::prop_assert!(cs.len() <= MAX_CHALLENGES);
            for c in &cs {
                proptest::prop_assert!(c.params.len() <= MAX_PARAMS);
            }
            let _ = choose([&bytes[..]]);
        }

        #[test]
        fn quoted_values_round_trip(v in "[ -~]{0,40}") {
            let h = format!("Digest realm={}, nonce=\"n\"", quote(&v));
            let cs = parse_challenges(h.as_bytes());
            proptest::prop_assert_eq!(cs[0].param("realm"), Some(v.as_str()));
        }
    }
}
