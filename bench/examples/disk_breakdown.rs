//! Where sessdb's bytes on disk go (docs/BENCHMARKS.md, "Disk").
//!
//! ```text
//! cargo run --release -p sessdb-bench --example disk_breakdown -- breakdown 100000 DIR [SEG_KIB,..]
//! cargo run --release -p sessdb-bench --example disk_breakdown -- settle 100000 DIR
//! cargo run --release -p sessdb-bench --example disk_breakdown -- compat DIR 512 2048
//! cargo run --release -p sessdb-bench --example disk_breakdown -- cleaner 100000 DIR off
//! ```
//!
//! - `breakdown`: populates a sessdb store as the bench does, prints every file's size and each
//!   tree's entries and key/value bytes, then replays the same keys and values into raw sled in
//!   the same write order, tree by tree and all together, once per segment size (KiB, default
//!   512: sled's default and sessdb's).
//! - `settle`: populates, then watches the folder while the store stays open (sled's segment
//!   cleaner runs on its flush thread), after closing and after a reopen (which writes a
//!   snapshot).
//! - `compat`: creates a sled database with one segment size and reopens it with another.
//! - `cleaner`: writes the peers' blob for every session four times into raw sled, with sled's
//!   flush thread (`500`, ms) or without it (`off`, as `Durability::Immediate` opens sled,
//!   flushing every 64 writes instead): sled's segment cleaner runs only on that thread.
//!
//! DIR should be on the disk to measure (not tmpfs); `breakdown` reuses `DIR/sessdb` if present.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use sessdb::{ManualClock, Store};

#[path = "../src/data.rs"]
#[allow(dead_code)]
mod data;

use data::Plan;

const CACHE_BYTES: u64 = sessdb::Builder::DEFAULT_CACHE_BYTES;
const DEFAULT_SEGMENT: usize = 512 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .context("usage: see the example's docs")
    };
    match arg(0)? {
        "breakdown" => {
            let segments = match args.get(3) {
                Some(list) => list
                    .split(',')
                    .map(|k| Ok(k.parse::<usize>()? * 1024))
                    .collect::<Result<Vec<_>>>()?,
                None => vec![DEFAULT_SEGMENT],
            };
            breakdown(arg(1)?.parse()?, Path::new(arg(2)?), &segments)
        }
        "settle" => settle(arg(1)?.parse()?, Path::new(arg(2)?)),
        "compat" => compat(
            Path::new(arg(1)?),
            arg(2)?.parse::<usize>()? * 1024,
            arg(3)?.parse::<usize>()? * 1024,
        ),
        "cleaner" => cleaner(arg(1)?.parse()?, Path::new(arg(2)?), arg(3)?.parse().ok()),
        other => bail!("unknown mode {other}"),
    }
}

/// The bench's plan for a store of `n` sessions (10,000 of them expire before purge).
fn plan(n: usize) -> Plan {
    Plan::for_examples(n, (n / 10_000).max(1))
}

/// Creates `n` sessions exactly as the bench's populate does, then flushes.
fn populate(n: usize, path: &Path) -> Result<Store> {
    let p = plan(n);
    let clock = ManualClock::at_ms(p.t0);
    let store = Store::builder().clock(clock.clone()).open(path)?;
    for i in 0..n {
        clock.set_ms(p.created(i));
        p.sessdb_session(&store, i, &p.content(i))?.save()?;
    }
    store.flush()?;
    Ok(store)
}

/// One session's writes as a populate makes them: expiry key, record (key, value), principals
/// key.
struct Writes {
    expiry: Vec<u8>,
    key: Vec<u8>,
    record: Vec<u8>,
    principal: Vec<u8>,
}

fn breakdown(n: usize, dir: &Path, segments: &[usize]) -> Result<()> {
    let src = dir.join("sessdb");
    if !src.exists() {
        let started = Instant::now();
        drop(populate(n, &src)?);
        println!(
            "sessdb populate of {n}: {:.1} s, {:.1} B/session",
            started.elapsed().as_secs_f64(),
            per_session(disk_bytes(&src), n)
        );
        // sled lets go of its lock from a background thread.
        std::thread::sleep(Duration::from_millis(600));
    }
    print_files(&src, n);
    let writes = read_trees(&src, n)?;
    for which in ["s", "e", "p", "se", "sp", "esp"] {
        for &segment in segments {
            let path = dir.join(format!("replay-{which}-{segment}"));
            let _ = std::fs::remove_dir_all(&path);
            replay(&writes, &path, segment, which)?;
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

/// Prints each tree's entries and bytes, and returns the writes in creation order.
fn read_trees(path: &Path, n: usize) -> Result<Vec<Writes>> {
    let db = open_raw(path, DEFAULT_SEGMENT, Some(500))?;
    for name in ["sessions", "expiry", "principals", "meta"] {
        let (mut count, mut keys, mut values) = (0usize, 0usize, 0usize);
        for kv in db.open_tree(name)?.iter() {
            let (k, v) = kv?;
            count += 1;
            keys += k.len();
            values += v.len();
        }
        println!(
            "tree {name:<10} {count:>8} entries, key {:.1} B, value {:.1} B on average: {:.1} B/session",
            keys as f64 / count.max(1) as f64,
            values as f64 / count.max(1) as f64,
            per_session((keys + values) as u64, n)
        );
    }
    let mut index: HashMap<Vec<u8>, (Vec<u8>, Vec<u8>)> = HashMap::new();
    for kv in db.open_tree("expiry")?.iter() {
        let (k, _) = kv?;
        index.entry(k[8..].to_vec()).or_default().0 = k.to_vec();
    }
    for kv in db.open_tree("principals")?.iter() {
        let (k, _) = kv?;
        index.entry(k[k.len() - 16..].to_vec()).or_default().1 = k.to_vec();
    }
    let mut writes = Vec::with_capacity(n);
    for kv in db.open_tree("sessions")?.iter() {
        let (k, v) = kv?;
        let (expiry, principal) = index
            .remove(k.as_ref())
            .context("a record without entries")?;
        writes.push(Writes {
            expiry,
            key: k.to_vec(),
            record: v.to_vec(),
            principal,
        });
    }
    writes.sort_by_key(|w| created(&w.record));
    Ok(writes)
}

/// `created` of a record: the format byte, then postcard varints `expires_at` (zigzag),
/// `entry_lag` (format 2 only), `version`, `created` (zigzag).
fn created(record: &[u8]) -> i64 {
    let before = if record.first() == Some(&1) { 2 } else { 3 };
    let mut pos = 1;
    let mut varint = || {
        let mut v = 0u64;
        let mut shift = 0;
        while let Some(&b) = record.get(pos) {
            pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        v
    };
    for _ in 0..before {
        varint();
    }
    let z = varint();
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Writes the trees named in `which` (`e`xpiry, `s`essions, `p`rincipals) into a fresh raw
/// sled database, in sessdb's write order.
fn replay(writes: &[Writes], path: &Path, segment: usize, which: &str) -> Result<()> {
    let db = open_raw(path, segment, Some(500))?;
    let sessions = db.open_tree("sessions")?;
    let expiry = db.open_tree("expiry")?;
    let principals = db.open_tree("principals")?;
    let started = Instant::now();
    for w in writes {
        if which.contains('e') {
            expiry.insert(&w.expiry, &[])?;
        }
        if which.contains('s') {
            sessions.insert(&w.key, &w.record[..])?;
        }
        if which.contains('p') {
            principals.insert(&w.principal, &[])?;
        }
    }
    db.flush()?;
    println!(
        "raw sled, trees {which:<3}, segment {:>5} KiB: {:>7.1} B/session ({:.0} sessions/s)",
        segment / 1024,
        per_session(disk_bytes(path), writes.len()),
        writes.len() as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn settle(n: usize, path: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(path);
    let store = populate(n, path)?;
    let flushed = Instant::now();
    for wait in [0, 2, 5, 10, 20] {
        while flushed.elapsed() < Duration::from_secs(wait) {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "open, {wait:>2} s after the flush: {:.1} B/session",
            per_session(disk_bytes(path), n)
        );
    }
    drop(store);
    std::thread::sleep(Duration::from_millis(600));
    println!("closed: {:.1} B/session", per_session(disk_bytes(path), n));
    drop(Store::open(path)?);
    std::thread::sleep(Duration::from_millis(600));
    println!(
        "reopened and closed: {:.1} B/session",
        per_session(disk_bytes(path), n)
    );
    print_files(path, n);
    Ok(())
}

fn compat(path: &Path, created_with: usize, reopened_with: usize) -> Result<()> {
    let _ = std::fs::remove_dir_all(path);
    let db = open_raw(path, created_with, Some(500))?;
    db.insert("k", "v")?;
    db.flush()?;
    drop(db);
    std::thread::sleep(Duration::from_millis(600));
    let conf = std::fs::read(path.join("conf"))?;
    println!(
        "conf (without its crc): {:?}",
        String::from_utf8_lossy(&conf[..conf.len().saturating_sub(4)])
    );
    match open_raw(path, reopened_with, Some(500)) {
        Ok(_) => println!(
            "created with {} KiB segments, reopened with {} KiB: ok",
            created_with / 1024,
            reopened_with / 1024
        ),
        Err(e) => println!(
            "created with {} KiB segments, reopened with {} KiB: {e:#}",
            created_with / 1024,
            reopened_with / 1024
        ),
    }
    Ok(())
}

fn cleaner(n: usize, path: &Path, flush_every_ms: Option<u64>) -> Result<()> {
    let _ = std::fs::remove_dir_all(path);
    let db = open_raw(path, DEFAULT_SEGMENT, flush_every_ms)?;
    let p = plan(n);
    for round in 1..=4 {
        for i in 0..n {
            db.insert(
                p.peer_key(i),
                p.peer_value(i, &p.content(i), p.created(i), round),
            )?;
            if flush_every_ms.is_none() && i % 64 == 0 {
                db.flush()?;
            }
        }
        db.flush()?;
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "flush thread {flush_every_ms:?} ms, after writing every session {round} time(s): {:.1} B/session",
            per_session(disk_bytes(path), n)
        );
    }
    Ok(())
}

fn open_raw(path: &Path, segment: usize, flush_every_ms: Option<u64>) -> Result<sled::Db> {
    Ok(sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(flush_every_ms)
        .segment_size(segment)
        .open()?)
}

fn per_session(bytes: u64, n: usize) -> f64 {
    bytes as f64 / n.max(1) as f64
}

/// Bytes allocated under `path` (as the bench's `disk_bytes`).
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        files(path).iter().map(|f| disk_bytes(f)).sum()
    } else {
        meta.blocks() * 512
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn print_files(dir: &Path, n: usize) {
    for f in files(dir) {
        if f.is_dir() {
            print_files(&f, n);
        } else if let Ok(meta) = std::fs::metadata(&f) {
            println!(
                "  {:<28} {:>14} B allocated, {:>7.1} B/session",
                f.strip_prefix(dir).unwrap_or(&f).display(),
                meta.blocks() * 512,
                per_session(meta.blocks() * 512, n)
            );
        }
    }
}
