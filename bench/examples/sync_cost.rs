//! What one durable commit costs on this disk, by what it writes (docs/BENCHMARKS.md, "Missed
//! targets", immediate durability).
//!
//! ```text
//! cargo run --release -p sessdb-bench --example sync_cost -- DIR [COMMITS]
//! ```
//!
//! Each row commits COMMITS (default 2,000) small writes one at a time, in a new folder under
//! DIR (which must be on the disk to measure, not tmpfs; it is removed afterwards), and prints
//! commits/s and the p50 and p99 of one commit:
//! - sled: an insert and `flush` (sled's `pwrite` and `sync_file_range`), then an `fsync` of
//!   its `db` file, as `Durability::Immediate` commits a lone saver's write; and the same
//!   without the `fsync`, which survives a killed process but not a power loss;
//! - a file written at its end, with `fdatasync` (and with `fsync`): a log that grows;
//! - a file written over blocks already written, with `fdatasync`: a log that reuses its space,
//!   as SQLite's WAL does after a checkpoint;
//! - SQLite in WAL mode with `synchronous=FULL`: an `INSERT OR REPLACE` in its own commit.
//!
//! The write is 700 bytes, about a session's record and index entries.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};

const WRITE: usize = 700;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, commits) = match args.as_slice() {
        [dir] => (PathBuf::from(dir), 2000),
        [dir, n] => (
            PathBuf::from(dir),
            n.parse()
                .with_context(|| format!("COMMITS: not a number: {n}"))?,
        ),
        _ => bail!("usage: sync_cost DIR [COMMITS]"),
    };
    ensure!(commits > 0, "COMMITS must be at least 1");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let payload: Vec<u8> = (0..WRITE).map(|i| (i * 31 % 251) as u8).collect();

    println!("| commit | commits/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    let rows: [(&str, Runner); 6] = [
        (
            "sled insert + flush + fsync (sessdb, one saver)",
            sled_commits(true),
        ),
        ("sled insert + flush (no fsync)", sled_commits(false)),
        ("file append + fdatasync", append(false)),
        ("file append + fsync", append(true)),
        ("file overwrite + fdatasync", Box::new(overwrite)),
        ("SQLite WAL, synchronous=FULL", Box::new(sqlite)),
    ];
    for (name, run) in rows {
        let folder = tempfile::tempdir_in(&dir).context("a temporary folder")?;
        let mut took =
            run(folder.path(), commits, &payload).with_context(|| format!("measuring {name}"))?;
        took.sort_unstable();
        let total: Duration = took.iter().sum();
        println!(
            "| {name} | {:.0} | {:.0} µs | {:.0} µs |",
            commits as f64 / total.as_secs_f64(),
            micros(&took, 0.50),
            micros(&took, 0.99),
        );
    }
    Ok(())
}

type Runner = Box<dyn Fn(&Path, usize, &[u8]) -> Result<Vec<Duration>>>;

fn micros(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn timed(commits: usize, mut commit: impl FnMut(usize) -> Result<()>) -> Result<Vec<Duration>> {
    let mut took = Vec::with_capacity(commits);
    for i in 0..commits {
        let start = Instant::now();
        commit(i)?;
        took.push(start.elapsed());
    }
    Ok(took)
}

fn sled_commits(fsync: bool) -> Runner {
    Box::new(move |dir, commits, payload| {
        let path = dir.join("sled");
        let db = sled::Config::new()
            .path(&path)
            .segment_size(sessdb::Builder::NEW_STORE_SEGMENT_BYTES)
            .flush_every_ms(None)
            .open()?;
        let file = File::open(path.join("db"))?;
        timed(commits, |i| {
            db.insert((i as u64).to_be_bytes(), payload)?;
            db.flush()?;
            if fsync {
                file.sync_all()?;
            }
            Ok(())
        })
    })
}

fn append(fsync: bool) -> Runner {
    Box::new(move |dir, commits, payload| {
        let file = create(&dir.join("log"))?;
        timed(commits, |i| {
            file.write_all_at(payload, (i * payload.len()) as u64)?;
            if fsync {
                file.sync_all()?;
            } else {
                file.sync_data()?;
            }
            Ok(())
        })
    })
}

fn overwrite(dir: &Path, commits: usize, payload: &[u8]) -> Result<Vec<Duration>> {
    let file = create(&dir.join("log"))?;
    // Written and synced first, so that no commit allocates a block or changes the size.
    file.write_all_at(&vec![0; commits * payload.len()], 0)?;
    file.sync_all()?;
    timed(commits, |i| {
        file.write_all_at(payload, (i * payload.len()) as u64)?;
        file.sync_data()?;
        Ok(())
    })
}

fn sqlite(dir: &Path, commits: usize, payload: &[u8]) -> Result<Vec<Duration>> {
    let conn = rusqlite::Connection::open(dir.join("sqlite.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute(
        "CREATE TABLE sessions (id BLOB PRIMARY KEY, data BLOB NOT NULL)",
        [],
    )?;
    let mut insert = conn.prepare("INSERT OR REPLACE INTO sessions (id, data) VALUES (?1, ?2)")?;
    timed(commits, |i| {
        insert.execute(rusqlite::params![(i as u64).to_be_bytes(), payload])?;
        Ok(())
    })
}

fn create(path: &Path) -> Result<File> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?)
}
