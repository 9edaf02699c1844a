//! Ring detection, pure: status observations + time in, ring edges out. No I/O.
//!
//! A ring is reported at the rising edge of the chime input (the earliest signal). A press
//! whose edge was never seen (lost datagram) is reported late when the event counter moves.
//! A counter going backwards means the Shelly rebooted: new baseline, no ring.

use super::coiot::InputStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A press. `press` is `rising` for an edge, or the Shelly's event kind (`S`, `L`) when the
    /// press is known only from the counter.
    Ring { press: String },
    /// The input level changed: the `ring` sensor follows it.
    Pressed(bool),
}

#[derive(Debug, Default)]
pub struct Detector {
    level: Option<bool>,
    cnt: Option<u64>,
    /// Counter value already accounted for by a ring reported from an edge.
    cnt_covered: Option<u64>,
    last_serial: Option<u16>,
    last_ring_ms: Option<u64>,
    min_gap_ms: u64,
}

impl Detector {
    pub fn new(min_gap_ms: u64) -> Detector {
        Detector { min_gap_ms, ..Default::default() }
    }

    /// One status from the device. `serial` is CoIoT's serial (unchanged = same status repeated).
    pub fn observe(&mut self, now_ms: u64, serial: Option<u16>, st: &InputStatus) -> Vec<Output> {
        let mut out = Vec::new();
        if serial.is_some() && serial == self.last_serial {
            return out;
        }
        self.last_serial = serial.or(self.last_serial);
        let first = self.level.is_none() && self.cnt.is_none();
        if let Some(level) = st.level {
            let prev = self.level.replace(level);
            if !first && prev != Some(level) {
                out.push(Output::Pressed(level));
                if level && prev == Some(false) {
                    self.ring(now_ms, "rising".into(), &mut out);
                    // The press this edge belongs to will advance the counter by one.
                    self.cnt_covered = self.cnt.map(|c| c + 1);
                }
            }
        }
        if let Some(cnt) = st.event_cnt {
            let prev = self.cnt.replace(cnt);
            match prev {
                Some(p) if cnt < p => {
                    // Rebooted: the counter restarts; new baseline.
                    self.cnt_covered = None;
                }
                Some(p) if cnt > p && !first => {
                    let covered = self.cnt_covered.unwrap_or(p);
                    if cnt > covered {
                        let kind = st.event.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| "S".into());
                        self.ring(now_ms, kind, &mut out);
                    }
                    self.cnt_covered = None;
                }
                _ => {}
            }
        }
        out
    }

    fn ring(&mut self, now_ms: u64, press: String, out: &mut Vec<Output>) {
        if let Some(last) = self.last_ring_ms {
            if now_ms.saturating_sub(last) < self.min_gap_ms {
                return;
            }
        }
        self.last_ring_ms = Some(now_ms);
        out.push(Output::Ring { press });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(level: bool, ev: &str, cnt: u64) -> InputStatus {
        InputStatus { level: Some(level), event: Some(ev.into()), event_cnt: Some(cnt) }
    }

    fn rings(o: &[Output]) -> usize {
        o.iter().filter(|x| matches!(x, Output::Ring { .. })).count()
    }

    #[test]
    fn edge_then_release_is_one_ring() {
        let mut d = Detector::new(0);
        assert_eq!(rings(&d.observe(0, Some(256), &st(false, "S", 41))), 0);
        assert_eq!(rings(&d.observe(10, Some(257), &st(true, "S", 41))), 1);
        assert_eq!(rings(&d.observe(20, Some(257), &st(true, "S", 41))), 0);
        assert_eq!(rings(&d.observe(900, Some(258), &st(false, "S", 42))), 0);
    }

    #[test]
    fn missed_edge_reported_from_counter() {
        let mut d = Detector::new(0);
        d.observe(0, Some(1), &st(false, "S", 41));
        let o = d.observe(10_000, Some(3), &st(false, "L", 42));
        assert_eq!(o, vec![Output::Ring { press: "L".into() }]);
    }

    #[test]
    fn reboot_rebaselines() {
        let mut d = Detector::new(0);
        d.observe(0, Some(300), &st(false, "S", 43));
        assert_eq!(rings(&d.observe(10, Some(1), &st(false, "", 0))), 0);
    }
}
