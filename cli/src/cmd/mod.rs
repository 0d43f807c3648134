//! One module per subcommand. Each has a validated command type (built by
//! [`crate::config`]) whose `run` does the work through the [`sessdb::Admin`] interface.

pub mod check;
pub mod compact;
pub mod demo;
pub mod export;
mod fresh;
pub mod import;
pub mod invalidate;
pub mod list;
pub mod purge;
pub mod show;
pub mod stats;
pub mod tui;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sessdb::RemoteAdmin;
use time::OffsetDateTime;

use crate::db::{self, Access, Database};
use crate::exit::Failure;
use crate::output::{printable, timestamp, Style};

/// What every command runs with.
pub struct Ctx<'a> {
    /// The database folder.
    pub db: &'a Path,
    /// What named it, `--db` or `SESSCTL_DB`; `None` for the default.
    pub db_named_by: Option<&'static str>,
    /// Evaluate expiry as of this moment instead of now.
    pub as_of: Option<OffsetDateTime>,
    /// An admin socket to use instead of opening the database (`--socket`).
    pub socket: Option<&'a Path>,
    /// What named the socket, `--socket` or `SESSCTL_SOCKET`.
    pub socket_named_by: &'static str,
    /// How long to wait at a time for an application's admin socket (`--timeout`).
    pub timeout: Duration,
    /// Colours for stdout.
    pub style: Style,
    /// Whether to draw progress bars on stderr.
    pub progress: bool,
    /// NO_COLOR is set, or TERM is `dumb`.
    pub no_color: bool,
    /// Where results go.
    pub out: &'a mut dyn Write,
    /// Where diagnostics go. Under `--quiet` the lines starting `note: ` are left out of it
    /// (`run.rs` `WithoutNotes`).
    pub err: &'a mut dyn Write,
    /// `--quiet`: stderr says only warnings and errors; what else a command says there (an
    /// export's summary, a listing's hints) is left out as the notes are.
    pub quiet: bool,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("db", &self.db)
            .field("as_of", &self.as_of)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// Opens the database for `access`, and says on stderr when a running application holds
    /// it and the command goes through that application's admin socket.
    ///
    /// # Errors
    /// See [`db::open`]; [`Failure::Usage`] for a command that writes through a `--socket`
    /// whose application serves another database than `--db` names; a write error on stderr.
    pub fn open(&mut self, access: Access) -> anyhow::Result<Database> {
        self.open_as(access, access != Access::Read)
    }

    /// Opens the database for an export: as [`Ctx::open`] for reading, but refused like a
    /// write when `--socket` reaches another database than `--db` names, since a backup
    /// outlives the warning a read gets: it would be kept, and relied on, as the other one's.
    ///
    /// # Errors
    /// As for [`Ctx::open`].
    pub fn open_for_export(&mut self) -> anyhow::Result<Database> {
        self.open_as(Access::Read, true)
    }

    fn open_as(&mut self, access: Access, exact: bool) -> anyhow::Result<Database> {
        if access != Access::Read {
            self.refuse_future_write()?;
        }
        let db = match self.socket {
            Some(socket) => db::open_socket(self.db, socket, self.as_of, self.timeout)?,
            None => db::open(self.db, self.as_of, access, self.timeout)?,
        };
        if let Database::Remote(remote) = &db {
            let other = self
                .db_named_by
                .filter(|_| !same_folder(self.db, remote.database_path()));
            // Only a socket named on purpose can disagree with --db: the one sessctl finds by
            // itself is in the --db folder (an application in a container may name that
            // folder by another path).
            if let Some(db_flag) = other.filter(|_| exact && self.socket.is_some()) {
                return Err(self.refuse_other_database(db_flag, remote).into());
            }
            // The application names its database: escaped, as anything it sends is.
            let served = printable(&remote.database_path().display().to_string());
            writeln!(
                self.err,
                "note: a running application (pid {}) holds the database {served}; going \
                 through its admin socket {}",
                remote.server_pid(),
                printable(&remote.socket_path().display().to_string())
            )?;
            if let Some(db_flag) = other {
                writeln!(
                    self.err,
                    "warning: {db_flag} {} is not the database that application serves; the \
                     command goes to {served}",
                    printable(&self.db.display().to_string())
                )?;
            }
        }
        Ok(db)
    }

    /// The refusal of a write (or an export) that `--socket` would send to another database
    /// than the one `--db` names: the two named on purpose disagree, and acting on the
    /// application's database could change sessions of a system the operator did not mean.
    fn refuse_other_database(&self, db_flag: &str, remote: &RemoteAdmin) -> Failure {
        let served = remote.database_path().display();
        let named = self.db.display();
        let way_out = |flag: &str| {
            if flag.starts_with("--") {
                format!("leave out {flag}")
            } else {
                format!("unset {flag}")
            }
        };
        Failure::Usage(format!(
            "{db_flag} names {named}, but the application behind the admin socket {} ({}) \
             serves {served}; the command would act on {served}, not on {named}: to act on \
             {served}, {}; to act on {named}, {}",
            remote.socket_path().display(),
            self.socket_named_by,
            way_out(db_flag),
            way_out(self.socket_named_by)
        ))
    }

    /// The `--as-of` time when it is later than the real now: expiry is then a what-if, which
    /// sessctl shows and never acts on.
    pub fn future_as_of(&self) -> Option<OffsetDateTime> {
        self.as_of.filter(|t| *t > OffsetDateTime::now_utc())
    }

    /// Refuses to write with an `--as-of` later than now: a purge would remove sessions that
    /// are still live. An `--as-of` in the past stays allowed: what is expired then is expired
    /// now too, so a purge removes a subset of what it removes now; what invalidate, repair
    /// and a demo's history write does not depend on the time (`invalidate --principal`
    /// counts the sessions live as of it), and an import judges what is live (for
    /// `--on-conflict skip`) as of it, as asked.
    ///
    /// # Errors
    /// [`Failure::Usage`] naming `--as-of`.
    pub fn refuse_future_write(&self) -> Result<(), Failure> {
        match self.future_as_of() {
            Some(t) => Err(Failure::Usage(format!(
                "--as-of {} is later than now: sessctl only reads as of a future time, since \
                 writing then would act on sessions that are still live (to see what purge would \
                 remove then: `purge --expired --dry-run`)",
                timestamp(t)
            ))),
            None => Ok(()),
        }
    }
}

/// Whether `a` and `b` name the same folder: the same absolute path, or the same folder once
/// symbolic links are resolved.
fn same_folder(a: &Path, b: &Path) -> bool {
    if std::path::absolute(a).is_ok_and(|a| a == b) {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `1 session`, `3 sessions`, `2 entries`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else if let Some(stem) = noun.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {noun}s")
    }
}
