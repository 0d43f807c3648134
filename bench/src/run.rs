//! The parent process: validates the arguments, runs every engine at every size in a child
//! process of this same binary, one at a time, and prints the report.

use std::env;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};

use crate::args::{Args, Child};
use crate::data::Plan;
use crate::engines;
use crate::measure::{Measurement, RESULT_PREFIX};
use crate::report::{self, Report};

/// The validated configuration of a run.
#[derive(Debug)]
struct Config {
    quick: bool,
    sizes: Vec<usize>,
    dir: PathBuf,
    seed: u64,
    redis: Option<PathBuf>,
    redis_note: Option<String>,
    only: Vec<String>,
}

const PARTS: [&str; 7] = [
    "sessdb", "sled", "sqlite", "redis", "memory", "cache", "tower",
];

pub fn run(args: Args) -> Result<()> {
    if let Some(Child::Run {
        kind,
        plan,
        dir,
        cache_mib,
        redis,
    }) = args.child
    {
        let plan: Plan = serde_json::from_str(&plan).context("the plan given to a child")?;
        return child(&kind, &plan, &dir, cache_mib, redis.as_deref());
    }
    let config = configure(args)?;
    parent(&config)
}

fn configure(args: Args) -> Result<Config> {
    let mut sizes = if args.sessions.is_empty() {
        if args.quick {
            vec![10_000, 50_000]
        } else {
            vec![100_000, 1_000_000]
        }
    } else {
        args.sessions
    };
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.first().is_some_and(|&n| n < 100) {
        bail!("--sessions: at least 100 sessions per store");
    }
    let (redis, redis_note) = match (args.no_redis, engines::redis::server_binary()) {
        (true, _) => (
            None,
            Some(
                "Redis skipped: --no-redis (the Redis peer and the tower-sessions RedisStore)"
                    .to_string(),
            ),
        ),
        (false, None) => (
            None,
            Some(
                "Redis skipped: no redis-server on the PATH (apt-get install redis-server); \
                 the Redis peer and the tower-sessions RedisStore were not measured"
                    .to_string(),
            ),
        ),
        (false, Some(bin)) => (Some(bin), None),
    };
    if let Some(bad) = args.only.iter().find(|p| !PARTS.contains(&p.as_str())) {
        bail!(
            "--only: unknown part {bad:?} (expected one of {})",
            PARTS.join(", ")
        );
    }
    Ok(Config {
        only: args.only,
        quick: args.quick,
        sizes,
        dir: args.dir.unwrap_or_else(env::temp_dir),
        seed: args.seed,
        redis,
        redis_note,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn parent(config: &Config) -> Result<()> {
    let started = Instant::now();
    let load_before = report::load_average();
    let t0 = now_ms();
    let smallest = config.sizes[0];
    let largest = *config.sizes.last().unwrap_or(&smallest);
    // The same number of expired sessions at every size: purge's cost must follow it, not the
    // size of the store.
    let victims = (smallest / 10).max(1);
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &n in &config.sizes {
        let plan = Plan {
            n,
            seed: config.seed,
            t0,
            victim_stride: (n / victims).max(1),
            sample: n.min(if config.quick { 10_000 } else { 200_000 }),
            durable_one: if config.quick { 200 } else { 5_000 },
            durable_per_thread: if config.quick { 100 } else { 2_500 },
        };
        let dir = tempfile::Builder::new()
            .prefix("sessdb-bench-")
            .tempdir_in(&config.dir)
            .with_context(|| format!("creating a folder in {}", config.dir.display()))?;
        // Four processes per engine: populate, load hit (fresh, warmed up the same way for
        // every engine), the other workloads, then the concurrent rows. Redis keeps its data in
        // its server, so its workloads run in one child.
        let mut kinds: Vec<(&str, Option<u64>)> = [
            "sessdb",
            "load-sessdb",
            "work-sessdb",
            "conc-sessdb",
            "sled",
            "load-sled",
            "work-sled",
            "conc-sled",
            "sqlite",
            "load-sqlite",
            "work-sqlite",
            "conc-sqlite",
        ]
        .into_iter()
        .map(|kind| (kind, None))
        .collect();
        if config.redis.is_some() {
            kinds.push(("redis", None));
        }
        if n == largest {
            kinds.extend([
                ("memory-sessdb", None),
                ("memory-sled", None),
                ("memory-sqlite", None),
            ]);
            for mib in engines::sessdb::cache_sizes_mib() {
                kinds.push(("cache", Some(mib)));
            }
        }
        // Through tower-sessions' SessionStore: sessdb's adapter and the published stores.
        // --quick runs them at the smallest size only: the slow peers' creates (one SQLite
        // transaction or one Redis round trip each) would take most of its minute.
        if !config.quick || n == smallest {
            kinds.extend(engines::tower::KINDS.iter().map(|&kind| (kind, None)));
            if config.redis.is_some() {
                kinds.extend(engines::tower::REDIS_KINDS.iter().map(|&kind| (kind, None)));
            }
        }
        kinds.retain(|(kind, _)| {
            config.only.is_empty() || config.only.iter().any(|p| p == part(kind))
        });
        for (kind, cache_mib) in kinds {
            eprintln!(
                "[{:>6.1}s] {} sessions: {kind}{}",
                started.elapsed().as_secs_f64(),
                n,
                cache_mib.map(|m| format!(" {m} MiB")).unwrap_or_default()
            );
            match spawn_child(kind, &plan, dir.path(), cache_mib, config.redis.as_deref()) {
                Ok(mut got) => results.append(&mut got),
                Err(e) => failures.push(format!("{kind} at {n} sessions: {e:#}")),
            }
        }
    }
    let report = Report {
        results,
        sizes: config.sizes.clone(),
        quick: config.quick,
        notes: config.redis_note.iter().cloned().collect(),
        failures: failures.clone(),
        load_before,
        load_after: report::load_average(),
        wall_secs: started.elapsed().as_secs_f64(),
    };
    print!("{}", report.markdown());
    if !failures.is_empty() {
        bail!("{} child run(s) failed", failures.len());
    }
    Ok(())
}

/// The `--only` part a child kind belongs to.
fn part(kind: &str) -> &str {
    if kind.starts_with("tower-") {
        "tower"
    } else if kind.starts_with("memory-") {
        "memory"
    } else {
        ["load-", "work-", "conc-"]
            .iter()
            .find_map(|p| kind.strip_prefix(p))
            .unwrap_or(kind)
    }
}

fn spawn_child(
    kind: &str,
    plan: &Plan,
    dir: &Path,
    cache_mib: Option<u64>,
    redis: Option<&Path>,
) -> Result<Vec<Measurement>> {
    let exe = env::current_exe().context("finding this executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["__child", "--kind", kind, "--plan"])
        .arg(serde_json::to_string(plan)?)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(mib) = cache_mib {
        cmd.args(["--cache-mib", &mib.to_string()]);
    }
    if let Some(bin) = redis {
        cmd.arg("--redis").arg(bin);
    }
    let mut child = cmd.spawn().context("starting a child run")?;
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            match line.strip_prefix(RESULT_PREFIX) {
                Some(json) => out.push(serde_json::from_str(json)?),
                None => println!("{line}"),
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("exited with {status}");
    }
    Ok(out)
}

fn child(
    kind: &str,
    plan: &Plan,
    dir: &Path,
    cache_mib: Option<u64>,
    redis: Option<&Path>,
) -> Result<()> {
    match kind {
        "sessdb" => engines::sessdb::run(plan, dir),
        "sled" => engines::sled::run(plan, dir),
        "sqlite" => engines::sqlite::run(plan, dir),
        "redis" => engines::redis::run(plan, dir, redis.context("the redis child needs --redis")?),
        "work-sessdb" => engines::sessdb::work(plan, dir),
        "work-sled" => engines::sled::work(plan, dir),
        "work-sqlite" => engines::sqlite::work(plan, dir),
        "load-sessdb" => engines::sessdb::load_fresh(plan, dir),
        "load-sled" => engines::sled::load_fresh(plan, dir),
        "load-sqlite" => engines::sqlite::load_fresh(plan, dir),
        "conc-sessdb" => engines::sessdb::concurrent(plan, dir),
        "conc-sled" => engines::sled::concurrent(plan, dir),
        "conc-sqlite" => engines::sqlite::concurrent(plan, dir),
        "memory-sessdb" => engines::sessdb::memory(plan, dir, None),
        "memory-sled" => engines::sled::memory(plan, dir),
        "memory-sqlite" => engines::sqlite::memory(plan, dir),
        "cache" => engines::sessdb::memory(
            plan,
            dir,
            Some(cache_mib.context("the cache child needs --cache-mib")? << 20),
        ),
        tower if tower.starts_with("tower-") => engines::tower::run(tower, plan, dir, redis),
        other => bail!("unknown child kind {other:?}"),
    }
}
