//! Exit codes, the CLI's own failures, and how any error maps to its exit code.

use std::fmt;
use std::io;
use std::process::ExitCode;

/// How sessctl ends. The numbers are part of the interface (documented in `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Success,
    /// 1: the session or principal a command acts on (show, invalidate) does not exist; a
    /// listing that matches nothing is not an error.
    NotFound,
    /// 2: a usage error.
    Usage,
    /// 3: the database is held by another process.
    Locked,
    /// 4: bad data (import lines, a failed check, an undecodable record).
    BadData,
    /// 5: any other I/O or database error.
    Failure,
    /// 130: stopped by Ctrl-C or SIGTERM, having undone its work (`compact`), or before it did
    /// any (`import`, while it reads its input).
    Interrupted,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::NotFound => 1,
            Exit::Usage => 2,
            Exit::Locked => 3,
            Exit::BadData => 4,
            Exit::Failure => 5,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// A failure the CLI itself detects, with the exit code it means.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong in a way clap cannot see.
    Usage(String),
    /// A session or principal the user named does not exist.
    NotFound(String),
    /// Input data is bad.
    BadData(String),
    /// The database is held by another process that cannot be reached.
    Held(String),
    /// Ctrl-C or SIGTERM stopped the command, which undid what it had begun.
    Interrupted(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m)
            | Failure::NotFound(m)
            | Failure::BadData(m)
            | Failure::Held(m)
            | Failure::Interrupted(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

/// What an error means for the exit code: the first cause in the chain that says.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain().flat_map(stopped_import_cause) {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return match f {
                Failure::Usage(_) => Exit::Usage,
                Failure::NotFound(_) => Exit::NotFound,
                Failure::BadData(_) => Exit::BadData,
                Failure::Held(_) => Exit::Locked,
                Failure::Interrupted(_) => Exit::Interrupted,
            };
        }
        if let Some(e) = cause.downcast_ref::<sessdb::Error>() {
            return match e {
                // Another process serves this database: it holds it.
                sessdb::Error::Locked { .. } | sessdb::Error::AdminSocketInUse { .. } => {
                    Exit::Locked
                }
                sessdb::Error::NotFound { .. } => Exit::NotFound,
                sessdb::Error::InvalidId { .. } | sessdb::Error::InvalidField { .. } => Exit::Usage,
                sessdb::Error::Corrupt { .. } => Exit::BadData,
                e if e.is_damage() => Exit::BadData,
                // An I/O error may be a closed pipe further down the chain; an import stopped
                // part way is classed by what stopped it, next.
                sessdb::Error::Io { .. } | sessdb::Error::ImportStopped { .. } => continue,
                _ => Exit::Failure,
            };
        }
    }
    Exit::Failure
}

/// `cause`, and if it is an import stopped part way, the error that stopped it: an exit code
/// or hint is that error's (anyhow's chain does not see through the box that holds it).
fn stopped_import_cause<'a>(
    cause: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    match cause.downcast_ref::<sessdb::Error>() {
        Some(sessdb::Error::ImportStopped { source, .. }) => vec![cause, source.as_ref()],
        _ => vec![cause],
    }
}

/// Whether the error is (or was caused by) the reader of our output going away.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A hint appended to the error line, for the errors where the next step is not obvious.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain()
        .flat_map(stopped_import_cause)
        .filter_map(|c| c.downcast_ref::<sessdb::Error>())
        .find(|e| !matches!(e, sessdb::Error::ImportStopped { .. }))
        .and_then(|e| match e {
            sessdb::Error::Locked { path } => Some(format!(
                "stop the process that has it open{} and try again, or have the application \
                 serve its admin socket (Builder::admin_socket_default), which sessctl then uses \
                 (one that serves it makes it again after its removal, within its socket check \
                 interval, 2 s by default: try again then)",
                crate::holder::held_by(path)
            )),
            e => static_hint(e).map(String::from),
        })
}

/// [`hint`] for the errors whose advice is always the same.
fn static_hint(e: &sessdb::Error) -> Option<&'static str> {
    match e {
        sessdb::Error::Missing { .. } => {
            Some("check --db or SESSCTL_DB, or create a demo database with `sessctl demo`")
        }
        sessdb::Error::NewerFormat { .. } => Some("use a newer sessctl"),
        e if e.is_damage() => Some(
            "move the folder aside (sessions are disposable: an application then starts with \
                 an empty store), and restore the last export into a new one with `sessctl --db \
                 NEW import FILE` if you have one",
        ),
        // Another user cannot help on a read-only file system: not even root writes there.
        sessdb::Error::Io { path, source }
            if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem
                && crate::db::looks_like_database(path) =>
        {
            Some(
                "the file system that holds the database is mounted read-only, and sled writes \
                     in the database folder at every open, even to read (a snapshot and its \
                     log's tail), so no command can open it there: remount the file system \
                     read-write, or copy the folder to a writable place and give that copy \
                     with --db to read it",
            )
        }
        sessdb::Error::Io { path, source }
            if source.kind() == std::io::ErrorKind::PermissionDenied
                && crate::db::looks_like_database(path) =>
        {
            Some(
                "sled writes in the database folder at every open, even to read (a snapshot \
                     and its log's tail), so the folder and its files must be writable by this \
                     user: run sessctl as the user that owns them (the running application's \
                     admin socket, like the folder, serves that user only)",
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn the_first_meaningful_cause_decides() {
        let locked = anyhow::Error::new(sessdb::Error::Locked { path: "db".into() })
            .context("opening the database");
        assert_eq!(classify(&locked), Exit::Locked);
        let usage = anyhow::Error::new(Failure::Usage("bad".into()));
        assert_eq!(classify(&usage), Exit::Usage);
        assert_eq!(classify(&anyhow::anyhow!("other")), Exit::Failure);
    }

    /// Damage found after the open is a storage error; it is bad data, with the same advice as
    /// damage found at the open.
    #[test]
    fn damage_is_bad_data_wherever_it_is_found() {
        let later = anyhow::Error::new(sessdb::Error::Storage(
            sessdb::StorageError::__corruption_for_tests(),
        ));
        let at_open = anyhow::Error::new(sessdb::Error::Damaged {
            path: "db".into(),
            detail: "the storage engine found corrupted data".into(),
        });
        for err in [later, at_open] {
            assert_eq!(classify(&err), Exit::BadData);
            assert!(hint(&err).is_some_and(|h| h.starts_with("move the folder aside")));
        }
        let other = anyhow::Error::new(sessdb::Error::Storage(
            sessdb::StorageError::__other_for_tests("no"),
        ));
        assert_eq!((classify(&other), hint(&other)), (Exit::Failure, None));
    }

    /// On a read-only file system, running as another user cannot help (an operator was told
    /// to); a folder this user may not write to still gets that advice.
    #[test]
    fn a_read_only_file_system_gets_its_own_advice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db.sessdb");
        drop(sessdb::Store::open(&db).expect("create"));
        let opening = |source| {
            anyhow::Error::new(sessdb::Error::Io {
                path: db.clone(),
                source,
            })
        };
        let read_only = opening(io::Error::from_raw_os_error(30));
        assert_eq!(classify(&read_only), Exit::Failure);
        assert_eq!(
            hint(&read_only).as_deref(),
            Some(
                "the file system that holds the database is mounted read-only, and sled writes \
                 in the database folder at every open, even to read (a snapshot and its log's \
                 tail), so no command can open it there: remount the file system read-write, or \
                 copy the folder to a writable place and give that copy with --db to read it"
            )
        );
        let denied = opening(io::Error::from_raw_os_error(13));
        assert!(
            hint(&denied).is_some_and(|h| h.ends_with(
                "run sessctl as the user that owns them (the running application's admin \
                 socket, like the folder, serves that user only)"
            )),
            "{:?}",
            hint(&denied)
        );
    }

    /// An import stopped part way is classed, and advised, by what stopped it; its message
    /// says how much was written, and the disk-full text reads as the system's.
    #[test]
    fn an_import_stopped_part_way_is_classed_by_its_cause() {
        let stopped = |source| {
            anyhow::Error::new(sessdb::Error::ImportStopped {
                written: 507,
                source: Box::new(source),
            })
        };
        let damaged = stopped(sessdb::Error::Storage(
            sessdb::StorageError::__corruption_for_tests(),
        ));
        assert_eq!(classify(&damaged), Exit::BadData);
        assert!(hint(&damaged).is_some_and(|h| h.starts_with("move the folder aside")));
        // sled's copy of the error that failed its flush, made from the original's Debug form.
        let full = io::Error::from_raw_os_error(28);
        let copy = io::Error::new(full.kind(), format!("{full:?}"));
        let err = stopped(sessdb::Error::Storage(
            sessdb::StorageError::__io_for_tests(copy),
        ));
        assert_eq!((classify(&err), hint(&err)), (Exit::Failure, None));
        let text = format!("{err:#}");
        assert!(
            text.starts_with(
                "the import stopped after writing 507 of its sessions (they stay, as far as \
                 they reached the disk; once the cause is fixed, running it again with the same \
                 input finishes it): storage engine I/O error: No space left on device (os error \
                 28) (after a failed write"
            ),
            "{text}"
        );
    }

    #[test]
    fn broken_pipe_is_found_below_a_store_error() {
        let err = anyhow::Error::new(sessdb::Error::Io {
            path: "export output".into(),
            source: io::Error::from(io::ErrorKind::BrokenPipe),
        });
        assert!(is_broken_pipe(&err));
        assert_eq!(classify(&err), Exit::Failure);
        let err: anyhow::Result<()> = Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
        assert!(is_broken_pipe(
            &err.context("writing").expect_err("an error")
        ));
    }
}
