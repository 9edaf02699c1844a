//! ONVIF: the doorbell's PIR, video motion and field detection events through a PullPoint
//! subscription, its reachability (`doorbell.online`), and the reboot command.
//!
//! `xml` and `soap` are pure (bytes and time in, values out); `topics` is the topic -> sensor
//! table; `device` is the HTTP shell; `pullpoint` is the one owner task of the subscription.
//!
//! Sensor events and `Initialized`: the bus emits a `sensor` event whenever a state changes,
//! including unknown -> known. An `Initialized` message (the state at subscription time) is
//! applied like any other, so after a (re)subscription a sensor leaves "unknown" with one event,
//! and one whose state did not change emits nothing. Times of sensor events are the bridge's
//! clock, never the device's (which may be hours off).

pub mod audio_output;
pub mod device;
pub mod identity;
pub mod pullpoint;
pub mod soap;
pub mod topics;
pub mod xml;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::Result;
use crate::events::Bus;

/// The reboot button of the integration: `SystemReboot` on the device service.
pub struct OnvifCommands {
    pub device: Arc<device::Device>,
}

impl crate::ports::Commands for OnvifCommands {
    fn reboot(&self) -> BoxFuture<'static, Result<()>> {
        let device = self.device.clone();
        Box::pin(async move {
            let msg = device.system_reboot().await?;
            tracing::info!(reply = %msg, "doorbell reboot requested");
            Ok(())
        })
    }
}

/// In the data directory: the subscription held, so that a bridge that was killed (no
/// Unsubscribe) ends it at its next start instead of leaving it to count on the doorbell.
pub const STATE_FILE: &str = "onvif_subscription.json";

/// Starts the subscription owner task; returns the commands for the API.
pub fn start(
    config: &Config,
    state_file: std::path::PathBuf,
    bus: Arc<Bus>,
    identity: Arc<identity::Identity>,
    shutdown: CancellationToken,
    tasks: &mut crate::tasks::Tasks,
) -> Result<Arc<OnvifCommands>> {
    let dev = Arc::new(device::Device::new(config)?);
    let (d, b, sd) = (dev.clone(), bus.clone(), shutdown.clone());
    tasks.supervise("onvif_identity", move || identity::run(d.clone(), identity.clone(), b.clone(), sd.clone()));
    let (d, cfg) = (dev.clone(), config.onvif.clone());
    tasks.supervise("onvif_events", move || {
        let pp = pullpoint::PullPoint::new(d.clone(), cfg.clone(), bus.clone()).with_state_file(state_file.clone());
        pp.run(shutdown.clone())
    });
    Ok(Arc::new(OnvifCommands { device: dev }))
}
