//! Clips on disk, beside the ring pictures: `<data_dir>/rings/clip-<first>.mp4`, or
//! `clip-<first>-<last>.mp4` when presses in a row share one clip (every ring from `first` to
//! `last` is in it). The names are the index: a restart finds the clips by listing the directory.
//! Written atomically (a temporary file renamed into place), so a crash never leaves half a
//! clip under a clip's name; leftovers of an interrupted write are removed by the picture store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One clip file: the rings `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipFile {
    pub first: u64,
    pub last: u64,
    pub bytes: u64,
}

impl ClipFile {
    pub fn name(&self) -> String {
        if self.first == self.last {
            format!("clip-{}.mp4", self.first)
        } else {
            format!("clip-{}-{}.mp4", self.first, self.last)
        }
    }
}

/// `clip-7.mp4` -> (7, 7); `clip-7-9.mp4` -> (7, 9); anything else -> None.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let ids = name.strip_prefix("clip-")?.strip_suffix(".mp4")?;
    let (a, b) = ids.split_once('-').unwrap_or((ids, ids));
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

/// The clips of a directory, by first ring.
#[derive(Debug, Default)]
pub struct ClipIndex {
    pub dir: PathBuf,
    pub files: BTreeMap<u64, ClipFile>,
}

impl ClipIndex {
    pub fn open(dir: &Path) -> ClipIndex {
        let mut files = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for f in rd.flatten() {
                let Some((first, last)) = parse_name(&f.file_name().to_string_lossy()) else { continue };
                let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
                files.insert(first, ClipFile { first, last, bytes });
            }
        }
        ClipIndex { dir: dir.to_path_buf(), files }
    }

    pub fn path(&self, c: &ClipFile) -> PathBuf {
        self.dir.join(c.name())
    }

    /// The clip holding ring `id`.
    pub fn find(&self, id: u64) -> Option<ClipFile> {
        self.files.range(..=id).next_back().map(|(_, c)| *c).filter(|c| c.last >= id)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|c| c.bytes).sum()
    }

    /// Drops the clips none of whose rings is kept any more, then the oldest until the rest fit
    /// in `max_bytes` (the ring pictures' limits, applied to clips). Returns how many went.
    pub fn retain(&mut self, kept: impl Fn(u64) -> bool, max_bytes: u64) -> usize {
        let drop_ids = retention(&self.files, kept, max_bytes);
        for id in &drop_ids {
            if let Some(c) = self.files.remove(id) {
                let _ = std::fs::remove_file(self.dir.join(c.name()));
            }
        }
        drop_ids.len()
    }
}

/// Which clips (by first ring) retention drops, oldest first.
pub fn retention(files: &BTreeMap<u64, ClipFile>, kept: impl Fn(u64) -> bool, max_bytes: u64) -> Vec<u64> {
    let mut out: Vec<u64> = files.values().filter(|c| !(c.first..=c.last).any(&kept)).map(|c| c.first).collect();
    let mut total: u64 = files.values().filter(|c| !out.contains(&c.first)).map(|c| c.bytes).sum();
    for c in files.values() {
        if total <= max_bytes {
            break;
        }
        if !out.contains(&c.first) {
            total -= c.bytes;
            out.push(c.first);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nonsense_is_ignored() {
        for c in [ClipFile { first: 7, last: 7, bytes: 0 }, ClipFile { first: 7, last: 9, bytes: 0 }] {
            assert_eq!(parse_name(&c.name()), Some((c.first, c.last)));
        }
        for bad in ["7.jpg", "clip-.mp4", "clip-9-7.mp4", "clip-7.tmp", "clip-x.mp4", "index.json"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn find_and_retention() {
        let mut files = BTreeMap::new();
        for (a, b, n) in [(1, 1, 10), (3, 5, 10), (8, 8, 10)] {
            files.insert(a, ClipFile { first: a, last: b, bytes: n });
        }
        let idx = ClipIndex { dir: PathBuf::new(), files: files.clone() };
        assert_eq!(idx.find(4).map(|c| c.first), Some(3));
        assert_eq!(idx.find(6), None);
        assert_eq!(idx.find(2), None);
        assert_eq!(retention(&files, |_| true, 100), Vec::<u64>::new());
        // Ring 3 is gone but 4 and 5 are kept: the shared clip stays.
        assert_eq!(retention(&files, |id| id >= 4, 100), vec![1]);
        assert_eq!(retention(&files, |_| true, 15), vec![1, 3]);
    }

    proptest::proptest! {
        #[test]
        fn retention_always_fits(sizes in proptest::collection::vec(0u64..1000, 0..30), max in 0u64..10000) {
            let files: BTreeMap<u64, ClipFile> =
                sizes.iter().enumerate().map(|(i, &b)| (i as u64, ClipFile { first: i as u64, last: i as u64, bytes: b })).collect();
            let gone = retention(&files, |id| id % 3 != 0, max);
            let left: u64 = files.values().filter(|c| !gone.contains(&c.first)).map(|c| c.bytes).sum();
            proptest::prop_assert!(left <= max);
            proptest::prop_assert!(files.keys().filter(|id| *id % 3 == 0).all(|id| gone.contains(id)));
        }

        #[test]
        fn parse_name_never_panics(s in ".{0,40}") {
            let _ = parse_name(&s);
        }
    }
}
