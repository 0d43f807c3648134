//! Raw sled, sessdb's physical limit: one tree, one `get` or `insert` per operation, with the
//! same page cache as sessdb's default and the same value bytes the peers store.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context as _, Result};

use crate::data::{Plan, WARM_UP_NOTE, WARM_UP_SALT};
use crate::measure::{disk_bytes, peak_rss_kib, reset_peak_rss, timed, Timer};
use crate::threads;

pub const ENGINE: &str = "raw sled";
/// sessdb's default page cache, so the comparison isolates sessdb's own work.
pub const CACHE_BYTES: u64 = sessdb::Builder::DEFAULT_CACHE_BYTES;
const CHUNK: usize = 1000;

fn path(dir: &Path) -> PathBuf {
    dir.join("sled")
}

fn open(dir: &Path) -> Result<sled::Db> {
    open_path(&path(dir)).context("opening raw sled")
}

/// A sled database at `path` with sessdb's default cache, flush interval and segment size for
/// a new store (also the tower-sessions SledStore's, so its ratio isolates the stores' own work
/// too).
pub fn open_path(path: &Path) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .segment_size(sessdb::Builder::NEW_STORE_SEGMENT_BYTES)
        .flush_every_ms(Some(500))
        .open()
}

pub fn run(plan: &Plan, dir: &Path) -> Result<()> {
    let db = open(dir)?;

    reset_peak_rss();
    let mut timer = Timer::with_capacity(plan.n);
    let mut value_bytes = 0;
    for i in 0..plan.n {
        let value = plan.peer_value(i, &plan.content(i), plan.created(i), 1);
        value_bytes += value.len();
        let key = plan.peer_key(i);
        timer.time(|| db.insert(key, value))?;
    }
    let (flushed, flush) = timed(|| db.flush());
    flushed?;
    timer.add(flush);
    let mut m = timer.finish("populate (setup)", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.disk_per_session = Some(disk_bytes(&path(dir)) as f64 / plan.n as f64);
    m.note = Some(format!(
        "one insert per session, no index; values of {} B on average; {} MiB log segments, as \
         sessdb gives a new store",
        value_bytes / plan.n.max(1),
        sessdb::Builder::NEW_STORE_SEGMENT_BYTES >> 20
    ));
    m.emit();

    Ok(())
}

/// The save workload, in a fresh process after `load_fresh` (as sessdb's `work`).
pub fn work(plan: &Plan, dir: &Path) -> Result<()> {
    let db = open(dir)?;
    reset_peak_rss();
    let order: Vec<usize> = plan.live_order(2).into_iter().take(plan.sample).collect();
    let mut timer = Timer::with_capacity(order.len());
    for chunk in order.chunks(CHUNK) {
        let values: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let c = plan.modified(i, 1);
                (plan.peer_key(i), plan.peer_value(i, &c, plan.t_work(), 2))
            })
            .collect();
        for (key, value) in values {
            timer.time(|| db.insert(key, value))?;
        }
    }
    let (flushed, flush) = timed(|| db.flush());
    flushed?;
    timer.add(flush);
    let mut m = timer.finish("save modified", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some("one Tree::insert; includes the final flush".into());
    m.emit();
    Ok(())
}

/// Load hit in a fresh process, as sessdb's (`engines::sessdb::load_fresh`): open with the same
/// sessdb's default cache, an untimed pass over another sample, then the timed pass.
pub fn load_fresh(plan: &Plan, dir: &Path) -> Result<()> {
    let db = open(dir)?;
    let get_all = |order: &[usize], timer: &mut Timer| -> Result<()> {
        let mut misses = 0;
        for &i in order.iter().take(plan.sample) {
            let key = plan.peer_key(i);
            if timer.time(|| db.get(key))?.is_none() {
                misses += 1;
            }
        }
        ensure!(misses == 0, "{misses} keys were not found");
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
    m.note = Some(format!(
        "Tree::get of a 16-byte key, {} MiB cache; {WARM_UP_NOTE}",
        CACHE_BYTES >> 20
    ));
    m.emit();
    Ok(())
}

/// The concurrent rows, as sessdb's (`engines::sessdb::concurrent`): a get, and a get and an
/// insert of the modified value.
pub fn concurrent(plan: &Plan, dir: &Path) -> Result<()> {
    let db = open(dir)?;
    for &i in plan.live_order(WARM_UP_SALT).iter().take(plan.sample) {
        ensure!(db.get(plan.peer_key(i))?.is_some(), "a key is missing");
    }
    threads::measure(
        threads::LOAD,
        ENGINE,
        plan,
        |i| plan.peer_key(i),
        || Ok(()),
        |_, key| {
            ensure!(db.get(key)?.is_some(), "a key is missing");
            Ok(())
        },
        || Ok(()),
        "Tree::get",
    )?;
    threads::measure(
        threads::LOAD_SAVE,
        ENGINE,
        plan,
        |i| {
            let c = plan.modified(i, threads::ROUND);
            (
                plan.peer_key(i),
                plan.peer_value(i, &c, plan.t_after(), threads::ROUND),
            )
        },
        || Ok(()),
        |_, (key, value)| {
            ensure!(db.get(key)?.is_some(), "a key is missing");
            db.insert(key, value.as_slice())?;
            Ok(())
        },
        || Ok(db.flush().map(drop)?),
        "Tree::get and Tree::insert of a value encoded beforehand; the flush after each quarter \
         counts",
    )
}

/// The memory pass of sessdb's, on raw sled: open, get every live key, rewrite one in ten.
pub fn memory(plan: &Plan, dir: &Path) -> Result<()> {
    reset_peak_rss();
    let (db, open_time) = timed(|| open(dir));
    let db = db?;
    let mut m = Timer::default().finish("open", ENGINE, plan.n, Some(open_time.as_secs_f64()));
    m.ops = 1;
    m.emit();
    let mut timer = Timer::with_capacity(plan.n);
    for (k, &i) in plan.live_order(5).iter().enumerate() {
        let key = plan.peer_key(i);
        let value = (k % 10 == 0).then(|| plan.peer_value(i, &plan.content(i), plan.t_after(), 3));
        timer.time(|| -> Result<()> {
            db.get(key)?.context("a key is missing")?;
            if let Some(v) = value {
                db.insert(key, v)?;
            }
            Ok(())
        })?;
    }
    let (flushed, flush) = timed(|| db.flush());
    flushed?;
    timer.add(flush);
    let mut m = timer.finish("serve all: load each, save 1 in 10", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some(format!(
        "{} MiB cache, as sessdb's default",
        CACHE_BYTES >> 20
    ));
    m.emit();
    Ok(())
}
