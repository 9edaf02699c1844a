//! Ring ids are never issued twice, whatever the disk does. Before an id is announced it must lie
//! below a limit that is already on disk (`<data_dir>/ring_ids`); the limit moves forward in
//! blocks, so a sync happens once per [`BLOCK`] rings. The file has a fixed size and is rewritten
//! in place, so a full disk (which refuses new files and blocks) still takes the update.
//! When even that fails, ids are derived from the clock (milliseconds since 1970), which a
//! restart cannot repeat either: they are larger than every id issued from the file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::datadir::Health;

pub const FILE: &str = "ring_ids";
/// Ids reserved per sync.
pub const BLOCK: u64 = 64;
/// Fixed record: 20 digits and a newline.
const RECORD: usize = 21;

pub struct RingIds {
    path: PathBuf,
    file: Option<File>,
    /// Every id issued so far is below this, and it is on disk (0: nothing on disk).
    limit: u64,
    health: Arc<Health>,
}

fn encode(limit: u64) -> [u8; RECORD] {
    let mut b = [b'0'; RECORD];
    let s = limit.to_string();
    b[20 - s.len()..20].copy_from_slice(s.as_bytes());
    b[20] = b'\n';
    b
}

fn decode(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl RingIds {
    /// Opens (or creates) the reservation file. Returns it and the first id that may be issued:
    /// at least `history_next` (the persisted ring history's next id) and the limit on disk.
    pub fn open(data_dir: &Path, history_next: u64, health: Arc<Health>) -> (RingIds, u64) {
        let path = data_dir.join(FILE);
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
        let (file, on_disk) = match file {
            Ok(f) => {
                let on_disk = std::fs::read(&path).ok().and_then(|b| decode(&b)).unwrap_or(0);
                (Some(f), on_disk)
            }
            Err(e) => {
                health.failed(format!("cannot open {}: {e}", path.display()));
                (None, 0)
            }
        };
        let mut ids = RingIds { path, file, limit: 0, health };
        let next = history_next.max(on_disk).max(1);
        // The old limit is durable already: ids up to it are safe to issue at once.
        ids.limit = on_disk;
        ids.reserve(next);
        (ids, next)
    }

    /// Writes `limit = from + BLOCK` in place and syncs it. False when the disk refused.
    fn reserve(&mut self, from: u64) -> bool {
        let limit = from.saturating_add(BLOCK);
        let Some(f) = self.file.as_ref() else { return false };
        let res = {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&encode(limit), 0).and_then(|()| f.sync_data())
        };
        match res {
            Ok(()) => {
                // Not a sign of a healthy disk: an in-place rewrite needs no free space.
                self.limit = limit;
                true
            }
            Err(e) => {
                tracing::warn!("cannot reserve ring ids in {}: {e}", self.path.display());
                self.health.failed(format!("cannot write {}: {e}", self.path.display()));
                false
            }
        }
    }

    /// The id for the next ring, given the next one in sequence. Never one issued before, in this
    /// run or an earlier one.
    pub fn issue(&mut self, next: u64) -> u64 {
        if next < self.limit || self.reserve(next) {
            return next;
        }
        // Nothing durable beyond `limit`: take an id from the clock instead (see the module doc).
        next.max(self.limit).max(now_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let h = Arc::new(Health::default());
        let mut seen = std::collections::BTreeSet::new();
        let mut history_next = 1;
        for run in 0..5 {
            // The history is lost on every second run (a crash before the index was written).
            let (mut ids, mut next) = RingIds::open(dir.path(), if run % 2 == 0 { history_next } else { 1 }, h.clone());
            for _ in 0..(BLOCK + 7) {
                let id = ids.issue(next);
                assert!(seen.insert(id), "id {id} issued twice");
                next = id + 1;
            }
            history_next = next - 10;
        }
        assert!(h.state().is_none());
        assert_eq!(std::fs::metadata(dir.path().join(FILE)).unwrap().len(), RECORD as u64);
    }

    #[test]
    fn a_disk_that_refuses_gives_clock_ids() {
        let dir = tempfile::tempdir().unwrap();
        let h = Arc::new(Health::default());
        let (mut ids, next) = RingIds::open(dir.path(), 1, h.clone());
        ids.file = None; // as if every write failed
        let mut id = next;
        for _ in 0..BLOCK {
            id = ids.issue(id) + 1;
        }
        assert_eq!(id, BLOCK + 1);
        let clock = ids.issue(id);
        assert!(clock >= now_millis() - 60_000, "clock-derived id {clock}");
        // A restart (still refusing) continues above everything the file allowed.
        let (mut again, n2) = RingIds::open(dir.path(), 1, h.clone());
        again.file = None;
        assert!(again.issue(n2) > BLOCK);
    }

    #[test]
    fn record_round_trips() {
        assert_eq!(decode(&encode(0)), Some(0));
        assert_eq!(decode(&encode(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode(b"garbage"), None);
    }
}
