//! SQLite through rusqlite, set up as a careful user would: WAL, synchronous=NORMAL (FULL for
//! the durable workloads), a primary key on the id, indexes on expiry and principal, cached
//! prepared statements, and an upsert per save.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::data::{Plan, WARM_UP_NOTE, WARM_UP_SALT};
use crate::measure::{disk_bytes, peak_rss_kib, reset_peak_rss, timed, Timer};
use crate::threads;

pub const ENGINE: &str = "SQLite";
pub const ENGINE_FULL: &str = "SQLite FULL";
const CHUNK: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id BLOB PRIMARY KEY,
    principal TEXT,
    expires_at INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_principal ON sessions (principal);
";
const GET: &str = "SELECT data FROM sessions WHERE id = ?1 AND expires_at > ?2";
const UPSERT: &str =
    "INSERT INTO sessions (id, principal, expires_at, data) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (id) DO UPDATE SET
        principal = excluded.principal, expires_at = excluded.expires_at, data = excluded.data";

fn folder(dir: &Path) -> PathBuf {
    dir.join("sqlite")
}

fn open(dir: &Path, synchronous: &str) -> Result<Connection> {
    fs::create_dir_all(folder(dir))?;
    let conn = Connection::open(folder(dir).join("sessions.db")).context("opening SQLite")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// One session's row: id, principal, expiry, blob.
struct Row {
    key: [u8; 16],
    principal: String,
    expires_at: i64,
    value: Vec<u8>,
}

fn row(plan: &Plan, i: usize, at: i64, version: u64) -> Row {
    let mut c = plan.content(i);
    if version > 1 {
        plan.modify(&mut c, i, version);
    }
    Row {
        key: plan.peer_key(i),
        expires_at: plan.expires_at(i, at),
        value: plan.peer_value(i, &c, at, version),
        principal: c.principal,
    }
}

fn upsert(conn: &Connection, r: &Row) -> rusqlite::Result<usize> {
    conn.prepare_cached(UPSERT)?
        .execute(params![&r.key[..], r.principal, r.expires_at, r.value])
}

pub fn run(plan: &Plan, dir: &Path) -> Result<()> {
    let mut conn = open(dir, "NORMAL")?;

    // Bulk load, 1,000 rows per transaction: setup, not a save workload.
    reset_peak_rss();
    let start = Instant::now();
    for chunk in (0..plan.n).collect::<Vec<_>>().chunks(CHUNK) {
        let tx = conn.transaction()?;
        for &i in chunk {
            upsert(&tx, &row(plan, i, plan.created(i), 1))?;
        }
        tx.commit()?;
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let mut m = Timer::default().finish(
        "populate (setup)",
        ENGINE,
        plan.n,
        Some(start.elapsed().as_secs_f64()),
    );
    m.ops = plan.n as u64;
    m.rss_kib = peak_rss_kib();
    m.disk_per_session = Some(disk_bytes(&folder(dir)) as f64 / plan.n as f64);
    m.note = Some("1,000 upserts per transaction".into());
    m.emit();

    Ok(())
}

/// Every other workload, in a fresh process after `load_fresh` (as sessdb's `work`).
pub fn work(plan: &Plan, dir: &Path) -> Result<()> {
    let conn = open(dir, "NORMAL")?;
    let now = plan.t_work();
    reset_peak_rss();
    let order: Vec<usize> = plan.live_order(2).into_iter().take(plan.sample).collect();
    let mut timer = Timer::with_capacity(order.len());
    for chunk in order.chunks(CHUNK) {
        let rows: Vec<Row> = chunk.iter().map(|&i| row(plan, i, now, 2)).collect();
        for r in &rows {
            timer.time(|| upsert(&conn, r))?;
        }
    }
    let mut m = timer.finish("save modified", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some("indexed upsert, one transaction each, WAL, synchronous=NORMAL".into());
    m.emit();

    reset_peak_rss();
    let start = Instant::now();
    let removed = conn.execute(
        "DELETE FROM sessions WHERE expires_at <= ?1",
        params![plan.t_purge()],
    )?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(removed == plan.victims(), "SQLite purged {removed} rows");
    let mut m = Timer::default().finish("purge expired", ENGINE, plan.n, Some(secs));
    m.ops = removed as u64;
    m.rss_kib = peak_rss_kib();
    m.note = Some("one DELETE ... WHERE expires_at <= now, on the expiry index".into());
    m.emit();
    drop(conn);

    let order = plan.live_order(3);
    let (one, rest) = order.split_at(plan.durable_one.min(order.len()));
    durable(plan, dir, one, 1, "durable save, 1 saver")?;
    durable(plan, dir, rest, 8, "durable save, 8 savers")?;
    Ok(())
}

/// Upserts with synchronous=FULL (an fsync of the WAL per commit), one connection per thread.
fn durable(
    plan: &Plan,
    dir: &Path,
    indices: &[usize],
    threads: usize,
    workload: &str,
) -> Result<()> {
    reset_peak_rss();
    let per = if threads == 1 {
        plan.durable_one
    } else {
        plan.durable_per_thread
    };
    let total = (per * threads).min(indices.len());
    let indices = &indices[..total];
    let start = Instant::now();
    let timers = std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(total.div_ceil(threads).max(1))
            .map(|part| {
                scope.spawn(move || -> Result<Timer> {
                    let conn = open(dir, "FULL")?;
                    let mut timer = Timer::with_capacity(part.len());
                    for &i in part {
                        let r = row(plan, i, plan.t_after(), 3);
                        timer.time(|| upsert(&conn, &r))?;
                    }
                    Ok(timer)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a saver panicked")))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let wall = start.elapsed();
    let mut all = Timer::default();
    for t in timers {
        all.merge(t);
    }
    let mut m = all.finish(workload, ENGINE_FULL, plan.n, Some(wall.as_secs_f64()));
    m.rss_kib = peak_rss_kib();
    m.note = Some(format!(
        "WAL, synchronous=FULL, {threads} connection(s), busy_timeout; rate over wall time"
    ));
    m.emit();
    Ok(())
}

/// Load hit in a fresh process, as sessdb's (`engines::sessdb::load_fresh`): open, an untimed
/// pass over another sample, then the timed pass.
pub fn load_fresh(plan: &Plan, dir: &Path) -> Result<()> {
    let conn = open(dir, "NORMAL")?;
    let now = plan.t_work();
    let get_all = |order: &[usize], timer: &mut Timer| -> Result<()> {
        let mut misses = 0;
        for &i in order.iter().take(plan.sample) {
            let key = plan.peer_key(i);
            let found: Option<Vec<u8>> = timer.time(|| {
                conn.prepare_cached(GET)?
                    .query_row(params![&key[..], now], |r| r.get(0))
                    .optional()
            })?;
            misses += usize::from(found.is_none());
        }
        ensure!(misses == 0, "{misses} rows were not found");
        Ok(())
    };
    get_all(
        &plan.live_order(WARM_UP_SALT),
        &mut Timer::with_capacity(plan.sample),
    )?;
    reset_peak_rss();
    let mut timer = Timer::with_capacity(plan.sample);
    get_all(&plan.live_order(1), &mut timer)?;
    let mut m = timer.finish("load hit", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some(format!("SELECT by primary key, unexpired; {WARM_UP_NOTE}"));
    m.emit();
    Ok(())
}

/// The concurrent rows, as sessdb's (`engines::sessdb::concurrent`), with one connection per
/// thread: a select, and a select and an upsert of the modified row.
pub fn concurrent(plan: &Plan, dir: &Path) -> Result<()> {
    let now = plan.t_after();
    let get = |conn: &Connection, key: &[u8; 16]| -> Result<()> {
        let found: Option<Vec<u8>> = conn
            .prepare_cached(GET)?
            .query_row(params![&key[..], now], |r| r.get(0))
            .optional()?;
        ensure!(found.is_some(), "a row is missing");
        Ok(())
    };
    let conn = open(dir, "NORMAL")?;
    for &i in plan.live_order(WARM_UP_SALT).iter().take(plan.sample) {
        get(&conn, &plan.peer_key(i))?;
    }
    threads::measure(
        threads::LOAD,
        ENGINE,
        plan,
        |i| plan.peer_key(i),
        || open(dir, "NORMAL"),
        |conn, key| get(conn, key),
        || Ok(()),
        "SELECT by primary key, unexpired; a connection per thread",
    )?;
    threads::measure(
        threads::LOAD_SAVE,
        ENGINE,
        plan,
        |i| row(plan, i, now, threads::ROUND),
        || open(dir, "NORMAL"),
        |conn, r| {
            get(conn, &r.key)?;
            upsert(conn, r)?;
            Ok(())
        },
        || Ok(()),
        "SELECT, then the indexed upsert in its own transaction; a connection per thread, \
         busy_timeout",
    )
}

/// The memory pass of sessdb's, on SQLite.
pub fn memory(plan: &Plan, dir: &Path) -> Result<()> {
    reset_peak_rss();
    let (conn, open_time) = timed(|| open(dir, "NORMAL"));
    let conn = conn?;
    let mut m = Timer::default().finish("open", ENGINE, plan.n, Some(open_time.as_secs_f64()));
    m.ops = 1;
    m.emit();
    let now = plan.t_after();
    let mut timer = Timer::with_capacity(plan.n);
    for (k, &i) in plan.live_order(5).iter().enumerate() {
        let key = plan.peer_key(i);
        let write = (k % 10 == 0).then(|| row(plan, i, now, 4));
        timer.time(|| -> Result<()> {
            let _data: Vec<u8> = conn
                .prepare_cached(GET)?
                .query_row(params![&key[..], now], |r| r.get(0))?;
            if let Some(r) = &write {
                upsert(&conn, r)?;
            }
            Ok(())
        })?;
    }
    let mut m = timer.finish("serve all: load each, save 1 in 10", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some("SQLite's default page cache (2 MB)".into());
    m.emit();
    Ok(())
}
