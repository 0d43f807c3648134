//! `sessctl check`: verify records and indexes; `--repair` rebuilds the indexes. Leftovers of
//! a crash (stale index entries) are reported but are not problems.

use sessdb::CheckReport;

use super::{plural, Ctx};
use crate::db::Access;
use crate::exit::{Exit, Failure};
use crate::output::{terminal_safe, Tone};
use crate::progress::Progress;

/// `check [--repair]`
#[derive(Debug)]
pub struct Check {
    /// Repair what the check finds.
    pub repair: bool,
}

impl Check {
    /// Prints the report (and what a repair changed).
    ///
    /// # Errors
    /// [`Failure::BadData`] when a problem remains; open, storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        let access = if self.repair {
            Access::Write
        } else {
            Access::Read
        };
        let db = ctx.open(access)?;
        let admin = db.admin();
        let progress = Progress::spinner(ctx.progress, "checking", "");
        let mut report = admin.check()?;
        progress.finish();
        print_report(ctx, &report)?;
        if self.repair && report.is_clean() {
            // Said, so that `--repair` is not taken for having done work it had no need of.
            writeln!(ctx.out, "repair: nothing to repair")?;
        }
        if self.repair && !report.is_clean() {
            let progress = Progress::spinner(ctx.progress, "repairing", "");
            let repaired = admin.repair()?;
            progress.finish();
            for u in &repaired.removed_records {
                writeln!(
                    ctx.out,
                    "repair: removed undecodable record {} ({})",
                    u.handle,
                    terminal_safe(&u.reason)
                )?;
            }
            writeln!(
                ctx.out,
                "repair: added {}, removed {}",
                plural(repaired.added_entries, "index entry"),
                plural(repaired.removed_entries, "stale index entry")
            )?;
            report = admin.check()?;
            write!(ctx.out, "after repair: ")?;
            print_report(ctx, &report)?;
        }
        if report.has_problems() {
            let hint = if self.repair {
                ""
            } else {
                " (`sessctl check --repair` rebuilds the indexes and removes undecodable records)"
            };
            return Err(Failure::BadData(format!(
                "the check found {}{hint}",
                plural(problems(&report), "problem")
            ))
            .into());
        }
        Ok(Exit::Success)
    }
}

fn problems(r: &CheckReport) -> u64 {
    (r.undecodable.len() + r.missing_expiry.len() + r.missing_principal.len()) as u64
}

fn print_report(ctx: &mut Ctx<'_>, r: &CheckReport) -> anyhow::Result<()> {
    let n = problems(r);
    let verdict = if n == 0 {
        "no problems".to_string()
    } else {
        plural(n, "problem")
    };
    writeln!(
        ctx.out,
        "checked {}: {verdict}",
        plural(r.records, "record")
    )?;
    let bad = |text: String| ctx.style.paint(Tone::Bad, &text);
    for u in &r.undecodable {
        let line = bad(format!(
            "  problem: record {} cannot be decoded: {}",
            u.handle,
            terminal_safe(&u.reason)
        ));
        writeln!(ctx.out, "{line}")?;
    }
    for h in &r.missing_expiry {
        let line = bad(format!("  problem: session {h} has no expiry index entry"));
        writeln!(ctx.out, "{line}")?;
    }
    for h in &r.missing_principal {
        let line = bad(format!(
            "  problem: session {h} has no principal index entry"
        ));
        writeln!(ctx.out, "{line}")?;
    }
    if r.stale_expiry > 0 || r.stale_principal > 0 {
        writeln!(
            ctx.out,
            "  leftovers: {} and {} (harmless: a crash can leave them, readers ignore them, \
             purge and --repair remove them)",
            plural(r.stale_expiry, "stale expiry entry"),
            plural(r.stale_principal, "stale principal entry")
        )?;
    }
    Ok(())
}
