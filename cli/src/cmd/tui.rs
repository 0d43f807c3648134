//! `sessctl tui`: the terminal UI (the `sessdb-tui` crate) on the database at `--db`.

use std::sync::Arc;
use std::time::Duration;

use sessdb::RemoteAdmin;

use super::Ctx;
use crate::db::{Access, Database};
use crate::exit::{Exit, Failure};
use crate::output::timestamp;

/// `tui [--refresh SECS]`
#[derive(Debug)]
pub struct Tui {
    /// The auto-refresh interval.
    pub refresh: Duration,
    /// Whether stdout is a terminal.
    pub terminal: bool,
}

impl Tui {
    /// Runs the TUI until the operator quits.
    ///
    /// # Errors
    /// [`Failure::Usage`] when stdout is not a terminal; open errors; terminal I/O errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        if !self.terminal {
            return Err(Failure::Usage(
                "sessctl tui needs a terminal, and stdout is not one (for scripts, use list, \
                 show and invalidate)"
                    .into(),
            )
            .into());
        }
        // Read-write: the TUI can invalidate sessions. A missing database is not created. As
        // of a future time it only shows what would be: read-only, its write keys refused.
        let future = ctx.future_as_of();
        let db = ctx.open(if future.is_some() {
            Access::Read
        } else {
            Access::Write
        })?;
        let options = sessdb_tui::Options {
            title: db.title(ctx.db),
            refresh: self.refresh,
            no_color: ctx.no_color,
            read_only: future.map(|t| {
                format!(
                    "Read-only: --as-of {} is later than now, and nothing is written as of a \
                     future time",
                    timestamp(t)
                )
            }),
            as_of: ctx.as_of,
            // Watched, so that a folder deleted under the TUI is said, not written into.
            folder: match &db {
                Database::Direct(store) => Some(store.path().to_path_buf()),
                Database::Remote(_) => None,
            },
        };
        match &db {
            // The header's counts, the count of expired sessions and the purge read every
            // record: on a connection of their own, so that keys never queue behind them. If a
            // second one is refused, they share.
            Database::Remote(remote) => {
                match RemoteAdmin::connect_with_timeout(remote.socket_path(), remote.timeout()) {
                    Ok(worker) => {
                        sessdb_tui::run_with_worker(db.admin(), Arc::new(worker), options)?
                    }
                    Err(_) => sessdb_tui::run(db.admin(), options)?,
                }
            }
            Database::Direct(_) => sessdb_tui::run(db.admin(), options)?,
        }
        Ok(Exit::Success)
    }
}
