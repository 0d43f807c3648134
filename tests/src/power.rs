//! The journal of the power-loss test (`tests/power.rs`, written by `src/bin/power_writer.rs`)
//! and what a power cut leaves of it.
//!
//! The writer records every call that changes a file or a folder, in the order they happened:
//! what each write put where, each truncation, each creation, rename and removal of a name, and
//! each `fsync`/`fdatasync` (recorded before the call, so that a write made while it ran does not
//! count as synced by it). Files and folders are named by inode, so a rename or a second open
//! of a file keeps its history. Beside those, the writer records its own `op …`/`ok …` lines,
//! so every point of the journal tells which operations were acknowledged by then.
//!
//! [`Journal::cut`] builds the folder that a power cut at any point of the journal leaves:
//! a file's content is what it held at its last `fsync`, and a folder's entries are those it
//! had at its last `fsync`; what was written after either is lost ([`Keep::Synced`]), or partly
//! kept ([`Keep::Prefix`], [`Keep::Pages`]), as a disk that honours `fsync` may keep it.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A write, a truncation, a sync or a change of a folder, by inode; or the writer's own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// `data` written at `offset` of the file.
    Write {
        ino: u64,
        offset: u64,
        data: &'a [u8],
    },
    /// The file's length set (`ftruncate`, `O_TRUNC`).
    SetLen { ino: u64, len: u64 },
    /// `fsync` or `fdatasync` of a file, as it started.
    SyncFile { ino: u64 },
    /// `fsync` of a folder, as it started.
    SyncDir { ino: u64 },
    /// `sync` or `syncfs`: everything.
    SyncAll,
    /// `sync_file_range` of a file's bytes `offset..offset + len`, waited for, as it returned:
    /// the bytes are on the disk, but not necessarily past its write cache, nor the file's size.
    Pushed { ino: u64, offset: u64, len: u64 },
    /// `name` made in folder `dir` (`O_CREAT`, `mkdir`) for `ino`; for an existing file,
    /// nothing changes.
    Create {
        dir: u64,
        name: &'a [u8],
        ino: u64,
        is_dir: bool,
    },
    /// `from` in `from_dir` renamed `to` in `to_dir` (replacing what was there).
    Rename {
        from_dir: u64,
        from: &'a [u8],
        to_dir: u64,
        to: &'a [u8],
    },
    /// `name` removed from `dir` (`unlink`, `rmdir`).
    Remove { dir: u64, name: &'a [u8] },
    /// A call the journal cannot follow (its name): the test fails on it.
    Unsupported { call: &'a [u8] },
    /// A line of the writer (`op …`, `ok …`).
    Note { line: &'a [u8] },
}

const WRITE: u8 = b'W';
const SET_LEN: u8 = b'T';
const SYNC_FILE: u8 = b'S';
const SYNC_DIR: u8 = b'Y';
const SYNC_ALL: u8 = b'A';
const PUSHED: u8 = b'P';
const CREATE: u8 = b'C';
const RENAME: u8 = b'R';
const REMOVE: u8 = b'U';
const UNSUPPORTED: u8 = b'X';
const NOTE: u8 = b'K';

impl Record<'_> {
    /// The record as the journal holds it: a tag, then its fields (integers as 8 bytes
    /// little-endian, byte strings after their length).
    pub fn encode(&self) -> Vec<u8> {
        fn int(out: &mut Vec<u8>, v: u64) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            int(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        let mut out = Vec::new();
        match *self {
            Record::Write { ino, offset, data } => {
                out.push(WRITE);
                int(&mut out, ino);
                int(&mut out, offset);
                bytes(&mut out, data);
            }
            Record::SetLen { ino, len } => {
                out.push(SET_LEN);
                int(&mut out, ino);
                int(&mut out, len);
            }
            Record::SyncFile { ino } => {
                out.push(SYNC_FILE);
                int(&mut out, ino);
            }
            Record::SyncDir { ino } => {
                out.push(SYNC_DIR);
                int(&mut out, ino);
            }
            Record::SyncAll => out.push(SYNC_ALL),
            Record::Pushed { ino, offset, len } => {
                out.push(PUSHED);
                int(&mut out, ino);
                int(&mut out, offset);
                int(&mut out, len);
            }
            Record::Create {
                dir,
                name,
                ino,
                is_dir,
            } => {
                out.push(CREATE);
                int(&mut out, dir);
                bytes(&mut out, name);
                int(&mut out, ino);
                int(&mut out, u64::from(is_dir));
            }
            Record::Rename {
                from_dir,
                from,
                to_dir,
                to,
            } => {
                out.push(RENAME);
                int(&mut out, from_dir);
                bytes(&mut out, from);
                int(&mut out, to_dir);
                bytes(&mut out, to);
            }
            Record::Remove { dir, name } => {
                out.push(REMOVE);
                int(&mut out, dir);
                bytes(&mut out, name);
            }
            Record::Unsupported { call } => {
                out.push(UNSUPPORTED);
                bytes(&mut out, call);
            }
            Record::Note { line } => {
                out.push(NOTE);
                bytes(&mut out, line);
            }
        }
        out
    }
}

/// Reads the records of a journal.
///
/// # Panics
/// On a journal cut short or of an unknown record.
pub fn parse(mut buf: &[u8]) -> Vec<Record<'_>> {
    fn int(buf: &mut &[u8]) -> u64 {
        let (v, rest) = buf.split_first_chunk::<8>().expect("journal cut short");
        *buf = rest;
        u64::from_le_bytes(*v)
    }
    fn bytes<'a>(buf: &mut &'a [u8]) -> &'a [u8] {
        let n = usize::try_from(int(buf)).expect("length");
        let (v, rest) = buf.split_at(n);
        *buf = rest;
        v
    }
    let mut out = Vec::new();
    while let Some((&tag, rest)) = buf.split_first() {
        buf = rest;
        let b = &mut buf;
        out.push(match tag {
            WRITE => Record::Write {
                ino: int(b),
                offset: int(b),
                data: bytes(b),
            },
            SET_LEN => Record::SetLen {
                ino: int(b),
                len: int(b),
            },
            SYNC_FILE => Record::SyncFile { ino: int(b) },
            SYNC_DIR => Record::SyncDir { ino: int(b) },
            SYNC_ALL => Record::SyncAll,
            PUSHED => Record::Pushed {
                ino: int(b),
                offset: int(b),
                len: int(b),
            },
            CREATE => Record::Create {
                dir: int(b),
                name: bytes(b),
                ino: int(b),
                is_dir: int(b) != 0,
            },
            RENAME => Record::Rename {
                from_dir: int(b),
                from: bytes(b),
                to_dir: int(b),
                to: bytes(b),
            },
            REMOVE => Record::Remove {
                dir: int(b),
                name: bytes(b),
            },
            UNSUPPORTED => Record::Unsupported { call: bytes(b) },
            NOTE => Record::Note { line: bytes(b) },
            other => panic!("unknown journal record {other}"),
        });
    }
    out
}

/// A file or folder as one life of an inode (inode numbers are reused after a removal).
type Node = usize;

/// What a record did, with inodes resolved to nodes.
#[derive(Debug, Clone)]
enum Step {
    Write {
        node: Node,
        offset: u64,
        /// The range of the data in the journal's buffer.
        data: std::ops::Range<usize>,
    },
    SetLen {
        node: Node,
        len: u64,
    },
    Sync {
        node: Node,
    },
    SyncAll,
    Pushed {
        node: Node,
        range: std::ops::Range<u64>,
    },
    /// A change of folder `dir`: `name` now names `to` (or nothing).
    Entry {
        dir: Node,
        name: Vec<u8>,
        to: Option<Node>,
    },
    /// A rename within one folder, as one step.
    Move {
        dir: Node,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Note(String),
}

/// How much of what was not synced a cut keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: every file as at its last `fsync`, every folder as at its last `fsync`.
    Synced,
    /// Also every change made before step `n` of the journal (a disk that writes in order).
    Prefix(usize),
    /// Also the writes that a later `sync_file_range` (waited for) wrote to the disk: a disk
    /// without a write cache keeps them, while the page cache loses the rest (sled's log is
    /// pushed so, the blob files and the folders are not).
    Pushed,
    /// Also, for each 4 KiB page of a file, the writes to it up to a random one of them (the
    /// page cache writes pages back in any order; a page holds a prefix of its writes), and
    /// the folders' changes up to a random step; drawn from the seed.
    Pages(u64),
}

/// A file tree as it was before the writer started: every file and folder under `root`,
/// taken as durable.
#[derive(Debug, Default)]
struct Base {
    /// ino → is_dir
    nodes: Vec<(u64, bool, Option<Vec<u8>>)>,
    entries: Vec<(Node, Vec<u8>, Node)>,
}

/// A journal read with the tree it started from.
#[derive(Debug)]
pub struct Journal {
    buf: Vec<u8>,
    steps: Vec<Step>,
    /// Per node: whether it is a folder, and its content before the writer started.
    nodes: Vec<(bool, Option<Vec<u8>>)>,
    /// The folders' entries before the writer started.
    base_entries: HashMap<Node, BTreeMap<Vec<u8>, Node>>,
    root: Node,
}

fn scan(dir: &Path, base: &mut Base, by_ino: &mut HashMap<u64, Node>) -> io::Result<Node> {
    let meta = fs::symlink_metadata(dir)?;
    let node = base.nodes.len();
    base.nodes.push((meta.ino(), true, None));
    by_ino.insert(meta.ino(), node);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let child = if meta.is_dir() {
            scan(&path, base, by_ino)?
        } else if meta.is_file() {
            let n = base.nodes.len();
            base.nodes.push((meta.ino(), false, Some(fs::read(&path)?)));
            by_ino.insert(meta.ino(), n);
            n
        } else {
            return Err(io::Error::other(format!("not a file: {}", path.display())));
        };
        use std::os::unix::ffi::OsStrExt;
        base.entries
            .push((node, entry.file_name().as_bytes().to_vec(), child));
    }
    Ok(node)
}

/// The tree under `root` before a writer runs: what [`Journal::read`] starts from.
#[derive(Debug)]
pub struct Before {
    base: Base,
    by_ino: HashMap<u64, Node>,
    root: Node,
}

impl Before {
    /// Reads every file and folder under `root`.
    ///
    /// # Errors
    /// I/O errors, and anything under `root` that is neither a file nor a folder.
    pub fn scan(root: &Path) -> io::Result<Before> {
        let mut base = Base::default();
        let mut by_ino = HashMap::new();
        let root = scan(root, &mut base, &mut by_ino)?;
        Ok(Before { base, by_ino, root })
    }
}

impl Journal {
    /// Reads a journal written on top of `before`.
    ///
    /// # Panics
    /// On a record the journal cannot follow ([`Record::Unsupported`], a rename between
    /// folders).
    pub fn read(buf: Vec<u8>, before: Before) -> Journal {
        let Before {
            base,
            mut by_ino,
            root,
        } = before;
        let mut nodes: Vec<(bool, Option<Vec<u8>>)> = base
            .nodes
            .into_iter()
            .map(|(_, is_dir, content)| (is_dir, content))
            .collect();
        let mut base_entries: HashMap<Node, BTreeMap<Vec<u8>, Node>> = HashMap::new();
        for (dir, name, child) in base.entries {
            base_entries.entry(dir).or_default().insert(name, child);
        }
        for (n, (is_dir, _)) in nodes.iter().enumerate() {
            if *is_dir {
                base_entries.entry(n).or_default();
            }
        }
        // The entries as the records go, to tell a new file from an existing one opened with
        // O_CREAT, and a new life of a reused inode number.
        let mut entries = base_entries.clone();
        let mut steps = Vec::new();
        let records = parse(&buf);
        let start = buf.as_ptr() as usize;
        fn node_of(
            by_ino: &mut HashMap<u64, Node>,
            ino: u64,
            nodes: &mut Vec<(bool, Option<Vec<u8>>)>,
        ) -> Node {
            *by_ino.entry(ino).or_insert_with(|| {
                nodes.push((false, None));
                nodes.len() - 1
            })
        }
        for record in &records {
            let step = match *record {
                Record::Write { ino, offset, data } => {
                    let at = data.as_ptr() as usize - start;
                    Step::Write {
                        node: node_of(&mut by_ino, ino, &mut nodes),
                        offset,
                        data: at..at + data.len(),
                    }
                }
                Record::SetLen { ino, len } => Step::SetLen {
                    node: node_of(&mut by_ino, ino, &mut nodes),
                    len,
                },
                Record::SyncFile { ino } | Record::SyncDir { ino } => Step::Sync {
                    node: node_of(&mut by_ino, ino, &mut nodes),
                },
                Record::SyncAll => Step::SyncAll,
                Record::Pushed { ino, offset, len } => Step::Pushed {
                    node: node_of(&mut by_ino, ino, &mut nodes),
                    range: offset..offset + len,
                },
                Record::Create {
                    dir,
                    name,
                    ino,
                    is_dir,
                } => {
                    let dir = node_of(&mut by_ino, dir, &mut nodes);
                    let existing = entries.get(&dir).and_then(|e| e.get(name)).copied();
                    let same = existing.is_some_and(|n| by_ino.get(&ino) == Some(&n));
                    if same {
                        continue;
                    }
                    nodes.push((is_dir, None));
                    let node = nodes.len() - 1;
                    by_ino.insert(ino, node);
                    if is_dir {
                        entries.entry(node).or_default();
                    }
                    entries.entry(dir).or_default().insert(name.to_vec(), node);
                    Step::Entry {
                        dir,
                        name: name.to_vec(),
                        to: Some(node),
                    }
                }
                Record::Rename {
                    from_dir,
                    from,
                    to_dir,
                    to,
                } => {
                    assert_eq!(from_dir, to_dir, "a rename between folders");
                    let dir = node_of(&mut by_ino, from_dir, &mut nodes);
                    let e = entries.entry(dir).or_default();
                    if let Some(n) = e.remove(from) {
                        e.insert(to.to_vec(), n);
                    }
                    Step::Move {
                        dir,
                        from: from.to_vec(),
                        to: to.to_vec(),
                    }
                }
                Record::Remove { dir, name } => {
                    let dir = node_of(&mut by_ino, dir, &mut nodes);
                    entries.entry(dir).or_default().remove(name);
                    Step::Entry {
                        dir,
                        name: name.to_vec(),
                        to: None,
                    }
                }
                Record::Unsupported { call } => panic!(
                    "the writer made a call the journal cannot follow: {}",
                    String::from_utf8_lossy(call)
                ),
                Record::Note { line } => {
                    Step::Note(String::from_utf8(line.to_vec()).expect("utf-8 note"))
                }
            };
            steps.push(step);
        }
        Journal {
            buf,
            steps,
            nodes,
            base_entries,
            root,
        }
    }

    /// How many steps the journal holds: a cut is at 0 to this.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the journal holds no step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The writer's lines (`op …`, `ok …`) written before step `at`.
    pub fn lines_before(&self, at: usize) -> Vec<String> {
        self.steps[..at]
            .iter()
            .filter_map(|s| match s {
                Step::Note(line) => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    /// The steps at which the writer wrote a line: `(step, line)`.
    pub fn notes(&self) -> Vec<(usize, &str)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Note(line) => Some((i, line.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The steps before `at`, one line each (for a failure's report).
    pub fn describe(&self, at: usize) -> Vec<String> {
        self.steps[..at]
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Step::Write { node, offset, data } => {
                    format!("{i}: write node {node} at {offset}, {} bytes", data.len())
                }
                Step::Entry { dir, name, to } => format!(
                    "{i}: folder {dir}: {} -> {to:?}",
                    String::from_utf8_lossy(name)
                ),
                Step::Move { dir, from, to } => format!(
                    "{i}: folder {dir}: rename {} -> {}",
                    String::from_utf8_lossy(from),
                    String::from_utf8_lossy(to)
                ),
                other => format!("{i}: {other:?}"),
            })
            .collect()
    }

    /// Every cut that leaves a different folder under [`Keep::Synced`], with the most
    /// acknowledgements it must hold: the steps that sync a file or folder changed since its
    /// last sync (the folder a cut leaves changes there only), and the end. Checking these
    /// checks every cut of the journal under [`Keep::Synced`].
    pub fn sync_points(&self) -> Vec<usize> {
        let mut dirty: HashMap<Node, bool> = HashMap::new();
        let mut points = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Write { node, .. } | Step::SetLen { node, .. } => {
                    dirty.insert(*node, true);
                }
                Step::Entry { dir, .. } | Step::Move { dir, .. } => {
                    dirty.insert(*dir, true);
                }
                Step::Sync { node } => {
                    if dirty.insert(*node, false) == Some(true) {
                        points.push(i);
                    }
                }
                Step::SyncAll => {
                    if dirty.values().any(|&d| d) {
                        points.push(i);
                    }
                    dirty.clear();
                }
                Step::Pushed { .. } | Step::Note(_) => {}
            }
        }
        points.push(self.steps.len());
        points
    }

    /// The steps that `fsync` a file: a cut there keeps the most written and not synced.
    pub fn file_syncs(&self) -> Vec<usize> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Sync { node } if !self.nodes[*node].0))
            .map(|(i, _)| i)
            .collect()
    }

    /// How many `fsync`s (of files and folders) came before step `at`.
    pub fn syncs_before(&self, at: usize) -> usize {
        self.steps[..at]
            .iter()
            .filter(|s| matches!(s, Step::Sync { .. } | Step::SyncAll))
            .count()
    }

    /// Writes into `to` (a folder that must not exist) the tree under the root as a power cut
    /// before step `at` leaves it, keeping of what was not synced what `keep` says.
    ///
    /// # Errors
    /// I/O errors.
    pub fn cut(&self, at: usize, keep: Keep, to: &Path) -> io::Result<()> {
        let steps = &self.steps[..at];
        // The last sync of each node.
        let mut synced: HashMap<Node, usize> = HashMap::new();
        let mut all_synced = 0;
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Sync { node } => {
                    synced.insert(*node, i);
                }
                Step::SyncAll => all_synced = i,
                _ => {}
            }
        }
        let synced_before =
            |node: Node, i: usize| i < all_synced || synced.get(&node).is_some_and(|&s| i < s);
        let mut rng = match keep {
            Keep::Pages(seed) => fastrand::Rng::with_seed(seed),
            _ => fastrand::Rng::with_seed(0),
        };
        // For `Pages`: per (node, page), the writes after its last sync that reached the
        // disk: those before a threshold drawn among them.
        let mut page_upto: HashMap<(Node, u64), usize> = HashMap::new();
        let dirs_upto = match keep {
            Keep::Synced | Keep::Pushed => 0,
            Keep::Prefix(n) => n,
            Keep::Pages(_) => rng.usize(..=at),
        };
        if let Keep::Pages(_) = keep {
            let mut writes: HashMap<(Node, u64), Vec<usize>> = HashMap::new();
            for (i, step) in steps.iter().enumerate() {
                if let Step::Write { node, offset, data } = step {
                    if synced_before(*node, i) {
                        continue;
                    }
                    let len = data.len() as u64;
                    for page in offset / 4096..=(offset + len.max(1) - 1) / 4096 {
                        writes.entry((*node, page)).or_default().push(i);
                    }
                }
            }
            let mut keys: Vec<_> = writes.keys().copied().collect();
            keys.sort_unstable();
            for key in keys {
                let w = &writes[&key];
                let k = rng.usize(..=w.len());
                page_upto.insert(key, if k == 0 { 0 } else { w[k - 1] + 1 });
            }
        }
        // For `Pushed`: per node, the ranges `sync_file_range` wrote, and when.
        let mut pushed: HashMap<Node, Vec<(usize, std::ops::Range<u64>)>> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            if let Step::Pushed { node, range } = step {
                pushed.entry(*node).or_default().push((i, range.clone()));
            }
        }
        let data_kept = |node: Node, i: usize, range: std::ops::Range<u64>| -> bool {
            synced_before(node, i)
                || match keep {
                    Keep::Synced | Keep::Pages(_) => false,
                    Keep::Prefix(n) => i < n,
                    Keep::Pushed => pushed.get(&node).is_some_and(|p| {
                        p.iter()
                            .any(|(j, r)| *j > i && r.start <= range.start && range.end <= r.end)
                    }),
                }
        };
        // File contents.
        let mut content: HashMap<Node, Vec<u8>> = HashMap::new();
        fn file<'c>(
            nodes: &[(bool, Option<Vec<u8>>)],
            content: &'c mut HashMap<Node, Vec<u8>>,
            node: Node,
        ) -> &'c mut Vec<u8> {
            content
                .entry(node)
                .or_insert_with(|| nodes[node].1.clone().unwrap_or_default())
        }
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Write { node, offset, data } => {
                    let bytes = &self.buf[data.clone()];
                    let end = offset + bytes.len() as u64;
                    if data_kept(*node, i, *offset..end) {
                        write_at(file(&self.nodes, &mut content, *node), *offset, bytes);
                    } else if let Keep::Pages(_) = keep {
                        // Page by page.
                        let mut at = *offset;
                        while at < end {
                            let page = at / 4096;
                            let next = ((page + 1) * 4096).min(end);
                            if page_upto.get(&(*node, page)).is_some_and(|&u| i < u) {
                                let from = usize::try_from(at - offset).expect("size");
                                let to = usize::try_from(next - offset).expect("size");
                                write_at(
                                    file(&self.nodes, &mut content, *node),
                                    at,
                                    &bytes[from..to],
                                );
                            }
                            at = next;
                        }
                    }
                }
                Step::SetLen { node, len } => {
                    let kept = synced_before(*node, i) || matches!(keep, Keep::Prefix(n) if i < n);
                    if kept {
                        file(&self.nodes, &mut content, *node)
                            .resize(usize::try_from(*len).expect("size"), 0);
                    }
                }
                _ => {}
            }
        }
        // Folder entries.
        let mut entries = self.base_entries.clone();
        for (i, step) in steps.iter().enumerate() {
            let dir = match step {
                Step::Entry { dir, .. } | Step::Move { dir, .. } => *dir,
                _ => continue,
            };
            if !(synced_before(dir, i) || i < dirs_upto) {
                continue;
            }
            let e = entries.entry(dir).or_default();
            match step {
                Step::Entry {
                    name, to: Some(n), ..
                } => {
                    e.insert(name.clone(), *n);
                }
                Step::Entry { name, to: None, .. } => {
                    e.remove(name);
                }
                Step::Move { from, to, .. } => {
                    if let Some(n) = e.remove(from) {
                        e.insert(to.clone(), n);
                    }
                }
                _ => {}
            }
        }
        self.materialize(self.root, to, &entries, &mut content)
    }

    fn materialize(
        &self,
        dir: Node,
        to: &Path,
        entries: &HashMap<Node, BTreeMap<Vec<u8>, Node>>,
        content: &mut HashMap<Node, Vec<u8>>,
    ) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        fs::create_dir(to)?;
        for (name, &node) in entries.get(&dir).into_iter().flatten() {
            let path = to.join(std::ffi::OsStr::from_bytes(name));
            if self.nodes[node].0 {
                self.materialize(node, &path, entries, content)?;
            } else {
                let bytes = content
                    .remove(&node)
                    .or_else(|| self.nodes[node].1.clone())
                    .unwrap_or_default();
                fs::write(&path, bytes)?;
            }
        }
        Ok(())
    }
}

fn write_at(file: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let at = usize::try_from(offset).expect("offset");
    if file.len() < at + bytes.len() {
        file.resize(at + bytes.len(), 0);
    }
    file[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The differences between two trees (names and file contents), for the check that the
/// journal followed every change: empty when they are alike.
///
/// # Errors
/// I/O errors.
pub fn differences(a: &Path, b: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let names = |p: &Path| -> io::Result<Vec<std::ffi::OsString>> {
        let mut v: Vec<_> = fs::read_dir(p)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        v.sort();
        Ok(v)
    };
    let (na, nb) = (names(a)?, names(b)?);
    if na != nb {
        out.push(format!("{}: {na:?} against {nb:?}", a.display()));
        return Ok(out);
    }
    for name in na {
        let (pa, pb) = (a.join(&name), b.join(&name));
        if pa.is_dir() {
            out.extend(differences(&pa, &pb)?);
        } else {
            let (ca, cb) = (fs::read(&pa)?, fs::read(&pb)?);
            if ca != cb {
                let first = ca.iter().zip(&cb).position(|(x, y)| x != y);
                out.push(format!(
                    "{}: {} bytes against {}, first difference at {first:?}",
                    pa.display(),
                    ca.len(),
                    cb.len()
                ));
            }
        }
    }
    Ok(out)
}
