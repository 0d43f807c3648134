//! The one error type of the library, with context on every variant.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in sessdb.
///
/// Variants name what is wrong (a path, a handle, a key, a limit) and keep the underlying error
/// as their `source` (but for [`Error::Storage`], whose text holds its I/O error:
/// [`StorageError::io_error`] gives it). Error messages name sessions by their
/// [`Handle`](crate::Handle), never by their id: an id is a bearer token and must not end up in
/// a log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process holds the database open (sled allows one process at a time).
    #[error(
        "the database at {path} is held by another process (sled allows one process at a time)"
    )]
    Locked {
        /// The database folder.
        path: PathBuf,
    },
    /// The database is already open in this process: a [`Store`](crate::Store) (or a
    /// [`Session`](crate::Session) loaded from one, which holds it) is alive.
    #[error(
        "the database at {path} is already open in this process: clone its Store instead of \
         opening it again (it stays open while any clone, or any Session loaded from one, is \
         alive)"
    )]
    AlreadyOpen {
        /// The database folder.
        path: PathBuf,
    },
    /// The path given to open a store is empty (an unset variable, say), which would otherwise
    /// open the current folder as the database.
    #[error("the database path is empty (\".\" names the current folder)")]
    EmptyPath,
    /// The database folder does not exist and the store was told not to create one.
    #[error("no database at {path}")]
    Missing {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The path exists but is not a folder.
    #[error("{path} is not a database folder")]
    NotADirectory {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The folder exists but holds no database, and the store was told not to create one, or
    /// it holds files of its own (a new database is made only in a new or empty folder), among
    /// them files with sled's names (`conf`, `db`) that are not sled's by their content.
    #[error("{path} is not a sessdb database (it has no database files of sled's)")]
    NotADatabase {
        /// The folder.
        path: PathBuf,
    },
    /// The database was written by a newer version of sessdb.
    #[error(
        "the database at {path} has format version {found}; this sessdb reads up to {supported}"
    )]
    NewerFormat {
        /// The database folder.
        path: PathBuf,
        /// The format version found in the database.
        found: u32,
        /// The newest format version this build reads.
        supported: u32,
    },
    /// The database's files are damaged: the storage engine found corrupted data while opening
    /// it (or failed reading them). Sessions are disposable, so an application may move the
    /// folder aside and start with an empty store; `sessctl import` restores an export. (Built
    /// with `panic = "abort"`, a process aborts on the damaged files where sled panics.)
    ///
    /// Not every damage is found: sled checks each write in its log, and reads one that fails
    /// its check as the write a crash cut short, so it recovers the store as it was before
    /// that write (what a crash leaves). Bytes changed in the log may therefore open as a
    /// store with the writes from there on missing, with no error and nothing for `check` to
    /// find (found by a user who changed bytes of a 100-session store's log: it opened with
    /// 0, 6 or 72 sessions).
    #[error("the database at {path} is damaged: {detail}")]
    Damaged {
        /// The database folder.
        path: PathBuf,
        /// What the storage engine reported.
        detail: String,
    },
    /// An I/O error on a path.
    #[error("I/O error on {path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error of the storage engine after the open (the open reports its own as
    /// [`Error::Damaged`], [`Error::Io`] or [`Error::Locked`]). Its text says what happened;
    /// [`StorageError::is_corruption`] (the database's files are damaged: see
    /// [`Error::is_damage`]) and [`StorageError::io_error`] (a failed read or write, a full
    /// disk say) are what an application can act on.
    #[error(transparent)]
    Storage(StorageError),
    /// A stored record could not be decoded.
    #[error("session {handle}: stored record is undecodable: {reason}")]
    Corrupt {
        /// The storage handle of the record.
        handle: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another writer saved the session since it was loaded; nothing was written. For a
    /// session never saved (`expected` 0: [`Store::create_with_id`](crate::Store::create_with_id),
    /// a named session), a session is already stored under its id.
    #[error("{}", conflict_message(handle, *expected))]
    Conflict {
        /// The storage handle of the session.
        handle: String,
        /// The version this handle loaded; 0 for a session never saved.
        expected: u64,
    },
    /// A session was not found (unknown, expired or invalidated, or rotated away: another
    /// request's `cycle_id` moved it to a new id, as a login submitted twice does).
    #[error("session {handle} not found")]
    NotFound {
        /// The storage handle asked for.
        handle: String,
    },
    /// The encoded session is larger than the configured maximum.
    #[error("session {handle} is {size} bytes encoded, over the limit of {limit} bytes")]
    TooLarge {
        /// The storage handle of the session.
        handle: String,
        /// The encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A text that should be a session id or handle is not one.
    #[error("{input:?} is not a valid {what}: {reason}")]
    InvalidId {
        /// What was expected ("session id" or "handle"). The input is shortened to keep
        /// tokens out of logs.
        what: &'static str,
        /// A shortened, printable form of the input.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A value given to the store is invalid: a metadata field (principal, label, remote
    /// address, user agent), a setting of the [`Builder`](crate::Builder) checked at open, a
    /// JSON value ([`Value::from_json`](crate::Value::from_json)), or an operation a session
    /// does not allow (`cycle_id` of a named session). `field` names which.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A data value could not be converted to or from the session's value model.
    #[error("session data key {key:?}: {reason}")]
    Value {
        /// The data key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// The principal already has the maximum number of sessions and the policy is to refuse.
    #[error(
        "principal {principal:?} already has {limit} session{} (the configured maximum)",
        if *limit == 1 { "" } else { "s" }
    )]
    PrincipalLimit {
        /// The principal.
        principal: String,
        /// The configured maximum.
        limit: usize,
    },
    /// The store was opened read-only and the operation would write.
    #[error("the store is open read-only; {operation} would write")]
    ReadOnly {
        /// The operation that was refused.
        operation: &'static str,
    },
    /// A copy or compaction ([`Store::copy_into`](crate::Store::copy_into),
    /// [`Store::compact`](crate::Store::compact)) was refused before it changed anything, or
    /// failed and was undone, and the database is as it was; or, where two renames stand in
    /// for an exchange of folders, failed half way, and `reason` says where the database and
    /// its copy are.
    #[error("cannot compact {path}: {reason}")]
    Compact {
        /// The database folder.
        path: PathBuf,
        /// Why, and what to do about it.
        reason: String,
        /// The I/O error that made it fail, where one did (writing the copy, taking a lock,
        /// the swap): its `kind()` says why (`PermissionDenied`, `StorageFull`, ...). Its text
        /// is not in `reason`: a chain printer (anyhow's `{:#}`) puts it last.
        #[source]
        source: Option<std::io::Error>,
    },
    /// There is no database at the path because a compaction that renames twice (where the
    /// file system cannot exchange two folders) was cut between its two renames: the original
    /// and the compacted copy are beside the path. No new database is made there until one of
    /// them is renamed back: an application would otherwise start afresh beside its sessions.
    #[error(
        "no database at {path}: a compaction was cut between its two renames; the original \
         database is at {original} and its compacted copy at {copy}: rename one of them to \
         {path} (until then no new database is made there)"
    )]
    CompactionCut {
        /// The database folder.
        path: PathBuf,
        /// Where the original is (`<name>.compact-old`).
        original: PathBuf,
        /// Where the whole compacted copy is (`<name>.compact-new`).
        copy: PathBuf,
    },
    /// An import failed after it had written some of its sessions (on a full disk, say):
    /// they stay, synced as a whole import's are, as far as the storage engine got them to
    /// disk (a failed flush can lose the last of them), and `source` says why it stopped. An
    /// import is idempotent, so running it again with the same input, once the cause is
    /// fixed, finishes it.
    #[error(
        "the import stopped after writing {written} of its sessions (they stay, as far as they \
         reached the disk; once the cause is fixed, running it again with the same input \
         finishes it)"
    )]
    ImportStopped {
        /// How many sessions it had handed to the storage engine (imported or replaced).
        written: u64,
        /// Why it stopped.
        #[source]
        source: Box<Error>,
    },
    /// The `init` callback of a named session failed; nothing was saved.
    #[error("creating named session {name:?} failed")]
    Init {
        /// The session name.
        name: String,
        /// The error returned by the callback.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An update kept conflicting with other writers.
    #[error("session {handle}: gave up after {attempts} conflicting attempts")]
    TooManyConflicts {
        /// The storage handle of the session.
        handle: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The admin socket could not be created, reached or used (see
    /// [`Builder::admin_socket`](crate::Builder::admin_socket) and
    /// [`RemoteAdmin`](crate::RemoteAdmin)).
    #[error("{what} the admin socket {path}")]
    AdminSocket {
        /// The socket path.
        path: PathBuf,
        /// What failed ("cannot connect to", "cannot create", ...).
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another live process answers on the admin socket path this store was told to serve.
    #[error("another process is serving the admin socket {path}")]
    AdminSocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The application closed the admin connection (it stopped, or dropped its store).
    #[error("the application behind the admin socket {path} closed the connection")]
    Disconnected {
        /// The socket path.
        path: PathBuf,
    },
    /// The application behind an admin socket did not answer for `waited` (nor did it accept
    /// a new connection meanwhile): it is stopped (`kill -STOP`, a debugger) or hung. The
    /// connection was closed; the next call connects again.
    #[error(
        "the application behind the admin socket {path} did not answer within {} \
         (is it stopped or hung?)",
        span(*waited)
    )]
    Unresponsive {
        /// The socket path.
        path: PathBuf,
        /// How long the client waited: its timeout
        /// ([`RemoteAdmin::connect_with_timeout`](crate::RemoteAdmin::connect_with_timeout)), or
        /// twice that when it waited for an answer and then for a second connection's.
        waited: std::time::Duration,
        /// Whether the request reached the application before it stopped answering: a stopped
        /// application then does it once it runs again. `false` when the application did not
        /// answer the connection the request was to go on: nothing was sent.
        sent: bool,
    },
    /// The application refused this client: its user is neither the application's nor root,
    /// or too many clients are connected.
    #[error("the admin socket {path} refused the connection: {reason}")]
    Refused {
        /// The socket path.
        path: PathBuf,
        /// Why, as the application said.
        reason: String,
    },
    /// The peer at an admin socket broke the protocol (not a sessdb socket, an incompatible
    /// version, a malformed or oversized frame); the connection was closed.
    #[error("admin socket {path}: {reason}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// An error of the application at the other end of an admin socket that has no exact local
    /// form (a storage engine error, for one): its message chain as the application rendered
    /// it. Errors with a local form (not found, read-only, corrupt, ...) keep their variant.
    #[error("the application reported: {message}")]
    Remote {
        /// The error and its causes, joined by ": ".
        message: String,
    },
}

impl Error {
    /// Whether this error means "another writer won; load again and retry".
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether this error means the database's files are damaged: [`Error::Damaged`] at open,
    /// or the storage engine's `Corruption` found later.
    pub fn is_damage(&self) -> bool {
        match self {
            Error::Damaged { .. } => true,
            Error::Storage(e) => e.is_corruption(),
            _ => false,
        }
    }
}

/// An error of the storage engine, sled, whose own error type is kept out of sessdb's API (a
/// new sled would otherwise be a breaking change of sessdb). Its text says what happened and,
/// for an I/O error, how to recover; [`StorageError::is_corruption`] and
/// [`StorageError::io_error`] are what an application can act on. Only sessdb makes one (its hidden `__*_for_tests`
/// constructors serve sessctl's tests, and are no part of the API).
///
/// Its `source()` is `None`, and an I/O error under it is reached with
/// [`StorageError::io_error`]: the text names the I/O error in the middle of its sentence
/// (sessctl and applications' logs show it so), and a chain printer (anyhow's `{:#}`) would
/// print it a second time as a source.
#[derive(Debug)]
pub struct StorageError {
    /// sled's error; an I/O error in it as the system would have made it ([`original_io`]).
    inner: sled::Error,
}

/// Whether sled has failed a read or write of its files in this process (the last handle's
/// drop then guards against a flush that never ends: `Inner::drop` in `store.rs`).
static IO_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether a storage I/O error was met in this process.
pub(crate) fn io_failed() -> bool {
    IO_FAILED.load(Ordering::Relaxed)
}

impl StorageError {
    /// Wraps an error of sled's.
    pub(crate) fn new(e: sled::Error) -> Self {
        let inner = match e {
            sled::Error::Io(io) => {
                IO_FAILED.store(true, Ordering::Relaxed);
                sled::Error::Io(original_io(io))
            }
            e => e,
        };
        StorageError { inner }
    }

    /// Whether the storage engine found corrupted data in the database's files. Sessions read
    /// from them cannot be trusted, and the error comes back: an application may move the
    /// folder aside and start with an empty store (sessions are disposable), as for
    /// [`Error::Damaged`] at the open; [`Error::is_damage`] answers for both.
    pub fn is_corruption(&self) -> bool {
        matches!(self.inner, sled::Error::Corruption { .. })
    }

    /// The I/O error that failed the storage engine's read or write of its files, if that is
    /// what this is: its `kind()` says why (`StorageFull` for a full disk, `PermissionDenied`,
    /// ...), and `raw_os_error()` its OS code (sled's copy of the error that failed its flush,
    /// which has neither code nor the system's text, is given as the original). After a failed
    /// write sled accepts no more writes from this process, and may fail reads: the
    /// application must fix the cause, then open the database again (or restart).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match &self.inner {
            sled::Error::Io(io) => Some(io),
            _ => None,
        }
    }

    /// The I/O error, taken out, if that is what this is; else the error as it was.
    pub(crate) fn into_io(self) -> std::result::Result<std::io::Error, StorageError> {
        match self.inner {
            sled::Error::Io(io) => Ok(io),
            inner => Err(StorageError { inner }),
        }
    }

    /// A `Corruption`, for tests outside this crate (sessctl's), which cannot make sled find
    /// one on demand.
    #[doc(hidden)]
    pub fn __corruption_for_tests() -> Self {
        StorageError::new(sled::Error::Corruption { at: None, bt: () })
    }

    /// An I/O error, for tests outside this crate (sessctl's), which cannot make sled's write
    /// fail on demand.
    #[doc(hidden)]
    pub fn __io_for_tests(io: std::io::Error) -> Self {
        StorageError::new(sled::Error::Io(io))
    }

    /// An error that is neither corruption nor I/O, for tests outside this crate (sessctl's).
    #[doc(hidden)]
    pub fn __other_for_tests(what: &str) -> Self {
        StorageError::new(sled::Error::Unsupported(what.to_owned()))
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&storage_message(&self.inner))
    }
}

impl std::error::Error for StorageError {}

/// A result of sled's, its error made sessdb's.
pub(crate) trait SledResult<T> {
    /// The result with its error as an [`Error::Storage`].
    fn storage(self) -> Result<T>;
}

impl<T> SledResult<T> for std::result::Result<T, sled::Error> {
    fn storage(self) -> Result<T> {
        self.map_err(storage)
    }
}

/// sled's error as sessdb's.
pub(crate) fn storage(e: sled::Error) -> Error {
    Error::Storage(StorageError::new(e))
}

/// An I/O error from sled as the system made it. sled hands out a copy of the error that
/// failed its flush, made from the original's `Debug` form (`Os { code: 28, kind:
/// StorageFull, message: "No space left on device" }`), which has no OS error code and reads
/// as that form: the original is made again from the code in it.
fn original_io(io: std::io::Error) -> std::io::Error {
    if io.raw_os_error().is_some() {
        return io;
    }
    let code = io
        .to_string()
        .strip_prefix("Os { code: ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|code| code.parse::<i32>().ok());
    match code {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => io,
    }
}

/// An error and its sources, joined the way `{:#}` prints an anyhow chain.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// sled's own text, except for `Corruption`, whose text ("Read corrupted data at file offset
/// None backtrace ()") says nothing an operator can use.
fn storage_message(e: &sled::Error) -> String {
    match e {
        sled::Error::Corruption { .. } => {
            "the database is damaged: the storage engine found corrupted data in its files".into()
        }
        // sled's own text for these is its `Debug` form (`Os { code: 28, kind: StorageFull,
        // .. }`); and after a failed write it refuses every later one, which the application's
        // operator needs to know to recover.
        sled::Error::Io(io) => format!(
            "storage engine I/O error: {} (after a failed write sled accepts no more writes \
             from this process, and may fail reads: fix the cause, such as a full disk, then reopen the database or \
             restart the application)",
            io
        ),
        e => format!("storage engine error: {e}"),
    }
}

/// What a [`Error::Conflict`] says: a new session's id taken, or a stored session changed.
fn conflict_message(handle: &str, expected: u64) -> String {
    if expected == 0 {
        format!(
            "session {handle} is already stored: a new session's id is taken (nothing was \
             written)"
        )
    } else {
        format!(
            "session {handle} was changed by another writer since it was loaded (expected \
             version {expected})"
        )
    }
}

/// A timeout as a person reads it: whole seconds, or milliseconds below ten seconds when
/// they are not whole.
fn span(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 || d.as_secs() >= 10 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Shortens untrusted input for an error message, so a pasted token or a huge argument never
/// lands whole in a log. Eight characters: a real id with a stray character around it (a
/// cookie pasted with a quote) is refused, and its first eight characters, 32 of its 122
/// random bits, are all the log gets of it.
pub(crate) fn shorten(input: &str) -> String {
    const MAX: usize = 8;
    let mut out: String = input.chars().take(MAX).collect();
    if input.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// Removes session data from a serde message before it becomes an error: serde quotes the
/// offending value (`invalid type: string "…", expected u64`, ``unknown variant `…` ``), and
/// session data must not reach a log. Names from the type (``missing field `x` ``, the
/// expected variants) stay.
pub(crate) fn redact(reason: &str) -> String {
    /// Backquoted text after these is a value from the data, not a name from the type.
    const DATA_AFTER: [&str; 6] = [
        "integer ",
        "floating point ",
        "boolean ",
        "character ",
        "unknown variant ",
        "unknown field ",
    ];
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(i) = rest.find(['"', '`']) {
        out.push_str(&rest[..i]);
        let quote = if rest.as_bytes()[i] == b'"' { '"' } else { '`' };
        let body = &rest[i + 1..];
        let end = if quote == '"' {
            closing_quote(body)
        } else {
            body.find('`')
        };
        let hide = quote == '"' || DATA_AFTER.iter().any(|p| out.ends_with(p));
        out.push(quote);
        match end {
            Some(end) => {
                out.push_str(if hide { "…" } else { &body[..end] });
                out.push(quote);
                rest = &body[end + 1..];
            }
            None => {
                // Unterminated: whatever follows may be data.
                out.push('…');
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The index of the `"` that ends a Debug-escaped string.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{chain, redact, storage, Error};
    use std::error::Error as _;
    use std::io;

    const FULL_DISK: &str = "storage engine I/O error: No space left on device (os error 28) \
                             (after a failed write sled accepts no more writes from this \
                             process, and may fail reads: fix the cause, such as a full disk, \
                             then reopen the database or restart the application)";

    /// sled's text for an I/O error is its `Debug` form; ours says what it is and how to
    /// recover from sled's refusal of every write after a failed one. It is printed once in a
    /// chain: the I/O error is reached by `io_error`, not as a source.
    #[test]
    fn a_storage_io_error_reads_as_one() {
        let full = storage(sled::Error::Io(io::Error::from_raw_os_error(28)));
        assert_eq!(full.to_string(), FULL_DISK);
        assert_eq!(chain(&full), FULL_DISK);
        assert!(full.source().is_none());
        assert!(!full.is_damage());
        let Error::Storage(e) = &full else {
            panic!("{full:?}")
        };
        assert!(e.source().is_none());
        assert!(!e.is_corruption());
        let io = e.io_error().expect("an I/O error");
        assert_eq!(io.kind(), io::ErrorKind::StorageFull);
        assert_eq!(io.raw_os_error(), Some(28));
    }

    /// The copy sled hands out of the error that failed its flush (made from the original's
    /// `Debug` form) reads, and answers, as the original.
    #[test]
    fn sleds_copy_of_an_io_error_is_the_original_again() {
        let original = io::Error::from_raw_os_error(28);
        let copy = io::Error::new(original.kind(), format!("{original:?}"));
        let full = storage(sled::Error::Io(copy));
        assert_eq!(full.to_string(), FULL_DISK);
        let Error::Storage(e) = &full else {
            panic!("{full:?}")
        };
        let io = e.io_error().expect("an I/O error");
        assert_eq!(
            (io.kind(), io.raw_os_error()),
            (io::ErrorKind::StorageFull, Some(28))
        );
        // An error that only looks like one keeps its text.
        let odd = storage(sled::Error::Io(io::Error::other("Os { code: x")));
        assert!(odd
            .to_string()
            .starts_with("storage engine I/O error: Os { code: x ("));
    }

    /// sled's `Corruption` says nothing an operator can use; ours says the files are damaged.
    #[test]
    fn a_storage_corruption_is_damage() {
        let damaged = storage(sled::Error::Corruption { at: None, bt: () });
        assert_eq!(
            damaged.to_string(),
            "the database is damaged: the storage engine found corrupted data in its files"
        );
        assert!(damaged.is_damage());
        assert!(damaged.source().is_none());
        let Error::Storage(e) = &damaged else {
            panic!("{damaged:?}")
        };
        assert!(e.is_corruption());
        assert!(e.io_error().is_none());
    }

    #[test]
    fn another_storage_error_keeps_sleds_text() {
        let other = storage(sled::Error::Unsupported("no".into()));
        assert_eq!(other.to_string(), "storage engine error: Unsupported: no");
        assert!(other.source().is_none());
        assert!(!other.is_damage());
        let Error::Storage(e) = &other else {
            panic!("{other:?}")
        };
        assert!(!e.is_corruption());
        assert!(e.io_error().is_none());
    }

    /// A compaction's I/O error is its source, printed once, after the text.
    #[test]
    fn a_compactions_io_error_is_its_source() {
        let err = Error::Compact {
            path: "/db".into(),
            reason: "writing its copy in /copy failed; the database is unchanged".into(),
            source: Some(io::Error::from_raw_os_error(13)),
        };
        assert_eq!(
            chain(&err),
            "cannot compact /db: writing its copy in /copy failed; the database is unchanged: \
             Permission denied (os error 13)"
        );
        let source = err.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            source.map(io::Error::kind),
            Some(io::ErrorKind::PermissionDenied)
        );
    }

    #[test]
    fn redact_hides_values_and_keeps_names() {
        assert_eq!(
            redact(r#"invalid type: string "to\"k\\en", expected u64"#),
            r#"invalid type: string "…", expected u64"#
        );
        assert_eq!(
            redact("unknown variant `secret`, expected `A` or `B`"),
            "unknown variant `…`, expected `A` or `B`"
        );
        assert_eq!(
            redact("invalid value: integer `42`, expected u8"),
            "invalid value: integer `…`, expected u8"
        );
        assert_eq!(redact("missing field `name`"), "missing field `name`");
        assert_eq!(redact(r#"string "unterminated"#), r#"string "…"#);
        assert_eq!(redact("no quotes"), "no quotes");
    }
}
