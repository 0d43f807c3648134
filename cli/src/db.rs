//! Opening the database the way each command needs it: read-only commands never write and
//! never create anything; only `import` and `demo` may create a database. When a running
//! application holds the database and serves its admin socket, commands go through the socket.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sessdb::{Admin, Builder, ManualClock, RemoteAdmin, Store};
use time::OffsetDateTime;

use crate::exit::Failure;

/// How a command uses the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads (stats, list, show, export, check, dry runs): opened read-only, never created.
    Read,
    /// Writes to an existing database (invalidate, purge, repair, tui).
    Write,
    /// Writes, creating the database if it is missing (import, demo).
    Create,
}

/// The database, opened directly or reached through a running application's admin socket.
#[derive(Debug)]
pub enum Database {
    /// Opened by this process.
    Direct(Store),
    /// Held by a running application, reached through its admin socket.
    Remote(RemoteAdmin),
}

impl Database {
    /// The admin interface, whatever the transport.
    pub fn admin(&self) -> &dyn Admin {
        match self {
            Database::Direct(store) => store,
            Database::Remote(remote) => remote,
        }
    }

    /// The database folder: `local` (`--db`) when opened directly, or the one the running
    /// application serves.
    pub fn path<'a>(&'a self, local: &'a Path) -> &'a Path {
        match self {
            Database::Direct(_) => local,
            Database::Remote(remote) => remote.database_path(),
        }
    }

    /// What the TUI's header names: the folder, or the socket of the live application.
    pub fn title(&self, path: &Path) -> String {
        match self {
            Database::Direct(_) => path.display().to_string(),
            Database::Remote(remote) => format!("live: {}", remote.socket_path().display()),
        }
    }
}

/// Opens the database at `path`, evaluating expiry as of `as_of` when given. When a running
/// application holds it and answers on the admin socket in its folder, connects to that
/// instead, waiting `timeout` at a time for it
/// ([`RemoteAdmin::connect_with_timeout`]).
///
/// # Errors
/// The store's open errors ([`sessdb::Error::Locked`] when the database is held and there is
/// no admin socket, `Missing`, `NotADirectory`, `NewerFormat`, ...); an error when `path` is a
/// folder that holds something other than a sessdb database; [`Failure::Usage`] for `--as-of`
/// with a live application, whose clock the socket uses; [`Failure::Held`] when the database
/// is held and its socket does not answer.
pub fn open(
    path: &Path,
    as_of: Option<OffsetDateTime>,
    access: Access,
    timeout: Duration,
) -> anyhow::Result<Database> {
    let socket = RemoteAdmin::default_socket(path);
    let has_socket = fs::symlink_metadata(&socket).is_ok();
    // A socket that answers means the application is running and holds the database: ask it
    // first, rather than wait for sled's lock to fail. A socket left by a crashed application
    // does not answer, and the database is then opened directly.
    let mut unresponsive = None;
    if has_socket {
        match RemoteAdmin::connect_with_timeout(&socket, timeout) {
            Ok(remote) => return live(path, as_of, remote),
            Err(e @ sessdb::Error::Unresponsive { .. }) => unresponsive = Some(e),
            Err(_) => {}
        }
    }
    match open_direct(path, as_of.map(ManualClock::at), access) {
        Ok(store) => Ok(Database::Direct(store)),
        Err(e) => match e.downcast::<sessdb::Error>() {
            // A stopped or hung application holds it: asking it again would only wait again.
            Ok(locked @ sessdb::Error::Locked { .. }) if unresponsive.is_some() => {
                let why = unresponsive
                    .map(|e| format!("{:#}", anyhow::Error::new(e)))
                    .unwrap_or_default();
                Err(Failure::Held(format!(
                    "{locked}{}, and its admin socket does not answer: {why}",
                    crate::holder::held_by(path)
                ))
                .into())
            }
            // It may have started meanwhile; if not, say why the socket did not help.
            Ok(locked @ sessdb::Error::Locked { .. }) if has_socket => {
                match RemoteAdmin::connect_with_timeout(&socket, timeout) {
                    Ok(remote) => live(path, as_of, remote),
                    // It answers, and refuses: busy (too many connections) or not this user's;
                    // or it is not trusted with a command (run by another user).
                    Err(e @ (sessdb::Error::Refused { .. } | sessdb::Error::Protocol { .. })) => {
                        Err(Failure::Held(format!(
                            "a running application{} holds the database at {}, and {e}",
                            crate::holder::held_by(path),
                            path.display()
                        ))
                        .into())
                    }
                    Err(e) => Err(Failure::Held(format!(
                        "{locked}{}, and its admin socket does not answer: {:#}",
                        crate::holder::held_by(path),
                        anyhow::Error::new(e)
                    ))
                    .into()),
                }
            }
            Ok(other) => Err(other.into()),
            Err(other) => Err(other),
        },
    }
}

/// Connects to the admin socket `socket` (`--socket`), whatever `--db` says, waiting `timeout`
/// at a time for the application.
///
/// # Errors
/// [`sessdb::Error::AdminSocket`] and the other connection errors of [`RemoteAdmin::connect`],
/// explained when `socket` is not a socket or nothing listens on it; [`Failure::Usage`] with
/// `--as-of`.
pub fn open_socket(
    path: &Path,
    socket: &Path,
    as_of: Option<OffsetDateTime>,
    timeout: Duration,
) -> anyhow::Result<Database> {
    let remote = RemoteAdmin::connect_with_timeout(socket, timeout)
        .map_err(|e| explain_connect(socket, e))?;
    live(path, as_of, remote)
}

/// A failed connection to `--socket` in the operator's terms, for the two cases where the
/// operating system's words ("Connection refused") mislead: a path that is not a socket, and
/// a socket file whose application has exited.
fn explain_connect(socket: &Path, e: sessdb::Error) -> anyhow::Error {
    let refused = matches!(
        &e,
        sessdb::Error::AdminSocket { source, .. }
            if source.kind() == io::ErrorKind::ConnectionRefused
    );
    match fs::metadata(socket) {
        Ok(m) if !m.file_type().is_socket() => anyhow::anyhow!(
            "{} is not a socket (--socket names the admin socket of a running application)",
            socket.display()
        ),
        Ok(_) if refused => anyhow::anyhow!(
            "no application is listening on {} (left behind by a process that exited?); \
             without --socket sessctl opens the database directly",
            socket.display()
        ),
        _ => e.into(),
    }
}

fn live(
    path: &Path,
    as_of: Option<OffsetDateTime>,
    remote: RemoteAdmin,
) -> anyhow::Result<Database> {
    if as_of.is_some() {
        return Err(Failure::Usage(format!(
            "--as-of cannot be used while a running application holds {}: through its admin \
             socket, expiry follows the application's clock",
            path.display()
        ))
        .into());
    }
    Ok(Database::Remote(remote))
}

/// Opens the database in this process only, never through a socket (the demo must not
/// replace a database that an application is using).
///
/// # Errors
/// As for [`open`], with [`sessdb::Error::Locked`] whenever another process holds it.
pub fn open_direct(
    path: &Path,
    clock: Option<ManualClock>,
    access: Access,
) -> anyhow::Result<Store> {
    let mut builder = Store::builder();
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    open_with(path, builder, access)
}

/// Opens the database in this process with the settings of `builder` (whose `read_only` and
/// `create` follow `access`): the live demo's application serves its admin socket.
///
/// # Errors
/// As for [`open_direct`], and [`sessdb::Error::AdminSocketInUse`] when another process
/// serves the socket `builder` asks for.
pub fn open_with(path: &Path, builder: Builder, access: Access) -> anyhow::Result<Store> {
    refuse_foreign_folder(path, access)?;
    let builder = builder
        .read_only(access == Access::Read)
        .create(access == Access::Create);
    builder.open(path).map_err(|e| match e {
        // These already name the path and say what is wrong.
        sessdb::Error::Locked { .. }
        | sessdb::Error::Missing { .. }
        | sessdb::Error::NotADirectory { .. }
        | sessdb::Error::NewerFormat { .. }
        | sessdb::Error::AdminSocketInUse { .. }
        | sessdb::Error::AdminSocket { .. }
        | sessdb::Error::Io { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(other)
            .context(format!("cannot open the database at {}", path.display())),
    })
}

/// Whether `path` holds the files of a sled database.
pub fn looks_like_database(path: &Path) -> bool {
    path.join("conf").is_file() && path.join("db").is_file()
}

/// sled creates its files in any folder it is pointed at, even when the store is opened
/// read-only; refuse folders that are not databases, so that a wrong `--db` changes nothing.
fn refuse_foreign_folder(path: &Path, access: Access) -> anyhow::Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        // Missing paths and files are the store's to report.
        _ => return Ok(()),
    }
    if looks_like_database(path) {
        return Ok(());
    }
    let empty =
        is_empty_dir(path).with_context(|| format!("cannot read the folder {}", path.display()))?;
    // sled's and sessdb's files only, some of them missing: the store says what is wrong (its
    // `conf` gone, it reads the log; the log gone, the database is damaged).
    if !empty && sessdb::foreign_entries(path).is_ok_and(|f| f.is_empty()) {
        return Ok(());
    }
    if empty && access == Access::Create {
        return Ok(());
    }
    let what = if empty {
        "an empty folder"
    } else {
        "a folder that holds other files"
    };
    Err(anyhow::anyhow!(
        "{} is {what}, not a sessdb database",
        path.display()
    ))
}

fn is_empty_dir(path: &Path) -> io::Result<bool> {
    Ok(fs::read_dir(path)?.next().is_none())
}
