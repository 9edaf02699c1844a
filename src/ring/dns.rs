//! The "DNS method", pure: a DNS query -> the name looked up. On a press the DB1 uploads a
//! snapshot to the cloud and first resolves `alarm.eu.s3.amazonaws.com` (EU) or
//! `alarm.use.s3.amazonaws.com` (US); a query for a configured name from the doorbell's address is
//! a ring. Whether every press makes a query (DNS caching) is unverified, so this method is off by
//! default and best used beside a Shelly.

/// RFC 1035 §2.3.4: a name is at most 255 octets, a label at most 63.
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Larger datagrams are not plain queries.
pub const MAX_QUERY: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    Truncated,
    TooLarge,
    /// A response, not a query (QR bit set), or not a standard query (opcode).
    NotQuery,
    NoQuestion,
    BadName,
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DnsError::Truncated => "DNS message cut short",
            DnsError::TooLarge => "DNS message too large",
            DnsError::NotQuery => "not a standard DNS query",
            DnsError::NoQuestion => "DNS query without a question",
            DnsError::BadName => "malformed DNS name",
        })
    }
}

impl std::error::Error for DnsError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Lower case, without the trailing dot.
    pub name: String,
    /// 1 = A, 28 = AAAA...
    pub qtype: u16,
}

impl Query {
    /// Whether the name is one of `names` (case-insensitive, a trailing dot ignored).
    pub fn matches(&self, names: &[String]) -> bool {
        names.iter().any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&self.name))
    }
}

/// Parses the first question of a DNS query.
pub fn parse_query(buf: &[u8]) -> Result<Query, DnsError> {
    if buf.len() > MAX_QUERY {
        return Err(DnsError::TooLarge);
    }
    if buf.len() < 12 {
        return Err(DnsError::Truncated);
    }
    let id = u16::from_be_bytes([buf[0], buf[1]]);
    let flags = u16::from_be_bytes([buf[2], buf[3]]);
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 {
        return Err(DnsError::NotQuery);
    }
    if u16::from_be_bytes([buf[4], buf[5]]) == 0 {
        return Err(DnsError::NoQuestion);
    }
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = *buf.get(pos).ok_or(DnsError::Truncated)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (0xC0) and extended label types have no place in a question we accept.
        if len > MAX_LABEL {
            return Err(DnsError::BadName);
        }
        let label = buf.get(pos..pos + len).ok_or(DnsError::Truncated)?;
        pos += len;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
                return Err(DnsError::BadName);
            }
            name.push(c.to_ascii_lowercase() as char);
        }
        if name.len() > MAX_NAME {
            return Err(DnsError::BadName);
        }
    }
    let q = buf.get(pos..pos + 4).ok_or(DnsError::Truncated)?;
    Ok(Query { id, name, qtype: u16::from_be_bytes([q[0], q[1]]) })
}

/// Queries forwarded at once; more are dropped (the client retries).
const MAX_IN_FLIGHT: usize = 64;
/// How long the upstream may take to answer one query.
const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The forwarding resolver: every query goes to the upstream and its answer back, untouched; a query
/// for a configured name from the doorbell's address is a press.
pub async fn run(cfg: crate::config::Config, tx: super::ObservationTx, shutdown: tokio_util::sync::CancellationToken) {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;
    // Both are checked by the configuration (dns_upstream is required with dns_listen).
    let (Some(listen), Some(upstream)) = (cfg.ring.dns_listen, cfg.ring.dns_upstream) else { return };
    let doorbell: Option<IpAddr> = cfg.doorbell.host.parse().ok();
    let sock = match tokio::net::UdpSocket::bind(listen).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!("DNS method off: cannot listen on {listen}: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_QUERY + 1];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
        };
        let query = buf[..n].to_vec();
        if let Ok(q) = parse_query(&query) {
            if q.matches(&cfg.ring.dns_names) && doorbell.is_none_or(|d| d == from.ip()) {
                tracing::debug!(name = q.name, "the doorbell looked up its upload host: a press");
                let ob = super::detector::Observation {
                    trigger: true,
                    ..super::detector::Observation::new(super::detector::Source::Dns)
                };
                let _ = tx.try_send(ob);
            }
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let sock = sock.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let bind: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let Ok(up) = tokio::net::UdpSocket::bind(bind).await else { return };
            if up.send_to(&query, upstream).await.is_err() {
                return;
            }
            let mut answer = vec![0u8; 4096];
            if let Ok(Ok((n, src))) = tokio::time::timeout(UPSTREAM_TIMEOUT, up.recv_from(&mut answer)).await {
                if src == upstream {
                    let _ = sock.send_to(&answer[..n], from).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_responses_and_pointers() {
        let mut q = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        assert_eq!(parse_query(&q), Err(DnsError::NotQuery));
        q[2] = 0x01;
        assert_eq!(parse_query(&q).unwrap().name, "a");
        q[12] = 0xc0;
        assert_eq!(parse_query(&q), Err(DnsError::BadName));
    }
}
