//! The bench's smoke test: `--quick` on a tiny store runs every workload of every engine, the
//! tower-sessions stores included, and prints the whole report. It asserts that the rows are
//! there, never a timing.

use std::process::Command;

const ROWS: [(&str, &[&str]); 11] = [
    ("populate (setup)", &["sessdb", "raw sled", "SQLite"]),
    ("load hit", &["sessdb", "raw sled", "SQLite"]),
    ("load + get csrf", &["sessdb"]),
    ("save modified", &["sessdb", "raw sled", "SQLite"]),
    ("load (same sample)", &["sessdb"]),
    ("load + save unmodified", &["sessdb"]),
    ("purge expired", &["sessdb", "SQLite"]),
    ("durable save, 1 saver", &["sessdb", "SQLite FULL"]),
    ("durable save, 8 savers", &["sessdb", "SQLite FULL"]),
    ("open", &["sessdb", "raw sled", "SQLite"]),
    (
        "serve all: load each, save 1 in 10",
        &["sessdb", "raw sled", "SQLite"],
    ),
];

/// Every store through tower-sessions' `SessionStore` (RedisStore is skipped by `--no-redis`).
const TOWER_STORES: [&str; 5] = [
    "SessdbStore",
    "SessdbStore (inline)",
    "MemoryStore",
    "SledStore",
    "SqliteStore (sqlx)",
];
const TOWER_WORKLOADS: [&str; 5] = [
    "tower: create (setup)",
    "tower: load",
    "tower: save",
    "tower: load + save",
    "tower: load + save, 8 tasks, multi-thread runtime",
];

#[test]
fn quick_run_prints_every_row_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sessdb-bench"))
        .args(["--quick", "--sessions", "1000", "--no-redis", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    for (workload, engines) in ROWS {
        for engine in engines {
            let row = format!("| {workload} | 1k | {engine} |");
            assert!(stdout.contains(&row), "missing {row:?} in:\n{stdout}");
        }
    }
    for workload in TOWER_WORKLOADS {
        for store in TOWER_STORES {
            let row = format!("| {workload} | 1k | {store} |");
            assert!(stdout.contains(&row), "missing {row:?} in:\n{stdout}");
        }
        let redis = format!("| {workload} | 1k | RedisStore |");
        assert!(!stdout.contains(&redis), "{redis:?} despite --no-redis");
    }
    // The concurrent rows: one thread and as many as the machine has cores (at least 2), for
    // every engine; sessdb's row on several threads compares each engine with its one thread.
    let threads = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .max(2);
    for base in ["load hit", "load + save modified"] {
        for engine in ["sessdb", "raw sled", "SQLite"] {
            for count in ["1 thread".to_string(), format!("{threads} threads")] {
                let row = format!("| {base}, {count} | 1k | {engine} |");
                let line = stdout.lines().find(|l| l.starts_with(&row));
                let line = line.unwrap_or_else(|| panic!("missing {row:?} in:\n{stdout}"));
                assert!(line.contains(" cores busy"), "no cores busy in {line:?}");
            }
        }
        let row = format!("| {base}, {threads} threads | 1k | sessdb |");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_default();
        assert!(
            line.contains("its rate on 1 thread (raw sled ")
                && line.contains("× SQLite;")
                && line.contains("; quarters on 1, N, N, 1 threads: "),
            "{line:?}"
        );
    }
    for mib in [16, 64, 128, 256, 1024] {
        let row = format!("| load hit, cache_bytes {mib} MiB | 1k | sessdb |");
        assert!(stdout.contains(&row), "missing {row:?} in:\n{stdout}");
    }
    for target in [
        "load hit ≥ 0.5× raw sled get (1k)",
        "load + save unmodified writes nothing (1k) | store.counters(): 0 writes",
        "purge ≥ 100k expired sessions/s (1k)",
        "immediate durability, 8 savers ≥ 15k saves/s (1k)",
        "peak RSS with default settings ≤ 600 MiB (1k)",
        "open a 1k-session store in < 2 s",
        "Redis skipped: --no-redis",
        "SessdbStore load + save ≥ 0.8× SledStore (1k)",
        "SessdbStore load + save ≥ 0.4× MemoryStore (1k)",
        "SessdbStore load + save ≥ 5× SqliteStore (sqlx) (1k)",
        "SessdbStore (inline) load + save ≥ 0.8× SledStore (1k)",
        "SQLite 3.",
        // A note shared by every store is printed once, naming them all.
        "- tower: load + save, 8 tasks, multi-thread runtime / SessdbStore, SessdbStore (inline), \
         MemoryStore, SledStore, SqliteStore (sqlx): 8 tasks on tokio's multi-thread runtime",
    ] {
        assert!(stdout.contains(target), "missing {target:?} in:\n{stdout}");
    }
    // The databases live in a folder of their own that the bench removes.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
