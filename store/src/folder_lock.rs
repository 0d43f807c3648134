//! The locks around a database folder: the gate every open holds shared while sled opens the
//! folder and a compaction holds exclusively from its copy to its swap, sled's own lock of the
//! log taken with a deadline, and that lock kept through the close of the store that holds it
//! ([`HeldLog`]), found among the process's descriptors through `/proc`.

use std::fs::{self, File};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// Held by every open while sled opens the database in `path` (a shared `flock` of the folder),
/// waiting up to `wait` while a compaction holds it exclusively ([`compaction_gate`]): so no
/// other process is ever between the opening of the folder and sled's lock of it when a
/// compaction closes the original and takes that lock over, nor reads the original's `conf`
/// and opens the copy's log. `None` where the file system cannot lock a folder: the open goes
/// on without it.
pub(crate) fn opening_gate(path: &Path, wait: Duration) -> Result<Option<Flock<File>>> {
    let Ok(folder) = File::open(path) else {
        return Ok(None);
    };
    match flock_within(folder, FlockArg::LockSharedNonblock, wait) {
        Ok(gate) => Ok(Some(gate)),
        Err(Waited::TooLong) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(Waited::Failed(_)) => Ok(None),
    }
}

/// The exclusive hold of the database folder `dir` that a compaction keeps from before its
/// copy to after the swap ([`opening_gate`]), waiting up to `wait` for openers in their wait
/// for sled's lock to give up.
pub(crate) fn compaction_gate(dir: &Path, wait: Duration) -> io::Result<Flock<File>> {
    flock_within(File::open(dir)?, FlockArg::LockExclusiveNonblock, wait).map_err(|e| {
        e.into_io(format!(
            "other processes kept opening it for {} s",
            wait.as_secs()
        ))
    })
}

/// Why [`flock_within`] has no lock.
pub(crate) enum Waited {
    /// Others held it all along.
    TooLong,
    /// The file system refused the lock.
    Failed(nix::errno::Errno),
}

impl Waited {
    fn into_io(self, too_long: String) -> io::Error {
        match self {
            Waited::TooLong => io::Error::new(io::ErrorKind::WouldBlock, too_long),
            Waited::Failed(e) => e.into(),
        }
    }
}

/// Takes the `flock` `arg` (non-blocking) of `file`, trying every millisecond for up to `wait`
/// while others hold it.
pub(crate) fn flock_within(
    mut file: File,
    arg: FlockArg,
    wait: Duration,
) -> std::result::Result<Flock<File>, Waited> {
    let deadline = Instant::now() + wait;
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(Waited::TooLong),
            Err((_, e)) => return Err(Waited::Failed(e)),
        }
    }
}

/// Takes sled's lock of the database in `dir` (an exclusive `flock` of its log `db`), waiting
/// up to `wait` for it: sled lets go of a dropped database's lock from a background thread.
/// The lock holds until the returned value is dropped.
pub(crate) fn lock_log(dir: &Path, wait: Duration) -> io::Result<Flock<File>> {
    flock_within(
        File::open(dir.join("db"))?,
        FlockArg::LockExclusiveNonblock,
        wait,
    )
    .map_err(|e| {
        e.into_io(format!(
            "its lock was still held after {} s",
            wait.as_secs()
        ))
    })
}

/// sled's lock of the database in a folder, kept through sled's close: a duplicate of sled's
/// descriptor of the database's log (`db`). A `flock` belongs to the open file, which a
/// duplicate shares, so the lock sled took on its descriptor stays taken after sled closes it.
/// Were it taken over only once sled let go, a process that opens the database without the
/// gate (sled itself, a sessdb older than the gate) could open the original in between, write,
/// and close, and the swap would put its writes away (an outside trial's: an older `sessctl
/// invalidate`, run beside compactions, reported sessions ended that were live again after
/// them).
pub(crate) struct HeldLog {
    /// The log's device and inode.
    log: (u64, u64),
    /// sled's descriptor of it, by number, to see it closed.
    sleds: RawFd,
    /// The duplicate. Dropped, it unlocks nothing while sled's descriptor is open; once that
    /// is closed, the lock goes with it.
    dup: File,
}

impl HeldLog {
    /// Finds sled's descriptor of `dir`'s log among this process's (the store must still be
    /// open) and duplicates it. `None` where `/proc/self/fd` is missing: the lock is then taken
    /// over as it comes free ([`lock_log`]). An error where it cannot be found or duplicated
    /// (no descriptor left, say): the compaction is refused rather than run with that moment
    /// open.
    pub(crate) fn keep(dir: &Path) -> io::Result<Option<HeldLog>> {
        // sled locks its log on Linux (as on macOS and Windows); `/proc/self/fd` is Linux's.
        if !cfg!(target_os = "linux") {
            return Ok(None);
        }
        let meta = fs::metadata(dir.join("db"))?;
        let log = (meta.dev(), meta.ino());
        let candidates = match descriptors_of(log) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            found => found?,
        };
        for fd in candidates {
            let Some(file) = log_behind(fd, log) else {
                continue; // closed since the listing, or its number reused for another file
            };
            // On the duplicate of sled's open file, which holds the lock, taking it again
            // succeeds; on any other open file of the log it fails while sled holds it.
            if relock(&file)? {
                return Ok(Some(HeldLog {
                    log,
                    sleds: fd,
                    dup: file,
                }));
            }
        }
        Err(io::Error::other(
            "sled's lock of it was not found among this process's descriptors",
        ))
    }

    /// Waits, up to `wait`, until sled's descriptor is closed (sled keeps it until the last of
    /// its threads ends, so none works on the database any more), then hands over the lock.
    /// Its number may name another open file of the log by then (the application opening the
    /// log just after sled closed it gets the lowest free number): that one fails to take the
    /// lock the duplicate holds, where sled's own open file takes it again.
    pub(crate) fn after_close(self, wait: Duration) -> io::Result<Flock<File>> {
        let deadline = Instant::now() + wait;
        let sleds_open = || -> io::Result<bool> {
            match log_behind(self.sleds, self.log) {
                Some(file) => relock(&file),
                None => Ok(false),
            }
        };
        while sleds_open()? {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("its log was still open after {} s", wait.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Held already: this only gives it the type that unlocks when dropped.
        Flock::lock(self.dup, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e.into())
    }
}

/// The descriptors of this process open on the file `(device, inode)`.
pub(crate) fn descriptors_of(file: (u64, u64)) -> io::Result<Vec<RawFd>> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // The link, followed, is the open file (a removed one too); a descriptor closed since
        // the listing is not found.
        if fs::metadata(entry.path()).is_ok_and(|m| (m.dev(), m.ino()) == file) {
            found.push(fd);
        }
    }
    Ok(found)
}

/// A duplicate of descriptor number `fd` if it is open on the file `log` (device, inode).
/// Closed again when dropped; closing a descriptor of the log would let go of this process's
/// `fcntl` record locks on it, which nothing here takes (sled's lock is a `flock`).
fn log_behind(fd: RawFd, log: (u64, u64)) -> Option<File> {
    let file = File::from(duplicate(fd).ok()?);
    file.metadata()
        .is_ok_and(|m| (m.dev(), m.ino()) == log)
        .then_some(file)
}

/// Takes the exclusive `flock` of `file` if it is free or `file`'s open file holds it already
/// (`true`), without waiting (`false` while another holds it). Unlike [`Flock::lock`], nothing
/// unlocks it afterwards: on the duplicate of sled's open file the lock is sled's.
#[allow(unsafe_code)]
fn relock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: `file` is open for the call; `flock` touches no memory.
    let done =
        unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    if done == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(nix::libc::EWOULDBLOCK) => Ok(false),
        e => Err(e),
    }
}

/// A duplicate of descriptor number `fd` (`F_DUPFD_CLOEXEC`), sharing its open file and so
/// its `flock`. The number may have been closed since it was listed (an error then) or even
/// reused for another file (the caller checks the duplicate's file).
#[allow(unsafe_code)]
fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: `fcntl` only reads the number; whatever it names, or nothing, no memory is
    // touched.
    let dup = unsafe { nix::libc::fcntl(fd, nix::libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a descriptor `fcntl` just made for this call, open and owned by no one
    // else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}
