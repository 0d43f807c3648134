//! The sessdb workloads, each on the public API an application uses.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use sessdb::{Durability, ManualClock, SessionId, Store};

use crate::data::{Plan, WARM_UP_NOTE, WARM_UP_SALT};
use crate::measure::{disk_bytes, peak_rss_kib, reset_peak_rss, timed, Timer};
use crate::threads;

pub const ENGINE: &str = "sessdb";
/// The workload that reads one value after the load: the cost of the first data access.
pub const LOAD_GET: &str = "load + get csrf";
/// The access order of the load + get pass (see `Plan::live_order`).
const LOAD_GET_SALT: u64 = 7;
/// Sessions loaded before a timed run of saves: loads stay out of the save timings, and few
/// sessions are held at once.
const CHUNK: usize = 1000;

fn store_path(dir: &Path) -> PathBuf {
    dir.join("sessdb")
}

fn ids_path(dir: &Path) -> PathBuf {
    dir.join("sessdb-ids")
}

/// Populates a store (the first of three processes: populate, `load_fresh`, `work`).
pub fn run(plan: &Plan, dir: &Path) -> Result<()> {
    let clock = ManualClock::at_ms(plan.t0);
    let store = Store::builder()
        .clock(clock.clone())
        .open(store_path(dir))
        .context("opening the sessdb store")?;
    populate(plan, dir, &store, &clock)?;
    Ok(())
}

/// Runs every other workload on the populated store, in a fresh process after `load_fresh`, in
/// the order of the plan's timeline.
pub fn work(plan: &Plan, dir: &Path) -> Result<()> {
    let ids = read_ids(plan, dir)?;
    let clock = ManualClock::at_ms(plan.t_work());
    let store = Store::builder()
        .clock(clock.clone())
        .open(store_path(dir))
        .context("reopening the sessdb store")?;
    let saved = save_modified(plan, &store, &ids)?;

    clock.set_ms(plan.t_unmodified());
    load_save_unmodified(plan, &store, &ids, &saved)?;

    clock.set_ms(plan.t_purge());
    purge(plan, &store)?;
    drop(store);

    clock.set_ms(plan.t_after());
    let store = Store::builder()
        .clock(clock)
        .durability(Durability::Immediate)
        .open(store_path(dir))
        .context("reopening the store in immediate mode")?;
    let order = plan.live_order(3);
    let (one, rest) = order.split_at(plan.durable_one.min(order.len()));
    durable(plan, &store, &ids, one, 1, "durable save, 1 saver")?;
    durable(plan, &store, &ids, rest, 8, "durable save, 8 savers")?;
    Ok(())
}

fn populate(plan: &Plan, dir: &Path, store: &Store, clock: &ManualClock) -> Result<Vec<SessionId>> {
    reset_peak_rss();
    let mut ids = Vec::with_capacity(plan.n);
    let mut timer = Timer::with_capacity(plan.n);
    for i in 0..plan.n {
        clock.set_ms(plan.created(i));
        let c = plan.content(i);
        let mut s = plan.sessdb_session(store, i, &c)?;
        timer.time(|| s.save())?;
        ids.push(*s.id());
    }
    let flush = timed_flush(store)?;
    timer.add(flush);
    let mut m = timer.finish("populate (setup)", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.disk_per_session = Some(disk_bytes(&store_path(dir)) as f64 / plan.n as f64);
    m.note = Some("one save per new session (record + 2 index entries)".into());
    m.emit();

    let bytes: Vec<u8> = ids.iter().flat_map(|id| *id.as_bytes()).collect();
    fs::write(ids_path(dir), bytes).context("writing the session ids")?;
    Ok(ids)
}

fn flush_ok(store: &Store) -> Result<()> {
    store.flush().context("flushing the store")
}

/// Flushes, and says how long it took: sustained write rates include the backlog.
fn timed_flush(store: &Store) -> Result<Duration> {
    let (flushed, took) = timed(|| store.flush());
    flushed.context("flushing the store")?;
    Ok(took)
}

/// Load hit in a fresh process right after populate, under the conditions every engine gets:
/// open the store with the default settings, one untimed pass of loads over another random
/// sample (warm caches, a settled store), then the timed pass. Not in the populating process,
/// whose state slowed sessdb's loads (+1.5–2 µs) far more than raw sled's gets, and not
/// after the save workloads, which slow raw sled's gets more (docs/BENCHMARKS.md).
pub fn load_fresh(plan: &Plan, dir: &Path) -> Result<()> {
    let ids = read_ids(plan, dir)?;
    let store = Store::builder()
        .clock(ManualClock::at_ms(plan.t_work()))
        .open(store_path(dir))
        .context("opening the populated store")?;
    let load_all = |order: &[usize], timer: &mut Timer| -> Result<()> {
        let mut misses = 0;
        for &i in order.iter().take(plan.sample) {
            let id = &ids[i];
            if timer.time(|| store.load(id))?.is_none() {
                misses += 1;
            }
        }
        ensure!(misses == 0, "{misses} live sessions were not found");
        Ok(())
    };
    load_all(
        &plan.live_order(WARM_UP_SALT),
        &mut Timer::with_capacity(plan.sample),
    )?;
    reset_peak_rss();
    let mut timer = Timer::with_capacity(plan.sample);
    load_all(&plan.live_order(1), &mut timer)?;
    let mut m = timer.finish("load hit", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some(WARM_UP_NOTE.into());
    m.emit();

    // What a request that reads its session pays: the load and a first typed read of the data
    // (decoding the data on that read, if load left it undecoded). Another sample of the same
    // size, so it meets caches as warm as the load-hit pass did.
    let mut timer = Timer::with_capacity(plan.sample);
    for &i in plan.live_order(LOAD_GET_SALT).iter().take(plan.sample) {
        let id = &ids[i];
        let csrf = timer.time(|| -> Result<Option<String>> {
            let s = store.load(id)?.context("a live session is missing")?;
            Ok(s.get::<String>("csrf")?)
        })?;
        ensure!(csrf.is_some(), "a session without its csrf token");
    }
    let mut m = timer.finish(LOAD_GET, ENGINE, plan.n, None);
    m.note =
        Some("load + get::<String>(\"csrf\") over another sample, after the load-hit pass".into());
    m.emit();
    Ok(())
}

/// Saves a modification of `sample` sessions. Returns their indices (the sessions the
/// unmodified-save workload uses: their stored deadlines are recent, so no touch is due).
fn save_modified(plan: &Plan, store: &Store, ids: &[SessionId]) -> Result<Vec<usize>> {
    reset_peak_rss();
    let order: Vec<usize> = plan.live_order(2).into_iter().take(plan.sample).collect();
    let before = store.counters();
    let mut timer = Timer::with_capacity(order.len());
    for chunk in order.chunks(CHUNK) {
        let mut sessions = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let s = store.load(&ids[i])?.context("a live session is missing")?;
            let c = plan.modified(i, 1);
            sessions.push((s, c));
        }
        for (s, c) in &mut sessions {
            timer.time(|| -> Result<()> {
                s.insert("visits", &c.data["visits"])?;
                s.insert("last_page", &c.data["last_page"])?;
                s.save()?;
                Ok(())
            })?;
        }
    }
    let flush = timed_flush(store)?;
    timer.add(flush);
    let writes = store.counters().writes - before.writes;
    ensure!(
        writes == order.len() as u64,
        "{writes} writes for {} saves",
        order.len()
    );
    let mut m = timer.finish("save modified", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some(
        "the record; the expiry entry moved too where the deadline moved by over 5 min (about \
         half); includes the final flush"
            .into(),
    );
    m.emit();
    Ok(order)
}

/// Loads of half the recently saved sessions, against load + save of the other half, in
/// alternating chunks so both meet the same cache.
fn load_save_unmodified(
    plan: &Plan,
    store: &Store,
    ids: &[SessionId],
    saved: &[usize],
) -> Result<()> {
    reset_peak_rss();
    let mut order = saved.to_vec();
    fastrand::Rng::with_seed(plan.seed ^ 4).shuffle(&mut order);
    let mut loads = Timer::with_capacity(order.len() / 2);
    let mut pairs = Timer::with_capacity(order.len() / 2);
    let before = store.counters();
    for chunk in order.chunks(CHUNK) {
        let (a, b) = chunk.split_at(chunk.len() / 2);
        for &i in a {
            let s = loads.time(|| store.load(&ids[i]))?;
            ensure!(s.is_some(), "a live session is missing");
        }
        for &i in b {
            pairs.time(|| -> Result<()> {
                let mut s = store.load(&ids[i])?.context("a live session is missing")?;
                s.save()?;
                Ok(())
            })?;
        }
    }
    let after = store.counters();
    let writes = after.writes - before.writes;
    let skipped = after.skipped_saves - before.skipped_saves;
    let rss = peak_rss_kib();
    let mut m = loads.finish("load (same sample)", ENGINE, plan.n, None);
    m.rss_kib = rss;
    m.note = Some("the load half of the load+save workload's sample".into());
    m.emit();
    let mut m = pairs.finish("load + save unmodified", ENGINE, plan.n, None);
    m.rss_kib = rss;
    m.note = Some(format!(
        "store.counters(): {writes} writes, {skipped} skipped saves (touch not due)"
    ));
    m.emit();
    if writes != 0 {
        bail!("saving unmodified sessions wrote {writes} records");
    }
    Ok(())
}

fn purge(plan: &Plan, store: &Store) -> Result<()> {
    reset_peak_rss();
    let start = Instant::now();
    let removed = store.purge_expired()?;
    flush_ok(store)?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(
        removed == plan.victims() as u64,
        "purge removed {removed} sessions, {} expected",
        plan.victims()
    );
    let mut m = Timer::default().finish("purge expired", ENGINE, plan.n, Some(secs));
    m.ops = removed;
    m.rss_kib = peak_rss_kib();
    m.note = Some(format!(
        "{removed} expired of {} sessions; ops = expired sessions removed, incl. flush",
        plan.n
    ));
    m.emit();
    Ok(())
}

/// Load + modify + save in immediate mode, by `threads` savers over `indices`; the rate is over
/// wall time (loads included), the latencies are the saves'.
fn durable(
    plan: &Plan,
    store: &Store,
    ids: &[SessionId],
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
                let store = store.clone();
                scope.spawn(move || -> Result<Timer> {
                    let mut timer = Timer::with_capacity(part.len());
                    for &i in part {
                        let mut s = store.load(&ids[i])?.context("a live session is missing")?;
                        let c = plan.modified(i, 2);
                        timer.time(|| -> Result<()> {
                            s.insert("visits", &c.data["visits"])?;
                            s.insert("last_page", &c.data["last_page"])?;
                            s.save()?;
                            Ok(())
                        })?;
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
    let mut m = all.finish(workload, ENGINE, plan.n, Some(wall.as_secs_f64()));
    m.rss_kib = peak_rss_kib();
    m.note = Some(format!(
        "Durability::Immediate (a journal frame + fdatasync a commit; sled flush + fsync at checkpoints), {threads} thread(s); rate over wall time"
    ));
    m.emit();
    Ok(())
}

/// The concurrent rows (`threads`): loads, and requests that change their session, on one
/// thread and on several, in a fresh process after `work`, after an untimed warm-up pass.
pub fn concurrent(plan: &Plan, dir: &Path) -> Result<()> {
    let ids = read_ids(plan, dir)?;
    let store = Store::builder()
        .clock(ManualClock::at_ms(plan.t_after()))
        .open(store_path(dir))
        .context("reopening the sessdb store")?;
    for &i in plan.live_order(WARM_UP_SALT).iter().take(plan.sample) {
        ensure!(store.load(&ids[i])?.is_some(), "a live session is missing");
    }
    threads::measure(
        threads::LOAD,
        ENGINE,
        plan,
        |i| ids[i],
        || Ok(()),
        |_, id| {
            ensure!(store.load(id)?.is_some(), "a live session is missing");
            Ok(())
        },
        || Ok(()),
        "Store::load",
    )?;
    threads::measure(
        threads::LOAD_SAVE,
        ENGINE,
        plan,
        |i| {
            let c = plan.modified(i, threads::ROUND);
            (ids[i], c.data)
        },
        || Ok(()),
        |_, (id, data)| {
            let mut s = store.load(id)?.context("a live session is missing")?;
            s.insert("visits", &data["visits"])?;
            s.insert("last_page", &data["last_page"])?;
            s.save()?;
            Ok(())
        },
        || flush_ok(&store),
        "Store::load, two Session::insert, Session::save; the flush after each quarter counts",
    )
}

/// Opens the populated store with the default settings (a manual clock only keeps the sessions
/// live whatever the run's duration), times the open, then serves every live session once: a
/// load each, and a modified save for one in ten. The peak RSS is the memory figure.
pub fn memory(plan: &Plan, dir: &Path, cache_bytes: Option<u64>) -> Result<()> {
    let ids = read_ids(plan, dir)?;
    reset_peak_rss();
    let clock = ManualClock::at_ms(plan.t_after());
    let mut builder = Store::builder().clock(clock);
    if let Some(bytes) = cache_bytes {
        builder = builder.cache_bytes(bytes);
    }
    let (store, open) = timed(|| builder.open(store_path(dir)));
    let store = store.context("opening the populated store")?;
    let order = plan.live_order(5);
    if let Some(bytes) = cache_bytes {
        // The cache sweep: loads only.
        let mut timer = Timer::with_capacity(plan.sample);
        for &i in order.iter().take(plan.sample) {
            timer.time(|| store.load(&ids[i]))?;
        }
        let name = format!("load hit, cache_bytes {} MiB", bytes >> 20);
        let mut m = timer.finish(&name, ENGINE, plan.n, None);
        m.rss_kib = peak_rss_kib();
        m.note = Some(format!(
            "a fresh process: open ({:.2} s) and {} loads",
            open.as_secs_f64(),
            plan.sample
        ));
        m.emit();
        return Ok(());
    }
    let mut m = Timer::default().finish("open", ENGINE, plan.n, Some(open.as_secs_f64()));
    m.ops = 1;
    m.note = Some("Store::open of the populated store (OS page cache warm)".into());
    m.emit();

    let mut timer = Timer::with_capacity(order.len());
    for (k, &i) in order.iter().enumerate() {
        timer.time(|| -> Result<()> {
            let mut s = store.load(&ids[i])?.context("a live session is missing")?;
            if k % 10 == 0 {
                s.insert("visits", &1000)?;
                s.save()?;
            }
            Ok(())
        })?;
    }
    let flush = timed_flush(&store)?;
    timer.add(flush);
    let mut m = timer.finish("serve all: load each, save 1 in 10", ENGINE, plan.n, None);
    m.rss_kib = peak_rss_kib();
    m.note = Some(format!(
        "default settings ({} MiB sled cache); peak RSS of open + this pass",
        sessdb::Builder::DEFAULT_CACHE_BYTES >> 20
    ));
    m.emit();
    Ok(())
}

fn read_ids(plan: &Plan, dir: &Path) -> Result<Vec<SessionId>> {
    let bytes = fs::read(ids_path(dir)).context("reading the session ids")?;
    ensure!(
        bytes.len() == plan.n * 16,
        "the id file does not match the plan"
    );
    bytes
        .chunks(16)
        .map(|b| {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            hex.parse::<SessionId>().context("a bad id in the id file")
        })
        .collect()
}

/// Used by the cache sweep's name and the report.
pub fn cache_sizes_mib() -> [u64; 5] {
    [16, 64, 128, 256, 1024]
}
