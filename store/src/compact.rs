//! Compaction: a copy of a store into a new database folder, and the swap that puts the copy
//! in the original's place.
//!
//! sled's files never shrink: it reuses dead segments and truncates only free ones at the end
//! of its log, so a store in use settles at 4–5× the size of a freshly written one
//! (docs/BENCHMARKS.md, "A store in use"), and sled 0.34 has no compaction of its own. What
//! takes a store back to its fresh size is writing its sessions into a new database.
//!
//! The copy takes each record's bytes as they are (version, timestamps, data: nothing is
//! re-encoded) and derives the record's index entries from its head, as `check` does, so the
//! copy's indexes hold exactly what its records call for: leftovers of crashes are not carried
//! over, and a missing entry is made. A record that does not decode stops the copy: dropping
//! it would lose a session without a word, and copying it would carry the damage over. The
//! copy is closed, opened again and checked before it is used.
//!
//! [`Store::compact`] then swaps the two folders with one `renameat2(RENAME_EXCHANGE)`, so the
//! database's path never names anything but a whole database. It holds the folder's gate (an
//! exclusive `flock` of the folder, which every open takes shared around its attempt at sled's
//! open: [`opening_gate`]) from before the copy to after the swap, so no other process opens
//! the original meanwhile; and it closes the original before the swap, keeping sled's lock of it
//! ([`HeldLog`]: against openers that do not take the gate) and waiting until sled has let go
//! of it, so no thread of sled's still works on it by path after the exchange. Where
//! the file system cannot exchange two folders it renames twice, and a crash between the two
//! renames leaves the original at `<name>.compact-old` and the whole copy at
//! `<name>.compact-new`: `Store::open` of the path then refuses to make a new, empty database
//! there, and says where the two are.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::admin::folder_size;
use crate::error::{Error, Result, SledResult as _};
use crate::folder_lock::{compaction_gate, lock_log, opening_gate, HeldLog};
use crate::id::Handle;
use crate::keys::{expiry_key, principal_key};
use crate::record::decode_lazy;
use crate::store::Store;

/// How long to wait for a closed database's lock ([`lock_log`]).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Records copied between two calls of the progress callback.
const PROGRESS_EVERY: u64 = 1024;

/// How to copy or compact a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactOptions {
    /// Leave out the sessions that have expired by the store's clock: what a purge would
    /// remove, at no cost, where a purge writes three removals a session into the old files.
    pub drop_expired: bool,
    /// [`Store::compact`] only: keep the old database, renamed to `<name>.compact-old` beside
    /// the database folder, rather than remove it.
    pub keep_old: bool,
}

/// What a copy or a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// Sessions copied, live and expired (unless expired ones were dropped).
    pub sessions: u64,
    /// Expired sessions left out ([`CompactOptions::drop_expired`]).
    pub dropped_expired: u64,
    /// The database's size on disk before, in bytes (as `du --apparent-size` counts it).
    pub bytes_before: u64,
    /// The copy's size on disk, in bytes.
    pub bytes_after: u64,
    /// Where the old database still is after [`Store::compact`]: kept on request
    /// ([`CompactOptions::keep_old`]), or left where it was to be removed
    /// ([`CompactReport::old_not_removed`] says why). `None` once removed, and after a copy.
    pub old: Option<PathBuf>,
    /// Why the old database is still on disk although it was to be removed (something was put
    /// in its folder during the compaction, or the removal failed), or is not at
    /// `<name>.compact-old` as [`CompactOptions::keep_old`] asked. The compaction itself
    /// succeeded: the database folder holds the compacted copy.
    pub old_not_removed: Option<String>,
}

impl Store {
    /// Writes a compacted copy of the store into a new database at `dest`: a folder that does
    /// not exist yet (its parent does) or an empty one, outside the database's own folder.
    /// Returns what was copied and the two sizes.
    ///
    /// Each session is copied as it is stored when the copy reaches it. A copy of a store the
    /// application goes on writing to is not one moment of the whole store: it holds every
    /// session that was neither created, rotated ([`Session::cycle_id`](crate::Session::cycle_id))
    /// nor removed while the copy ran, each one whole; of the others, a session may be in it
    /// under its old id, its new one, both or neither. The copy's files are on stable storage
    /// when this returns.
    ///
    /// ```
    /// # fn main() -> Result<(), sessdb::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("sessions.sessdb");
    /// let store = sessdb::Store::open(&path)?;
    /// let mut session = store.create();
    /// session.set_principal(Some("alice"))?;
    /// session.save()?;
    ///
    /// let copy = dir.path().join("copy.sessdb");
    /// let report = store.copy_into(&copy, &sessdb::CompactOptions::default())?;
    /// assert_eq!(report.sessions, 1);
    /// let loaded = sessdb::Store::open(&copy)?.load(session.id())?;
    /// assert_eq!(loaded.map(|s| s.principal().map(str::to_owned)), Some(Some("alice".into())));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Compact`] (naming the database) when `dest` is taken or inside the database
    /// folder, or writing the copy failed (a full disk: the copy is removed);
    /// [`Error::Corrupt`] for a record that does not decode (`check` and `repair` deal with
    /// it); storage and I/O errors. On any error nothing is left at `dest` (an empty folder
    /// that was there stays).
    pub fn copy_into(
        &self,
        dest: impl AsRef<Path>,
        options: &CompactOptions,
    ) -> Result<CompactReport> {
        self.copy_into_with(dest, options, |_| ControlFlow::Continue(()))
    }

    /// Like [`Store::copy_into`], calling `progress` with the number of records read so far
    /// (copied or left out) every so often, when all are read, and again between the steps
    /// that then make the copy whole (its flush, its reopening and check, its sync), which
    /// take seconds on a large store. When `progress` returns [`ControlFlow::Break`] the copy
    /// stops there and is removed (an interrupted command).
    ///
    /// # Errors
    /// As for [`Store::copy_into`]; [`Error::Compact`] when `progress` stopped it.
    pub fn copy_into_with(
        &self,
        dest: impl AsRef<Path>,
        options: &CompactOptions,
        mut progress: impl FnMut(u64) -> ControlFlow<()>,
    ) -> Result<CompactReport> {
        let dest = dest.as_ref();
        let made = self.prepare_dest(dest)?;
        // sled panics on some damaged pages rather than return an error (`Store::unpanicked`).
        let copied = self.unpanicked(|| self.copy_records(dest, options, &mut progress));
        if copied.is_err() {
            made.undo(dest);
        }
        copied
    }

    /// Replaces the database with a compacted copy of itself ([`Store::copy_into`] a new folder
    /// beside it, then a swap of the two folders), and closes it: open it again to go on. The
    /// old database is removed unless [`CompactOptions::keep_old`] keeps it.
    ///
    /// It needs the database to itself: this must be the store's last handle (no clone and no
    /// [`Session`](crate::Session) loaded from it alive), not serving its admin socket, and
    /// nothing but the database may be in its folder, since the whole folder is replaced. With
    /// a background reaper ([`Builder::reap_every`](crate::Builder::reap_every)), a purge pass
    /// running at that moment counts as a handle: try again. The database's modes (its
    /// folder's and its files') and owner carry over to the copy. A symbolic link to the
    /// folder stays a link, to the compacted folder. Compaction needs write access to the
    /// folder that holds the database folder, and free space there for the copy: about a
    /// freshly written store's size (docs/BENCHMARKS.md, "Disk"). The copy has 2 MiB log
    /// segments, as every new store ([`Builder::NEW_STORE_SEGMENT_BYTES`](crate::Builder::NEW_STORE_SEGMENT_BYTES)),
    /// whatever the original had.
    ///
    /// ```
    /// # fn main() -> Result<(), sessdb::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("sessions.sessdb");
    /// let store = sessdb::Store::open(&path)?;
    /// // ... the application's sessions ...
    /// let options = sessdb::CompactOptions { drop_expired: true, ..Default::default() };
    /// let report = store.compact(&options)?;
    /// println!("{} → {} bytes", report.bytes_before, report.bytes_after);
    /// let store = sessdb::Store::open(&path)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Compact`] when the store is in use, its folder holds something else or is a
    /// mount point (use [`Store::copy_into`] then), a folder `<name>.compact-new` or
    /// `<name>.compact-old` is in the way, other processes keep opening it for 5 s (the gate
    /// cannot be taken), or the swap fails; [`Error::ReadOnly`];
    /// as for [`Store::copy_into`], a write error of the copy (a full disk) included as
    /// [`Error::Compact`]. On every error but one the database is as it was and no copy is
    /// left behind. The one: where the file system cannot exchange two folders, if the
    /// copy cannot be renamed into place after the original was renamed aside, nor the
    /// original back, both stay where they are and the error names them.
    pub fn compact(self, options: &CompactOptions) -> Result<CompactReport> {
        self.compact_with(options, |_| ControlFlow::Continue(()))
    }

    /// Like [`Store::compact`], calling `progress` as [`Store::copy_into_with`] does, and once
    /// more before the swap: when it returns [`ControlFlow::Break`] the copy stops, is
    /// removed, and the database is left as it was. The swap itself is not stopped.
    ///
    /// # Errors
    /// As for [`Store::compact`]; [`Error::Compact`] when `progress` stopped it.
    pub fn compact_with(
        self,
        options: &CompactOptions,
        mut progress: impl FnMut(u64) -> ControlFlow<()>,
    ) -> Result<CompactReport> {
        self.check_writable("compact")?;
        let place = self.compaction_place()?;
        // No other process opens the database from here to the end (`opening_gate`).
        let gate = compaction_gate(&place.dir, CLOSE_WAIT).map_err(|e| {
            self.failure(
                "it could not be held for the compaction; nothing was changed",
                e,
            )
        })?;
        let mut report = self.copy_into_with(&place.new, options, &mut progress)?;
        if let Err(stopped) = self.go_on(progress(report.sessions + report.dropped_expired)) {
            let _ = fs::remove_dir_all(&place.new);
            return Err(stopped);
        }
        let path = self.inner.path.clone();
        let failure = |reason: &str, source: Option<io::Error>| Error::Compact {
            path: path.clone(),
            reason: reason.to_owned(),
            source,
        };
        // The original is closed before the swap, and the swap waits until sled has let go of
        // it, so that no background thread of sled's works on it any more: its cleaner
        // rewrites pages of a store it has opened, blobs included, which it writes and removes
        // by path (after the exchange, the copy's). The gate keeps out every other opener that
        // takes it, and sled's lock, kept through the close (`HeldLog`), every other.
        let held = match HeldLog::keep(&place.dir) {
            Ok(held) => held,
            Err(e) => {
                let _ = fs::remove_dir_all(&place.new);
                return Err(failure(
                    "its lock could not be kept through its close; nothing was changed",
                    Some(e),
                ));
            }
        };
        drop(self);
        #[cfg(test)]
        if let Some(opener) = tests::AFTER_CLOSE.take() {
            opener(&place.dir);
        }
        let closed = match held {
            Some(held) => held.after_close(CLOSE_WAIT),
            None => lock_log(&place.dir, CLOSE_WAIT),
        };
        let lock = match closed {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&place.new);
                return Err(failure(
                    "it was not closed after the copy; nothing was changed",
                    Some(e),
                ));
            }
        };
        let swapped = place
            .carry_over_modes_and_owner()
            .map_err(NotSwapped::Unchanged)
            .and_then(|()| place.swap());
        let old_at = match swapped {
            Ok(at) => at,
            Err(NotSwapped::Unchanged(e)) => {
                let _ = fs::remove_dir_all(&place.new);
                let mount = if e.raw_os_error() == Some(nix::libc::EBUSY) {
                    " (a mount point? copy the store into a folder on another file system then: \
                     Store::copy_into, `sessctl compact --into`)"
                } else {
                    ""
                };
                return Err(failure(
                    &format!("the copy could not be put in its place{mount}; nothing was changed"),
                    Some(e),
                ));
            }
            Err(NotSwapped::Stuck(why)) => {
                return Err(failure(
                    &format!("the swap of the folders failed: {why}"),
                    None,
                ));
            }
        };
        let (old, why) = place.put_away(&old_at, options.keep_old);
        report.old = old;
        report.old_not_removed = why;
        drop(lock);
        drop(gate);
        let _ = sync_folder(&place.parent);
        Ok(report)
    }

    fn refusal(&self, reason: String) -> Error {
        Error::Compact {
            path: self.inner.path.clone(),
            reason,
            source: None,
        }
    }

    /// [`Store::refusal`] for a failure that `source` caused.
    fn failure(&self, reason: &str, source: io::Error) -> Error {
        Error::Compact {
            path: self.inner.path.clone(),
            reason: reason.to_owned(),
            source: Some(source),
        }
    }

    /// Where the copy goes and the old database goes, once every reason to refuse is ruled out.
    fn compaction_place(&self) -> Result<Place> {
        // The reaper would purge the original during the copy, and hold it open after: it is
        // stopped once nothing refuses the compaction. A refused one leaves it running, for
        // the other handles of the store that refused (they go on serving).
        let reaper = crate::store::lock(&self.inner.reaper_stop).take();
        let place = self.compaction_checks();
        match place {
            Ok(_) => drop(reaper),
            Err(_) => *crate::store::lock(&self.inner.reaper_stop) = reaper,
        }
        place
    }

    fn compaction_checks(&self) -> Result<Place> {
        let refuse = |reason: &str| Err(self.refusal(reason.to_owned()));
        if Arc::strong_count(&self.inner) > 1 {
            return refuse(
                "other handles of this store, or sessions loaded from it, are still alive (or \
                 its reaper is purging): compact with the last one",
            );
        }
        if self.inner.admin_server.get().is_some() {
            return refuse(
                "it serves its admin socket: compact before serving it (or with sessctl while \
                 the application is stopped)",
            );
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        // The folder itself, not a symbolic link to it: the link stays, and names the copy.
        let dir = fs::canonicalize(&self.inner.dir).map_err(io(&self.inner.dir))?;
        let Some(parent) = dir.parent().map(Path::to_path_buf) else {
            return refuse("it is the root folder");
        };
        let dir_meta = fs::metadata(&dir).map_err(io(&dir))?;
        let parent_meta = fs::metadata(&parent).map_err(io(&parent))?;
        if dir_meta.dev() != parent_meta.dev() {
            return refuse(
                "it is a mount point, which cannot be swapped with another folder: copy the \
                 store into a new folder instead (Store::copy_into, `sessctl compact --into`)",
            );
        }
        if let Some(other) = foreign_entry(&dir).map_err(io(&dir))? {
            return Err(self.refusal(format!(
                "{} in it is not part of the database, and compaction replaces the whole \
                 folder: move it out first",
                other.display()
            )));
        }
        let euid = nix::unistd::geteuid();
        if dir_meta.uid() != euid.as_raw() && !euid.is_root() {
            return Err(self.refusal(format!(
                "the folder belongs to user {}: compact as that user (or as root), so that the \
                 copy belongs to it too",
                dir_meta.uid()
            )));
        }
        let (Some(new), Some(old)) = (beside(&dir, ".compact-new"), beside(&dir, ".compact-old"))
        else {
            return refuse("it is the root folder");
        };
        let place = Place {
            new,
            old,
            dir,
            parent,
            mode: dir_meta.mode(),
            owner: (dir_meta.uid(), dir_meta.gid()),
        };
        for (p, what) in [
            (
                &place.new,
                "a copy left by a compaction that did not finish",
            ),
            (
                &place.old,
                "the database as it was before an earlier compaction, kept by `keep_old` \
                 (`sessctl compact --keep-old`), or left by one that did not finish",
            ),
        ] {
            if fs::symlink_metadata(p).is_ok() {
                return Err(self.refusal(format!(
                    "{} is in the way ({what}; the database opened, so it is whole without \
                     it): remove it or move it elsewhere, and compact again",
                    p.display()
                )));
            }
        }
        Ok(place)
    }

    /// Refuses a `dest` that is taken or inside the database folder, and makes its folder.
    fn prepare_dest(&self, dest: &Path) -> Result<MadeDest> {
        let refuse =
            |what: &str| self.refusal(format!("the copy's folder {} {what}", dest.display()));
        if dest.as_os_str().is_empty() {
            return Err(Error::EmptyPath);
        }
        let io = |source| Error::Io {
            path: dest.to_path_buf(),
            source,
        };
        let made = match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() && fs::read_dir(dest).map_err(io)?.next().is_none() => {
                MadeDest::Contents
            }
            Ok(_) => {
                return Err(refuse(
                    "exists and is not an empty folder: the copy goes into a new database",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new().mode(0o700).create(dest).map_err(io)?;
                MadeDest::Folder
            }
            Err(e) => return Err(io(e)),
        };
        let inside = match (fs::canonicalize(dest), fs::canonicalize(&self.inner.dir)) {
            (Ok(dest), Ok(dir)) => dest.starts_with(dir),
            _ => false,
        };
        if inside {
            made.undo(dest);
            return Err(refuse("is inside the database folder"));
        }
        Ok(made)
    }

    fn copy_records(
        &self,
        dest: &Path,
        options: &CompactOptions,
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> Result<CompactReport> {
        let bytes_before = folder_size(&self.inner.dir)?;
        let copy = self.on_copy(dest, || Store::builder().create(true).open(dest))?;
        let now = self.now();
        let mut report = CompactReport {
            sessions: 0,
            dropped_expired: 0,
            bytes_before,
            bytes_after: 0,
            old: None,
            old_not_removed: None,
        };
        let mut read = 0u64;
        let mut entries = Entries::default();
        for item in self.inner.sessions.iter() {
            let (key, bytes) = item.storage()?;
            let Some(handle) = Handle::from_slice(&key) else {
                return Err(Error::Corrupt {
                    handle: key.iter().map(|b| format!("{b:02x}")).collect(),
                    reason: format!("key is {} bytes, not 16", key.len()),
                });
            };
            let head = decode_lazy(&bytes).map_err(|e| e.for_record(&handle))?.head;
            read += 1;
            if read % PROGRESS_EVERY == 0 {
                self.go_on(progress(read))?;
            }
            if options.drop_expired && head.is_expired(now) {
                report.dropped_expired += 1;
                continue;
            }
            entries.add(&handle, head.expiry_entry(), head.principal.as_deref());
            self.on_copy(dest, || copy.inner.sessions.insert(key, bytes).storage())?;
            report.sessions += 1;
            if entries.is_full() {
                self.on_copy(dest, || entries.write(&copy))?;
            }
        }
        // Asked again between the steps that follow, which take seconds on a large store: a
        // stop is honoured up to the end of the copy (a compaction's swap is not stopped).
        self.go_on(progress(read))?;
        self.on_copy(dest, || {
            entries.write(&copy)?;
            copy.flush()?;
            drop(copy);
            lock_log(dest, CLOSE_WAIT).map_err(io_at(dest))?;
            Ok(())
        })?;
        self.go_on(progress(read))?;
        self.on_copy(dest, || {
            // Checked as the next open finds it on disk, which also pads the log to its
            // segment and writes a snapshot: the size reported is the size at rest.
            let copy = Store::builder().create(false).open(dest)?;
            let check = crate::check::check(&copy)?;
            if !check.is_clean() || check.records != report.sessions {
                return Err(self.refusal(format!(
                    "its copy in {} does not check clean ({} records, {} copied: {check:?})",
                    dest.display(),
                    check.records,
                    report.sessions
                )));
            }
            drop(copy);
            lock_log(dest, CLOSE_WAIT).map_err(io_at(dest))?;
            Ok(())
        })?;
        self.go_on(progress(read))?;
        self.on_copy(dest, || sync_tree(dest).map_err(io_at(dest)))?;
        report.bytes_after = folder_size(dest)?;
        Ok(report)
    }

    /// Whether the copy goes on after its progress callback said `flow`.
    fn go_on(&self, flow: ControlFlow<()>) -> Result<()> {
        match flow {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(self.refusal(
                "it was stopped before its copy was complete; the database is unchanged and the \
                 copy removed"
                    .to_string(),
            )),
        }
    }

    /// Runs `f`, which works on the copy, saying its errors and panics as the copy's: the
    /// database itself is unchanged, and the copy's sled instance, which after a failed write
    /// takes no more (a full disk), is gone. A panic of the copy's sled is not damage of the
    /// database (the outer `unpanicked` says that of the original's panics).
    fn on_copy<T>(&self, dest: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let failed = |cause: &str, denied: bool| {
            format!(
                "writing its copy in {} failed{cause}; the database is unchanged and the copy \
                 removed{}",
                dest.display(),
                // Where the cause may be space, how much it takes.
                if denied {
                    ""
                } else {
                    " (a copy takes about the size of a freshly written store)"
                }
            )
        };
        let because =
            |cause: &dyn std::fmt::Display| self.refusal(failed(&format!(" ({cause})"), false));
        // An I/O error is the error's source, which a chain printer puts after the text.
        let io = |source: std::io::Error| {
            let denied = source.kind() == std::io::ErrorKind::PermissionDenied;
            self.failure(&failed("", denied), source)
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Error::Io { source, .. })) => Err(io(source)),
            Ok(Err(Error::Storage(e))) => Err(match e.into_io() {
                Ok(source) => io(source),
                Err(other) => because(&other),
            }),
            Ok(Err(Error::Damaged { detail, .. })) => Err(because(&detail)),
            Ok(Err(other)) => Err(other),
            Err(panic) => Err(because(&format_args!(
                "its storage engine panicked: {}",
                crate::store::panicked(&*panic)
            ))),
        }
    }
}

/// The index entries of the records copied since the last [`Entries::write`]. They are
/// written in key order, a batch at a time: in the order of the records they land on random
/// pages of the index trees (the records come in handle order, which is any deadline and any
/// principal). Sorted, a compaction of 100,000 churned sessions took 2.0–2.1 s against 2.7 s
/// (`disk_churn --compact`, two and three runs), its copy loop 1.4 s against 1.9 s. A batch
/// bounds the memory to about 25 MB (with principals of 20 bytes; the principals' bytes are
/// bounded too).
#[derive(Default)]
struct Entries {
    expiry: Vec<[u8; 24]>,
    principals: Vec<Vec<u8>>,
    /// The bytes of the principals entries held: principals may be long (up to
    /// [`MAX_PRINCIPAL_BYTES`](crate::MAX_PRINCIPAL_BYTES)).
    principal_bytes: usize,
}

impl Entries {
    /// Records whose entries are written at a time at most (a few in tests, so that they
    /// cross batches).
    const BATCH: usize = if cfg!(test) { 7 } else { 1 << 18 };
    /// Bytes of principals entries held at most.
    const BATCH_BYTES: usize = 16 << 20;

    fn add(&mut self, handle: &Handle, expiry_entry: u64, principal: Option<&str>) {
        self.expiry.push(expiry_key(expiry_entry, handle));
        if let Some(p) = principal {
            let key = principal_key(p, handle);
            self.principal_bytes += key.len();
            self.principals.push(key);
        }
    }

    fn is_full(&self) -> bool {
        self.expiry.len() >= Self::BATCH || self.principal_bytes >= Self::BATCH_BYTES
    }

    /// Writes the entries into `copy`'s index trees, in key order, and forgets them.
    fn write(&mut self, copy: &Store) -> Result<()> {
        self.expiry.sort_unstable();
        for k in self.expiry.drain(..) {
            copy.inner.expiry.insert(k, &[]).storage()?;
        }
        self.principals.sort_unstable();
        for k in self.principals.drain(..) {
            copy.inner.principals.insert(k, &[]).storage()?;
        }
        self.principal_bytes = 0;
        Ok(())
    }
}

/// What [`Store::prepare_dest`] made, so that a failed copy takes exactly that away.
#[derive(Clone, Copy)]
enum MadeDest {
    /// The folder itself.
    Folder,
    /// Only what goes in it: the folder was there, empty.
    Contents,
}

impl MadeDest {
    fn undo(self, dest: &Path) {
        match self {
            MadeDest::Folder => {
                let _ = fs::remove_dir_all(dest);
            }
            MadeDest::Contents => {
                if let Ok(entries) = fs::read_dir(dest) {
                    for entry in entries.flatten() {
                        let path = entry.path();
                        let _ = match entry.file_type() {
                            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                            _ => fs::remove_file(&path),
                        };
                    }
                }
            }
        }
    }
}

/// The folders of a compaction.
struct Place {
    /// The database folder, symbolic links resolved.
    dir: PathBuf,
    /// The folder it is in.
    parent: PathBuf,
    /// Where the copy is made: `<name>.compact-new`.
    new: PathBuf,
    /// Where the old database goes when kept: `<name>.compact-old`.
    old: PathBuf,
    /// The database folder's mode, for the copy.
    mode: u32,
    /// The database folder's owner and group, for the copy.
    owner: (u32, u32),
}

impl Place {
    /// Gives the copy the database's modes (its folder's, and each of sled's files and folders
    /// that the original has, the blobs' that of its log), and its owner and group where they
    /// differ (a copy made by root of a service user's database).
    fn carry_over_modes_and_owner(&self) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
        };
        mode(&self.new, self.mode)?;
        let log_mode = fs::metadata(self.dir.join("db"))?.mode();
        for entry in fs::read_dir(&self.new)? {
            let entry = entry?;
            if let Ok(original) = fs::symlink_metadata(self.dir.join(entry.file_name())) {
                mode(&entry.path(), original.mode())?;
            }
        }
        if let Ok(blobs) = fs::read_dir(self.new.join("blobs")) {
            for blob in blobs {
                mode(&blob?.path(), log_mode)?;
            }
        }
        let made = fs::metadata(&self.new)?;
        if (made.uid(), made.gid()) != self.owner {
            chown_tree(&self.new, self.owner)?;
        }
        sync_folder(&self.new)
    }

    /// Removes the old database, now at `at`, or keeps it (renamed to `<name>.compact-old`)
    /// when asked to, or when something was put in its folder during the compaction, which is
    /// not the compaction's to remove. Returns where it is if it is still there, and why if it
    /// was to be removed or renamed and was not.
    fn put_away(&self, at: &Path, keep: bool) -> (Option<PathBuf>, Option<String>) {
        let other = match foreign_entry(at) {
            Ok(None) => None,
            Ok(Some(other)) => Some(format!(
                "{} was put in its folder during the compaction",
                other.display()
            )),
            Err(e) => Some(format!("its folder could not be read: {e}")),
        };
        if !keep && other.is_none() {
            return match fs::remove_dir_all(at) {
                Ok(()) => (None, None),
                Err(e) => (
                    Some(at.to_path_buf()),
                    Some(format!("removing it failed: {e}")),
                ),
            };
        }
        if at != self.old {
            if let Err(e) = fs::rename(at, &self.old) {
                let why = format!("renaming it to {} failed: {e}", self.old.display());
                let why = other.map_or(why.clone(), |other| format!("{other}; {why}"));
                return (Some(at.to_path_buf()), Some(why));
            }
        }
        (Some(self.old.clone()), other)
    }

    /// Puts the copy at the database's path; returns where the old database is now. The
    /// parent folder is synced after, as well as it can be: once the renames are made, a sync
    /// that fails leaves a whole database at the path either way (the copy, or after a crash
    /// the original), so the swap stands.
    fn swap(&self) -> std::result::Result<PathBuf, NotSwapped> {
        #[cfg(test)]
        let exchange = !tests::TWO_RENAMES.get();
        #[cfg(test)]
        if tests::SWAP_FAILS.get() && exchange {
            return Err(NotSwapped::Unchanged(io::Error::from_raw_os_error(
                nix::libc::EBUSY,
            )));
        }
        #[cfg(not(test))]
        let exchange = true;
        // Read only where the system can exchange two folders.
        let _ = exchange;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if exchange {
            use nix::errno::Errno;
            use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
            match renameat2(
                AT_FDCWD,
                &self.dir,
                AT_FDCWD,
                &self.new,
                RenameFlags::RENAME_EXCHANGE,
            ) {
                Ok(()) => {
                    let _ = sync_folder(&self.parent);
                    return Ok(self.new.clone());
                }
                // The file system cannot exchange: two renames then.
                Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
                Err(e) => return Err(NotSwapped::Unchanged(e.into())),
            }
        }
        fs::rename(&self.dir, &self.old).map_err(NotSwapped::Unchanged)?;
        #[cfg(test)]
        let second = if tests::SWAP_FAILS.get() {
            Err(io::Error::other("injected"))
        } else {
            fs::rename(&self.new, &self.dir)
        };
        #[cfg(not(test))]
        let second = fs::rename(&self.new, &self.dir);
        if let Err(e) = second {
            #[cfg(test)]
            let back = if tests::BACK_FAILS.get() {
                Err(io::Error::other("injected too"))
            } else {
                fs::rename(&self.old, &self.dir)
            };
            #[cfg(not(test))]
            let back = fs::rename(&self.old, &self.dir);
            return match back {
                Ok(()) => Err(NotSwapped::Unchanged(e)),
                Err(back) => Err(NotSwapped::Stuck(format!(
                    "{e}; and the original could not be put back ({back}): the original \
                     database is at {}, its compacted copy at {}; rename one of them to {}",
                    self.old.display(),
                    self.new.display(),
                    self.dir.display()
                ))),
            };
        }
        let _ = sync_folder(&self.parent);
        Ok(self.old.clone())
    }
}

/// Why [`Place::swap`] did not put the copy in place.
enum NotSwapped {
    /// Nothing was changed: the database is at its path, and the copy may go.
    Unchanged(io::Error),
    /// The original was moved aside and could not be put back: both folders must stay.
    Stuck(String),
}

/// What an open of `path` says where a compaction cut between its two renames left no
/// database: the original is at `<name>.compact-old`, the whole copy at `<name>.compact-new`
/// ([`Place::swap`]). Not `Missing`, and no new database made there: an application started
/// then would otherwise begin with an empty store, and the sessions beside it would look like
/// leftovers.
pub(crate) fn cut_between_renames(path: &Path) -> Option<Error> {
    let (old, new) = (beside(path, ".compact-old")?, beside(path, ".compact-new")?);
    let holds_database = |dir: &Path| dir.join("db").is_file() && dir.join("conf").is_file();
    (holds_database(&old) && holds_database(&new)).then(|| Error::CompactionCut {
        path: path.to_path_buf(),
        original: old,
        copy: new,
    })
}

/// The first entry of a database folder that is not the database's own
/// ([`crate::is_database_entry`]), if any.
fn foreign_entry(dir: &Path) -> io::Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !crate::is_database_entry(&entry.file_name(), entry.file_type()?) {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

fn chown_tree(path: &Path, (uid, gid): (u32, u32)) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), (uid, gid))?;
        }
    }
    Ok(())
}

/// Waits, up to `wait`, while a compaction of the database at `path` that renames twice holds
/// the original's folder, moved aside to `<name>.compact-old` (its gate, held exclusively):
/// between its two renames the path names nothing for a moment.
pub(crate) fn wait_for_compaction(path: &Path, wait: Duration) -> Result<()> {
    let Some(old) = beside(path, ".compact-old") else {
        return Ok(());
    };
    if !old.is_dir() {
        return Ok(());
    }
    match opening_gate(&old, wait) {
        Err(Error::Locked { .. }) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// `<name><suffix>` beside `path`.
fn beside(path: &Path, suffix: &str) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(suffix);
    Some(path.with_file_name(name))
}

/// `fsync`s every file and folder under `path`, then `path`'s parent, which names it.
fn sync_tree(path: &Path) -> io::Result<()> {
    fn walk(path: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        if meta.is_dir() {
            for entry in fs::read_dir(path)? {
                walk(&entry?.path())?;
            }
        }
        if meta.is_dir() || meta.is_file() {
            File::open(path)?.sync_all()?;
        }
        Ok(())
    }
    walk(path)?;
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_folder(p),
        _ => sync_folder(Path::new(".")),
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_folder(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    use nix::fcntl::{Flock, FlockArg};

    use super::*;
    use crate::folder_lock::descriptors_of;
    use crate::{Admin as _, ManualClock, SessionId};

    /// What runs in place of another process, at a moment of a compaction.
    pub(super) type Opener = Box<dyn FnOnce(&Path)>;

    thread_local! {
        /// Makes the swap rename twice, as on a file system that cannot exchange two folders.
        pub(super) static TWO_RENAMES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        /// Runs between the original's close and the take-over of its lock: another process
        /// opening the database right then.
        pub(super) static AFTER_CLOSE: std::cell::Cell<Option<Opener>> =
            const { std::cell::Cell::new(None) };
        /// Makes the exchange fail, or with [`TWO_RENAMES`] the second rename.
        pub(super) static SWAP_FAILS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        /// With [`SWAP_FAILS`] and [`TWO_RENAMES`], makes putting the original back fail too.
        pub(super) static BACK_FAILS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Runs `f` with the swap's failures injected as asked, and none after.
    fn injecting<T>(
        two_renames: bool,
        swap_fails: bool,
        back_fails: bool,
        f: impl FnOnce() -> T,
    ) -> T {
        TWO_RENAMES.set(two_renames);
        SWAP_FAILS.set(swap_fails);
        BACK_FAILS.set(back_fails);
        let result = f();
        TWO_RENAMES.set(false);
        SWAP_FAILS.set(false);
        BACK_FAILS.set(false);
        result
    }

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600_000;

    struct Fixture {
        dir: tempfile::TempDir,
        clock: ManualClock,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
                clock: ManualClock::at_ms(T0),
            }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("sessions.sessdb")
        }

        fn open(&self) -> Store {
            Store::builder()
                .clock(self.clock.clone())
                .open(self.path())
                .unwrap()
        }

        /// The names in the folder that holds the database.
        fn beside(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        }
    }

    /// Every record's stored bytes, by key.
    /// The error of a compaction its progress callback stopped.
    fn stopped(err: &Error) -> bool {
        matches!(err, Error::Compact { reason, .. } if reason.contains("stopped"))
    }

    fn records(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
        store
            .inner
            .sessions
            .iter()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    /// `n` sessions of three principals, each saved `rounds` times with ~1 KB of new data.
    fn churn(store: &Store, n: usize, rounds: usize) -> Vec<SessionId> {
        let mut ids = Vec::new();
        for i in 0..n {
            let mut s = store.create();
            s.set_principal(Some(&format!("user{}", i % 3))).unwrap();
            s.insert("n", &i).unwrap();
            s.save().unwrap();
            ids.push(*s.id());
        }
        for round in 0..rounds {
            for id in &ids {
                let mut s = store.load(id).unwrap().unwrap();
                s.insert("blob", &format!("{round:04}").repeat(250))
                    .unwrap();
                s.save().unwrap();
            }
        }
        ids
    }

    #[test]
    fn compaction_keeps_every_record_as_stored_and_shrinks_a_churned_store() {
        let f = Fixture::new();
        let store = f.open();
        let ids = churn(&store, 300, 20);
        let before = records(&store);
        let principals_before = store.inner.principals.len();

        let report = store.compact(&CompactOptions::default()).unwrap();
        assert_eq!((report.sessions, report.dropped_expired), (300, 0));
        assert!(
            report.bytes_after < report.bytes_before,
            "{} bytes after, {} before",
            report.bytes_after,
            report.bytes_before
        );
        assert_eq!((report.old, report.old_not_removed), (None, None));
        assert_eq!(f.beside(), ["sessions.sessdb"]);

        let store = f.open();
        assert_eq!(records(&store), before, "every record byte for byte");
        assert_eq!(store.inner.principals.len(), principals_before);
        assert!(store.check().unwrap().is_clean());
        let s = store.load(&ids[7]).unwrap().unwrap();
        assert_eq!(s.get::<usize>("n").unwrap(), Some(7));
        assert_eq!(store.invalidate_principal("user1").unwrap(), 100);
        assert_eq!(store.inner.sessions.len(), 200);
    }

    #[test]
    fn expired_sessions_are_left_out_on_request_only() {
        let f = Fixture::new();
        let store = f.open();
        let old = churn(&store, 10, 0);
        f.clock.advance(Duration::from_secs(24 * 3600));
        let new = churn(&store, 5, 0);
        let copy = f.dir.path().join("all");
        let report = store.copy_into(&copy, &CompactOptions::default()).unwrap();
        assert_eq!((report.sessions, report.dropped_expired), (15, 0));

        let options = CompactOptions {
            drop_expired: true,
            ..CompactOptions::default()
        };
        let report = store.compact(&options).unwrap();
        assert_eq!((report.sessions, report.dropped_expired), (5, 10));
        let store = f.open();
        assert!(store.check().unwrap().is_clean());
        for id in &old {
            assert!(store
                .inner
                .sessions
                .get(id.handle().as_bytes())
                .unwrap()
                .is_none());
        }
        for id in &new {
            assert!(store.load(id).unwrap().is_some());
        }
        assert_eq!(store.inner.expiry.len(), 5);
        assert_eq!(store.inner.principals.len(), 5);
    }

    #[test]
    fn the_copy_has_the_index_entries_its_records_call_for_and_no_others() {
        let f = Fixture::new();
        let store = f.open();
        let ids = churn(&store, 20, 0);
        let inner = &store.inner;
        // A leftover of a crash in each index, and one record's principal entry lost.
        inner.expiry.insert([0u8; 24], &[]).unwrap();
        let ghost = SessionId::random().handle();
        inner
            .principals
            .insert(principal_key("ghost", &ghost), &[])
            .unwrap();
        let lost = principal_key("user0", &ids[0].handle());
        assert!(inner.principals.remove(lost).unwrap().is_some());
        let found = store.check().unwrap();
        assert_eq!(found.missing_principal, vec![ids[0].handle()]);
        assert_eq!((found.stale_expiry, found.stale_principal), (1, 1));

        let dest = f.dir.path().join("copy");
        assert_eq!(
            store
                .copy_into(&dest, &CompactOptions::default())
                .unwrap()
                .sessions,
            20
        );
        drop(store);
        let copy = Store::builder().clock(f.clock.clone()).open(&dest).unwrap();
        assert!(copy.check().unwrap().is_clean());
        assert_eq!(copy.inner.expiry.len(), 20);
        assert_eq!(copy.inner.principals.len(), 20);
        assert_eq!(copy.sessions_of("user0").unwrap().len(), 7);
    }

    /// An interrupted command stops the copy through its progress callback: wherever it
    /// stops, the copy is removed and the database is as it was; a copy stopped by nothing
    /// reports every record read, the last call with all of them.
    #[test]
    fn a_compaction_stopped_by_its_progress_callback_changes_nothing_and_leaves_no_copy() {
        let f = Fixture::new();
        let store = f.open();
        churn(&store, 2 * PROGRESS_EVERY as usize + 5, 0);
        let before = records(&store);
        for stop_at in [PROGRESS_EVERY, 2 * PROGRESS_EVERY, 2 * PROGRESS_EVERY + 5] {
            let mut calls = Vec::new();
            let err = store
                .copy_into_with(f.dir.path().join("copy"), &CompactOptions::default(), |n| {
                    calls.push(n);
                    if n >= stop_at {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .unwrap_err();
            assert!(stopped(&err), "{err}");
            assert_eq!(calls.last(), Some(&stop_at));
            assert_eq!(f.beside(), ["sessions.sessdb"], "no copy left behind");
        }
        drop(store);
        let mut calls = Vec::new();
        let err = f
            .open()
            .compact_with(&CompactOptions::default(), |n| {
                calls.push(n);
                ControlFlow::Break(())
            })
            .unwrap_err();
        assert!(stopped(&err), "{err}");
        assert_eq!(calls, [PROGRESS_EVERY]);
        assert_eq!(f.beside(), ["sessions.sessdb"], "no copy left behind");
        assert_eq!(records(&f.open()), before);

        // Every record read: asked again after the copy's flush, after its check, and before
        // the swap; a stop at any of them still leaves nothing behind.
        let all = 2 * PROGRESS_EVERY + 5;
        for stop_at_call in 3..=6 {
            let mut calls = 0;
            let err = f
                .open()
                .compact_with(&CompactOptions::default(), |_| {
                    calls += 1;
                    if calls == stop_at_call {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .unwrap_err();
            assert!(stopped(&err), "call {stop_at_call}: {err}");
            assert_eq!(f.beside(), ["sessions.sessdb"], "call {stop_at_call}");
            assert_eq!(records(&f.open()), before, "call {stop_at_call}");
        }
        let mut calls = Vec::new();
        let report = f
            .open()
            .compact_with(&CompactOptions::default(), |n| {
                calls.push(n);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(report.sessions, all);
        assert_eq!(
            calls,
            [PROGRESS_EVERY, 2 * PROGRESS_EVERY, all, all, all, all]
        );
        assert_eq!(records(&f.open()), before);
    }

    #[test]
    fn an_undecodable_record_stops_the_compaction_and_changes_nothing() {
        let f = Fixture::new();
        let store = f.open();
        churn(&store, 5, 0);
        let bad = SessionId::random().handle();
        store
            .inner
            .sessions
            .insert(bad.as_bytes(), &[0xee])
            .unwrap();
        let before = records(&store);

        let err = store.compact(&CompactOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { handle, .. } if *handle == bad.to_string()),
            "{err}"
        );
        assert_eq!(f.beside(), ["sessions.sessdb"], "no copy left behind");
        assert_eq!(records(&f.open()), before);
    }

    #[test]
    fn compaction_refuses_a_store_in_use() {
        let f = Fixture::new();
        let store = f.open();
        let ids = churn(&store, 3, 0);
        let clone = store.clone();
        let err = store.compact(&CompactOptions::default()).unwrap_err();
        assert!(err.to_string().contains("other handles"), "{err}");
        let session = clone.load(&ids[0]).unwrap().unwrap();
        let err = clone.compact(&CompactOptions::default()).unwrap_err();
        assert!(err.to_string().contains("sessions loaded from it"), "{err}");
        drop(session);
        assert_eq!(f.beside(), ["sessions.sessdb"]);
        assert_eq!(f.open().inner.sessions.len(), 3);
    }

    /// The reaper's channel stays connected after a refusal: its thread ends only when the
    /// channel does, and the handles left must go on purging. Before, a refused compaction
    /// stopped the reaper of the store that went on serving.
    #[test]
    fn a_refused_compaction_keeps_the_reaper() {
        let f = Fixture::new();
        let store = Store::builder()
            .clock(f.clock.clone())
            .reap_every(Duration::from_secs(3600))
            .open(f.path())
            .unwrap();
        let app = store.clone();
        assert!(crate::store::lock(&app.inner.reaper_stop).is_some());
        let err = store.compact(&CompactOptions::default()).unwrap_err();
        assert!(err.to_string().contains("other handles"), "{err}");
        assert!(crate::store::lock(&app.inner.reaper_stop).is_some());
    }

    #[test]
    fn compaction_refuses_a_read_only_store() {
        let f = Fixture::new();
        churn(&f.open(), 1, 0);
        let store = Store::builder().read_only(true).open(f.path()).unwrap();
        assert!(matches!(
            store.compact(&CompactOptions::default()),
            Err(Error::ReadOnly { .. })
        ));
    }

    #[test]
    fn compaction_refuses_a_folder_holding_something_else_or_a_leftover_beside_it() {
        let f = Fixture::new();
        churn(&f.open(), 3, 0);
        fs::write(f.path().join("notes.txt"), "mine").unwrap();
        let err = f.open().compact(&CompactOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Compact { reason, .. } if reason.contains("notes.txt")),
            "{err}"
        );
        assert_eq!(fs::read(f.path().join("notes.txt")).unwrap(), b"mine");
        fs::remove_file(f.path().join("notes.txt")).unwrap();

        for leftover in ["sessions.sessdb.compact-new", "sessions.sessdb.compact-old"] {
            let at = f.dir.path().join(leftover);
            fs::create_dir(&at).unwrap();
            fs::write(at.join("keep"), "x").unwrap();
            let err = f.open().compact(&CompactOptions::default()).unwrap_err();
            assert!(err.to_string().contains(leftover), "{err}");
            assert_eq!(fs::read(at.join("keep")).unwrap(), b"x", "not touched");
            fs::remove_dir_all(&at).unwrap();
        }
        assert_eq!(f.beside(), ["sessions.sessdb"]);
        assert_eq!(f.open().inner.sessions.len(), 3);
    }

    #[test]
    fn the_old_database_is_kept_on_request_and_still_opens() {
        let f = Fixture::new();
        let store = f.open();
        churn(&store, 4, 3);
        let before = records(&store);
        let options = CompactOptions {
            keep_old: true,
            ..CompactOptions::default()
        };
        let report = store.compact(&options).unwrap();
        let old = f.dir.path().join("sessions.sessdb.compact-old");
        assert_eq!(report.old.as_deref(), Some(old.as_path()));
        assert_eq!(
            f.beside(),
            ["sessions.sessdb", "sessions.sessdb.compact-old"]
        );
        assert_eq!(records(&Store::open(&old).unwrap()), before);
        assert_eq!(records(&f.open()), before);
    }

    #[test]
    fn the_folders_mode_carries_over_and_a_link_to_it_stays_a_link() {
        let f = Fixture::new();
        churn(&f.open(), 2, 0);
        fs::set_permissions(f.path(), fs::Permissions::from_mode(0o750)).unwrap();
        let link = f.dir.path().join("link");
        std::os::unix::fs::symlink(f.path(), &link).unwrap();

        let store = Store::open(&link).unwrap();
        assert_eq!(
            store.compact(&CompactOptions::default()).unwrap().sessions,
            2
        );
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        let mode = fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(f.beside(), ["link", "sessions.sessdb"]);
        assert_eq!(Store::open(&link).unwrap().inner.sessions.len(), 2);
    }

    #[test]
    fn a_copy_goes_only_into_a_new_or_empty_folder_outside_the_database() {
        let f = Fixture::new();
        let store = f.open();
        churn(&store, 2, 0);
        let options = CompactOptions::default();

        let taken = f.dir.path().join("taken");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("x"), "x").unwrap();
        let err = store.copy_into(&taken, &options).unwrap_err();
        assert!(err.to_string().contains("not an empty folder"), "{err}");
        assert_eq!(fs::read(taken.join("x")).unwrap(), b"x");

        let inside = f.path().join("copy");
        let err = store.copy_into(&inside, &options).unwrap_err();
        assert!(
            err.to_string().contains("inside the database folder"),
            "{err}"
        );
        assert!(!inside.exists());

        let empty = f.dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        // A damaged record makes the copy fail: the empty folder stays, empty.
        let bad = SessionId::random().handle();
        store
            .inner
            .sessions
            .insert(bad.as_bytes(), &[0xee])
            .unwrap();
        assert!(store.copy_into(&empty, &options).is_err());
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
        store.inner.sessions.remove(bad.as_bytes()).unwrap();
        assert_eq!(store.copy_into(&empty, &options).unwrap().sessions, 2);

        let err = store
            .copy_into(f.dir.path().join("no/such/parent"), &options)
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn where_folders_cannot_be_exchanged_two_renames_do_the_same() {
        for keep_old in [false, true] {
            let f = Fixture::new();
            let store = f.open();
            churn(&store, 6, 2);
            let before = records(&store);
            let options = CompactOptions {
                keep_old,
                ..CompactOptions::default()
            };
            let report = injecting(true, false, false, || store.compact(&options)).unwrap();
            assert_eq!(report.sessions, 6);
            assert_eq!(report.old.is_some(), keep_old);
            let mut expected = vec!["sessions.sessdb"];
            if keep_old {
                expected.push("sessions.sessdb.compact-old");
                assert_eq!(
                    records(&Store::open(f.dir.path().join(expected[1])).unwrap()),
                    before
                );
            }
            assert_eq!(f.beside(), expected);
            assert_eq!(records(&f.open()), before);
        }
    }

    #[test]
    fn a_swap_that_fails_changes_nothing_and_leaves_no_copy() {
        for two_renames in [false, true] {
            let f = Fixture::new();
            let store = f.open();
            churn(&store, 5, 1);
            let before = records(&store);
            let err = injecting(two_renames, true, false, || {
                store.compact(&CompactOptions::default())
            })
            .unwrap_err();
            assert!(
                err.to_string().contains("could not be put in its place")
                    && err.to_string().ends_with("nothing was changed"),
                "{err}"
            );
            // The rename's error is the source, not in the text too.
            let source = std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .map(ToString::to_string);
            let expected = if two_renames {
                "injected".to_string()
            } else {
                io::Error::from_raw_os_error(nix::libc::EBUSY).to_string()
            };
            assert_eq!(source.as_deref(), Some(expected.as_str()), "{err:?}");
            assert!(!err.to_string().contains(&expected), "{err}");
            assert_eq!(f.beside(), ["sessions.sessdb"]);
            assert_eq!(records(&f.open()), before);
        }
    }

    /// A failed write of the copy keeps its I/O error (a denied folder, a full disk) as the
    /// compaction error's source, where a chain printer finds it (sessctl's advice on a
    /// denied folder) and prints it once, last; other failures say why in the text.
    #[test]
    fn a_failed_write_of_the_copy_keeps_its_io_error_as_the_source() {
        let f = Fixture::new();
        let store = f.open();
        let dest = f.dir.path().join("copy");
        // The note on the space a copy takes is for the errors space may cause, not a denial.
        for (code, kind, note, text) in [
            (
                nix::libc::EACCES,
                io::ErrorKind::PermissionDenied,
                "",
                "Permission denied (os error 13)",
            ),
            (
                nix::libc::ENOSPC,
                io::ErrorKind::StorageFull,
                " (a copy takes about the size of a freshly written store)",
                "No space left on device (os error 28)",
            ),
        ] {
            let failures: [Box<dyn FnOnce() -> Result<()>>; 2] = [
                Box::new(|| {
                    Err(Error::Io {
                        path: dest.clone(),
                        source: io::Error::from_raw_os_error(code),
                    })
                }),
                Box::new(move || {
                    Err(crate::error::storage(sled::Error::Io(
                        io::Error::from_raw_os_error(code),
                    )))
                }),
            ];
            for fail in failures {
                let err = store.on_copy(&dest, fail).unwrap_err();
                assert!(
                    matches!(&err, Error::Compact { source: Some(e), .. } if e.kind() == kind),
                    "{err:?}"
                );
                assert_eq!(
                    crate::error::chain(&err),
                    format!(
                        "cannot compact {}: writing its copy in {} failed; the database is \
                         unchanged and the copy removed{note}: {text}",
                        f.path().display(),
                        dest.display()
                    )
                );
            }
        }
        let err = store
            .on_copy(&dest, || -> Result<()> {
                Err(crate::error::storage(sled::Error::Unsupported("no".into())))
            })
            .unwrap_err();
        assert!(
            matches!(&err, Error::Compact { source: None, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("failed (storage engine error: Unsupported: no); the database"),
            "{err}"
        );
    }

    #[test]
    fn a_swap_cut_half_way_keeps_both_folders_and_no_new_database_is_made_in_their_place() {
        let f = Fixture::new();
        let store = f.open();
        churn(&store, 5, 1);
        let before = records(&store);
        let err = injecting(true, true, true, || {
            store.compact(&CompactOptions::default())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("the original database is at"), "{err}");
        assert_eq!(
            f.beside(),
            ["sessions.sessdb.compact-new", "sessions.sessdb.compact-old"]
        );
        // What an application starting now would do: make an empty store. Refused, and a
        // read-only open says the same, not just "missing".
        for builder in [Store::builder(), Store::builder().read_only(true)] {
            let err = builder.open(f.path()).unwrap_err();
            assert!(
                matches!(&err, Error::CompactionCut { original, copy, .. }
                    if original.ends_with("sessions.sessdb.compact-old")
                        && copy.ends_with("sessions.sessdb.compact-new")),
                "{err}"
            );
        }
        assert!(!f.path().exists());
        // Nor in an empty folder made there (as `sessctl import` makes it before it opens).
        fs::create_dir(f.path()).unwrap();
        assert!(matches!(
            Store::open(f.path()),
            Err(Error::CompactionCut { .. })
        ));
        assert_eq!(fs::read_dir(f.path()).unwrap().count(), 0);
        fs::remove_dir(f.path()).unwrap();
        let old = f.dir.path().join("sessions.sessdb.compact-old");
        let new = f.dir.path().join("sessions.sessdb.compact-new");
        assert_eq!(records(&Store::open(&old).unwrap()), before);
        assert_eq!(records(&Store::open(&new).unwrap()), before);
        fs::rename(&new, f.path()).unwrap();
        assert_eq!(records(&f.open()), before);
    }

    #[test]
    fn a_file_put_in_the_folder_during_the_compaction_keeps_the_old_database() {
        let f = Fixture::new();
        let store = f.open();
        churn(&store, 20, 0);
        let folder = f.path();
        let report = store
            .compact_with(&CompactOptions::default(), |_| {
                let _ = fs::write(folder.join("late.txt"), "mine");
                ControlFlow::Continue(())
            })
            .unwrap();
        let old = f.dir.path().join("sessions.sessdb.compact-old");
        assert_eq!(report.old.as_deref(), Some(old.as_path()));
        let why = report.old_not_removed.unwrap();
        assert!(
            why.contains("late.txt") && why.contains("during the compaction"),
            "{why}"
        );
        assert_eq!(fs::read(old.join("late.txt")).unwrap(), b"mine");
        assert_eq!(f.open().inner.sessions.len(), 20);
    }

    #[test]
    fn compaction_refuses_a_store_serving_its_admin_socket() {
        let f = Fixture::new();
        let store = Store::builder()
            .clock(f.clock.clone())
            .admin_socket_default()
            .open(f.path())
            .unwrap();
        churn(&store, 2, 0);
        let err = store.compact(&CompactOptions::default()).unwrap_err();
        assert!(err.to_string().contains("serves its admin socket"), "{err}");
        assert_eq!(f.beside(), ["sessions.sessdb"]);
    }

    #[test]
    fn the_files_modes_carry_over() {
        let f = Fixture::new();
        churn(&f.open(), 2, 0);
        let log = f.path().join("db");
        fs::set_permissions(&log, fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(f.path().join("conf"), fs::Permissions::from_mode(0o604)).unwrap();
        f.open().compact(&CompactOptions::default()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&log), 0o640);
        assert_eq!(mode(&f.path().join("conf")), 0o604);
    }

    /// An opener that comes right after the original is closed, before its lock is taken over
    /// (the moment where, without the gate, it could open it, save and close, and its session
    /// went with the old folder): it waits for the gate, is told the database is held, and the
    /// compaction goes on. A thread of its own, so that its file descriptors are not the
    /// compaction's, as for another process.
    #[test]
    fn an_opener_right_after_the_close_is_held_off_until_the_swap() {
        let f = Fixture::new();
        churn(&f.open(), 10, 0);
        let clock = f.clock.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        AFTER_CLOSE.set(Some(Box::new(move |dir: &Path| {
            let dir = dir.to_path_buf();
            let opened = std::thread::spawn(move || {
                let store = Store::builder().clock(clock).open(&dir)?;
                let mut s = store.create();
                s.save()?;
                Ok::<_, Error>(*s.id())
            })
            .join()
            .unwrap();
            tx.send(opened).unwrap();
        })));
        let report = f.open().compact(&CompactOptions::default());
        AFTER_CLOSE.set(None);
        assert_eq!(report.unwrap().sessions, 10);
        let opened = rx.recv().unwrap();
        assert!(matches!(opened, Err(Error::Locked { .. })), "{opened:?}");
        assert_eq!(f.open().inner.sessions.len(), 10);
    }

    /// Another descriptor of the log in this process (an application watching the log's
    /// size, say) is not sled's: the compaction waits for sled's alone, keeps its lock, and
    /// goes on. (Waiting for every descriptor of the log, a first version of `HeldLog` refused
    /// this compaction after 5 s.) And the lock kept is the one sled took: another open file of
    /// the log cannot take it while the compaction runs.
    #[test]
    fn another_descriptor_of_the_log_is_not_waited_for() {
        let f = Fixture::new();
        let store = f.open();
        churn(&store, 10, 0);
        let other = File::open(f.path().join("db")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        AFTER_CLOSE.set(Some(Box::new(move |dir: &Path| {
            let mut log = File::open(dir.join("db")).unwrap();
            let mut free = false;
            for _ in 0..100 {
                log = match Flock::lock(log, FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => {
                        free = true;
                        lock.unlock().unwrap()
                    }
                    Err((log, _)) => log,
                };
            }
            tx.send(free).unwrap();
        })));
        let report = store.compact(&CompactOptions::default());
        AFTER_CLOSE.set(None);
        assert_eq!(report.unwrap().sessions, 10);
        assert!(
            !rx.recv().unwrap(),
            "the original's lock came free after its close"
        );
        drop(other);
        assert_eq!(f.open().inner.sessions.len(), 10);
    }

    /// The application opens the log just after sled closed it (a size watcher, say): its new
    /// descriptor gets sled's old number, the lowest free one. The wait sees that this number
    /// names another open file of the log now, not sled's, and goes on. (Checking only that the
    /// number still named the log, it waited the full 5 s and refused: a reviewer's test.)
    /// Other tests of this process open files meanwhile and may take that number first, so
    /// the scenario is tried until the watcher gets it; every attempt must compact.
    #[test]
    fn the_log_reopened_under_sleds_old_number_is_not_taken_for_sleds() {
        use std::os::fd::AsRawFd as _;
        for _ in 0..50 {
            let f = Fixture::new();
            let store = f.open();
            churn(&store, 10, 0);
            let log = fs::metadata(f.path().join("db")).unwrap();
            let log = (log.dev(), log.ino());
            let before = descriptors_of(log).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            AFTER_CLOSE.set(Some(Box::new(move |dir: &Path| {
                // Until only the compaction's duplicate is left: sled has closed its own.
                while descriptors_of(log).unwrap().len() > 1 {
                    std::thread::yield_now();
                }
                let watcher = File::open(dir.join("db")).unwrap();
                tx.send(watcher).unwrap();
            })));
            let report = store.compact(&CompactOptions::default());
            AFTER_CLOSE.set(None);
            let watcher = rx.recv().unwrap();
            assert_eq!(report.unwrap().sessions, 10);
            if before.contains(&watcher.as_raw_fd()) {
                return;
            }
        }
        panic!("the watcher never got sled's old descriptor number in 50 attempts");
    }

    /// Between a compaction's two renames the path names nothing for a moment: an open then
    /// waits for the compaction (which holds the original, moved aside, exclusively) and is
    /// told the database is held, not that a compaction was cut.
    #[test]
    fn an_open_between_the_two_renames_waits_and_is_told_the_database_is_held() {
        let f = Fixture::new();
        churn(&f.open(), 3, 0);
        let copy = f.dir.path().join("sessions.sessdb.compact-new");
        f.open()
            .copy_into(&copy, &CompactOptions::default())
            .unwrap();
        let old = f.dir.path().join("sessions.sessdb.compact-old");
        fs::rename(f.path(), &old).unwrap();
        let gate = compaction_gate(&old, CLOSE_WAIT).unwrap();
        let opened = std::thread::spawn({
            let path = f.path();
            move || Store::open(path).map(drop)
        })
        .join()
        .unwrap();
        assert!(matches!(opened, Err(Error::Locked { .. })), "{opened:?}");
        drop(gate);
        assert!(matches!(
            Store::open(f.path()),
            Err(Error::CompactionCut { .. })
        ));
        // A folder beside the path that holds no database is no cut compaction.
        fs::remove_file(copy.join("conf")).unwrap();
        assert!(Store::open(f.path()).is_ok());
    }
}
