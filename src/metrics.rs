//! The one writer of the Prometheus text format (version 0.0.4) every part of the bridge reports
//! through: a family's `# HELP` and `# TYPE` once, then its samples. Hand-written rather than a
//! metrics crate: the bridge keeps its counters where they are counted (atomics beside the work)
//! and only needs them written out on a scrape; a registry would hold a second copy of each.

use std::fmt::{Display, Write as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Everything under this prefix.
pub const PREFIX: &str = "doorbell_bridge_";

#[derive(Debug, Default)]
pub struct Metrics {
    out: String,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics { out: String::with_capacity(4096) }
    }

    /// Starts the family `doorbell_bridge_<name>`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Metrics {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.out, "# TYPE {PREFIX}{name} {kind}");
        self
    }

    /// One sample of the family `name`, with labels (values escaped as the format asks).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) -> &mut Metrics {
        let _ = write!(self.out, "{PREFIX}{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Metrics {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaped_labels() {
        let mut m = Metrics::new();
        m.single("rings_total", Kind::Counter, "Rings since start.", 3);
        m.family("sensor", Kind::Gauge, "State.").sample("sensor", &[("name", "a\"b\\c")], -1);
        assert_eq!(
            m.finish(),
            "# HELP doorbell_bridge_rings_total Rings since start.\n# TYPE doorbell_bridge_rings_total counter\n\
             doorbell_bridge_rings_total 3\n# HELP doorbell_bridge_sensor State.\n# TYPE doorbell_bridge_sensor gauge\n\
             doorbell_bridge_sensor{name=\"a\\\"b\\\\c\"} -1\n"
        );
    }
}
