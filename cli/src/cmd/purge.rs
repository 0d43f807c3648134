//! `sessctl purge --expired`: remove expired sessions (the cron job).

use super::{plural, Ctx};
use crate::db::Access;
use crate::exit::Exit;
use crate::progress::Progress;

/// `purge --expired [--dry-run]`
#[derive(Debug)]
pub struct Purge {
    /// Only count.
    pub dry_run: bool,
}

impl Purge {
    /// Removes (or counts) the expired sessions and says how many.
    ///
    /// # Errors
    /// Open, storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        if self.dry_run {
            let db = ctx.open(Access::Read)?;
            let n = db.admin().count_expired()?;
            writeln!(
                ctx.out,
                "would remove {} (dry run, nothing removed)",
                plural(n, "expired session")
            )?;
            return Ok(Exit::Success);
        }
        let db = ctx.open(Access::Write)?;
        let admin = db.admin();
        let progress = if ctx.progress {
            Progress::bar(true, admin.count_expired()?, "purging", " sessions")
        } else {
            Progress::bar(false, 0, "", "")
        };
        let n = admin.purge(&mut |done| progress.set(done))?;
        progress.finish();
        writeln!(ctx.out, "removed {}", plural(n, "expired session"))?;
        Ok(Exit::Success)
    }
}
