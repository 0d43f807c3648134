//! `sessctl export`: every session as JSON Lines, to stdout or to a file that is created
//! owner-only and only appears, complete, when the export succeeded.

use std::fs::{self, File, OpenOptions};
use std::io::BufWriter;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sessdb::{Admin, ExportReport};

use super::{plural, Ctx};
use crate::db::Access;
use crate::exit::{Exit, Failure};
use crate::progress::{LineProgress, Progress};

/// `export [--out FILE] [--include-expired]`
#[derive(Debug)]
pub struct Export {
    /// The file to write; `None` for stdout.
    pub out: Option<PathBuf>,
    /// Include expired sessions not yet purged.
    pub include_expired: bool,
}

impl Export {
    /// Writes the export and says what it holds on stderr.
    ///
    /// # Errors
    /// Open, storage and write errors; [`Failure::BadData`] when undecodable records had to be
    /// left out.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        if let Some(path) = &self.out {
            // Before the export, which would otherwise be written whole and then fail to be
            // renamed over a folder.
            refuse_directory(path)?;
        }
        let db = ctx.open(Access::Read)?;
        let admin = db.admin();
        let progress = Progress::spinner(ctx.progress, "exporting", "sessions");
        let report = match &self.out {
            None => {
                let mut w = LineProgress::new(&mut *ctx.out, progress.clone());
                admin.export(&mut w, self.include_expired)?
            }
            Some(path) => export_to_file(admin, path, self.include_expired, &progress)?,
        };
        progress.finish();
        let target = self
            .out
            .as_ref()
            .map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
        let mut line = format!(
            "exported {} to {target}",
            plural(report.exported, "session")
        );
        if report.skipped_expired > 0 {
            line.push_str(&format!(
                "; left out {} (--include-expired includes them)",
                plural(report.skipped_expired, "expired session")
            ));
        }
        writeln!(ctx.err, "{line}")?;
        if report.undecodable > 0 {
            return Err(Failure::BadData(format!(
                "left out {} that cannot be decoded (see `sessctl check`)",
                plural(report.undecodable, "record")
            ))
            .into());
        }
        Ok(Exit::Success)
    }
}

/// `--out` must name a file: not an existing folder, nor a path that ends with `/`.
fn refuse_directory(path: &Path) -> Result<(), Failure> {
    let is_dir = fs::metadata(path).is_ok_and(|m| m.is_dir());
    if is_dir || path.as_os_str().as_bytes().ends_with(b"/") {
        let what = if is_dir {
            "is a directory"
        } else {
            "ends with /, which names a directory"
        };
        return Err(Failure::Usage(format!(
            "--out {} {what}; give the name of the file to write",
            path.display()
        )));
    }
    Ok(())
}

/// Writes to a temporary file (mode 0600) next to `path`, then renames it over `path`: a
/// failed export never leaves a partial file, and a replaced file never keeps a looser mode.
fn export_to_file(
    admin: &dyn Admin,
    path: &Path,
    include_expired: bool,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let name = path
        .file_name()
        .ok_or_else(|| Failure::Usage(format!("--out {} is not a file name", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".sessctl-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let result = write_and_rename(admin, file, &tmp, path, include_expired, progress);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_and_rename(
    admin: &dyn Admin,
    file: File,
    tmp: &Path,
    path: &Path,
    include_expired: bool,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let mut w = LineProgress::new(BufWriter::new(file), progress.clone());
    let report = admin.export(&mut w, include_expired)?;
    let file = w
        .into_inner()
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(report)
}
