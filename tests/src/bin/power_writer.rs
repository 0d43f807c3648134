//! The writer of the power-loss test (`tests/power.rs`): runs the operations of
//! [`sessdb_e2e::writer`] on a store in immediate mode, and records in a journal every call
//! that changes a file or a folder, with its own `op …`/`ok …` lines in between
//! ([`sessdb_e2e::power`] describes the journal). The test then builds, from the journal, what
//! a power cut at any point of it would have left.
//!
//! The calls are caught by defining them here: the standard library, sled and sessdb call
//! `write`, `pwrite64`, `fsync`, `open64`, `rename`… through the C library, and a symbol this
//! executable defines comes before the C library's. Each definition makes the system call
//! itself (`syscall`), so nothing else of the C library is changed. Calls that change no file
//! (reads) are not caught.
//!
//! Linux on x86-64 with glibc only (where it was tried): `open` and `openat` are variadic in C
//! (see `opened`), and the calls are glibc's names for them.
//!
//! Usage: `power_writer DB JOURNAL SEED OPS [THREADS]` (with THREADS, the concurrent savers
//! of [`sessdb_e2e::writer::run_concurrent`]).

// The point of this binary: C-ABI definitions of the C library's file-system calls, whose
// safety contracts are the C library's own.
#![allow(unsafe_code, clippy::missing_safety_doc)]

use std::process::ExitCode;

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    let result = journaled::run();
    #[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
    let result: Result<(), Box<dyn std::error::Error>> =
        Err("runs on Linux x86-64 with glibc only".into());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("power_writer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The definitions of the C library's calls, and the writer that runs under them.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
mod journaled {
    use std::ffi::{CStr, CString};
    use std::fs::File;
    use std::os::fd::IntoRawFd;
    use std::path::Path;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Mutex, MutexGuard};

    use libc::{c_char, c_int, c_long, c_uint, c_void, iovec, off64_t, size_t, ssize_t};
    use sessdb::Durability;
    use sessdb_e2e::power::Record;

    /// The journal's file descriptor, once the writer starts (-1 before: nothing recorded).
    static JOURNAL: AtomicI32 = AtomicI32::new(-1);
    /// Held from before a call to after its record: the journal's order is the calls' order.
    static ORDER: Mutex<()> = Mutex::new(());

    pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
        let args: Vec<String> = std::env::args().collect();
        let (path, journal, seed, ops, threads) = match args.as_slice() {
            [_, path, journal, seed, ops] => (path, journal, seed, ops, None),
            [_, path, journal, seed, ops, threads] => {
                (path, journal, seed, ops, Some(threads.parse::<u64>()?))
            }
            _ => return Err("usage: power_writer DB JOURNAL SEED OPS [THREADS]".into()),
        };
        let journal = File::create(journal)?;
        JOURNAL.store(journal.into_raw_fd(), Ordering::SeqCst);
        let note = |line: String| {
            let _order = order();
            record(&Record::Note {
                line: line.as_bytes(),
            });
            Ok(())
        };
        match threads {
            None => sessdb_e2e::writer::run(
                Path::new(path),
                Durability::Immediate,
                seed.parse()?,
                ops.parse()?,
                true,
                note,
            ),
            Some(threads) => sessdb_e2e::writer::run_concurrent(
                Path::new(path),
                seed.parse()?,
                ops.parse()?,
                threads,
                note,
            ),
        }
    }

    fn order() -> MutexGuard<'static, ()> {
        ORDER.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn active() -> bool {
        JOURNAL.load(Ordering::Relaxed) >= 0
    }

    /// Appends a record to the journal; the caller holds [`ORDER`].
    fn record(record: &Record) {
        let fd = JOURNAL.load(Ordering::Relaxed);
        let bytes = record.encode();
        let mut done = 0;
        while done < bytes.len() {
            // SAFETY: a write of an owned buffer to the journal's descriptor.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_write,
                    c_long::from(fd),
                    bytes[done..].as_ptr(),
                    bytes.len() - done,
                )
            };
            if n <= 0 {
                eprintln!("power_writer: cannot write the journal");
                std::process::abort();
            }
            done += usize::try_from(n).expect("positive");
        }
    }

    /// What a descriptor is open on: a file or a folder (its inode), or something else.
    fn what(fd: c_int) -> Option<(u64, bool)> {
        // SAFETY: fstat64 fills the struct it is given.
        let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat64(fd, &mut st) } != 0 {
            return None;
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Some((st.st_ino, false)),
            libc::S_IFDIR => Some((st.st_ino, true)),
            _ => None,
        }
    }

    /// The inode of a path (relative to `dirfd`).
    fn ino_at(dirfd: c_int, path: &[u8]) -> Option<u64> {
        let c = CString::new(path).ok()?;
        // SAFETY: fstatat64 fills the struct it is given; `c` is a C string.
        let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstatat64(dirfd, c.as_ptr(), &mut st, 0) } == 0).then_some(st.st_ino)
    }

    /// The folder (inode) and name a path names.
    ///
    /// # Safety
    /// `path` is a C string.
    unsafe fn locate(dirfd: c_int, path: *const c_char) -> Option<(u64, Vec<u8>)> {
        let mut p = unsafe { CStr::from_ptr(path) }.to_bytes();
        while p.len() > 1 && p.ends_with(b"/") {
            p = &p[..p.len() - 1];
        }
        let (dir, name) = match p.iter().rposition(|&b| b == b'/') {
            None => (&b"."[..], p),
            Some(0) => (&b"/"[..], &p[1..]),
            Some(i) => (&p[..i], &p[i + 1..]),
        };
        Some((ino_at(dirfd, dir)?, name.to_vec()))
    }

    /// Runs `call` keeping its errno across what follows it.
    fn keeping_errno<T>(result: T, after: impl FnOnce(&T)) -> T {
        // SAFETY: errno is this thread's.
        let errno = unsafe { *libc::__errno_location() };
        after(&result);
        unsafe { *libc::__errno_location() = errno };
        result
    }

    /// Where a `write` on `fd` lands.
    fn position(fd: c_int) -> u64 {
        // SAFETY: plain calls on a descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags >= 0 && flags & libc::O_APPEND != 0 {
            let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
            unsafe { libc::fstat64(fd, &mut st) };
            return u64::try_from(st.st_size).unwrap_or(0);
        }
        u64::try_from(unsafe { libc::lseek64(fd, 0, libc::SEEK_CUR) }).unwrap_or(0)
    }

    /// A write of `done` bytes from `iov` at `offset`.
    ///
    /// # Safety
    /// `iov` holds `count` valid buffers.
    unsafe fn record_writes(ino: u64, offset: u64, iov: *const iovec, count: c_int, done: ssize_t) {
        let mut left = usize::try_from(done).unwrap_or(0);
        let mut at = offset;
        for i in 0..usize::try_from(count).unwrap_or(0) {
            if left == 0 {
                break;
            }
            let v = unsafe { &*iov.add(i) };
            let n = v.iov_len.min(left);
            let data = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, n) };
            record(&Record::Write {
                ino,
                offset: at,
                data,
            });
            at += n as u64;
            left -= n;
        }
    }

    /// A write of some kind on `fd`: `offset` is where it goes (None: the file position), `real`
    /// makes it, `iov` is what it writes.
    ///
    /// # Safety
    /// `iov` holds `count` valid buffers.
    unsafe fn written(
        fd: c_int,
        offset: Option<u64>,
        iov: *const iovec,
        count: c_int,
        real: impl FnOnce() -> c_long,
    ) -> ssize_t {
        let file = if active() { what(fd) } else { None };
        let Some((ino, false)) = file else {
            return real() as ssize_t;
        };
        let _order = order();
        let at = offset.unwrap_or_else(|| position(fd));
        let n = real() as ssize_t;
        keeping_errno(n, |&n| {
            if n > 0 {
                unsafe { record_writes(ino, at, iov, count, n) }
            }
        })
    }

    #[no_mangle]
    pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
        let iov = iovec {
            iov_base: buf as *mut c_void,
            iov_len: count,
        };
        unsafe {
            written(fd, None, &iov, 1, || {
                libc::syscall(libc::SYS_write, c_long::from(fd), buf, count)
            })
        }
    }

    #[no_mangle]
    pub unsafe extern "C" fn pwrite64(
        fd: c_int,
        buf: *const c_void,
        count: size_t,
        offset: off64_t,
    ) -> ssize_t {
        let iov = iovec {
            iov_base: buf as *mut c_void,
            iov_len: count,
        };
        unsafe {
            written(fd, u64::try_from(offset).ok(), &iov, 1, || {
                libc::syscall(libc::SYS_pwrite64, c_long::from(fd), buf, count, offset)
            })
        }
    }

    #[no_mangle]
    pub unsafe extern "C" fn pwrite(
        fd: c_int,
        buf: *const c_void,
        count: size_t,
        offset: off64_t,
    ) -> ssize_t {
        unsafe { pwrite64(fd, buf, count, offset) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
        unsafe {
            written(fd, None, iov, count, || {
                libc::syscall(libc::SYS_writev, c_long::from(fd), iov, c_long::from(count))
            })
        }
    }

    #[no_mangle]
    pub unsafe extern "C" fn pwritev64(
        fd: c_int,
        iov: *const iovec,
        count: c_int,
        offset: off64_t,
    ) -> ssize_t {
        unsafe { pwritev64v2(fd, iov, count, offset, 0) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn pwritev(
        fd: c_int,
        iov: *const iovec,
        count: c_int,
        offset: off64_t,
    ) -> ssize_t {
        unsafe { pwritev64v2(fd, iov, count, offset, 0) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn pwritev2(
        fd: c_int,
        iov: *const iovec,
        count: c_int,
        offset: off64_t,
        flags: c_int,
    ) -> ssize_t {
        unsafe { pwritev64v2(fd, iov, count, offset, flags) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn pwritev64v2(
        fd: c_int,
        iov: *const iovec,
        count: c_int,
        offset: off64_t,
        flags: c_int,
    ) -> ssize_t {
        // The kernel takes the offset in two halves (low, high).
        let low = offset & 0xffff_ffff;
        let high = offset >> 32;
        let real = || {
            libc::syscall(
                libc::SYS_pwritev2,
                c_long::from(fd),
                iov,
                c_long::from(count),
                low,
                high,
                c_long::from(flags),
            )
        };
        if offset < 0 || flags != 0 {
            // The file position, or flags (RWF_APPEND…) the journal does not follow.
            if active() && what(fd).is_some_and(|(_, dir)| !dir) {
                let _order = order();
                record(&Record::Unsupported {
                    call: b"pwritev2 at the file position or with flags",
                });
            }
            return real() as ssize_t;
        }
        unsafe { written(fd, u64::try_from(offset).ok(), iov, count, real) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn ftruncate64(fd: c_int, len: off64_t) -> c_int {
        let real = || unsafe { libc::syscall(libc::SYS_ftruncate, c_long::from(fd), len) } as c_int;
        let file = if active() { what(fd) } else { None };
        let Some((ino, false)) = file else {
            return real();
        };
        let _order = order();
        keeping_errno(real(), |&r| {
            if r == 0 {
                record(&Record::SetLen {
                    ino,
                    len: u64::try_from(len).unwrap_or(0),
                });
            }
        })
    }

    #[no_mangle]
    pub unsafe extern "C" fn ftruncate(fd: c_int, len: off64_t) -> c_int {
        unsafe { ftruncate64(fd, len) }
    }

    /// A call the journal does not follow: recorded so that the test fails, then made.
    fn unsupported(call: &'static str) {
        if active() {
            let _order = order();
            record(&Record::Unsupported {
                call: call.as_bytes(),
            });
        }
    }

    #[no_mangle]
    pub unsafe extern "C" fn truncate64(path: *const c_char, len: off64_t) -> c_int {
        unsupported("truncate");
        unsafe { libc::syscall(libc::SYS_truncate, path, len) as c_int }
    }

    #[no_mangle]
    pub unsafe extern "C" fn truncate(path: *const c_char, len: off64_t) -> c_int {
        unsafe { truncate64(path, len) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn fallocate64(
        fd: c_int,
        mode: c_int,
        offset: off64_t,
        len: off64_t,
    ) -> c_int {
        unsupported("fallocate");
        unsafe {
            libc::syscall(
                libc::SYS_fallocate,
                c_long::from(fd),
                c_long::from(mode),
                offset,
                len,
            ) as c_int
        }
    }

    #[no_mangle]
    pub unsafe extern "C" fn fallocate(
        fd: c_int,
        mode: c_int,
        offset: off64_t,
        len: off64_t,
    ) -> c_int {
        unsafe { fallocate64(fd, mode, offset, len) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn copy_file_range(
        fd_in: c_int,
        off_in: *mut off64_t,
        fd_out: c_int,
        off_out: *mut off64_t,
        len: size_t,
        flags: c_uint,
    ) -> ssize_t {
        unsupported("copy_file_range");
        unsafe {
            libc::syscall(
                libc::SYS_copy_file_range,
                c_long::from(fd_in),
                off_in,
                c_long::from(fd_out),
                off_out,
                len,
                c_long::from(flags),
            ) as ssize_t
        }
    }

    /// An `fsync` or `fdatasync`: recorded as it starts.
    fn synced(fd: c_int, real: impl FnOnce() -> c_long) -> c_int {
        if active() {
            if let Some((ino, dir)) = what(fd) {
                let _order = order();
                record(&if dir {
                    Record::SyncDir { ino }
                } else {
                    Record::SyncFile { ino }
                });
            }
        }
        real() as c_int
    }

    #[no_mangle]
    pub extern "C" fn fsync(fd: c_int) -> c_int {
        synced(fd, || unsafe {
            libc::syscall(libc::SYS_fsync, c_long::from(fd))
        })
    }

    #[no_mangle]
    pub extern "C" fn fdatasync(fd: c_int) -> c_int {
        synced(fd, || unsafe {
            libc::syscall(libc::SYS_fdatasync, c_long::from(fd))
        })
    }

    #[no_mangle]
    pub extern "C" fn sync() {
        if active() {
            let _order = order();
            record(&Record::SyncAll);
        }
        unsafe { libc::syscall(libc::SYS_sync) };
    }

    #[no_mangle]
    pub extern "C" fn syncfs(fd: c_int) -> c_int {
        if active() {
            let _order = order();
            record(&Record::SyncAll);
        }
        unsafe { libc::syscall(libc::SYS_syncfs, c_long::from(fd)) as c_int }
    }

    /// An open: one that may create or truncate is recorded.
    ///
    /// `open` and `openat` are variadic in C, their mode passed only with `O_CREAT` or
    /// `O_TMPFILE`; on the 64-bit Linux ABIs (x86-64, AArch64) a variadic integer argument is
    /// passed as a fixed one is, so it is read as a third (fourth) argument here.
    ///
    /// # Safety
    /// `path` is a C string.
    unsafe fn opened(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
        let real = || unsafe {
            libc::syscall(
                libc::SYS_openat,
                c_long::from(dirfd),
                path,
                c_long::from(flags),
                c_long::from(mode),
            ) as c_int
        };
        if !active() || flags & (libc::O_CREAT | libc::O_TRUNC) == 0 {
            return real();
        }
        if flags & libc::O_TMPFILE == libc::O_TMPFILE {
            unsupported("open with O_TMPFILE");
            return real();
        }
        let _order = order();
        let place = unsafe { locate(dirfd, path) };
        keeping_errno(real(), |&fd| {
            if fd < 0 {
                return;
            }
            let Some((ino, is_dir)) = what(fd) else {
                return;
            };
            if flags & libc::O_CREAT != 0 {
                match &place {
                    Some((dir, name)) => record(&Record::Create {
                        dir: *dir,
                        name,
                        ino,
                        is_dir,
                    }),
                    None => record(&Record::Unsupported {
                        call: b"open of a path whose folder was not found",
                    }),
                }
            }
            if flags & libc::O_TRUNC != 0 && !is_dir {
                record(&Record::SetLen { ino, len: 0 });
            }
        })
    }

    #[no_mangle]
    pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
        unsafe { opened(libc::AT_FDCWD, path, flags, mode) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
        unsafe { opened(libc::AT_FDCWD, path, flags, mode) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn openat64(
        dirfd: c_int,
        path: *const c_char,
        flags: c_int,
        mode: c_uint,
    ) -> c_int {
        unsafe { opened(dirfd, path, flags, mode) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn openat(
        dirfd: c_int,
        path: *const c_char,
        flags: c_int,
        mode: c_uint,
    ) -> c_int {
        unsafe { opened(dirfd, path, flags, mode) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn creat64(path: *const c_char, mode: c_uint) -> c_int {
        unsafe {
            opened(
                libc::AT_FDCWD,
                path,
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                mode,
            )
        }
    }

    #[no_mangle]
    pub unsafe extern "C" fn creat(path: *const c_char, mode: c_uint) -> c_int {
        unsafe { creat64(path, mode) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: c_uint) -> c_int {
        let real = || unsafe {
            libc::syscall(
                libc::SYS_mkdirat,
                c_long::from(dirfd),
                path,
                c_long::from(mode),
            ) as c_int
        };
        if !active() {
            return real();
        }
        let _order = order();
        let place = unsafe { locate(dirfd, path) };
        keeping_errno(real(), |&r| {
            if r != 0 {
                return;
            }
            let c = unsafe { CStr::from_ptr(path) };
            match (&place, ino_at(dirfd, c.to_bytes())) {
                (Some((dir, name)), Some(ino)) => record(&Record::Create {
                    dir: *dir,
                    name,
                    ino,
                    is_dir: true,
                }),
                _ => record(&Record::Unsupported {
                    call: b"mkdir of a path not found",
                }),
            }
        })
    }

    #[no_mangle]
    pub unsafe extern "C" fn mkdir(path: *const c_char, mode: c_uint) -> c_int {
        unsafe { mkdirat(libc::AT_FDCWD, path, mode) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn renameat2(
        olddirfd: c_int,
        old: *const c_char,
        newdirfd: c_int,
        new: *const c_char,
        flags: c_uint,
    ) -> c_int {
        let real = || unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                c_long::from(olddirfd),
                old,
                c_long::from(newdirfd),
                new,
                c_long::from(flags),
            ) as c_int
        };
        if !active() {
            return real();
        }
        if flags != 0 {
            unsupported("renameat2 with flags");
            return real();
        }
        let _order = order();
        let from = unsafe { locate(olddirfd, old) };
        let to = unsafe { locate(newdirfd, new) };
        keeping_errno(real(), |&r| {
            if r != 0 {
                return;
            }
            match (&from, &to) {
                (Some((from_dir, from)), Some((to_dir, to))) => record(&Record::Rename {
                    from_dir: *from_dir,
                    from,
                    to_dir: *to_dir,
                    to,
                }),
                _ => record(&Record::Unsupported {
                    call: b"rename of a path not found",
                }),
            }
        })
    }

    #[no_mangle]
    pub unsafe extern "C" fn renameat(
        olddirfd: c_int,
        old: *const c_char,
        newdirfd: c_int,
        new: *const c_char,
    ) -> c_int {
        unsafe { renameat2(olddirfd, old, newdirfd, new, 0) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
        unsafe { renameat2(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        let real = || unsafe {
            libc::syscall(
                libc::SYS_unlinkat,
                c_long::from(dirfd),
                path,
                c_long::from(flags),
            ) as c_int
        };
        if !active() {
            return real();
        }
        let _order = order();
        let place = unsafe { locate(dirfd, path) };
        keeping_errno(real(), |&r| {
            if r != 0 {
                return;
            }
            match &place {
                Some((dir, name)) => record(&Record::Remove { dir: *dir, name }),
                None => record(&Record::Unsupported {
                    call: b"unlink of a path not found",
                }),
            }
        })
    }

    #[no_mangle]
    pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
        unsafe { unlinkat(libc::AT_FDCWD, path, 0) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
        unsafe { unlinkat(libc::AT_FDCWD, path, libc::AT_REMOVEDIR) }
    }

    /// A `sync_file_range` that waited for its writes is recorded as it returns: the variant of a
    /// cut that keeps what reached the disk this way keeps them.
    #[no_mangle]
    pub extern "C" fn sync_file_range(
        fd: c_int,
        offset: off64_t,
        len: off64_t,
        flags: c_uint,
    ) -> c_int {
        let real = || unsafe {
            libc::syscall(
                libc::SYS_sync_file_range,
                c_long::from(fd),
                offset,
                len,
                c_long::from(flags),
            ) as c_int
        };
        let file = if active() { what(fd) } else { None };
        let Some((ino, false)) = file else {
            return real();
        };
        let r = real();
        if r == 0 && flags & libc::SYNC_FILE_RANGE_WAIT_AFTER != 0 && len > 0 {
            let _order = order();
            keeping_errno((), |_| {
                record(&Record::Pushed {
                    ino,
                    offset: u64::try_from(offset).unwrap_or(0),
                    len: u64::try_from(len).unwrap_or(0),
                })
            });
        }
        r
    }
}
