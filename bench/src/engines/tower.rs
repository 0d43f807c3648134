//! The tower-sessions rows: sessdb through its adapter (`tower-sessions-sessdb`) against the
//! stores an axum application would pick instead — MemoryStore (the in-memory upper bound), the
//! sqlx SQLite store, the Redis store and the published sled store — every one driven through
//! its `SessionStore` trait by the same loop.
//!
//! Our adapter and MemoryStore implement tower-sessions-core 0.15; the published sqlx, Redis and
//! sled stores implement 0.14. The two traits have the same text in two crates, so the loop is
//! written once, as a macro expanded for each ([`v15`], [`v14`]), and drives each store's own
//! `Record` with no conversion in the timed path.
//!
//! Every child runs one current-thread tokio runtime and each workload inside one `block_on`;
//! an operation's latency is an `Instant` around its `.await`, the same for every store. The
//! concurrent workload runs in children of its own (`tower-mt-*`) on the multi-thread runtime
//! `#[tokio::main]` builds, with [`TASKS`] requests in flight at once, as a server sees them.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use tower_sessions_memory_store::MemoryStore;
use tower_sessions_redis_store::fred::prelude::Client as RedisClient;
use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config as RedisConfig};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_sessdb::SessdbStore;
use tower_sessions_sled_store::SledStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use tower_sessions_sqlx_store::SqliteStore;

use crate::data::Plan;
use crate::engines::redis;
use crate::measure::{disk_bytes, peak_rss_kib, reset_peak_rss, timed, Measurement, Timer};

pub const SESSDB: &str = "SessdbStore";
pub const SESSDB_INLINE: &str = "SessdbStore (inline)";
pub const MEMORY: &str = "MemoryStore";
pub const SLED: &str = "SledStore";
pub const SQLITE: &str = "SqliteStore (sqlx)";
pub const REDIS: &str = "RedisStore";
/// The stores, in the order the table lists them.
pub const ENGINES: [&str; 6] = [SESSDB, SESSDB_INLINE, MEMORY, SLED, SQLITE, REDIS];
/// sessdb's adapter: by default (every call on tokio's blocking pool) and
/// `with_inline_calls`.
pub const OURS: [&str; 2] = [SESSDB, SESSDB_INLINE];

pub const POPULATE: &str = "tower: create (setup)";
pub const LOAD: &str = "tower: load";
pub const SAVE: &str = "tower: save";
pub const LOAD_SAVE: &str = "tower: load + save";
pub const LOAD_SAVE_CONCURRENT: &str = "tower: load + save, 8 tasks, multi-thread runtime";
/// Requests in flight at once in the concurrent workload.
pub const TASKS: usize = 8;
/// The workloads, in the order the table lists them.
pub const WORKLOADS: [&str; 5] = [POPULATE, LOAD, SAVE, LOAD_SAVE, LOAD_SAVE_CONCURRENT];

/// The child kinds, in the order the parent runs them. The stores that keep their data on disk
/// take two processes (populate, then the workloads in a fresh process, as the other engines'
/// load hit); MemoryStore and the Redis store keep it in a process, so they take one. Each
/// store's concurrent workload then runs in a process of its own (`tower-mt-*`, see
/// [`TASKS`]): on the store the others populated, or for MemoryStore and Redis on one it
/// populates untimed.
pub const KINDS: [&str; 14] = [
    "tower-sessdb",
    "tower-work-sessdb",
    "tower-mt-sessdb",
    "tower-sessdb-inline",
    "tower-work-sessdb-inline",
    "tower-mt-sessdb-inline",
    "tower-sled",
    "tower-work-sled",
    "tower-mt-sled",
    "tower-sqlite",
    "tower-work-sqlite",
    "tower-mt-sqlite",
    "tower-memory",
    "tower-mt-memory",
];
/// The Redis store's children, run when redis-server is installed.
pub const REDIS_KINDS: [&str; 2] = ["tower-redis", "tower-mt-redis"];

/// Sessions expire this long after their creation on the real clock (every store checks expiry
/// against it): long enough for the slowest run, so every session stays live.
const LIFETIME: time::Duration = time::Duration::hours(6);
/// How far a save moves a session's expiry, as `Expiry::OnInactivity` does on a later request.
const SAVE_SHIFT: time::Duration = time::Duration::minutes(1);
/// Where the sessions' data holds the user id, which the sessdb adapter indexes
/// (`with_principal_key`, as its docs set it up).
const PRINCIPAL_KEY: &str = "user_id";
/// Records loaded before a timed run of saves, as the other engines' save workloads.
const CHUNK: usize = 1000;

/// The id of session `i`: the 16 random bytes the other peers key it by.
fn id(plan: &Plan, i: usize) -> i128 {
    i128::from_be_bytes(plan.peer_key(i))
}

/// The bench's ~300 B of session data, plus the user id an application keeps there.
fn data(plan: &Plan, i: usize) -> HashMap<String, Value> {
    let content = plan.content(i);
    let mut data: HashMap<String, Value> = content.data.into_iter().collect();
    data.insert(PRINCIPAL_KEY.into(), Value::String(content.principal));
    data
}

fn expiry(plan: &Plan, i: usize) -> Result<OffsetDateTime> {
    let created =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(plan.created(i)) * 1_000_000)
            .context("a creation time out of range")?;
    Ok(created + LIFETIME)
}

/// The bench's modification (one more visit, another page), and a later expiry.
fn modify(
    plan: &Plan,
    data: &mut HashMap<String, Value>,
    expiry: &mut OffsetDateTime,
    i: usize,
    round: u64,
) {
    for (key, value) in plan.modification(data.get("visits"), i, round) {
        data.insert(key.into(), value);
    }
    *expiry += SAVE_SHIFT;
}

/// What differs between stores around the shared loop.
struct Probe<'a> {
    engine: &'static str,
    /// Work the store leaves to the background (sled's flush), counted in the write workloads
    /// as the other engines' rows count it.
    flush: &'a dyn Fn() -> Result<Duration>,
    /// The peak RSS of the process that holds the data.
    rss: &'a dyn Fn() -> Option<u64>,
}

impl Probe<'_> {
    fn finish(&self, timer: Timer, workload: &str, plan: &Plan) -> Measurement {
        let mut m = timer.finish(workload, self.engine, plan.n, None);
        m.rss_kib = (self.rss)();
        m
    }
}

fn no_flush() -> Result<Duration> {
    Ok(Duration::ZERO)
}

/// The loop, written once for both versions of the `SessionStore` trait.
macro_rules! driver {
    ($version:ident, $core:ident, $doc:literal) => {
        #[doc = $doc]
        pub mod $version {
            use std::sync::Arc;
            use std::time::Instant;

            use anyhow::{ensure, Context as _, Result};
            use $core::session::{Id, Record};
            use $core::SessionStore;

            use super::{
                data, expiry, id, modify, Probe, CHUNK, LOAD, LOAD_SAVE, LOAD_SAVE_CONCURRENT,
                SAVE, TASKS,
            };
            use crate::data::{Plan, WARM_UP_SALT};
            use crate::measure::{reset_peak_rss, Timer};

            fn record(plan: &Plan, i: usize) -> Result<Record> {
                Ok(Record {
                    id: Id(id(plan, i)),
                    data: data(plan, i),
                    expiry_date: expiry(plan, i)?,
                })
            }

            /// Creates every session of the plan (`SessionStore::create`), timed.
            pub async fn populate<S: SessionStore>(store: &S, plan: &Plan) -> Result<Timer> {
                let mut timer = Timer::with_capacity(plan.n);
                for i in 0..plan.n {
                    let mut r = record(plan, i)?;
                    let start = Instant::now();
                    store.create(&mut r).await.context("SessionStore::create")?;
                    timer.record(start.elapsed());
                    ensure!(r.id.0 == id(plan, i), "create found session {i}'s id taken");
                }
                Ok(timer)
            }

            /// Loads the first `plan.sample` sessions of `order`; every one must be there.
            async fn load<S: SessionStore>(
                store: &S,
                plan: &Plan,
                order: &[usize],
            ) -> Result<Timer> {
                let mut timer = Timer::with_capacity(plan.sample);
                let mut misses = 0;
                for &i in order.iter().take(plan.sample) {
                    let sid = Id(id(plan, i));
                    let start = Instant::now();
                    let found = store.load(&sid).await.context("SessionStore::load")?;
                    timer.record(start.elapsed());
                    misses += usize::from(found.is_none());
                }
                ensure!(misses == 0, "{misses} live sessions were not found");
                Ok(timer)
            }

            async fn load_one<S: SessionStore>(store: &S, plan: &Plan, i: usize) -> Result<Record> {
                store
                    .load(&Id(id(plan, i)))
                    .await
                    .context("SessionStore::load")?
                    .context("a live session is missing")
            }

            /// Saves of modified records, loaded beforehand in chunks outside the timing.
            async fn save<S: SessionStore>(
                store: &S,
                plan: &Plan,
                order: &[usize],
            ) -> Result<Timer> {
                let order: Vec<usize> = order.iter().take(plan.sample).copied().collect();
                let mut timer = Timer::with_capacity(order.len());
                for chunk in order.chunks(CHUNK) {
                    let mut records = Vec::with_capacity(chunk.len());
                    for &i in chunk {
                        let mut r = load_one(store, plan, i).await?;
                        modify(plan, &mut r.data, &mut r.expiry_date, i, 1);
                        records.push(r);
                    }
                    for r in &records {
                        let start = Instant::now();
                        store.save(r).await.context("SessionStore::save")?;
                        timer.record(start.elapsed());
                    }
                }
                Ok(timer)
            }

            /// A request that changes its session: load, modify, save, timed as one.
            async fn load_save<S: SessionStore>(
                store: &S,
                plan: &Plan,
                order: &[usize],
            ) -> Result<Timer> {
                let mut timer = Timer::with_capacity(plan.sample);
                for &i in order.iter().take(plan.sample) {
                    let start = Instant::now();
                    let mut r = load_one(store, plan, i).await?;
                    modify(plan, &mut r.data, &mut r.expiry_date, i, 2);
                    store.save(&r).await.context("SessionStore::save")?;
                    timer.record(start.elapsed());
                }
                Ok(timer)
            }

            /// The workloads on a populated store: an untimed warm-up pass of loads over
            /// another sample (as every engine's load hit), then load, save, load + save.
            pub(super) async fn work<S: SessionStore>(
                store: &S,
                plan: &Plan,
                probe: &Probe<'_>,
            ) -> Result<()> {
                load(store, plan, &plan.live_order(WARM_UP_SALT)).await?;
                reset_peak_rss();
                let timer = load(store, plan, &plan.live_order(1)).await?;
                probe.finish(timer, LOAD, plan).emit();

                reset_peak_rss();
                let mut timer = save(store, plan, &plan.live_order(2)).await?;
                timer.add((probe.flush)()?);
                probe.finish(timer, SAVE, plan).emit();

                reset_peak_rss();
                let mut timer = load_save(store, plan, &plan.live_order(3)).await?;
                timer.add((probe.flush)()?);
                probe.finish(timer, LOAD_SAVE, plan).emit();
                Ok(())
            }

            /// Requests in parallel, as a server on a multi-thread runtime runs them: [`TASKS`]
            /// spawned tasks, each a load + modify + save of its share of the sample. The rate
            /// is over wall time (and the final flush); a latency is one request's, queueing
            /// behind the others included. After an untimed warm-up pass of loads.
            pub(super) async fn concurrent<S: SessionStore>(
                store: Arc<S>,
                plan: &Plan,
                probe: &Probe<'_>,
            ) -> Result<()> {
                load(&*store, plan, &plan.live_order(WARM_UP_SALT)).await?;
                let order: Vec<usize> = plan.live_order(4).into_iter().take(plan.sample).collect();
                reset_peak_rss();
                let start = Instant::now();
                let tasks: Vec<_> = order
                    .chunks(order.len().div_ceil(TASKS).max(1))
                    .map(|share| {
                        let (store, plan, share) = (store.clone(), plan.clone(), share.to_vec());
                        tokio::spawn(async move {
                            let mut timer = Timer::with_capacity(share.len());
                            for i in share {
                                let begun = Instant::now();
                                let mut r = load_one(&*store, &plan, i).await?;
                                modify(&plan, &mut r.data, &mut r.expiry_date, i, 4);
                                store.save(&r).await.context("SessionStore::save")?;
                                timer.record(begun.elapsed());
                            }
                            anyhow::Ok(timer)
                        })
                    })
                    .collect();
                let mut all = Timer::with_capacity(order.len());
                for task in tasks {
                    all.merge(task.await.context("a request task panicked")??);
                }
                // The wall time after the final flush includes it.
                (probe.flush)()?;
                let wall = start.elapsed();
                let mut m = all.finish(
                    LOAD_SAVE_CONCURRENT,
                    probe.engine,
                    plan.n,
                    Some(wall.as_secs_f64()),
                );
                m.rss_kib = (probe.rss)();
                m.note = Some(format!(
                    "{TASKS} tasks on tokio's multi-thread runtime ({} worker threads); rate \
                     over wall time",
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                ));
                m.emit();
                Ok(())
            }
        }
    };
}

driver!(
    v15,
    tower_sessions_core,
    "The loop on tower-sessions-core 0.15's `SessionStore` (the sessdb adapter, MemoryStore)."
);
driver!(
    v14,
    tower_sessions_core_014,
    "The loop on tower-sessions-core 0.14's `SessionStore` (the sqlx, Redis and sled stores)."
);

/// What a child does with its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Create every session (timed), on a current-thread runtime.
    Populate,
    /// The sequential workloads, on a current-thread runtime.
    Work,
    /// The concurrent workload, on a multi-thread runtime.
    Concurrent,
}

/// Runs one tower-sessions child.
pub fn run(kind: &str, plan: &Plan, dir: &Path, redis_server: Option<&Path>) -> Result<()> {
    let (phase, store) = if let Some(store) = kind.strip_prefix("tower-mt-") {
        (Phase::Concurrent, store)
    } else if let Some(store) = kind.strip_prefix("tower-work-") {
        (Phase::Work, store)
    } else if let Some(store) = kind.strip_prefix("tower-") {
        (Phase::Populate, store)
    } else {
        bail!("unknown tower child kind {kind:?}")
    };
    let rt = match phase {
        Phase::Concurrent => tokio::runtime::Builder::new_multi_thread(),
        Phase::Populate | Phase::Work => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .context("starting a tokio runtime")?;
    match (store, phase) {
        ("sessdb", _) => sessdb(&rt, plan, dir, false, phase),
        ("sessdb-inline", _) => sessdb(&rt, plan, dir, true, phase),
        ("sled", _) => sled(&rt, plan, dir, phase),
        ("sqlite", _) => sqlite(&rt, plan, dir, phase),
        // The in-process stores populate and work in one child.
        ("memory", Phase::Populate | Phase::Concurrent) => memory(&rt, plan, phase),
        ("redis", Phase::Populate | Phase::Concurrent) => redis(
            &rt,
            plan,
            dir,
            redis_server.context("the tower-redis children need --redis")?,
            phase,
        ),
        _ => bail!("unknown tower child kind {kind:?}"),
    }
}

/// The populate row: its rate, the peak RSS, and the note that describes the store.
fn emit_populate(probe: &Probe<'_>, timer: Timer, plan: &Plan, bytes: Option<u64>, note: &str) {
    let mut m = probe.finish(timer, POPULATE, plan);
    m.disk_per_session = bytes.map(|b| b as f64 / plan.n as f64);
    m.note = Some(note.into());
    m.emit();
}

/// SessdbStore on its own store; `inline`: `with_inline_calls`.
fn sessdb(rt: &Runtime, plan: &Plan, dir: &Path, inline: bool, phase: Phase) -> Result<()> {
    let (engine, folder, calls) = if inline {
        (SESSDB_INLINE, "tower-sessdb-inline", "with_inline_calls")
    } else {
        (SESSDB, "tower-sessdb", "spawn_blocking per call")
    };
    let path = dir.join(folder);
    let db = sessdb::Store::open(&path).context("opening the sessdb store")?;
    let mut store = SessdbStore::new(db.clone()).with_principal_key(PRINCIPAL_KEY);
    if inline {
        store = store.with_inline_calls();
    }
    let flush = || -> Result<Duration> {
        let (flushed, took) = timed(|| db.flush());
        flushed.context("flushing the sessdb store")?;
        Ok(took)
    };
    let probe = Probe {
        engine,
        flush: &flush,
        rss: &peak_rss_kib,
    };
    match phase {
        Phase::Work => return rt.block_on(v15::work(&store, plan, &probe)),
        Phase::Concurrent => return rt.block_on(v15::concurrent(Arc::new(store), plan, &probe)),
        Phase::Populate => {}
    }
    reset_peak_rss();
    let mut timer = rt.block_on(v15::populate(&store, plan))?;
    timer.add(flush()?);
    emit_populate(
        &probe,
        timer,
        plan,
        Some(disk_bytes(&path)),
        &format!(
            "tower-sessions-sessdb on a sessdb Store with the default settings, principal from \
             `user_id`; {calls}; write rows include the final flush"
        ),
    );
    Ok(())
}

fn sled(rt: &Runtime, plan: &Plan, dir: &Path, phase: Phase) -> Result<()> {
    let path = dir.join("tower-sled");
    let db = crate::engines::sled::open_path(&path).context("opening the SledStore's sled")?;
    let tree = db
        .open_tree("session")
        .context("opening the SledStore's tree")?;
    let store = SledStore::new(tree);
    let flush = || -> Result<Duration> {
        let (flushed, took) = timed(|| db.flush());
        flushed.context("flushing the SledStore's sled")?;
        Ok(took)
    };
    let probe = Probe {
        engine: SLED,
        flush: &flush,
        rss: &peak_rss_kib,
    };
    match phase {
        Phase::Work => return rt.block_on(v14::work(&store, plan, &probe)),
        Phase::Concurrent => return rt.block_on(v14::concurrent(Arc::new(store), plan, &probe)),
        Phase::Populate => {}
    }
    reset_peak_rss();
    let mut timer = rt.block_on(v14::populate(&store, plan))?;
    timer.add(flush()?);
    emit_populate(
        &probe,
        timer,
        plan,
        Some(disk_bytes(&path)),
        &format!(
            "tower-sessions-sled-store as published: one tree, a MessagePack record per id, \
             sled called inline (no spawn_blocking), no expiry index (load returns expired \
             sessions); sessdb's {} MiB cache; write rows include the final flush",
            crate::engines::sled::CACHE_BYTES >> 20
        ),
    );
    Ok(())
}

fn sqlite(rt: &Runtime, plan: &Plan, dir: &Path, phase: Phase) -> Result<()> {
    let folder = dir.join("tower-sqlite");
    fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    // What a careful user writes, as the SQLite peer: WAL, synchronous=NORMAL (sqlx's default
    // is FULL and no journal mode).
    let options = SqliteConnectOptions::new()
        .filename(folder.join("sessions.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = rt
        .block_on(SqlitePool::connect_with(options))
        .context("opening SQLite through sqlx")?;
    let store = SqliteStore::new(pool.clone());
    let probe = Probe {
        engine: SQLITE,
        flush: &no_flush,
        rss: &peak_rss_kib,
    };
    match phase {
        Phase::Work | Phase::Concurrent => {
            if phase == Phase::Work {
                rt.block_on(v14::work(&store, plan, &probe))?;
            } else {
                rt.block_on(v14::concurrent(Arc::new(store), plan, &probe))?;
            }
            rt.block_on(pool.close());
            return Ok(());
        }
        Phase::Populate => {}
    }
    rt.block_on(store.migrate())
        .context("creating the sessions table")?;
    reset_peak_rss();
    let timer = rt.block_on(v14::populate(&store, plan))?;
    // Closing the last connection checkpoints the WAL into the database file.
    rt.block_on(pool.close());
    emit_populate(
        &probe,
        timer,
        plan,
        Some(disk_bytes(&folder)),
        "tower-sessions-sqlx-store's SqliteStore on a file, WAL, synchronous=NORMAL, sqlx's \
         default pool; create = one transaction each",
    );
    Ok(())
}

fn memory(rt: &Runtime, plan: &Plan, phase: Phase) -> Result<()> {
    let store = MemoryStore::default();
    let probe = Probe {
        engine: MEMORY,
        flush: &no_flush,
        rss: &peak_rss_kib,
    };
    reset_peak_rss();
    let timer = rt.block_on(v15::populate(&store, plan))?;
    if phase == Phase::Concurrent {
        return rt.block_on(v15::concurrent(Arc::new(store), plan, &probe));
    }
    emit_populate(
        &probe,
        timer,
        plan,
        None,
        "tower-sessions' MemoryStore (a HashMap behind a tokio Mutex, records cloned in and \
         out): the in-memory upper bound; one process for all its workloads",
    );
    rt.block_on(v15::work(&store, plan, &probe))
}

fn redis(rt: &Runtime, plan: &Plan, dir: &Path, binary: &Path, phase: Phase) -> Result<()> {
    let workdir: PathBuf = dir.join(if phase == Phase::Concurrent {
        "tower-mt-redis"
    } else {
        "tower-redis"
    });
    fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let (server, port) = redis::Server::start(binary, &workdir)?;
    // Waits until the server accepts connections; also reads its memory use below.
    let mut conn = redis::Conn::connect(port)?;
    let config =
        RedisConfig::from_url(&format!("redis://127.0.0.1:{port}")).context("the Redis address")?;
    let client = RedisClient::new(config, None, None, None);
    rt.block_on(client.init())
        .context("connecting fred to redis-server")?;
    let store = RedisStore::new(client.clone());
    let rss = || server.peak_rss_kib();
    let probe = Probe {
        engine: REDIS,
        flush: &no_flush,
        rss: &rss,
    };
    let timer = rt.block_on(v14::populate(&store, plan))?;
    if phase == Phase::Concurrent {
        rt.block_on(v14::concurrent(Arc::new(store), plan, &probe))?;
        rt.block_on(client.quit())
            .context("closing the Redis client")?;
        return Ok(());
    }
    let used = redis::info_used_memory(&mut conn)?;
    emit_populate(
        &probe,
        timer,
        plan,
        Some(used),
        "tower-sessions-redis-store on one fred client, redis-server on loopback with \
         persistence off; bytes/session is used_memory in RAM, RSS is redis-server's",
    );
    rt.block_on(v14::work(&store, plan, &probe))?;
    rt.block_on(client.quit())
        .context("closing the Redis client")?;
    Ok(())
}
