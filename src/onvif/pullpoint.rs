//! The PullPoint subscription's one owner task. `run()` loops over `run_once()` with backoff;
//! one `run_once()` is one subscription: create it, pull with a long timeout and pull again at
//! once (no pause between pulls), renew before it expires, and end it with Unsubscribe. When
//! the device says the subscription is gone, a new one is created at once; when the device is
//! unreachable every sensor becomes unknown, so nothing stays stuck "on".

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::device::{CallError, Device, CALL_TIMEOUT, PULL_GRACE};
use super::soap::{self, FaultClass, Subscription};
use super::topics::Table;
use crate::config::OnvifConfig;
use crate::events::Bus;

/// Messages asked for per pull.
pub const MESSAGE_LIMIT: u32 = 100;
/// Renew when this share of the subscription's lifetime has passed.
const RENEW_AT: f64 = 0.8;
/// Malformed replies in a row tolerated on one subscription before starting over.
const MAX_PARSE_ERRORS: u32 = 5;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Pause after the doorbell refused our credentials twice (with a fresh clock in between).
const AUTH_BACKOFF: Duration = Duration::from_secs(300);
/// Time given to Unsubscribe at shutdown or before replacing a subscription.
const UNSUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a subscription ended without an error.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Shutdown,
    /// The device dropped it (fault, reboot): make a new one at once.
    Gone,
}

pub struct PullPoint {
    device: Arc<Device>,
    cfg: OnvifConfig,
    table: Table,
    bus: Arc<Bus>,
    /// Relative termination times were refused once: use absolute ones from then on.
    absolute: bool,
    pull_timeout: u64,
    message_limit: u32,
    /// A subscription that may still be alive on the device (we lost contact while holding it).
    stale: Option<Subscription>,
    /// Where the live subscription's address is kept across restarts.
    state_file: Option<std::path::PathBuf>,
}

impl PullPoint {
    pub fn new(device: Arc<Device>, cfg: OnvifConfig, bus: Arc<Bus>) -> PullPoint {
        let table = Table::from_config(&cfg);
        let pull_timeout = cfg.pull_timeout_secs.as_secs().clamp(1, 600);
        PullPoint {
            device,
            cfg,
            table,
            bus,
            absolute: false,
            pull_timeout,
            message_limit: MESSAGE_LIMIT,
            stale: None,
            state_file: None,
        }
    }

    /// Remembers the live subscription in `path`; one left there by a previous run is ended first.
    pub fn with_state_file(mut self, path: std::path::PathBuf) -> PullPoint {
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                if let Some(address) = v["address"].as_str() {
                    self.stale = Some(Subscription {
                        address: address.to_string(),
                        reference_parameters: v["reference_parameters"].as_str().unwrap_or("").to_string(),
                        current_time: None,
                        termination_time: None,
                    });
                }
            }
        }
        self.state_file = Some(path);
        self
    }

    /// Through the data directory's atomic writer, on a blocking thread (it syncs to disk).
    async fn remember(&self, sub: Option<&Subscription>) {
        let Some(path) = self.state_file.clone() else { return };
        let body = sub.map(|s| {
            serde_json::json!({"address": s.address, "reference_parameters": s.reference_parameters}).to_string()
        });
        let write = move || {
            match body {
                Some(b) => crate::datadir::write_atomic(&path, b.as_bytes(), crate::datadir::Access::Private),
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    r => r,
                },
            }
            .map_err(|e| format!("cannot update {}: {e}", path.display()))
        };
        if let Ok(Err(e)) = tokio::task::spawn_blocking(write).await {
            tracing::debug!("{e}");
        }
    }

    fn mark_unknown(&self) {
        let now = Utc::now();
        for s in self.table.sensors() {
            self.bus.set_sensor(s, None, now);
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = crate::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let started = Instant::now();
            match self.run_once(&shutdown).await {
                Ok(Ended::Shutdown) => {
                    self.remember(None).await;
                    break;
                }
                Ok(Ended::Gone) => {
                    self.remember(None).await;
                    tracing::info!("ONVIF subscription gone; subscribing again");
                    self.bus.set_source("onvif", false);
                    self.mark_unknown();
                    backoff.reset();
                    // Recreate at once, but never spin if the device keeps dropping it.
                    if started.elapsed() > Duration::from_secs(2) {
                        continue;
                    }
                }
                Err(e) => {
                    let refused = matches!(e, CallError::Http(401) | CallError::Http(403))
                        || e.fault_class() == Some(FaultClass::AuthOrClockSkew);
                    if refused {
                        // Retried once with a fresh clock already: the code or user is wrong.
                        // Hikvision firmware locks an address out after repeated failures, so wait long.
                        tracing::error!(
                            "ONVIF: the doorbell refused the user or verification code (doorbell.username / \
                             doorbell.password); trying again in {} s",
                            AUTH_BACKOFF.as_secs()
                        );
                    } else {
                        tracing::warn!("ONVIF events: {e}");
                    }
                    if e.unreachable() {
                        self.bus.set_online(false);
                    }
                    self.bus.set_source("onvif", false);
                    self.mark_unknown();
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff.reset();
                    }
                    if refused {
                        tokio::select! {
                            _ = tokio::time::sleep(AUTH_BACKOFF) => {}
                            _ = shutdown.cancelled() => break,
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // No state change is published at shutdown: event streams are closing with the bridge.
    }

    fn termination(&self, secs: u64) -> String {
        if self.absolute {
            let dev = self.device.offset().unwrap_or_default().device_now(Utc::now());
            soap::onvif_time(dev + chrono::Duration::seconds(secs as i64))
        } else {
            format!("PT{secs}S")
        }
    }

    async fn unsubscribe(&self, sub: &Subscription) {
        let r = self
            .device
            .call(
                soap::ACTION_UNSUBSCRIBE,
                &sub.address,
                &sub.reference_parameters,
                &soap::body_unsubscribe(),
                UNSUBSCRIBE_TIMEOUT,
            )
            .await;
        match r {
            Ok(env) if soap::is_unsubscribe_response(&env) => tracing::debug!("ONVIF unsubscribed"),
            Ok(_) => tracing::debug!("ONVIF unsubscribe: unexpected reply"),
            Err(e) => tracing::debug!("ONVIF unsubscribe: {e}"),
        }
    }

    /// Create (falling back to an absolute termination time when a relative one is refused).
    async fn subscribe(&mut self, events: &str) -> Result<Subscription, CallError> {
        let secs = self.cfg.subscription_secs.as_secs().clamp(5, 86_400);
        for _ in 0..2 {
            let body = soap::body_create_pullpoint(&self.termination(secs));
            match self.device.call(soap::ACTION_CREATE_PULLPOINT, events, "", &body, CALL_TIMEOUT).await {
                Ok(env) => {
                    let mut sub =
                        soap::parse_create_pullpoint(&env).ok_or(CallError::Unexpected("no SubscriptionReference"))?;
                    sub.address = self.device.rebase(&sub.address);
                    return Ok(sub);
                }
                Err(CallError::Fault(f)) if f.class == FaultClass::InvalidArgument && !self.absolute => {
                    tracing::info!("the doorbell refused a relative termination time; using absolute times");
                    self.absolute = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(CallError::Unexpected("subscription refused"))
    }

    /// When to renew, from the lifetime the device granted.
    fn renew_due(&self, sub: &Subscription, from: Instant) -> Instant {
        let requested = self.cfg.subscription_secs.as_secs().clamp(5, 86_400) as f64;
        let granted = match (sub.current_time, sub.termination_time) {
            (Some(c), Some(t)) if t > c => (t - c).num_milliseconds() as f64 / 1000.0,
            _ => requested,
        };
        // Pulls are cut short at this point (see run_once), so no long poll outlives the subscription.
        let at = (granted * RENEW_AT).max(1.0);
        from + Duration::from_secs_f64(at)
    }

    async fn renew(&mut self, sub: &mut Subscription) -> Result<(), CallError> {
        let secs = self.cfg.subscription_secs.as_secs().clamp(5, 86_400);
        for _ in 0..2 {
            let body = soap::body_renew(&self.termination(secs));
            match self
                .device
                .call(soap::ACTION_RENEW, &sub.address, &sub.reference_parameters, &body, CALL_TIMEOUT)
                .await
            {
                Ok(env) => {
                    let r = soap::parse_renew(&env).ok_or(CallError::Unexpected("no RenewResponse"))?;
                    sub.current_time = r.current_time;
                    sub.termination_time = r.termination_time;
                    return Ok(());
                }
                Err(CallError::Fault(f)) if f.class == FaultClass::InvalidArgument && !self.absolute => {
                    self.absolute = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(CallError::Unexpected("renew refused"))
    }

    /// One subscription, from creation to its end.
    pub async fn run_once(&mut self, shutdown: &CancellationToken) -> Result<Ended, CallError> {
        // The clock first: it also tells whether the device answers at all.
        self.device.measure_clock().await?;
        self.bus.set_online(true);
        if let Some(old) = self.stale.take() {
            // Contact was lost while holding it; it may still live on the device and count
            // against its subscription limit.
            self.unsubscribe(&old).await;
            self.remember(None).await;
        }
        let services = self.device.services().await?;
        let events = services.events.ok_or(CallError::Unexpected("the doorbell has no events service"))?;
        let mut sub = self.subscribe(&events).await?;
        self.remember(Some(&sub)).await;
        tracing::info!("ONVIF events subscribed");
        self.bus.set_source("onvif", true);
        let mut renew_at = self.renew_due(&sub, Instant::now());
        let mut parse_errors = 0u32;
        loop {
            if Instant::now() >= renew_at {
                match self.renew(&mut sub).await {
                    Ok(()) => renew_at = self.renew_due(&sub, Instant::now()),
                    Err(CallError::Fault(f)) if f.class == FaultClass::SubscriptionGone => return Ok(Ended::Gone),
                    Err(e) => {
                        self.stale = Some(sub);
                        return Err(e);
                    }
                }
            }
            // Never wait past the renewal: a short subscription gets short polls.
            let until_renew = renew_at.saturating_duration_since(Instant::now()).as_secs().max(1);
            let poll = self.pull_timeout.min(until_renew);
            let body = soap::body_pull_messages(poll, self.message_limit);
            let timeout = Duration::from_secs(poll) + PULL_GRACE;
            let pull =
                self.device.call(soap::ACTION_PULL_MESSAGES, &sub.address, &sub.reference_parameters, &body, timeout);
            let res = tokio::select! {
                r = pull => r,
                _ = shutdown.cancelled() => {
                    self.unsubscribe(&sub).await;
                    return Ok(Ended::Shutdown);
                }
            };
            match res {
                Ok(env) => {
                    let Some(pm) = soap::parse_pull_messages(&env) else {
                        parse_errors += 1;
                        if parse_errors >= MAX_PARSE_ERRORS {
                            self.stale = Some(sub);
                            return Err(CallError::Unexpected("no PullMessagesResponse"));
                        }
                        continue;
                    };
                    parse_errors = 0;
                    let now = Utc::now();
                    for c in self.table.apply(&pm.messages) {
                        self.bus.set_sensor(c.sensor, c.state, now);
                    }
                }
                Err(CallError::Fault(f)) if f.class == FaultClass::PullLimits => {
                    let max_t = f.max_timeout.as_deref().and_then(soap::parse_duration_secs).unwrap_or(60.0);
                    let max_m = f.max_message_limit.as_deref().and_then(|m| m.trim().parse().ok()).unwrap_or(10);
                    self.pull_timeout = self.pull_timeout.min(max_t.floor().max(1.0) as u64);
                    self.message_limit = self.message_limit.min(max_m).max(1);
                    tracing::info!(
                        timeout_secs = self.pull_timeout,
                        limit = self.message_limit,
                        "ONVIF pull limited by the doorbell"
                    );
                }
                Err(CallError::Fault(f)) if f.class == FaultClass::SubscriptionGone => return Ok(Ended::Gone),
                Err(CallError::Parse(e)) => {
                    // A reply cut short: keep the subscription, pull again after a pause.
                    parse_errors += 1;
                    tracing::debug!("ONVIF pull: {e}");
                    if parse_errors >= MAX_PARSE_ERRORS {
                        self.stale = Some(sub);
                        return Err(CallError::Parse(e));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(BACKOFF_MIN) => {}
                        _ = shutdown.cancelled() => {
                            self.unsubscribe(&sub).await;
                            return Ok(Ended::Shutdown);
                        }
                    }
                }
                Err(e) => {
                    self.stale = Some(sub);
                    return Err(e);
                }
            }
        }
    }
}
