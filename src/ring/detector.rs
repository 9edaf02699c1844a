//! Ring detection, pure: observations + time in, rings and sensor edges out. No I/O.
//!
//! One detector per physical chime input, fed by every source that watches it (CoIoT, MQTT, DNS):
//! - a ring at the rising edge of the input (the earliest signal);
//! - a press whose edge was never seen (lost datagram) is reported late when the Shelly's event
//!   counter moves, or when a Gen2 push event arrives, with its kind (`S`, `L`, `single_push`...);
//! - a counter going backwards means the Shelly rebooted: new baseline, no ring;
//! - repeats (same serial), echoes of the same press from a second source and retained MQTT state
//!   never ring; rings closer than `min_gap_ms` are one;
//! - the `ring` sensor is on while the input is high, and goes off after `pressed_max_ms` when the
//!   release is lost;
//! - a source is offline when nothing arrives within its validity period x1.2.

/// Where an observation came from. Sources keep separate levels, serials and availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Coiot,
    Mqtt,
    Dns,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Coiot, Source::Mqtt, Source::Dns];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Coiot => "coiot",
            Source::Mqtt => "mqtt",
            Source::Dns => "dns",
        }
    }

    pub fn ring_source(self) -> crate::domain::RingSource {
        match self {
            Source::Coiot => crate::domain::RingSource::Coiot,
            Source::Mqtt => crate::domain::RingSource::Mqtt,
            Source::Dns => crate::domain::RingSource::Dns,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one message says about the chime input. Every field is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub source: Source,
    /// Retained MQTT message delivered at subscribe time: state, never a ring.
    pub retained: bool,
    /// CoIoT serial: unchanged means the same status repeated.
    pub serial: Option<u16>,
    /// The status stays valid this long; nothing new within x1.2 = source offline.
    pub validity_ms: Option<u64>,
    /// The input level.
    pub level: Option<bool>,
    /// The message reports a change (MQTT input topics): a high level with no known previous
    /// level is a rising edge. Periodic status (CoIoT) leaves it false: the first packet is a baseline.
    pub live_edge: bool,
    /// Shelly Gen1 event counter and the last event's kind (`S`, `L`, empty after boot).
    pub counter: Option<(u64, String)>,
    /// Gen2 push event known only after release (`single_push`, `long_push`...).
    pub push: Option<String>,
    /// A source that only says "pressed" (DNS lookup, a generic payload without an off state).
    pub trigger: bool,
    /// The device announced itself online or offline (MQTT last will).
    pub available: Option<bool>,
}

impl Observation {
    pub fn new(source: Source) -> Observation {
        Observation {
            source,
            retained: false,
            serial: None,
            validity_ms: None,
            level: None,
            live_edge: false,
            counter: None,
            push: None,
            trigger: false,
            available: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A press. `press` is `rising` for an edge, else the kind the device reported; `late` when
    /// the press is known only after the fact (counter, push event).
    Ring { source: Source, press: String, late: bool },
    /// The `ring` sensor.
    Pressed(bool),
    /// A source started or stopped delivering.
    Online { source: Source, online: bool },
}

/// A second source reporting a rising edge this soon after another one is the same press.
pub const ECHO_WINDOW_MS: u64 = 2_000;
/// A Gen2 push event this long after a seen rising edge belongs to that press (plus the hold time).
pub const PUSH_WINDOW_MS: u64 = 3_000;
/// A trigger from one source this soon after a ring from another is the same press (the DB1 looks
/// up its upload host a moment after the chime).
pub const TRIGGER_WINDOW_MS: u64 = 5_000;
/// How long the `ring` sensor pulses for a press known without its level (late, trigger).
pub const PULSE_MS: u64 = 1_000;
/// A counter jump larger than this is reported as this many presses, not more: a device that
/// was away longer has old news, and a forged counter must not flood.
pub const MAX_LATE_PER_UPDATE: u64 = 4;
/// Shelly Uni x103 (inputEventCnt) is a U16: it wraps to 0 after 65535. A step backwards from
/// this close to the top, with a non-empty event, is a wrap; otherwise a reboot.
const COUNTER_RANGE: u64 = 1 << 16;
const COUNTER_WRAP_NEAR: u64 = COUNTER_RANGE - 256;
/// Offline after validity x1.2 (CoIoT's own rule for a status's lifetime, with a margin).
const VALIDITY_MARGIN_NUM: u64 = 12;
const VALIDITY_MARGIN_DEN: u64 = 10;

#[derive(Debug, Default, Clone)]
struct PerSource {
    level: Option<bool>,
    last_serial: Option<u16>,
    /// When the source is considered offline unless something arrives.
    deadline_ms: Option<u64>,
    online: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Detector {
    min_gap_ms: u64,
    pressed_max_ms: u64,
    sources: [PerSource; 3],
    cnt: Option<u64>,
    /// Rising edges rung since the counter last moved: presses the next counter step already covers.
    edges_since_cnt: u64,
    /// The last new press seen as a rising edge: when and from which source.
    last_rise: Option<(u64, Source)>,
    /// Rising edges not yet matched by a Gen2 push event.
    edges_since_push: u64,
    last_ring_ms: Option<u64>,
    /// The last ring's time and source (min gap is source-blind; trigger echoes are not).
    last_ring: Option<(u64, Source)>,
    /// The `ring` sensor: on since, and when it goes off by itself.
    sensor_on: bool,
    sensor_off_at: Option<u64>,
}

impl Detector {
    pub fn new(min_gap_ms: u64, pressed_max_ms: u64) -> Detector {
        Detector {
            min_gap_ms,
            pressed_max_ms,
            sources: Default::default(),
            cnt: None,
            edges_since_cnt: 0,
            last_rise: None,
            edges_since_push: 0,
            last_ring_ms: None,
            last_ring: None,
            sensor_on: false,
            sensor_off_at: None,
        }
    }

    /// One observation at `now_ms` (any monotonic clock, the same for every call).
    pub fn observe(&mut self, now_ms: u64, ob: &Observation) -> Vec<Output> {
        let mut out = Vec::new();
        let i = ob.source.index();
        self.seen(now_ms, ob, &mut out);
        if ob.serial.is_some() {
            if ob.serial == self.sources[i].last_serial {
                return out;
            }
            self.sources[i].last_serial = ob.serial;
        }
        if let Some(level) = ob.level {
            let prev = self.sources[i].level.replace(level);
            let was_low = match prev {
                Some(p) => !p,
                None => ob.live_edge,
            };
            if level && was_low && !ob.retained {
                self.rising(now_ms, ob.source, &mut out);
            } else if !level && prev == Some(true) && self.sensor_on && self.sensor_off_at.is_none() {
                self.sensor(false, &mut out);
            }
        }
        if let Some((cnt, kind)) = &ob.counter {
            self.counter(now_ms, ob, *cnt, kind, &mut out);
        }
        if let Some(kind) = &ob.push {
            if !ob.retained {
                let matched = self.edges_since_push > 0
                    && self
                        .last_rise
                        .is_some_and(|(t, _)| now_ms.saturating_sub(t) <= self.pressed_max_ms + PUSH_WINDOW_MS);
                if matched {
                    self.edges_since_push -= 1;
                } else {
                    self.edges_since_push = 0;
                    self.late(now_ms, ob.source, kind, &mut out);
                }
            }
        }
        if ob.trigger && !ob.retained {
            // A trigger (DNS lookup, "pressed") comes a while after the press another source saw.
            let echo =
                self.last_ring.is_some_and(|(t, s)| s != ob.source && now_ms.saturating_sub(t) <= TRIGGER_WINDOW_MS);
            if !echo {
                self.late(now_ms, ob.source, "trigger", &mut out);
            }
        }
        out
    }

    /// Time passing: the sensor's timeout, sources going offline.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.sensor_on {
            let off_at = self.sensor_off_at.unwrap_or(u64::MAX);
            let held_too_long = self.last_rise.is_some_and(|(t, _)| now_ms.saturating_sub(t) >= self.pressed_max_ms);
            if now_ms >= off_at || (self.sensor_off_at.is_none() && held_too_long) {
                self.sensor(false, &mut out);
            }
        }
        for s in Source::ALL {
            let st = &mut self.sources[s.index()];
            if st.online == Some(true) && st.deadline_ms.is_some_and(|d| now_ms >= d) {
                st.online = Some(false);
                // Whatever level we knew is stale: the next status is a baseline again.
                st.level = None;
                out.push(Output::Online { source: s, online: false });
            }
        }
        out
    }

    /// Whether each source is delivering (None until it first says something).
    pub fn online(&self, source: Source) -> Option<bool> {
        self.sources[source.index()].online
    }

    fn seen(&mut self, now_ms: u64, ob: &Observation, out: &mut Vec<Output>) {
        let st = &mut self.sources[ob.source.index()];
        let online = ob.available.unwrap_or(true);
        st.deadline_ms = match (ob.available, ob.validity_ms) {
            (Some(false), _) => None,
            (_, Some(v)) => Some(now_ms + v.saturating_mul(VALIDITY_MARGIN_NUM) / VALIDITY_MARGIN_DEN),
            // A source without a validity (MQTT) says when it goes away through its last will.
            (_, None) => None,
        };
        if st.online != Some(online) {
            st.online = Some(online);
            out.push(Output::Online { source: ob.source, online });
        }
    }

    fn rising(&mut self, now_ms: u64, source: Source, out: &mut Vec<Output>) {
        if let Some((t, s)) = self.last_rise {
            if s != source && now_ms.saturating_sub(t) <= ECHO_WINDOW_MS {
                // The same press, heard again through another source.
                return;
            }
        }
        self.last_rise = Some((now_ms, source));
        self.edges_since_cnt += 1;
        self.edges_since_push += 1;
        self.sensor_off_at = None;
        if !self.sensor_on {
            self.sensor(true, out);
        }
        self.ring(now_ms, source, "rising", false, out);
    }

    fn counter(&mut self, now_ms: u64, ob: &Observation, cnt: u64, kind: &str, out: &mut Vec<Output>) {
        if ob.retained && self.cnt.is_some_and(|p| cnt < p) {
            // A retained counter older than the one we know (the broker re-sends retained messages
            // on every subscription): stale, not a reboot; keep our baseline.
            return;
        }
        let prev = self.cnt.replace(cnt);
        match prev {
            None => self.edges_since_cnt = 0,
            Some(p) if cnt < p && (p < COUNTER_WRAP_NEAR || kind.is_empty()) => {
                // Rebooted: the counter restarts (with an empty event); new baseline.
                self.edges_since_cnt = 0;
            }
            Some(p) if cnt != p => {
                // Forward, or wrapped past U16 (the descriptor's range for x103) with an event.
                let presses = if cnt > p { cnt - p } else { cnt + COUNTER_RANGE - p };
                let unreported = presses.saturating_sub(self.edges_since_cnt);
                self.edges_since_cnt = self.edges_since_cnt.saturating_sub(presses);
                if !ob.retained {
                    let kind = if kind.is_empty() { "S" } else { kind };
                    for _ in 0..unreported.min(MAX_LATE_PER_UPDATE) {
                        self.late(now_ms, ob.source, kind, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn late(&mut self, now_ms: u64, source: Source, kind: &str, out: &mut Vec<Output>) {
        if self.ring(now_ms, source, kind, true, out) && !self.sensor_on {
            self.sensor(true, out);
            self.sensor_off_at = Some(now_ms + PULSE_MS);
        }
    }

    fn sensor(&mut self, on: bool, out: &mut Vec<Output>) {
        self.sensor_on = on;
        if !on {
            self.sensor_off_at = None;
        }
        out.push(Output::Pressed(on));
    }

    fn ring(&mut self, now_ms: u64, source: Source, press: &str, late: bool, out: &mut Vec<Output>) -> bool {
        if let Some(last) = self.last_ring_ms {
            if now_ms.saturating_sub(last) < self.min_gap_ms {
                return false;
            }
        }
        self.last_ring_ms = Some(now_ms);
        self.last_ring = Some((now_ms, source));
        out.push(Output::Ring { source, press: press.to_string(), late });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(level: bool, ev: &str, cnt: u64, serial: u16) -> Observation {
        Observation {
            serial: Some(serial),
            validity_ms: Some(38_000),
            level: Some(level),
            counter: Some((cnt, ev.into())),
            ..Observation::new(Source::Coiot)
        }
    }

    fn rings(o: &[Output]) -> usize {
        o.iter().filter(|x| matches!(x, Output::Ring { .. })).count()
    }

    #[test]
    fn edge_then_release_is_one_ring() {
        let mut d = Detector::new(0, 10_000);
        assert_eq!(rings(&d.observe(0, &st(false, "S", 41, 256))), 0);
        let o = d.observe(10, &st(true, "S", 41, 257));
        assert_eq!(rings(&o), 1);
        assert!(o.contains(&Output::Pressed(true)));
        assert_eq!(rings(&d.observe(20, &st(true, "S", 41, 257))), 0);
        let o = d.observe(900, &st(false, "S", 42, 258));
        assert_eq!(rings(&o), 0);
        assert!(o.contains(&Output::Pressed(false)));
    }

    #[test]
    fn missed_edge_reported_from_counter() {
        let mut d = Detector::new(0, 10_000);
        d.observe(0, &st(false, "S", 41, 1));
        let o = d.observe(10_000, &st(false, "L", 42, 3));
        assert!(o.contains(&Output::Ring { source: Source::Coiot, press: "L".into(), late: true }));
    }

    #[test]
    fn two_presses_between_packets_are_two_rings() {
        let mut d = Detector::new(0, 10_000);
        d.observe(0, &st(false, "S", 41, 1));
        assert_eq!(rings(&d.observe(10, &st(true, "S", 41, 2))), 1);
        // Its release and the next press's edge were lost.
        assert_eq!(rings(&d.observe(2000, &st(false, "S", 43, 5))), 1);
    }

    #[test]
    fn reboot_rebaselines() {
        let mut d = Detector::new(0, 10_000);
        d.observe(0, &st(false, "S", 43, 300));
        assert_eq!(rings(&d.observe(10, &st(false, "", 0, 1))), 0);
        assert_eq!(rings(&d.observe(20, &st(false, "S", 1, 2))), 1);
    }

    #[test]
    fn retained_older_counter_is_stale_not_a_reboot() {
        // The broker re-sends a retained `input_event` (counter 41) after presses moved it to 43.
        let mut d = Detector::new(0, 10_000);
        let counter = |cnt: u64, retained: bool| Observation {
            counter: Some((cnt, "S".into())),
            retained,
            ..Observation::new(Source::Mqtt)
        };
        d.observe(0, &counter(41, true));
        assert_eq!(rings(&d.observe(10, &counter(42, false))), 1);
        assert_eq!(rings(&d.observe(20, &counter(43, false))), 1);
        assert_eq!(rings(&d.observe(30, &counter(41, true))), 0);
        // The next press is one press, not three.
        assert_eq!(rings(&d.observe(40, &counter(44, false))), 1);
    }

    #[test]
    fn counter_wrap_is_a_press_not_a_reboot() {
        let mut d = Detector::new(0, 10_000);
        d.observe(0, &st(false, "S", 65535, 1));
        assert_eq!(rings(&d.observe(10, &st(false, "S", 0, 2))), 1);
        d.observe(20, &st(false, "S", 65535, 3));
        assert_eq!(rings(&d.observe(30, &st(false, "", 0, 4))), 0, "empty event after boot: reboot");
    }

    #[test]
    fn min_gap_merges_rings() {
        let mut d = Detector::new(3000, 10_000);
        d.observe(0, &st(false, "S", 1, 1));
        assert_eq!(rings(&d.observe(10, &st(true, "S", 1, 2))), 1);
        assert_eq!(rings(&d.observe(500, &st(false, "S", 2, 3))), 0);
        assert_eq!(rings(&d.observe(1000, &st(true, "S", 2, 4))), 0);
        assert_eq!(rings(&d.observe(1500, &st(false, "S", 3, 5))), 0);
        assert_eq!(rings(&d.observe(5000, &st(true, "S", 3, 6))), 1);
    }

    #[test]
    fn echo_from_second_source_is_one_ring() {
        let mut d = Detector::new(0, 10_000);
        d.observe(0, &st(false, "S", 41, 1));
        assert_eq!(rings(&d.observe(10, &st(true, "S", 41, 2))), 1);
        assert_eq!(rings(&d.observe(15, &st(false, "S", 42, 3))), 0);
        // MQTT's copy of the same press arrives after CoIoT's release.
        let m = Observation { level: Some(true), live_edge: true, ..Observation::new(Source::Mqtt) };
        assert_eq!(rings(&d.observe(40, &m)), 0);
        let m = Observation { counter: Some((42, "S".into())), ..Observation::new(Source::Mqtt) };
        assert_eq!(rings(&d.observe(50, &m)), 0);
    }

    #[test]
    fn sensor_goes_off_when_release_is_lost() {
        let mut d = Detector::new(0, 10_000);
        d.observe(0, &st(false, "S", 41, 1));
        d.observe(10, &st(true, "S", 41, 2));
        assert!(d.tick(5_000).is_empty());
        assert_eq!(d.tick(10_010), vec![Output::Pressed(false)]);
    }

    #[test]
    fn offline_after_validity() {
        let mut d = Detector::new(0, 10_000);
        let o = d.observe(0, &st(false, "S", 41, 1));
        assert!(o.contains(&Output::Online { source: Source::Coiot, online: true }));
        assert!(d.tick(45_000).is_empty());
        assert_eq!(d.tick(45_700), vec![Output::Online { source: Source::Coiot, online: false }]);
        let o = d.observe(50_000, &st(false, "S", 41, 1));
        assert!(o.contains(&Output::Online { source: Source::Coiot, online: true }));
        assert_eq!(rings(&o), 0);
    }

    #[test]
    fn dns_trigger_after_a_coiot_edge_is_the_same_press() {
        let mut d = Detector::new(0, 10_000);
        d.observe(0, &st(false, "S", 41, 1));
        assert_eq!(rings(&d.observe(10, &st(true, "S", 41, 2))), 1);
        let dns = Observation { trigger: true, ..Observation::new(Source::Dns) };
        assert_eq!(rings(&d.observe(1500, &dns)), 0);
        assert_eq!(rings(&d.observe(20_000, &dns)), 1);
    }

    #[test]
    fn retained_state_never_rings() {
        let mut d = Detector::new(0, 10_000);
        let r = Observation { retained: true, level: Some(true), live_edge: true, ..Observation::new(Source::Mqtt) };
        assert_eq!(rings(&d.observe(0, &r)), 0);
        let off = Observation { level: Some(false), live_edge: true, ..Observation::new(Source::Mqtt) };
        d.observe(10, &off);
        let on = Observation { level: Some(true), live_edge: true, ..Observation::new(Source::Mqtt) };
        assert_eq!(rings(&d.observe(20, &on)), 1);
    }
}
