//! `sessctl import`: restore sessions from an export. Every line is validated first; a file
//! with bad lines writes nothing unless `--skip-bad` says to import the good ones.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsFd as _;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sessdb::{ImportOptions, ImportReport, OnConflict, EXPORT_FORMAT, EXPORT_VERSION};

use super::fresh::{holds_no_session, is_empty_dir, remove_database, Fresh};
use super::{plural, Ctx};
use crate::db::{Access, Database};
use crate::exit::{Exit, Failure};
use crate::output::terminal_safe;
use crate::progress::{Progress, ReadProgress};
use crate::signals::set_on_signals;

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
    /// Whether the last run read its input to the end, so that all of it went to the store:
    /// an import through an admin socket ends with a frame sent only after the input's end,
    /// and the application writes nothing without it.
    read_to_end: Cell<bool>,
}

impl Import {
    /// An import of `input` with `options`.
    pub fn new(input: Input, options: ImportOptions) -> Self {
        Import {
            input,
            options,
            read_to_end: Cell::new(false),
        }
    }

    /// Imports and prints the counts; every bad line goes to stderr as `line N: reason`.
    ///
    /// # Errors
    /// [`Failure::BadData`] when there were bad lines; open, read, storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        let signals = Signals::new()?;
        self.run_with(ctx, &signals).map_err(|e| {
            if !stopped(&e) {
                return e;
            }
            Failure::Interrupted(format!(
                "import interrupted while reading {}: nothing was written{}",
                self.input.name(),
                if self.options.dry_run {
                    " (a dry run)"
                } else {
                    ""
                }
            ))
            .into()
        })
    }

    fn run_with(&self, ctx: &mut Ctx<'_>, signals: &Signals) -> anyhow::Result<Exit> {
        self.read_to_end.set(false);
        // The input first: a missing file or a folder must not leave a new, empty database
        // behind.
        let (reader, progress, stall_limit) = self.input.open(ctx.progress, signals)?;
        signals.install()?;
        let mut reader = FirstLine::new(reader);
        // What needs no input is refused before waiting for it.
        if !self.options.dry_run {
            ctx.refuse_future_write()?;
        }
        // The input's first bytes (or its end) before the database is opened: a producer slow
        // to start (`ssh host sessctl export | sessctl import -`) does not hold the database
        // meanwhile, which would keep its application from starting, as an export waits for a
        // pipe's reader before it opens the database.
        if let Err(source) = reader.fill_buf() {
            return Err(sessdb::Error::Io {
                path: self.input.name().into(),
                source,
            }
            .into());
        }
        let absent = match fs::symlink_metadata(ctx.db) {
            Err(_) => Some("no database at"),
            Ok(m) if m.is_dir() && is_empty_dir(ctx.db) => Some("an empty folder at"),
            Ok(_) => None,
        };
        if let (true, None, Some(absent)) = (self.options.dry_run, ctx.socket, absent) {
            // Nothing to compare with: the file is checked on its own, which is exactly what
            // the import would meet, since it would make a new, empty database.
            writeln!(
                ctx.err,
                "note: {absent} {}: checking the file on its own, as an import that creates \
                 the database would",
                ctx.db.display()
            )?;
            let at = ctx.as_of.unwrap_or_else(time::OffsetDateTime::now_utc);
            let report = sessdb::validate_export_as_of(&mut reader, &self.options, at)
                .map_err(|e| self.input.name_read_error(e))?;
            progress.finish();
            print_bad_lines(ctx.err, &report)?;
            return self.outcome(ctx, &report, reader.number());
        }
        let access = if self.options.dry_run {
            Access::Read
        } else {
            Access::Create
        };
        // Only what this run makes may be removed again: an import through an admin socket
        // goes to the application's own database, and a dry run creates nothing.
        let made = if access == Access::Create && ctx.socket.is_none() {
            Fresh::folders_for(ctx.db)
        } else {
            None
        };
        // A rejected file, or a failed import, leaves no trace, not even the empty database
        // made for it. The database goes only if this run opened it itself and found it
        // holding no session: another process may have made one in the same folder, and
        // written to it, between this run's look at the folder and its open (which waits for
        // sled's lock). It goes while this run still holds that lock: removed after the close,
        // it could already be another opener's. If the open failed, at most the folders this
        // run made, if still empty, are removed.
        let db = ctx.open(access);
        if let Ok(Database::Remote(_)) = &db {
            // The application gives up on input that stalls (60 s by default) and closes the
            // connection, which sessctl, waiting on the input, would not see: it gives up too.
            stall_limit.set(Some(INPUT_STALL_LIMIT));
        }
        let result = db.and_then(|db| {
            // Through a socket, the database belongs to the application: never ours to remove.
            let ours =
                made.is_some() && matches!(db, Database::Direct(_)) && holds_no_session(db.admin());
            let result = signals
                .database_opened()
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    db.admin()
                        .import(&mut reader, &self.options)
                        .map_err(|e| anyhow::Error::from(self.input.name_read_error(e)))
                });
            if ours && nothing_written(&result) {
                remove_new_database(ctx)?;
            }
            result
        });
        if let (Some(made), true) = (&made, nothing_written(&result)) {
            made.remove_folders();
        }
        progress.finish();
        self.read_to_end.set(reader.ended);
        // A restore to a mistyped --db must not look like one to the database meant: said
        // whenever the database this run made stays, an empty one or one an import that
        // stopped part way left (a rejected file's is removed).
        let kept = access == Access::Create && crate::db::looks_like_database(ctx.db);
        if let (Some(absent), None, true) = (absent, ctx.socket, kept) {
            writeln!(
                ctx.err,
                "note: {absent} {}: the import made a new database there",
                ctx.db.display()
            )?;
        }
        let report = result?;
        print_bad_lines(ctx.err, &report)?;
        self.outcome(ctx, &report, reader.number())
    }

    /// Advice for the error this import failed with, where the next step is not obvious:
    /// whether the import was written is unknown because the application closed the admin
    /// connection under it ([`sessdb::Error::Disconnected`]), or stopped answering
    /// ([`sessdb::Error::Unresponsive`]: stopped or hung; an application that was only stopped
    /// goes on when it runs again, and writes the import whole if it had received all of it),
    /// after the whole input was read and sent. Before that (at connect, or part way through
    /// the input) the application cannot have written any of it, and there is no advice to
    /// give. What a rerun does follows from `apply` in the store's `export.rs`: a session stored
    /// exactly as in the file is unchanged, one stored with other content is kept or
    /// overwritten by `--on-conflict`, whoever wrote it, and one not stored is imported, so a
    /// session the first run wrote and the application has ended since (a logout, an
    /// invalidation after a compromise) comes back.
    pub fn hint(&self, err: &anyhow::Error) -> Option<String> {
        if !self.read_to_end.get() {
            return None;
        }
        let outcome = match err.chain().find_map(|c| c.downcast_ref::<sessdb::Error>()) {
            Some(sessdb::Error::Disconnected { .. }) => {
                "the import may have been written, whole or in part; "
            }
            // Not sent (the application did not answer the connection): nothing to finish.
            Some(sessdb::Error::Unresponsive { sent: true, .. }) => {
                "the import may have been written, whole or in part, or may still be written \
                 whole if the application was only stopped; once it answers, "
            }
            _ => return None,
        };
        let input = match self.input {
            Input::Stdin => "input",
            Input::File(_) => "file",
        };
        let again = format!("running the same command again with the same {input}");
        if self.options.dry_run {
            return Some(format!("a dry run writes nothing, so {again} is safe"));
        }
        let changed = match self.options.on_conflict {
            OnConflict::Skip => "kept (--on-conflict skip)",
            OnConflict::Replace => "overwritten with the file's (--on-conflict replace)",
        };
        Some(format!(
            "{outcome}{again} finishes it, but also brings back any session the first run \
             wrote that the application has ended since (a logout, sessctl invalidate); \
             sessions the application changed since are {changed}"
        ))
    }

    /// Prints the counts, and fails when there were bad lines. `header` is the number of the
    /// input's first line that is not blank, the one read as the header.
    fn outcome(
        &self,
        ctx: &mut Ctx<'_>,
        report: &ImportReport,
        header: Option<u64>,
    ) -> anyhow::Result<Exit> {
        writeln!(ctx.out, "{}", summary(report, self.options.dry_run))?;
        if let Some(note) = expired_note(report, self.options.dry_run) {
            writeln!(ctx.err, "{note}")?;
        }
        if report.bad.is_empty() {
            return Ok(Exit::Success);
        }
        // A bad header ends the reading, so --skip-bad has nothing to import: say what the
        // file must start with instead. A header that is read is never reported as bad.
        let header_bad = match header {
            Some(n) => report.bad.iter().any(|b| b.line == n),
            None => true,
        };
        if header_bad {
            let nothing = if self.options.dry_run {
                "nothing would be imported"
            } else {
                "nothing was imported"
            };
            if let Some((version, reads)) = report.bad.first().and_then(|b| older_reader(&b.reason))
            {
                // An application built before this export version read the header, through
                // its admin socket: the file is good, the application older.
                return Err(Failure::BadData(format!(
                    "{} is an export of version {version}, and the sessdb that read it (the \
                     application behind the admin socket) reads exports up to version \
                     {reads}, so {nothing}: upgrade the application, or make a version \
                     {reads} export of the file (README, \"Upgrades\")",
                    self.input.name()
                ))
                .into());
            }
            return Err(Failure::BadData(format!(
                "{} does not start with a sessdb export header that this sessctl reads, so \
                 {nothing}: an export's first line is \
                 {{\"format\":\"{EXPORT_FORMAT}\",\"version\":{EXPORT_VERSION},\
                 \"exported_at\":\"<RFC 3339 time>\"}}, as `sessctl export` writes it",
                self.input.name()
            ))
            .into());
        }
        let bad = plural(report.bad_total(), "bad line");
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

/// The version of an export whose header its reader refused as newer, and the version that
/// reader reads up to, when it reads less than this sessctl does: an older sessdb, in the
/// application behind an admin socket (whose message is `export version N is newer than this
/// sessdb reads (M)`).
fn older_reader(reason: &str) -> Option<(u32, u32)> {
    let (version, reads) = reason
        .strip_prefix("export version ")?
        .split_once(" is newer than this sessdb reads (")?;
    let reads = reads.strip_suffix(')')?.parse::<u32>().ok()?;
    let version = version.parse::<u32>().ok()?;
    (reads < EXPORT_VERSION).then_some((version, reads))
}

impl Input {
    /// How error messages name the input.
    fn name(&self) -> String {
        match self {
            Input::Stdin => "stdin".into(),
            Input::File(path) => path.display().to_string(),
        }
    }

    /// Opens the input, with a progress bar for a file. Only what reads as a stream is
    /// accepted: a regular file, a pipe (`<(zcat backup.jsonl.gz)`) or a terminal. Reads wait
    /// for input as long as it takes until the limit the last value returned sets.
    fn open(
        &self,
        progress: bool,
        signals: &Signals,
    ) -> anyhow::Result<(Box<dyn BufRead>, Progress, StallLimit)> {
        let limit = StallLimit::default();
        let path = match self {
            Input::Stdin => {
                let stdin = io::stdin()
                    .as_fd()
                    .try_clone_to_owned()
                    .context("cannot read stdin")?;
                let reader = BufReader::with_capacity(
                    256 * 1024,
                    Stalls::new(File::from(stdin), limit.clone(), signals.clone()),
                );
                return Ok((Box::new(reader), Progress::spinner(false, "", ""), limit));
            }
            Input::File(path) => path,
        };
        let cannot_open = || format!("cannot open {}", path.display());
        let kind = fs::metadata(path).with_context(cannot_open)?.file_type();
        let what = if kind.is_dir() {
            Some("a directory")
        } else if kind.is_socket() {
            Some("a socket")
        } else if kind.is_block_device() {
            Some("a block device")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Failure::Usage(format!(
                "{} is {what}, not an export file",
                path.display()
            ))
            .into());
        }
        let file = File::open(path).with_context(cannot_open)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let progress = Progress::bar(progress, len, "importing", "bytes");
        let reader = ReadProgress::new(
            BufReader::with_capacity(
                256 * 1024,
                Stalls::new(file, limit.clone(), signals.clone()),
            ),
            progress.clone(),
        );
        Ok((Box::new(reader), progress, limit))
    }

    /// The store names a read error "import input" (on either transport); name the file.
    fn name_read_error(&self, e: sessdb::Error) -> sessdb::Error {
        match e {
            sessdb::Error::Io { path, source } if path == Path::new("import input") => {
                sessdb::Error::Io {
                    path: self.name().into(),
                    source,
                }
            }
            other => other,
        }
    }
}

/// How long input through an application's admin socket may give nothing before sessctl gives
/// up on it: an application's limit between an import's chunks, by default
/// ([`sessdb::Builder::admin_socket_idle_timeout`]).
const INPUT_STALL_LIMIT: Duration = Duration::from_secs(60);

/// How long a read of the input may wait for data (`None`: as long as it takes), set once the
/// input is read.
type StallLimit = Rc<Cell<Option<Duration>>>;

/// The input's file (stdin, a pipe, a file), whose reads fail with
/// [`io::ErrorKind::TimedOut`] when nothing comes within the limit, and with [`Stopped`] once
/// Ctrl-C or SIGTERM came. Before, an import through an admin socket whose input stalled
/// waited on it for ever: the application had abandoned the import and closed the connection
/// long before, which sessctl only learned when the input came again, or never (a hung
/// `ssh host sessctl export | sessctl import -` in a cron job).
struct Stalls {
    file: File,
    limit: StallLimit,
    signals: Signals,
}

impl Stalls {
    fn new(file: File, limit: StallLimit, signals: Signals) -> Self {
        Stalls {
            file,
            limit,
            signals,
        }
    }
}

impl Read for Stalls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            if self.signals.stopped() {
                return Err(io::Error::other(Stopped));
            }
            let input = PollFd::new(self.file.as_fd(), PollFlags::POLLIN);
            let mut fds = match &self.signals.wake {
                Some(wake) => vec![input, PollFd::new(wake.0.as_fd(), PollFlags::POLLIN)],
                None => vec![input],
            };
            let timeout = self.limit.get().map_or(PollTimeout::NONE, |limit| {
                PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX)
            });
            // Readable, at its end (POLLHUP) or failed (POLLERR): the read says which. A
            // signal, on whichever thread it is handled, makes the wake-up readable (and the
            // stop is set before); a wait it interrupts looks at the stop again.
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    let limit = self.limit.get().unwrap_or_default();
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "it gave nothing for {} s, and an application gives up on an \
                             import whose input stalls that long: nothing was written; import \
                             again once the input flows, or from a file",
                            limit.as_secs()
                        ),
                    ));
                }
                Ok(_) if fds.get(1).is_some_and(|w| w.any().unwrap_or(false)) => {
                    return Err(io::Error::other(Stopped));
                }
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.signals.input_ended()?;
        }
        Ok(n)
    }
}

/// What a read of the input fails with once Ctrl-C or SIGTERM came: the import stops before it
/// writes anything.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by a signal")
    }
}

impl std::error::Error for Stopped {}

/// Ctrl-C and SIGTERM during an import. Until the database is open and the input read to its
/// end (the long part of a large import, and all of one whose producer is slow) the first
/// signal stops the import, which then writes nothing: a database it made is removed, as for a
/// rejected file. After that the import writes, and a signal ends the process at once, as it
/// did before (the sessions written so far stay, and running the import again finishes it;
/// through an admin socket the application writes the whole import anyway). A second signal
/// always ends the process at once, leaving what there is.
#[derive(Debug, Clone, Default)]
struct Signals {
    /// Set by the first signal.
    stop: Arc<AtomicBool>,
    /// Set once the database is open and the input's end read: a signal then ends the process.
    writing: Arc<AtomicBool>,
    /// The input's end was read.
    ended: Arc<AtomicBool>,
    /// The database (or the application's socket) is open.
    opened: Arc<AtomicBool>,
    /// Readable once a signal came (the first of the two ends; the handler writes to the
    /// second). The signal may be handled on any of the process's threads (sled's among them),
    /// where it would not interrupt the input's wait.
    wake: Option<Arc<(UnixStream, UnixStream)>>,
}

impl Signals {
    /// Flags and a wake-up for an import; no signal is handled until [`Signals::install`].
    fn new() -> anyhow::Result<Signals> {
        let pair = UnixStream::pair().context("cannot handle SIGINT and SIGTERM")?;
        Ok(Signals {
            wake: Some(Arc::new(pair)),
            ..Signals::default()
        })
    }

    /// Handles SIGINT and SIGTERM as said above, for the rest of the process. Called once the
    /// input is open: opening a named pipe waits for its writer, and a signal then ends the
    /// process as it always did, nothing having been made yet.
    fn install(&self) -> anyhow::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let cannot = "cannot handle SIGINT and SIGTERM";
        let code = i32::from(Exit::Interrupted.code());
        // In this order: the stop is set before the wake-up is written.
        set_on_signals(&self.stop, code)?;
        for signal in [SIGINT, SIGTERM] {
            if let Some(wake) = &self.wake {
                let woken = wake.1.try_clone().context(cannot)?;
                signal_hook::low_level::pipe::register(signal, woken).context(cannot)?;
            }
            flag::register_conditional_shutdown(signal, code, Arc::clone(&self.writing))
                .context(cannot)?;
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// From here a signal ends the process, once both the database is open and the input's end
    /// read; a signal that came before fails this with [`Stopped`]. (The stop is looked at after
    /// `writing` is set: a signal between them finds it set and ends the process.)
    fn begin_writing(&self) -> io::Result<()> {
        if self.ended.load(Ordering::SeqCst) && self.opened.load(Ordering::SeqCst) {
            self.writing.store(true, Ordering::SeqCst);
        }
        if self.stopped() {
            return Err(io::Error::other(Stopped));
        }
        Ok(())
    }

    /// The input's end was read.
    fn input_ended(&self) -> io::Result<()> {
        self.ended.store(true, Ordering::SeqCst);
        self.begin_writing()
    }

    /// The database is open; a signal during the open, which it does not interrupt (a sled
    /// recovery, an application slow to answer), stops the import now.
    fn database_opened(&self) -> io::Result<()> {
        self.opened.store(true, Ordering::SeqCst);
        self.begin_writing()
    }
}

/// Whether `err` is a read of the input stopped by a signal.
fn stopped(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        let io = match c.downcast_ref::<sessdb::Error>() {
            Some(sessdb::Error::Io { source, .. }) => Some(source),
            _ => c.downcast_ref::<io::Error>(),
        };
        io.and_then(|e| e.get_ref())
            .is_some_and(|inner| inner.is::<Stopped>())
            || c.is::<Stopped>()
    })
}

/// Passes the input through and notes the number of its first line that is not blank: the
/// line the store reads as the export's header (it skips blank lines before it).
struct FirstLine<R> {
    inner: R,
    /// Newlines before the first byte that is not white space.
    newlines: u64,
    /// Whether that byte has been seen.
    found: bool,
    /// Whether `inner` said its input ended.
    ended: bool,
    /// How much of what `inner.fill_buf()` returns has been looked at.
    scanned: usize,
}

impl<R: BufRead> FirstLine<R> {
    fn new(inner: R) -> Self {
        FirstLine {
            inner,
            newlines: 0,
            found: false,
            ended: false,
            scanned: 0,
        }
    }

    /// The 1-based number of the first line that is not blank, once it has been read; `None`
    /// for an input of blank lines only.
    fn number(&self) -> Option<u64> {
        self.found.then_some(self.newlines + 1)
    }
}

impl<R: BufRead> Read for FirstLine<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for FirstLine<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let buf = self.inner.fill_buf()?;
        self.ended |= buf.is_empty();
        if !self.found {
            for &b in buf.get(self.scanned..).unwrap_or_default() {
                if b == b'\n' {
                    self.newlines += 1;
                } else if !b.is_ascii_whitespace() {
                    self.found = true;
                    break;
                }
            }
            self.scanned = buf.len();
        }
        Ok(buf)
    }

    fn consume(&mut self, amt: usize) {
        // What is left of the buffer comes back from the next fill_buf, already looked at.
        self.scanned = self.scanned.saturating_sub(amt);
        self.inner.consume(amt);
    }
}

/// Whether an import failed before it wrote anything, or wrote nothing from a file with bad
/// lines (a rejected file). One that stopped part way keeps what it wrote, as its error says:
/// running it again finishes it.
fn nothing_written(result: &anyhow::Result<ImportReport>) -> bool {
    match result {
        Ok(r) => !r.bad.is_empty() && !r.written,
        Err(e) => !e
            .chain()
            .filter_map(|c| c.downcast_ref::<sessdb::Error>())
            .any(|e| matches!(e, sessdb::Error::ImportStopped { .. })),
    }
}

/// Removes the database this run made (what is in its folder, not the folder), while it still
/// holds it open. Failing to is a warning: the error or report that led here is what the
/// operator needs to see.
fn remove_new_database(ctx: &mut Ctx<'_>) -> io::Result<()> {
    if let Err(e) = remove_database(ctx.db) {
        writeln!(
            ctx.err,
            "warning: cannot remove the new database {} made for this import: {e}",
            ctx.db.display()
        )?;
    }
    Ok(())
}

/// `line N: reason` for each bad line the report names, then how many more it only counted.
/// The reasons are escaped: through an admin socket the application writes them, and a reason
/// may quote the file's own text.
fn print_bad_lines(err: &mut dyn io::Write, report: &ImportReport) -> io::Result<()> {
    for bad in &report.bad {
        writeln!(err, "line {}: {}", bad.line, terminal_safe(&bad.reason))?;
    }
    let unnamed = report.bad_total() - report.bad.len() as u64;
    if unnamed > 0 {
        writeln!(
            err,
            "… and {} (only the first {} are named)",
            plural(unnamed, "more bad line"),
            report.bad.len()
        )?;
    }
    Ok(())
}

fn summary(r: &ImportReport, dry_run: bool) -> String {
    let counts = format!(
        "imported {}, replaced {}, unchanged {}, skipped {}, bad {}",
        r.imported,
        r.replaced,
        r.unchanged,
        r.skipped,
        r.bad_total()
    );
    if dry_run {
        format!("dry run, nothing written; would have {counts}")
    } else {
        counts
    }
}

/// The sessions written that had already expired (ended since the export): said on stderr,
/// beside the counts scripts read, since they are stored as the file holds them and only a
/// purge removes them. Nothing when nothing was, or would be, written.
fn expired_note(r: &ImportReport, dry_run: bool) -> Option<String> {
    let n = r.expired;
    if n == 0 {
        None
    } else if dry_run {
        Some(format!(
            "note: {n} of them had already expired: an import writes them as the file holds \
             them, for `sessctl purge --expired` to remove"
        ))
    } else if r.written {
        Some(format!(
            "note: {n} of the sessions written had already expired: `sessctl purge --expired` \
             removes them"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An application built before export version 2 refuses this sessctl's export with its
    /// own text (that of `116851d`'s `parse_header`): it is told apart from a file that is
    /// newer than this sessctl reads, or not an export at all.
    #[test]
    fn an_older_application_refusing_the_header_is_told_apart() {
        assert_eq!(
            older_reader("export version 2 is newer than this sessdb reads (1)"),
            Some((2, 1))
        );
        let newer = format!(
            "export version {} is newer than this sessdb reads ({EXPORT_VERSION})",
            EXPORT_VERSION + 1
        );
        assert_eq!(older_reader(&newer), None);
        assert_eq!(
            older_reader("not a sessdb export header: expected value at column 1"),
            None
        );
        assert_eq!(
            older_reader("export version x is newer than this sessdb reads (1)"),
            None
        );
    }

    /// A new database an import stopped part way keeps what it wrote (its error says they
    /// stay, and a rerun finishes it); one that failed before writing, or rejected its file,
    /// is removed again.
    #[test]
    fn only_an_import_that_wrote_nothing_takes_its_new_database_back() {
        let stopped = anyhow::Error::new(sessdb::Error::ImportStopped {
            written: 3,
            source: Box::new(sessdb::Error::ReadOnly { operation: "x" }),
        });
        assert!(!nothing_written(&Err(stopped.context("importing"))));
        let failed = anyhow::Error::new(sessdb::Error::ReadOnly {
            operation: "import",
        });
        assert!(nothing_written(&Err(failed)));
        let rejected = ImportReport {
            bad: vec![sessdb::BadLine {
                line: 2,
                reason: "x".into(),
            }],
            bad_lines: 1,
            ..ImportReport::default()
        };
        assert!(nothing_written(&Ok(rejected)));
        assert!(!nothing_written(&Ok(ImportReport::default())));
    }

    #[test]
    fn only_an_import_cut_off_or_unanswered_gets_the_rerun_hint() {
        let import = |options| {
            let import = Import::new(Input::Stdin, options);
            import.read_to_end.set(true);
            import
        };
        let cut = anyhow::Error::new(sessdb::Error::Disconnected {
            path: "admin.sock".into(),
        })
        .context("importing");
        let replace = ImportOptions {
            on_conflict: OnConflict::Replace,
            ..ImportOptions::default()
        };
        let dry = ImportOptions {
            dry_run: true,
            ..ImportOptions::default()
        };
        let hint = |options| import(options).hint(&cut).unwrap_or_default();
        let skip = hint(ImportOptions::default());
        assert!(skip.ends_with("are kept (--on-conflict skip)"), "{skip}");
        // Not "safe": what the application ended since the first run comes back.
        assert!(!skip.contains("safe"), "{skip}");
        assert!(
            skip.contains(
                "again with the same input finishes it, but also brings back any session the \
                 first run wrote that the application has ended since"
            ),
            "{skip}"
        );
        let replace = hint(replace);
        assert!(replace.contains("brings back any session"), "{replace}");
        assert!(replace.ends_with("are overwritten with the file's (--on-conflict replace)"));
        assert_eq!(
            hint(dry),
            "a dry run writes nothing, so running the same command again with the same input \
             is safe"
        );
        let from_file = Import::new(Input::File("export.jsonl".into()), ImportOptions::default());
        from_file.read_to_end.set(true);
        let from_file = from_file.hint(&cut).unwrap_or_default();
        assert!(from_file.contains("again with the same file finishes it"));
        let never_sent = anyhow::Error::new(sessdb::Error::Unresponsive {
            path: "admin.sock".into(),
            waited: std::time::Duration::from_secs(10),
            sent: false,
        });
        assert_eq!(import(ImportOptions::default()).hint(&never_sent), None);
        let hung = anyhow::Error::new(sessdb::Error::Unresponsive {
            path: "admin.sock".into(),
            waited: std::time::Duration::from_secs(10),
            sent: true,
        });
        let hung = import(ImportOptions::default())
            .hint(&hung)
            .unwrap_or_default();
        assert!(
            hung.starts_with(
                "the import may have been written, whole or in part, or may still be written \
                 whole if the application was only stopped; once it answers, running the same \
                 command again with the same input finishes it, but also brings back"
            ),
            "{hung}"
        );
        let other = anyhow::Error::new(sessdb::Error::Refused {
            path: "admin.sock".into(),
            reason: "too many clients".into(),
        });
        assert_eq!(import(ImportOptions::default()).hint(&other), None);
        // Cut off at connect or part way through the input: nothing was written.
        let unsent = Import::new(Input::Stdin, ImportOptions::default());
        assert_eq!(unsent.hint(&cut), None);
    }

    /// A bad line's reason is written by the application behind an admin socket: what it
    /// sends cannot drive the terminal.
    #[test]
    fn bad_lines_are_printed_escaped() {
        let report = ImportReport {
            bad: vec![sessdb::BadLine {
                line: 2,
                reason: "bad\x1b]0;owned\x07\r\nline 3: fine".into(),
            }],
            bad_lines: 3,
            ..ImportReport::default()
        };
        let mut err = Vec::new();
        print_bad_lines(&mut err, &report).expect("write");
        assert_eq!(
            String::from_utf8(err).expect("utf-8"),
            "line 2: bad\\u{1b}]0;owned\\u{7}\\r\\nline 3: fine\n\
             … and 2 more bad lines (only the first 1 are named)\n"
        );
    }

    /// Read through a 2-byte buffer, in pieces of every size, as the store's line reader
    /// consumes what it was given only in part.
    #[test]
    fn the_first_line_that_is_not_blank_is_found_however_the_input_is_read() {
        for (input, expected) in [
            (&b"{\"format\"}\nx\n"[..], Some(1)),
            (b"\n \r\n\t\n  {\n", Some(4)),
            (b"\n\n", None),
            (b"", None),
        ] {
            for step in 1..4 {
                let mut r = FirstLine::new(BufReader::with_capacity(2, input));
                loop {
                    let n = r.fill_buf().expect("read").len().min(step);
                    if n == 0 {
                        break;
                    }
                    r.consume(n);
                }
                assert_eq!(r.number(), expected, "{input:?} by {step}");
            }
            let mut r = FirstLine::new(BufReader::with_capacity(2, input));
            let mut all = Vec::new();
            r.read_to_end(&mut all).expect("read");
            assert_eq!((all.as_slice(), r.number()), (input, expected));
        }
    }

    /// A pipe that gives nothing fails a read once the limit is set (before, the read waited
    /// for ever), and only then: what is there, and the pipe's end, are read as ever.
    #[test]
    fn a_stalled_input_fails_its_read_at_the_limit() {
        use std::io::Write as _;
        let (reader, mut writer) = io::pipe().expect("pipe");
        let limit = StallLimit::default();
        let mut input = Stalls::new(
            File::from(std::os::fd::OwnedFd::from(reader)),
            limit.clone(),
            Signals::default(),
        );
        let mut buf = [0; 16];
        writer.write_all(b"line\n").expect("write");
        assert_eq!(input.read(&mut buf).expect("read"), 5, "no limit yet");
        limit.set(Some(Duration::from_millis(20)));
        let stalled = input.read(&mut buf).expect_err("nothing came");
        assert_eq!(stalled.kind(), io::ErrorKind::TimedOut);
        assert!(
            stalled
                .to_string()
                .starts_with("it gave nothing for 0 s, and an application gives up"),
            "{stalled}"
        );
        writer.write_all(b"more").expect("write");
        assert_eq!(input.read(&mut buf).expect("read"), 4);
        drop(writer);
        assert_eq!(input.read(&mut buf).expect("the end"), 0);
    }
}
