//! What sessdb knows of sled's own files, below its API: the segment size a store was made
//! with (from `conf`, or from the log's segment headers when `conf` is gone), a new store's
//! `conf` synced, the half-written snapshot and the torn `conf` a killed open leaves, and how
//! sled reports a held lock.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Builder;
use crate::error::{Error, Result};
use crate::store::io_err;

/// sled's own default segment size: every store created before
/// [`Builder::NEW_STORE_SEGMENT_BYTES`] has it.
const SLED_DEFAULT_SEGMENT_BYTES: usize = 512 << 10;

/// Where a store's segment size comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Segment {
    /// No log yet: a new store, made with [`Builder::NEW_STORE_SEGMENT_BYTES`].
    New,
    /// The size sled wrote in the folder's `conf`.
    Conf(usize),
    /// The size read from the log, the `conf` being gone.
    Log(usize),
}

impl Segment {
    /// The segment size to open the store with.
    pub(crate) fn bytes(self) -> usize {
        match self {
            Segment::New => Builder::NEW_STORE_SEGMENT_BYTES,
            Segment::Conf(bytes) | Segment::Log(bytes) => bytes,
        }
    }
}

/// The segment size of the store at `path`.
///
/// sled writes the size into the folder's `conf` when it creates a database, and refuses to
/// open it with any other ("cannot change the io buffer size across restarts"), so a store
/// keeps the size it was made with. When the `conf` is gone (sled takes one of 8 bytes or
/// fewer for none, writes a new one with the size it is given and reads the log with it),
/// the log says which size it was written with ([`segment_size_from_log`]): a wrong guess
/// would read most of it as garbage and lose its sessions without a word.
///
/// A `conf` that is another store's (a restore that mixed one store's files with another's, an
/// old backup's `conf` beside a compacted store's log) is refused when the log proves another
/// size ([`conf_contradicted`]): sled would read the log with the wrong one, open it empty
/// (every session gone, and `check` clean) or rewrite it into damage, in a fuzzing campaign's
/// trial.
///
/// # Errors
/// [`Error::Damaged`] when neither the `conf` nor the log says, or when they disagree.
pub(crate) fn segment_size(path: &Path) -> Result<Segment> {
    let persisted = fs::read(path.join("conf")).ok().and_then(|conf| {
        conf.split(|&b| b == b'\n').find_map(|line| {
            std::str::from_utf8(line.strip_prefix(b"segment_size: ")?)
                .ok()?
                .parse()
                .ok()
        })
    });
    let log = path.join("db");
    let file = match File::open(&log) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&log)(e)),
    };
    if let Some(bytes) = persisted {
        if let Some(file) = &file {
            if let Some(from_log) = conf_contradicted(file, bytes).map_err(io_err(&log))? {
                return Err(Error::Damaged {
                    path: path.to_path_buf(),
                    detail: format!(
                        "sled's `conf` says its log has segments of {} KiB, but the log was \
                         written with {} KiB: the `conf` is another store's (a restore that \
                         mixed two stores' files?), and sled would read the log wrong; put the \
                         store's own `conf` back, or remove `conf` (the size is then read from \
                         the log)",
                        bytes >> 10,
                        from_log >> 10
                    ),
                });
            }
        }
        return Ok(Segment::Conf(bytes));
    }
    let Some(file) = file else {
        return Ok(Segment::New);
    };
    match segment_size_from_log(&file).map_err(io_err(&log))? {
        Found::Empty => Ok(Segment::New),
        Found::Size(bytes) => Ok(Segment::Log(bytes)),
        Found::Unknown => Err(Error::Damaged {
            path: path.to_path_buf(),
            detail: "sled's `conf` file is missing or unreadable, and its log does not show \
                     which segment size it was written with"
                .to_string(),
        }),
    }
}

/// Whether the folder's `conf`, if there is one, can be sled's by what it holds, not only by
/// its name: it starts as sled's settings do (`segment_size: `), or is a beginning of that (a
/// making cut short). A project's own settings file named `conf` is not: sled would delete it,
/// or write its own over it (found by a second reviewer, beside a project's `db` and with an
/// empty one).
pub(crate) fn conf_could_be_sleds(path: &Path) -> io::Result<bool> {
    use std::io::Read as _;
    const SETTINGS: &[u8] = b"segment_size: ";
    let conf = path.join("conf");
    match fs::symlink_metadata(&conf) {
        Ok(meta) if !meta.is_file() => Ok(false),
        Ok(_) => {
            let mut head = Vec::with_capacity(SETTINGS.len());
            File::open(&conf)?
                .take(SETTINGS.len() as u64)
                .read_to_end(&mut head)?;
            Ok(head.starts_with(SETTINGS) || SETTINGS.starts_with(&head))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// What a log says of its segment size.
#[derive(Debug, PartialEq)]
enum Found {
    /// No log yet: a new store.
    Empty,
    Size(usize),
    Unknown,
}

/// Reads the segment size from sled's log, for a store whose `conf` is gone: sled's default
/// (every store made before 2 MiB) or [`Builder::NEW_STORE_SEGMENT_BYTES`].
///
/// Each segment starts with a header (sled's `pagecache/logger.rs` `SegmentHeader`: a CRC-32
/// of the next 16 bytes, then the segment's log sequence number and the highest stable one,
/// each xored with a constant), and the sequence number is a multiple of the segment size.
/// Its first message (`MessageHeader`) names the segment's number, the sequence number
/// divided by the segment size.
/// 1. Multiples of 2 MiB start a segment with either size, so what is there is always a
///    segment header, never data: one whose sequence number is not a multiple of 2 MiB, or
///    whose first message's segment number is its sequence number over 512 KiB, means
///    512 KiB; over 2 MiB, 2 MiB. (Segments are reused, at any offset, so the sequence
///    number alone does not tell.)
/// 2. When those say nothing (every one has sequence number 0: a log that never went past
///    its first segment at 2 MiB, or at most 2 MiB of a log at 512 KiB), sled's messages
///    from a segment's start say whether it ends at 512 KiB ([`sealed_at_512_kib`]).
/// 3. When they do not either (a torn segment), a header at another multiple of 512 KiB
///    means 512 KiB: in a log at 2 MiB it would take session data shaped as a segment header,
///    past a tear.
/// 4. Otherwise 2 MiB if segment 0 has a header. A log of at most 512 KiB reads the same
///    with either size.
fn segment_size_from_log(log: &File) -> io::Result<Found> {
    const SMALL: u64 = SLED_DEFAULT_SEGMENT_BYTES as u64;
    const LARGE: u64 = Builder::NEW_STORE_SEGMENT_BYTES as u64;
    let len = log.metadata()?.len();
    if len == 0 {
        return Ok(Found::Empty);
    }
    if len <= SMALL {
        // Either size reads it the same, if it is sled's: its first segment starts with a
        // header, or was freed (zeroed). A file of a project's named `db` does not, and sled
        // would write over it, read-only too (found by a second reviewer).
        let mut head = [0xffu8; 20];
        let n = usize::try_from(len).map_or(head.len(), |len| len.min(head.len()));
        std::os::unix::fs::FileExt::read_exact_at(log, &mut head[..n], 0)?;
        let freed = head[..n].iter().all(|&b| b == 0);
        return Ok(if freed || header_at(log, len, 0)?.is_some() {
            Found::Size(SLED_DEFAULT_SEGMENT_BYTES)
        } else {
            Found::Unknown
        });
    }
    let read = |offset| header_at(log, len, offset);
    let mut first_segment = false;
    for offset in (0..len).step_by(LARGE as usize) {
        let Some((lsn, message)) = read(offset)? else {
            continue;
        };
        if lsn % LARGE != 0 {
            return Ok(Found::Size(SLED_DEFAULT_SEGMENT_BYTES));
        }
        if lsn == 0 {
            first_segment = true;
            continue;
        }
        match first_message_segment(&message) {
            Some(n) if n == lsn / SMALL => return Ok(Found::Size(SLED_DEFAULT_SEGMENT_BYTES)),
            Some(n) if n == lsn / LARGE => {
                return Ok(Found::Size(Builder::NEW_STORE_SEGMENT_BYTES))
            }
            _ => {}
        }
    }
    match sealed_at_512_kib(log, len)? {
        Some(true) => return Ok(Found::Size(SLED_DEFAULT_SEGMENT_BYTES)),
        Some(false) => return Ok(Found::Size(Builder::NEW_STORE_SEGMENT_BYTES)),
        None => {}
    }
    for offset in (SMALL..len).step_by(SMALL as usize) {
        if offset % LARGE != 0 && read(offset)?.is_some() {
            return Ok(Found::Size(SLED_DEFAULT_SEGMENT_BYTES));
        }
    }
    Ok(if first_segment {
        Found::Size(Builder::NEW_STORE_SEGMENT_BYTES)
    } else {
        Found::Unknown
    })
}

/// The segment header at `offset` of a log of `len` bytes, if a valid one is there: its
/// sequence number, and the start of the first message after it.
fn header_at(log: &File, len: u64, offset: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; 64];
    let n = usize::try_from(len.saturating_sub(offset)).map_or(buf.len(), |n| n.min(64));
    if n < 20 {
        return Ok(None);
    }
    buf.truncate(n);
    log.read_exact_at(&mut buf, offset)?;
    let header: &[u8; 20] = buf[..20].try_into().map_err(io::Error::other)?;
    Ok(
        segment_header_lsn(header, SLED_DEFAULT_SEGMENT_BYTES as u64)
            .map(|lsn| (lsn, buf[20..].to_vec())),
    )
}

/// How many segments at multiples of 2 MiB [`sealed_at_512_kib`] reads at most, 2 MiB each.
const WALKS: usize = 8;

/// Whether the log's segments end at 512 KiB, read from sled's own messages rather than from
/// bytes an application could have chosen: `Some(true)` for 512 KiB, `Some(false)` for 2 MiB,
/// `None` when no walk settles it.
///
/// A multiple of 2 MiB starts a segment with either size, so what is there is always sled's.
/// From the segment header there, the messages follow one another (sled's `LogIter`): each is
/// a `MessageHeader` (a CRC-32, a kind, then its length, segment number and page id as sled's
/// variable-length integers) and its body, the CRC-32 covering both. Walking them by their
/// lengths, each checked by its CRC, never reads inside a body, where session data is (the
/// bytes of a segment header can be session data that an application took from a client:
/// a review made a fresh 2 MiB store refuse its own `conf` with them):
/// - a message that runs past 512 KiB from the segment's start means 2 MiB (a message never
///   crosses its segment's end);
/// - the `Cap` that pads a segment to its end (kind 2, ending in the segment's last 32 bytes,
///   sled's `MAX_MSG_HEADER_LEN`), ending at 512 KiB, means 512 KiB; so do messages that stop
///   in those 32 bytes (sled fills a remainder too short for a `Cap` with zeros) or earlier,
///   with only zeros up to 512 KiB and a segment header there whose sequence number is at
///   least its offset and whose first message is numbered by 512 KiB segments (a segment
///   left unfinished). In a 2 MiB segment, zeros follow its last message only where nothing
///   was written yet, so nothing is at 512 KiB either.
///
/// A segment with no header there, zeros up to a segment header at a multiple of 512 KiB, is
/// a free 512 KiB segment ([`freed_then_header`]).
///
/// A message whose CRC-32 fails (a torn write, or bytes not yet written) ends the walk
/// without an answer; then the next segment at a multiple of 2 MiB is walked, up to [`WALKS`]
/// of them.
fn sealed_at_512_kib(log: &File, len: u64) -> io::Result<Option<bool>> {
    use std::os::unix::fs::FileExt as _;
    const SMALL: usize = SLED_DEFAULT_SEGMENT_BYTES;
    const LARGE: usize = Builder::NEW_STORE_SEGMENT_BYTES;
    const MAX_MSG_HEADER_LEN: usize = 32;
    const CAP: u8 = 2;
    for base in (0..len).step_by(LARGE).take(WALKS) {
        let header = header_at(log, len, base)?;
        let n = usize::try_from(len - base).map_or(LARGE, |n| n.min(LARGE));
        let mut segment = vec![0u8; n];
        log.read_exact_at(&mut segment, base)?;
        let Some((lsn, _)) = header else {
            if freed_then_header(log, len, base, &segment)? {
                return Ok(Some(true));
            }
            continue;
        };
        let numbered = [lsn / SMALL as u64, lsn / LARGE as u64];
        let mut at = 20;
        let mut number = None;
        let ended = loop {
            let Some(message) = message_at(&segment, at) else {
                break at;
            };
            let first = *number.get_or_insert(message.segment);
            if message.segment != first || !numbered.contains(&first) {
                break at;
            }
            let end = at + message.len;
            if end > SMALL {
                return Ok(Some(false));
            }
            if message.kind == CAP {
                if end > SMALL - MAX_MSG_HEADER_LEN {
                    return Ok(Some(true));
                }
                break at;
            }
            at = end;
        };
        let zeros_then_header = segment
            .get(ended..SMALL)
            .is_some_and(|rest| rest.iter().all(|&b| b == 0))
            && header_at(log, len, base + SMALL as u64)?.is_some_and(|(lsn, message)| {
                lsn >= base + SMALL as u64
                    && first_message_segment(&message) == Some(lsn / SMALL as u64)
            });
        if zeros_then_header {
            return Ok(Some(true));
        }
    }
    Ok(None)
}

/// Whether the segment at `base` (a multiple of 2 MiB, `segment` its bytes), which has no
/// header, is a free 512 KiB segment followed by a used one: only zeros up to a multiple of
/// 512 KiB, and a segment header there whose sequence number is at least its offset and
/// whose first message is numbered by 512 KiB segments. sled zeroes a free segment whole when
/// it opens a store (`SegmentAccountant::initialize_from_snapshot`), so a free 2 MiB segment
/// has nothing at 512 KiB; a review found the freed first segment in 30 of 42 small 512 KiB
/// stores whose walk said nothing.
fn freed_then_header(log: &File, len: u64, base: u64, segment: &[u8]) -> io::Result<bool> {
    const SMALL: usize = SLED_DEFAULT_SEGMENT_BYTES;
    let mut zeros_until = 0;
    for offset in (SMALL..segment.len()).step_by(SMALL) {
        if !segment[zeros_until..offset].iter().all(|&b| b == 0) {
            return Ok(false);
        }
        zeros_until = offset;
        let at = base + offset as u64;
        if let Some((lsn, message)) = header_at(log, len, at)? {
            return Ok(lsn >= at && first_message_segment(&message) == Some(lsn / SMALL as u64));
        }
    }
    Ok(false)
}

/// A message of sled's log, as [`message_at`] reads it.
struct Message {
    kind: u8,
    segment: u64,
    /// Its whole length, header and body.
    len: usize,
}

/// The message at `at` in `segment` (a segment's bytes from its start), if one is there whose
/// CRC-32 holds (sled's `read_message` and `calculate_message_crc32`: the body, then the
/// header after its CRC, the result inverted).
fn message_at(segment: &[u8], at: usize) -> Option<Message> {
    let header = segment.get(at..)?;
    let (crc, rest) = header.split_first_chunk::<4>()?;
    let (&kind, rest) = rest.split_first()?;
    let (body_len, rest) = sled_varint(rest)?;
    let (number, rest) = sled_varint(rest)?;
    let (_page, rest) = sled_varint(rest)?;
    let header_len = header.len() - rest.len();
    let body = rest.get(..usize::try_from(body_len).ok()?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(body);
    hasher.update(&header[4..header_len]);
    (hasher.finalize() ^ 0xFFFF_FFFF == u32::from_le_bytes(*crc)).then_some(Message {
        kind,
        segment: number,
        len: header_len + body.len(),
    })
}

/// The segment size the log proves when it is not `conf`'s, for a store that has a `conf`
/// (`None` when the log agrees, or says nothing for sure). A false refusal would keep a
/// healthy store from opening, so only evidence sled cannot leave in a log of `conf`'s size
/// counts, and a 512 KiB `conf` is refused only when nothing in the log speaks for it:
/// - for 512 KiB: a header at a multiple of 2 MiB whose sequence number is not a multiple of
///   2 MiB, or whose first message is numbered by 512 KiB segments; or, where those say
///   nothing, sled's messages from a segment's start ending at 512 KiB
///   ([`sealed_at_512_kib`]). A log of 2 MiB segments has none of these: sled asserts that a
///   segment's sequence number is a multiple of its size, a message left over from a
///   segment's earlier use is numbered lower, never four times higher, and its messages run
///   past 512 KiB. A segment header at a 512 KiB offset alone does not count: in a 2 MiB log
///   that is session data, which an application may have taken from a client.
/// - for 2 MiB: sled's messages from a segment's start running past 512 KiB
///   ([`sealed_at_512_kib`]); or, where those say nothing, a header at a multiple of 2 MiB
///   whose first message is numbered by 2 MiB segments. A 512 KiB log can show the latter
///   too: sled writes a new segment's header in a buffer of its own, so a process killed then
///   leaves the earlier use's first message behind it (1 kill in 300 in a review's trial),
///   which may read so. Hence the rule that a 512 KiB `conf` then stands while any header
///   speaks for it.
///
/// Not caught: a 2 MiB store whose log has not reached 512 KiB given a 512 KiB `conf` (its
/// messages stop short of where they would tell), and logs whose segments at multiples of
/// 2 MiB are all torn where they would tell.
///
/// Reads: one or two headers for a healthy store past 2 MiB (the first header at a multiple of
/// 2 MiB past the first settles it); below, the first 2 MiB of the log (the whole log), to
/// walk its messages; every multiple of 512 KiB only for a 2 MiB store's log beside a
/// 512 KiB `conf`, the refusal.
fn conf_contradicted(log: &File, conf: usize) -> io::Result<Option<usize>> {
    const SMALL: u64 = SLED_DEFAULT_SEGMENT_BYTES as u64;
    const LARGE: u64 = Builder::NEW_STORE_SEGMENT_BYTES as u64;
    let len = log.metadata()?.len();
    let mut proves_large = false;
    for offset in (0..len).step_by(LARGE as usize) {
        let Some((lsn, message)) = header_at(log, len, offset)? else {
            continue;
        };
        if lsn == 0 {
            continue;
        }
        let segment = first_message_segment(&message);
        let small = lsn % LARGE != 0 || segment == Some(lsn / SMALL);
        let large = !small && segment == Some(lsn / LARGE);
        match conf as u64 {
            LARGE if small => return Ok(Some(SLED_DEFAULT_SEGMENT_BYTES)),
            // The first header that says either settles a 2 MiB `conf`, and one that speaks
            // for 512 KiB a 512 KiB one.
            LARGE if large => return Ok(None),
            SMALL if small => return Ok(None),
            SMALL if large => proves_large = true,
            _ => {}
        }
    }
    match conf as u64 {
        LARGE => Ok(match sealed_at_512_kib(log, len)? {
            Some(true) => Some(SLED_DEFAULT_SEGMENT_BYTES),
            Some(false) | None => None,
        }),
        SMALL => match sealed_at_512_kib(log, len)? {
            Some(false) => Ok(Some(Builder::NEW_STORE_SEGMENT_BYTES)),
            Some(true) => Ok(None),
            None if proves_large => {
                for offset in (SMALL..len).step_by(SMALL as usize) {
                    if offset % LARGE != 0 && header_at(log, len, offset)?.is_some() {
                        return Ok(None);
                    }
                }
                Ok(Some(Builder::NEW_STORE_SEGMENT_BYTES))
            }
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The log sequence number of a valid sled segment header for segments of a multiple of
/// `unit` bytes.
fn segment_header_lsn(header: &[u8; 20], unit: u64) -> Option<u64> {
    let [c0, c1, c2, c3, ..] = *header;
    let stored_crc = u32::from_le_bytes([c0, c1, c2, c3]) ^ 0xFFFF_FFFF;
    let lsn_bytes: [u8; 8] = header[4..12].try_into().ok()?;
    let lsn = u64::from_le_bytes(lsn_bytes) ^ 0x7FFF_FFFF_FFFF_FFFF;
    (crc32fast::hash(&header[4..20]) == stored_crc && lsn < 1 << 63 && lsn % unit == 0)
        .then_some(lsn)
}

/// The segment number in a sled message header (`serialization.rs`: a CRC-32, a kind byte,
/// then the length, the segment number and the page id as sled's variable-length integers).
fn first_message_segment(message: &[u8]) -> Option<u64> {
    let rest = message.get(5..)?;
    let (_len, rest) = sled_varint(rest)?;
    let (segment, _) = sled_varint(rest)?;
    Some(segment)
}

/// One of sled's variable-length integers (`serialization.rs`, `impl Serialize for u64`) and
/// what follows it.
fn sled_varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = buf.split_first()?;
    match first {
        0..=240 => Some((u64::from(first), rest)),
        241..=248 => {
            let (&b, rest) = rest.split_first()?;
            Some((240 + 256 * u64::from(first - 241) + u64::from(b), rest))
        }
        249 => {
            let (&[a, b], rest) = rest.split_first_chunk::<2>()?;
            Some((2288 + 256 * u64::from(a) + u64::from(b), rest))
        }
        _ => {
            let n = usize::from(first) - 247;
            let bytes = rest.get(..n)?;
            let mut le = [0u8; 8];
            le[..n].copy_from_slice(bytes);
            Some((u64::from_le_bytes(le), &rest[n..]))
        }
    }
}

/// Makes a new store's `conf` durable before any session is written: sled writes it without a
/// sync, and a store whose log survived a power loss without its `conf` would have to have
/// its segment size read from the log ([`segment_size_from_log`]).
pub(crate) fn sync_new_conf(path: &Path) -> Result<()> {
    let conf = path.join("conf");
    File::open(&conf)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&conf))?;
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Removes the snapshot files that a process killed while opening the database left half
/// written, and says whether there were any.
///
/// sled 0.34 writes a snapshot on every open, as `snap.<lsn>.generating`, renamed to
/// `snap.<lsn>` once complete. Its reader takes the newest `snap.*` file, `.generating`
/// included, so a process killed during that write (a `sessctl purge` killed early, a crash
/// at start-up) left a database that no later open could read: `Corruption` with no offset
/// (sled issue #1527). The half-written file holds nothing the log does not: without it, sled
/// opens from the previous snapshot, which it deletes only after the rename, and replays the
/// log from there. Removed only under sled's own lock (an exclusive `flock` of the `db` file),
/// so never from under a process that is writing one now.
pub(crate) fn remove_partial_snapshots(path: &Path) -> Result<bool> {
    let partial: Vec<PathBuf> = match fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating"))
            })
            .collect(),
        Err(_) => return Ok(false),
    };
    if partial.is_empty() {
        return Ok(false);
    }
    let Ok(log) = File::open(path.join("db")) else {
        return Ok(false);
    };
    use nix::fcntl::{Flock, FlockArg};
    let Ok(lock) = Flock::lock(log, FlockArg::LockExclusiveNonblock) else {
        // Held (or locks unsupported): not ours to touch.
        return Ok(false);
    };
    for file in &partial {
        fs::remove_file(file).map_err(io_err(file))?;
        log::warn!(
            target: "sessdb",
            "removed {}, a snapshot left half written by a process killed while opening the \
             database",
            file.display()
        );
    }
    drop(lock);
    Ok(true)
}

/// Removes the `conf` of a store whose log is empty, and says whether it did: sled writes a new
/// store's `conf` in two writes (its text, then a checksum) and reads a `conf` cut between them
/// as corrupted, so a process killed, or a machine cut off, while it made a store left one no
/// later open could read (found by `tests/tests/power.rs`). With an empty log the store holds
/// nothing; without its `conf`, sled makes the store anew.
///
/// Only with the folder's gate held exclusively (sled writes a new `conf` before it takes its
/// own lock, and another opener making the store holds the gate shared through that: a
/// reviewer removed a `conf` being written that way), with sled's lock (no process has the
/// store open), an empty log and a `conf` whose checksum does not match, all seen under both.
pub(crate) fn remove_torn_conf(path: &Path) -> Result<TornConf> {
    use nix::fcntl::{Flock, FlockArg};
    let Ok(folder) = File::open(path) else {
        return Ok(TornConf::Damaged);
    };
    let Ok(_gate) = Flock::lock(folder, FlockArg::LockExclusiveNonblock) else {
        return Ok(TornConf::Busy);
    };
    let Ok(log) = File::open(path.join("db")) else {
        return Ok(TornConf::Damaged);
    };
    let Ok(log) = Flock::lock(log, FlockArg::LockExclusiveNonblock) else {
        return Ok(TornConf::Busy);
    };
    if !log.metadata().is_ok_and(|m| m.len() == 0) {
        return Ok(TornConf::Damaged);
    }
    let conf = path.join("conf");
    if !conf_is_torn(&conf) {
        return Ok(TornConf::NotTorn);
    }
    fs::remove_file(&conf).map_err(io_err(&conf))?;
    log::warn!(
        target: "sessdb",
        "removed {}, the half-written settings of a store whose making was cut short (its log \
         is empty)",
        conf.display()
    );
    Ok(TornConf::Removed)
}

/// What [`remove_torn_conf`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TornConf {
    /// The torn `conf` is removed: sled makes the store anew.
    Removed,
    /// The `conf` is whole, or gone (another opener repaired the store meanwhile).
    NotTorn,
    /// Another opener holds the folder's gate or the store: not now.
    Busy,
    /// Not a store whose making was cut (its log holds something, or is missing).
    Damaged,
}

/// Whether sled's `conf` at `path` is torn: its settings, then their CRC-32 (little-endian),
/// do not match. One of 8 bytes or fewer sled reads as none, and one that cannot be read is
/// left alone.
fn conf_is_torn(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    if bytes.len() <= 8 {
        return false;
    }
    let (text, crc) = bytes.split_at(bytes.len() - 4);
    <[u8; 4]>::try_from(crc).is_ok_and(|crc| crc32fast::hash(text) != u32::from_le_bytes(crc))
}

/// sled reports a held lock as an `Io` error of kind `WouldBlock`, or wrapped in a custom
/// error whose message is "could not acquire lock".
pub(crate) fn is_lock_error(e: &sled::Error) -> bool {
    let sled::Error::Io(io) = e else { return false };
    io.kind() == io::ErrorKind::WouldBlock
        || io.to_string().contains("could not acquire lock")
        || io
            .get_ref()
            .is_some_and(|inner| inner.to_string().contains("WouldBlock"))
}

#[cfg(test)]
mod segment_tests {
    use super::*;
    use std::os::unix::fs::FileExt as _;

    const K512: u64 = 512 << 10;
    const M2: u64 = 2 << 20;

    /// A log of `len` bytes of filler with sled segment headers at `segments`: (offset, lsn,
    /// the segment number its first message names).
    fn log(len: u64, segments: &[(u64, u64, u64)]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.set_len(len).unwrap();
        file.write_all_at(&vec![0xab; usize::try_from(len).unwrap()], 0)
            .unwrap();
        for &(offset, lsn, segment) in segments {
            let mut header = [0u8; 20];
            header[4..12].copy_from_slice(&(lsn ^ 0x7FFF_FFFF_FFFF_FFFF).to_le_bytes());
            header[12..20].copy_from_slice(&(lsn ^ 0x7FFF_FFFF_FFFF_FFFF).to_le_bytes());
            let crc = crc32fast::hash(&header[4..20]) ^ 0xFFFF_FFFF;
            header[..4].copy_from_slice(&crc.to_le_bytes());
            file.write_all_at(&header, offset).unwrap();
            // CRC (unchecked), kind, length 7, the segment number (sled's varint for values
            // up to 240 is the byte itself), page id 1.
            let message = [0, 0, 0, 0, 1, 7, u8::try_from(segment).unwrap(), 1];
            file.write_all_at(&message, offset + 20).unwrap();
        }
        file
    }

    fn found(len: u64, segments: &[(u64, u64, u64)]) -> Found {
        segment_size_from_log(&log(len, segments)).unwrap()
    }

    const SMALL: Found = Found::Size(SLED_DEFAULT_SEGMENT_BYTES);
    const LARGE: Found = Found::Size(Builder::NEW_STORE_SEGMENT_BYTES);

    #[test]
    fn a_fresh_log_says_its_size() {
        // sled's first segments: the sequence number is the offset.
        let small: Vec<_> = (0..8).map(|i| (i * K512, i * K512, i)).collect();
        assert_eq!(found(8 * K512, &small), SMALL);
        let large: Vec<_> = (0..3).map(|i| (i * M2, i * M2, i)).collect();
        assert_eq!(found(3 * M2, &large), LARGE);
        // One segment of 2 MiB, part written: only segment 0 has a header.
        assert_eq!(found(M2 - 1000, &large[..1]), LARGE);
        // 512 KiB segments up to 2 MiB: segment 0 and others that are not at 2 MiB.
        assert_eq!(found(3 * K512, &small[..3]), SMALL);
    }

    /// Reused segments: sled writes a segment wherever one is free, so at 2 MiB a log of
    /// 512 KiB segments can hold one whose sequence number is a multiple of 2 MiB, with the
    /// segments in between free and zeroed (a layout a review reproduced with raw sled).
    #[test]
    fn a_log_of_reused_segments_says_its_size() {
        // The review's layout: headers only at 0 (lsn 6,656 KiB) and 6 MiB (lsn 6 MiB).
        let reused = [(0, 13 * K512, 13), (3 * M2, 3 * M2, 12)];
        assert_eq!(found(13 * K512, &reused), SMALL);
        // Both at multiples of 2 MiB: the first message's segment number decides.
        assert_eq!(found(13 * K512, &[(0, 2 * M2, 16), (M2, M2, 4)]), SMALL);
        assert_eq!(found(3 * M2, &[(0, 2 * M2, 2), (M2, M2, 1)]), LARGE);
    }

    fn contradicted(len: u64, segments: &[(u64, u64, u64)], conf: u64) -> Option<u64> {
        conf_contradicted(&log(len, segments), usize::try_from(conf).unwrap())
            .unwrap()
            .map(|n| n as u64)
    }

    /// A `conf` is refused only on evidence a log of its size cannot hold.
    #[test]
    fn a_conf_is_refused_only_where_the_log_proves_the_other_size() {
        let small: Vec<_> = (0..8).map(|i| (i * K512, i * K512, i)).collect();
        let large: Vec<_> = (0..3).map(|i| (i * M2, i * M2, i)).collect();
        // Each log with its own `conf`, and with the other.
        assert_eq!(contradicted(8 * K512, &small, K512), None);
        assert_eq!(contradicted(3 * M2, &large, M2), None);
        assert_eq!(contradicted(8 * K512, &small, M2), Some(K512));
        assert_eq!(contradicted(3 * M2, &large, K512), Some(M2));
        // A 512 KiB log under 2 MiB whose messages say nothing (see
        // `sled_messages_say_where_a_segment_ends`): headers at 512 KiB offsets alone do not
        // refuse a 2 MiB `conf`, since they could be session data.
        assert_eq!(contradicted(3 * K512, &small[..3], M2), None);
        assert_eq!(contradicted(3 * K512, &small[..3], K512), None);
        // A 2 MiB log under 2 MiB whose messages say nothing: not caught either way.
        assert_eq!(contradicted(M2 - 1000, &large[..1], K512), None);
        assert_eq!(contradicted(M2 - 1000, &large[..1], M2), None);
        // A conf of another size altogether is not judged.
        assert_eq!(contradicted(3 * M2, &large, 8 * M2), None);
    }

    /// A 512 KiB log whose segment at 2 MiB holds a new header before an older use's first
    /// message (sled writes the header in a buffer of its own: a process killed then leaves
    /// it; a review found it once in 300 kills), numbered so that it reads as 2 MiB: any other
    /// header that speaks for 512 KiB keeps the store's `conf` standing.
    #[test]
    fn a_stale_first_message_does_not_refuse_a_512_kib_log() {
        let stale = (M2, 4 * M2, 4); // sequence 8 MiB is segment 16 at 512 KiB, 4 at 2 MiB
                                     // Found: 2 MiB, as the log alone reads (its `conf` gone); the `conf` still stands.
        let segments = [(0, 0, 0), (K512, K512, 1), stale];
        assert_eq!(contradicted(M2 + K512, &segments, K512), None);
        // Behind it, a header with a sequence number that is no multiple of 2 MiB.
        let segments = [(0, 0, 0), stale, (2 * M2, 9 * K512, 9)];
        assert_eq!(contradicted(2 * M2 + K512, &segments, K512), None);
    }

    /// sled's variable-length integer, as `serialization.rs` writes it.
    fn varint(v: u64) -> Vec<u8> {
        match v {
            0..=240 => vec![v as u8],
            241..=2287 => vec![((v - 240) / 256 + 241) as u8, ((v - 240) % 256) as u8],
            2288..=67823 => vec![249, ((v - 2288) / 256) as u8, ((v - 2288) % 256) as u8],
            _ => {
                let n = (3..8).find(|&n| v >> (8 * n) == 0).unwrap_or(8);
                let mut out = vec![247 + n as u8];
                out.extend_from_slice(&v.to_le_bytes()[..n]);
                out
            }
        }
    }

    /// A message as sled writes one (`Reservation::flush`, `write_to_log`): its header and
    /// body, the CRC-32 over the body and then the header after the CRC, inverted.
    fn message(kind: u8, number: u64, page: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0, 0, kind];
        for v in [body.len() as u64, number, page] {
            out.extend(varint(v));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(body);
        hasher.update(&out[4..]);
        let crc = hasher.finalize() ^ 0xFFFF_FFFF;
        out[..4].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// How a segment's messages end.
    #[derive(Clone, Copy)]
    enum End {
        /// Messages up to this many bytes into the segment, the rest as it was.
        At(u64),
        /// Filled, then sealed as sled seals it: a `Cap` to its last 32 bytes, or zeros where
        /// less than 32 bytes are left.
        Sealed { size: u64, left: u64 },
    }

    /// Messages of `body` numbered `number` in the segment at `base`, after its header.
    fn messages(file: &File, base: u64, number: u64, body: &[u8], end: End) {
        let one = message(8, number, 7, body);
        let room = match end {
            End::At(upto) => upto,
            End::Sealed { size, left } => size - left,
        };
        let mut at = 20;
        while at + one.len() as u64 <= room {
            file.write_all_at(&one, base + at).unwrap();
            at += one.len() as u64;
        }
        if let End::Sealed { size, .. } = end {
            // A last message sized to leave `left` bytes, then the seal.
            let short = room - at;
            let last = (0..body.len())
                .rev()
                .map(|n| message(8, number, 7, &body[..n]))
                .find(|last| last.len() as u64 == short)
                .expect("pick a body that leaves room for one");
            file.write_all_at(&last, base + at).unwrap();
            at += short;
            let unused = size - at;
            let seal = if unused >= 32 {
                let mut cap = message(2, number, u64::MAX, &vec![0; (unused - 32) as usize]);
                cap.resize(unused as usize, 0);
                cap
            } else {
                vec![0; unused as usize]
            };
            file.write_all_at(&seal, base + at).unwrap();
        }
    }

    /// A segment header's 20 bytes and a first message numbered `number`, as a body of bytes
    /// an application stored.
    fn forged_header(lsn: u64, number: u64) -> Vec<u8> {
        let f = log(64, &[(0, lsn, number)]);
        let mut bytes = vec![0; 28];
        f.read_exact_at(&mut bytes, 0).unwrap();
        bytes
    }

    /// sled's messages, walked by their lengths and checked by their CRC-32, say where a
    /// segment ends, and bytes in a message's body (session data) never count.
    #[test]
    fn sled_messages_say_where_a_segment_ends() {
        let body = vec![0xab; 1000];
        let sealed = |left| End::Sealed { size: K512, left };
        // A 512 KiB log under 2 MiB, its segments sealed by a `Cap` or by zeros.
        for left in [400, 31, 0] {
            let small = log(3 * K512, &[(0, 0, 0), (K512, K512, 1), (M2 / 2, M2 / 2, 2)]);
            messages(&small, 0, 0, &body, sealed(left));
            messages(&small, K512, 1, &body, sealed(left));
            assert_eq!(sealed_at_512_kib(&small, 3 * K512).unwrap(), Some(true));
            let conf = |c| conf_contradicted(&small, c).unwrap();
            assert_eq!(
                conf(M2 as usize),
                Some(SLED_DEFAULT_SEGMENT_BYTES),
                "{left}"
            );
            assert_eq!(conf(K512 as usize), None, "{left}");
            assert_eq!(segment_size_from_log(&small).unwrap(), SMALL, "{left}");
        }
        // One left unfinished (a restart moved on): zeros up to 512 KiB, then a header.
        let small = log(2 * K512, &[(0, 0, 0), (K512, K512, 1)]);
        small
            .write_all_at(&vec![0; (K512 - 20) as usize], 20)
            .unwrap();
        messages(&small, 0, 0, &body, End::At(K512 / 2));
        assert_eq!(sealed_at_512_kib(&small, 2 * K512).unwrap(), Some(true));
        // Zeros followed by no header: nothing said (a 2 MiB segment written that far).
        small.write_all_at(&[0; 20], K512).unwrap();
        assert_eq!(sealed_at_512_kib(&small, 2 * K512).unwrap(), None);

        // A 2 MiB log under 2 MiB whose session data holds a segment header exactly at
        // 512 KiB (a review made a fresh store refuse its own `conf` so): the message around
        // it runs past 512 KiB.
        let large = log(M2, &[(0, 0, 0)]);
        let mut data = vec![0xcd; 4000];
        let forged = forged_header(3 * K512, 3);
        let one = message(8, 0, 7, &data).len() as u64;
        let before = (K512 - 20) / one; // whole messages before the one around 512 KiB
        let start = 20 + before * one;
        let at = (K512 - start - (one - data.len() as u64)) as usize; // into its body
        data[at..at + forged.len()].copy_from_slice(&forged);
        messages(&large, 0, 0, &data, End::At(K512 + 100_000));
        let mut there = vec![0; 28];
        large.read_exact_at(&mut there, K512).unwrap();
        assert_eq!(there, forged, "the forged header sits at 512 KiB");
        assert_eq!(sealed_at_512_kib(&large, M2).unwrap(), Some(false));
        assert_eq!(conf_contradicted(&large, M2 as usize).unwrap(), None);
        assert_eq!(
            conf_contradicted(&large, K512 as usize).unwrap(),
            Some(Builder::NEW_STORE_SEGMENT_BYTES)
        );
        assert_eq!(segment_size_from_log(&large).unwrap(), LARGE);

        // Its first segment free, zeroed as sled zeroes one, and the next in use.
        let freed = log(3 * K512, &[(K512, 2 * K512, 2), (2 * K512, 3 * K512, 3)]);
        freed.write_all_at(&vec![0; K512 as usize], 0).unwrap();
        messages(&freed, K512, 2, &body, sealed(400));
        assert_eq!(sealed_at_512_kib(&freed, 3 * K512).unwrap(), Some(true));
        assert_eq!(
            conf_contradicted(&freed, M2 as usize).unwrap(),
            Some(SLED_DEFAULT_SEGMENT_BYTES)
        );
        assert_eq!(conf_contradicted(&freed, K512 as usize).unwrap(), None);
        // A header there that does not agree with its offset says nothing.
        let odd = log(2 * K512, &[(K512, 0, 0)]);
        odd.write_all_at(&vec![0; K512 as usize], 0).unwrap();
        assert_eq!(sealed_at_512_kib(&odd, 2 * K512).unwrap(), None);

        // A torn message before 512 KiB ends the walk without an answer: a header at
        // 512 KiB alone then refuses no `conf` (it is read so only without one).
        let torn = log(2 * K512, &[(0, 0, 0), (K512, K512, 1)]);
        messages(&torn, 0, 0, &body, sealed(400));
        torn.write_all_at(&[0xee], 20 + 3 * 1009 + 5).unwrap(); // the 4th message's length
        assert_eq!(sealed_at_512_kib(&torn, 2 * K512).unwrap(), None);
        assert_eq!(conf_contradicted(&torn, M2 as usize).unwrap(), None);
        assert_eq!(segment_size_from_log(&torn).unwrap(), SMALL);

        // Messages of another segment number (an earlier use's) end the walk too.
        let stale = log(2 * K512, &[(0, 4 * M2, 4), (K512, K512, 1)]);
        messages(&stale, 0, 3, &body, sealed(400));
        assert_eq!(sealed_at_512_kib(&stale, 2 * K512).unwrap(), None);
    }

    /// The walk reads real sled logs as they are: a store of sled's default 512 KiB segments
    /// and one of sessdb's 2 MiB, each written past 1 MiB.
    #[test]
    fn the_walk_reads_what_sled_writes() {
        let dir = tempfile::tempdir().unwrap();
        for (size, expected) in [(K512, Some(true)), (M2, Some(false))] {
            let path = dir.path().join(size.to_string());
            {
                let db = sled::Config::new()
                    .path(&path)
                    .segment_size(size as usize)
                    .open()
                    .unwrap();
                for i in 0u32..400 {
                    db.insert(i.to_be_bytes(), vec![i as u8; 3000]).unwrap();
                }
                db.flush().unwrap();
            }
            let log = File::open(path.join("db")).unwrap();
            let len = log.metadata().unwrap().len();
            assert!(len > 2 * K512, "{len}");
            assert_eq!(sealed_at_512_kib(&log, len).unwrap(), expected, "{size}");
        }
    }

    #[test]
    fn a_log_that_says_nothing_is_unknown() {
        assert_eq!(found(3 * M2, &[]), Found::Unknown);
        assert_eq!(found(0, &[]), Found::Empty);
        // At most one 512 KiB segment reads the same with either size, if it is sled's: it
        // starts with a segment header, or was freed (zeroed). Bytes of anything else are not
        // a log (a project's file named `db`, which sled would write over).
        assert_eq!(found(K512, &[(0, 0, 0)]), SMALL);
        assert_eq!(found(1000, &[(0, 0, 0)]), SMALL);
        assert_eq!(found(K512, &[]), Found::Unknown);
        let freed = log(K512, &[]);
        freed.write_all_at(&[0; 20], 0).unwrap();
        assert_eq!(segment_size_from_log(&freed).unwrap(), SMALL);
    }

    #[test]
    fn sled_varints_read_as_sled_writes_them() {
        for (bytes, value) in [
            (&[240][..], 240),
            (&[241, 1][..], 241),
            (&[248, 255][..], 2287),
            (&[249, 0, 0][..], 2288),
            (&[249, 255, 255][..], 67823),
            (&[250, 0x12, 0x34, 0x56][..], 0x56_3412),
            (&[255, 1, 2, 3, 4, 5, 6, 7, 8][..], 0x0807_0605_0403_0201),
        ] {
            assert_eq!(sled_varint(bytes), Some((value, &[][..])), "{bytes:?}");
        }
        assert_eq!(sled_varint(&[250, 1]), None);
        assert_eq!(sled_varint(&[]), None);
    }
}

#[cfg(test)]
mod torn_conf_tests {
    use super::*;

    /// A folder as a new store's making left it: an empty log, and a `conf` of `conf` bytes.
    fn made(conf: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("db"), b"").unwrap();
        fs::write(dir.path().join("conf"), conf).unwrap();
        dir
    }

    /// A torn `conf` is removed only while no other opener is in its attempt: sled writes a
    /// new store's `conf` before it takes its own lock, so an opener holding the gate may be
    /// writing it right then (a reviewer's injected delay removed such a `conf`).
    #[test]
    fn a_torn_conf_is_left_to_an_opener_that_holds_the_gate() {
        let text = b"segment_size: 2097152\nuse_compression: false\n".to_vec();
        let dir = made(&text);
        let conf = dir.path().join("conf");
        assert!(conf_is_torn(&conf));
        let gate = crate::folder_lock::opening_gate(dir.path(), std::time::Duration::ZERO).unwrap();
        assert!(gate.is_some());
        assert_eq!(remove_torn_conf(dir.path()).unwrap(), TornConf::Busy);
        assert!(conf.exists());
        drop(gate);
        assert_eq!(remove_torn_conf(dir.path()).unwrap(), TornConf::Removed);
        assert!(!conf.exists());
        assert_eq!(remove_torn_conf(dir.path()).unwrap(), TornConf::NotTorn);

        // Whole (its checksum follows), it is no torn `conf`, whatever else went wrong.
        let mut whole = text.clone();
        whole.extend_from_slice(&crc32fast::hash(&text).to_le_bytes());
        let dir = made(&whole);
        assert!(!conf_is_torn(&dir.path().join("conf")));
        assert_eq!(remove_torn_conf(dir.path()).unwrap(), TornConf::NotTorn);
        assert!(dir.path().join("conf").exists());
        // Nor with a log that holds something.
        let dir = made(&text);
        fs::write(dir.path().join("db"), b"x").unwrap();
        assert_eq!(remove_torn_conf(dir.path()).unwrap(), TornConf::Damaged);
        assert!(dir.path().join("conf").exists());
    }
}
