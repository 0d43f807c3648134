//! Opening the database the way each command needs it: read-only commands never write and
//! never create anything; only `import` and `demo` may create a database.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context as _;
use sessdb::{ManualClock, Store};
use time::OffsetDateTime;

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

/// Opens the database at `path`, evaluating expiry as of `as_of` when given.
///
/// # Errors
/// The store's open errors ([`sessdb::Error::Locked`], `Missing`, `NotADirectory`,
/// `NewerFormat`, ...), or an error when `path` is a folder that holds something other than
/// a sessdb database.
pub fn open(path: &Path, as_of: Option<OffsetDateTime>, access: Access) -> anyhow::Result<Store> {
    open_with_clock(path, as_of.map(ManualClock::at), access)
}

/// Like [`open`], with a clock the caller moves (the demo builds its history with one).
///
/// # Errors
/// As for [`open`].
pub fn open_with_clock(
    path: &Path,
    clock: Option<ManualClock>,
    access: Access,
) -> anyhow::Result<Store> {
    refuse_foreign_folder(path, access)?;
    let mut builder = Store::builder()
        .read_only(access == Access::Read)
        .create(access == Access::Create);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.open(path).map_err(|e| match e {
        // These already name the path and say what is wrong.
        sessdb::Error::Locked { .. }
        | sessdb::Error::Missing { .. }
        | sessdb::Error::NotADirectory { .. }
        | sessdb::Error::NewerFormat { .. }
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
