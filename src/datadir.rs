//! Files the bridge keeps in its data directory (credentials, ring pictures and their index).

use std::io::Write;
use std::path::Path;

/// Who may read a file the bridge writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The process's default permissions (pictures, indexes).
    Default,
    /// Owner only (0600): credentials.
    Private,
}

/// Writes to a temporary file beside `path`, then renames it into place: a crash or a full disk
/// never leaves half a file. The temporary file is removed when anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8], access: Access) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if access == Access::Private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Whether the data directory takes writes: "failing" from a failed write until the next one
/// that succeeds (`/api/status` `storage`, `/metrics` `doorbell_bridge_storage_ok`).
#[derive(Default)]
pub struct Health {
    failing: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn failed(&self, detail: String) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(detail);
    }

    pub fn succeeded(&self) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records the outcome of one write.
    pub fn record<T>(&self, r: &std::io::Result<T>, what: impl FnOnce() -> String) {
        match r {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(format!("{}: {e}", what())),
        }
    }

    /// The problem, while failing.
    pub fn state(&self) -> Option<String> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn status(&self) -> crate::status::StorageStatus {
        use crate::status::{StorageState, StorageStatus};
        match self.state() {
            None => StorageStatus { state: StorageState::Ok, detail: None },
            Some(d) => StorageStatus { state: StorageState::Failing, detail: Some(d) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_keeps_private_ones_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials.json");
        write_atomic(&p, b"first", Access::Private).unwrap();
        write_atomic(&p, b"second", Access::Private).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert!(!dir.path().join("credentials.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // A missing directory fails without leaving anything behind.
        assert!(write_atomic(&dir.path().join("nope/x.jpg"), b"x", Access::Default).is_err());
    }
}
