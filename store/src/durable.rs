//! Immediate durability: sled's flush followed by an `fsync` of the database files, shared by
//! concurrent savers (group commit).
//!
//! sled's own flush ends in `sync_file_range`, which survives a killed process but does not
//! flush the disk's write cache or the file's metadata; `fsync` does. Blob files (values over
//! sled's blob threshold) are written without a sync by sled, so new ones are synced here too.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::store::lock;

pub(crate) struct GroupCommit {
    path: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Tickets handed out: one per write that wants to be durable.
    requested: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    flushing: bool,
    /// Blob files up to this name (an LSN) are known to be synced.
    blobs_synced: u64,
}

impl GroupCommit {
    pub(crate) fn new(path: &Path) -> Self {
        GroupCommit {
            path: path.to_path_buf(),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    /// Returns once every write made before the call is on stable storage. One caller flushes
    /// for all who arrive while it does.
    pub(crate) fn sync(&self, db: &sled::Db) -> Result<()> {
        let mut st = lock(&self.state);
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if st.flushing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.flushing = true;
            let target = st.requested;
            let blobs_synced = st.blobs_synced;
            drop(st);
            let result = db
                .flush()
                .map_err(Error::from)
                .and_then(|_| self.fsync(blobs_synced));
            st = lock(&self.state);
            st.flushing = false;
            self.done.notify_all();
            match result {
                Ok(blobs) => {
                    st.durable = st.durable.max(target);
                    st.blobs_synced = st.blobs_synced.max(blobs);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `fsync`s the database files without a preceding sled flush (the caller flushed).
    pub(crate) fn fsync_files(&self) -> Result<()> {
        let blobs = self.fsync(lock(&self.state).blobs_synced)?;
        let mut st = lock(&self.state);
        st.blobs_synced = st.blobs_synced.max(blobs);
        Ok(())
    }

    fn fsync(&self, blobs_synced: u64) -> Result<u64> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let db_file = self.path.join("db");
        File::open(&db_file)
            .and_then(|f| f.sync_all())
            .map_err(io(&db_file))?;
        let mut newest = blobs_synced;
        let blobs = self.path.join("blobs");
        if let Ok(entries) = fs::read_dir(&blobs) {
            for entry in entries.flatten() {
                let Some(lsn) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if lsn > blobs_synced {
                    // A blob may be gone by now (rewritten); that is fine.
                    if let Ok(f) = File::open(entry.path()) {
                        f.sync_all().map_err(io(&entry.path()))?;
                    }
                    newest = newest.max(lsn);
                }
            }
            File::open(&blobs)
                .and_then(|d| d.sync_all())
                .map_err(io(&blobs))?;
        }
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.path))?;
        Ok(newest)
    }
}
