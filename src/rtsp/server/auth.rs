//! RTSP authentication, pure: Digest (RFC 2617, with or without `qop=auth`) and Basic.
//! Used for viewers of the bridge and by the simulated doorbell.

use base64::Engine;
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

/// The server side of one connection's challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
}

impl Challenge {
    pub fn new(realm: &str) -> Challenge {
        Challenge { realm: realm.to_string(), nonce: crate::access::random_token(16) }
    }

    /// `WWW-Authenticate` values: Digest first (what cameras and clients prefer), then Basic.
    pub fn headers(&self, basic: bool) -> Vec<(&'static str, String)> {
        let mut h = vec![("WWW-Authenticate", format!("Digest realm=\"{}\", nonce=\"{}\"", self.realm, self.nonce))];
        if basic {
            h.push(("WWW-Authenticate", format!("Basic realm=\"{}\"", self.realm)));
        }
        h
    }

    /// Whether an `Authorization` value proves `user`/`pass` for this request.
    pub fn check(&self, authorization: Option<&str>, method: &str, user: &str, pass: &str) -> bool {
        let Some(a) = authorization.map(str::trim) else { return false };
        if let Some(b64) = a.strip_prefix("Basic ") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else { return false };
            let want = format!("{user}:{pass}");
            return bool::from(raw.ct_eq(want.as_bytes()));
        }
        let Some(params) = a.strip_prefix("Digest ") else { return false };
        let p = digest_params(params);
        let get = |k: &str| p.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
        let (Some(u), Some(realm), Some(nonce), Some(uri), Some(resp)) =
            (get("username"), get("realm"), get("nonce"), get("uri"), get("response"))
        else {
            return false;
        };
        if u != user || realm != self.realm || nonce != self.nonce {
            return false;
        }
        let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let want = match (get("qop"), get("nc"), get("cnonce")) {
            (Some(qop), Some(nc), Some(cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
            _ => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        bool::from(want.as_bytes().ct_eq(resp.to_ascii_lowercase().as_bytes()))
    }
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// `k="v", k2=v2` -> pairs; bounded by the input (a request head is at most a few KiB).
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() && out.len() < 32 {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((key, value));
    }
    out
}

/// A Digest `Authorization` value, for tests and for clients we write ourselves.
pub fn digest_authorization(user: &str, pass: &str, realm: &str, nonce: &str, method: &str, uri: &str) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
    format!("Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_and_basic() {
        let c = Challenge { realm: "r".into(), nonce: "n1".into() };
        let good = digest_authorization("viewer", "pw", "r", "n1", "DESCRIBE", "rtsp://h/main");
        assert!(c.check(Some(&good), "DESCRIBE", "viewer", "pw"));
        assert!(!c.check(Some(&good), "SETUP", "viewer", "pw"));
        assert!(!c.check(Some(&good), "DESCRIBE", "viewer", "other"));
        let stale = digest_authorization("viewer", "pw", "r", "n0", "DESCRIBE", "rtsp://h/main");
        assert!(!c.check(Some(&stale), "DESCRIBE", "viewer", "pw"));
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("viewer:pw"));
        assert!(c.check(Some(&basic), "PLAY", "viewer", "pw"));
        assert!(!c.check(Some("Basic !!!"), "PLAY", "viewer", "pw"));
        assert!(!c.check(None, "PLAY", "viewer", "pw"));
    }

    #[test]
    fn digest_with_qop() {
        // RFC 2617 section 3.5 example.
        let c = Challenge { realm: "testrealm@host.com".into(), nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into() };
        let a =
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
                 uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
                 response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        assert!(c.check(Some(a), "GET", "Mufasa", "Circle Of Life"));
    }
}
