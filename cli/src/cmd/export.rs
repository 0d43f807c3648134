//! `sessctl export`: every session as JSON Lines, to stdout or to `--out`. A file is created
//! owner-only and only appears, complete, when the export succeeded; a named pipe or a
//! character device (`/dev/stdout`) is written as it is, never replaced.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sessdb::{Admin, ExportReport};

use super::{plural, Ctx};
use crate::exit::{is_broken_pipe, Exit, Failure};
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
    /// Open, storage and write errors; [`Failure::Usage`] when `--out` names something an
    /// export cannot go to; [`Failure::BadData`] when undecodable records had to be left out.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        // Before the export, which would otherwise be written whole and then fail to be
        // renamed over a folder.
        let destination = self.out.as_deref().map(Destination::of).transpose()?;
        // A named pipe is opened first: the open waits for its reader, and the database, held
        // meanwhile, would keep its application from starting.
        let stream = match &destination {
            Some(Destination::Stream(path)) => Some(open_stream(path)?),
            _ => None,
        };
        let db = ctx.open_for_export()?;
        if let Some(Destination::Replace { file, .. }) = &destination {
            refuse_inside_database(
                self.out.as_deref().unwrap_or(file),
                file,
                &[ctx.db, db.path(ctx.db)],
            )?;
        }
        let admin = db.admin();
        let progress = Progress::spinner(ctx.progress, "exporting", "sessions");
        let report = match (&destination, stream) {
            (Some(Destination::Replace { file, shown }), _) => {
                export_to_file(admin, file, shown, self.include_expired, &progress)?
            }
            (Some(Destination::Stream(path)), Some(mut file)) => export_counted(
                admin,
                &mut file,
                &path.display().to_string(),
                self.include_expired,
                &progress,
                &mut *ctx.err,
            )?,
            _ => export_counted(
                admin,
                &mut *ctx.out,
                "stdout",
                self.include_expired,
                &progress,
                &mut *ctx.err,
            )?,
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
        if !ctx.quiet {
            writeln!(ctx.err, "{line}")?;
        }
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

/// Where `--out` sends the export.
#[derive(Debug)]
enum Destination {
    /// A regular file, or nothing yet: written to a temporary file beside `file` and renamed
    /// over it. `file` is where the symbolic links at `--out`, if any, lead (a dangling link
    /// gets its target created, as a shell's `>` would), so the link stays a link;
    /// `shown` names it in errors.
    Replace { file: PathBuf, shown: String },
    /// A named pipe or a character device (`/dev/stdout`, `/dev/null`, a FIFO that a backup
    /// job reads): written as it is. A file renamed over it would replace it, and its reader
    /// would get nothing.
    Stream(PathBuf),
}

/// Symbolic links followed before giving up, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

impl Destination {
    /// Decides how to write to `path`.
    ///
    /// # Errors
    /// [`Failure::Usage`] for a folder, a socket, a block device, and a link another user
    /// planted in a shared folder; an error naming `path` when it cannot be looked at.
    fn of(path: &Path) -> anyhow::Result<Destination> {
        let cannot = || format!("cannot write {}", path.display());
        if path.as_os_str().as_bytes().ends_with(b"/") {
            let is_dir = fs::metadata(path).is_ok_and(|m| m.is_dir());
            return Err(refuse(
                path,
                if is_dir {
                    "is a directory"
                } else {
                    "ends with /, which names a directory"
                },
            ));
        }
        // Each link on the way is checked, whatever it leads to.
        let file = follow_links(path)?;
        let kind = match fs::metadata(path) {
            Ok(m) => m.file_type(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Destination::replace(path, file))
            }
            Err(e) => return Err(e).with_context(cannot),
        };
        if kind.is_dir() {
            Err(refuse(path, "is a directory"))
        } else if kind.is_file() {
            Ok(Destination::replace(path, file))
        } else if kind.is_fifo() || kind.is_char_device() {
            Ok(Destination::Stream(path.to_path_buf()))
        } else {
            // A block device is a disk: an export written over its first bytes would destroy
            // what is on it.
            let what = if kind.is_block_device() {
                "a block device"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "neither a file nor a named pipe"
            };
            Err(Failure::Usage(format!(
                "--out {} is {what}; sessctl writes exports to files, named pipes and \
                 character devices only",
                path.display()
            ))
            .into())
        }
    }

    fn replace(path: &Path, file: PathBuf) -> Destination {
        let shown = if file == path {
            path.display().to_string()
        } else {
            format!("{} (a symbolic link to {})", path.display(), file.display())
        };
        Destination::Replace { file, shown }
    }
}

/// Refuses an export file in a database's folder (or below it): renamed over sled's `db` or
/// `conf` it would destroy the database, and anything else put there stops `sessctl compact`.
/// `file` is where `--out` (`out`) leads, links followed; `databases` the database folder as
/// `--db` names it and as the application serving it does (the same folder, most often). A
/// folder that cannot be resolved is no database folder of this machine's: nothing to refuse.
fn refuse_inside_database(out: &Path, file: &Path, databases: &[&Path]) -> Result<(), Failure> {
    let folder = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(folder) = fs::canonicalize(folder) else {
        return Ok(());
    };
    for db in databases {
        if let Ok(db) = fs::canonicalize(db) {
            if folder.starts_with(&db) {
                return Err(Failure::Usage(format!(
                    "--out {} is inside the database folder {}: an export written there could \
                     replace the database's own files, and would stop `sessctl compact`; write it \
                     outside that folder",
                    out.display(),
                    db.display()
                )));
            }
        }
    }
    Ok(())
}

fn refuse(path: &Path, what: &str) -> anyhow::Error {
    Failure::Usage(format!(
        "--out {} {what}; give the name of the file to write",
        path.display()
    ))
    .into()
}

/// Where the symbolic links at `path` lead, one link at a time, so that a dangling link
/// yields the path its target will have. A path that is not a link is returned as it is.
fn follow_links(path: &Path) -> anyhow::Result<PathBuf> {
    let mut at = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => m,
            // Not a link, or nothing there (yet): this is where the export goes.
            Ok(_) => return Ok(at),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
        };
        refuse_planted_link(path, &at, &meta)?;
        let target = fs::read_link(&at)
            .with_context(|| format!("cannot read the symbolic link {}", at.display()))?;
        // Relative to the link's folder; an absolute target replaces the whole path.
        at = match at.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    Err(anyhow::anyhow!(
        "cannot write {}: more than {MAX_LINKS} symbolic links in a row",
        path.display()
    ))
}

/// Refuses to follow a link that another user owns in a shared folder (world-writable and
/// sticky, such as /tmp), unless that user owns the folder too: the rule of the kernel's
/// `protected_symlinks`, which sessctl's own reading of the link would otherwise bypass. A
/// link planted there could make an operator's export (as root, say) replace any file.
fn refuse_planted_link(out: &Path, link: &Path, meta: &Metadata) -> Result<(), Failure> {
    let dir = match link.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(folder) = fs::metadata(dir) else {
        return Ok(());
    };
    let shared = folder.mode() & 0o1002 == 0o1002;
    let owner = meta.uid();
    if shared && owner != nix::unistd::geteuid().as_raw() && owner != folder.uid() {
        return Err(Failure::Usage(format!(
            "--out {}: the symbolic link {} belongs to another user (uid {owner}) in the shared \
                 folder {}; sessctl does not follow it, as the kernel would not (protected_symlinks): \
                 give the path of the file itself",
            out.display(),
            link.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Writes the export to `out`, stdout or a named pipe, named `shown`. A reader that goes away
/// before the end (`| head`, `| dd count=3`, a backup job that died) still ends sessctl with
/// exit 0, but what it got looks like a whole export, and imports as one: a warning on `err`
/// says it is not, and how many sessions it holds at most.
fn export_counted(
    admin: &dyn Admin,
    out: &mut dyn Write,
    shown: &str,
    include_expired: bool,
    progress: &Progress,
    err: &mut dyn Write,
) -> anyhow::Result<ExportReport> {
    let mut delivered = Delivered {
        inner: out,
        lines: 0,
        slowest: Duration::ZERO,
        head: Vec::new(),
    };
    // Buffered above the count, so that `out` is flushed once a buffer, not once a line.
    let result = {
        let buffered = BufWriter::with_capacity(64 * 1024, &mut delivered);
        admin.export(
            &mut LineProgress::new(buffered, progress.clone()),
            include_expired,
        )
    };
    let (lines, slowest, head) = (delivered.lines, delivered.slowest, delivered.head);
    result.map_err(|e| {
        let e = anyhow::Error::new(e);
        if is_broken_pipe(&e) {
            progress.finish();
            // The first line is the header. The export's own error decides the exit code,
            // not a failure to say this.
            let _ = writeln!(
                err,
                "warning: the reader of {shown} went away before the export ended: what it \
                 read is not a whole export but at most its first {}, {}",
                plural(lines.saturating_sub(1), "session"),
                cut_consequence(&head)
            );
        } else if lines > 0 {
            progress.finish();
            // An application drops a client that reads nothing of a frame for 60 s: the reader
            // of a pipe that stalls that long (a backup's slow link) ends the export. Said only
            // when a write here waited that long, not of an application that stopped.
            let stalled = slowest >= STALLED
                && matches!(
                    e.downcast_ref::<sessdb::Error>(),
                    Some(sessdb::Error::Disconnected { .. })
                );
            let _ = writeln!(
                err,
                "warning: the export to {shown} stopped part way: what was written is not a \
                 whole export but at most its first {}, {}{}",
                plural(lines.saturating_sub(1), "session"),
                cut_consequence(&head),
                if stalled {
                    format!(
                        " (its reader took nothing for {} s at a time, and an application \
                         closes an admin connection that takes nothing for 60 s)",
                        slowest.as_secs()
                    )
                } else {
                    String::new()
                }
            );
        }
        e
    })
}

/// How long one write of the output must wait for its reader to count as a stall that made
/// the application drop the connection (it drops one that takes nothing for 60 s).
const STALLED: Duration = Duration::from_secs(30);

/// A writer that counts the whole lines `inner` took, flushing it after each write so that
/// what is counted has left this process, and the longest a write waited for the reader.
struct Delivered<'a> {
    inner: &'a mut dyn Write,
    lines: u64,
    slowest: Duration,
    /// The start of what was delivered, up to [`HEAD_BYTES`]: the header, whose version says
    /// what an import makes of the export cut short.
    head: Vec<u8>,
}

/// Enough for an export's header line (about 120 bytes).
const HEAD_BYTES: usize = 1024;

impl Write for Delivered<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let started = Instant::now();
        let n = self.inner.write(buf)?;
        self.inner.flush()?;
        self.slowest = self.slowest.max(started.elapsed());
        self.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What an import makes of an export cut short, by the version its header (the first line of
/// `head`) gives: from version 2 on, the missing end line has it refused; an older
/// application's export (version 1, through its admin socket) has no end line, so nothing in
/// it says it was cut short.
fn cut_consequence(head: &[u8]) -> &'static str {
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let version = serde_json::from_slice::<serde_json::Value>(first)
        .ok()
        .and_then(|h| h.get("version").and_then(serde_json::Value::as_u64));
    match version {
        Some(1) => {
            "and nothing in it marks it as cut short (the application writes export version 1, \
             which has no end line): an import would restore only those, without a word"
        }
        _ => {
            "without the end line: an import refuses it as cut short (with --skip-bad, it \
             restores only those)"
        }
    }
}

/// Opens a named pipe or character device to be written as it is: no temporary file, no
/// rename, no `fsync` (which pipes refuse). A pipe with no reader yet is waited for, as a
/// shell's `>` waits.
fn open_stream(path: &Path) -> anyhow::Result<File> {
    let cannot = || format!("cannot write {}", path.display());
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(cannot)?;
    // It was checked before: if a file took its place meanwhile, it is not ours to overwrite
    // in place.
    let kind = file.metadata().with_context(cannot)?.file_type();
    if !(kind.is_fifo() || kind.is_char_device()) {
        return Err(anyhow::anyhow!(
            "cannot write {}: it was replaced while sessctl opened it",
            path.display()
        ));
    }
    Ok(file)
}

/// Writes to a temporary file (mode 0600) next to `path`, then renames it over `path`: a
/// failed export never leaves a partial file, and a replaced file never keeps a looser mode.
fn export_to_file(
    admin: &dyn Admin,
    path: &Path,
    shown: &str,
    include_expired: bool,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let name = path
        .file_name()
        .ok_or_else(|| Failure::Usage(format!("--out {shown} is not a file name")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".sessctl-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    // Unnamed until it is complete, where the file system allows it: an export killed midway
    // (SIGKILL, ^C, a full disk) then leaves no file of session data behind.
    let (file, named) = match unnamed_in(dir) {
        Some(file) => (file, false),
        None => {
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp);
            let file = match opened {
                // Not the file, which may be writable: an export goes into a new file beside it
                // first.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot write {shown}: the export is written into a new file in {} \
                             and renamed over it once complete, and that folder takes no new \
                             file",
                            dir.display()
                        )
                    })
                }
                opened => opened.with_context(|| format!("cannot write {shown}"))?,
            };
            (file, true)
        }
    };
    let result = write_and_rename(
        admin,
        file,
        named,
        &tmp,
        path,
        shown,
        include_expired,
        progress,
    );
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A file in `dir` with no name yet (`O_TMPFILE`), owner-only; `None` where the file system
/// or the kernel has no such files.
fn unnamed_in(dir: &Path) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_TMPFILE)
        .open(dir)
        .ok()
}

/// Writes the export into `file` and puts it at `path`: `file` is at `tmp` if `named`, else
/// unnamed, and then first linked there once complete.
#[allow(clippy::too_many_arguments)]
fn write_and_rename(
    admin: &dyn Admin,
    file: File,
    named: bool,
    tmp: &Path,
    path: &Path,
    shown: &str,
    include_expired: bool,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let cannot = || format!("cannot write {shown}");
    let mut w = LineProgress::new(BufWriter::new(file), progress.clone());
    let report = admin.export(&mut w, include_expired)?;
    let file = w
        .into_inner()
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(cannot)?;
    file.sync_all().with_context(cannot)?;
    publish(&file, named, tmp, path).with_context(cannot)?;
    Ok(report)
}

/// Puts the complete, synced `file` at `path`: renamed from `tmp` if it is `named` there,
/// else linked at `tmp` first; then syncs the folder, without which the rename may not
/// survive a crash.
fn publish(file: &File, named: bool, tmp: &Path, path: &Path) -> std::io::Result<()> {
    if !named {
        use std::os::fd::AsRawFd as _;
        let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
        nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            fd.as_str(),
            nix::fcntl::AT_FDCWD,
            tmp,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )?;
    }
    fs::rename(tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export is written into a file with no name, so a process killed while writing it
    /// leaves nothing behind (before, `.NAME.sessctl-PID.tmp` files of session data piled up);
    /// it gets its name, then the final one, only once complete.
    #[test]
    fn an_export_has_no_name_until_it_is_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = || {
            let mut n: Vec<_> = fs::read_dir(dir.path())
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            n.sort();
            n
        };
        let Some(mut file) = unnamed_in(dir.path()) else {
            // An older overlayfs, say: exports use a named temporary file there, as the
            // export tests through the binary check.
            eprintln!("no unnamed files (O_TMPFILE) on this file system: nothing to test");
            return;
        };
        file.write_all(b"line\n").expect("write");
        file.sync_all().expect("sync");
        assert!(names().is_empty(), "{:?}", names());
        let (tmp, out) = (dir.path().join(".out.tmp"), dir.path().join("out.jsonl"));
        publish(&file, false, &tmp, &out).expect("publish");
        assert_eq!(names(), ["out.jsonl"]);
        assert_eq!(fs::read(&out).expect("read"), b"line\n");
        assert_eq!(fs::metadata(&out).expect("metadata").mode() & 0o777, 0o600);
    }

    /// An application that writes export version 1 (an older build, through its admin socket)
    /// sends no end line, so its export cut short imports without a word: the warning says so,
    /// rather than promise the refusal a version 2 export gets.
    #[test]
    fn a_cut_export_is_warned_of_by_what_its_version_makes_of_it() {
        struct App(u32);
        impl Admin for App {
            fn export(
                &self,
                out: &mut dyn Write,
                _include_expired: bool,
            ) -> sessdb::Result<ExportReport> {
                let header = format!(
                    "{{\"format\":\"sessdb-export\",\"version\":{},\"exported_at\":\
                     \"2026-12-06T12:00:00Z\"}}\n",
                    self.0
                );
                out.write_all(header.as_bytes())
                    .and_then(|()| out.write_all(b"{\"id\":\"one\"}\n{\"id\":\"two\"}\n"))
                    .and_then(|()| out.flush())
                    .map_err(|e| sessdb::Error::Io {
                        path: "out".into(),
                        source: e,
                    })?;
                Err(sessdb::Error::Disconnected {
                    path: "/srv/app/admin.sock".into(),
                })
            }
            fn stats(&self) -> sessdb::Result<sessdb::Stats> {
                unreachable!("an export asks for nothing else")
            }
            fn list(&self, _: &sessdb::ListQuery) -> sessdb::Result<sessdb::Page> {
                unreachable!("an export asks for nothing else")
            }
            fn show(&self, _: &sessdb::Target) -> sessdb::Result<Option<sessdb::SessionInfo>> {
                unreachable!("an export asks for nothing else")
            }
            fn invalidate(&self, _: &sessdb::Target) -> sessdb::Result<bool> {
                unreachable!("an export asks for nothing else")
            }
            fn invalidate_principal(&self, _: &str) -> sessdb::Result<usize> {
                unreachable!("an export asks for nothing else")
            }
            fn purge(&self, _: &mut dyn FnMut(u64)) -> sessdb::Result<u64> {
                unreachable!("an export asks for nothing else")
            }
            fn count_expired(&self) -> sessdb::Result<u64> {
                unreachable!("an export asks for nothing else")
            }
            fn import(
                &self,
                _: &mut dyn std::io::BufRead,
                _: &sessdb::ImportOptions,
            ) -> sessdb::Result<sessdb::ImportReport> {
                unreachable!("an export asks for nothing else")
            }
            fn check(&self) -> sessdb::Result<sessdb::CheckReport> {
                unreachable!("an export asks for nothing else")
            }
            fn repair(&self) -> sessdb::Result<sessdb::RepairReport> {
                unreachable!("an export asks for nothing else")
            }
            fn now(&self) -> time::OffsetDateTime {
                unreachable!("an export asks for nothing else")
            }
        }
        let warning = |version| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let progress = Progress::spinner(false, "", "");
            let result = export_counted(
                &App(version),
                &mut out,
                "stdout",
                false,
                &progress,
                &mut err,
            );
            assert!(result.is_err(), "the application went away");
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 3);
            String::from_utf8(err).expect("utf-8")
        };
        let old = warning(1);
        assert!(
            old.contains("at most its first 2 sessions, and nothing in it marks it as cut short"),
            "{old}"
        );
        assert!(!old.contains("refuses"), "{old}");
        let new = warning(2);
        assert!(
            new.contains("at most its first 2 sessions, without the end line: an import refuses"),
            "{new}"
        );
    }
}
