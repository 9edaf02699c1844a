//! The app's side of the Home Assistant Supervisor: where the options and state live, the
//! discovery announcement that lets Home Assistant offer the doorbell, the MQTT broker the
//! Supervisor knows about, and the bundled integration copied into Home Assistant's config.
//!
//! Pure parts (reply parsing, payloads, version comparison, the install decision) are plain
//! functions; the HTTP calls are a thin shell over them.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::Access;
use crate::config::{Config, Secret};
use crate::error::{Error, ErrorKind, Result, ResultExt};

/// The Supervisor gives every app this token; its presence means "running as an app".
pub const TOKEN_ENV: &str = "SUPERVISOR_TOKEN";
/// The Supervisor's API inside an app container.
pub const DEFAULT_URL: &str = "http://supervisor";
/// Test-only overrides: the Supervisor's address, the app data directory, the bundled
/// integration and Home Assistant's config directory. The container never sets them.
pub const URL_ENV: &str = "DOORBELL_BRIDGE_SUPERVISOR_URL";
pub const DATA_DIR_ENV: &str = "DOORBELL_BRIDGE_ADDON_DATA";
pub const INTEGRATION_SRC_ENV: &str = "DOORBELL_BRIDGE_INTEGRATION_SRC";
pub const HA_CONFIG_ENV: &str = "DOORBELL_BRIDGE_HA_CONFIG";

/// The app's persistent directory; the Supervisor writes `options.json` into it.
pub const DEFAULT_DATA_DIR: &str = "/data";
/// Where the Dockerfile puts the integration shipped with this version.
pub const DEFAULT_INTEGRATION_SRC: &str = "/usr/share/doorbell-bridge/custom_components/doorbell_bridge";
/// Home Assistant's config directory, mounted by `map: [homeassistant_config:rw]`.
pub const DEFAULT_HA_CONFIG: &str = "/homeassistant";
/// Integration domain = discovery service name = app slug.
pub const DOMAIN: &str = "doorbell_bridge";
const NOTIFICATION_ID: &str = "doorbell_bridge_integration";
/// The Supervisor answers in milliseconds; a stuck call must not hold up the start.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// The app data directory (`/data`).
pub fn addon_data_dir() -> PathBuf {
    PathBuf::from(env_or(DATA_DIR_ENV, DEFAULT_DATA_DIR))
}

/// Where the bundled integration is read from, and where it goes.
pub fn integration_paths() -> (PathBuf, PathBuf) {
    let src = PathBuf::from(env_or(INTEGRATION_SRC_ENV, DEFAULT_INTEGRATION_SRC));
    let dst = PathBuf::from(env_or(HA_CONFIG_ENV, DEFAULT_HA_CONFIG)).join("custom_components").join(DOMAIN);
    (src, dst)
}

/// A client of the Supervisor's REST API.
pub struct Supervisor {
    base: String,
    token: Secret,
    http: reqwest::Client,
}

/// The broker the Supervisor hands out (`GET /services/mqtt`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MqttService {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ssl: bool,
}

/// Unwraps the Supervisor's `{"result":"ok","data":{...}}`; anything else is an error that
/// carries the Supervisor's own message.
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Value> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::wrap(ErrorKind::Upstream, format!("the Supervisor answered {status} with something other than JSON"), e)
    })?;
    if (200..300).contains(&status) && v.get("result").and_then(Value::as_str) == Some("ok") {
        return Ok(v.get("data").cloned().unwrap_or(Value::Null));
    }
    let msg = v.get("message").and_then(Value::as_str).unwrap_or("no message");
    Err(Error::new(ErrorKind::Upstream, format!("the Supervisor refused ({status}): {msg}")))
}

/// What the integration needs to connect: `async_step_hassio` receives this `config`.
pub fn discovery_payload(host: &str, http_port: u16, rtsp_port: u16, access: &Access, name: &str) -> Value {
    json!({
        "service": DOMAIN,
        "config": {
            "name": name,
            "host": host,
            "port": http_port,
            "rtsp_port": rtsp_port,
            "api_token": access.api_token.expose(),
            "rtsp_username": access.rtsp_username,
            "rtsp_password": access.rtsp_password.expose(),
        }
    })
}

/// The address Home Assistant should use. Core and the app share the host network, so
/// loopback always works when the bridge listens on every address.
pub fn advertised_host(bind: std::net::IpAddr) -> String {
    if bind.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bind.to_string()
    }
}

/// Fills the MQTT settings from the Supervisor's broker.
pub fn apply_mqtt(cfg: &mut Config, svc: &MqttService) {
    cfg.mqtt.host = Some(svc.host.clone());
    cfg.mqtt.port = svc.port;
    cfg.mqtt.username = svc.username.clone().filter(|u| !u.is_empty());
    cfg.mqtt.password = svc.password.clone().filter(|p| !p.is_empty()).map(Secret::new);
}

impl Supervisor {
    /// `Some` when `SUPERVISOR_TOKEN` is set, i.e. when running as an app.
    pub fn from_env() -> Option<Supervisor> {
        let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty())?;
        let base = env_or(URL_ENV, DEFAULT_URL).trim_end_matches('/').to_string();
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().ok()?;
        Some(Supervisor { base, token: Secret::new(token), http })
    }

    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> Result<(u16, bytes::Bytes)> {
        let resp = req
            .bearer_auth(self.token.expose())
            .send()
            .await
            .kind_ctx(ErrorKind::Upstream, || format!("cannot reach the Supervisor for {what}"))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.kind_ctx(ErrorKind::Upstream, || format!("{what}: reply cut short"))?;
        Ok((status, body))
    }

    /// The broker the Supervisor knows about; `Ok(None)` when there is none (no MQTT app or
    /// integration), an error when the Supervisor cannot be asked.
    pub async fn mqtt_service(&self) -> Result<Option<MqttService>> {
        let (status, body) =
            self.call(self.http.get(format!("{}/services/mqtt", self.base)), "the MQTT service").await?;
        let data = match parse_reply(status, &body) {
            Ok(d) => d,
            // The Supervisor answers an error when no broker provides the service.
            Err(e) if (400..500).contains(&status) => {
                tracing::debug!("no MQTT service: {}", e.chain());
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if data.is_null() || data.as_object().is_some_and(|o| o.is_empty()) {
            return Ok(None);
        }
        serde_json::from_value(data)
            .map(Some)
            .kind_ctx(ErrorKind::Upstream, || "the Supervisor's MQTT service has no host or port".into())
    }

    /// Tells Home Assistant where the bridge is; returns the discovery uuid.
    pub async fn announce(&self, payload: &Value) -> Result<String> {
        let (status, body) =
            self.call(self.http.post(format!("{}/discovery", self.base)).json(payload), "discovery").await?;
        let data = parse_reply(status, &body)?;
        Ok(data.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string())
    }

    /// A persistent notification in Home Assistant, through the Supervisor's Core proxy
    /// (needs `homeassistant_api: true`). Core answers with its own JSON, not the Supervisor's.
    pub async fn notify(&self, title: &str, message: &str) -> Result<()> {
        let body = json!({"title": title, "message": message, "notification_id": NOTIFICATION_ID});
        let url = format!("{}/core/api/services/persistent_notification/create", self.base);
        let (status, _) = self.call(self.http.post(url).json(&body), "a notification").await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Upstream, format!("Home Assistant refused the notification ({status})")))
        }
    }

    /// Posts the discovery once, retrying with backoff while the Supervisor is not reachable.
    pub async fn announce_with_retry(&self, payload: Value, shutdown: tokio_util::sync::CancellationToken) {
        let mut delay = Duration::from_secs(1);
        for _ in 0..8 {
            match self.announce(&payload).await {
                Ok(uuid) => {
                    tracing::info!("announced to Home Assistant (discovery {uuid}): it should offer the doorbell now");
                    return;
                }
                Err(e) => tracing::warn!("discovery not sent, retrying in {}s: {}", delay.as_secs(), e.chain()),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
        tracing::error!("gave up announcing to Home Assistant; add the integration by hand (see the app's docs)");
    }
}

/// Compares dotted versions such as `0.1.10` and `0.2.0` number by number; a part that is not a
/// number compares as text. `None` when either side is empty.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let split = |s: &str| s.split(['.', '-', '+']).map(str::to_string).collect::<Vec<_>>();
    let (pa, pb) = (split(a), split(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).map(String::as_str).unwrap_or("0");
        let y = pb.get(i).map(String::as_str).unwrap_or("0");
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(Ordering::Equal)
}

/// The `version` of an integration's `manifest.json`, if it has a readable one.
pub fn manifest_version(dir: &Path) -> Option<String> {
    let text = std::fs::read(dir.join("manifest.json")).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

/// What the integration install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed {
        version: String,
    },
    Updated {
        from: String,
        to: String,
    },
    UpToDate {
        version: String,
    },
    /// The installed copy is newer than the bundled one (installed by hand or by HACS).
    KeptNewer {
        installed: String,
        bundled: String,
    },
    /// A directory is there but its version cannot be read: it is not ours to replace.
    KeptUnknown,
}

impl InstallOutcome {
    /// Home Assistant must restart to load new integration code.
    pub fn needs_restart(&self) -> bool {
        matches!(self, InstallOutcome::Installed { .. } | InstallOutcome::Updated { .. })
    }
}

/// The pure decision: what to do given the bundled and the installed versions.
pub fn plan_install(bundled: &str, installed: Option<Option<String>>) -> InstallOutcome {
    match installed {
        None => InstallOutcome::Installed { version: bundled.to_string() },
        Some(None) => InstallOutcome::KeptUnknown,
        Some(Some(have)) => match compare_versions(&have, bundled) {
            Some(Ordering::Less) => InstallOutcome::Updated { from: have, to: bundled.to_string() },
            Some(Ordering::Equal) => InstallOutcome::UpToDate { version: have },
            Some(Ordering::Greater) => InstallOutcome::KeptNewer { installed: have, bundled: bundled.to_string() },
            None => InstallOutcome::KeptUnknown,
        },
    }
}

/// Copies the bundled integration to `dst` unless an equal or newer version is there. The new
/// copy is written beside the target and renamed into place, so Home Assistant never sees half
/// an integration.
pub fn install_integration(src: &Path, dst: &Path) -> Result<InstallOutcome> {
    let bundled = manifest_version(src).ok_or_else(|| {
        Error::new(
            ErrorKind::Io,
            format!("the bundled integration at {} has no readable manifest version", src.display()),
        )
    })?;
    let installed = dst.exists().then(|| manifest_version(dst));
    let outcome = plan_install(&bundled, installed);
    if !outcome.needs_restart() {
        return Ok(outcome);
    }
    let parent = dst.parent().ok_or_else(|| Error::new(ErrorKind::Io, "integration target has no parent"))?;
    std::fs::create_dir_all(parent).kind_ctx(ErrorKind::Io, || format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{DOMAIN}.new"));
    let old = parent.join(format!(".{DOMAIN}.old"));
    for leftover in [&tmp, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .kind_ctx(ErrorKind::Io, || format!("cannot remove {}", leftover.display()))?;
        }
    }
    copy_tree(src, &tmp, 0)?;
    if dst.exists() {
        std::fs::rename(dst, &old).kind_ctx(ErrorKind::Io, || format!("cannot move {} aside", dst.display()))?;
    }
    std::fs::rename(&tmp, dst).kind_ctx(ErrorKind::Io, || format!("cannot put {} in place", dst.display()))?;
    if old.exists() {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(outcome)
}

/// The integration is a few flat folders; anything deeper than this is not ours.
const MAX_COPY_DEPTH: usize = 8;

fn copy_tree(src: &Path, dst: &Path, depth: usize) -> Result<()> {
    if depth > MAX_COPY_DEPTH {
        return Err(Error::new(ErrorKind::Io, format!("{} is nested too deeply", src.display())));
    }
    std::fs::create_dir_all(dst).kind_ctx(ErrorKind::Io, || format!("cannot create {}", dst.display()))?;
    let entries = std::fs::read_dir(src).kind_ctx(ErrorKind::Io, || format!("cannot read {}", src.display()))?;
    for entry in entries {
        let entry = entry.kind_ctx(ErrorKind::Io, || format!("cannot read {}", src.display()))?;
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let ft = entry.file_type().kind_ctx(ErrorKind::Io, || format!("cannot stat {}", entry.path().display()))?;
        let to = dst.join(&name);
        if ft.is_dir() {
            copy_tree(&entry.path(), &to, depth + 1)?;
        } else if ft.is_file() {
            std::fs::copy(entry.path(), &to)
                .kind_ctx(ErrorKind::Io, || format!("cannot copy {} to {}", entry.path().display(), to.display()))?;
        }
    }
    Ok(())
}

/// The app's start-up steps that come before the bridge binds its ports: the MQTT broker
/// (when none is configured) and the integration install.
pub async fn prepare(sup: &Supervisor, cfg: &mut Config) {
    if cfg.mqtt.host.is_none() {
        match sup.mqtt_service().await {
            Ok(Some(svc)) => {
                if svc.ssl {
                    tracing::warn!("the Supervisor's MQTT broker asks for TLS, which the bridge does not speak");
                }
                tracing::info!(
                    "MQTT: using Home Assistant's broker at {}:{} (user {}) given by the Supervisor",
                    svc.host,
                    svc.port,
                    svc.username.as_deref().unwrap_or("none")
                );
                let mut svc = svc;
                if !resolves(&svc.host, svc.port).await {
                    // Apps on the host network may not resolve the broker app's name
                    // (core-mosquitto); the Mosquitto app publishes its port on the host.
                    tracing::info!("MQTT: {} does not resolve here, using 127.0.0.1:{}", svc.host, svc.port);
                    svc.host = "127.0.0.1".into();
                }
                apply_mqtt(cfg, &svc);
            }
            Ok(None) => tracing::info!(
                "MQTT: no broker is set up in Home Assistant, running without MQTT (CoIoT and ONVIF still work)"
            ),
            Err(e) => {
                tracing::warn!("MQTT: cannot ask the Supervisor for a broker, running without MQTT: {}", e.chain())
            }
        }
    }
    let (src, dst) = integration_paths();
    if cfg.install_integration {
        match install_integration(&src, &dst) {
            Ok(outcome) => report_install(sup, &outcome, &dst).await,
            Err(e) => tracing::error!("cannot install the Home Assistant integration: {}", e.chain()),
        }
    } else {
        tell_once_of_newer_bundle(sup, &src, &dst, &addon_data_dir().join(NOTICE_FILE)).await;
    }
}

/// Remembers which bundled integration version the user was already told about.
pub const NOTICE_FILE: &str = "integration_notice.json";

/// With the install switched off: the bundled version to tell the user about, when the copy in
/// Home Assistant is older and this version was not told yet. `installed` as in [`plan_install`].
pub fn newer_bundle_to_tell(bundled: &str, installed: Option<Option<String>>, told: Option<&str>) -> Option<String> {
    let have = installed??;
    let newer = compare_versions(&have, bundled) == Some(Ordering::Less);
    (newer && told != Some(bundled)).then(|| bundled.to_string())
}

async fn tell_once_of_newer_bundle(sup: &Supervisor, src: &Path, dst: &Path, marker: &Path) {
    let Some(bundled) = manifest_version(src) else { return };
    let installed = dst.exists().then(|| manifest_version(dst));
    let have = installed.clone().flatten().unwrap_or_default();
    let told = std::fs::read(marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("told").and_then(Value::as_str).map(str::to_string));
    let Some(version) = newer_bundle_to_tell(&bundled, installed, told.as_deref()) else { return };
    tracing::info!(
        "this version of the app carries the integration {version}, newer than the {have} in {}; \
         it is not installed because install_integration is off",
        dst.display()
    );
    let text = format!(
        "This version of the Doorbell Bridge app carries the integration {version}; Home Assistant has {have}. \
         Turn on \"Install the Home Assistant integration\" in the app's configuration (or copy it by hand) and \
         restart Home Assistant to use it. You are told once per version."
    );
    match sup.notify("Doorbell Bridge: a newer integration is available", &text).await {
        Ok(()) => {
            let body = json!({"told": version}).to_string();
            if let Err(e) = crate::datadir::write_atomic(marker, body.as_bytes(), crate::datadir::Access::Default) {
                tracing::warn!("cannot remember the notice in {}: {e}", marker.display());
            }
        }
        Err(e) => tracing::warn!("could not post the notice of a newer integration: {}", e.chain()),
    }
}

/// Whether a host name resolves, within a short time (a broken resolver must not stall the start).
async fn resolves(host: &str, port: u16) -> bool {
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(Duration::from_secs(3), lookup).await {
        Ok(Ok(mut addrs)) => addrs.next().is_some(),
        _ => false,
    }
}

async fn report_install(sup: &Supervisor, outcome: &InstallOutcome, dst: &Path) {
    let msg = match outcome {
        InstallOutcome::Installed { version } => format!("installed the integration {version} into {}", dst.display()),
        InstallOutcome::Updated { from, to } => {
            format!("updated the integration from {from} to {to} in {}", dst.display())
        }
        InstallOutcome::UpToDate { version } => {
            tracing::info!("the integration {version} in {} is up to date", dst.display());
            return;
        }
        InstallOutcome::KeptNewer { installed, bundled } => {
            tracing::info!(
                "the integration in {} is {installed}, newer than the bundled {bundled}: left as it is",
                dst.display()
            );
            return;
        }
        InstallOutcome::KeptUnknown => {
            tracing::warn!(
                "{} exists but has no readable manifest version: left as it is (remove it to let the app install)",
                dst.display()
            );
            return;
        }
    };
    tracing::info!("{msg}; restart Home Assistant to load it");
    let text = format!(
        "The Doorbell Bridge app {msg}. Restart Home Assistant (Settings -> System -> Restart) to load it; \
         the doorbell is then offered under Settings -> Devices & services. (The app's \
         \"Install the Home Assistant integration\" option turns this off.)"
    );
    if let Err(e) = sup.notify("Doorbell Bridge: restart Home Assistant", &text).await {
        tracing::warn!("could not post the restart notification: {}", e.chain());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(compare_versions("0.1.10", "0.1.9"), Some(Ordering::Greater));
        assert_eq!(compare_versions("0.2", "0.2.0"), Some(Ordering::Equal));
        assert_eq!(compare_versions("1.0.0", "1.0.1"), Some(Ordering::Less));
        assert_eq!(compare_versions("", "1"), None);
    }

    #[test]
    fn install_plan_never_downgrades() {
        assert!(matches!(plan_install("0.2.0", None), InstallOutcome::Installed { .. }));
        assert!(matches!(plan_install("0.2.0", Some(Some("0.1.0".into()))), InstallOutcome::Updated { .. }));
        assert!(matches!(plan_install("0.2.0", Some(Some("0.2.0".into()))), InstallOutcome::UpToDate { .. }));
        assert!(matches!(plan_install("0.2.0", Some(Some("0.3.0".into()))), InstallOutcome::KeptNewer { .. }));
        assert_eq!(plan_install("0.2.0", Some(None)), InstallOutcome::KeptUnknown);
    }

    #[test]
    fn a_newer_bundle_is_told_once_and_only_when_older_is_installed() {
        let old = Some(Some("0.1.0".to_string()));
        assert_eq!(newer_bundle_to_tell("0.2.0", old.clone(), None), Some("0.2.0".into()));
        assert_eq!(newer_bundle_to_tell("0.2.0", old.clone(), Some("0.1.5")), Some("0.2.0".into()));
        assert_eq!(newer_bundle_to_tell("0.2.0", old, Some("0.2.0")), None, "told already");
        assert_eq!(newer_bundle_to_tell("0.2.0", Some(Some("0.2.0".into())), None), None);
        assert_eq!(newer_bundle_to_tell("0.2.0", Some(Some("0.3.0".into())), None), None);
        assert_eq!(newer_bundle_to_tell("0.2.0", Some(None), None), None, "not ours");
        assert_eq!(newer_bundle_to_tell("0.2.0", None, None), None, "never installed: the user chose so");
    }

    #[test]
    fn replies_unwrap_or_name_the_refusal() {
        let ok = parse_reply(200, br#"{"result":"ok","data":{"uuid":"abc"}}"#).unwrap();
        assert_eq!(ok["uuid"], "abc");
        let e = parse_reply(400, br#"{"result":"error","message":"Service not enabled"}"#).unwrap_err();
        assert!(e.msg().contains("Service not enabled"));
        assert!(parse_reply(200, b"<html>").is_err());
    }

    proptest::proptest! {
        #[test]
        fn replies_never_panic(status in 100u16..600, body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_reply(status, &body);
        }

        #[test]
        fn version_order_is_antisymmetric(a in "[0-9a-z.+-]{0,16}", b in "[0-9a-z.+-]{0,16}") {
            let ab = compare_versions(&a, &b);
            let ba = compare_versions(&b, &a);
            proptest::prop_assert_eq!(ab, ba.map(Ordering::reverse));
            if !a.trim().is_empty() {
                proptest::prop_assert_eq!(compare_versions(&a, &a), Some(Ordering::Equal));
            }
        }
    }

    #[test]
    fn advertised_host_is_loopback_for_any_address() {
        assert_eq!(advertised_host("0.0.0.0".parse().unwrap()), "127.0.0.1");
        assert_eq!(advertised_host("::".parse().unwrap()), "127.0.0.1");
        assert_eq!(advertised_host("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
