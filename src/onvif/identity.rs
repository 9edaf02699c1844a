//! Who the doorbell is: the name the user gave it (`doorbell.name`) and what ONVIF
//! `GetDeviceInformation` reports (manufacturer, model, firmware). Both go into the `doorbell`
//! object of `/api/status`, so Home Assistant's device page shows the real model and firmware.
//!
//! `parse_device_information` is pure; `run` is the thin task that asks the doorbell (again after
//! every reboot the bridge notices, as a firmware update reboots it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::device::{Device, CALL_TIMEOUT};
use super::soap;
use super::xml::{self, Element, NS_TDS};
use crate::events::{Bus, StatusSource};
use crate::status::{DoorbellIdentity, Status};

/// Longest value kept from the device: a broken device must not fill the status body.
pub const MAX_FIELD_CHARS: usize = 128;
/// Retry delays while the doorbell does not answer (it may be asleep or booting).
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Asked again this often: a firmware update changes the answer.
const REFRESH: Duration = Duration::from_secs(6 * 3600);

/// What `GetDeviceInformation` says about the device. The serial number is left out: it
/// identifies the unit and nothing here needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInformation {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
}

/// Reads a `GetDeviceInformationResponse`; `None` when the body is another element.
pub fn parse_device_information(env: &Element) -> Option<DeviceInformation> {
    let b = xml::body(env).filter(|b| b.ns == NS_TDS && b.name == "GetDeviceInformationResponse")?;
    let field = |name: &str| {
        b.child(NS_TDS, name)
            .map(|e| e.text_trim().chars().filter(|c| !c.is_control()).take(MAX_FIELD_CHARS).collect::<String>())
            .filter(|s| !s.is_empty())
    };
    Some(DeviceInformation {
        manufacturer: field("Manufacturer"),
        model: field("Model"),
        firmware: field("FirmwareVersion"),
    })
}

/// The `doorbell` keys this module owns in `/api/status`.
pub struct Identity {
    name: Option<String>,
    info: Mutex<Option<DeviceInformation>>,
}

impl Identity {
    pub fn new(name: &str) -> Arc<Identity> {
        let name = Some(name.trim().to_string()).filter(|n| !n.is_empty());
        Arc::new(Identity { name, info: Mutex::new(None) })
    }

    pub fn info(&self) -> Option<DeviceInformation> {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stores the answer; true when it differs from what was known.
    pub fn set_info(&self, info: DeviceInformation) -> bool {
        let mut g = self.info.lock().unwrap_or_else(|e| e.into_inner());
        let changed = g.as_ref() != Some(&info);
        *g = Some(info);
        changed
    }
}

impl StatusSource for Identity {
    fn status(&self, status: &mut Status) {
        let info = self.info().unwrap_or_default();
        status.doorbell.identity = Some(DoorbellIdentity {
            name: self.name.clone(),
            manufacturer: info.manufacturer,
            model: info.model,
            firmware: info.firmware,
        });
    }

    fn metrics(&self, _out: &mut crate::metrics::Metrics) {}
}

/// Asks the doorbell until it answers, then every `REFRESH` and after it came back online.
/// A change is pushed to event-stream clients as a `state` event.
pub async fn run(device: Arc<Device>, identity: Arc<Identity>, bus: Arc<Bus>, shutdown: CancellationToken) {
    let mut backoff = crate::backoff::Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut was_online = bus.state().doorbell_online;
    loop {
        let wait = match ask(&device).await {
            Ok(info) => {
                backoff.reset();
                if identity.set_info(info) {
                    bus.publish_state();
                }
                REFRESH
            }
            Err(e) => {
                tracing::debug!("GetDeviceInformation: {e}");
                backoff.next_delay()
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Wake early when the doorbell comes back online (after a reboot or an outage).
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let online = bus.state().doorbell_online;
                    let back = online && !was_online;
                    was_online = online;
                    if back {
                        break;
                    }
                }
            }
        }
    }
}

async fn ask(device: &Device) -> Result<DeviceInformation, super::device::CallError> {
    let env = device
        .call(
            soap::ACTION_GET_DEVICE_INFORMATION,
            &device.device_url(),
            "",
            &soap::body_get_device_information(),
            CALL_TIMEOUT,
        )
        .await?;
    parse_device_information(&env).ok_or(super::device::CallError::Unexpected("no GetDeviceInformationResponse"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(inner: &str) -> Element {
        let s = format!(
            r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:d="http://www.onvif.org/ver10/device/wsdl"><e:Body>{inner}</e:Body></e:Envelope>"#
        );
        xml::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn reads_the_three_fields_and_skips_empty_ones() {
        let env = reply(
            "<d:GetDeviceInformationResponse><d:Manufacturer> EZVIZ </d:Manufacturer><d:Model>D	B1</d:Model>\
             <d:FirmwareVersion></d:FirmwareVersion><d:SerialNumber>SECRET123</d:SerialNumber></d:GetDeviceInformationResponse>",
        );
        let info = parse_device_information(&env).unwrap();
        assert_eq!(info.manufacturer.as_deref(), Some("EZVIZ"));
        assert_eq!(info.model.as_deref(), Some("DB1"));
        assert_eq!(info.firmware, None);
        assert!(!format!("{info:?}").contains("SECRET123"));
    }

    #[test]
    fn another_body_is_none_and_long_values_are_cut() {
        assert_eq!(parse_device_information(&reply("<d:SystemRebootResponse/>")), None);
        let long = "x".repeat(10_000);
        let env = reply(&format!(
            "<d:GetDeviceInformationResponse><d:Model>{long}</d:Model></d:GetDeviceInformationResponse>"
        ));
        assert_eq!(parse_device_information(&env).unwrap().model.unwrap().len(), MAX_FIELD_CHARS);
    }

    #[test]
    fn status_keys_are_null_until_known() {
        let id = Identity::new("Front door");
        let mut status = crate::events::Bus::new().report();
        status.doorbell.online = true;
        id.status(&mut status);
        let doorbell = serde_json::to_value(&status.doorbell).unwrap();
        let want = json!({"online": true, "name": "Front door", "manufacturer": null, "model": null, "firmware": null});
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&doorbell[k], v, "{k} in {doorbell}");
        }
        let info = DeviceInformation { manufacturer: Some("EZVIZ".into()), model: Some("DB1".into()), firmware: None };
        assert!(id.set_info(info.clone()));
        assert!(!id.set_info(info));
        id.status(&mut status);
        assert_eq!(serde_json::to_value(&status.doorbell).unwrap()["model"], json!("DB1"));
        assert_eq!(Identity::new("  ").name, None);
    }
}
