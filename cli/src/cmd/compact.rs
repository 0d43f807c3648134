//! `sessctl compact`: rewrite the database into a new folder and swap it in, which takes a
//! store that has been in use back to its fresh size (sled's files never shrink). Needs the
//! database to itself: with a running application, it is refused.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use sessdb::{CompactOptions, CompactReport};

use super::{plural, Ctx};
use crate::db::{self, Access, Database};
use crate::exit::{Exit, Failure};
use crate::output::bytes;
use crate::progress::Progress;
use crate::signals::stop_on_signals;

/// `compact [--drop-expired] [--keep-old | --into DIR]`
#[derive(Debug)]
pub struct Compact {
    /// Leave out expired sessions; keep the old database.
    pub options: CompactOptions,
    /// Write the copy here and leave the database as it is.
    pub into: Option<PathBuf>,
}

impl Compact {
    /// Compacts (or copies) the database and says what it did.
    ///
    /// # Errors
    /// [`Failure::Usage`] with `--socket` (`SESSCTL_SOCKET` is ignored, with a note), or an
    /// `--into` that names a file, a folder with
    /// something in it or a folder inside the database's; [`Failure::Held`] when a running
    /// application
    /// holds the database; the store's refusals ([`sessdb::Error::Compact`]), a damaged
    /// record ([`sessdb::Error::Corrupt`]), open, storage and I/O errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        // A socket named on the command line is refused (ignored, it would read as obeyed);
        // one from the environment (a shell profile's SESSCTL_SOCKET, set for the other
        // commands) is said to be ignored, as demo does: before, it was refused as if typed,
        // with advice to give the --db that was given.
        match ctx.socket {
            Some(socket) if ctx.socket_named_by == "--socket" => {
                return Err(Failure::Usage(format!(
                    "compact needs the database itself, not an application's admin socket \
                     ({}): stop the application and give --db",
                    socket.display()
                ))
                .into());
            }
            Some(socket) => writeln!(
                ctx.err,
                "note: {} ({}) is ignored: compact works on the database itself, at --db",
                ctx.socket_named_by,
                socket.display()
            )?,
            None => {}
        }
        ctx.refuse_future_write()?;
        if let Some(dest) = &self.into {
            refuse_inside_database(dest, ctx.db)?;
            refuse_taken(dest)?;
        }
        // A copy only reads the database: it can be made from a read-only one.
        let access = if self.into.is_some() {
            Access::Read
        } else {
            Access::Write
        };
        let store = match db::open(ctx.db, ctx.as_of, access, ctx.timeout)? {
            Database::Direct(store) => store,
            Database::Remote(remote) => {
                return Err(Failure::Held(format!(
                    "a running application (pid {}) holds the database {}: compact needs it to \
                     itself, since the application would go on writing to the old files; stop \
                     the application, compact, then start it again",
                    remote.server_pid(),
                    remote.database_path().display()
                ))
                .into())
            }
        };
        // From here a Ctrl-C stops the copy, which the store then removes, rather than end the
        // process with the copy left beside the database (until then it has nothing to undo).
        // A second one ends the process at once, with exit 130 too, and leaves the copy.
        let stop = stop_on_signals(130)?;
        let progress = Progress::spinner(ctx.progress, "copying", "sessions");
        let stopped = Cell::new(false);
        let step = |n| {
            progress.set(n);
            if stop.load(Ordering::Relaxed) {
                stopped.set(true);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let report = match &self.into {
            Some(dest) => store.copy_into_with(dest, &self.options, step),
            None => store.compact_with(&self.options, step),
        };
        progress.finish();
        if stopped.get() {
            // The copy stopped there, and the store removed it.
            return Err(Failure::Interrupted(format!(
                "compact interrupted: {} is unchanged and the unfinished copy removed",
                ctx.db.display()
            ))
            .into());
        }
        let report = report?;
        if stop.load(Ordering::Relaxed) {
            writeln!(
                ctx.err,
                "note: the signal came once the copy was whole, at the swap: the compaction \
                 finished"
            )?;
        }
        let what = match &self.into {
            Some(dest) => format!("copied {} into {}", ctx.db.display(), dest.display()),
            None => format!("compacted {}", ctx.db.display()),
        };
        writeln!(
            ctx.out,
            "{what}: {}{}, {} → {} on disk",
            plural(report.sessions, "session"),
            dropped(&report),
            bytes(report.bytes_before),
            bytes(report.bytes_after)
        )?;
        match (&report.old, &report.old_not_removed) {
            (Some(old), None) => {
                writeln!(
                    ctx.out,
                    "the old database is kept at {} (the next compaction needs it moved away)",
                    old.display()
                )?;
            }
            (Some(old), Some(why)) => writeln!(
                ctx.err,
                "warning: the old database is left at {} ({why}): remove it once you no longer \
                 need it",
                old.display()
            )?,
            _ => {}
        }
        Ok(Exit::Success)
    }

    /// Whether `err` is a permission error on the copy or its folder, rather than on the
    /// database, whose own advice is the error's ([`crate::exit::hint`]): a failed write of the
    /// copy carries its I/O error as its source, and a folder for the copy that cannot be made
    /// is an I/O error on that folder (`--into`'s, or `<name>.compact-new` beside the
    /// database).
    fn copy_denied(&self, err: &anyhow::Error) -> bool {
        let denied = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
        let is_copy = |path: &Path| match &self.into {
            Some(dest) => path == dest,
            None => path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().ends_with(".compact-new")),
        };
        match err.chain().find_map(|c| c.downcast_ref::<sessdb::Error>()) {
            Some(sessdb::Error::Compact {
                source: Some(source),
                ..
            }) => denied(source),
            Some(sessdb::Error::Io { path, source }) => denied(source) && is_copy(path),
            _ => false,
        }
    }

    /// Advice for an error compact ended with, ahead of the error's own: a damaged record
    /// stops it, and so does a folder for the copy this user may not write.
    pub fn hint(&self, err: &anyhow::Error) -> Option<String> {
        let corrupt = err.chain().any(|c| {
            matches!(
                c.downcast_ref::<sessdb::Error>(),
                Some(sessdb::Error::Corrupt { .. })
            )
        });
        if corrupt {
            return Some(
                "nothing was changed; `sessctl check` lists every damaged record, and `sessctl \
                 check --repair` removes them (their sessions cannot be loaded anyway); then \
                 compact again"
                    .to_string(),
            );
        }
        if !self.copy_denied(err) {
            return None;
        }
        Some(match &self.into {
            Some(dest) => format!(
                "the copy is written into {}, which this user must be able to write (or make): \
                 give --into a folder this user can write",
                dest.display()
            ),
            None => "compaction writes its copy into a new folder beside the database's and \
                     swaps the two, so this user must be able to write in the folder that holds \
                     the database: run sessctl as a user who can, or copy the database with \
                     --into DIR into a folder this user can write"
                .to_string(),
        })
    }
}

fn dropped(report: &CompactReport) -> String {
    if report.dropped_expired == 0 {
        String::new()
    } else {
        format!(
            " ({} left out)",
            plural(report.dropped_expired, "expired session")
        )
    }
}

/// Refuses an `--into` inside the database folder `db` (or below it) as a usage error, before
/// the database is opened, as `export --out` there is: the store refuses it too, but as a
/// failed compaction. `dest` need not exist yet: the deepest of its folders that does is where
/// it would be made, links followed.
fn refuse_inside_database(dest: &Path, db: &Path) -> anyhow::Result<()> {
    let Ok(db) = std::fs::canonicalize(db) else {
        // No database there: opening it says so.
        return Ok(());
    };
    let existing = dest
        .ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find_map(|a| std::fs::canonicalize(a).ok());
    if existing.is_some_and(|at| at.starts_with(&db)) {
        return Err(Failure::Usage(format!(
            "--into {} is inside the database folder {}: the copy would sit among the \
             database's own files; give a folder outside it",
            dest.display(),
            db.display()
        ))
        .into());
    }
    Ok(())
}

/// Refuses an `--into` that names something already there (a file, a folder with something in
/// it) as a usage error, before the database is opened: the copy goes into a new database. (The
/// store refuses it too, for one made meanwhile.)
fn refuse_taken(dest: &Path) -> anyhow::Result<()> {
    let taken = match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => std::fs::read_dir(dest).map_or(true, |mut d| d.next().is_some()),
        Ok(_) => true,
        // A link to nothing is there all the same.
        Err(_) => std::fs::symlink_metadata(dest).is_ok(),
    };
    if taken {
        return Err(Failure::Usage(format!(
            "--into {} exists and is not an empty folder: the copy goes into a new database \
             (give a path that does not exist yet, or an empty folder)",
            dest.display()
        ))
        .into());
    }
    Ok(())
}
