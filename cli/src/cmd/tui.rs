//! `sessctl tui`: the terminal UI (the `sessdb-tui` crate) on the database at `--db`.

use std::time::Duration;

use super::Ctx;
use crate::db::Access;
use crate::exit::{Exit, Failure};

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
        // Read-write: the TUI can invalidate sessions. A missing database is not created.
        let db = ctx.open(Access::Write)?;
        let options = sessdb_tui::Options {
            title: db.title(ctx.db),
            refresh: self.refresh,
            no_color: ctx.no_color,
        };
        sessdb_tui::run(db.admin(), options)?;
        Ok(Exit::Success)
    }
}
