//! The event bus: ring and sensor edges, the current state, and a bounded history with
//! increasing ids so that an event-stream client reconnecting with `Last-Event-ID` gets
//! exactly what it missed, in order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

pub use crate::domain::{Ring, RingSource, Sensor, SensorChange};
use crate::metrics::{Kind, Metrics};
use crate::status::{DoorbellStatus, SensorStates, Status};

/// Events kept for replay. At one event a second this is over an hour.
pub const HISTORY: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The whole status body (on connect and on connectivity changes).
    State(Box<Status>),
    Ring(Ring),
    Sensor(SensorChange),
}

/// One event with its id. Ids start at 1 and never repeat within a run of the bridge;
/// `epoch` changes with every start so clients can tell a restart from a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: u64,
    pub payload: Payload,
}

impl Record {
    pub fn name(&self) -> &'static str {
        match self.payload {
            Payload::State(_) => "state",
            Payload::Ring(_) => "ring",
            Payload::Sensor(_) => "sensor",
        }
    }

    pub fn data_json(&self) -> String {
        let r = match &self.payload {
            Payload::State(v) => serde_json::to_string(v),
            Payload::Ring(r) => serde_json::to_string(r),
            Payload::Sensor(s) => serde_json::to_string(s),
        };
        r.unwrap_or_default()
    }
}

/// Core state the bus owns: sensors, connectivity, last ring.
#[derive(Debug, Clone, Default)]
pub struct CoreState {
    pub sensors: SensorStates,
    /// ONVIF's word or a playing RTSP session, whichever decided (`online_source`).
    pub doorbell_online: bool,
    pub online_source: Option<&'static str>,
    /// What ONVIF last said, while it has said anything.
    pub onvif_online: Option<bool>,
    /// Per source (`onvif`, `coiot`, `mqtt`) whether it is currently delivering.
    pub sources: BTreeMap<String, bool>,
    pub last_ring: Option<Ring>,
}

/// What other capabilities add to `/api/status` and `/metrics` (the RTSP hub's streams...).
pub trait StatusSource: Send + Sync {
    /// Fills its own part of the status (e.g. `streams`).
    fn status(&self, status: &mut Status);
    /// Its `/metrics` families.
    fn metrics(&self, out: &mut Metrics);
}

struct Inner {
    next_id: u64,
    history: VecDeque<Arc<Record>>,
    state: CoreState,
    next_ring_id: u64,
}

pub struct Bus {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Record>>,
    sources: Mutex<Vec<Arc<dyn StatusSource>>>,
    version: &'static str,
    /// Stable id of this bridge install (kept in the data dir), for the integration's unique id.
    bridge_id: std::sync::OnceLock<String>,
    pub rings_total: std::sync::atomic::AtomicU64,
    /// Whether the data directory takes writes (`storage` in the status).
    pub storage: Arc<crate::datadir::Health>,
    /// Durable reservation of ring ids; unset in tests that keep nothing on disk.
    ring_ids: Mutex<Option<crate::ring_ids::RingIds>>,
    /// Whether every ring gets a clip (`clip` in the ring event).
    clips: std::sync::atomic::AtomicBool,
}

/// A subscription that starts exactly after `backlog`.
pub struct Subscription {
    pub backlog: Vec<Arc<Record>>,
    pub rx: broadcast::Receiver<Arc<Record>>,
    /// True when the client asked for events older than the history holds.
    pub gap: bool,
}

pub fn now_string(t: DateTime<Utc>) -> String {
    crate::domain::time_string(t)
}

impl Bus {
    pub fn new() -> Arc<Bus> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Bus {
            inner: Mutex::new(Inner {
                next_id: 1,
                history: VecDeque::with_capacity(HISTORY),
                state: CoreState::default(),
                next_ring_id: 1,
            }),
            tx,
            sources: Mutex::new(Vec::new()),
            version: env!("CARGO_PKG_VERSION"),
            bridge_id: std::sync::OnceLock::new(),
            rings_total: Default::default(),
            storage: Arc::default(),
            ring_ids: Mutex::new(None),
            clips: Default::default(),
        })
    }

    pub fn bridge_id(&self) -> &str {
        self.bridge_id.get().map(String::as_str).unwrap_or("")
    }

    pub fn set_bridge_id(&self, id: String) {
        let _ = self.bridge_id.set(id);
    }

    pub fn add_status_source(&self, s: Arc<dyn StatusSource>) {
        self.sources.lock().unwrap().push(s);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ring ids continue from a restored history (the snapshot store keeps rings across restarts).
    pub fn set_next_ring_id(&self, next: u64, last: Option<Ring>) {
        let mut g = self.lock();
        g.next_ring_id = g.next_ring_id.max(next);
        if g.state.last_ring.is_none() {
            g.state.last_ring = last;
        }
    }

    /// From now on every ring id is reserved on disk before it is announced (see `ring_ids`).
    pub fn set_ring_ids(&self, ids: crate::ring_ids::RingIds, next: u64) {
        let mut g = self.lock();
        g.next_ring_id = g.next_ring_id.max(next);
        *self.ring_ids.lock().unwrap_or_else(|e| e.into_inner()) = Some(ids);
    }

    fn push(&self, g: &mut Inner, payload: Payload) -> Arc<Record> {
        let rec = Arc::new(Record { id: g.next_id, payload });
        g.next_id += 1;
        if g.history.len() == HISTORY {
            g.history.pop_front();
        }
        g.history.push_back(rec.clone());
        // Sent while the lock is held so subscribers see ids in order with the history.
        let _ = self.tx.send(rec.clone());
        rec
    }

    /// From now on every ring says a clip of it will come. `on_disk` tells whether a ring's clip
    /// is kept, for the last ring restored from the history at start.
    pub fn set_clips(&self, on: bool, on_disk: impl Fn(u64) -> bool) {
        self.clips.store(on, std::sync::atomic::Ordering::Relaxed);
        let mut g = self.lock();
        if let Some(r) = g.state.last_ring.take() {
            let kept = r.clip.is_some() || on_disk(r.id);
            g.state.last_ring = Some(r.with_clip(kept));
        }
    }

    /// Records a ring; returns it with its id and time.
    pub fn ring(&self, source: impl Into<RingSource>, press: Option<&str>, at: DateTime<Utc>) -> Ring {
        let mut g = self.lock();
        let id = match self.ring_ids.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(ids) => ids.issue(g.next_ring_id),
            None => g.next_ring_id,
        };
        g.next_ring_id = id + 1;
        let clips = self.clips.load(std::sync::atomic::Ordering::Relaxed);
        let ring = Ring::new(id, at, source.into(), press.map(str::to_string)).with_clip(clips);
        g.state.last_ring = Some(ring.clone());
        self.rings_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.push(&mut g, Payload::Ring(ring.clone()));
        ring
    }

    /// Sets a sensor; emits a `sensor` event only when the state changes. Returns whether it did.
    pub fn set_sensor(&self, name: Sensor, state: Option<bool>, at: DateTime<Utc>) -> bool {
        let mut g = self.lock();
        if g.state.sensors.set(name, state) == state {
            return false;
        }
        self.push(&mut g, Payload::Sensor(SensorChange { name, state, at }));
        true
    }

    /// What ONVIF says of the doorbell's reachability; emits a `state` event when `online` changes.
    pub fn set_online(&self, online: bool) {
        let mut g = self.lock();
        g.state.onvif_online = Some(online);
        self.derive_online(&mut g);
    }

    /// Re-reads whether a stream's doorbell session plays (called periodically); emits a `state`
    /// event when `online` changes.
    pub fn recheck_online(&self) {
        let mut g = self.lock();
        self.derive_online(&mut g);
    }

    fn derive_online(&self, g: &mut Inner) {
        let rtsp = rtsp_online(&self.status_locked(g));
        let (online, source) = decide_online(g.state.onvif_online, rtsp);
        if (g.state.doorbell_online, g.state.online_source) == (online, source) {
            return;
        }
        g.state.doorbell_online = online;
        g.state.online_source = source;
        let body = self.status_locked(g);
        self.push(g, Payload::State(Box::new(body)));
    }

    /// Emits a `state` event with the current status body (a status source learned something).
    pub fn publish_state(&self) {
        let mut g = self.lock();
        let body = self.status_locked(&g);
        self.push(&mut g, Payload::State(Box::new(body)));
    }

    /// A status source's part of the status changed (e.g. `talk`): emits a `state` event.
    pub fn status_changed(&self) {
        let mut g = self.lock();
        let body = self.status_locked(&g);
        self.push(&mut g, Payload::State(Box::new(body)));
    }

    /// Whether one source (`onvif`, `coiot`, `mqtt`...) is delivering; emits `state` on change.
    pub fn set_source(&self, source: &str, up: bool) {
        let mut g = self.lock();
        if g.state.sources.get(source) == Some(&up) {
            return;
        }
        g.state.sources.insert(source.to_string(), up);
        let body = self.status_locked(&g);
        self.push(&mut g, Payload::State(Box::new(body)));
    }

    pub fn state(&self) -> CoreState {
        self.lock().state.clone()
    }

    /// The status body, typed.
    pub fn report(&self) -> Status {
        let g = self.lock();
        self.status_locked(&g)
    }

    /// The status body as JSON (what `/api/status` serves).
    pub fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.report()).unwrap_or_default()
    }

    fn status_locked(&self, g: &Inner) -> Status {
        let st = &g.state;
        let mut status = Status {
            version: self.version.to_string(),
            bridge_id: self.bridge_id.get().cloned(),
            doorbell: DoorbellStatus {
                online: st.doorbell_online,
                online_source: st.online_source.map(str::to_string),
                identity: None,
            },
            storage: self.storage.status(),
            streams: BTreeMap::new(),
            sensors: st.sensors,
            sources: st.sources.clone(),
            last_ring: st.last_ring.clone(),
            last_event_id: g.next_id - 1,
            coiot: None,
            talk: None,
            clips: None,
            tasks: BTreeMap::new(),
        };
        for s in self.sources.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            s.status(&mut status);
        }
        status
    }

    pub fn metrics(&self, out: &mut Metrics) {
        let ok = self.storage.state().is_none() as u8;
        out.single("storage_ok", Kind::Gauge, "Whether the data directory takes writes.", ok);
        for s in self.sources.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            s.metrics(out);
        }
    }

    /// Subscribes. With `after = Some(id)`, the backlog holds every kept event with a larger id;
    /// with `None`, it is empty. Live events then follow without gap or repeat.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let g = self.lock();
        let rx = self.tx.subscribe();
        let mut gap = false;
        let backlog = match after {
            None => Vec::new(),
            Some(after) => {
                if let Some(first) = g.history.front() {
                    gap = after + 1 < first.id;
                }
                if after >= g.next_id {
                    // An id from a previous run of the bridge: the client gets the state anew.
                    gap = true;
                }
                g.history.iter().filter(|r| r.id > after).cloned().collect()
            }
        };
        Subscription { backlog, rx, gap }
    }

    /// Events with ids greater than `after`, for a subscriber that lagged behind the channel.
    pub fn since(&self, after: u64) -> (Vec<Arc<Record>>, bool) {
        let g = self.lock();
        let gap = g.history.front().is_some_and(|f| after + 1 < f.id);
        (g.history.iter().filter(|r| r.id > after).cloned().collect(), gap)
    }

    /// The id the next ring would get without a reservation.
    pub fn next_ring_id(&self) -> u64 {
        self.lock().next_ring_id
    }

    pub fn last_id(&self) -> u64 {
        self.lock().next_id - 1
    }
}

/// From a status: Some(true) when a stream's doorbell session plays, Some(false) when one is
/// trying and none plays, None when no stream says anything (all idle on demand, or none).
fn rtsp_online(status: &Status) -> Option<bool> {
    let states: Vec<&str> = status.streams.values().map(|s| s.upstream.as_str()).collect();
    if states.contains(&"connected") {
        Some(true)
    } else if states.iter().any(|s| matches!(*s, "connecting" | "reconnecting")) {
        Some(false)
    } else {
        None
    }
}

/// ONVIF's word when it has one (it notices a reboot at once, where an RTSP session that just lost
/// its doorbell still looks connected for a while); otherwise, with ONVIF off or not yet heard
/// from, whether a stream's session plays.
pub fn decide_online(onvif: Option<bool>, rtsp: Option<bool>) -> (bool, Option<&'static str>) {
    match (onvif, rtsp) {
        (Some(o), _) => (o, Some("onvif")),
        (None, Some(r)) => (r, Some("rtsp")),
        (None, None) => (false, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_status(upstream: &str) -> crate::status::StreamStatus {
        crate::status::StreamStatus {
            upstream: upstream.into(),
            upstream_sessions: 0,
            clients: 0,
            on_demand: false,
            bytes_in: 0,
            bytes_out: 0,
            frames_in: 0,
            drops: 0,
            stalled: 0,
            reconnects: 0,
        }
    }

    #[test]
    fn online_from_either_source() {
        assert_eq!(decide_online(None, None), (false, None));
        assert_eq!(decide_online(None, Some(true)), (true, Some("rtsp")));
        assert_eq!(decide_online(Some(false), Some(true)), (false, Some("onvif")));
        assert_eq!(decide_online(Some(true), Some(false)), (true, Some("onvif")));
        assert_eq!(decide_online(None, Some(false)), (false, Some("rtsp")));
        let streams = |states: &[(&str, &str)]| {
            let mut st = Bus::new().report();
            for (name, upstream) in states {
                st.streams.insert(name.to_string(), stream_status(upstream));
            }
            st
        };
        assert_eq!(rtsp_online(&streams(&[("main", "reconnecting"), ("sub", "connected")])), Some(true));
        assert_eq!(rtsp_online(&streams(&[("sub", "idle")])), None);
        let bus = Bus::new();
        bus.set_online(true);
        assert_eq!(bus.status()["doorbell"]["online_source"], "onvif");
        assert_eq!(bus.status()["storage"]["state"], "ok");
    }

    #[test]
    fn sensor_edges_only_on_change() {
        let bus = Bus::new();
        let t = Utc::now();
        assert!(bus.set_sensor(Sensor::PirMotion, Some(true), t));
        assert!(!bus.set_sensor(Sensor::PirMotion, Some(true), t));
        assert!(bus.set_sensor(Sensor::PirMotion, None, t));
        assert_eq!(bus.last_id(), 2);
    }

    #[test]
    fn replay_is_exact_after_any_id() {
        let bus = Bus::new();
        let t = Utc::now();
        for i in 0..10 {
            bus.ring("test", None, t);
            bus.set_sensor(Sensor::VideoMotion, Some(i % 2 == 0), t);
        }
        for after in 0..=20u64 {
            let sub = bus.subscribe(Some(after));
            let ids: Vec<u64> = sub.backlog.iter().map(|r| r.id).collect();
            let want: Vec<u64> = (after + 1..=20).collect();
            assert_eq!(ids, want, "after {after}");
            assert!(!sub.gap);
        }
    }

    #[test]
    fn history_is_bounded_and_gap_is_reported() {
        let bus = Bus::new();
        let t = Utc::now();
        for i in 0..(HISTORY as u64 + 10) {
            bus.set_sensor(Sensor::FieldDetection, Some(i % 2 == 0), t);
        }
        let sub = bus.subscribe(Some(1));
        assert_eq!(sub.backlog.len(), HISTORY);
        assert!(sub.gap);
    }

    #[test]
    fn ring_ids_continue_from_restored_history() {
        let bus = Bus::new();
        bus.set_next_ring_id(42, None);
        let r = bus.ring("coiot", None, Utc::now());
        assert_eq!(r.id, 42);
        assert_eq!(r.snapshot, "/api/rings/42/snapshot.jpg");
        assert_eq!(bus.status()["last_ring"]["id"], 42);
    }
}
