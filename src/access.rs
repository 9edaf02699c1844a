//! Who may see what the doorbell protects. Loopback clients may be trusted; everyone else needs
//! the API token (HTTP) or the RTSP credentials. When the user configured none, they are generated
//! once and kept in the data directory, so they survive restarts and the user can look them up.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::error::{Error, ErrorKind, Result, ResultExt};

pub const CREDENTIALS_FILE: &str = "credentials.json";

#[derive(Clone, Debug)]
pub struct Access {
    pub api_token: Secret,
    pub rtsp_username: String,
    pub rtsp_password: Secret,
    pub open: bool,
    pub trust_loopback: bool,
    /// Where generated credentials are kept (shown to the user, never the values).
    pub credentials_path: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
struct Stored {
    api_token: Option<String>,
    rtsp_username: Option<String>,
    rtsp_password: Option<String>,
}

pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Access {
    /// Configured values win; missing ones come from (or are generated into) the credentials file.
    pub fn resolve(cfg: &Config, data_dir: &Path) -> Result<Access> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let mut stored: Stored = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).kind_ctx(ErrorKind::Config, || {
                format!("{} is not valid JSON; remove it to generate new credentials", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(Error::wrap(ErrorKind::Io, format!("cannot read {}", path.display()), e)),
        };
        let mut changed = false;
        if cfg.server.api_token.is_none() && stored.api_token.is_none() {
            stored.api_token = Some(random_token(24));
            changed = true;
        }
        if cfg.server.rtsp_username.is_none() && stored.rtsp_password.is_none() {
            stored.rtsp_username = Some("viewer".into());
            stored.rtsp_password = Some(random_token(12));
            changed = true;
        }
        if changed {
            std::fs::create_dir_all(data_dir)
                .kind_ctx(ErrorKind::Io, || format!("cannot create data directory {}", data_dir.display()))?;
            let body = serde_json::to_vec_pretty(&stored).unwrap_or_default();
            crate::datadir::write_atomic(&path, &body, crate::datadir::Access::Private)
                .kind_ctx(ErrorKind::Io, || format!("cannot write {}", path.display()))?;
            tracing::info!(
                "generated access credentials (API token, RTSP viewer login); they are kept in {}",
                path.display()
            );
        }
        let api_token =
            cfg.server.api_token.clone().unwrap_or_else(|| Secret::new(stored.api_token.unwrap_or_default()));
        let (rtsp_username, rtsp_password) = match (&cfg.server.rtsp_username, &cfg.server.rtsp_password) {
            (Some(u), Some(p)) => (u.clone(), p.clone()),
            _ => (
                stored.rtsp_username.unwrap_or_else(|| "viewer".into()),
                Secret::new(stored.rtsp_password.unwrap_or_default()),
            ),
        };
        Ok(Access {
            api_token,
            rtsp_username,
            rtsp_password,
            open: cfg.server.open_access,
            trust_loopback: cfg.server.trust_loopback,
            credentials_path: path,
        })
    }

    /// Whether a client at `peer` may skip credentials.
    pub fn trusted(&self, peer: IpAddr) -> bool {
        self.open || (self.trust_loopback && is_loopback(peer))
    }

    /// Checks an `Authorization` header value for the API token, in constant time.
    pub fn check_bearer(&self, peer: IpAddr, authorization: Option<&[u8]>) -> Result<()> {
        if self.trusted(peer) {
            return Ok(());
        }
        let Some(h) = authorization else {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "this API needs `Authorization: Bearer <token>` (see the add-on's credentials file)",
            ));
        };
        let given = h.strip_prefix(b"Bearer ").unwrap_or(b"");
        if !self.api_token.is_empty() && bool::from(given.ct_eq(self.api_token.expose().as_bytes())) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Unauthenticated, "wrong or malformed API token"))
        }
    }
}

pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::parse("doorbell: {host: 192.0.2.10}").unwrap()
    }

    #[test]
    fn generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::resolve(&cfg(), dir.path()).unwrap();
        let b = Access::resolve(&cfg(), dir.path()).unwrap();
        assert!(a.api_token.expose().len() >= 32);
        assert_eq!(a.api_token, b.api_token);
        assert_eq!(a.rtsp_password, b.rtsp_password);
        assert_eq!(a.rtsp_username, "viewer");
    }

    #[test]
    fn bearer_rules() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::resolve(&cfg(), dir.path()).unwrap();
        let lan: IpAddr = "192.0.2.20".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(a.check_bearer(lo, None).is_ok());
        assert!(a.check_bearer(lan, None).is_err());
        assert!(a.check_bearer(lan, Some(b"Bearer nope")).is_err());
        let good = format!("Bearer {}", a.api_token.expose());
        assert!(a.check_bearer(lan, Some(good.as_bytes())).is_ok());
        assert!(a.check_bearer("::ffff:127.0.0.1".parse().unwrap(), None).is_ok());
    }
}
