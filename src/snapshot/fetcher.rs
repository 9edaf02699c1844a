//! Fetching from the doorbell's snapshot URL: Digest or Basic as the doorbell asks, one fetch at
//! a time, never more often than `snapshot.min_interval_ms`, and after a 404 (firmware 211101
//! has no snapshot URL) not again for `MISSING_RETRY`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;

use super::latest::Latest;
use super::{err, Image, MAX_JPEG_BYTES, MISSING_RETRY};
use crate::config::{Config, SnapshotUrl};
use crate::digest as auth;
use crate::error::{ErrorKind, Result};
use auth::Scheme;

/// What the fetcher remembers between fetches; guarded by the single-flight lock.
#[derive(Default)]
struct FetchState {
    last_start: Option<Instant>,
    /// The last failure, when it ended, shared with everyone who waited for it.
    last_err: Option<(Instant, ErrorKind, String)>,
    /// The doorbell said 404: no snapshot URL until then.
    missing_until: Option<Instant>,
    /// The scheme the doorbell asked for last; later requests answer it at once.
    auth: Option<Scheme>,
    nc: u32,
    cnonce: String,
}

pub(super) struct Fetcher {
    url: Option<String>,
    username: String,
    password: crate::config::Secret,
    client: reqwest::Client,
    min_interval: Duration,
    state: tokio::sync::Mutex<FetchState>,
    pub(super) fetches: AtomicU64,
    pub(super) failures: AtomicU64,
}

impl Fetcher {
    pub(super) fn new(cfg: &Config, timeout: Duration) -> Fetcher {
        // `snapshot.url: ""` means the doorbell has none: pictures come from keyframes only.
        let url = match &cfg.snapshot.url {
            SnapshotUrl::None => None,
            SnapshotUrl::Url(u) => Some(u.to_string()),
            SnapshotUrl::Default if cfg.doorbell.host.is_empty() => None,
            SnapshotUrl::Default => {
                Some(format!("http://{}:{}/onvif/snapshot.jpg", cfg.doorbell.host, cfg.doorbell.http_port))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()
            .unwrap_or_default();
        Fetcher {
            url,
            username: cfg.doorbell.username.clone(),
            password: cfg.doorbell.password.clone(),
            client,
            min_interval: Duration::from_millis(cfg.snapshot.min_interval_ms),
            state: tokio::sync::Mutex::new(FetchState::default()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// A picture from the doorbell that arrived after `since`, kept in `latest`. One fetch at a
    /// time; callers arriving meanwhile share its result, success or failure. With
    /// `wait_interval`, waits out the minimum interval instead of answering with the last result.
    pub(super) async fn refresh(&self, latest: &Latest, since: Instant, wait_interval: bool) -> Result<Image> {
        let mut st = self.state.lock().await;
        if let Some(img) = latest.arrived_since(since) {
            return Ok(img);
        }
        if let Some((done, kind, msg)) = &st.last_err {
            if *done >= since {
                return Err(err(*kind, msg.clone()));
            }
        }
        if st.missing_until.is_some_and(|t| Instant::now() < t) {
            return Err(err(ErrorKind::NotFound, "the doorbell has no snapshot URL"));
        }
        let Some(url) = self.url.clone() else {
            return Err(err(ErrorKind::NotFound, "no snapshot URL is known"));
        };
        if let Some(next) = st.last_start.map(|t| t + self.min_interval) {
            if Instant::now() < next {
                if wait_interval {
                    tokio::time::sleep_until(next.into()).await;
                } else if let Some((img, _)) = latest.get() {
                    return Ok(img);
                } else if let Some((_, kind, msg)) = &st.last_err {
                    return Err(err(*kind, msg.clone()));
                } else {
                    tokio::time::sleep_until(next.into()).await;
                }
            }
        }
        st.last_start = Some(Instant::now());
        self.fetches.fetch_add(1, Relaxed);
        match self.fetch_once(&mut st, &url).await {
            Ok(img) => {
                st.last_err = None;
                latest.set(img.clone());
                Ok(img)
            }
            Err(e) => {
                self.failures.fetch_add(1, Relaxed);
                if e.kind() == ErrorKind::NotFound {
                    st.missing_until = Some(Instant::now() + MISSING_RETRY);
                }
                tracing::debug!("snapshot fetch failed: {}", e.msg());
                st.last_err = Some((Instant::now(), e.kind(), e.msg().to_string()));
                Err(e)
            }
        }
    }

    fn authorization(&self, st: &mut FetchState, uri: &str) -> Option<String> {
        match st.auth.as_ref()? {
            Scheme::Basic => Some(auth::basic_authorization(&self.username, self.password.expose())),
            Scheme::Digest(ch) => {
                st.nc = st.nc.wrapping_add(1);
                Some(auth::digest_authorization(
                    ch,
                    &self.username,
                    self.password.expose(),
                    "GET",
                    uri,
                    st.nc,
                    &st.cnonce,
                ))
            }
        }
    }
    /// One picture from `url`: answers a 401 once with the scheme it asks for.
    async fn fetch_once(&self, st: &mut FetchState, url: &str) -> Result<Image> {
        let parsed = url::Url::parse(url).map_err(|_| err(ErrorKind::Config, "the snapshot URL is not a URL"))?;
        let uri = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let mut header = self.authorization(st, &uri);
        for attempt in 0..2 {
            let mut req = self.client.get(parsed.clone());
            if let Some(h) = &header {
                req = req.header(reqwest::header::AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(|e| {
                let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Upstream };
                err(kind, format!("snapshot fetch failed: {}", e.without_url()))
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                let challenges = resp.headers().get_all(reqwest::header::WWW_AUTHENTICATE);
                let scheme = auth::choose(challenges.iter().map(|v| v.as_bytes()));
                // A second 401 to a fresh answer is a wrong password, unless the nonce just went stale.
                let stale = matches!(&scheme, Some(Scheme::Digest(d)) if d.stale);
                if attempt == 1 && !stale {
                    st.auth = None;
                    return Err(err(
                        ErrorKind::Unauthenticated,
                        "the doorbell refused the username or password for snapshots",
                    ));
                }
                let Some(scheme) = scheme else {
                    return Err(err(
                        ErrorKind::Upstream,
                        "the doorbell asks for an authentication the bridge cannot answer",
                    ));
                };
                st.auth = Some(scheme);
                st.nc = 0;
                st.cnonce = auth::new_cnonce();
                header = self.authorization(st, &uri);
                continue;
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(err(ErrorKind::NotFound, "the doorbell has no snapshot URL (404)"));
            }
            if !status.is_success() {
                return Err(err(
                    ErrorKind::Upstream,
                    format!("the doorbell answered {status} to the snapshot request"),
                ));
            }
            let body = read_limited(resp, MAX_JPEG_BYTES).await?;
            if !body.starts_with(&[0xFF, 0xD8]) {
                return Err(err(ErrorKind::Upstream, "the doorbell's snapshot is not a JPEG"));
            }
            return Ok(Image::new(body, Utc::now()));
        }
        Err(err(ErrorKind::Unauthenticated, "the doorbell refused the snapshot request"))
    }
}

/// Reads a body, refusing more than `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Bytes> {
    if resp.content_length().is_some_and(|n| n as usize > limit) {
        return Err(err(ErrorKind::Upstream, "the doorbell's snapshot is too large"));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| err(ErrorKind::Upstream, format!("snapshot download failed: {}", e.without_url())))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(err(ErrorKind::Upstream, "the doorbell's snapshot is too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
