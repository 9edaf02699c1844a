//! Typed values read from the configuration's strings: addresses are parsed once, here, with the
//! messages `check-config` prints, so consumers never parse (or silently fall back) again.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const IP: &str = "must be an IP address such as 0.0.0.0 or 127.0.0.1";
const SOCKET: &str = "must be IP:PORT, e.g. 0.0.0.0:53";

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d)
}

pub fn ip<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    text(d)?.trim().parse().map_err(|_| serde::de::Error::custom(IP))
}

pub fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(|_| serde::de::Error::custom(IP)),
    }
}

pub fn opt_socket<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(|_| serde::de::Error::custom(SOCKET)),
    }
}

/// `snapshot.url`: unset, the doorbell's usual URL; `""`, none (firmware 211101 removed it, so
/// pictures come from the stream's keyframes); else an http(s) URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotUrl {
    #[default]
    Default,
    None,
    Url(url::Url),
}

impl<'de> Deserialize<'de> for SnapshotUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SnapshotUrl, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s.as_deref().map(str::trim) {
            None => Ok(SnapshotUrl::Default),
            Some("") => Ok(SnapshotUrl::None),
            Some(u) => match url::Url::parse(u) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(SnapshotUrl::Url(u)),
                _ => Err(serde::de::Error::custom("must be an http:// or https:// URL, or \"\" for none")),
            },
        }
    }
}

impl Serialize for SnapshotUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SnapshotUrl::Default => s.serialize_none(),
            SnapshotUrl::None => s.serialize_str(""),
            SnapshotUrl::Url(u) => s.serialize_str(u.as_str()),
        }
    }
}

/// `*_secs` settings: whole seconds outside (YAML, options, `check-config`), a `Duration` inside.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.as_secs())
    }
}
