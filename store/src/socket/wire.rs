//! The admin socket's wire format: frames, the handshake, the messages that mirror
//! [`Admin`](crate::Admin), and how errors cross the socket with their kind.
//!
//! A frame is a `u32` big-endian length and that many bytes of postcard, at most
//! [`MAX_FRAME_BYTES`]. Both ends reject anything longer before reading it.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::admin::{Cursor, ListQuery, SessionInfo, Stats, Status};
use crate::check::{CheckReport, RepairReport};
use crate::error::chain;
use crate::error::Error;
use crate::export::{BadLine, ExportReport, ImportOptions, ImportReport};
use crate::id::Handle;
use crate::value::{decode_map, encode_map};

/// The newest protocol version this build speaks. The handshake settles on the newest
/// version both ends speak, and fails cleanly between ends that share none.
///
/// Version 2 differs from version 1 only in an import's answer, whose report counts every bad
/// line ([`ImportReport::bad_lines`]); with a client of version 1, an application answers in
/// version 1's bytes. Version 3 adds one error, a damaged database
/// ([`Error::Damaged`], and sled's `Corruption`), which went as a plain
/// message before (so a client could not tell damage from any other failure); to a client of
/// an older version it still goes as that message. It also adds the lookup of the handles that
/// start with a prefix ([`Admin::handles_starting_with`](crate::Admin::handles_starting_with)),
/// which a client does by a listing's search with an older application. Version 4 differs
/// from version 3 only in an import's answer, whose report counts the sessions it wrote
/// already expired ([`ImportReport::expired`]); older clients get version 2's bytes.
pub const PROTOCOL_VERSION: u32 = 4;

/// The oldest admin socket protocol version this build still speaks.
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;

/// The largest frame either end sends or accepts: 16 MiB. A longer frame closes the connection.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The first bytes of every client hello: a peer that is not a sessdb client fails here.
pub(crate) const MAGIC: [u8; 8] = *b"sessdb\0A";

/// Export and import travel in chunks of this size.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// A listing page is sent in chunks of about this many bytes, so any page size fits in frames.
pub(crate) const LIST_CHUNK_BYTES: usize = 1024 * 1024;

/// The client's first frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) magic: [u8; 8],
    pub(crate) min_version: u32,
    pub(crate) max_version: u32,
}

/// What the server says about itself when it accepts a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServerInfo {
    pub(crate) version: u32,
    pub(crate) pid: u32,
    pub(crate) database: Vec<u8>,
}

/// The server's first frame.
pub(crate) type Welcome = Result<ServerInfo, WireError>;

/// One request per [`Admin`](crate::Admin) method. A target crosses as its handle: a raw
/// session id never leaves the client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    Stats,
    /// A forward listing.
    List(WireQuery),
    Show(Handle),
    Invalidate(Handle),
    InvalidatePrincipal(String),
    /// Answered by zero or more [`Response::PurgeProgress`], then [`Response::Purged`].
    Purge,
    CountExpired,
    /// Answered by zero or more [`Response::ExportChunk`], then [`Response::Exported`].
    Export {
        include_expired: bool,
    },
    /// Followed by the client's [`ImportFrame`]s up to `End` or `Abort`; then one response.
    Import(ImportOptions),
    Check,
    Repair,
    Now,
    /// A [`reverse`](ListQuery::reverse) listing. A variant of its own, added last, so that
    /// `List` keeps the bytes it had before listings could run backward, and a server that
    /// cannot list backward refuses the request (a protocol error) rather than listing forward.
    ListReverse(WireQuery),
    /// The handles that start with `prefix` (protocol version 3).
    HandlesStartingWith {
        prefix: String,
        limit: u64,
    },
}

impl Request {
    /// The request that lists `query`.
    pub(crate) fn list(query: &ListQuery) -> Request {
        let wire = WireQuery {
            principal: query.principal.clone(),
            label: query.label.clone(),
            search: query.search.clone(),
            status: query.status,
            expiring_within: query.expiring_within,
            limit: query.limit,
            after: query.after.clone(),
            scan_budget: query.scan_budget,
        };
        if query.reverse {
            Request::ListReverse(wire)
        } else {
            Request::List(wire)
        }
    }
}

/// A [`ListQuery`] on the wire: its fields in their order as of protocol version 1, without
/// `reverse`, which the request variant carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireQuery {
    principal: Option<String>,
    label: Option<String>,
    search: Option<String>,
    status: Status,
    expiring_within: Option<Duration>,
    limit: usize,
    after: Option<Cursor>,
    scan_budget: usize,
}

impl WireQuery {
    pub(crate) fn into_query(self, reverse: bool) -> ListQuery {
        ListQuery {
            principal: self.principal,
            label: self.label,
            search: self.search,
            status: self.status,
            expiring_within: self.expiring_within,
            limit: self.limit,
            after: self.after,
            scan_budget: self.scan_budget,
            reverse,
        }
    }
}

/// What the client sends after [`Request::Import`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ImportFrame {
    Chunk(Vec<u8>),
    End,
    /// The client could not read its input: the server must write nothing.
    Abort,
}

/// Every answer. Each request ends with exactly one final response (or [`Response::Error`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Stats(Stats),
    /// Part of a listing page; more parts or [`Response::PageEnd`] follow.
    Sessions(Vec<WireSession>),
    PageEnd(Option<Cursor>),
    Session(Option<Box<WireSession>>),
    Invalidated(bool),
    InvalidatedPrincipal(u64),
    PurgeProgress(u64),
    Purged(u64),
    CountExpired(u64),
    ExportChunk(Vec<u8>),
    Exported(ExportReport),
    /// An import's report in protocol version 1 (no count of the bad lines past the named
    /// ones).
    Imported(ImportReportV1),
    Checked(CheckReport),
    Repaired(RepairReport),
    /// Nanoseconds since the Unix epoch.
    Now(i128),
    Error(WireError),
    /// An import's report in protocol versions 2 and 3. Variants are only ever added at the
    /// end: postcard numbers them by position.
    ImportedCounted(ImportReportV2),
    /// The answer to [`Request::HandlesStartingWith`] (protocol version 3).
    Handles(Vec<Handle>),
    /// An import's report in protocol version 4 and later.
    ImportedWithExpired(ImportReport),
}

/// [`ImportReport`] as protocol version 1 carries it: postcard writes a struct's fields by
/// position, so a field added to the report is a new layout, and this one stays as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImportReportV1 {
    imported: u64,
    replaced: u64,
    unchanged: u64,
    skipped: u64,
    bad: Vec<BadLine>,
    written: bool,
}

impl From<ImportReport> for ImportReportV1 {
    fn from(r: ImportReport) -> Self {
        ImportReportV1 {
            imported: r.imported,
            replaced: r.replaced,
            unchanged: r.unchanged,
            skipped: r.skipped,
            bad: r.bad,
            written: r.written,
        }
    }
}

impl From<ImportReportV1> for ImportReport {
    /// A version-1 report counts only the bad lines it names, and no expired sessions.
    fn from(r: ImportReportV1) -> Self {
        ImportReportV2 {
            imported: r.imported,
            replaced: r.replaced,
            unchanged: r.unchanged,
            skipped: r.skipped,
            bad_lines: r.bad.len() as u64,
            bad: r.bad,
            written: r.written,
        }
        .into()
    }
}

/// [`ImportReport`] as protocol versions 2 and 3 carry it: version 1's fields and the count
/// of bad lines, in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImportReportV2 {
    imported: u64,
    replaced: u64,
    unchanged: u64,
    skipped: u64,
    bad: Vec<BadLine>,
    bad_lines: u64,
    written: bool,
}

impl From<ImportReport> for ImportReportV2 {
    fn from(r: ImportReport) -> Self {
        ImportReportV2 {
            imported: r.imported,
            replaced: r.replaced,
            unchanged: r.unchanged,
            skipped: r.skipped,
            bad: r.bad,
            bad_lines: r.bad_lines,
            written: r.written,
        }
    }
}

impl From<ImportReportV2> for ImportReport {
    /// A report of versions 2 and 3 counts no expired sessions.
    fn from(r: ImportReportV2) -> Self {
        ImportReport {
            imported: r.imported,
            replaced: r.replaced,
            unchanged: r.unchanged,
            skipped: r.skipped,
            expired: 0,
            bad: r.bad,
            bad_lines: r.bad_lines,
            written: r.written,
        }
    }
}

/// An import's report as protocol `version` answers it.
pub(crate) fn imported(version: u32, report: ImportReport) -> Response {
    match version {
        4.. => Response::ImportedWithExpired(report),
        2..=3 => Response::ImportedCounted(report.into()),
        _ => Response::Imported(report.into()),
    }
}

impl Response {
    /// The variant's name, for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Response::Stats(_) => "Stats",
            Response::Sessions(_) => "Sessions",
            Response::PageEnd(_) => "PageEnd",
            Response::Session(_) => "Session",
            Response::Invalidated(_) => "Invalidated",
            Response::InvalidatedPrincipal(_) => "InvalidatedPrincipal",
            Response::PurgeProgress(_) => "PurgeProgress",
            Response::Purged(_) => "Purged",
            Response::CountExpired(_) => "CountExpired",
            Response::ExportChunk(_) => "ExportChunk",
            Response::Exported(_) => "Exported",
            Response::Imported(_) => "Imported",
            Response::ImportedCounted(_) => "ImportedCounted",
            Response::ImportedWithExpired(_) => "ImportedWithExpired",
            Response::Handles(_) => "Handles",
            Response::Checked(_) => "Checked",
            Response::Repaired(_) => "Repaired",
            Response::Now(_) => "Now",
            Response::Error(_) => "Error",
        }
    }
}

/// A [`SessionInfo`] on the wire: times as Unix nanoseconds, data in the lossless token
/// encoding of stored records (bytes stay bytes, floats keep their bits).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireSession {
    handle: Handle,
    principal: Option<String>,
    label: Option<String>,
    remote_addr: Option<String>,
    user_agent: Option<String>,
    created: i128,
    last_access: i128,
    idle_timeout: Duration,
    absolute_deadline: i128,
    expires_at: i128,
    version: u64,
    data: Vec<u8>,
    size: u64,
}

impl WireSession {
    /// Roughly how many bytes this takes in a frame, for chunking a page.
    pub(crate) fn weight(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(1, |s| s.len() + 2);
        128 + self.data.len()
            + text(&self.principal)
            + text(&self.label)
            + text(&self.remote_addr)
            + text(&self.user_agent)
    }

    pub(crate) fn into_info(self) -> Result<SessionInfo, String> {
        let time = |what: &str, nanos: i128| {
            OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .map_err(|e| format!("session {}: bad {what} time: {e}", self.handle))
        };
        Ok(SessionInfo {
            handle: self.handle,
            created: time("created", self.created)?,
            last_access: time("last access", self.last_access)?,
            absolute_deadline: time("absolute deadline", self.absolute_deadline)?,
            expires_at: time("expiry", self.expires_at)?,
            data: decode_map(&self.data)
                .map_err(|e| format!("session {}: bad data: {}", self.handle, e.0))?,
            size: usize::try_from(self.size).unwrap_or(usize::MAX),
            idle_timeout: self.idle_timeout,
            version: self.version,
            principal: self.principal,
            label: self.label,
            remote_addr: self.remote_addr,
            user_agent: self.user_agent,
        })
    }
}

impl From<&SessionInfo> for WireSession {
    fn from(s: &SessionInfo) -> Self {
        WireSession {
            handle: s.handle,
            principal: s.principal.clone(),
            label: s.label.clone(),
            remote_addr: s.remote_addr.clone(),
            user_agent: s.user_agent.clone(),
            created: s.created.unix_timestamp_nanos(),
            last_access: s.last_access.unix_timestamp_nanos(),
            idle_timeout: s.idle_timeout,
            absolute_deadline: s.absolute_deadline.unix_timestamp_nanos(),
            expires_at: s.expires_at.unix_timestamp_nanos(),
            version: s.version,
            data: encode_map(&s.data),
            size: s.size as u64,
        }
    }
}

/// A [`crate::Error`] on the wire. Variants that name a kind the CLI acts on (not found,
/// read-only, corrupt, ...) keep their fields, so the client rebuilds the same variant; the
/// rest cross as their message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireError {
    Locked {
        path: Vec<u8>,
    },
    Missing {
        path: Vec<u8>,
    },
    NotADirectory {
        path: Vec<u8>,
    },
    NewerFormat {
        path: Vec<u8>,
        found: u32,
        supported: u32,
    },
    Io {
        path: Vec<u8>,
        os_code: Option<i32>,
        kind: IoKind,
        message: String,
    },
    Corrupt {
        handle: String,
        reason: String,
    },
    /// Only received: sent by applications built before an unknown record format counted as
    /// damage. Kept in its place, since the variants are numbered on the wire.
    NewerRecord {
        handle: String,
        found: u8,
        supported: u8,
    },
    Conflict {
        handle: String,
        expected: u64,
    },
    NotFound {
        handle: String,
    },
    TooLarge {
        handle: String,
        size: u64,
        limit: u64,
    },
    InvalidField {
        field: String,
        reason: String,
    },
    Value {
        key: String,
        reason: String,
    },
    PrincipalLimit {
        principal: String,
        limit: u64,
    },
    ReadOnly {
        operation: String,
    },
    TooManyConflicts {
        handle: String,
        attempts: u32,
    },
    /// The server refused the client (its uid, or too many connections).
    Refused {
        reason: String,
    },
    /// The client broke the protocol (bad version, unexpected frame).
    Protocol {
        reason: String,
    },
    /// The application is closing its store.
    ShuttingDown,
    /// Any other error (storage engine, a failed callback), as its message chain.
    Other {
        message: String,
    },
    /// The database's files are damaged (protocol version 3): [`Error::Damaged`], or sled's
    /// `Corruption` found after the open. Last, since the variants are numbered on the wire.
    Damaged {
        path: Vec<u8>,
        detail: String,
    },
}

/// The I/O error kinds worth keeping when an error has no OS code. A broken pipe on the far
/// side is deliberately not among them: locally it would read as our own output closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum IoKind {
    NotFound,
    PermissionDenied,
    InvalidInput,
    InvalidData,
    UnexpectedEof,
    Other,
}

impl From<io::ErrorKind> for IoKind {
    fn from(k: io::ErrorKind) -> Self {
        match k {
            io::ErrorKind::NotFound => IoKind::NotFound,
            io::ErrorKind::PermissionDenied => IoKind::PermissionDenied,
            io::ErrorKind::InvalidInput => IoKind::InvalidInput,
            io::ErrorKind::InvalidData => IoKind::InvalidData,
            io::ErrorKind::UnexpectedEof => IoKind::UnexpectedEof,
            _ => IoKind::Other,
        }
    }
}

impl From<IoKind> for io::ErrorKind {
    fn from(k: IoKind) -> Self {
        match k {
            IoKind::NotFound => io::ErrorKind::NotFound,
            IoKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            IoKind::InvalidInput => io::ErrorKind::InvalidInput,
            IoKind::InvalidData => io::ErrorKind::InvalidData,
            IoKind::UnexpectedEof => io::ErrorKind::UnexpectedEof,
            IoKind::Other => io::ErrorKind::Other,
        }
    }
}

pub(crate) fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

pub(crate) fn path_from(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        match e {
            Error::Locked { path } => WireError::Locked {
                path: path_bytes(path),
            },
            Error::Missing { path } => WireError::Missing {
                path: path_bytes(path),
            },
            Error::NotADirectory { path } => WireError::NotADirectory {
                path: path_bytes(path),
            },
            Error::NewerFormat {
                path,
                found,
                supported,
            } => WireError::NewerFormat {
                path: path_bytes(path),
                found: *found,
                supported: *supported,
            },
            Error::Io { path, source } => WireError::Io {
                path: path_bytes(path),
                os_code: source.raw_os_error(),
                kind: source.kind().into(),
                message: chain(source),
            },
            Error::Corrupt { handle, reason } => WireError::Corrupt {
                handle: handle.clone(),
                reason: reason.clone(),
            },
            Error::Conflict { handle, expected } => WireError::Conflict {
                handle: handle.clone(),
                expected: *expected,
            },
            Error::NotFound { handle } => WireError::NotFound {
                handle: handle.clone(),
            },
            Error::TooLarge {
                handle,
                size,
                limit,
            } => WireError::TooLarge {
                handle: handle.clone(),
                size: *size as u64,
                limit: *limit as u64,
            },
            Error::InvalidField { field, reason } => WireError::InvalidField {
                field: (*field).to_string(),
                reason: reason.clone(),
            },
            Error::Value { key, reason } => WireError::Value {
                key: key.clone(),
                reason: reason.clone(),
            },
            Error::PrincipalLimit { principal, limit } => WireError::PrincipalLimit {
                principal: principal.clone(),
                limit: *limit as u64,
            },
            Error::ReadOnly { operation } => WireError::ReadOnly {
                operation: (*operation).to_string(),
            },
            Error::TooManyConflicts { handle, attempts } => WireError::TooManyConflicts {
                handle: handle.clone(),
                attempts: *attempts,
            },
            Error::Damaged { path, detail } => WireError::Damaged {
                path: path_bytes(path),
                detail: detail.clone(),
            },
            // Damage that stopped an import part way is damage (sessctl's exit 4 and its
            // advice), its detail saying how far the import got.
            Error::ImportStopped { source, .. } if source.is_damage() => {
                match WireError::from(source.as_ref()) {
                    WireError::Damaged { path, detail } => WireError::Damaged {
                        path,
                        detail: format!("{detail} ({e})"),
                    },
                    other => other,
                }
            }
            // Found after the open, the error names no folder: [`WireError::of`] gives it.
            Error::Storage(e) if e.is_corruption() => WireError::Damaged {
                path: Vec::new(),
                detail: "the storage engine found corrupted data in its files".into(),
            },
            // Storage engine errors, failed callbacks, transport errors of a nested client,
            // and variants added later: their message is all that can cross.
            other => WireError::Other {
                message: chain(other),
            },
        }
    }
}

impl WireError {
    /// The error `e` of a request on the application's `database`, as protocol `version`
    /// carries it: versions before 3 have no `Damaged`, and get its message.
    pub(crate) fn of(e: &Error, database: &Path, version: u32) -> WireError {
        match WireError::from(e) {
            WireError::Damaged { path, detail } => {
                let path = if path.is_empty() {
                    path_bytes(database)
                } else {
                    path
                };
                if version < 3 {
                    WireError::Other {
                        message: format!(
                            "the database at {} is damaged: {detail}",
                            path_from(path).display()
                        ),
                    }
                } else {
                    WireError::Damaged { path, detail }
                }
            }
            other => other,
        }
    }
}

/// One of `known`, or `fallback`: the library's errors name fields and operations with static
/// strings, and a peer's text must not be leaked to make one.
fn known(text: &str, known: &[&'static str], fallback: &'static str) -> &'static str {
    known
        .iter()
        .find(|k| **k == text)
        .copied()
        .unwrap_or(fallback)
}

impl WireError {
    /// The local error this wire error stands for; `socket` names the connection for the
    /// transport-level variants.
    pub(crate) fn into_error(self, socket: &Path) -> Error {
        let socket = socket.to_path_buf();
        match self {
            WireError::Locked { path } => Error::Locked {
                path: path_from(path),
            },
            WireError::Missing { path } => Error::Missing {
                path: path_from(path),
            },
            WireError::NotADirectory { path } => Error::NotADirectory {
                path: path_from(path),
            },
            WireError::NewerFormat {
                path,
                found,
                supported,
            } => Error::NewerFormat {
                path: path_from(path),
                found,
                supported,
            },
            WireError::Io {
                path,
                os_code,
                kind,
                message,
            } => Error::Io {
                path: path_from(path),
                source: match os_code {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(kind.into(), message),
                },
            },
            WireError::Corrupt { handle, reason } => Error::Corrupt { handle, reason },
            // Sent by applications built before a format byte this build does not know counted
            // as damage (see `record::DecodeError`).
            WireError::NewerRecord {
                handle,
                found,
                supported,
            } => Error::Corrupt {
                handle,
                reason: format!(
                    "record format {found} is newer than the application's sessdb reads \
                     ({supported})"
                ),
            },
            WireError::Conflict { handle, expected } => Error::Conflict { handle, expected },
            WireError::NotFound { handle } => Error::NotFound { handle },
            WireError::TooLarge {
                handle,
                size,
                limit,
            } => Error::TooLarge {
                handle,
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            WireError::InvalidField { field, reason } => Error::InvalidField {
                field: known(
                    &field,
                    &["principal", "label", "remote address", "user agent"],
                    "field",
                ),
                reason,
            },
            WireError::Value { key, reason } => Error::Value { key, reason },
            WireError::PrincipalLimit { principal, limit } => Error::PrincipalLimit {
                principal,
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            WireError::ReadOnly { operation } => Error::ReadOnly {
                operation: known(
                    &operation,
                    &[
                        "save",
                        "cycle_id",
                        "invalidate",
                        "invalidate_principal",
                        "purge",
                        "import",
                        "repair",
                    ],
                    "the operation",
                ),
            },
            WireError::TooManyConflicts { handle, attempts } => {
                Error::TooManyConflicts { handle, attempts }
            }
            WireError::Refused { reason } => Error::Refused {
                path: socket,
                reason,
            },
            WireError::Protocol { reason } => Error::Protocol {
                path: socket,
                reason: format!("the application says: {reason}"),
            },
            WireError::ShuttingDown => Error::Disconnected { path: socket },
            WireError::Other { message } => Error::Remote { message },
            WireError::Damaged { path, detail } => Error::Damaged {
                path: path_from(path),
                detail,
            },
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// The length prefix is over [`MAX_FRAME_BYTES`].
    TooLarge(u32),
    /// The connection failed or ended inside a frame.
    Io(io::Error),
}

/// Reads one frame into `buf`. The body is read as it arrives, so a length prefix alone
/// allocates nothing.
pub(crate) fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len);
    if len as usize > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    buf.clear();
    r.take(u64::from(len))
        .read_to_end(buf)
        .map_err(FrameError::Io)?;
    if buf.len() != len as usize {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Decodes a whole frame body; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} unexpected bytes after the message", rest.len())),
        Err(e) => Err(format!("malformed message: {e}")),
    }
}

/// A message as one frame (length prefix included), or `None` if it is over the limit.
pub(crate) fn encode_frame<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    let mut out = postcard::to_extend(value, vec![0u8; 4]).ok()?;
    let len = u32::try_from(out.len() - 4).ok()?;
    if len as usize > MAX_FRAME_BYTES {
        return None;
    }
    out[..4].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

/// Writes one frame; a message over the limit is an `InvalidData` error and nothing is sent.
pub(crate) fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let frame = encode_frame(value).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message over the frame limit of {MAX_FRAME_BYTES} bytes"),
        )
    })?;
    w.write_all(&frame)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The import answers of versions 1 to 3 keep their bytes: the variant's index and the
    /// report's fields in their order, whatever `ImportReport` gains.
    #[test]
    fn the_older_import_answers_keep_their_layouts() {
        let bad = vec![BadLine {
            line: 7,
            reason: "x".into(),
        }];
        let report = ImportReport {
            imported: 1,
            replaced: 2,
            unchanged: 3,
            skipped: 4,
            expired: 6,
            bad: bad.clone(),
            bad_lines: 5,
            written: true,
        };
        let bytes = postcard::to_allocvec(&imported(1, report.clone())).unwrap();
        let fields = postcard::to_allocvec(&(1u64, 2u64, 3u64, 4u64, bad, true)).unwrap();
        assert_eq!(bytes[0], 11, "Imported is the twelfth variant");
        assert_eq!(&bytes[1..], &fields[..]);
        let back: ImportReport = match decode::<Response>(&bytes) {
            Ok(Response::Imported(r)) => r.into(),
            other => panic!("{other:?}"),
        };
        assert_eq!((back.bad_lines, back.bad_total(), back.expired), (1, 1, 0));
        // Versions 2 and 3: version 1's fields and the count of bad lines.
        for version in [2, 3] {
            let bytes = postcard::to_allocvec(&imported(version, report.clone())).unwrap();
            let fields =
                postcard::to_allocvec(&(1u64, 2u64, 3u64, 4u64, &report.bad, 5u64, true)).unwrap();
            assert_eq!(bytes[0], 16, "ImportedCounted is the seventeenth variant");
            assert_eq!(&bytes[1..], &fields[..]);
            match decode::<Response>(&bytes) {
                Ok(Response::ImportedCounted(r)) => assert_eq!(
                    ImportReport::from(r),
                    ImportReport {
                        expired: 0,
                        ..report.clone()
                    }
                ),
                other => panic!("{other:?}"),
            }
        }
        // Version 4: those and the expired count, after `skipped`. A field added to
        // `ImportReport` changes these bytes, and so needs a version of its own.
        let bytes = postcard::to_allocvec(&imported(4, report.clone())).unwrap();
        let fields =
            postcard::to_allocvec(&(1u64, 2u64, 3u64, 4u64, 6u64, &report.bad, 5u64, true))
                .unwrap();
        assert_eq!(
            bytes[0], 18,
            "ImportedWithExpired is the nineteenth variant"
        );
        assert_eq!(&bytes[1..], &fields[..]);
        match decode::<Response>(&bytes) {
            Ok(Response::ImportedWithExpired(r)) => assert_eq!(r, report),
            other => panic!("{other:?}"),
        }
    }

    /// Damage that stopped an import part way crosses as damage, saying how far it got.
    #[test]
    fn an_import_stopped_by_damage_crosses_as_damage() {
        let stopped = Error::ImportStopped {
            written: 7,
            source: Box::new(crate::error::storage(sled::Error::Corruption {
                at: None,
                bt: (),
            })),
        };
        let back =
            WireError::of(&stopped, Path::new("/db"), PROTOCOL_VERSION).into_error(Path::new("/s"));
        assert!(back.is_damage(), "{back:?}");
        assert!(
            back.to_string()
                .contains("the import stopped after writing 7 of its sessions"),
            "{back}"
        );
    }
    use proptest::prelude::*;

    #[test]
    fn frames_roundtrip_and_oversized_ones_are_refused_before_reading() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &Request::InvalidatePrincipal("alice".into())).unwrap();
        let mut buf = Vec::new();
        read_frame(&mut bytes.as_slice(), &mut buf).unwrap();
        assert!(matches!(
            decode::<Request>(&buf),
            Ok(Request::InvalidatePrincipal(p)) if p == "alice"
        ));
        let huge = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut huge.as_slice(), &mut buf),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            read_frame(&mut &[][..], &mut buf),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 9, 1][..], &mut buf),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
    }

    #[test]
    fn a_forward_listing_keeps_its_version_1_bytes_and_a_reverse_one_has_its_own_variant() {
        let mut query = ListQuery {
            principal: Some("alice".into()),
            label: None,
            search: Some("ab".into()),
            status: Status::Expired,
            expiring_within: Some(Duration::from_millis(1500)),
            limit: 300,
            after: Some(Cursor(vec![1, 2])),
            scan_budget: 9,
            reverse: false,
        };
        // What a client sent before `reverse` existed, for this query.
        let version_1 = [
            1, 1, 5, 97, 108, 105, 99, 101, 0, 1, 2, 97, 98, 1, 1, 1, 128, 202, 181, 238, 1, 172,
            2, 1, 2, 1, 2, 9,
        ];
        let forward = postcard::to_allocvec(&Request::list(&query)).unwrap();
        assert_eq!(forward, version_1);
        query.reverse = true;
        let reverse = postcard::to_allocvec(&Request::list(&query)).unwrap();
        assert_ne!(reverse[0], version_1[0]);
        assert_eq!(reverse[1..], version_1[1..]);
        match decode::<Request>(&reverse) {
            Ok(Request::ListReverse(wire)) => assert_eq!(wire.into_query(true), query),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_over_the_limit_is_not_sent() {
        let chunk = Response::ExportChunk(vec![0; MAX_FRAME_BYTES]);
        let mut out = Vec::new();
        assert!(write_frame(&mut out, &chunk).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let socket = Path::new("/run/app/admin.sock");
        let cases = [
            Error::NotFound {
                handle: "ab".into(),
            },
            Error::ReadOnly { operation: "purge" },
            Error::Corrupt {
                handle: "cd".into(),
                reason: "truncated".into(),
            },
            Error::Io {
                path: "export output".into(),
                source: io::Error::from_raw_os_error(28),
            },
        ];
        for e in cases {
            let wire: WireError =
                decode(&postcard::to_allocvec(&WireError::from(&e)).unwrap()).expect("decodes");
            let back = wire.into_error(socket);
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e:?} came back as {back:?}"
            );
        }
        let storage = crate::error::storage(sled::Error::Unsupported("no".into()));
        match WireError::from(&storage).into_error(socket) {
            Error::Remote { message } => assert!(message.starts_with("storage engine error")),
            other => panic!("{other:?}"),
        }
        // An application built before unknown record formats counted as damage still says
        // "newer": it arrives as the damage it is.
        let newer = WireError::NewerRecord {
            handle: "ef".into(),
            found: 200,
            supported: 2,
        };
        match newer.into_error(socket) {
            Error::Corrupt { handle, reason } => assert_eq!(
                (handle.as_str(), reason.as_str()),
                (
                    "ef",
                    "record format 200 is newer than the application's sessdb reads (2)"
                )
            ),
            other => panic!("{other:?}"),
        }
        // A peer's text never becomes a static string of ours.
        let odd = WireError::ReadOnly {
            operation: "x".repeat(5),
        };
        assert!(matches!(
            odd.into_error(socket),
            Error::ReadOnly {
                operation: "the operation"
            }
        ));
    }

    /// Damage reaches a client of version 3 as damage (sessctl's exit 4 and its advice; a
    /// reviewer found it arriving as a plain message, exit 5), with the application's folder
    /// when the error had none; an older client gets the message it always got.
    #[test]
    fn damage_crosses_as_damage_to_clients_that_know_it() {
        let socket = Path::new("/run/app/admin.sock");
        let database = Path::new("/srv/app/sessions.sessdb");
        let damaged = Error::Damaged {
            path: database.into(),
            detail: "a sled panic".into(),
        };
        let corruption = crate::error::storage(sled::Error::Corruption { at: None, bt: () });
        for e in [&damaged, &corruption] {
            let wire: WireError =
                decode(&postcard::to_allocvec(&WireError::of(e, database, 3)).unwrap())
                    .expect("decodes");
            let back = wire.into_error(socket);
            assert!(back.is_damage(), "{e:?} came back as {back:?}");
            assert!(
                back.to_string()
                    .starts_with("the database at /srv/app/sessions.sessdb is damaged: "),
                "{back}"
            );
            match WireError::of(e, database, 2).into_error(socket) {
                Error::Remote { message } => assert!(
                    message.starts_with("the database at /srv/app/sessions.sessdb is damaged: "),
                    "{message}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Every message either side decodes from its peer.
    fn decode_every_message(body: &[u8]) {
        let _ = decode::<Hello>(body);
        let _ = decode::<Request>(body);
        let _ = decode::<ImportFrame>(body);
        let _ = decode::<Response>(body);
        let _ = decode::<Welcome>(body);
    }

    proptest! {
        /// Arbitrary bytes as a frame's body, and framed (a length prefix that fits around the
        /// first `cut` of them, the rest read as the next frames): random bytes alone almost
        /// never make a length prefix that fits, so the framed decoders were never reached.
        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            cut in any::<proptest::sample::Index>(),
        ) {
            decode_every_message(&bytes);
            let body = &bytes[..cut.index(bytes.len() + 1)];
            let mut framed = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let (mut input, mut buf, mut frames) = (framed.as_slice(), Vec::new(), 0);
            while read_frame(&mut input, &mut buf).is_ok() {
                decode_every_message(&buf);
                frames += 1;
            }
            prop_assert!(frames >= 1);
        }

        /// Real messages with bytes changed: the decoders' deeper paths, which random bytes
        /// rarely reach past a variant's index.
        #[test]
        fn damaged_messages_never_panic_the_decoders(
            which in 0usize..6,
            changes in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let query = ListQuery {
                principal: Some("alice".into()),
                label: Some("web".into()),
                limit: 10,
                ..ListQuery::default()
            };
            let mut body = match which {
                0 => postcard::to_allocvec(&Hello {
                    magic: *b"sessdb\0\0",
                    min_version: 1,
                    max_version: PROTOCOL_VERSION,
                }),
                1 => postcard::to_allocvec(&Request::list(&query)),
                2 => postcard::to_allocvec(&ImportFrame::Chunk(b"{\"format\"}\n".to_vec())),
                3 => postcard::to_allocvec(&Response::Handles(vec![Handle::from_slice(&[7; 16]).unwrap()])),
                4 => postcard::to_allocvec(&Response::PageEnd(None)),
                _ => postcard::to_allocvec(&Welcome::Ok(ServerInfo {
                    version: PROTOCOL_VERSION,
                    pid: 42,
                    database: b"/srv/app/sessions.sessdb".to_vec(),
                })),
            }
            .unwrap();
            for (at, byte) in changes {
                let at = at.index(body.len());
                body[at] = byte;
            }
            decode_every_message(&body);
        }
    }
}
