//! Ports: what one part of the bridge asks of another, defined here so that neither depends on
//! the other. The API asks the doorbell for commands through `Commands` (ONVIF implements it);
//! snapshots ask for keyframes through `media::KeyframeSource` (the RTSP hub implements it).

pub use crate::media::{Keyframe, KeyframeSource};

/// Commands the API can ask of the doorbell (the integration's reboot button).
pub trait Commands: Send + Sync {
    fn reboot(&self) -> futures::future::BoxFuture<'static, crate::error::Result<()>>;
}
