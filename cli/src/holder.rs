//! Which process holds a database: sled takes an exclusive `flock` on the folder's log file
//! `db`, and Linux lists every such lock, with the pid that took it, in `/proc/locks`. An
//! operator told "held by another process" then knows which one (a forgotten `sessctl tui`, a
//! stopped application).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::output::printable;

/// The longest command line quoted, in characters.
const MAX_COMMAND_CHARS: usize = 120;

/// ` (process 1234: sessctl --db sessions.sessdb tui)`, naming the process that holds the lock
/// on the database in `folder`, or an empty string where that cannot be told (not Linux, a
/// process in another pid namespace, the lock gone meanwhile).
pub fn held_by(folder: &Path) -> String {
    match lock_holder(folder) {
        Some((pid, Some(command))) => format!(" (process {pid}: {command})"),
        Some((pid, None)) => format!(" (process {pid})"),
        None => String::new(),
    }
}

/// The pid holding the `flock` on `folder/db`, and its command line if it can be read.
fn lock_holder(folder: &Path) -> Option<(u32, Option<String>)> {
    let meta = fs::metadata(folder.join("db")).ok()?;
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_in(&locks, meta.dev(), meta.ino())?;
    let command = fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|raw| command_line(&raw));
    Some((pid, command))
}

/// The pid of the `FLOCK` held (not waited for) on the file `dev`/`ino` in `locks`, the text of
/// `/proc/locks`: lines such as `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`, where the
/// file is `MAJOR:MINOR:INODE` (major and minor in hex).
fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiter's line has `->` after the number.
        let [_, "FLOCK", _, _, pid, file, ..] = fields.as_slice() else {
            return None;
        };
        let mut parts = file.split(':');
        let (Some(maj), Some(min), Some(inode), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let same = u64::from_str_radix(maj, 16).ok() == Some(major)
            && u64::from_str_radix(min, 16).ok() == Some(minor)
            && inode.parse::<u64>().ok() == Some(ino);
        // A pid of 0 (or a negative one) is a process this one cannot see.
        pid.parse::<u32>().ok().filter(|p| same && *p > 0)
    })
}

/// A `/proc/PID/cmdline` (arguments separated by NULs) as one line, escaped and bounded.
fn command_line(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let args: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
    if args.is_empty() {
        return None;
    }
    let line = printable(&args.join(" "));
    Some(match line.char_indices().nth(MAX_COMMAND_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_the_flock_on_that_file_not_a_waiter_or_another_file() {
        // Device 253:1 (0xfd:01), inode 5678.
        let dev = (0xfd << 8) | 0x01;
        let locks = "\
1: POSIX  ADVISORY  WRITE 11 fd:01:5678 0 EOF
2: FLOCK  ADVISORY  WRITE 22 fd:01:9999 0 EOF
3: FLOCK  ADVISORY  WRITE 33 fd:02:5678 0 EOF
4: -> FLOCK  ADVISORY  WRITE 44 fd:01:5678 0 EOF
4: FLOCK  ADVISORY  WRITE 4321 fd:01:5678 0 EOF
";
        assert_eq!(holder_in(locks, dev, 5678), Some(4321));
        assert_eq!(holder_in(locks, dev, 1234), None);
        let unseen = "1: FLOCK  ADVISORY  WRITE 0 fd:01:5678 0 EOF\n";
        assert_eq!(holder_in(unseen, dev, 5678), None);
    }

    #[test]
    fn a_command_line_is_one_escaped_bounded_line() {
        assert_eq!(
            command_line(b"sessctl\0--db\0s\x1b.sessdb\0tui\0").as_deref(),
            Some("sessctl --db s\\u{1b}.sessdb tui")
        );
        assert_eq!(command_line(b""), None);
        let long = command_line("x".repeat(500).as_bytes()).unwrap();
        assert_eq!(long.chars().count(), MAX_COMMAND_CHARS + 1);
    }

    /// This process's own lock on a file is found, with its command line.
    #[test]
    fn a_lock_this_process_holds_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = fs::File::create(dir.path().join("db")).unwrap();
        let _locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .unwrap();
        let me = std::process::id();
        let listed = fs::read_to_string("/proc/locks").unwrap_or_default();
        if !listed.contains(&format!(" {me} ")) {
            return; // not Linux, or its locks list this process under another pid
        }
        let said = held_by(dir.path());
        assert!(said.starts_with(&format!(" (process {me}: ")), "{said}");
    }
}
