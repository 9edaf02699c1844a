//! Ring pictures on disk: `<data_dir>/rings/<id>.jpg` plus `index.json`, the ring history, so
//! that rings and their pictures survive a restart. Retention by count and by total size; every
//! write may fail (full disk) and then only logs: the bridge keeps running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::datadir::{self, write_atomic, Health};
use crate::domain::{Ring, RingSource};
use chrono::{DateTime, Utc};

pub const INDEX_FILE: &str = "index.json";
/// Largest index we read back; 200 rings take about 40 kB.
pub const MAX_INDEX_BYTES: u64 = 16 * 1024 * 1024;

/// One ring in the persisted history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    #[serde(with = "crate::domain::wire_time")]
    pub at: DateTime<Utc>,
    pub source: RingSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub press: Option<String>,
    /// Size of `<id>.jpg`, when the ring has a picture on disk.
    #[serde(default)]
    pub image_bytes: Option<u64>,
    /// Where the picture came from: `keyframe`, `doorbell`, `cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When the picture was taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<String>,
}

impl Entry {
    pub fn from_ring(r: &Ring) -> Entry {
        Entry {
            id: r.id,
            at: r.at,
            source: r.source.clone(),
            press: r.press.clone(),
            image_bytes: None,
            origin: None,
            taken: None,
        }
    }

    pub fn ring(&self) -> Ring {
        Ring::new(self.id, self.at, self.source.clone(), self.press.clone())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    rings: Vec<Entry>,
}

/// Which pictures and entries retention drops, oldest first: entries beyond `keep`, then
/// pictures until the rest fit in `max_bytes`. Returns (entries to drop, pictures to delete).
pub fn retention(entries: &BTreeMap<u64, Entry>, keep: usize, max_bytes: u64) -> (Vec<u64>, Vec<u64>) {
    let mut drop_entries = Vec::new();
    let mut drop_images = Vec::new();
    let excess = entries.len().saturating_sub(keep);
    for (&id, e) in entries.iter().take(excess) {
        drop_entries.push(id);
        if e.image_bytes.is_some() {
            drop_images.push(id);
        }
    }
    let mut total: u64 = entries.values().skip(excess).filter_map(|e| e.image_bytes).sum();
    for (&id, e) in entries.iter().skip(excess) {
        if total <= max_bytes {
            break;
        }
        if let Some(b) = e.image_bytes {
            total -= b;
            drop_images.push(id);
        }
    }
    (drop_entries, drop_images)
}

pub struct Store {
    dir: PathBuf,
    /// Where write outcomes are reported (`/api/status` `storage`).
    pub health: Arc<Health>,
    pub entries: BTreeMap<u64, Entry>,
    keep: usize,
    max_bytes: u64,
}

impl Store {
    /// Opens `<data_dir>/rings`, reading the index and dropping pictures it does not know.
    pub fn open(data_dir: &Path, keep: usize, max_bytes: u64) -> Store {
        let dir = data_dir.join("rings");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!("cannot create {}: {e}; ring pictures are kept in memory only", dir.display());
        }
        let mut entries = BTreeMap::new();
        let path = dir.join(INDEX_FILE);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_INDEX_BYTES => {
                tracing::warn!("{} is too large; starting a new history", path.display())
            }
            Ok(_) => match std::fs::read(&path).map(|b| serde_json::from_slice::<IndexFile>(&b)) {
                Ok(Ok(idx)) => {
                    for e in idx.rings {
                        entries.insert(e.id, e);
                    }
                }
                Ok(Err(e)) => tracing::warn!("{} is damaged ({e}); starting a new history", path.display()),
                Err(e) => tracing::warn!("cannot read {}: {e}", path.display()),
            },
            Err(_) => {}
        }
        let mut store = Store { dir, health: Arc::default(), entries, keep, max_bytes };
        // A picture whose file vanished is no picture; a file the index does not know is a leftover.
        for e in store.entries.values_mut() {
            if e.image_bytes.is_some() {
                match std::fs::metadata(store.dir.join(format!("{}.jpg", e.id))) {
                    Ok(m) => e.image_bytes = Some(m.len()),
                    Err(_) => e.image_bytes = None,
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&store.dir) {
            for f in rd.flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                let known = name
                    .strip_suffix(".jpg")
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|id| store.entries.get(&id).is_some_and(|e| e.image_bytes.is_some()));
                // Ring clips live here too (`clips::files`); they are pruned by their own module.
                let clip = crate::clips::files::parse_name(&name).is_some();
                if !known && !clip && name != INDEX_FILE {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        store.apply_retention();
        store
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn image_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.jpg"))
    }

    pub fn last(&self) -> Option<&Entry> {
        self.entries.values().next_back()
    }

    /// Records a ring (without picture yet) and persists the index.
    pub fn add_ring(&mut self, r: &Ring) {
        self.entries.entry(r.id).or_insert_with(|| Entry::from_ring(r));
        self.apply_retention();
        self.save_index();
    }

    /// Writes a ring's picture (replacing an earlier one). False when the disk refused it.
    pub fn put_image(&mut self, id: u64, jpeg: &[u8], origin: &str, taken: &str) -> bool {
        if !self.entries.contains_key(&id) {
            return false;
        }
        let res = write_atomic(&self.image_path(id), jpeg, datadir::Access::Default);
        self.health.record(&res, || format!("cannot write ring pictures in {}", self.dir.display()));
        let ok = match res {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot keep the picture of ring {id} on disk: {e}");
                false
            }
        };
        if let Some(e) = self.entries.get_mut(&id) {
            if ok {
                e.image_bytes = Some(jpeg.len() as u64);
                e.origin = Some(origin.to_string());
                e.taken = Some(taken.to_string());
            }
        }
        self.apply_retention();
        self.save_index();
        ok
    }

    pub fn read_image(&self, id: u64) -> Option<Vec<u8>> {
        self.entries.get(&id)?.image_bytes?;
        std::fs::read(self.image_path(id)).ok()
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries.values().filter_map(|e| e.image_bytes).sum()
    }

    fn apply_retention(&mut self) {
        let (drop_entries, drop_images) = retention(&self.entries, self.keep, self.max_bytes);
        for id in drop_images {
            let _ = std::fs::remove_file(self.image_path(id));
            if let Some(e) = self.entries.get_mut(&id) {
                e.image_bytes = None;
            }
        }
        for id in drop_entries {
            self.entries.remove(&id);
        }
    }

    fn save_index(&self) {
        let idx = IndexFile { rings: self.entries.values().cloned().collect() };
        let body = match serde_json::to_vec(&idx) {
            Ok(b) => b,
            Err(_) => return,
        };
        let res = write_atomic(&self.dir.join(INDEX_FILE), &body, datadir::Access::Default);
        self.health.record(&res, || format!("cannot save the ring history in {}", self.dir.display()));
        if let Err(e) = res {
            tracing::warn!("cannot save the ring history: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(sizes: &[Option<u64>]) -> BTreeMap<u64, Entry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = i as u64 + 1;
                (
                    id,
                    Entry {
                        id,
                        at: DateTime::UNIX_EPOCH,
                        source: "t".into(),
                        press: None,
                        image_bytes: *s,
                        origin: None,
                        taken: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn retention_by_count_then_size() {
        let e = entries(&[Some(10), Some(10), None, Some(10), Some(10)]);
        assert_eq!(retention(&e, 10, 100), (vec![], vec![]));
        assert_eq!(retention(&e, 3, 100), (vec![1, 2], vec![1, 2]));
        assert_eq!(retention(&e, 10, 25), (vec![], vec![1, 2]));
        assert_eq!(retention(&e, 4, 15), (vec![1], vec![1, 2, 4]));
    }

    proptest::proptest! {
        #[test]
        fn retention_always_fits(sizes in proptest::collection::vec(proptest::option::of(0u64..1000), 0..50), keep in 0usize..60, max in 0u64..20000) {
            let e = entries(&sizes);
            let (de, di) = retention(&e, keep, max);
            let left: Vec<&Entry> = e.values().filter(|x| !de.contains(&x.id)).collect();
            proptest::prop_assert!(left.len() <= keep);
            let bytes: u64 = left.iter().filter(|x| !di.contains(&x.id)).filter_map(|x| x.image_bytes).sum();
            proptest::prop_assert!(bytes <= max);
        }
    }
}
