//! RTSP authentication of the bridge's viewers, pure: Digest (RFC 2617, with or without
//! `qop=auth`) and Basic. Header parsing and hashing are the shared ones of [`crate::digest`].
//! Used for viewers of the bridge and by the simulated doorbell.

use base64::Engine;
use subtle::ConstantTimeEq;

use crate::digest::{self, Algorithm, QopFields};

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
        let realm = digest::quote(&self.realm);
        let mut h = vec![("WWW-Authenticate", format!("Digest realm={realm}, nonce={}", digest::quote(&self.nonce)))];
        if basic {
            h.push(("WWW-Authenticate", format!("Basic realm={realm}")));
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
        if !a.starts_with("Digest ") {
            return false;
        }
        let Some(p) = digest::parse_authorization(a.as_bytes()) else { return false };
        let get = |k: &str| p.param(k);
        let (Some(u), Some(realm), Some(nonce), Some(uri), Some(resp)) =
            (get("username"), get("realm"), get("nonce"), get("uri"), get("response"))
        else {
            return false;
        };
        if u != user || realm != self.realm || nonce != self.nonce {
            return false;
        }
        // Our challenge names no algorithm, so the answer is MD5 (RFC 2617 default).
        let alg = Algorithm::Md5;
        let ha1 = digest::ha1(alg, user, realm, pass, nonce, "");
        let ha2 = digest::ha2(alg, method, uri, false);
        let qop = match (get("qop"), get("nc"), get("cnonce")) {
            (Some(qop), Some(nc), Some(cnonce)) => Some(QopFields { qop, nc, cnonce }),
            _ => None,
        };
        let want = digest::response(alg, &ha1, nonce, &ha2, qop);
        bool::from(want.as_bytes().ct_eq(resp.to_ascii_lowercase().as_bytes()))
    }
}

/// A Digest `Authorization` value, for tests and for clients we write ourselves.
pub use crate::digest::simple_authorization as digest_authorization;

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

    proptest::proptest! {
        #[test]
        fn any_printable_credentials_round_trip(user in "[ -~]{0,24}", pass in "[ -~]{0,24}") {
            // The client's quoting and the server's parsing are the shared ones: they must agree.
            let c = Challenge { realm: "Doorbell \"Bridge\"".into(), nonce: "n1".into() };
            let a = digest_authorization(&user, &pass, &c.realm, "n1", "DESCRIBE", "rtsp://h/main");
            let wrong = format!("{}x", pass);
            proptest::prop_assert!(c.check(Some(&a), "DESCRIBE", &user, &pass));
            proptest::prop_assert!(!c.check(Some(&a), "DESCRIBE", &user, &wrong));
        }
    }
}
