//! The bridge's one broker connection (rumqttc): listens to the chime sources configured under
//! `mqtt.*` (Shelly Gen1/Gen2, generic) and publishes the bridge's own events under
//! `mqtt.topic_prefix`:
//! - `<prefix>/availability` `online`/`offline`, retained, `offline` also as the last will;
//! - `<prefix>/ring` the ring as JSON (`{"id","at","source","press","snapshot"}`), never retained;
//! - `<prefix>/sensor/<name>` `ON`/`OFF`, retained (state).
//!
//! rumqttc quirks handled here: `poll()` after an error reconnects at once (we sleep, with
//! backoff); subscriptions may be gone after a reconnect (resubscribe on every ConnAck);
//! the polling task never awaits a publish (a full request queue would deadlock it).
//!
//! The session is persistent (clean session off): while the bridge is away — its own backoff, a
//! broker restart with persistence (the Home Assistant Mosquitto add-on keeps sessions), a bridge
//! restart — the broker queues the presses published meanwhile (QoS 1) and delivers them on
//! reconnect, so none is lost. After a long absence those queued messages are old news: they set
//! state but never ring (see [`queued_is_stale`]).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{Bus, Payload};
use crate::ring::shelly_mqtt::MqttSources;
use crate::ring::ObservationTx;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Short enough that a restarted broker is found again within seconds; clean sessions lose what
/// is published before we resubscribe.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Queued presses delivered after an absence longer than this would ring too late to be useful.
pub const QUEUED_STALE_AFTER: Duration = Duration::from_secs(30);
/// How long after the ConnAck the broker's queued messages keep arriving (it sends them at once).
pub const QUEUED_BURST: Duration = Duration::from_millis(500);

/// Whether a message is a stale queued one: it arrived in the burst right after a reconnect that
/// resumed our session, and the bridge was away longer than [`QUEUED_STALE_AFTER`] (or for an
/// unknown time: the first connection of this process). Such messages count as retained: state,
/// never a ring.
pub fn queued_is_stale(session_present: bool, away: Option<Duration>, since_connack: Duration) -> bool {
    session_present && since_connack <= QUEUED_BURST && away.is_none_or(|a| a > QUEUED_STALE_AFTER)
}
/// Requests queued towards the event loop; beyond this a publish is dropped and counted.
const REQUEST_QUEUE: usize = 256;
/// Largest packet accepted from the broker.
const MAX_INCOMING: usize = 64 * 1024;

/// Status name of the broker connection in `/api/status` `sources`.
pub const SOURCE_BROKER: &str = "mqtt_broker";

pub fn availability_topic(prefix: &str) -> String {
    format!("{prefix}/availability")
}

fn options(cfg: &Config) -> Option<MqttOptions> {
    let m = &cfg.mqtt;
    let host = m.host.as_deref()?.trim();
    if host.is_empty() {
        return None;
    }
    let mut o = MqttOptions::new(m.client_id.clone(), host, m.port);
    o.set_keep_alive(KEEP_ALIVE);
    o.set_clean_session(false);
    o.set_max_packet_size(MAX_INCOMING, MAX_INCOMING);
    o.set_last_will(LastWill::new(availability_topic(&m.topic_prefix), "offline", QoS::AtLeastOnce, true));
    if let Some(user) = &m.username {
        let pass = m.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        o.set_credentials(user.clone(), pass);
    }
    Some(o)
}

/// Runs until shutdown: one event loop (reconnecting with backoff), one publisher fed by the bus.
pub async fn run(cfg: Config, bus: Arc<Bus>, tx: ObservationTx, shutdown: CancellationToken) {
    let Some(opts) = options(&cfg) else { return };
    let sources = MqttSources::from_config(&cfg.mqtt);
    let prefix = cfg.mqtt.topic_prefix.trim_end_matches('/').to_string();
    let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_QUEUE);
    // Aborted with this task, also when it panics (the supervisor then starts both anew).
    let publisher = crate::tasks::AbortOnDrop(tokio::spawn(publish_events(
        client.clone(),
        bus.clone(),
        prefix.clone(),
        shutdown.clone(),
    )));
    let mut backoff = crate::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut failures: u64 = 0;
    // When the current absence began (None before the first connection: unknown).
    let mut lost_at: Option<std::time::Instant> = None;
    let mut connected_once = false;
    // Set on a ConnAck whose queued burst is stale: (when, stale).
    let mut connack: (std::time::Instant, bool) = (std::time::Instant::now(), false);
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(session_present = ack.session_present, "connected to the MQTT broker");
                let away = if connected_once { lost_at.map(|t| t.elapsed()) } else { None };
                let stale = queued_is_stale(ack.session_present, away, Duration::ZERO);
                if stale {
                    tracing::info!("presses queued by the broker while the bridge was away are too old: state only");
                }
                connack = (std::time::Instant::now(), stale);
                connected_once = true;
                lost_at = None;
                backoff.reset();
                failures = 0;
                bus.set_source(SOURCE_BROKER, true);
                // A broker that lost our session (restart without persistence, first connection) has
                // no subscriptions for us. With the session resumed they are intact: subscribing
                // again would only make the broker re-send every retained message.
                if !ack.session_present {
                    for t in sources.subscriptions() {
                        if let Err(e) = client.try_subscribe(t, QoS::AtLeastOnce) {
                            tracing::warn!("cannot queue an MQTT subscription: {e}");
                        }
                    }
                }
                let _ = client.try_publish(availability_topic(&prefix), QoS::AtLeastOnce, true, "online");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let stale = connack.1 && connack.0.elapsed() <= QUEUED_BURST;
                if let Some(ob) = sources.parse(&p.topic, &p.payload, p.retain || stale) {
                    if tx.send(ob).await.is_err() {
                        break;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                lost_at.get_or_insert_with(std::time::Instant::now);
                bus.set_source(SOURCE_BROKER, false);
                // Once per outage at warn, then quietly: a broker away for an hour is one story.
                if failures == 1 {
                    tracing::warn!("MQTT broker connection: {e}; retrying");
                } else {
                    tracing::debug!("MQTT broker connection: {e} (attempt {failures})");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    // Say goodbye cleanly so the broker does not publish the last will on a planned stop.
    let _ = client.try_publish(availability_topic(&prefix), QoS::AtLeastOnce, true, "offline");
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    drop(publisher);
}

/// Publishes rings and sensor changes from the bus. Never blocks the event loop: `try_publish`.
async fn publish_events(client: AsyncClient, bus: Arc<Bus>, prefix: String, shutdown: CancellationToken) {
    let mut rx = bus.subscribe(None).rx;
    let mut dropped: u64 = 0;
    loop {
        let rec = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.recv() => match r {
                Ok(r) => r,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("MQTT publisher fell {n} events behind");
                    continue;
                }
                Err(_) => return,
            },
        };
        let (topic, payload, retain) = match &rec.payload {
            Payload::Ring(r) => (format!("{prefix}/ring"), serde_json::to_string(r).unwrap_or_default(), false),
            Payload::Sensor(s) => {
                let v = match s.state {
                    Some(true) => "ON",
                    Some(false) => "OFF",
                    None => "unknown",
                };
                (format!("{prefix}/sensor/{}", s.name), v.to_string(), true)
            }
            Payload::State(_) => continue,
        };
        if client.try_publish(topic, QoS::AtLeastOnce, retain, payload).is_err() {
            dropped += 1;
            tracing::debug!("MQTT publish dropped (queue full or disconnected), {dropped} so far");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_messages_ring_only_after_a_short_absence() {
        let burst = Duration::from_millis(100);
        // A broker restart of a second: what it queued still rings.
        assert!(!queued_is_stale(true, Some(Duration::from_secs(1)), burst));
        // Away for an hour, or since before this process started: state only.
        assert!(queued_is_stale(true, Some(Duration::from_secs(3600)), burst));
        assert!(queued_is_stale(true, None, burst));
        // No resumed session: nothing was queued for us.
        assert!(!queued_is_stale(false, None, burst));
        // After the burst, messages are live.
        assert!(!queued_is_stale(true, None, QUEUED_BURST + Duration::from_millis(1)));
    }
}
