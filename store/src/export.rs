//! The export format (JSON Lines: a header, then one session per line, then an end line) and
//! its import.
//!
//! The session object is also what `sessctl --json` prints. Import validates every line before
//! it writes anything, reports each bad line with its number, and is idempotent. The end line
//! (from export version 2) is what tells a whole export from one cut short on a line boundary,
//! which every line of it would otherwise pass for.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::admin::SessionInfo;
use crate::clock::{duration_ms, from_ms, to_ms, MAX_TIME_MS};
use crate::error::{Error, Result, SledResult as _};
use crate::id::Handle;
use crate::record::{decode_head, decode_parts, encode_parts, Head, Record, RECORD_FORMAT};
use crate::session::{validate_metadata, validate_principal};
use crate::store::Store;
use crate::value::{decode_map, same_map, Value};

/// The `format` field of an export header.
pub const EXPORT_FORMAT: &str = "sessdb-export";
/// The export version this build writes, and the newest it reads. Version 2 ends with an end
/// line, `{"end":"sessdb-export","sessions":N}`, that an import requires; version 1, which has
/// none, is read as before.
pub const EXPORT_VERSION: u32 = 2;

/// The first export version that ends with an end line.
const END_LINE_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    exported_at: String,
}

/// The last line of an export (from version 2): the export's format again, and how many
/// session lines came before it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: String,
    sessions: u64,
}

/// One session line, fields in the documented order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    handle: Handle,
    principal: Option<String>,
    label: Option<String>,
    remote_addr: Option<String>,
    user_agent: Option<String>,
    created: String,
    last_access: String,
    idle_timeout_s: serde_json::Number,
    absolute_deadline: String,
    expires_at: String,
    version: u64,
    data: serde_json::Value,
}

/// A time as the export and `--json` write it: RFC 3339 in UTC, always with three fraction
/// digits (`2025-01-31T11:50:00.000Z`), so that times sort as strings (`jq`'s `sort`, `sort`),
/// which a varying number of digits breaks (`…58.21Z` after `…58.215Z`). Stored times are
/// whole milliseconds within 1970..=9999.
///
/// ```
/// let t = time::macros::datetime!(2025-01-31 11:50:00.2 UTC);
/// assert_eq!(sessdb::export_timestamp(t), "2025-01-31T11:50:00.200Z");
/// ```
pub fn export_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl SessionInfo {
    /// The JSON object of the export format (and of `sessctl --json`). As a
    /// `serde_json::Value` its keys are sorted; [`SessionInfo::to_json_line`] writes them in
    /// the format's documented order.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.line()).unwrap_or_default()
    }

    /// The session as one line of the export format (without the newline), its keys in the
    /// documented order: `handle`, `principal`, `label`, `remote_addr`, `user_agent`,
    /// `created`, `last_access`, `idle_timeout_s`, `absolute_deadline`, `expires_at`,
    /// `version`, `data`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.line()).unwrap_or_default()
    }

    fn line(&self) -> Line {
        let ms = duration_ms(self.idle_timeout);
        let idle = if ms == i64::MAX {
            // No idle timeout: whole seconds, as the schema has them, which import reads back
            // as none (`NO_IDLE_TIMEOUT_S`).
            serde_json::Number::from(NO_IDLE_TIMEOUT_S)
        } else if ms % 1000 == 0 {
            serde_json::Number::from(ms / 1000)
        } else {
            serde_json::Number::from_f64(ms as f64 / 1000.0).unwrap_or_else(|| 0.into())
        };
        Line {
            handle: self.handle,
            principal: self.principal.clone(),
            label: self.label.clone(),
            remote_addr: self.remote_addr.clone(),
            user_agent: self.user_agent.clone(),
            created: export_timestamp(self.created),
            last_access: export_timestamp(self.last_access),
            idle_timeout_s: idle,
            absolute_deadline: export_timestamp(self.absolute_deadline),
            expires_at: export_timestamp(self.expires_at),
            version: self.version,
            data: Value::Map(self.data.clone()).to_json(),
        }
    }
}

/// `idle_timeout_s` of a session with no idle timeout (`Duration::MAX`, stored as i64::MAX
/// ms): the whole seconds of i64::MAX ms. Import reads it, and anything larger, as none.
const NO_IDLE_TIMEOUT_S: u64 = i64::MAX as u64 / 1000;

/// The header line of an export written now.
pub(crate) fn header_line(now: OffsetDateTime) -> String {
    let header = Header {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        exported_at: export_timestamp(now),
    };
    serde_json::to_string(&header).unwrap_or_default()
}

/// The end line of an export of `sessions` sessions.
fn end_line(sessions: u64) -> String {
    let end = End {
        end: EXPORT_FORMAT.into(),
        sessions,
    };
    serde_json::to_string(&end).unwrap_or_default()
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReport {
    /// Sessions written.
    pub exported: u64,
    /// Expired sessions left out (export without `include_expired`).
    pub skipped_expired: u64,
    /// Records that could not be decoded and were left out.
    pub undecodable: u64,
}

pub(crate) fn export(
    store: &Store,
    out: &mut dyn Write,
    include_expired: bool,
) -> Result<ExportReport> {
    let mut exporter = Exporter::new(store, include_expired);
    while !exporter.step(store, out, usize::MAX)? {}
    Ok(exporter.report)
}

/// An export made a batch at a time: the header, then the sessions in key order, each
/// [`Exporter::step`] taking up where the last one stopped, then the end line. Between steps the caller may let
/// the store go (the admin socket does, while a slow client reads what a step wrote). Expiry
/// is judged as of the moment the export began.
pub(crate) struct Exporter {
    now: i64,
    include_expired: bool,
    /// The key of the last record a step read; `None` before the first.
    after: Option<sled::IVec>,
    header_written: bool,
    /// What the steps so far wrote.
    pub(crate) report: ExportReport,
}

impl Exporter {
    pub(crate) fn new(store: &Store, include_expired: bool) -> Exporter {
        Exporter {
            now: store.now(),
            include_expired,
            after: None,
            header_written: false,
            report: ExportReport::default(),
        }
    }

    /// Writes the header (on the first step) and the next sessions, until `budget` bytes were
    /// written (one session may pass it) or none are left; returns whether the export is
    /// complete, and then writes the end line and flushes `out`.
    ///
    /// # Errors
    /// Storage errors, and [`Error::Io`] for a failed write.
    pub(crate) fn step(
        &mut self,
        store: &Store,
        out: &mut dyn Write,
        budget: usize,
    ) -> Result<bool> {
        let write_err = |source: io::Error| Error::Io {
            path: "export output".into(),
            source,
        };
        let mut written = 0usize;
        if !self.header_written {
            let header = header_line(from_ms(self.now));
            writeln!(out, "{header}").map_err(write_err)?;
            written += header.len() + 1;
            self.header_written = true;
        }
        let records = match &self.after {
            Some(after) => store.inner.sessions.range::<&[u8], _>((
                std::ops::Bound::Excluded(&after[..]),
                std::ops::Bound::Unbounded,
            )),
            None => store.inner.sessions.iter(),
        };
        for item in records {
            if written >= budget {
                return Ok(false);
            }
            let (k, v) = item.storage()?;
            self.after = Some(k.clone());
            let (Some(handle), Ok(record)) = (Handle::from_slice(&k), Record::decode(&v)) else {
                self.report.undecodable += 1;
                continue;
            };
            if record.head.is_expired(self.now) && !self.include_expired {
                self.report.skipped_expired += 1;
                continue;
            }
            let line = SessionInfo::from_record(handle, record, v.len()).to_json_line();
            writeln!(out, "{line}").map_err(write_err)?;
            written += line.len() + 1;
            self.report.exported += 1;
        }
        writeln!(out, "{}", end_line(self.report.exported)).map_err(write_err)?;
        out.flush().map_err(write_err)?;
        Ok(true)
    }
}

/// What to do when an imported session already exists with different content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnConflict {
    /// Keep the stored session.
    #[default]
    Skip,
    /// Overwrite it with the imported one.
    Replace,
}

/// How to import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOptions {
    /// Validate and count, write nothing.
    pub dry_run: bool,
    /// What to do with sessions that exist with other content.
    pub on_conflict: OnConflict,
    /// Import the good lines even if some are bad (the bad ones are still reported).
    pub skip_bad: bool,
}

/// A line that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// What an import did (or, on a dry run or with bad lines, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// New sessions, also those written over a stored record that had expired (not yet
    /// purged) or could not be read: neither is a session.
    pub imported: u64,
    /// Existing sessions overwritten (`OnConflict::Replace`).
    pub replaced: u64,
    /// Sessions already stored exactly as in the file.
    pub unchanged: u64,
    /// Existing sessions with other content that were kept (`OnConflict::Skip`).
    pub skipped: u64,
    /// Of the sessions written (`imported` and `replaced`), those that had already expired
    /// when written (ended since the export): stored as the file holds them, for a purge to
    /// remove, and never returned by a load.
    #[serde(default)]
    pub expired: u64,
    /// Lines that could not be imported: the first [`MAX_REPORTED_BAD_LINES`] of them (a
    /// file of garbage must not make the report, or the application serving an import
    /// through its admin socket, grow without bound). `bad_lines` counts them all.
    pub bad: Vec<BadLine>,
    /// How many lines could not be imported, including those past the first
    /// [`MAX_REPORTED_BAD_LINES`] that `bad` holds.
    #[serde(default)]
    pub bad_lines: u64,
    /// Whether anything was written.
    pub written: bool,
}

/// How many bad lines an [`ImportReport`] names; the rest are counted only.
pub const MAX_REPORTED_BAD_LINES: usize = 1000;

impl ImportReport {
    /// How many lines could not be imported: `bad_lines`, or the number `bad` names if that
    /// is more (a report made by hand, with `bad` only).
    pub fn bad_total(&self) -> u64 {
        self.bad_lines.max(self.bad.len() as u64)
    }

    /// Records a bad line: named if fewer than [`MAX_REPORTED_BAD_LINES`] are, counted always.
    fn reject(&mut self, bad: BadLine) {
        self.bad_lines += 1;
        if self.bad.len() < MAX_REPORTED_BAD_LINES {
            self.bad.push(bad);
        }
    }
}

/// The longest line import reads: a maximal session (of at most `limit` bytes encoded),
/// JSON-escaped and base64-inflated. The most a stored byte grows to in JSON is 7.5 times: an
/// empty byte string is 2 bytes stored and `{"$base64":""},` (15) in a list; a control
/// character in a string, 1 byte stored and `\u0001` (6), comes next.
fn max_line(limit: usize) -> usize {
    limit.saturating_mul(8).saturating_add(64 * 1024)
}

/// Reads one line of at most `max` bytes (without the newline). `Ok(None)` at the end of input;
/// `Err(len)` for an overlong line, which is skipped up to its newline if `skip`, or else left
/// as soon as it passes `max` (`len` is then what was read of it: a header that long ends the
/// import, and input with no newline, `/dev/zero` say, must not be read to its end first).
fn read_line(
    input: &mut dyn BufRead,
    max: usize,
    skip: bool,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Result<(), usize>>> {
    buf.clear();
    let mut too_long = 0usize;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && too_long == 0 {
                None
            } else if too_long > 0 {
                Some(Err(too_long))
            } else {
                Some(Ok(()))
            });
        }
        let (part, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i)),
            None => (chunk, None),
        };
        if too_long == 0 && buf.len() + part.len() <= max {
            buf.extend_from_slice(part);
        } else {
            too_long = too_long.max(buf.len()) + part.len();
            buf.clear();
        }
        let used = found.map_or(part.len(), |i| i + 1);
        input.consume(used);
        if too_long > 0 && !skip {
            return Ok(Some(Err(too_long)));
        }
        if found.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(if too_long > 0 { Err(too_long) } else { Ok(()) }));
        }
    }
}

pub(crate) fn import(
    store: &Store,
    input: &mut dyn BufRead,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    if !opts.dry_run {
        store.check_writable("import")?;
    }
    let read = read_import(
        input,
        store.inner.config.max_session_bytes,
        opts,
        Some(&store.inner.dir),
    )?;
    apply_import(store, read, opts)
}

/// An export read and checked for an import, before anything is written.
pub(crate) struct ReadImport {
    report: ImportReport,
    /// The good sessions, if they were kept.
    spool: Option<Spool>,
}

/// Where an import's good sessions wait until the whole input has been read and checked: a
/// temporary file in the database's folder, each session as the record it will be stored as,
/// after its length and handle. The file has no name where the file system allows it
/// (`O_TMPFILE`), so it goes with the process whatever happens; elsewhere `tempfile` names it
/// for the instant between creating and unlinking it. Held in memory, the sessions took 877 B
/// of heap each (404 MB of peak RSS to restore 200,000 demo sessions), inside the application
/// when the import came through its admin socket; now the memory an import takes is its check
/// of duplicate handles, 56 B a session (`store/tests/memory.rs`).
struct Spool {
    /// `None` until the first session is kept, so that an import that keeps nothing (bad
    /// lines without `skip_bad`, a bad header) creates no file.
    file: Option<BufWriter<File>>,
    dir: PathBuf,
    /// The largest record the import accepts, so that a length read back is believed only
    /// up to it.
    limit: usize,
    sessions: u64,
}

impl Spool {
    fn new(dir: &Path, limit: usize) -> Self {
        Spool {
            file: None,
            dir: dir.to_path_buf(),
            limit,
            sessions: 0,
        }
    }

    /// Keeps the session stored under `handle` as `record` (its encoding).
    fn keep(&mut self, handle: &Handle, record: &[u8]) -> Result<()> {
        let failed = |dir: &Path, e| spool_error(dir, SpoolStage::Write, e);
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = tempfile::tempfile_in(&self.dir).map_err(|e| failed(&self.dir, e))?;
                self.file.insert(BufWriter::new(file))
            }
        };
        let len = u32::try_from(record.len()).map_err(|_| {
            let e = io::Error::other(format!("a record of {} bytes is over 4 GiB", record.len()));
            failed(&self.dir, e)
        })?;
        file.write_all(&len.to_le_bytes())
            .and_then(|()| file.write_all(handle.as_bytes()))
            .and_then(|()| file.write_all(record))
            .map_err(|e| failed(&self.dir, e))?;
        self.sessions += 1;
        Ok(())
    }

    /// Forgets every session kept, and the file: nothing will be written.
    fn discard(&mut self) {
        self.file = None;
        self.sessions = 0;
    }

    /// The sessions kept, in the order they came, handed to `each`; `dry_run` says whether
    /// `each` writes them, for the error's words.
    fn replay(
        self,
        dry_run: bool,
        mut each: impl FnMut(&Handle, &Head, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let Spool {
            file,
            dir,
            limit,
            sessions,
        } = self;
        let Some(file) = file else {
            return Ok(());
        };
        let mut done = 0u64;
        let stage = |done: u64| match (done, dry_run) {
            (0, _) => SpoolStage::ReadBack,
            (_, true) => SpoolStage::ReadBackDryRun,
            (_, false) => SpoolStage::ReadBackPartWay,
        };
        // The last of what was kept is written out here.
        let mut file = file
            .into_inner()
            .map_err(|e| spool_error(&dir, SpoolStage::Write, e.into_error()))?;
        file.rewind().map_err(|e| spool_error(&dir, stage(0), e))?;
        let mut input = BufReader::new(file);
        let mut record = Vec::new();
        while done < sessions {
            let failed = |e| spool_error(&dir, stage(done), e);
            let mut len = [0u8; 4];
            let mut handle = [0u8; 16];
            input.read_exact(&mut len).map_err(failed)?;
            input.read_exact(&mut handle).map_err(failed)?;
            let len = u32::from_le_bytes(len) as usize;
            // What `keep` wrote, or damage to the file under us.
            let damaged = || {
                failed(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "it is not what the import wrote",
                ))
            };
            if len > limit {
                return Err(damaged());
            }
            record.resize(len, 0);
            input.read_exact(&mut record).map_err(failed)?;
            let (Some(handle), Ok((head, data))) =
                (Handle::from_slice(&handle), decode_parts(&record))
            else {
                return Err(damaged());
            };
            each(&handle, &head, data)?;
            done += 1;
        }
        Ok(())
    }
}

/// What an import's temporary file failed at, which says what became of the import.
#[derive(Debug, Clone, Copy)]
enum SpoolStage {
    /// Keeping a session, while the input was read: nothing was imported.
    Write,
    /// Reading the first session back: nothing was imported.
    ReadBack,
    /// Reading a later one back on a dry run: nothing was written either.
    ReadBackDryRun,
    /// Reading a later one back: the sessions before it were imported.
    ReadBackPartWay,
}

/// An I/O error on an import's temporary file, and what it means for the import; the source
/// of the [`Error::Io`] on the database's folder that reports it.
#[derive(Debug, thiserror::Error)]
#[error("{}", .stage.says())]
struct SpoolError {
    stage: SpoolStage,
    #[source]
    source: io::Error,
}

impl SpoolStage {
    fn says(self) -> &'static str {
        match self {
            SpoolStage::Write => {
                "the import's temporary file could not be written; nothing was imported"
            }
            SpoolStage::ReadBack => {
                "the import's temporary file could not be read back; nothing was imported"
            }
            SpoolStage::ReadBackDryRun => {
                "the import's temporary file could not be read back; the dry run stopped part way"
            }
            // Said within `Error::ImportStopped`, which counts what was written and says
            // that running the import again finishes it.
            SpoolStage::ReadBackPartWay => {
                "the import's temporary file could not be read back past the sessions written"
            }
        }
    }
}

fn spool_error(dir: &Path, stage: SpoolStage, source: io::Error) -> Error {
    Error::Io {
        path: dir.to_path_buf(),
        source: io::Error::new(source.kind(), SpoolError { stage, source }),
    }
}

/// The first half of an import, which needs no store: reads and checks every line of
/// `input` for a store whose sessions may be up to `limit` bytes encoded, keeping the good
/// sessions in a temporary file in `dir`, the database's folder, or none if `dir` is `None`
/// (a store that will refuse to write them). The admin socket's server runs it as the
/// client's input arrives, holding no store meanwhile.
///
/// # Errors
/// [`Error::Io`] when the input cannot be read or the temporary file written.
pub(crate) fn read_import(
    input: &mut dyn BufRead,
    limit: usize,
    opts: &ImportOptions,
    dir: Option<&Path>,
) -> Result<ReadImport> {
    let mut spool = dir.map(|dir| Spool::new(dir, limit));
    let report = match &mut spool {
        Some(spool) => read_export(input, limit, opts.skip_bad, &mut Keep::Spool(spool))?,
        None => read_export(
            input,
            limit,
            opts.skip_bad,
            &mut Keep::Count(&mut Counted::default()),
        )?,
    };
    Ok(ReadImport { report, spool })
}

/// The second half of an import: writes what [`read_import`] found good, unless it found
/// bad lines and `skip_bad` is off (or only compares, on a dry run).
///
/// # Errors
/// Storage errors, [`Error::ReadOnly`], [`Error::Io`] when the temporary file cannot be read.
pub(crate) fn apply_import(
    store: &Store,
    read: ReadImport,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let ReadImport { mut report, spool } = read;
    // Before the bad lines, as `import` does: a read-only store says so whatever the file.
    if !opts.dry_run {
        store.check_writable("import")?;
    }
    if !report.bad.is_empty() && !opts.skip_bad {
        return Ok(report);
    }
    let Some(spool) = spool else {
        // Read for a store that refuses writes, which `check_writable` said above.
        return Ok(report);
    };
    let replayed = spool.replay(opts.dry_run, |handle, head, data| {
        apply(store, handle, head, data, opts, &mut report)
    });
    if report.written {
        // Also after a failure part way: what was imported is synced as a whole import is,
        // and the error says how much that was.
        let synced = store.sync();
        let stopped = |e: Error| Error::ImportStopped {
            written: report.imported + report.replaced,
            source: Box::new(e),
        };
        replayed.map_err(stopped)?;
        synced.map_err(stopped)?;
    } else {
        replayed?;
    }
    Ok(report)
}

/// Checks an export on its own, with no store: what an import into a new, empty store with
/// the default settings would report on a dry run (sessions of up to
/// [`Builder::DEFAULT_MAX_SESSION_BYTES`](crate::Builder::DEFAULT_MAX_SESSION_BYTES)). Every
/// line gets every check that needs no stored session; each good line counts as imported,
/// since a new store has nothing to conflict with, and as expired if it had expired by now
/// (the system clock: [`validate_export_as_of`] takes another time).
///
/// ```
/// use sessdb::{validate_export, ImportOptions};
///
/// let export = r#"{"format":"sessdb-export","version":1,"exported_at":"2025-01-31T12:00:00Z"}
/// not a session
/// "#;
/// let report = validate_export(&mut export.as_bytes(), &ImportOptions::default())?;
/// assert_eq!((report.imported, report.bad.len(), report.bad[0].line), (0, 1, 2));
/// # Ok::<(), sessdb::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] when the input cannot be read.
pub fn validate_export(input: &mut dyn BufRead, opts: &ImportOptions) -> Result<ImportReport> {
    validate_export_as_of(input, opts, OffsetDateTime::now_utc())
}

/// [`validate_export`] with sessions' expiry judged at `at` instead of now: what an import
/// into a new store whose clock reads `at` would report.
///
/// # Errors
/// [`Error::Io`] when the input cannot be read.
pub fn validate_export_as_of(
    input: &mut dyn BufRead,
    opts: &ImportOptions,
    at: OffsetDateTime,
) -> Result<ImportReport> {
    let mut good = Counted {
        now: to_ms(at),
        ..Counted::default()
    };
    let mut report = read_export(
        input,
        crate::Builder::DEFAULT_MAX_SESSION_BYTES,
        opts.skip_bad,
        &mut Keep::Count(&mut good),
    )?;
    if report.bad.is_empty() || opts.skip_bad {
        report.imported = good.sessions;
        report.expired = good.expired;
    }
    Ok(report)
}

/// Good sessions counted, not kept: how many, and how many had expired at `now`.
#[derive(Default)]
struct Counted {
    now: i64,
    sessions: u64,
    expired: u64,
}

/// What [`read_export`] does with a good session.
enum Keep<'a> {
    /// Counts it.
    Count(&'a mut Counted),
    /// Keeps it for the import to write.
    Spool(&'a mut Spool),
}

impl Keep<'_> {
    fn keep(&mut self, handle: &Handle, record: &[u8]) -> Result<()> {
        match self {
            Keep::Count(n) => {
                n.sessions += 1;
                if decode_head(record).is_ok_and(|h| h.is_expired(n.now)) {
                    n.expired += 1;
                }
                Ok(())
            }
            Keep::Spool(spool) => spool.keep(handle, record),
        }
    }

    fn discard(&mut self) {
        match self {
            Keep::Count(n) => {
                n.sessions = 0;
                n.expired = 0;
            }
            Keep::Spool(spool) => spool.discard(),
        }
    }
}

/// Reads and checks every line of an export whose sessions may be up to `limit` bytes
/// encoded: the report holds the bad lines, `keep` gets the good sessions. A bad header ends
/// the reading. Unless `skip_bad`, the good sessions are discarded at the first bad line, as
/// nothing will be written: the rest of the input is checked and counted, not kept. An export
/// of version 2 without its end line, or whose end line counts other session lines than came
/// before it, was cut short or changed: that is a bad line too, as is a line after the end.
fn read_export(
    input: &mut dyn BufRead,
    limit: usize,
    skip_bad: bool,
    keep: &mut Keep<'_>,
) -> Result<ImportReport> {
    let read_err = |source: io::Error| Error::Io {
        path: "import input".into(),
        source,
    };
    let max = max_line(limit);
    let mut report = ImportReport::default();
    let mut buf = Vec::new();
    let mut seen: HashMap<Handle, u64> = HashMap::new();
    let mut n = 0u64;
    // The header's version, once it is read.
    let mut version = None;
    // Lines between the header and the end line, good or bad, but for blank ones: what the
    // end line counts.
    let mut session_lines = 0u64;
    // The line number of the end line, once it is read.
    let mut end_at = None;
    while let Some(line) = read_line(input, max, version.is_some(), &mut buf).map_err(read_err)? {
        if report.bad_lines > 0 && !skip_bad {
            // Nothing will be written: keep no session for it (again, at no cost, after the
            // first time).
            keep.discard();
        }
        n += 1;
        let bad = |reason: String| BadLine { line: n, reason };
        if let Err(len) = line {
            if version.is_none() {
                report.reject(bad(format!(
                    "not a sessdb export header: the line is over {max} bytes long"
                )));
                return Ok(report);
            }
            session_lines += 1;
            report.reject(bad(format!("line is {len} bytes, over the limit of {max}")));
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            report.reject(bad("not valid UTF-8".into()));
            if version.is_none() {
                return Ok(report);
            }
            session_lines += 1;
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        if version.is_none() {
            // A byte order mark, as some editors on Windows write, is not part of the JSON.
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            match parse_header(text) {
                Ok(v) => version = Some(v),
                Err(reason) => {
                    report.reject(bad(reason));
                    return Ok(report);
                }
            }
            continue;
        }
        if let Some(end) = end_at {
            report.reject(bad(if parse_header(text).is_ok() {
                format!(
                    "a second export starts here, after the first one's end line (line {end}): \
                     import each export on its own"
                )
            } else {
                format!("after the export's end line (line {end}), where an export ends")
            }));
            continue;
        }
        match parse_line(limit, text) {
            Ok((handle, record)) => {
                session_lines += 1;
                if let Some(first) = seen.insert(handle, n) {
                    report.reject(bad(format!(
                        "duplicate handle {handle}, first on line {first}"
                    )));
                } else if report.bad_lines == 0 || skip_bad {
                    keep.keep(&handle, &record)?;
                }
            }
            Err(reason) => match parse_end(text) {
                None => {
                    session_lines += 1;
                    report.reject(bad(if parse_header(text).is_ok() {
                        "a second export starts here (its header), before the first one's end \
                         line: the first was cut short; import each export on its own"
                            .into()
                    } else {
                        reason
                    }));
                }
                Some(end) => {
                    end_at = Some(n);
                    match end {
                        Ok(sessions) if sessions == session_lines => {}
                        Ok(sessions) => report.reject(bad(format!(
                            "the end line counts {} but {session_lines} came before it: {}",
                            plural(sessions, "session line"),
                            if session_lines < sessions {
                                "lines were lost since the export (cut out, or filtered)"
                            } else {
                                "lines were added since the export"
                            }
                        ))),
                        Err(reason) => report.reject(bad(reason)),
                    }
                }
            },
        }
    }
    if let Some(v) = version.filter(|&v| v >= END_LINE_VERSION) {
        if end_at.is_none() {
            // Numbered as the line the end line would be: the header's number is never a bad
            // line's (sessctl tells a bad header by it), and an export cut right after its
            // header is only that.
            report.reject(BadLine {
                line: n + 1,
                reason: format!(
                    "the export was cut short: the input ends after line {n} without the end \
                     line that ends an export of version {v} ({{\"end\":\"{EXPORT_FORMAT}\",\
                     \"sessions\":<how many>}})"
                ),
            });
        }
    }
    if report.bad_lines > 0 && !skip_bad {
        keep.discard();
    }
    if version.is_none() {
        report.reject(BadLine {
            line: n.max(1),
            reason: "empty input: no export header".into(),
        });
    }
    Ok(report)
}

/// `n` and a noun, made plural unless `n` is 1.
fn plural(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// The session count of an end line; `None` for a line that is not one (it has no `end`
/// field), and an error for one that is, but malformed or of another format.
fn parse_end(text: &str) -> Option<Result<u64, String>> {
    let is_end = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(fields) => fields.contains_key("end"),
        // Not JSON (an end line cut short, a count out of range): what it starts with says
        // what it was meant to be.
        Err(_) => text
            .trim_start()
            .strip_prefix('{')
            .is_some_and(|rest| rest.trim_start().starts_with("\"end\"")),
    };
    if !is_end {
        return None;
    }
    Some(
        from_json::<End>(text)
            .map_err(|e| format!("not an export's end line: {e}"))
            .and_then(|end| {
                if end.end == EXPORT_FORMAT {
                    Ok(end.sessions)
                } else {
                    Err(format!(
                        "not this export's end line: end is {:?}, where a sessdb export's is \
                         {EXPORT_FORMAT:?}",
                        end.end
                    ))
                }
            }),
    )
}

/// Checks an export's header line and returns its version.
fn parse_header(text: &str) -> Result<u32, String> {
    let header: Header = from_json(text).map_err(|e| format!("not a sessdb export header: {e}"))?;
    if header.format != EXPORT_FORMAT {
        return Err(format!(
            "not a sessdb export: format is {:?}",
            header.format
        ));
    }
    if header.version > EXPORT_VERSION {
        return Err(format!(
            "export version {} is newer than this sessdb reads ({EXPORT_VERSION})",
            header.version
        ));
    }
    if header.version == 0 {
        return Err(format!(
            "version: 0 is not an export version (the first is 1; this sessdb reads up to \
             {EXPORT_VERSION})"
        ));
    }
    parse_time("exported_at", &header.exported_at)?;
    Ok(header.version)
}

/// A time of the export: RFC 3339, and within 1970..=9999 as every stored time is (the store
/// would otherwise clamp it, and import something other than the file says).
fn parse_time(field: &str, text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{field}: {text:?} is not an RFC 3339 time: {e}"))?;
    if t < OffsetDateTime::UNIX_EPOCH {
        return Err(format!(
            "{field}: {text:?} is before 1970-01-01T00:00:00Z, the earliest time sessdb stores"
        ));
    }
    if t > from_ms(MAX_TIME_MS) {
        return Err(format!(
            "{field}: {text:?} is after the end of 9999, the latest time sessdb stores"
        ));
    }
    Ok(to_ms(t))
}

/// serde_json's message for one line of the file, without its "at line 1": the report already
/// names the line, and serde_json counts from the start of that line alone.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let place = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&place) {
        Some(message) => format!("{message} at column {}", e.column()),
        None => text,
    }
}

/// A line of valid JSON that is not an object says so, rather than in serde's words
/// (`invalid length 0, expected struct Line with 12 elements`); any other error is `error`.
fn not_an_object(text: &str, error: String) -> String {
    let what = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(_)) => "an array",
        Ok(serde_json::Value::String(_)) => "a string",
        Ok(serde_json::Value::Number(_)) => "a number",
        Ok(serde_json::Value::Bool(_)) => "a boolean",
        Ok(serde_json::Value::Null) => "null",
        Ok(serde_json::Value::Object(_)) | Err(_) => return error,
    };
    format!("not a session: the line is {what}, where a session is a JSON object")
}

/// The largest version an import takes.
const MAX_VERSION: u64 = i64::MAX as u64;

/// Parses one JSON line as a `T`. An error names the field it is in (`version: invalid value:
/// integer `-1`, expected u64 at column 426`), and says "truncated" for a line that ends early.
fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path = e.path().to_string();
        let e = e.into_inner();
        if e.to_string().starts_with("unknown field") {
            // The path ends in the field the message names already: its place is the parent.
            path = path
                .rsplit_once('.')
                .map_or(".", |(parent, _)| parent)
                .to_string();
        }
        if e.is_eof() {
            format!("truncated: {}", json_error(&e))
        } else if path == "." || e.is_syntax() {
            json_error(&e)
        } else {
            format!("{path}: {}", json_error(&e))
        }
    })?;
    de.end().map_err(|e| json_error(&e))?;
    Ok(value)
}

/// Parses and checks one session line: its handle, and the record it will be stored as.
fn parse_line(limit: usize, text: &str) -> Result<(Handle, Vec<u8>), String> {
    let line: Line = from_json(text).map_err(|e| not_an_object(text, e))?;
    if let Some(p) = &line.principal {
        validate_principal(p).map_err(|e| e.to_string())?;
    }
    for (field, value) in [
        ("label", &line.label),
        ("remote address", &line.remote_addr),
        ("user agent", &line.user_agent),
    ] {
        validate_metadata(field, value.as_deref()).map_err(|e| e.to_string())?;
    }
    let idle_ms = match (line.idle_timeout_s.as_u64(), line.idle_timeout_s.as_f64()) {
        (Some(s), _) if s >= NO_IDLE_TIMEOUT_S => i64::MAX,
        (Some(s), _) => i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX),
        // `as` saturates: a duration past i64::MAX ms, such as the 9223372036854776.0 s that
        // no idle timeout exported as before `NO_IDLE_TIMEOUT_S`, comes back as i64::MAX ms.
        (None, Some(f)) if f >= 0.0 => (f * 1000.0).round() as i64,
        _ => {
            return Err(format!(
                "idle_timeout_s: {} is not a duration",
                line.idle_timeout_s
            ))
        }
    };
    // A stored session's first save is version 1; 0 is a session never saved, which a conflict
    // would then report as a new session whose id is taken. Versions past i64::MAX are none a
    // store reaches, and the next save of u64::MAX would wrap to 0.
    if line.version == 0 || line.version > MAX_VERSION {
        return Err(format!(
            "version: {} is not a saved session's version (from 1 to {MAX_VERSION})",
            line.version
        ));
    }
    let data = match Value::data_from_json(&line.data) {
        Ok(Value::Map(map)) => map,
        Ok(_) => return Err("data: must be a JSON object".into()),
        Err(e) => return Err(format!("data: {e}")),
    };
    let mut head = Head {
        expires_at: parse_time("expires_at", &line.expires_at)?,
        entry_lag: 0,
        version: line.version,
        created: parse_time("created", &line.created)?,
        last_access: parse_time("last_access", &line.last_access)?,
        idle_timeout_ms: idle_ms,
        absolute_deadline: parse_time("absolute_deadline", &line.absolute_deadline)?,
        principal: line.principal,
        label: line.label,
        remote_addr: line.remote_addr,
        user_agent: line.user_agent,
    };
    // A session is created at its first access, and the last access only moves forward.
    if head.created > head.last_access {
        return Err(format!(
            "created ({}) is after last_access ({})",
            line.created, line.last_access
        ));
    }
    if head.expires_at != head.compute_expiry() {
        return Err(
            "expires_at does not equal min(last_access + idle_timeout_s, absolute_deadline)".into(),
        );
    }
    head.place_entry(None);
    let record = Record { head, data }.encode();
    let size = record.len();
    if size > limit {
        return Err(format!(
            "session is {size} bytes encoded, over the limit of {limit} bytes"
        ));
    }
    Ok((line.handle, record))
}

/// Whether the stored bytes `cur` hold the session that `encoded` (its `head` and `data`)
/// would write: the same bytes, or a record of an older format with the same content.
fn same_session(cur: &[u8], encoded: &[u8], head: &Head, data: &[u8]) -> bool {
    cur == encoded
        || (cur.first() != Some(&RECORD_FORMAT)
            && Record::decode(cur).is_ok_and(|r| {
                r.head == *head && decode_map(data).is_ok_and(|d| same_map(&r.data, &d))
            }))
}

fn apply(
    store: &Store,
    handle: &Handle,
    head: &Head,
    data: &[u8],
    opts: &ImportOptions,
    report: &mut ImportReport,
) -> Result<()> {
    // A record that changes principal holds both principals' locks, as a save that moves a
    // session does: the principal it leaves is read first, and read again under the locks.
    let mut leaving = store
        .inner
        .sessions
        .get(handle.as_bytes())
        .storage()?
        .and_then(|c| decode_head(&c).ok())
        .and_then(|h| h.principal);
    let (_p, _k, current, current_head) = loop {
        let p = store.lock_principals(&[leaving.as_deref(), head.principal.as_deref()]);
        let k = store.lock_key(handle);
        let current = store.inner.sessions.get(handle.as_bytes()).storage()?;
        let current_head = current.as_deref().and_then(|c| decode_head(c).ok());
        let now_leaving = current_head.as_ref().and_then(|h| h.principal.clone());
        if now_leaving == leaving {
            break (p, k, current, current_head);
        }
        // Moved by another writer between the read and the locks: lock its principal now.
        leaving = now_leaving;
    };
    // Placed as a write over the stored record would place it, so that importing the same
    // file again finds the same bytes and changes nothing.
    let mut head = head.clone();
    head.place_entry(current_head.as_ref().map(Head::expiry_entry));
    let (encoded, _) = encode_parts(&head, data);
    let expired = head.is_expired(store.now());
    match current {
        None => {
            if !opts.dry_run {
                store.write_locked(handle, None, &mut head, data)?;
                report.written = true;
            }
            report.imported += 1;
            report.expired += u64::from(expired);
        }
        Some(cur) if same_session(&cur, &encoded, &head, data) => report.unchanged += 1,
        // Skip keeps a stored session: a record that has expired (not yet purged) or cannot
        // be read is none (`load` would not return it), so the import writes over it, as over
        // nothing, and counts it as imported.
        Some(cur) if opts.on_conflict == OnConflict::Skip && is_live(store, &cur) => {
            report.skipped += 1
        }
        Some(cur) => {
            let live = is_live(store, &cur);
            if !opts.dry_run {
                match current_head {
                    Some(stored) => {
                        store.write_locked(
                            handle,
                            Some((&cur, &stored.stored())),
                            &mut head,
                            data,
                        )?;
                    }
                    None => {
                        // An undecodable record is replaced outright.
                        store
                            .inner
                            .remove(crate::journal::Keyspace::Sessions, handle.as_bytes())
                            .storage()?;
                        store.write_locked(handle, None, &mut head, data)?;
                    }
                }
                report.written = true;
            }
            if live {
                report.replaced += 1;
            } else {
                report.imported += 1;
            }
            report.expired += u64::from(expired);
        }
    }
    Ok(())
}

/// Whether the stored record `bytes` is a session `load` would return: readable, and not
/// expired.
fn is_live(store: &Store, bytes: &[u8]) -> bool {
    crate::record::decode_lazy(bytes).is_ok_and(|r| !r.head.is_expired(store.now()))
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use super::{read_export, Keep, Spool};
    use crate::{Admin, ManualClock, Store};

    const LIMIT: usize = crate::Builder::DEFAULT_MAX_SESSION_BYTES;

    /// The tests' time: 2026-01-01T00:00:00Z.
    const NOW: i64 = 1_767_225_600_000;

    /// A new store in `dir`, its clock at [`NOW`].
    fn store_in(dir: &std::path::Path) -> Store {
        Store::builder()
            .clock(ManualClock::at_ms(NOW))
            .open(dir.join("db"))
            .unwrap()
    }

    /// [`store_in`] with three sessions, whose data `n` is 0, 1 and 2.
    fn three_in(dir: &std::path::Path) -> Store {
        let store = store_in(dir);
        for i in 0..3 {
            let mut s = store.create();
            s.insert("n", &i).unwrap();
            s.save().unwrap();
        }
        store
    }

    /// An export of three sessions, as lines: the header first, the end line last.
    fn export() -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let store = three_in(dir.path());
        let mut out = Vec::new();
        store.export(&mut out, true).unwrap();
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn input(lines: &[&[u8]]) -> Vec<u8> {
        lines.iter().flat_map(|l| [*l, b"\n"].concat()).collect()
    }

    /// `lines` (a header, then session lines) and the end line that counts them.
    fn whole(lines: &[&[u8]]) -> Vec<u8> {
        let end = super::end_line(lines.len() as u64 - 1);
        let mut all = lines.to_vec();
        all.push(end.as_bytes());
        input(&all)
    }

    /// The report of reading `text`, and how many sessions it kept.
    fn counted(text: &[u8], skip_bad: bool) -> (super::ImportReport, u64) {
        let mut kept = super::Counted::default();
        let report = read_export(&mut &text[..], LIMIT, skip_bad, &mut Keep::Count(&mut kept));
        (report.unwrap(), kept.sessions)
    }

    /// What reading `text` (without `skip_bad`) kept in a temporary file in `dir`.
    fn spooled(text: &[u8], dir: &std::path::Path) -> Spool {
        let mut spool = Spool::new(dir, LIMIT);
        read_export(&mut &text[..], LIMIT, false, &mut Keep::Spool(&mut spool)).unwrap();
        spool
    }

    /// Once a line is bad, nothing will be written without `skip_bad`, so nothing is kept:
    /// whatever made the line bad, and whether it is the last line or not.
    #[test]
    fn the_sessions_kept_are_dropped_at_the_first_bad_line_of_any_kind() {
        let lines = export();
        let (header, good) = (&lines[0], &lines[1..lines.len() - 1]);
        let too_long = vec![b'x'; super::max_line(LIMIT) + 1];
        let duplicate = good[0].clone();
        for bad in [&b"\xff"[..], &too_long, b"{}", &duplicate] {
            for after in [&[][..], &good[2..]] {
                let mut all: Vec<&[u8]> = vec![header];
                all.extend(good[..2].iter().map(Vec::as_slice));
                all.push(bad);
                all.extend(after.iter().map(Vec::as_slice));
                let text = whole(&all);

                let (report, kept) = counted(&text, false);
                assert_eq!((report.bad_lines, kept), (1, 0), "{report:?}");
                let dir = tempfile::tempdir().unwrap();
                let spool = spooled(&text, dir.path());
                assert!(spool.file.is_none() && spool.sessions == 0);
                // With skip_bad, every good line is kept, before and after the bad one.
                let (_, kept) = counted(&text, true);
                assert_eq!(kept, 2 + after.len() as u64);
            }
        }
    }

    /// An export of version 2 cut short on a line boundary, where every line it has is good,
    /// is refused for want of its end line: after the header, after any session, and with a
    /// blank line after the last (what some tools add); with `skip_bad` the sessions it has are
    /// kept.
    #[test]
    fn an_export_cut_short_on_a_line_boundary_is_refused() {
        let lines = export();
        let all: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let (report, kept) = counted(&input(&all), false);
        assert_eq!((report.bad_lines, kept), (0, 3), "{report:?}");
        for cut in 1..all.len() {
            for blank in [false, true] {
                let mut text = input(&all[..cut]);
                if blank {
                    text.push(b'\n');
                }
                let (report, kept) = counted(&text, false);
                assert_eq!((report.bad_lines, kept), (1, 0), "cut {cut}: {report:?}");
                let last = if blank { cut + 1 } else { cut };
                assert_eq!(report.bad[0].line, last as u64 + 1);
                assert!(
                    report.bad[0].reason.starts_with(&format!(
                        "the export was cut short: the input ends after line {last} without the \
                         end line"
                    )),
                    "{}",
                    report.bad[0].reason
                );
                let (_, kept) = counted(&text, true);
                assert_eq!(kept, cut as u64 - 1);
            }
        }
    }

    /// The end line must count the session lines before it, and end the export.
    #[test]
    fn the_end_line_counts_the_session_lines_and_ends_the_export() {
        let lines = export();
        let (header, sessions, end) = (&lines[0], &lines[1..4], &lines[4]);
        let reasons = |text: &[u8]| -> Vec<(u64, String)> {
            let (report, _) = counted(text, true);
            report.bad.into_iter().map(|b| (b.line, b.reason)).collect()
        };
        // A session line lost from the middle.
        let lost = input(&[header, &sessions[0], &sessions[2], end]);
        assert_eq!(
            reasons(&lost),
            [(
                4,
                "the end line counts 3 session lines but 2 came before it: lines were lost since \
                 the export (cut out, or filtered)"
                    .to_string()
            )]
        );
        // A bad session line counts as a session line: the end line is not reported for it.
        let bad = input(&[header, &sessions[0], b"{}", &sessions[2], end]);
        assert_eq!(reasons(&bad).iter().map(|r| r.0).collect::<Vec<_>>(), [3]);
        // Two exports one after the other: every line of the second is after the first's end.
        let twice: Vec<&[u8]> = lines.iter().chain(&lines).map(Vec::as_slice).collect();
        let after = reasons(&input(&twice));
        assert_eq!(after.len(), 5, "{after:?}");
        assert_eq!(
            after[0],
            (
                6,
                "a second export starts here, after the first one's end line (line 5): import \
                 each export on its own"
                    .to_string()
            )
        );
        assert!(after[1..]
            .iter()
            .all(|(_, r)| r == "after the export's end line (line 5), where an export ends"));
        // A cut export followed by another: the second header is named as one.
        let cut_then_whole: Vec<&[u8]> =
            lines[..2].iter().chain(&lines).map(Vec::as_slice).collect();
        let found = reasons(&input(&cut_then_whole));
        assert_eq!(found[0].0, 3, "{found:?}");
        assert!(
            found[0]
                .1
                .starts_with("a second export starts here (its header), before the first"),
            "{found:?}"
        );
        // A line added: the count says so.
        let added = input(&[
            header,
            &sessions[0],
            &sessions[1],
            &sessions[2],
            &sessions[2],
            end,
        ]);
        let found = reasons(&added);
        assert_eq!(found.last().map(|r| r.0), Some(6), "{found:?}");
        assert!(found
            .last()
            .is_some_and(|r| r.1.ends_with("lines were added since the export")));
        // End lines that are not this export's.
        for (line, reason) in [
            (
                r#"{"end":"sessdb-export","sessions":"3"}"#,
                "not an export's end line: sessions: invalid type: string \"3\", expected u64",
            ),
            (
                r#"{"end":"other","sessions":3}"#,
                "not this export's end line: end is \"other\", where a sessdb export's is \
                 \"sessdb-export\"",
            ),
            (
                r#"{"end":"sessdb-export","sessions":3,"more":1}"#,
                "not an export's end line: unknown field `more`",
            ),
            // Cut short before its last bytes, or with a count no number holds: still an end
            // line, and no session line's complaint.
            (
                r#"{"end":"sessdb-export","sessions":3"#,
                "not an export's end line: truncated: EOF while parsing an object",
            ),
            (
                r#"{ "end":"sessdb-export","sessions":1e400}"#,
                "not an export's end line: number out of range",
            ),
        ] {
            let found = reasons(&input(&[
                header,
                &sessions[0],
                &sessions[1],
                &sessions[2],
                line.as_bytes(),
            ]));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].1.starts_with(reason), "{found:?}");
        }
    }

    /// An export of version 1 has no end line, and imports whole without one.
    #[test]
    fn a_version_1_export_needs_no_end_line() {
        let lines = export();
        let header = String::from_utf8(lines[0].clone()).unwrap();
        assert!(header.contains(r#""version":2"#), "{header}");
        let v1 = header.replace(r#""version":2"#, r#""version":1"#);
        let mut all: Vec<&[u8]> = vec![v1.as_bytes()];
        all.extend(lines[1..4].iter().map(Vec::as_slice));
        let (report, kept) = counted(&input(&all), false);
        assert_eq!((report.bad_lines, kept), (0, 3), "{report:?}");
        // One with an end line is read as well.
        all.push(&lines[4]);
        let (report, kept) = counted(&input(&all), false);
        assert_eq!((report.bad_lines, kept), (0, 3), "{report:?}");
    }

    /// A first line longer than any header ends the import as soon as it passes the limit:
    /// input with no newline (`/dev/zero`, a binary file) is not read to its end first.
    #[test]
    fn a_header_line_over_the_limit_is_not_read_to_its_end() {
        use std::io::Read as _;
        let endless = std::io::repeat(0).take(1 << 40);
        let mut input = std::io::BufReader::new(endless);
        let mut kept = super::Counted::default();
        let report = read_export(&mut input, LIMIT, false, &mut Keep::Count(&mut kept)).unwrap();
        let max = super::max_line(LIMIT);
        assert_eq!(report.bad_lines, 1);
        assert_eq!(
            report.bad[0].reason,
            format!("not a sessdb export header: the line is over {max} bytes long")
        );
        let read = (1u64 << 40) - input.get_ref().limit();
        assert!(read <= max as u64 + 64 * 1024, "read {read} bytes");
    }

    /// A byte order mark before the header, as some editors write, is not JSON: it is left
    /// out, and the export imports.
    #[test]
    fn a_byte_order_mark_before_the_header_is_left_out() {
        let lines = export();
        let header = [&b"\xef\xbb\xbf"[..], &lines[0]].concat();
        let mut all: Vec<&[u8]> = vec![&header];
        all.extend(lines[1..].iter().map(Vec::as_slice));
        let (report, kept) = counted(&input(&all), false);
        assert_eq!((report.bad_lines, kept), (0, 3), "{report:?}");
    }

    /// An error in a typed field names the field, not only the column.
    #[test]
    fn a_bad_field_is_named() {
        let lines = export();
        let line = String::from_utf8(lines[1].clone()).unwrap();
        let at = line.find("\"version\":").unwrap() + "\"version\":".len();
        let end = at + line[at..].find(',').unwrap();
        let bad = format!("{}-1{}", &line[..at], &line[end..]);
        let (report, _) = counted(&whole(&[&lines[0], bad.as_bytes()]), false);
        assert_eq!(report.bad_lines, 1);
        let reason = &report.bad[0].reason;
        assert!(
            reason.starts_with("version: invalid value: integer `-1`, expected u64 at column "),
            "{reason}"
        );
        // Version 0 is a session never saved: no stored session has it.
        let zero = format!("{}0{}", &line[..at], &line[end..]);
        let (report, _) = counted(&whole(&[&lines[0], zero.as_bytes()]), false);
        assert_eq!(
            report.bad[0].reason,
            "version: 0 is not a saved session's version (from 1 to 9223372036854775807)"
        );
        let wraps = format!("{}{}{}", &line[..at], u64::MAX, &line[end..]);
        let (report, _) = counted(&whole(&[&lines[0], wraps.as_bytes()]), false);
        assert!(
            report.bad[0]
                .reason
                .starts_with("version: 18446744073709551615 is not"),
            "{}",
            report.bad[0].reason
        );
        // A line that ends early says so, with no field to name.
        let cut = &line[..line.len() / 2];
        let (report, _) = counted(&whole(&[&lines[0], cut.as_bytes()]), false);
        assert!(
            report.bad[0].reason.starts_with("truncated: "),
            "{}",
            report.bad[0].reason
        );
    }

    /// The temporary file is read back as it was written; a length past the import's limit is
    /// damage, refused before anything is allocated for it.
    #[test]
    fn the_temporary_file_is_read_back_whole_and_a_damaged_one_is_refused() {
        let lines = export();
        let text = input(&lines.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let dir = tempfile::tempdir().unwrap();
        let spool = spooled(&text, dir.path());
        assert_eq!(spool.sessions, 3);
        let mut seen = 0;
        spool
            .replay(false, |_, head, data| {
                assert!(head.created > 0 && !data.is_empty());
                seen += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, 3);

        let mut spool = spooled(&text, dir.path());
        let file = spool.file.as_mut().unwrap();
        file.flush().unwrap();
        let file = file.get_mut();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(&u32::MAX.to_le_bytes()).unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        let err = spool.replay(false, |_, _, _| Ok(())).unwrap_err();
        assert_eq!(
            crate::error::chain(&err),
            format!(
                "I/O error on {}: the import's temporary file could not be read back; nothing \
                 was imported: it is not what the import wrote",
                dir.path().display()
            )
        );
    }

    /// An import whose temporary file fails to read back after the first session was written
    /// says how many it wrote, with the cause: running it again finishes it.
    #[test]
    fn an_import_stopped_part_way_says_how_many_sessions_it_wrote() {
        let lines = export();
        let text = input(&lines.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let opts = super::ImportOptions::default();
        let mut read =
            super::read_import(&mut &text[..], LIMIT, &opts, Some(&dir.path().join("db"))).unwrap();
        // The second session's length, past the limit: damage, found once the first is written.
        let file = read.spool.as_mut().unwrap().file.as_mut().unwrap();
        file.flush().unwrap();
        let file = file.get_mut();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut len = [0u8; 4];
        std::io::Read::read_exact(file, &mut len).unwrap();
        let second = 4 + 16 + u64::from(u32::from_le_bytes(len));
        file.seek(SeekFrom::Start(second)).unwrap();
        file.write_all(&u32::MAX.to_le_bytes()).unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        let err = super::apply_import(&store, read, &opts).unwrap_err();
        assert!(
            matches!(&err, crate::Error::ImportStopped { written: 1, source }
                if matches!(**source, crate::Error::Io { .. })),
            "{err:?}"
        );
        assert_eq!(
            store.stats().unwrap().live + store.stats().unwrap().expired,
            1
        );
    }

    /// An input that counts, each time it is read, the files open in `dir`.
    struct Watched<'a> {
        rest: &'a [u8],
        dir: &'a std::path::Path,
        open: Vec<usize>,
    }

    impl std::io::Read for Watched<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::io::Read::read(&mut self.rest, buf)
        }
    }

    impl std::io::BufRead for Watched<'_> {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            let open = std::fs::read_dir("/proc/self/fd")?
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|file| file.starts_with(self.dir))
                .count();
            self.open.push(open);
            Ok(self.rest)
        }

        fn consume(&mut self, n: usize) {
            self.rest = &self.rest[n..];
        }
    }

    /// Without `skip_bad`, the temporary file of the sessions kept before a bad line is let go
    /// at the next line, not once the input ends: it does not take room in the database's
    /// folder while the rest of the input, a large file or one streamed slowly through the
    /// admin socket, is read and checked for nothing to be written.
    #[test]
    fn the_sessions_kept_before_a_bad_line_are_let_go_before_the_input_ends() {
        let lines = export();
        let text = whole(&[&lines[0], &lines[1], b"{}", &lines[2], &lines[3]]);
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path(), LIMIT);
        let mut input = Watched {
            rest: &text,
            dir: dir.path(),
            open: Vec::new(),
        };
        let report = read_export(&mut input, LIMIT, false, &mut Keep::Spool(&mut spool)).unwrap();
        assert_eq!(report.bad_lines, 1);
        // The first session was kept in a file, seen open while the bad line was read...
        assert!(input.open.contains(&1), "{:?}", input.open);
        // ...and closed before the last lines were.
        assert_eq!(
            input.open[input.open.len() - 2..],
            [0, 0],
            "{:?}",
            input.open
        );
    }

    /// A step writes sessions until the bytes it wrote (the header's, each line's, their
    /// newlines) reach its budget, and then stops: the admin socket holds the store for one
    /// step and buffers what it wrote, so a step that miscounted would hold and buffer more
    /// than a batch (or, counting too much, send a session a batch).
    #[test]
    fn a_step_writes_until_its_budget_is_spent_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_in(dir.path());
        let mut whole = Vec::new();
        store.export(&mut whole, true).unwrap();
        let lines: Vec<&[u8]> = whole.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 5);
        let mut exporter = super::Exporter::new(&store, true);
        let mut step = |budget: usize| {
            let mut out = Vec::new();
            let done = exporter.step(&store, &mut out, budget).unwrap();
            (out, done)
        };
        // The header and the first session spend the budget exactly: the second waits.
        assert_eq!(
            step(lines[0].len() + lines[1].len()),
            ([lines[0], lines[1]].concat(), false)
        );
        // A later step counts from nothing, without the header.
        assert_eq!(step(lines[2].len()), (lines[2].to_vec(), false));
        // The last session may pass the budget; then the end line comes.
        assert_eq!(step(1), ([lines[3], lines[4]].concat(), true));
        assert_eq!(exporter.report.exported, 3);
    }

    /// An export's report counts the records it left out, expired sessions and undecodable
    /// records, apart from the sessions it wrote: `sessctl export` says how many expired
    /// sessions it left out, and fails (bad data) when undecodable records had to be, so that
    /// a backup short of records is not taken for a whole one.
    #[test]
    fn the_export_report_counts_the_records_it_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_ms(NOW);
        let store = Store::builder()
            .clock(clock.clone())
            .open(dir.path().join("db"))
            .unwrap();
        for i in 0..3 {
            let mut s = store.create();
            if i == 0 {
                s.set_idle_timeout(std::time::Duration::from_secs(1));
            }
            s.save().unwrap();
        }
        store
            .inner
            .sessions
            .insert([7u8; 16], &b"\x01garbage"[..])
            .unwrap();
        clock.advance(std::time::Duration::from_secs(2));
        for (include_expired, exported, skipped_expired) in [(false, 2, 1), (true, 3, 0)] {
            let report = store.export(&mut Vec::new(), include_expired).unwrap();
            assert_eq!(
                report,
                super::ExportReport {
                    exported,
                    skipped_expired,
                    undecodable: 1
                }
            );
        }
    }

    /// An import stopped part way counts the sessions it replaced as written, with those it
    /// imported: running it again finishes it, and the count is what the user is told was
    /// already restored.
    #[test]
    fn an_import_stopped_part_way_counts_the_sessions_it_replaced() {
        let lines = export();
        let text = input(&lines.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        // The first session stored with other data: the import replaces it.
        let other = String::from_utf8(lines[1].clone())
            .unwrap()
            .replace("\"n\":", "\"n\":1");
        let first = whole(&[&lines[0], other.as_bytes()]);
        let report = store
            .import(&mut &first[..], &super::ImportOptions::default())
            .unwrap();
        assert_eq!((report.imported, report.bad_lines), (1, 0), "{report:?}");
        let opts = super::ImportOptions {
            on_conflict: super::OnConflict::Replace,
            ..super::ImportOptions::default()
        };
        let mut read =
            super::read_import(&mut &text[..], LIMIT, &opts, Some(&dir.path().join("db"))).unwrap();
        // The third session's length, past the limit: damage, found once two are written.
        let file = read.spool.as_mut().unwrap().file.as_mut().unwrap();
        file.flush().unwrap();
        let file = file.get_mut();
        let mut at = 0;
        for _ in 0..2 {
            file.seek(SeekFrom::Start(at)).unwrap();
            let mut len = [0u8; 4];
            std::io::Read::read_exact(file, &mut len).unwrap();
            at += 4 + 16 + u64::from(u32::from_le_bytes(len));
        }
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&u32::MAX.to_le_bytes()).unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        let err = super::apply_import(&store, read, &opts).unwrap_err();
        assert!(
            matches!(&err, crate::Error::ImportStopped { written: 2, .. }),
            "{err:?}"
        );
    }

    /// The largest version an import takes, i64::MAX, is taken: the range a refusal names
    /// ("from 1 to 9223372036854775807") holds its ends.
    #[test]
    fn the_largest_version_is_taken() {
        let lines = export();
        let line = String::from_utf8(lines[1].clone()).unwrap();
        let at = line.find("\"version\":").unwrap() + "\"version\":".len();
        let end = at + line[at..].find(',').unwrap();
        for (version, bad) in [(i64::MAX as u64, 0), (i64::MAX as u64 + 1, 1)] {
            let text = format!("{}{version}{}", &line[..at], &line[end..]);
            let (report, kept) = counted(&whole(&[&lines[0], text.as_bytes()]), false);
            assert_eq!((report.bad_lines, kept), (bad, 1 - bad), "{report:?}");
        }
    }

    /// The earliest and the latest times sessdb stores, 1970-01-01T00:00:00.000Z and
    /// 9999-12-31T23:59:59.999Z, are taken: a session saved at either end exports and must
    /// import back, where a millisecond earlier is refused.
    #[test]
    fn the_earliest_and_latest_stored_times_are_taken() {
        let lines = export();
        let line: serde_json::Value = serde_json::from_slice(&lines[1]).unwrap();
        let at = |created: &str, expires_at: &str| {
            let mut line = line.clone();
            line["created"] = created.into();
            line["last_access"] = created.into();
            line["idle_timeout_s"] = 1800.into();
            line["absolute_deadline"] = "9999-12-31T23:59:59.999Z".into();
            line["expires_at"] = expires_at.into();
            line.to_string()
        };
        let first = at("1970-01-01T00:00:00.000Z", "1970-01-01T00:30:00.000Z");
        let (report, kept) = counted(&whole(&[&lines[0], first.as_bytes()]), false);
        assert_eq!((report.bad_lines, kept), (0, 1), "{report:?}");
        let before = at("1969-12-31T23:59:59.999Z", "1970-01-01T00:29:59.999Z");
        let (report, _) = counted(&whole(&[&lines[0], before.as_bytes()]), false);
        assert!(
            report.bad[0]
                .reason
                .starts_with("created: \"1969-12-31T23:59:59.999Z\" is before"),
            "{report:?}"
        );
    }

    /// A session as large as the store's size limit imports; one byte over it is refused,
    /// whatever its line's length: a restore into a store of a smaller limit must not hold
    /// sessions that the store would refuse to save.
    #[test]
    fn a_session_at_the_size_limit_is_taken_and_one_byte_over_it_refused() {
        let lines = export();
        let line = std::str::from_utf8(&lines[1]).unwrap();
        let (_, record) = super::parse_line(LIMIT, line).unwrap();
        let text = whole(&[&lines[0], &lines[1]]);
        for (limit, bad) in [(record.len(), 0), (record.len() - 1, 1)] {
            let mut kept = super::Counted::default();
            let report =
                read_export(&mut &text[..], limit, false, &mut Keep::Count(&mut kept)).unwrap();
            assert_eq!(
                (report.bad_lines, kept.sessions),
                (bad, 1 - bad),
                "{report:?}"
            );
        }
    }

    /// A line over the limit is reported as one also when it is the last of the input and no
    /// newline ends it: it is not taken for a blank line and passed over.
    #[test]
    fn an_overlong_last_line_without_a_newline_is_reported() {
        let lines = export();
        let max = super::max_line(LIMIT);
        let mut text = input(&[&lines[0], &lines[1]]);
        text.extend(vec![b'x'; max + 1]);
        let (report, _) = counted(&text, true);
        assert_eq!(report.bad_lines, 2, "{report:?}");
        assert_eq!(
            report.bad[0],
            super::BadLine {
                line: 3,
                reason: format!("line is {} bytes, over the limit of {max}", max + 1)
            }
        );
    }

    /// A session exactly at the import's size limit is read back from the temporary file: only
    /// a length past the limit is damage.
    #[test]
    fn a_session_at_the_size_limit_is_read_back_from_the_temporary_file() {
        let lines = export();
        let line = std::str::from_utf8(&lines[1]).unwrap();
        let (_, record) = super::parse_line(LIMIT, line).unwrap();
        let limit = record.len();
        let text = whole(&[&lines[0], &lines[1]]);
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path(), limit);
        let report =
            read_export(&mut &text[..], limit, false, &mut Keep::Spool(&mut spool)).unwrap();
        assert_eq!((report.bad_lines, spool.sessions), (0, 1), "{report:?}");
        let mut seen = Vec::new();
        spool
            .replay(false, |_, _, data| {
                seen.push(data.len());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.len(), 1);
    }

    /// A dry run writes nothing, so a read-only store takes one; an import into a read-only
    /// store is refused before any of its input is read (or kept in a temporary file).
    #[test]
    fn a_read_only_store_takes_a_dry_run_and_refuses_an_import_before_reading_it() {
        let lines = export();
        let text = input(&lines.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let dir = tempfile::tempdir().unwrap();
        drop(store_in(dir.path()));
        let store = Store::builder()
            .clock(ManualClock::at_ms(NOW))
            .read_only(true)
            .open(dir.path().join("db"))
            .unwrap();
        let dry = super::ImportOptions {
            dry_run: true,
            ..super::ImportOptions::default()
        };
        let report = store.import(&mut &text[..], &dry).unwrap();
        assert_eq!((report.imported, report.written), (3, false), "{report:?}");
        let mut rest = &text[..];
        let err = store
            .import(&mut rest, &super::ImportOptions::default())
            .unwrap_err();
        assert!(matches!(err, crate::Error::ReadOnly { .. }), "{err:?}");
        assert_eq!(rest.len(), text.len(), "the input was read");
    }

    /// An idle timeout of whole seconds exports as an integer, as the schema has it (`1800`,
    /// not `1800.0`); one with a fraction of a second, as a decimal.
    #[test]
    fn an_idle_timeout_of_whole_seconds_exports_as_an_integer() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        for ms in [1_800_000, 2_000, 1_500] {
            let mut s = store.create();
            s.set_idle_timeout(std::time::Duration::from_millis(ms));
            s.save().unwrap();
        }
        let mut out = Vec::new();
        store.export(&mut out, true).unwrap();
        let mut idle: Vec<String> = out
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .filter_map(|line| line.get("idle_timeout_s").map(ToString::to_string))
            .collect();
        idle.sort();
        assert_eq!(idle, ["1.5", "1800", "2"]);
    }

    /// A session's JSON object, what `sessctl show --json` prints, is its export line's.
    #[test]
    fn a_sessions_json_object_is_its_export_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = three_in(dir.path());
        let mut out = Vec::new();
        store.export(&mut out, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = text.lines().nth(1).unwrap();
        let (handle, _) = super::parse_line(LIMIT, line).unwrap();
        let info = store.show(&crate::Target::Handle(handle)).unwrap().unwrap();
        assert_eq!(info.to_json_line(), line);
        let object: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(info.to_json(), object);
    }

    /// A negative idle timeout is no duration, a whole number or not, and is refused as such
    /// even on a line whose expires_at agrees with it: no session expires before its last
    /// access, and a store given one would end it at once.
    #[test]
    fn a_negative_idle_timeout_is_refused() {
        let lines = export();
        let line: serde_json::Value = serde_json::from_slice(&lines[1]).unwrap();
        let last = line["last_access"].as_str().unwrap();
        let last =
            time::OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339)
                .unwrap();
        for (idle, ms) in [
            (serde_json::json!(-1.5), 1500),
            (serde_json::json!(-1), 1000),
        ] {
            let mut bad = line.clone();
            bad["idle_timeout_s"] = idle.clone();
            bad["expires_at"] =
                super::export_timestamp(last - time::Duration::milliseconds(ms)).into();
            let (report, kept) = counted(&whole(&[&lines[0], bad.to_string().as_bytes()]), false);
            assert_eq!((report.bad_lines, kept), (1, 0), "{idle}: {report:?}");
            assert_eq!(
                report.bad[0].reason,
                format!("idle_timeout_s: {idle} is not a duration")
            );
        }
    }
}
