//! The admin interface: every operator action (stats, list, show, invalidate, purge, export,
//! import, check) as one trait, so sessctl, its TUI and the admin socket share one code path.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, Write};
use std::ops::Bound;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::check::{CheckReport, RepairReport};
use crate::clock::{duration_ms, from_ms, ms_duration};
use crate::error::{Error, Result, SledResult as _};
use crate::export::{ExportReport, ImportOptions, ImportReport};
use crate::id::{Handle, SessionId};
use crate::keys::{
    expiry_bucket_start, expiry_key, parse_expiry_key, parse_principal_key, principal_prefix,
};
use crate::record::{decode_head, Record};
use crate::session::validate_principal;
use crate::store::Store;
use crate::value::Value;

/// A session as an operator names it: by handle (from `sessctl list`) or by raw id (pasted
/// from a cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A storage handle.
    Handle(Handle),
    /// A session id; only its hash is used.
    Id(SessionId),
}

impl Target {
    /// The handle this target names.
    pub fn handle(&self) -> Handle {
        match self {
            Target::Handle(h) => *h,
            Target::Id(id) => id.handle(),
        }
    }
}

impl FromStr for Target {
    type Err = Error;

    /// 32 hex characters are a handle, so a session id in the UUID's simple form (no hyphens)
    /// reads as one: to take it for an id, parse it as a [`SessionId`] (sessctl tries that
    /// when no session has the handle). A session id is a UUID (its `Display` form, which an
    /// application using sessdb directly puts in its cookie), or 22 characters of unpadded
    /// base64url: the id's 16 bytes as tower-sessions writes them in its cookie, which
    /// `tower-sessions-sessdb` keeps unchanged as the session id.
    ///
    /// ```
    /// use sessdb::{SessionId, Target};
    ///
    /// let id: SessionId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse()?;
    /// let cookie = "Z-VQRBCxQm-SR7toDl_gyA"; // the same 16 bytes, as tower-sessions shows them
    /// assert_eq!(cookie.parse::<Target>()?, Target::Id(id));
    /// assert_eq!(id.handle().to_string().parse::<Target>()?, Target::Handle(id.handle()));
    /// # Ok::<(), sessdb::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        use base64::Engine as _;
        let t = s.trim();
        if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return t.parse().map(Target::Handle);
        }
        if t.len() == 22 {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t);
            if let Ok(bytes) = <[u8; 16]>::try_from(bytes.unwrap_or_default()) {
                return Ok(Target::Id(SessionId::from_bytes(bytes)));
            }
        }
        t.parse().map(Target::Id).map_err(|_| Error::InvalidId {
            what: "handle or session id",
            input: crate::error::shorten(s),
            reason: "expected a 32-character hex handle, a UUID session id, or a tower-sessions \
                     cookie's 22-character id",
        })
    }
}

/// Everything about one session that an operator may see: the export's record schema.
///
/// Its `Debug` shows the data's keys, not their values (a token, say), as `Session`'s shows
/// none: a `{:?}` in a log line must not copy a session's secrets into the log.
#[derive(Clone, PartialEq)]
pub struct SessionInfo {
    /// The storage handle.
    pub handle: Handle,
    /// The principal, if any.
    pub principal: Option<String>,
    /// The label, if any.
    pub label: Option<String>,
    /// The client's remote address, if recorded.
    pub remote_addr: Option<String>,
    /// The client's user agent, if recorded.
    pub user_agent: Option<String>,
    /// When the session was created.
    pub created: OffsetDateTime,
    /// When it was last saved or touched.
    pub last_access: OffsetDateTime,
    /// Its idle timeout.
    pub idle_timeout: Duration,
    /// Its absolute deadline.
    pub absolute_deadline: OffsetDateTime,
    /// `min(last_access + idle_timeout, absolute_deadline)`.
    pub expires_at: OffsetDateTime,
    /// The record's version.
    pub version: u64,
    /// The data.
    pub data: BTreeMap<String, Value>,
    /// The encoded size in bytes.
    pub size: usize,
}

impl std::fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field but the data's values.
        let SessionInfo {
            handle,
            principal,
            label,
            remote_addr,
            user_agent,
            created,
            last_access,
            idle_timeout,
            absolute_deadline,
            expires_at,
            version,
            data,
            size,
        } = self;
        f.debug_struct("SessionInfo")
            .field("handle", handle)
            .field("principal", principal)
            .field("label", label)
            .field("remote_addr", remote_addr)
            .field("user_agent", user_agent)
            .field("created", created)
            .field("last_access", last_access)
            .field("idle_timeout", idle_timeout)
            .field("absolute_deadline", absolute_deadline)
            .field("expires_at", expires_at)
            .field("version", version)
            .field("data_keys", &data.keys().collect::<Vec<_>>())
            .field("size", size)
            .finish()
    }
}

impl SessionInfo {
    pub(crate) fn from_record(handle: Handle, record: Record, size: usize) -> Self {
        let h = record.head;
        SessionInfo {
            handle,
            principal: h.principal,
            label: h.label,
            remote_addr: h.remote_addr,
            user_agent: h.user_agent,
            created: from_ms(h.created),
            last_access: from_ms(h.last_access),
            idle_timeout: ms_duration(h.idle_timeout_ms),
            absolute_deadline: from_ms(h.absolute_deadline),
            expires_at: from_ms(h.expires_at),
            version: h.version,
            data: record.data,
            size,
        }
    }

    /// Whether the session is expired at `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }
}

/// Which sessions a listing includes, by expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Status {
    /// Only sessions that have not expired.
    #[default]
    Live,
    /// Only expired sessions not yet purged.
    Expired,
    /// Both.
    All,
}

/// What to list. Filters the indexes serve (principal, expiry) are fast at any size; the
/// others (label, search text) read records until a page is full or the scan budget is spent.
///
/// A listing runs forward from the start of the index range it uses, or with
/// [`reverse`](ListQuery::reverse) backward from its end, so the last page of a million
/// sessions costs what the first does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Only sessions of this principal (served by the principal index). One no session can
    /// have (empty, too long, or with a NUL character) matches nothing.
    pub principal: Option<String>,
    /// Only sessions with exactly this label.
    pub label: Option<String>,
    /// Only sessions whose principal or label starts with this text, or whose handle does.
    pub search: Option<String>,
    /// Live, expired or both.
    pub status: Status,
    /// Only live sessions expiring within this long.
    pub expiring_within: Option<Duration>,
    /// Page size (0 means 100). Through an admin socket the application sends at most 10,000
    /// sessions a page, whatever this asks; the page's [`next`](Page::next) continues.
    pub limit: usize,
    /// Continue after this cursor (from the previous page): past it in the listing's
    /// direction, so before it when [`reverse`](ListQuery::reverse) is set.
    pub after: Option<Cursor>,
    /// Stop after reading this many index entries even if the page is not full (0: no limit),
    /// so that a selective filter on a huge store answers in bounded time.
    pub scan_budget: usize,
    /// List from the end backward: the last sessions first, each page's
    /// [`next`](Page::next) continuing towards the start. A cursor marks a position in the
    /// index, so one from a forward page continues backward from there too (the session it
    /// stopped at is in neither direction's continuation).
    #[serde(default)]
    pub reverse: bool,
}

impl ListQuery {
    /// The page size a listing with this query has: [`ListQuery::limit`], or 100 for 0. The
    /// client holds a server to it, so both sides take it from here.
    pub(crate) fn page_size(&self) -> usize {
        if self.limit == 0 {
            100
        } else {
            self.limit
        }
    }
}

/// Where a listing stopped; pass it back in [`ListQuery::after`] for the next page (in the
/// same direction, or the other one with [`ListQuery::reverse`] changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub(crate) Vec<u8>);

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The sessions, in the order of the index the listing walks: by principal and handle when
    /// filtered by principal, otherwise by expiry entry, which is the deadline to 10 seconds,
    /// except that a session whose deadline a save moved later by up to 5 minutes keeps its
    /// entry, and its place, at the earlier deadline. In the opposite order for a
    /// [`reverse`](ListQuery::reverse) listing. Which sessions match is exact either way: each
    /// is checked against its record.
    pub sessions: Vec<SessionInfo>,
    /// Where to continue (in the same direction), or `None` when the listing is complete.
    pub next: Option<Cursor>,
}

/// Counts and sizes of a store.
///
/// Exact: one pass over the records, each decoded whole, and none over the indexes, so crash
/// leftovers in the indexes (see [`check`](Admin::check)) count for nothing. The pass is the
/// cost, about 6–9 s per million sessions of the demo's size (~1.5 KB on disk each) in a
/// release build (about 2 s for small ones), bound by sled's iteration rather than by
/// decoding: counting the index keys instead measured about twice as fast with a warm
/// cache, but cannot see a record that has no entries or does not decode. A caller with a
/// screen to keep live counts on another thread (the TUI does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Sessions that have not expired.
    pub live: u64,
    /// Expired sessions not yet purged.
    pub expired: u64,
    /// Records that cannot be decoded (as [`check`](Admin::check) finds them).
    pub undecodable: u64,
    /// Distinct principals of the stored sessions, live or expired (an expired session keeps
    /// its principal until it is purged). Counted by 64-bit hashes of the names, so two
    /// principals could count as one, at odds of about 1 in 40 million for a million names.
    pub principals: u64,
    /// Bytes the database takes on disk.
    pub bytes_on_disk: u64,
    /// The database's format version: 2 once a writable open in periodic durability has
    /// upgraded it, [`FORMAT_VERSION`](crate::FORMAT_VERSION) once one in immediate durability
    /// has (it may then hold a commit journal).
    pub format_version: u32,
}

/// Every operator action, over any transport (the database opened directly, or a running
/// application's admin socket).
///
/// `Send + Sync`, so that a caller (the TUI) can count on a worker thread while it keeps
/// answering keys.
pub trait Admin: Send + Sync {
    /// Counts and sizes.
    ///
    /// # Errors
    /// Storage or transport errors.
    fn stats(&self) -> Result<Stats>;
    /// One page of sessions.
    ///
    /// # Errors
    /// Storage or transport errors.
    fn list(&self, query: &ListQuery) -> Result<Page>;
    /// One session, expired or not, or `None` if there is no such record.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if its record cannot be decoded; storage or transport errors.
    fn show(&self, target: &Target) -> Result<Option<SessionInfo>>;
    /// Invalidates one session; returns whether it existed.
    ///
    /// # Errors
    /// Storage or transport errors; [`Error::ReadOnly`].
    fn invalidate(&self, target: &Target) -> Result<bool>;
    /// Invalidates every session of a principal; returns how many live sessions it ended (its
    /// expired ones are removed too, uncounted; see [`Store::invalidate_principal`]).
    ///
    /// # Errors
    /// Storage or transport errors; [`Error::ReadOnly`].
    fn invalidate_principal(&self, principal: &str) -> Result<usize>;
    /// Removes expired sessions; returns how many. `progress` gets the running total.
    ///
    /// # Errors
    /// Storage or transport errors; [`Error::ReadOnly`].
    fn purge(&self, progress: &mut dyn FnMut(u64)) -> Result<u64>;
    /// How many sessions a purge would remove now.
    ///
    /// # Errors
    /// Storage or transport errors.
    fn count_expired(&self) -> Result<u64>;
    /// Writes the export (JSON Lines) to `out`.
    ///
    /// # Errors
    /// Storage, transport or write errors.
    fn export(&self, out: &mut dyn Write, include_expired: bool) -> Result<ExportReport>;
    /// Reads an export from `input` and restores its sessions, as they were: the per-principal
    /// limit is not applied (see
    /// [`Builder::max_sessions_per_principal`](crate::Builder::max_sessions_per_principal)).
    ///
    /// # Errors
    /// Read errors, storage or transport errors; [`Error::ImportStopped`] wrapping the error
    /// that stopped an import after it had written some sessions (through an admin socket,
    /// its message). Bad lines are not errors: they are in the report, and nothing is written
    /// when there are any (unless `skip_bad`).
    fn import(&self, input: &mut dyn BufRead, options: &ImportOptions) -> Result<ImportReport>;
    /// Verifies records and indexes.
    ///
    /// # Errors
    /// Storage or transport errors.
    fn check(&self) -> Result<CheckReport>;
    /// Rebuilds the indexes from the records and removes undecodable records.
    ///
    /// # Errors
    /// Storage or transport errors; [`Error::ReadOnly`].
    fn repair(&self) -> Result<RepairReport>;
    /// The current time of the store's clock.
    fn now(&self) -> OffsetDateTime;
    /// The handles that start with `prefix` (hex, either case), in order, at most `limit` of
    /// them; every record counts, expired ones too. What a handle cut short names (the TUI
    /// shows 8 characters): a store looks it up in its records' key order, as fast at a million
    /// sessions as at a hundred. This default (for other implementations, and for an
    /// application whose admin socket predates the lookup) searches a listing, which reads
    /// every session.
    ///
    /// # Errors
    /// Storage or transport errors.
    fn handles_starting_with(&self, prefix: &str, limit: usize) -> Result<Vec<Handle>> {
        handles_by_search(self, prefix, limit)
    }
}

/// [`Admin::handles_starting_with`] by a listing's search, which reads every session.
pub(crate) fn handles_by_search<A: Admin + ?Sized>(
    admin: &A,
    prefix: &str,
    limit: usize,
) -> Result<Vec<Handle>> {
    let prefix = prefix.to_ascii_lowercase();
    let mut query = ListQuery {
        search: Some(prefix.clone()),
        status: Status::All,
        limit: 1000,
        ..ListQuery::default()
    };
    let mut found: Vec<Handle> = Vec::new();
    while found.len() < limit {
        let page = admin.list(&query)?;
        for s in &page.sessions {
            // The search also matches principals and labels; only handles count here.
            if s.handle.to_string().starts_with(&prefix) && !found.contains(&s.handle) {
                found.push(s.handle);
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    found.truncate(limit);
    Ok(found)
}

/// Every call is guarded: sled 0.34 panics on some damaged pages instead of returning an
/// error, also after the open (a pass over the records, a node split while reading), and an
/// operator's call meets damage first. Such a panic is [`Error::Damaged`], as at the open.
impl Admin for Store {
    fn stats(&self) -> Result<Stats> {
        self.unpanicked(|| self.admin_stats())
    }

    fn list(&self, query: &ListQuery) -> Result<Page> {
        self.unpanicked(|| list(self, query))
    }

    fn show(&self, target: &Target) -> Result<Option<SessionInfo>> {
        self.unpanicked(|| self.admin_show(target))
    }

    fn invalidate(&self, target: &Target) -> Result<bool> {
        self.unpanicked(|| self.invalidate_handle(&target.handle()))
    }

    fn invalidate_principal(&self, principal: &str) -> Result<usize> {
        self.unpanicked(|| Store::invalidate_principal(self, principal))
    }

    fn handles_starting_with(&self, prefix: &str, limit: usize) -> Result<Vec<Handle>> {
        self.unpanicked(|| self.handles_with_prefix(prefix, limit))
    }

    fn purge(&self, progress: &mut dyn FnMut(u64)) -> Result<u64> {
        self.unpanicked(|| self.purge_expired_with(progress))
    }

    fn count_expired(&self) -> Result<u64> {
        self.unpanicked(|| Store::count_expired(self))
    }

    fn export(&self, out: &mut dyn Write, include_expired: bool) -> Result<ExportReport> {
        self.unpanicked(|| crate::export::export(self, out, include_expired))
    }

    fn import(&self, input: &mut dyn BufRead, options: &ImportOptions) -> Result<ImportReport> {
        self.unpanicked(|| crate::export::import(self, input, options))
    }

    fn check(&self) -> Result<CheckReport> {
        self.unpanicked(|| crate::check::check(self))
    }

    fn repair(&self) -> Result<RepairReport> {
        self.unpanicked(|| crate::check::repair(self))
    }

    fn now(&self) -> OffsetDateTime {
        from_ms(Store::now(self))
    }
}

/// The bodies of the `Admin` calls that have their own.
impl Store {
    /// [`Admin::handles_starting_with`]: the records whose key starts with the prefix's whole
    /// bytes, kept if their handle starts with the prefix (a last odd hex digit included).
    fn handles_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Handle>> {
        let prefix = prefix.to_ascii_lowercase();
        if limit == 0 || prefix.len() > 32 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        // ASCII hex, checked above: every pair of characters is a byte.
        let whole: Vec<u8> = (0..prefix.len() / 2)
            .filter_map(|i| u8::from_str_radix(&prefix[2 * i..2 * i + 2], 16).ok())
            .collect();
        let mut found = Vec::new();
        for key in self.inner.sessions.scan_prefix(&whole).keys() {
            let Some(handle) = Handle::from_slice(&key.storage()?) else {
                continue;
            };
            if handle.to_string().starts_with(&prefix) {
                found.push(handle);
                if found.len() == limit {
                    break;
                }
            }
        }
        Ok(found)
    }
}

impl Store {
    fn admin_stats(&self) -> Result<Stats> {
        let now = self.now();
        let mut stats = Stats {
            live: 0,
            expired: 0,
            undecodable: 0,
            principals: 0,
            bytes_on_disk: folder_size(&self.inner.dir)?,
            format_version: self.inner.format,
        };
        // One pass over the records and none over the indexes (see `Stats` for why).
        let mut principals = HashSet::new();
        for item in self.inner.sessions.iter() {
            let (k, v) = item.storage()?;
            // The whole record, as load and check decode it: a record whose data is damaged
            // is undecodable, not a live session that nothing can load; so is one under a key
            // that is no handle.
            let record = match Record::decode(&v) {
                Ok(r) if Handle::from_slice(&k).is_some() => r,
                _ => {
                    stats.undecodable += 1;
                    continue;
                }
            };
            if record.head.is_expired(now) {
                stats.expired += 1;
            } else {
                stats.live += 1;
            }
            if let Some(p) = &record.head.principal {
                // A hash, not the name: 8 bytes per principal however long the names are.
                let mut h = DefaultHasher::new();
                p.hash(&mut h);
                principals.insert(h.finish());
            }
        }
        stats.principals = principals.len() as u64;
        Ok(stats)
    }

    fn admin_show(&self, target: &Target) -> Result<Option<SessionInfo>> {
        let handle = target.handle();
        let Some(bytes) = self.inner.sessions.get(handle.as_bytes()).storage()? else {
            return Ok(None);
        };
        let record = decode_for_admin(&handle, &bytes)?;
        Ok(Some(SessionInfo::from_record(handle, record, bytes.len())))
    }
}

impl Store {
    /// The live sessions of `principal`, oldest first by creation.
    ///
    /// A principal no session can have (empty, too long, or with a NUL character) has none.
    ///
    /// # Errors
    /// Storage errors.
    pub fn sessions_of(&self, principal: &str) -> Result<Vec<SessionInfo>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = list(
                self,
                &ListQuery {
                    principal: Some(principal.to_string()),
                    limit: 1000,
                    after,
                    ..ListQuery::default()
                },
            )?;
            out.extend(page.sessions);
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        out.sort_by_key(|s| (s.created, s.handle));
        Ok(out)
    }
}

/// The bytes the files under `dir` take, as `du --apparent-size` counts them (sled's own
/// figure leaves out what it has not flushed yet). A file or folder removed while it is counted (sled
/// removes old snapshots and blobs) counts as nothing; any other error is the answer: a
/// folder that cannot be read is not an empty one.
pub(crate) fn folder_size(dir: &std::path::Path) -> Result<u64> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut sum = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        sum += match entry.metadata() {
            Ok(m) if m.is_dir() => match folder_size(&entry.path()) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => 0,
                other => other?,
            },
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(e)),
        };
    }
    Ok(sum)
}

pub(crate) fn decode_for_admin(handle: &Handle, bytes: &[u8]) -> Result<Record> {
    Record::decode(bytes).map_err(|e| e.for_record(handle))
}

fn list(store: &Store, q: &ListQuery) -> Result<Page> {
    let now = store.now();
    let limit = q.page_size();
    let within_ms = q.expiring_within.map(duration_ms);
    let inner = &store.inner;
    // Choose the index and the key range it serves.
    let (tree, start, end): (&sled::Tree, Vec<u8>, Option<Vec<u8>>) = match &q.principal {
        Some(p) => {
            // No session has such a principal, and a NUL in it would make the prefix reach
            // into another principal's entries (`a\0` into `a`'s).
            if validate_principal(p).is_err() {
                return Ok(Page {
                    sessions: Vec::new(),
                    next: None,
                });
            }
            let prefix = principal_prefix(p);
            let mut end = prefix.clone();
            if let Some(last) = end.last_mut() {
                *last = 1; // the byte after the 0x00 separator
            }
            (&inner.principals, prefix, Some(end))
        }
        None => {
            // A live session's entry may lag behind its deadline, so before now.
            let live_from = expiry_bucket_start(now.saturating_sub(entry_lag())).to_vec();
            let live_until = within_ms.map(|w| {
                expiry_bucket_start(now.saturating_add(w).saturating_add(keys_bucket())).to_vec()
            });
            match q.status {
                Status::Live => (&inner.expiry, live_from, live_until),
                Status::Expired => (
                    &inner.expiry,
                    Vec::new(),
                    Some(expiry_bucket_start(now.saturating_add(keys_bucket())).to_vec()),
                ),
                Status::All => (&inner.expiry, Vec::new(), None),
            }
        }
    };
    // The cursor narrows the range on the side the listing comes from; the key it names was
    // on the previous page.
    let mut lo = Bound::Included(start);
    let mut hi = end.map_or(Bound::Unbounded, Bound::Excluded);
    if let Some(c) = &q.after {
        if q.reverse {
            if !matches!(&hi, Bound::Excluded(e) if *e <= c.0) {
                hi = Bound::Excluded(c.0.clone());
            }
        } else if !matches!(&lo, Bound::Included(s) if *s > c.0) {
            lo = Bound::Excluded(c.0.clone());
        }
    }
    let range = tree.range((lo, hi)).keys();
    let keys: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = if q.reverse {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    let mut sessions = Vec::new();
    let mut scanned = 0usize;
    let mut last_key: Option<Vec<u8>> = None;
    for item in keys {
        let k = item.storage()?;
        scanned += 1;
        last_key = Some(k.to_vec());
        let handle = match &q.principal {
            Some(p) => parse_principal_key(&k)
                .filter(|(of, _)| of == p)
                .map(|(_, h)| h),
            None => parse_expiry_key(&k).map(|(_, h)| h),
        };
        let Some(handle) = handle else { continue };
        if let Some(info) = resolve(store, &handle, &k, q, now, within_ms)? {
            sessions.push(info);
            if sessions.len() == limit {
                break;
            }
        }
        if q.scan_budget > 0 && scanned >= q.scan_budget {
            break;
        }
    }
    let complete = sessions.len() < limit && (q.scan_budget == 0 || scanned < q.scan_budget);
    Ok(Page {
        sessions,
        next: if complete { None } else { last_key.map(Cursor) },
    })
}

fn keys_bucket() -> i64 {
    crate::keys::EXPIRY_BUCKET_MS
}

fn entry_lag() -> i64 {
    i64::try_from(crate::keys::EXPIRY_ENTRY_LAG_MS).unwrap_or(i64::MAX)
}

/// The session behind an index entry, if the entry is current and the session matches.
fn resolve(
    store: &Store,
    handle: &Handle,
    entry: &[u8],
    q: &ListQuery,
    now: i64,
    within_ms: Option<i64>,
) -> Result<Option<SessionInfo>> {
    let Some(bytes) = store.inner.sessions.get(handle.as_bytes()).storage()? else {
        return Ok(None);
    };
    // The head decides; the data is decoded for a match only. A live listing starts
    // `EXPIRY_ENTRY_LAG_MS` before now, so it passes over the sessions that expired in the
    // last 5 minutes and are not purged yet, and those cost a head each.
    let Ok(h) = decode_head(&bytes) else {
        return Ok(None);
    };
    // Skip stale entries: the record must point back at this entry.
    let current = match &q.principal {
        Some(p) => h.principal.as_deref() == Some(p.as_str()),
        None => expiry_key(h.expiry_entry(), handle).as_slice() == entry,
    };
    let expired = h.is_expired(now);
    let status_ok = match q.status {
        Status::Live => !expired,
        Status::Expired => expired,
        Status::All => true,
    };
    let within_ok = within_ms.is_none_or(|w| !expired && h.expires_at <= now.saturating_add(w));
    let label_ok = q.label.is_none() || h.label == q.label;
    let search_ok = q.search.as_deref().is_none_or(|s| {
        let s_lower = s.to_ascii_lowercase();
        h.principal.as_deref().is_some_and(|p| p.starts_with(s))
            || h.label.as_deref().is_some_and(|l| l.starts_with(s))
            || handle.to_string().starts_with(&s_lower)
    });
    if !(current && status_ok && within_ok && label_ok && search_ok) {
        return Ok(None);
    }
    // A record whose data is damaged is left for check to report, as before.
    Ok(Record::decode(&bytes)
        .ok()
        .map(|record| SessionInfo::from_record(*handle, record, bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search that stands in for the lookup (other `Admin`s, applications older than
    /// protocol version 3) finds what the store's lookup finds.
    #[test]
    fn the_search_finds_what_the_lookup_finds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let mut handles: Vec<String> = (0..200)
            .map(|i| {
                let mut s = store.create();
                // A principal that looks like a handle's start: the search matches principals
                // too, and only handles may count.
                s.set_principal(Some(&format!("{:02x}", i % 256))).unwrap();
                s.save().unwrap();
                s.handle().to_string()
            })
            .collect();
        handles.sort();
        for handle in handles.iter().step_by(17) {
            for len in [1, 2, 5, 6, 32] {
                let prefix = &handle[..len];
                // The search lists in expiry order, the lookup in key order: the same
                // handles, and as many of them under a limit.
                for limit in [1, 2, 1000] {
                    let mut searched = handles_by_search(&store, prefix, limit).unwrap();
                    let mut looked_up =
                        Admin::handles_starting_with(&store, prefix, limit).unwrap();
                    assert_eq!(searched.len(), looked_up.len(), "{prefix} {limit}");
                    if limit == 1000 {
                        searched.sort();
                        looked_up.sort();
                        assert_eq!(searched, looked_up, "{prefix}");
                    }
                }
            }
        }
    }
}
