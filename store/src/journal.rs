//! The commit journal of immediate durability: one wait on the disk per commit instead of two.
//!
//! Without it a durable commit is sled's flush (a write of its log, then `sync_file_range`,
//! which waits for the disk) and then an `fsync` of the log (which waits again, for the
//! file's metadata, the log having grown, and the disk's cache): about 250 µs a commit on this
//! project's machine, against 150 µs for SQLite's WAL with `synchronous=FULL`. A write over
//! blocks a file already has, then `fdatasync`, is one wait with no metadata: about 100 µs
//! (`cargo run --release -p sessdb-bench --example sync_cost`). So in immediate mode each
//! change the store makes to its trees is also recorded here, in the order sled applies it,
//! and a commit writes the changes recorded since the last one as one *frame* into this file,
//! a ring of fixed size made whole when the store is made, then `fdatasync`s it. sled's own
//! flush and the `fsync` of its files run only at a *checkpoint*, when the ring is half used
//! (or a frame would not fit), after which the frames before it are no longer needed.
//!
//! At the next open the frames since the last checkpoint are applied to the trees again, in
//! order (`replay`): each change sets a key to a value or removes it. sled may have written
//! any part of them, and changes made after them too (its log is written when its buffer
//! fills, without a sync), so applying every frame would set keys back over later changes sled
//! kept (a rotation in flight would leave its old and new ids both valid). Instead each commit
//! writes a *marker* into sled's `meta` tree when it takes its changes, under the lock that
//! orders them: sled's recovery is a prefix of its order, so it holds every change before the
//! marker it recovered, and the replay applies only the frames after that marker, over a state
//! that holds a prefix of theirs. That prefix holds only if every blob file a kept log message
//! points at is on the disk, while sled makes its log durable on its own at times: so a commit
//! syncs the blobs written so far before it writes its frame (`Journal::commit`). The store
//! also gives every record a frame touched its expiry and principal entries
//! ([`crate::store`]), a guard: stale entries are what purge and the principal index already
//! tolerate.
//!
//! The file: a header of two slots (a checkpoint writes the older one, so a torn write leaves
//! the other), then the ring. A frame is a magic number, its sequence number, its length, a
//! CRC-32 of the checkpoint's salt, of those and of its changes, then the changes; frames follow one another around the
//! ring (one may wrap over its end). A replay starts at the checkpoint's position and sequence
//! number and stops at the first frame that is not the next one whole: a torn last frame was
//! never acknowledged, and what an earlier lap left has an older sequence number and salt (the
//! salt also keeps a frame-shaped run of session data from passing for one). Like SQLite's
//! WAL, this relies on a write of a block not damaging the blocks around it that it leaves as
//! they were ("powersafe overwrite", which disks and SSDs give).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::id::Handle;
use crate::keys::{parse_expiry_key, parse_principal_key};
use crate::store::lock;

/// The file of a store's commit journal, in the store's folder: made by the first open with
/// [`Durability::Immediate`](crate::Durability::Immediate), replayed by every open that finds
/// it (a periodic one then removes it). It is part of the database: copy, move and remove it
/// with the folder's other files ([`is_database_entry`](crate::is_database_entry) names it).
pub const JOURNAL_FILE: &str = "sessdb-journal";

/// The journal while it is made, before its rename to [`JOURNAL_FILE`]: a cut may leave it,
/// and the next immediate open makes it again (it is part of the database too).
pub(crate) const NEW_JOURNAL_FILE: &str = "sessdb-journal.new";

/// The ring's size for a new store: at about 1 KB a save, four thousand saves between
/// checkpoints.
pub(crate) const DEFAULT_RING_BYTES: u64 = 8 << 20;

/// The smallest ring a store may be given (tests use it to wrap often).
pub(crate) const MIN_RING_BYTES: u64 = 4096;

/// The header's two slots, then the ring from here.
const RING_AT: u64 = 4096;
const SLOT_BYTES: u64 = 512;
const HEADER_MAGIC: &[u8; 8] = b"SDBJRNL1";
const HEADER_LEN: usize = 8 + 8 * 6 + 4;
/// The key, in sled's `meta` tree, of the last frame taken: the journal's id and the frame's
/// sequence number, written with the frame's changes (`Journal::marking`).
const MARKER_KEY: &[u8] = b"journal";

const FRAME_MAGIC: u32 = 0x5344_4A46;
/// Magic, sequence number, length of the changes, CRC-32.
const FRAME_HEAD: usize = 4 + 8 + 4 + 4;

/// The keyspaces a change can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keyspace {
    Sessions = 0,
    Expiry = 1,
    Principals = 2,
}

const INSERT: u8 = 1;
const REMOVE: u8 = 2;

/// Where a checkpoint left the ring: the next frame to replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    generation: u64,
    /// Logical offset (it only grows; the ring's place is this modulo its size).
    start: u64,
    seq: u64,
    ring: u64,
    /// Random, made with the file: a marker in sled names the journal it is of.
    id: u64,
    /// Random, new at each checkpoint, and part of every frame's CRC-32 after it: a frame
    /// whose bytes sit in a change of an earlier frame (session data is written verbatim)
    /// cannot pass for one where a later lap's replay stops, as SQLite's WAL salts its frames.
    salt: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(HEADER_MAGIC);
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.start.to_le_bytes());
        b[24..32].copy_from_slice(&self.seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.ring.to_le_bytes());
        b[40..48].copy_from_slice(&self.id.to_le_bytes());
        b[48..56].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32fast::hash(&b[..56]);
        b[56..60].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Header> {
        let b = b.get(..HEADER_LEN)?;
        if &b[..8] != HEADER_MAGIC || crc32fast::hash(&b[..56]).to_le_bytes() != b[56..60] {
            return None;
        }
        let u = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
        Some(Header {
            generation: u(8),
            start: u(16),
            seq: u(24),
            ring: u(32),
            id: u(40),
            salt: u(48),
        })
    }
}

/// The changes applied to the trees and not yet in a frame.
#[derive(Default)]
struct Pending {
    changes: Vec<u8>,
    /// Changes recorded since the store opened.
    count: u64,
}

/// Where the frames are; the leader of a commit alone touches it.
struct Ring {
    header: Header,
    /// Logical offset after the last frame written.
    end: u64,
    /// The next frame's sequence number.
    next_seq: u64,
}

#[derive(Default)]
struct State {
    /// Every change up to this count is on stable storage.
    durable: u64,
    flushing: bool,
    /// The first failure of a frame's write or a checkpoint: its changes may be in no frame
    /// and not in sled's files, so no later commit may say they are durable. Every commit
    /// after it fails with it (the store refuses writes too: `Store::noting`).
    failed: Option<(io::ErrorKind, String)>,
    frames: u64,
    checkpoints: u64,
}

/// The journal of an open store (see the module's documentation).
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    pending: Mutex<Pending>,
    ring: Mutex<Ring>,
    state: Mutex<State>,
    done: Condvar,
    /// sled's `meta` tree, where each frame taken leaves its marker (`None` in tests of the
    /// ring alone).
    meta: Option<sled::Tree>,
}

/// Holds the journal while a change is applied to a tree and recorded, so that changes are
/// recorded in the order sled applied them.
pub(crate) struct Recorder<'a>(MutexGuard<'a, Pending>);

impl Recorder<'_> {
    pub(crate) fn insert(&mut self, space: Keyspace, key: &[u8], value: &[u8]) {
        let p = &mut *self.0;
        p.changes.extend_from_slice(&[INSERT, space as u8]);
        put_bytes(&mut p.changes, key);
        put_bytes(&mut p.changes, value);
        p.count += 1;
    }

    pub(crate) fn remove(&mut self, space: Keyspace, key: &[u8]) {
        let p = &mut *self.0;
        p.changes.extend_from_slice(&[REMOVE, space as u8]);
        put_bytes(&mut p.changes, key);
        p.count += 1;
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // A key or value over 4 GiB cannot reach a tree (sessions are limited far below that).
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// What a replay found and applied.
pub(crate) struct Replayed {
    /// Frames applied.
    pub(crate) frames: u64,
    /// The sessions whose record or index entries a frame changed.
    pub(crate) touched: BTreeSet<Handle>,
    /// Where the next frame goes.
    pub(crate) tail: Tail,
}

/// The journal's file after a replay, and the place of the next frame.
pub(crate) struct Tail {
    file: File,
    header: Header,
    end: u64,
    seq: u64,
}

/// The trees a replay applies changes to.
pub(crate) struct Trees<'a> {
    pub(crate) sessions: &'a sled::Tree,
    pub(crate) expiry: &'a sled::Tree,
    pub(crate) principals: &'a sled::Tree,
    /// Where the marker of the last frame taken is (`None`: no marker, every frame replayed).
    pub(crate) meta: Option<&'a sled::Tree>,
}

impl Trees<'_> {
    fn get(&self, space: u8) -> Option<&sled::Tree> {
        match space {
            0 => Some(self.sessions),
            1 => Some(self.expiry),
            2 => Some(self.principals),
            _ => None,
        }
    }
}

fn damaged(path: &Path, detail: impl Into<String>) -> Error {
    Error::Damaged {
        path: path.parent().unwrap_or(path).to_path_buf(),
        detail: detail.into(),
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a failed commit keeps of its error, for every later one.
fn failure(e: &Error) -> (io::ErrorKind, String) {
    match e {
        Error::Io { source, .. } => (source.kind(), source.to_string()),
        Error::Storage(s) => s
            .io_error()
            .map_or((io::ErrorKind::Other, e.to_string()), |io| {
                (io.kind(), io.to_string())
            }),
        other => (io::ErrorKind::Other, other.to_string()),
    }
}

/// 64 random bits (of a v4 UUID: the crate the ids come from).
fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A frame's CRC-32: of the header's salt, the frame's sequence number and length (`head`),
/// and its changes.
fn frame_crc(salt: u64, head: &[u8], changes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(head);
    h.update(changes);
    h.finalize()
}

/// Reads `buf.len()` bytes at the logical offset `at` of a ring of `ring` bytes.
fn read_ring(file: &File, ring: u64, at: u64, buf: &mut [u8]) -> io::Result<()> {
    let place = at % ring;
    let first = (ring - place).min(buf.len() as u64) as usize;
    file.read_exact_at(&mut buf[..first], RING_AT + place)?;
    if first < buf.len() {
        file.read_exact_at(&mut buf[first..], RING_AT)?;
    }
    Ok(())
}

fn write_ring(file: &File, ring: u64, at: u64, buf: &[u8]) -> io::Result<()> {
    let place = at % ring;
    let first = (ring - place).min(buf.len() as u64) as usize;
    file.write_all_at(&buf[..first], RING_AT + place)?;
    if first < buf.len() {
        file.write_all_at(&buf[first..], RING_AT)?;
    }
    Ok(())
}

/// The newest header whose slot reads whole.
fn read_header(file: &File) -> io::Result<Option<Header>> {
    let mut best: Option<Header> = None;
    for slot in 0..2 {
        let mut b = [0u8; HEADER_LEN];
        if file.read_exact_at(&mut b, slot * SLOT_BYTES).is_err() {
            continue;
        }
        if let Some(h) = Header::decode(&b) {
            if best.is_none_or(|b| h.generation > b.generation) {
                best = Some(h);
            }
        }
    }
    Ok(best)
}

fn write_header(file: &File, h: &Header) -> io::Result<()> {
    file.write_all_at(&h.encode(), (h.generation % 2) * SLOT_BYTES)
}

/// Whether `dir` holds a journal.
pub(crate) fn exists(dir: &Path) -> bool {
    dir.join(JOURNAL_FILE).exists()
}

/// Makes a journal of `ring` bytes in `dir`, whole before it gets its name (every block
/// written, so that a commit's write never allocates), and the folder synced.
fn create(dir: &Path, ring: u64) -> Result<()> {
    let path = dir.join(JOURNAL_FILE);
    let new = dir.join(NEW_JOURNAL_FILE);
    let made = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&new)?;
        // The log's mode: the journal holds what the log holds.
        if let Ok(log) = fs::metadata(dir.join("db")) {
            f.set_permissions(log.permissions())?;
        }
        let zeros = vec![0u8; 1 << 16];
        let mut left = RING_AT + ring;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        write_header(
            &f,
            &Header {
                generation: 1,
                start: 0,
                seq: 0,
                ring,
                id: random(),
                salt: random(),
            },
        )?;
        f.sync_all()?;
        fs::rename(&new, &path)?;
        File::open(dir)?.sync_all()
    })();
    made.map_err(|e| {
        let _ = fs::remove_file(&new);
        io_at(&path)(e)
    })
}

/// Removes the journal of `dir` (after a replay, when the store opens without immediate
/// durability), and syncs the folder.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    let path = dir.join(JOURNAL_FILE);
    fs::remove_file(&path)
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(io_at(&path))
}

/// Applies the frames of `dir`'s journal since its last checkpoint to `trees`, in order.
/// Returns the journal, positioned after them (not yet checkpointed: see [`Journal::checkpoint`]).
pub(crate) fn replay(dir: &Path, trees: &Trees<'_>, writable: bool) -> Result<Replayed> {
    let path = dir.join(JOURNAL_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(&path)
        .map_err(io_at(&path))?;
    let header = read_header(&file).map_err(io_at(&path))?.ok_or_else(|| {
        damaged(
            &path,
            format!("its journal `{JOURNAL_FILE}` has no readable header"),
        )
    })?;
    let len = file.metadata().map_err(io_at(&path))?.len();
    // Positions a store could never reach (2^63 bytes of frames): a header whose checksum
    // matched by chance, or not written by sessdb. Refused, so that no sum below overflows.
    if header.start > u64::MAX / 2 || header.seq > u64::MAX / 2 {
        return Err(damaged(
            &path,
            format!("its journal `{JOURNAL_FILE}` has a header with positions out of range"),
        ));
    }
    if header.ring < MIN_RING_BYTES || RING_AT.checked_add(header.ring).is_none_or(|n| len < n) {
        return Err(damaged(
            &path,
            format!(
                "its journal `{JOURNAL_FILE}` is {len} bytes, short of the {} its header gives",
                RING_AT.saturating_add(header.ring)
            ),
        ));
    }
    let ring = header.ring;
    let mut at = header.start;
    let mut seq = header.seq;
    let mut frames = 0;
    let mut touched = BTreeSet::new();
    // The frames up to the one sled's marker names had their changes applied before it, in
    // sled's order: sled kept them, as it kept everything before the marker (its recovery is
    // a prefix). Applying them again would set keys back over later changes sled kept too.
    let kept_through = match trees.meta {
        Some(meta) => meta
            .get(MARKER_KEY)
            .map_err(|e| Error::Storage(crate::error::StorageError::new(e)))?
            .and_then(|m| {
                let id = u64::from_le_bytes(m.get(..8)?.try_into().ok()?);
                let seq = u64::from_le_bytes(m.get(8..16)?.try_into().ok()?);
                (id == header.id).then_some(seq)
            }),
        None => None,
    };
    let mut head = [0u8; FRAME_HEAD];
    let mut body = Vec::new();
    loop {
        if read_ring(&file, ring, at, &mut head).is_err() {
            break;
        }
        let magic = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default());
        let fseq = u64::from_le_bytes(head[4..12].try_into().unwrap_or_default());
        let n = u32::from_le_bytes(head[12..16].try_into().unwrap_or_default()) as u64;
        let crc = u32::from_le_bytes(head[16..20].try_into().unwrap_or_default());
        // A frame never reaches past a lap from the checkpoint: the ring would have
        // checkpointed before it was written.
        // (`at - header.start` is at most `ring`, `ring` at most the file's length.)
        if magic != FRAME_MAGIC || fseq != seq || at - header.start + FRAME_HEAD as u64 + n > ring {
            break;
        }
        body.resize(n as usize, 0);
        if read_ring(&file, ring, at + FRAME_HEAD as u64, &mut body).is_err() {
            break;
        }
        if frame_crc(header.salt, &head[4..16], &body) != crc {
            break;
        }
        let kept = kept_through.is_some_and(|k| fseq <= k);
        if !kept {
            apply(&body, trees, &mut touched).map_err(|e| match e {
                Unapplied::Parse(detail) => damaged(
                    &path,
                    format!("frame {seq} of its journal `{JOURNAL_FILE}` {detail}"),
                ),
                Unapplied::Storage(e) => Error::Storage(crate::error::StorageError::new(e)),
            })?;
            frames += 1;
        }
        at += FRAME_HEAD as u64 + n;
        seq += 1;
    }
    // A marker of a frame never written (a crash or a failure between the marker and the
    // frame; sled may have written the marker meanwhile): the next frame must not take its
    // number, or the next crash would skip it as kept.
    if let Some(k) = kept_through {
        seq = seq.max(k.saturating_add(1));
    }
    Ok(Replayed {
        frames,
        touched,
        tail: Tail {
            file,
            header,
            end: at,
            seq,
        },
    })
}

/// Why a frame's changes were not applied.
enum Unapplied {
    /// Its checksum matched but its changes do not parse: written by a different program, the
    /// store is damaged.
    Parse(String),
    Storage(sled::Error),
}

impl From<String> for Unapplied {
    fn from(s: String) -> Self {
        Unapplied::Parse(s)
    }
}

/// Applies one frame's changes.
fn apply(
    mut body: &[u8],
    trees: &Trees<'_>,
    touched: &mut BTreeSet<Handle>,
) -> std::result::Result<(), Unapplied> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
        if b.len() < n {
            return Err("ends inside a change".into());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn bytes<'a>(b: &mut &'a [u8]) -> std::result::Result<&'a [u8], String> {
        let n = take(b, 4)?;
        let n = u32::from_le_bytes(n.try_into().map_err(|_| "is cut".to_string())?) as usize;
        take(b, n)
    }
    while !body.is_empty() {
        let op = take(&mut body, 2)?;
        let tree = trees
            .get(op[1])
            .ok_or_else(|| format!("names an unknown keyspace ({})", op[1]))?;
        let key = bytes(&mut body)?;
        let handle = match op[1] {
            0 => Handle::from_slice(key),
            1 => parse_expiry_key(key).map(|(_, h)| h),
            _ => parse_principal_key(key).map(|(_, h)| h),
        };
        if let Some(h) = handle {
            touched.insert(h);
        }
        let done = match op[0] {
            INSERT => {
                let value = bytes(&mut body)?;
                tree.insert(key, value).map(drop)
            }
            REMOVE => tree.remove(key).map(drop),
            other => return Err(format!("holds an unknown change ({other})").into()),
        };
        done.map_err(Unapplied::Storage)?;
    }
    Ok(())
}

impl Journal {
    /// Opens `dir`'s journal for commits after a replay (`replay`'s file and positions), or
    /// makes one of `ring` bytes if there is none. A replayed journal is checkpointed by the
    /// caller before the store serves anything.
    pub(crate) fn open(dir: &Path, replayed: Option<Tail>, ring: u64) -> Result<Journal> {
        let path = dir.join(JOURNAL_FILE);
        let (file, header, end, next_seq) = match replayed {
            Some(t) => (t.file, t.header, t.end, t.seq),
            None => {
                create(dir, ring.max(MIN_RING_BYTES))?;
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_at(&path))?;
                let header = read_header(&file)
                    .map_err(io_at(&path))?
                    .ok_or_else(|| damaged(&path, "its new journal has no header"))?;
                (file, header, 0, 0)
            }
        };
        Ok(Journal {
            path,
            file,
            pending: Mutex::new(Pending::default()),
            ring: Mutex::new(Ring {
                header,
                end,
                next_seq,
            }),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            meta: None,
        })
    }

    /// Leaves each frame's marker in sled's `meta` tree (see [`replay`]).
    pub(crate) fn marking(mut self, meta: sled::Tree) -> Journal {
        self.meta = Some(meta);
        self
    }

    /// Holds the journal while a change is applied and recorded.
    pub(crate) fn recorder(&self) -> Recorder<'_> {
        Recorder(lock(&self.pending))
    }

    /// Returns once every change recorded before the call is on stable storage: in a frame, or
    /// made durable by a checkpoint (`checkpoint` is sled's flush and the `fsync` of its
    /// files). One caller writes the frame of all who arrive while it does.
    ///
    /// `blobs` makes the blob files sled has written so far, and the folders' entries,
    /// durable; it runs before each frame is written. sled makes its log durable on its own at
    /// times (every write of its buffer ends in `sync_file_range`, and its truncation of
    /// trailing segments in an `fsync`), and its recovery skips a log message whose blob file
    /// is missing and applies the ones after it: a blob of a change in a frame, lost at a
    /// power cut while the log that points at it was kept, would make sled's state not a
    /// prefix of its order, which the replay's marker relies on (found by
    /// `tests/tests/power.rs`, seed 6657963594561983635).
    pub(crate) fn commit(
        &self,
        blobs: &dyn Fn() -> Result<()>,
        checkpoint: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let target = lock(&self.pending).count;
        let mut st = lock(&self.state);
        loop {
            if st.durable >= target {
                return Ok(());
            }
            if let Some((kind, text)) = &st.failed {
                return Err(Error::Io {
                    path: self.path.clone(),
                    source: io::Error::new(*kind, text.clone()),
                });
            }
            if st.flushing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.flushing = true;
            drop(st);
            // A panic of the leader (sled's, on a damaged page) must not leave `flushing` set,
            // which would hold every later commit for ever: it fails them instead.
            let led = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.lead(blobs, checkpoint)
            }));
            st = lock(&self.state);
            st.flushing = false;
            let result = match led {
                Ok(result) => result,
                Err(panic) => {
                    st.failed
                        .get_or_insert_with(|| (io::ErrorKind::Other, "a commit panicked".into()));
                    self.done.notify_all();
                    drop(st);
                    std::panic::resume_unwind(panic);
                }
            };
            if let Err(e) = &result {
                st.failed.get_or_insert_with(|| failure(e));
            }
            self.done.notify_all();
            result?;
        }
    }

    /// A leader's commit: the frame of what is pending, and a checkpoint if the ring is half
    /// used.
    fn lead(
        &self,
        blobs: &dyn Fn() -> Result<()>,
        checkpoint: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let mut ring = lock(&self.ring);
        let (count, framed) = self.write_frame(&mut ring, blobs, checkpoint)?;
        {
            let mut st = lock(&self.state);
            st.durable = st.durable.max(count);
            st.frames += u64::from(framed);
        }
        // The savers served go on while this leader checkpoints, if it must.
        self.done.notify_all();
        if ring.end - ring.header.start > ring.header.ring / 2 {
            self.checkpoint_locked(&mut ring, checkpoint)?;
        }
        Ok(())
    }

    /// Writes the changes pending as one frame and syncs it; returns the count of changes it
    /// made durable and whether it wrote a frame. A frame too large for the ring is made
    /// durable by a checkpoint instead.
    fn write_frame(
        &self,
        ring: &mut Ring,
        blobs: &dyn Fn() -> Result<()>,
        checkpoint: &dyn Fn() -> Result<()>,
    ) -> Result<(u64, bool)> {
        let (changes, count) = {
            let mut p = lock(&self.pending);
            let size = (FRAME_HEAD + p.changes.len()) as u64;
            if let (Some(meta), false) = (&self.meta, p.changes.is_empty()) {
                if size <= ring.header.ring / 2 {
                    // After these changes in sled's order, before any later one.
                    let mut m = [0u8; 16];
                    m[..8].copy_from_slice(&ring.header.id.to_le_bytes());
                    m[8..].copy_from_slice(&ring.next_seq.to_le_bytes());
                    meta.insert(MARKER_KEY, &m)
                        .map_err(|e| Error::Storage(crate::error::StorageError::new(e)))?;
                }
            }
            (std::mem::take(&mut p.changes), p.count)
        };
        if changes.is_empty() {
            return Ok((count, false));
        }
        let size = (FRAME_HEAD + changes.len()) as u64;
        if size > ring.header.ring / 2 {
            // Applied to the trees already: the checkpoint makes them durable.
            self.checkpoint_locked(ring, checkpoint)?;
            return Ok((count, false));
        }
        if ring.end + size - ring.header.start > ring.header.ring {
            self.checkpoint_locked(ring, checkpoint)?;
        }
        // Every blob of these changes was written before its change was applied (sled writes a
        // blob when it places the message that points at it), so before the marker above.
        blobs()?;
        let mut frame = Vec::with_capacity(size as usize);
        frame.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        frame.extend_from_slice(&ring.next_seq.to_le_bytes());
        frame.extend_from_slice(&(changes.len() as u32).to_le_bytes());
        let crc = frame_crc(ring.header.salt, &frame[4..16], &changes);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame.extend_from_slice(&changes);
        write_ring(&self.file, ring.header.ring, ring.end, &frame)
            .and_then(|()| self.file.sync_data())
            .map_err(io_at(&self.path))?;
        ring.end += size;
        ring.next_seq += 1;
        Ok((count, true))
    }

    /// Makes every change applied so far durable in sled's files (`checkpoint`), then moves the
    /// header past the frames written: a replay no longer needs them.
    fn checkpoint_locked(
        &self,
        ring: &mut Ring,
        checkpoint: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        // Every writer held out while sled's files are synced: a change made between the blob
        // pass and the log's `fsync` could put on the disk a log message pointing at a blob
        // that pass missed (a power cut of concurrent savers left sled unable to open the
        // store: `tests/tests/power.rs`, seed 3924202537768678559).
        let writers = lock(&self.pending);
        checkpoint()?;
        drop(writers);
        let header = Header {
            generation: ring.header.generation + 1,
            start: ring.end,
            seq: ring.next_seq,
            ring: ring.header.ring,
            id: ring.header.id,
            salt: random(),
        };
        write_header(&self.file, &header)
            .and_then(|()| self.file.sync_data())
            .map_err(io_at(&self.path))?;
        ring.header = header;
        lock(&self.state).checkpoints += 1;
        Ok(())
    }

    /// A checkpoint now (after a replay, before the store serves anything).
    pub(crate) fn checkpoint(&self, checkpoint: &dyn Fn() -> Result<()>) -> Result<()> {
        self.checkpoint_locked(&mut lock(&self.ring), checkpoint)
    }

    /// Frames written and checkpoints made since the store opened (for tests: what a call cost).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u64, u64) {
        let st = lock(&self.state);
        (st.frames, st.checkpoints)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    type Image = [BTreeMap<Vec<u8>, Vec<u8>>; 4];

    fn temporary() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    /// The three trees and `meta` (index 3), as the store has them.
    struct Db {
        _db: sled::Db,
        trees: [sled::Tree; 4],
    }

    impl Db {
        fn new() -> Db {
            let db = temporary();
            let trees =
                ["sessions", "expiry", "principals", "meta"].map(|n| db.open_tree(n).unwrap());
            Db { _db: db, trees }
        }

        fn trees(&self) -> Trees<'_> {
            Trees {
                sessions: &self.trees[0],
                expiry: &self.trees[1],
                principals: &self.trees[2],
                meta: Some(&self.trees[3]),
            }
        }

        /// The journal of `dir`, leaving its markers in this database.
        fn journal(&self, dir: &Path, ring: u64) -> Journal {
            Journal::open(dir, None, ring)
                .unwrap()
                .marking(self.trees[3].clone())
        }

        fn image(&self) -> Image {
            self.trees.each_ref().map(|t| {
                t.iter()
                    .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect()
            })
        }

        fn load(image: &Image) -> Db {
            let db = Db::new();
            for (tree, map) in db.trees.iter().zip(image) {
                for (k, v) in map {
                    tree.insert(k, v.as_slice()).unwrap();
                }
            }
            db
        }
    }

    const SPACES: [Keyspace; 3] = [Keyspace::Sessions, Keyspace::Expiry, Keyspace::Principals];

    /// Applies one random change to `db` and records it, as the store's writers do.
    fn change(j: &Journal, db: &Db, rng: &mut fastrand::Rng) {
        let space = rng.usize(..3);
        let key = Handle::from_slice(&[rng.u8(..8); 16]).unwrap();
        let key: Vec<u8> = match space {
            0 => key.as_bytes().to_vec(),
            1 => crate::keys::expiry_key(rng.u64(..4), &key).to_vec(),
            _ => crate::keys::principal_key(["alice", "bob"][rng.usize(..2)], &key),
        };
        let mut r = j.recorder();
        if rng.u8(..4) == 0 {
            if db.trees[space].remove(&key).unwrap().is_some() {
                r.remove(SPACES[space], &key);
            }
        } else {
            let value = vec![rng.u8(..); rng.usize(..300)];
            db.trees[space].insert(&key, value.as_slice()).unwrap();
            r.insert(SPACES[space], &key, &value);
        }
    }

    /// Random changes committed in groups into a journal of `ring` bytes; at every point the
    /// image sled had at the last checkpoint, with the journal's frames replayed on it, is
    /// the state of the last commit.
    fn replays_to_the_last_commit(ring: u64, seed: u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let db = Db::new();
        let j = db.journal(dir.path(), ring);
        // What a checkpoint made durable: the trees as they were.
        let durable = RefCell::new(db.image());
        let checkpoint = || {
            *durable.borrow_mut() = db.image();
            Ok(())
        };
        for round in 0..200 {
            for _ in 0..rng.usize(1..12) {
                change(&j, &db, &mut rng);
            }
            j.commit(&|| Ok(()), &checkpoint).unwrap();
            if round % 7 == 0 {
                let after_crash = Db::load(&durable.borrow());
                let replayed = replay(dir.path(), &after_crash.trees(), false).unwrap();
                // The three trees (the marker in `meta` is sled's own, not a change).
                assert_eq!(
                    after_crash.image()[..3],
                    db.image()[..3],
                    "seed {seed}, round {round}: {} frames replayed",
                    replayed.frames
                );
            }
        }
        let (frames, checkpoints) = j.counts();
        assert!(frames > 100, "{frames} frames");
        if ring <= 16 << 10 {
            assert!(
                checkpoints > 5,
                "the ring wrapped: {checkpoints} checkpoints"
            );
        }
    }

    #[test]
    fn a_replay_gives_the_state_of_the_last_commit() {
        for seed in 0..4 {
            replays_to_the_last_commit(DEFAULT_RING_BYTES, seed);
        }
    }

    #[test]
    fn a_small_ring_wraps_and_checkpoints_and_still_replays_whole() {
        for seed in 0..8 {
            replays_to_the_last_commit(MIN_RING_BYTES, seed);
            replays_to_the_last_commit(5000 + seed * 997, seed);
        }
    }

    /// Frames of one size, a ring a whole number of them: after a lap the frame of the lap
    /// before sits, whole and checksummed, right after the last one. Its sequence number is
    /// what stops the replay there.
    #[test]
    fn a_frame_left_by_the_lap_before_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let j = Journal::open(dir.path(), None, MIN_RING_BYTES).unwrap();
        let durable = RefCell::new(db.image());
        let checkpoint = || {
            *durable.borrow_mut() = db.image();
            Ok(())
        };
        // 2 + 4 + 16 + 4 + 210 bytes of change: frames of 256 bytes, 16 to a lap.
        let value_len = 256 - FRAME_HEAD - 2 - 4 - 16 - 4;
        for i in 0..40u32 {
            let value = [i.to_le_bytes().to_vec(), vec![0; value_len - 4]].concat();
            let mut r = j.recorder();
            db.trees[0].insert([1u8; 16], value.as_slice()).unwrap();
            r.insert(Keyspace::Sessions, &[1u8; 16], &value);
            drop(r);
            j.commit(&|| Ok(()), &checkpoint).unwrap();
            assert_eq!(lock(&j.ring).end, u64::from(i + 1) * 256);
            let after_crash = Db::load(&durable.borrow());
            replay(dir.path(), &after_crash.trees(), false).unwrap();
            assert_eq!(after_crash.image(), db.image(), "after commit {i}");
        }
    }

    /// sled wrote changes made after the last frame (its buffer filled): the replay must not
    /// set the keys the frames touched back over them. sled's state, a prefix of its order,
    /// is the answer as it stands: a rotation in flight stays whole (its old key removed) and
    /// not half undone.
    #[test]
    fn a_replay_does_not_set_back_what_sled_kept_after_the_last_frame() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let j = db.journal(dir.path(), DEFAULT_RING_BYTES);
        let set = |k: u8, v: u8| {
            let mut r = j.recorder();
            db.trees[0].insert([k; 16], &[v]).unwrap();
            r.insert(Keyspace::Sessions, &[k; 16], &[v]);
        };
        set(1, 1);
        j.commit(&|| Ok(()), &|| Ok(())).unwrap();
        set(1, 2);
        j.commit(&|| Ok(()), &|| Ok(())).unwrap();
        // A rotation sled kept, whose frame was never written: key 1 moves to key 2.
        {
            let mut r = j.recorder();
            db.trees[0].remove([1u8; 16]).unwrap();
            r.remove(Keyspace::Sessions, &[1u8; 16]);
            db.trees[0].insert([2u8; 16], &[2]).unwrap();
            r.insert(Keyspace::Sessions, &[2u8; 16], &[2]);
        }
        let kept = db.image();
        let after_crash = Db::load(&kept);
        let r = replay(dir.path(), &after_crash.trees(), false).unwrap();
        assert_eq!(r.frames, 0, "sled kept both frames");
        assert_eq!(after_crash.image(), kept);
        assert!(after_crash.trees[0].get([1u8; 16]).unwrap().is_none());
        // sled kept the first frame only (its marker, not the second's): the second is
        // replayed, and nothing after it.
        let mut first = kept.clone();
        first[0].insert(vec![1; 16], vec![1]);
        first[0].remove(&vec![2; 16]);
        let mut m = first[3][MARKER_KEY].clone();
        m[8..].copy_from_slice(&0u64.to_le_bytes());
        first[3].insert(MARKER_KEY.to_vec(), m);
        let after_crash = Db::load(&first);
        assert_eq!(
            replay(dir.path(), &after_crash.trees(), false)
                .unwrap()
                .frames,
            1
        );
        assert_eq!(
            after_crash.trees[0].get([1u8; 16]).unwrap().unwrap(),
            [2u8][..]
        );
        assert!(after_crash.trees[0].get([2u8; 16]).unwrap().is_none());
    }

    #[test]
    fn a_failed_frame_fails_every_later_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let mut j = Journal::open(dir.path(), None, DEFAULT_RING_BYTES).unwrap();
        // Read-only: every write of a frame fails.
        j.file = File::open(dir.path().join(JOURNAL_FILE)).unwrap();
        let change = |i: u8| {
            let mut r = j.recorder();
            db.trees[0].insert([i; 16], &[i]).unwrap();
            r.insert(Keyspace::Sessions, &[i; 16], &[i]);
        };
        change(1);
        assert!(j.commit(&|| Ok(()), &|| Ok(())).is_err());
        assert!(
            j.commit(&|| Ok(()), &|| Ok(())).is_err(),
            "the failed frame's changes are in no frame: not durable"
        );
        change(2);
        let err = j.commit(&|| Ok(()), &|| Ok(())).err().unwrap();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(j.counts(), (0, 0));
    }

    /// The blob pass runs before the frame is written, each commit: a frame whose blobs could
    /// not be made durable is never written (and the store learns of the failure).
    #[test]
    fn a_frame_is_written_only_after_the_blob_pass() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let j = db.journal(dir.path(), DEFAULT_RING_BYTES);
        let passes = std::cell::Cell::new(0);
        let change = |i: u8| {
            let mut r = j.recorder();
            db.trees[0].insert([i; 16], &[i]).unwrap();
            r.insert(Keyspace::Sessions, &[i; 16], &[i]);
        };
        for i in 0..3 {
            change(i);
            let frames = j.counts().0;
            j.commit(
                &|| {
                    assert_eq!(j.counts().0, frames, "no frame yet at the blob pass");
                    passes.set(passes.get() + 1);
                    Ok(())
                },
                &|| Ok(()),
            )
            .unwrap();
        }
        assert_eq!((passes.get(), j.counts()), (3, (3, 0)));
        change(3);
        let err = j
            .commit(
                &|| {
                    Err(Error::Io {
                        path: dir.path().join("blobs"),
                        source: io::Error::other("the blob's sync failed"),
                    })
                },
                &|| Ok(()),
            )
            .err()
            .unwrap();
        assert!(
            matches!(&err, Error::Io { path, .. } if path.ends_with("blobs")),
            "{err}"
        );
        assert_eq!(j.counts(), (3, 0), "no fourth frame");
        let fresh = Db::new();
        assert_eq!(replay(dir.path(), &fresh.trees(), false).unwrap().frames, 3);
    }

    /// A leader that panics (sled does, on some damaged pages) fails the commits after it
    /// rather than leave them waiting for ever.
    #[test]
    fn a_panicking_leader_fails_later_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let j = db.journal(dir.path(), DEFAULT_RING_BYTES);
        let change = |i: u8| {
            let mut r = j.recorder();
            db.trees[0].insert([i; 16], &[i]).unwrap();
            r.insert(Keyspace::Sessions, &[i; 16], &[i]);
        };
        change(1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            j.commit(&|| panic!("a damaged page"), &|| Ok(()))
        }));
        assert!(panicked.is_err());
        change(2);
        let err = j.commit(&|| Ok(()), &|| Ok(())).err().unwrap();
        assert!(err.to_string().contains("journal"), "{err}");
        assert!(!lock(&j.state).flushing);
    }

    /// Header values are trusted once their checksum matches; ones no store could write are
    /// damage, not an overflow.
    #[test]
    fn a_header_out_of_range_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path(), None, MIN_RING_BYTES).unwrap());
        let path = dir.path().join(JOURNAL_FILE);
        let f = open_rw(&path);
        let h = read_header(&f).unwrap().unwrap();
        for bad in [
            Header {
                generation: 2,
                start: u64::MAX - 10,
                ..h
            },
            Header {
                generation: 3,
                ring: u64::MAX - 100,
                ..h
            },
        ] {
            write_header(&f, &bad).unwrap();
            let err = replay(dir.path(), &Db::new().trees(), false).err().unwrap();
            assert!(matches!(err, Error::Damaged { .. }), "{err}");
        }
    }

    #[test]
    fn a_frame_larger_than_half_the_ring_is_made_durable_by_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let j = Journal::open(dir.path(), None, MIN_RING_BYTES).unwrap();
        let checkpoints = std::cell::Cell::new(0);
        {
            let mut r = j.recorder();
            let big = vec![7u8; 3000];
            db.trees[0].insert(b"k", big.as_slice()).unwrap();
            r.insert(Keyspace::Sessions, b"k", &big);
        }
        j.commit(&|| Ok(()), &|| {
            checkpoints.set(checkpoints.get() + 1);
            Ok(())
        })
        .unwrap();
        assert_eq!(checkpoints.get(), 1);
        assert_eq!(j.counts(), (0, 1), "no frame, one checkpoint");
        // Nothing is left to replay.
        let fresh = Db::new();
        assert_eq!(replay(dir.path(), &fresh.trees(), false).unwrap().frames, 0);
    }

    /// The journal's file, to read and write its bytes.
    fn open_rw(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    /// Writes three commits and returns the journal's folder and each frame's logical offset.
    fn three_commits() -> (tempfile::TempDir, Db, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let j = Journal::open(dir.path(), None, DEFAULT_RING_BYTES).unwrap();
        let mut at = Vec::new();
        for i in 0..3u8 {
            at.push(lock(&j.ring).end);
            let mut r = j.recorder();
            db.trees[0].insert([i; 16], &[i]).unwrap();
            r.insert(Keyspace::Sessions, &[i; 16], &[i]);
            drop(r);
            j.commit(&|| Ok(()), &|| Ok(())).unwrap();
        }
        (dir, db, at)
    }

    #[test]
    fn a_torn_frame_ends_the_replay_before_it() {
        let (dir, _, at) = three_commits();
        let path = dir.path().join(JOURNAL_FILE);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        // The last frame's last byte, as a write cut short leaves it.
        f.write_all_at(&[0xAA], RING_AT + at[2] + FRAME_HEAD as u64 + 16 + 4)
            .unwrap();
        let fresh = Db::new();
        let r = replay(dir.path(), &fresh.trees(), false).unwrap();
        assert_eq!(r.frames, 2);
        assert_eq!(fresh.trees[0].len(), 2);
        assert!(fresh.trees[0].get([2u8; 16]).unwrap().is_none());
        assert_eq!(r.touched.len(), 2);
    }

    #[test]
    fn a_torn_header_leaves_the_other_slot() {
        let (dir, _, _) = three_commits();
        let path = dir.path().join(JOURNAL_FILE);
        let f = open_rw(&path);
        let j = Journal::open(
            dir.path(),
            Some(replay(dir.path(), &Db::new().trees(), true).unwrap().tail),
            0,
        )
        .unwrap();
        j.checkpoint(&|| Ok(())).unwrap();
        drop(j);
        // The checkpoint's header (generation 2, slot 0) torn: the one before it is used,
        // and every frame since is replayed again (the checkpoint had made them durable).
        f.write_all_at(&[0u8; 8], 16).unwrap();
        let fresh = Db::new();
        assert_eq!(replay(dir.path(), &fresh.trees(), false).unwrap().frames, 3);
        // Both slots whole: nothing after the checkpoint.
        let (dir, _, _) = three_commits();
        let j = Journal::open(
            dir.path(),
            Some(replay(dir.path(), &Db::new().trees(), true).unwrap().tail),
            0,
        )
        .unwrap();
        j.checkpoint(&|| Ok(())).unwrap();
        assert_eq!(
            replay(dir.path(), &Db::new().trees(), false)
                .unwrap()
                .frames,
            0
        );
    }

    #[test]
    fn an_unreadable_or_short_journal_is_damage_named() {
        let (dir, _, _) = three_commits();
        let path = dir.path().join(JOURNAL_FILE);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(RING_AT + 100).unwrap();
        let err = replay(dir.path(), &Db::new().trees(), false).err().unwrap();
        assert!(
            matches!(&err, Error::Damaged { detail, .. } if detail.contains("sessdb-journal is") || detail.contains("is 4196 bytes")),
            "{err}"
        );
        f.write_all_at(&[0u8; 1024], 0).unwrap();
        let err = replay(dir.path(), &Db::new().trees(), false).err().unwrap();
        assert!(
            matches!(&err, Error::Damaged { detail, .. } if detail.contains("no readable header")),
            "{err}"
        );
    }

    #[test]
    fn a_frame_whose_changes_do_not_parse_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new();
        let j = Journal::open(dir.path(), None, DEFAULT_RING_BYTES).unwrap();
        lock(&j.pending)
            .changes
            .extend_from_slice(&[INSERT, 9, 0, 0, 0, 0]);
        lock(&j.pending).count += 1;
        j.commit(&|| Ok(()), &|| Ok(())).unwrap();
        let err = replay(dir.path(), &db.trees(), false).err().unwrap();
        assert!(
            matches!(&err, Error::Damaged { detail, .. } if detail.contains("frame 0") && detail.contains("unknown keyspace (9)")),
            "{err}"
        );
    }
}

/// The journal within a store, cut (a `kill -9` modelled by a copy of the open store's folder)
/// between a commit's marker and its frame.
#[cfg(test)]
mod cut_tests {
    use std::path::Path;

    use super::*;
    use crate::{Durability, SessionId, Store};

    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                copy_tree(&entry.path(), &target);
            } else if kind.is_file() {
                fs::copy(entry.path(), &target).unwrap();
            }
        }
    }

    fn open(path: &Path) -> Store {
        Store::builder()
            .durability(Durability::Immediate)
            .open(path)
            .unwrap()
    }

    /// A store at `live` with a session saved (frame 0), then a commit killed in its blob pass:
    /// its marker (frame 1) taken, sled's buffer written (as when it fills), no frame 1.
    /// `cut` holds what the kill left. Returns the session's id.
    fn killed_after_the_marker(live: &Path, cut: &Path) -> SessionId {
        let store = open(live);
        let mut s = store.create();
        s.insert("n", &1).unwrap();
        s.save().unwrap();
        let inner = &store.inner;
        let h = Handle::from_slice(&[7u8; 16]).unwrap();
        inner
            .insert(Keyspace::Expiry, &crate::keys::expiry_key(0, &h), &[])
            .unwrap();
        let killed = inner.journal.as_ref().unwrap().commit(
            &|| {
                inner.db.flush().unwrap();
                copy_tree(live, cut);
                Err(Error::Io {
                    path: live.to_path_buf(),
                    source: io::Error::other("killed"),
                })
            },
            &|| Ok(()),
        );
        assert!(killed.is_err());
        *s.id()
    }

    /// The next open must not give frame 1's number to its first commit: sled holds marker 1,
    /// and the replay after the next cut would skip that commit as kept.
    #[test]
    fn a_commit_after_a_cut_between_marker_and_frame_survives_the_next_cut() {
        let dir = tempfile::tempdir().unwrap();
        let [live, cut1, cut2, cut3] = ["live", "cut1", "cut2", "cut3"].map(|n| dir.path().join(n));
        let s = killed_after_the_marker(&live, &cut1);
        let x = {
            let store = open(&cut1);
            assert!(store.load(&s).unwrap().is_some());
            let mut x = store.create();
            x.insert("acknowledged", &true).unwrap();
            x.save().unwrap();
            copy_tree(&cut1, &cut2);
            assert!(store.invalidate(&s).unwrap(), "logged out, durably");
            copy_tree(&cut1, &cut3);
            *x.id()
        };
        let store = open(&cut2);
        assert!(store.load(&x).unwrap().is_some(), "an acknowledged save");
        drop(store);
        let store = open(&cut3);
        assert!(store.load(&x).unwrap().is_some(), "an acknowledged save");
        assert!(
            store.load(&s).unwrap().is_none(),
            "an acknowledged logout stays done"
        );
    }

    /// A frame's CRC holds the salt of the checkpoint before it, new at each: bytes left in an
    /// earlier lap (session data, written verbatim) that form a frame with the next number and
    /// a CRC under the salt of their time do not pass where a later lap's replay stops.
    #[test]
    fn a_frame_forged_in_session_data_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = ["sessions", "expiry", "principals", "meta"].map(|n| db.open_tree(n).unwrap());
        let j = Journal::open(dir.path(), None, MIN_RING_BYTES)
            .unwrap()
            .marking(t[3].clone());
        // A frame of one insert of a 16-byte key: this much more than its value.
        const OVER: u64 = (FRAME_HEAD + 2 + 4 + 16 + 4) as u64;
        let forged_change = {
            let mut c = vec![INSERT, Keyspace::Sessions as u8];
            put_bytes(&mut c, &[0xEE; 16]);
            put_bytes(&mut c, b"forged");
            c
        };
        let forged_len = FRAME_HEAD as u64 + forged_change.len() as u64;
        // Frame 0 holds the forged frame 8 bytes into its value.
        let at = OVER + 8;
        let first = at + forged_len + 8;
        // The frames of the next lap, ending right at `at` one ring further.
        let mut sizes = Vec::new();
        let mut end = first;
        while MIN_RING_BYTES + at - end >= 2 * 1000 {
            sizes.push(1000);
            end += 1000;
        }
        let left = MIN_RING_BYTES + at - end;
        sizes.extend([left / 2, left - left / 2]);
        let forged_seq = 1 + sizes.len() as u64;
        let mut forged = Vec::new();
        forged.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        forged.extend_from_slice(&forged_seq.to_le_bytes());
        forged.extend_from_slice(&(forged_change.len() as u32).to_le_bytes());
        // The best an attacker could do: the salt of the moment (were it known).
        let salt = lock(&j.ring).header.salt;
        let crc = frame_crc(salt, &forged[4..16], &forged_change);
        forged.extend_from_slice(&crc.to_le_bytes());
        forged.extend_from_slice(&forged_change);
        let save = |k: u8, value: &[u8]| {
            let mut r = j.recorder();
            t[0].insert([k; 16], value).unwrap();
            r.insert(Keyspace::Sessions, &[k; 16], value);
            drop(r);
            j.commit(&|| Ok(()), &|| Ok(())).unwrap();
        };
        save(1, &[vec![0u8; 8], forged, vec![0u8; 8]].concat());
        for (i, size) in sizes.iter().enumerate() {
            save(2 + i as u8, &vec![1u8; (size - OVER) as usize]);
        }
        assert_eq!(
            lock(&j.ring).end,
            MIN_RING_BYTES + at,
            "the lap stops there"
        );
        assert!(j.counts().1 > 0, "a checkpoint on the way");
        let fresh = sled::Config::new().temporary(true).open().unwrap();
        let f = ["sessions", "expiry", "principals"].map(|n| fresh.open_tree(n).unwrap());
        let trees = Trees {
            sessions: &f[0],
            expiry: &f[1],
            principals: &f[2],
            meta: None,
        };
        replay(dir.path(), &trees, false).unwrap();
        assert!(
            f[0].get([0xEE; 16]).unwrap().is_none(),
            "a record no one saved, from bytes inside a session's value"
        );
    }
}
