//! Which Shelly the user named in `coiot.device_id`, and how a packet's device id matches it.
//! Neutral ground: the configuration checks the name, ring detection matches packets.

/// Which device we listen to, from the user's `coiot.device_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMatch {
    /// Upper-case MAC, 12 hex digits.
    pub mac: String,
    /// Model when the user gave the full id (`SHUNI-1`).
    pub model: Option<String>,
}

/// How a packet's id matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The full 12-hex MAC matched.
    Full,
    /// Older firmware sends only the last 6 hex digits: a weaker match.
    Suffix,
}

impl DeviceMatch {
    pub fn parse(s: &str) -> Option<DeviceMatch> {
        let s = s.trim();
        let parts: Vec<&str> = s.split('#').collect();
        let (model, mac) = match parts.as_slice() {
            [mac] => (None, *mac),
            [model, mac] | [model, mac, _] => (Some(model.to_string()), *mac),
            _ => return None,
        };
        let mac = mac.trim_start_matches("shellyuni-").replace([':', '-'], "");
        if mac.len() != 12 || !mac.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        Some(DeviceMatch { mac: mac.to_ascii_uppercase(), model })
    }

    /// Matches a packet's `MODEL#ID#VER` against the configured device.
    pub fn matches(&self, device_id: &str) -> Option<Identity> {
        let mut parts = device_id.split('#');
        let model = parts.next()?;
        let id = parts.next()?;
        if let Some(m) = &self.model {
            if !m.eq_ignore_ascii_case(model) {
                return None;
            }
        }
        if id.eq_ignore_ascii_case(&self.mac) {
            Some(Identity::Full)
        } else if id.len() == 6 && self.mac[6..].eq_ignore_ascii_case(id) {
            Some(Identity::Suffix)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_match() {
        let d = DeviceMatch::parse("SHUNI-1#C45BBE6B9A12#2").unwrap();
        assert_eq!(d.matches("SHUNI-1#c45bbe6b9a12#2"), Some(Identity::Full));
        assert_eq!(d.matches("SHUNI-1#6B9A12#2"), Some(Identity::Suffix));
        assert_eq!(d.matches("SHSW-1#C45BBE6B9A12#2"), None);
        let d = DeviceMatch::parse("c4:5b:be:6b:9a:12").unwrap();
        assert_eq!(d.matches("SHSW-1#E8DB84D2C0FE#2"), None);
        assert!(DeviceMatch::parse("nonsense").is_none());
    }
}
