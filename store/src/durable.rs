//! Immediate durability's checkpoint (and [`Store::flush`](crate::Store::flush) in that mode):
//! sled's flush followed by an `fsync` of the database files, shared by concurrent callers
//! (group commit). Each commit in between goes to the journal (`journal.rs`); this was every
//! commit before it, and the measurements below are of that time.
//!
//! sled's own flush ends in `sync_file_range`, which survives a killed process but does not
//! flush the disk's write cache or the file's metadata; `fsync` does. Blob files (values over
//! sled's blob threshold) are written without a sync by sled, so new ones are synced here too.
//! The folders are synced the first time and whenever their listing changed (a new blob, a
//! new snapshot): a commit that changed no directory entry needs only the `fsync` of the
//! database file. Blobs and folders are synced before sled's flush and again before the log's
//! `fsync`, so the log never holds, on the disk, a pointer to a blob file that is not there:
//! sled's recovery skips such a message and applies those after it, which a power cut turned
//! into a save's index changes kept without its record. (With several savers, a blob made
//! between the first pass and the flush is on the disk only at the second; a disk without a
//! write cache, which keeps what `sync_file_range` wrote, can still lose it: only sled, by
//! syncing a blob before it writes its pointer, could close that.)
//!
//! Gathering: a commit is two waits on the disk (sled's `sync_file_range`, then the `fsync`),
//! so savers released by one commit used to miss the next, which had started with whoever was
//! already waiting, and two half-sized groups alternated. When the last commit served several
//! savers, the next leader waits for as many tickets as it served (those savers are likely on
//! their way back), for at most half the last commit's duration, before it flushes. A saver
//! alone never waits: its last commit served one (unless a purge or an import synced within
//! that commit; then its next commit waits once, at most half a commit). With 8 savers on 2
//! cores this took groups from about 4 saves to about 7, and saves from 10–13k to 12–13k/s at
//! 100k sessions and from 6.3–6.6k to 8.4–8.5k/s at 1M in alternating runs (docs/BENCHMARKS.md,
//! "What the benchmark changed in the store").

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, SledResult as _};
use crate::store::lock;

pub(crate) struct GroupCommit {
    path: PathBuf,
    /// The database file, opened once: sled never replaces it.
    db_file: OnceLock<File>,
    state: Mutex<State>,
    done: Condvar,
    /// Signalled when a ticket is handed out while a leader gathers.
    arrived: Condvar,
    /// The blobs that were there, and had not changed for [`SETTLED`], when the store opened:
    /// whole (sled writes a blob in moments, and no save had run yet), so the first commit
    /// syncs them without reading each one (a store's blobs can take gigabytes).
    settled: HashSet<u64>,
    /// Whether the next journal commit must run the blob pass; held through the pass (see
    /// [`GroupCommit::sync_new_blobs`]).
    pass_needed: Mutex<bool>,
    /// Tells a journal commit whether the folders changed since its last pass; made by the
    /// first such commit, `None` where it cannot be (then every commit runs the pass).
    watch: OnceLock<Option<Watch>>,
}

/// How long a blob file must have stood unchanged at the open to be taken for whole unread.
const SETTLED: Duration = Duration::from_secs(2);

/// The longest a leader gathers, whatever the last commit took.
const MAX_GATHER: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    /// Tickets handed out: one per write that wants to be durable.
    requested: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    flushing: bool,
    /// A leader is waiting for more tickets before it flushes.
    gathering: bool,
    /// How many savers the last commit served, plus those who asked while it ran: the tickets
    /// the next leader waits for.
    expected: u64,
    /// How long the last commit took; a leader gathers for at most half of it.
    last_commit: Duration,
    /// The blob files (by name, an LSN) known to be synced whole and still there.
    blobs_synced: HashSet<u64>,
    /// The listing of the folders when they were last synced (see [`listing`]).
    dirs_synced: Option<u64>,
    /// Commits made (each a flush and an `fsync`).
    commits: u64,
    /// Blob passes run by journal commits.
    journal_passes: u64,
}

/// What a sync made durable.
#[derive(Clone)]
struct Synced {
    /// The blobs synced whole, of those its listing found.
    blobs: HashSet<u64>,
    dirs: Option<u64>,
}

impl GroupCommit {
    pub(crate) fn new(path: &Path) -> Self {
        GroupCommit {
            path: path.to_path_buf(),
            db_file: OnceLock::new(),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            arrived: Condvar::new(),
            settled: settled_blobs(&path.join("blobs")),
            pass_needed: Mutex::new(true),
            watch: OnceLock::new(),
        }
    }

    /// Returns once every write made before the call is on stable storage. One caller flushes
    /// for all who arrive while it does.
    pub(crate) fn sync(&self, db: &sled::Db) -> Result<()> {
        let mut st = lock(&self.state);
        st.requested += 1;
        let ticket = st.requested;
        if st.gathering {
            self.arrived.notify_one();
        }
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if st.flushing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.flushing = true;
            st = self.gather(st);
            let target = st.requested;
            let served = target - st.durable;
            let before = st.synced();
            drop(st);
            let started = Instant::now();
            // The blobs these saves made, and their folder, are synced before sled's flush
            // writes the log messages that point at them (its `sync_file_range` puts them on
            // the disk), and again before the log's `fsync`: sled's recovery skips a message
            // whose blob file is missing and goes on with the messages after it, so a power
            // cut that kept the log but not a blob kept a save's index changes without its
            // record (found by `tests/tests/power.rs`; the log was synced first before).
            let result = self
                .sync_blobs(&before)
                .and_then(|early| db.flush().storage().map(|_| early))
                .and_then(|early| self.fsync(&early));
            let took = started.elapsed();
            st = lock(&self.state);
            st.flushing = false;
            self.done.notify_all();
            match result {
                Ok(synced) => {
                    st.commits += 1;
                    st.durable = st.durable.max(target);
                    st.record(&before, synced);
                    st.expected = served + (st.requested - st.durable);
                    st.last_commit = took;
                }
                Err(e) => {
                    st.expected = 0;
                    return Err(e);
                }
            }
        }
    }

    /// Syncs the blob files not yet synced whole, and the folders if their listing changed:
    /// what a frame of the commit journal needs durable before it is written (`journal.rs`,
    /// [`Journal::commit`](crate::journal::Journal::commit)).
    ///
    /// The pass (two folder listings) is skipped when [`Watch`] saw no change to either
    /// folder since the last one began: on this machine it was about a sixth of a commit
    /// (docs/BENCHMARKS.md, "The blob pass skipped").
    pub(crate) fn sync_new_blobs(&self) -> Result<()> {
        // Held through the pass, so that a change one caller's check consumed is not skipped
        // by another caller before that pass is done.
        let mut needed = lock(&self.pass_needed);
        // Made before the first pass, which covers whatever came before it.
        let watch = self
            .watch
            .get_or_init(|| Watch::new(&self.path, &self.path.join("blobs")));
        if watch.as_ref().is_none_or(Watch::changed) {
            *needed = true;
        }
        if !*needed {
            return Ok(());
        }
        let before = lock(&self.state).synced();
        // A failed pass leaves `needed` set: the next commit runs it again.
        let synced = self.sync_blobs(&before)?;
        let mut st = lock(&self.state);
        st.record(&before, synced);
        st.journal_passes += 1;
        *needed = false;
        Ok(())
    }

    /// How many commits were made (for tests: what a call cost).
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        lock(&self.state).commits
    }

    /// How many blob passes journal commits ran (for tests).
    #[cfg(test)]
    pub(crate) fn journal_passes(&self) -> u64 {
        lock(&self.state).journal_passes
    }

    /// Whether a journal commit made the watch (for tests: without it, every commit passes).
    #[cfg(test)]
    pub(crate) fn watching(&self) -> bool {
        self.watch.get().is_some_and(Option::is_some)
    }

    /// The blobs known to be synced whole, in order (for tests).
    #[cfg(test)]
    pub(crate) fn blobs_synced(&self) -> Vec<u64> {
        let mut blobs: Vec<u64> = lock(&self.state).blobs_synced.iter().copied().collect();
        blobs.sort_unstable();
        blobs
    }

    /// Waits, as the leader, until `expected` tickets are outstanding or half the last commit's
    /// time (at most [`MAX_GATHER`]) has passed. Returns at once when the last commit served
    /// one saver and nobody asked while it ran.
    fn gather<'a>(&self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if st.expected <= 1 {
            return st;
        }
        let deadline = Instant::now() + (st.last_commit / 2).min(MAX_GATHER);
        st.gathering = true;
        while st.requested - st.durable < st.expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .arrived
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        st.gathering = false;
        st
    }

    fn fsync(&self, before: &Synced) -> Result<Synced> {
        let db_path = self.path.join("db");
        let db_file = match self.db_file.get() {
            Some(f) => f,
            None => {
                let f = File::open(&db_path).map_err(io(&db_path))?;
                self.db_file.get_or_init(|| f)
            }
        };
        // The blobs and the folders before the log: a blob another saver made after the
        // early pass may have its message in the log just flushed.
        let synced = self.sync_blobs(before)?;
        db_file.sync_all().map_err(io(&db_path))?;
        Ok(synced)
    }

    /// Syncs the blobs not yet synced whole, and the folders if their listing changed.
    fn sync_blobs(&self, before: &Synced) -> Result<Synced> {
        // Every blob not yet synced whole is synced. sled writes a blob outside any commit (in
        // three writes, after its LSN was taken, so a blob can appear below one already
        // synced), and a blob synced while half-written must be synced again by the commit of
        // the save it belongs to: one counts as synced only if it was whole before its sync
        // (sled never writes a blob again once it is).
        let mut synced = HashSet::new();
        let blobs = self.path.join("blobs");
        // The blobs folder's listing, from the same pass (a missing folder lists nothing). A
        // blob that could not be listed or opened fails the pass: the commit cannot say it is
        // durable (it was skipped once, and only the next commit's pass tried it again).
        let mut blobs_listing = 0u64;
        let entries = match fs::read_dir(&blobs) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&blobs)(e)),
        };
        for entry in entries.into_iter().flatten() {
            let entry = entry.map_err(io(&blobs))?;
            blobs_listing = blobs_listing.wrapping_add(name_hash(&entry.file_name()));
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if before.blobs.contains(&lsn) {
                synced.insert(lsn);
                continue;
            }
            let whole = self.settled.contains(&lsn) || blob_is_whole(&entry.path());
            // A blob may be gone by now (rewritten); that is fine.
            match File::open(entry.path()) {
                Ok(f) => {
                    f.sync_all().map_err(io(&entry.path()))?;
                    if whole {
                        synced.insert(lsn);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&entry.path())(e)),
            }
        }
        // A directory entry (a new blob or snapshot, a rename) is durable only once its folder
        // is synced; when the listing is the one last synced, there is nothing to sync.
        let now = listing(&self.path).map_err(io(&self.path))? ^ blobs_listing;
        if before.dirs != Some(now) {
            if blobs.is_dir() {
                File::open(&blobs)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&blobs))?;
            }
            File::open(&self.path)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.path))?;
        }
        Ok(Synced {
            blobs: synced,
            dirs: Some(now),
        })
    }
}

/// An inotify watch on the names in the database folder and on the files of its blobs folder:
/// a journal commit that finds no event since its last blob pass began skips the pass.
///
/// Why that is safe: every blob a change points at was written (created, written, closed)
/// before the change was applied to its tree, so before the commit that carries the change
/// reads the events, and the kernel queues a write's event before the write returns. An event
/// of a write made during a pass is read by the next commit, which passes again: a blob found
/// half-written is synced again once whole, as without the watch. A queue that overflowed
/// reads as a change (its overflow event). A watch that ended (its folder removed, moved or
/// unmounted), or an inotify that cannot be read, makes every later commit pass. The database
/// folder is watched for names only (its files are written at every commit; only its listing
/// matters to the pass).
#[cfg(target_os = "linux")]
struct Watch {
    inotify: nix::sys::inotify::Inotify,
    ended: std::sync::atomic::AtomicBool,
}

#[cfg(target_os = "linux")]
impl Watch {
    /// `None` if either folder cannot be watched (no blobs folder yet, the process's inotify
    /// limits reached): then every commit passes.
    fn new(dir: &Path, blobs: &Path) -> Option<Watch> {
        use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let names = F::IN_CREATE | F::IN_DELETE | F::IN_MOVED_FROM | F::IN_MOVED_TO;
        inotify
            .add_watch(
                blobs,
                names | F::IN_MODIFY | F::IN_CLOSE_WRITE | F::IN_ONLYDIR,
            )
            .ok()?;
        inotify.add_watch(dir, names | F::IN_ONLYDIR).ok()?;
        Some(Watch {
            inotify,
            ended: false.into(),
        })
    }

    /// Whether anything may have changed since the last call: an event, or no way to know.
    /// Reads the queue empty, or a bounded part of it (what is left reads as a change next time).
    fn changed(&self) -> bool {
        use nix::errno::Errno;
        use nix::sys::inotify::AddWatchFlags as F;
        use std::sync::atomic::Ordering::Relaxed;
        if self.ended.load(Relaxed) {
            return true;
        }
        let mut changed = false;
        for _ in 0..64 {
            match self.inotify.read_events() {
                Ok(events) => {
                    changed = true;
                    let gone = F::IN_IGNORED | F::IN_DELETE_SELF | F::IN_MOVE_SELF | F::IN_UNMOUNT;
                    if events.iter().any(|e| e.mask.intersects(gone)) {
                        self.ended.store(true, Relaxed);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return changed,
                Err(_) => {
                    self.ended.store(true, Relaxed);
                    return true;
                }
            }
        }
        true
    }
}

/// Elsewhere there is no watch: every journal commit runs the blob pass.
#[cfg(not(target_os = "linux"))]
enum Watch {}

#[cfg(not(target_os = "linux"))]
impl Watch {
    fn new(_dir: &Path, _blobs: &Path) -> Option<Watch> {
        None
    }

    fn changed(&self) -> bool {
        match *self {}
    }
}

/// The blobs in `blobs` (a missing folder has none) that no write has touched for [`SETTLED`]:
/// sled's cleaner may be rewriting pages of a store it has just opened, into new blobs.
fn settled_blobs(blobs: &Path) -> HashSet<u64> {
    let Ok(entries) = fs::read_dir(blobs) else {
        return HashSet::new();
    };
    let now = std::time::SystemTime::now();
    entries
        .flatten()
        .filter(|entry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age >= SETTLED))
        })
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u64>().ok())
        .collect()
}

/// Whether a blob file is whole: sled writes the CRC-32 of what follows (little-endian), a
/// kind byte and the value, and a file read while its writer is still at it is shorter, so
/// its checksum does not match. A file that cannot be read is not taken for whole.
fn blob_is_whole(path: &Path) -> bool {
    match fs::read(path) {
        Ok(bytes) => match bytes.split_first_chunk::<4>() {
            Some((crc, rest)) if !rest.is_empty() => {
                crc32fast::hash(rest) == u32::from_le_bytes(*crc)
            }
            _ => false,
        },
        Err(_) => false,
    }
}

/// A fingerprint of the names in a folder, independent of their order.
fn listing(dir: &Path) -> std::io::Result<u64> {
    let mut sum = 0u64;
    for entry in fs::read_dir(dir)? {
        sum = sum.wrapping_add(name_hash(&entry?.file_name()));
    }
    Ok(sum)
}

/// One name's part of a [`listing`].
fn name_hash(name: &std::ffi::OsStr) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// An I/O error on `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

impl State {
    fn synced(&self) -> Synced {
        Synced {
            blobs: self.blobs_synced.clone(),
            dirs: self.dirs_synced,
        }
    }

    /// Takes what a sync that started from `before` made durable: its blobs (those gone since
    /// are left out), and those another sync added meanwhile.
    fn record(&mut self, before: &Synced, synced: Synced) {
        let meanwhile: Vec<u64> = self
            .blobs_synced
            .difference(&before.blobs)
            .copied()
            .collect();
        self.blobs_synced = synced.blobs;
        self.blobs_synced.extend(meanwhile);
        self.dirs_synced = synced.dirs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob as sled writes it: CRC-32 of the rest (little-endian), a kind byte, the value.
    fn blob(value: &[u8]) -> Vec<u8> {
        let mut rest = vec![1u8];
        rest.extend_from_slice(value);
        let mut bytes = crc32fast::hash(&rest).to_le_bytes().to_vec();
        bytes.extend(rest);
        bytes
    }

    /// A database folder with its log and an empty blobs folder, as sled leaves a new store.
    fn folder_with_blobs() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("db"), b"log").unwrap();
        let blobs = dir.path().join("blobs");
        fs::create_dir(&blobs).unwrap();
        (dir, blobs)
    }

    fn nothing_synced() -> Synced {
        Synced {
            blobs: HashSet::new(),
            dirs: None,
        }
    }

    fn sorted(synced: &Synced) -> Vec<u64> {
        let mut blobs: Vec<u64> = synced.blobs.iter().copied().collect();
        blobs.sort_unstable();
        blobs
    }

    /// A blob found half-written (another thread's save still writing it) is synced but not
    /// counted as synced: the commit of the save it belongs to syncs it again once whole. A
    /// blob that appears below one already synced (sled takes a blob's LSN before it writes
    /// the file) is synced too. One already synced whole is not synced again, and one gone
    /// is forgotten.
    #[test]
    fn only_blobs_found_whole_count_as_synced() {
        let (dir, blobs) = folder_with_blobs();
        let whole = blob(&[7; 100]);
        fs::write(blobs.join("200"), &whole).unwrap();
        fs::write(blobs.join("300"), &whole[..50]).unwrap();
        // An empty file, or one of a checksum alone, is not whole either.
        fs::write(blobs.join("400"), b"").unwrap();
        fs::write(blobs.join("500"), &whole[..4]).unwrap();
        let commit = GroupCommit::new(dir.path());
        let first = commit.fsync(&nothing_synced()).unwrap();
        assert_eq!(sorted(&first), [200], "not the half-written blobs");
        fs::write(blobs.join("300"), &whole).unwrap();
        fs::write(blobs.join("100"), &whole).unwrap();
        fs::remove_file(blobs.join("200")).unwrap();
        let second = commit.fsync(&first).unwrap();
        assert_eq!(sorted(&second), [100, 300]);
    }

    /// The blobs that stood unchanged when the store opened are synced without being read
    /// (the first commit after a restart would read every blob: gigabytes, for some stores);
    /// one written just before the open is still checked.
    #[test]
    fn blobs_settled_at_the_open_are_synced_unread() {
        let (dir, blobs) = folder_with_blobs();
        // Not whole by its checksum, so only the open's listing can make it count as synced.
        let old = blobs.join("100");
        fs::write(&old, b"unread").unwrap();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        fs::write(blobs.join("200"), b"being written").unwrap();
        let commit = GroupCommit::new(dir.path());
        let synced = commit.fsync(&nothing_synced()).unwrap();
        assert_eq!(sorted(&synced), [100]);
    }

    /// What another sync added while one ran is kept; what that one found gone is not.
    #[test]
    fn a_sync_keeps_what_another_added_meanwhile() {
        let mut state = State {
            blobs_synced: HashSet::from([1, 2]),
            ..State::default()
        };
        let before = state.synced();
        // Meanwhile another sync added 3.
        state.blobs_synced.insert(3);
        // This one found 1 gone, and synced 4.
        state.record(
            &before,
            Synced {
                blobs: HashSet::from([2, 4]),
                dirs: Some(9),
            },
        );
        let mut now: Vec<u64> = state.blobs_synced.iter().copied().collect();
        now.sort_unstable();
        assert_eq!(now, [2, 3, 4]);
        assert_eq!(state.dirs_synced, Some(9));
    }

    /// A journal commit runs the blob pass only after a change the pass would see: a new blob,
    /// a blob written further, one removed, a new name in the database folder. After none, as
    /// after writes to the database's own files, it skips the pass.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_journal_commit_passes_only_after_a_change() {
        let (dir, blobs) = folder_with_blobs();
        let commit = GroupCommit::new(dir.path());
        let passes_after = |what: &str| {
            commit.sync_new_blobs().unwrap();
            let passes = commit.journal_passes();
            (
                passes,
                format!("{what}: {passes} passes, {:?}", commit.blobs_synced()),
            )
        };
        assert_eq!(passes_after("first").0, 1, "the first commit passes");
        assert!(
            commit.watching(),
            "no inotify watch: fs.inotify.max_user_instances reached?"
        );
        assert_eq!(passes_after("no change").0, 1);
        let mut log = File::options()
            .append(true)
            .open(dir.path().join("db"))
            .unwrap();
        std::io::Write::write_all(&mut log, b" more").unwrap();
        assert_eq!(passes_after("the log written").0, 1);

        let whole = blob(&[5; 100]);
        fs::write(blobs.join("700"), &whole[..50]).unwrap();
        let (passes, seen) = passes_after("a half-written blob");
        assert_eq!(passes, 2, "{seen}");
        assert!(commit.blobs_synced().is_empty(), "{seen}");
        let mut rest = File::options()
            .append(true)
            .open(blobs.join("700"))
            .unwrap();
        std::io::Write::write_all(&mut rest, &whole[50..]).unwrap();
        let (passes, seen) = passes_after("the blob finished");
        assert_eq!(passes, 3, "{seen}");
        assert_eq!(commit.blobs_synced(), [700], "{seen}");
        assert_eq!(passes_after("no change").0, 3);

        fs::write(dir.path().join("snap.00000000000000A0"), b"snapshot").unwrap();
        assert_eq!(passes_after("a new name in the folder").0, 4);
        fs::remove_file(blobs.join("700")).unwrap();
        let (passes, seen) = passes_after("the blob removed");
        assert_eq!(passes, 5, "{seen}");
        assert!(commit.blobs_synced().is_empty(), "{seen}");
        assert_eq!(passes_after("no change").0, 5);
    }

    /// A blob the pass cannot open (here a link to itself: `ELOOP`) fails the pass, naming it,
    /// rather than being skipped: the commit cannot say it is durable. Every commit fails until
    /// it is gone, whether or not the watch saw a change since; one gone (`NotFound`) is fine.
    #[test]
    fn a_blob_that_cannot_be_opened_fails_the_pass() {
        let (dir, blobs) = folder_with_blobs();
        let commit = GroupCommit::new(dir.path());
        commit.sync_new_blobs().unwrap();
        std::os::unix::fs::symlink("888", blobs.join("888")).unwrap();
        for attempt in ["first", "again, with no new change"] {
            let err = commit
                .sync_new_blobs()
                .err()
                .unwrap_or_else(|| panic!("{attempt}"));
            assert!(
                matches!(&err, Error::Io { path, .. } if path.ends_with("888")),
                "{attempt}: {err}"
            );
        }
        assert!(commit.fsync(&nothing_synced()).is_err(), "a checkpoint too");
        fs::remove_file(blobs.join("888")).unwrap();
        commit.sync_new_blobs().unwrap();
    }

    /// Without a blobs folder to watch, or once the watched one is gone, every journal commit
    /// runs the pass.
    #[test]
    fn without_a_watch_every_journal_commit_passes() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("db"), b"log").unwrap();
        let commit = GroupCommit::new(dir.path());
        for expected in 1..=3 {
            commit.sync_new_blobs().unwrap();
            assert_eq!(commit.journal_passes(), expected, "no blobs folder");
        }

        let (dir, blobs) = folder_with_blobs();
        let commit = GroupCommit::new(dir.path());
        commit.sync_new_blobs().unwrap();
        fs::remove_dir(&blobs).unwrap();
        fs::create_dir(&blobs).unwrap();
        for expected in 2..=4 {
            commit.sync_new_blobs().unwrap();
            assert_eq!(
                commit.journal_passes(),
                expected,
                "the watched folder replaced"
            );
        }
    }

    /// The check reads sled's own blobs as whole: otherwise the mark would never move, and
    /// every commit would read every blob again.
    #[test]
    fn sleds_blobs_read_as_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        db.insert(b"big", vec![3u8; 300 * 1024]).unwrap();
        db.flush().unwrap();
        let found: Vec<_> = fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!found.is_empty(), "a value this large is a blob");
        assert!(found.iter().all(|p| blob_is_whole(p)), "{found:?}");
    }
}
