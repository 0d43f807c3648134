//! `sessctl import`: restore sessions from an export. Every line is validated first; a file
//! with bad lines writes nothing unless `--skip-bad` says to import the good ones.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;

use anyhow::Context as _;
use sessdb::{ImportOptions, ImportReport};

use super::{plural, Ctx};
use crate::db::{Access, Database};
use crate::exit::{Exit, Failure};
use crate::progress::{Progress, ReadProgress};

/// Where the export comes from.
#[derive(Debug)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

/// `import <FILE|-> [--dry-run] [--on-conflict skip|replace] [--skip-bad]`
#[derive(Debug)]
pub struct Import {
    /// The export to read.
    pub input: Input,
    /// Dry run, conflict policy, skipping bad lines.
    pub options: ImportOptions,
}

impl Import {
    /// Imports and prints the counts; every bad line goes to stderr as `line N: reason`.
    ///
    /// # Errors
    /// [`Failure::BadData`] when there were bad lines; open, read, storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        // The input first: a missing file must not leave a new, empty database behind.
        let (mut reader, progress): (Box<dyn BufRead>, Progress) = match &self.input {
            Input::Stdin => (
                Box::new(io::stdin().lock()),
                Progress::spinner(false, "", ""),
            ),
            Input::File(path) => {
                let file =
                    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                let progress = Progress::bar(ctx.progress, len, "importing", "bytes");
                let reader =
                    ReadProgress::new(BufReader::with_capacity(256 * 1024, file), progress.clone());
                (Box::new(reader), progress)
            }
        };
        let access = if self.options.dry_run {
            Access::Read
        } else {
            Access::Create
        };
        // Whether this run makes the database: only then may it remove the folder again. An
        // import through an admin socket goes to the application's own database, and a dry
        // run never creates one, whatever is (or is not) at --db.
        let existed = fs::symlink_metadata(ctx.db).is_ok();
        let db = ctx.open(access)?;
        let created = !existed && access == Access::Create && matches!(db, Database::Direct(_));
        let report = db.admin().import(&mut reader, &self.options)?;
        progress.finish();
        for bad in &report.bad {
            writeln!(ctx.err, "line {}: {}", bad.line, bad.reason)?;
        }
        if created && !report.bad.is_empty() && !report.written {
            // A rejected file leaves no trace, not even the empty database made for it. The
            // report above stands whether or not that works.
            drop(db);
            if let Err(e) = fs::remove_dir_all(ctx.db) {
                writeln!(
                    ctx.err,
                    "warning: cannot remove the empty database {} made for this import: {e}",
                    ctx.db.display()
                )?;
            }
        }
        writeln!(ctx.out, "{}", summary(&report, self.options.dry_run))?;
        if report.bad.is_empty() {
            return Ok(Exit::Success);
        }
        let bad = plural(report.bad.len() as u64, "bad line");
        Err(
            Failure::BadData(if self.options.skip_bad || self.options.dry_run {
                bad
            } else {
                format!(
                    "{bad}, so nothing was imported (fix them, or pass --skip-bad to import the \
                 good lines)"
                )
            })
            .into(),
        )
    }
}

fn summary(r: &ImportReport, dry_run: bool) -> String {
    let counts = format!(
        "imported {}, replaced {}, unchanged {}, skipped {}, bad {}",
        r.imported,
        r.replaced,
        r.unchanged,
        r.skipped,
        r.bad.len()
    );
    if dry_run {
        format!("dry run, nothing written; would have {counts}")
    } else {
        counts
    }
}
