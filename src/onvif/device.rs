//! The doorbell's ONVIF endpoint as seen by the bridge: one HTTP client, the device's clock
//! offset, the service addresses, and `call()` that sends one SOAP request and classifies the
//! answer. The HTTP status is looked at before any XML is parsed.

use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;

use super::soap::{self, ClockOffset, Fault, FaultClass, Reply, UsernameToken};
use super::xml::{Element, XmlError, NS_TEV};
use crate::config::{Config, Secret};
use crate::error::{Error, ErrorKind};

/// Time allowed for a request other than a long poll.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time given to a PullMessages beyond its own long-poll timeout.
pub const PULL_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum CallError {
    /// Connection refused, reset, timed out.
    Transport(String),
    /// An HTTP status without a SOAP fault (401 with an HTML page, 503 while booting...).
    Http(u16),
    /// A 2xx reply that is not readable SOAP.
    Parse(XmlError),
    Fault(Fault),
    /// Well-formed SOAP, but not the expected answer.
    Unexpected(&'static str),
}

impl CallError {
    pub fn fault_class(&self) -> Option<FaultClass> {
        match self {
            CallError::Fault(f) => Some(f.class),
            _ => None,
        }
    }
    /// The device did not answer at all, or answered as a booting device does.
    pub fn unreachable(&self) -> bool {
        matches!(self, CallError::Transport(_) | CallError::Http(502..=504))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "no answer: {e}"),
            CallError::Http(401) => write!(f, "HTTP 401: the doorbell refused the user or verification code"),
            CallError::Http(s) => write!(f, "HTTP status {s}"),
            CallError::Parse(e) => write!(f, "{e}"),
            CallError::Fault(x) => write!(f, "SOAP fault {} ({})", x.class.as_str(), x.reason),
            CallError::Unexpected(w) => write!(f, "unexpected reply: {w}"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        let kind = match &e {
            CallError::Transport(_) => ErrorKind::Timeout,
            CallError::Http(401 | 403) => ErrorKind::Unauthenticated,
            CallError::Fault(f) if f.class == FaultClass::AuthOrClockSkew => ErrorKind::Unauthenticated,
            _ => ErrorKind::Upstream,
        };
        Error::wrap(kind, "ONVIF request failed", e)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Services {
    pub device: String,
    pub events: Option<String>,
    pub media: Option<String>,
}

pub struct Device {
    http: reqwest::Client,
    /// `http://host:port`, from the configuration.
    base: String,
    username: String,
    password: Secret,
    offset: Mutex<Option<ClockOffset>>,
    services: Mutex<Option<Services>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("base", &self.base).field("username", &self.username).finish()
    }
}

impl Device {
    pub fn new(cfg: &Config) -> Result<Device, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::wrap(ErrorKind::Internal, "cannot build the HTTP client", e))?;
        let host = &cfg.doorbell.host;
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.clone() };
        Ok(Device {
            http,
            base: format!("http://{}:{}", host, cfg.doorbell.http_port),
            username: cfg.doorbell.username.clone(),
            password: cfg.doorbell.password.clone(),
            offset: Mutex::new(None),
            services: Mutex::new(None),
        })
    }

    pub fn device_url(&self) -> String {
        format!("{}/onvif/device_service", self.base)
    }

    /// Devices report addresses with the IP they believe they have (often wrong behind NAT or
    /// after DHCP changes): keep only the path and query and send to the configured host.
    pub fn rebase(&self, xaddr: &str) -> String {
        match url::Url::parse(xaddr) {
            Ok(u) => {
                let mut s = format!("{}{}", self.base, u.path());
                if let Some(q) = u.query() {
                    s.push('?');
                    s.push_str(q);
                }
                s
            }
            Err(_) if xaddr.starts_with('/') => format!("{}{}", self.base, xaddr),
            Err(_) => xaddr.to_string(),
        }
    }

    pub fn offset(&self) -> Option<ClockOffset> {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one request and reads the answer. `token`: whether to sign with WS-Security.
    async fn post(
        &self,
        action: &str,
        url: &str,
        reference_parameters: &str,
        body: &str,
        token: bool,
        timeout: Duration,
    ) -> Result<Element, CallError> {
        let token = token.then(|| {
            let dev_now = self.offset().unwrap_or_default().device_now(Utc::now());
            UsernameToken::new(&self.username, self.password.expose(), rand::random(), dev_now)
        });
        let env =
            soap::envelope(action, url, &soap::message_id(rand::random()), token.as_ref(), reference_parameters, body);
        let resp = self
            .http
            .post(url)
            .header("Content-Type", format!("application/soap+xml; charset=utf-8; action=\"{action}\""))
            .body(env)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| CallError::Transport(without_url(e)))?;
        let status = resp.status().as_u16();
        // Status first: a 401 page, a proxy error or a booting web server is not a SOAP reply.
        let may_be_soap = (200..300).contains(&status) || status == 400 || status == 500;
        if !may_be_soap {
            return Err(CallError::Http(status));
        }
        let bytes = read_bounded(resp).await?;
        match soap::parse_reply(&bytes) {
            Ok(Reply::Ok(env)) if (200..300).contains(&status) => Ok(env),
            Ok(Reply::Ok(_)) => Err(CallError::Http(status)),
            Ok(Reply::Fault(f)) => Err(CallError::Fault(f)),
            Err(_) if !(200..300).contains(&status) => Err(CallError::Http(status)),
            Err(e) => Err(CallError::Parse(e)),
        }
    }

    /// A signed request; after `NotAuthorized` the clock is measured again and the request
    /// retried once (the device's clock may have jumped: DST, manual time, a reboot to 1970).
    pub async fn call(
        &self,
        action: &str,
        url: &str,
        reference_parameters: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<Element, CallError> {
        if self.offset().is_none() {
            self.measure_clock().await?;
        }
        match self.post(action, url, reference_parameters, body, true, timeout).await {
            Err(CallError::Fault(f)) if f.class == FaultClass::AuthOrClockSkew => {
                tracing::info!("ONVIF NotAuthorized: measuring the doorbell's clock again and retrying once");
                self.measure_clock().await?;
                self.post(action, url, reference_parameters, body, true, timeout).await
            }
            r => r,
        }
    }

    /// Unauthenticated GetSystemDateAndTime; keeps the offset of the device's UTC clock.
    pub async fn measure_clock(&self) -> Result<ClockOffset, CallError> {
        let sent = Utc::now();
        let env = self
            .post(
                soap::ACTION_GET_SYSTEM_DATE_AND_TIME,
                &self.device_url(),
                "",
                &soap::body_get_system_date_and_time(),
                false,
                CALL_TIMEOUT,
            )
            .await?;
        let received = Utc::now();
        let dt = soap::parse_system_date_time(&env).ok_or(CallError::Unexpected("no SystemDateAndTime"))?;
        let utc = dt.utc.ok_or(CallError::Unexpected("no UTCDateTime"))?;
        // The device's seconds are truncated: compare with the middle of the round trip.
        let host = sent + (received - sent) / 2;
        let off = ClockOffset::measure(utc, host);
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) = Some(off);
        if off.0.abs() > 5_000 {
            tracing::info!(offset_secs = off.0 / 1000, "the doorbell's clock differs from ours; using its time");
        }
        Ok(off)
    }

    /// Service addresses, from GetCapabilities or (when unsupported) GetServices; cached.
    pub async fn services(&self) -> Result<Services, CallError> {
        if let Some(s) = self.services.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(s);
        }
        let device = self.device_url();
        let mut s = Services { device: device.clone(), ..Default::default() };
        match self.call(soap::ACTION_GET_CAPABILITIES, &device, "", &soap::body_get_capabilities(), CALL_TIMEOUT).await
        {
            Ok(env) => {
                for (name, x) in soap::parse_capabilities(&env) {
                    match name.as_str() {
                        "Events" => s.events = Some(self.rebase(&x)),
                        "Media" => s.media = Some(self.rebase(&x)),
                        _ => {}
                    }
                }
            }
            Err(CallError::Fault(f)) if f.class == FaultClass::UnsupportedOperation => {
                let env =
                    self.call(soap::ACTION_GET_SERVICES, &device, "", &soap::body_get_services(), CALL_TIMEOUT).await?;
                for (ns, x) in soap::parse_services(&env) {
                    if ns == NS_TEV {
                        s.events = Some(self.rebase(&x));
                    } else if ns == super::xml::NS_TRT {
                        s.media = Some(self.rebase(&x));
                    }
                }
            }
            Err(e) => return Err(e),
        }
        *self.services.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
        Ok(s)
    }

    pub async fn system_reboot(&self) -> Result<String, CallError> {
        let env = self
            .call(soap::ACTION_SYSTEM_REBOOT, &self.device_url(), "", &soap::body_system_reboot(), CALL_TIMEOUT)
            .await?;
        soap::parse_system_reboot(&env).ok_or(CallError::Unexpected("no SystemRebootResponse"))
    }

    /// The first profile's snapshot URI (what the snapshot cache may use instead of the default path).
    pub async fn snapshot_uri(&self) -> Result<String, CallError> {
        let media = self.services().await?.media.ok_or(CallError::Unexpected("no media service"))?;
        let env = self.call(soap::ACTION_GET_PROFILES, &media, "", &soap::body_get_profiles(), CALL_TIMEOUT).await?;
        let p = soap::parse_profiles(&env).into_iter().next().ok_or(CallError::Unexpected("no media profile"))?;
        let env = self
            .call(soap::ACTION_GET_SNAPSHOT_URI, &media, "", &soap::body_get_snapshot_uri(&p.token), CALL_TIMEOUT)
            .await?;
        soap::parse_media_uri(&env).ok_or(CallError::Unexpected("no MediaUri"))
    }

    pub async fn stream_uri(&self, profile: &str) -> Result<String, CallError> {
        let media = self.services().await?.media.ok_or(CallError::Unexpected("no media service"))?;
        let env = self
            .call(soap::ACTION_GET_STREAM_URI, &media, "", &soap::body_get_stream_uri(profile), CALL_TIMEOUT)
            .await?;
        soap::parse_media_uri(&env).ok_or(CallError::Unexpected("no MediaUri"))
    }
}

/// reqwest's errors name the URL; ours carry no credentials in URLs, but keep messages short.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    let mut s = kind.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| CallError::Transport(without_url(e)))? {
        if out.len() + chunk.len() > super::xml::MAX_BYTES {
            return Err(CallError::Parse(XmlError::Malformed("reply too large".into())));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
