//! Crash tests: the `crash_writer` binary creates, updates, rotates, invalidates and purges
//! sessions and reports each operation before it starts (`op …`) and once acknowledged
//! (`ok …`); this test kills it with SIGKILL after a random number of acknowledgements (no
//! sleeps: the kill follows the reading of a line), reopens the store and checks it.
//!
//! Immediate durability: the store opens, `check` finds no problem (leftover index entries
//! are allowed), every acknowledged operation is visible, and the one in flight is either
//! wholly visible or not at all. Periodic durability: the store opens and is consistent.
//!
//! 50 iterations each by default; `SESSDB_CRASH_ITERATIONS=1000` runs more, and
//! `SESSDB_CRASH_SEED=N` replays a failure (each iteration prints its seed when it fails).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{verify_immediate, verify_second_life};
use sessdb::{Admin, Store};
use sessdb_e2e::sessctl;

const WRITER: &str = env!("CARGO_BIN_EXE_crash_writer");

fn iterations() -> u64 {
    common::env_u64("SESSDB_CRASH_ITERATIONS").unwrap_or(50)
}

fn base_seed() -> u64 {
    common::env_u64("SESSDB_CRASH_SEED").unwrap_or_else(|| fastrand::u64(..))
}

/// Runs the writer until it has acknowledged `acks` operations, kills it, and returns its
/// complete output lines.
fn run_writer(db: &Path, mode: &str, seed: u64, acks: usize) -> Vec<String> {
    let mut child = Command::new(WRITER)
        .arg(db)
        .arg(mode)
        .arg(seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    let mut seen = 0;
    let mut killed = false;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if out.read_until(b'\n', &mut buf).expect("read") == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            break; // a line cut by the kill: never acknowledged
        }
        let line = String::from_utf8(buf[..buf.len() - 1].to_vec()).expect("utf-8");
        if line.starts_with("ok") {
            seen += 1;
        }
        lines.push(line);
        if seen == acks && !killed {
            child.kill().expect("SIGKILL");
            killed = true;
        }
    }
    let status = child.wait().expect("wait");
    if status.signal() != Some(9) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        panic!("the writer was not killed but ended with {status}: {err}");
    }
    lines
}

/// Checks a store reopened after a periodic-mode crash: it opens and is consistent.
fn verify_periodic(db: &Path) {
    let store = Store::open(db).expect("the store opens after a crash");
    let report = store.check().expect("check");
    assert!(!report.has_problems(), "check found problems: {report:?}");
    assert_eq!(store.stats().expect("stats").undecodable, 0);
    store.purge_expired().expect("purge");
    store.repair().expect("repair");
    assert!(store.check().expect("check").is_clean());
}

fn campaign(mode: &str, max_acks: usize) {
    let base = base_seed();
    for i in 0..iterations() {
        let seed = base.wrapping_add(i);
        let mut rng = fastrand::Rng::with_seed(seed);
        let acks = rng.usize(1..=max_acks);
        let second_acks = rng.usize(1..=max_acks);
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let outcome = std::panic::catch_unwind(|| {
            // Two lives: the second writer starts on what the first crash left.
            let first = run_writer(&db, mode, seed, acks);
            if mode == "immediate" {
                verify_immediate(&db, &first);
            } else {
                verify_periodic(&db);
            }
            let second = run_writer(&db, mode, seed ^ 0x5eed, second_acks);
            if mode == "immediate" {
                // The second run's model starts from what the store held after the first.
                let store = Store::open(&db).expect("reopen");
                let report = store.check().expect("check");
                assert!(!report.has_problems(), "check found problems: {report:?}");
                drop(store);
                verify_second_life(&db, &second);
            } else {
                verify_periodic(&db);
            }
        });
        if let Err(e) = outcome {
            eprintln!(
                "crash test failed: mode {mode}, iteration {i}, seed {seed} \
                 (SESSDB_CRASH_SEED={base} replays this run)"
            );
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn immediate_mode_survives_sigkill_with_every_acknowledged_operation() {
    campaign("immediate", 60);
}

#[test]
fn periodic_mode_survives_sigkill_consistent() {
    campaign("periodic", 200);
}

// ---- killing sessctl in the middle of an import or a purge ----

/// Runs `cmd`, kills it at a random moment of a run that would take about `typical`, and
/// returns whether it was still running when killed. The moment is drawn at random; until
/// then the test polls the child (no sleep), then sends SIGKILL.
fn run_and_kill(mut cmd: Command, typical: Duration, rng: &mut fastrand::Rng) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sessctl");
    let at = typical.mul_f64(rng.f64());
    let start = Instant::now();
    while start.elapsed() < at {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        std::hint::spin_loop();
    }
    let running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    running
}

/// How long `cmd` takes when nobody kills it (and that it succeeds).
fn timed(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("run sessctl");
    assert!(
        out.status.success(),
        "sessctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// 3,000 sessions of 50 users, each with a number in its data.
fn fill(store: &Store) {
    for i in 0..3_000 {
        let mut s = store.create();
        s.set_principal(Some(&format!("user{}", i % 50)))
            .expect("principal");
        s.insert("i", &i).expect("insert");
        s.save().expect("save");
    }
}

/// A copy of the database files in `from` (its log, `conf` and snapshots) in a new folder `to`.
fn copy_database(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

fn sessctl_iterations() -> u64 {
    (iterations() / 5).max(1)
}

/// The session lines of an export (`common::session_lines`).
fn export_lines(store: &Store) -> BTreeSet<String> {
    let mut out = Vec::new();
    store.export(&mut out, true).expect("export");
    common::session_lines(&String::from_utf8(out).expect("utf-8"))
        .into_iter()
        .map(String::from)
        .collect()
}

#[test]
fn sessctl_import_killed_midway_completes_when_run_again() {
    let src = tempfile::tempdir().expect("tempdir");
    let file = src.path().join("export.jsonl");
    let want = {
        let store = Store::open(src.path().join("db")).expect("open");
        fill(&store);
        let mut out = Vec::new();
        store.export(&mut out, true).expect("export");
        std::fs::write(&file, out).expect("write the export");
        export_lines(&store)
    };
    let file_arg = file.to_str().expect("utf-8 path");
    let typical = {
        let dir = tempfile::tempdir().expect("tempdir");
        timed(sessctl(&dir.path().join("db"), &["import", file_arg]))
    };
    let mut rng = fastrand::Rng::with_seed(base_seed());
    let (mut killed, mut partial) = (0, 0);
    for _ in 0..sessctl_iterations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        killed += u32::from(run_and_kill(
            sessctl(&db, &["import", file_arg]),
            typical,
            &mut rng,
        ));
        if db.exists() {
            let store = Store::open(&db).expect("opens after the kill");
            let report = store.check().expect("check");
            assert!(!report.has_problems(), "after the kill: {report:?}");
            let n = store.stats().expect("stats").live;
            partial += u32::from(n > 0 && n < 3_000);
        }
        timed(sessctl(&db, &["import", file_arg]));
        let store = Store::open(&db).expect("open");
        assert!(!store.check().expect("check").has_problems());
        assert!(
            export_lines(&store) == want,
            "the rerun did not complete the import"
        );
    }
    assert!(killed > 0, "no run was killed while importing");
    eprintln!("import: {killed} runs killed, {partial} of them midway through writing");
}

#[test]
fn sessctl_purge_killed_midway_completes_when_run_again() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let src = pristine.path().join("db");
    let live = {
        let store = Store::open(&src).expect("open");
        for i in 0..3_000 {
            let mut s = store.create();
            s.set_principal(Some(&format!("user{}", i % 50)))
                .expect("principal");
            if i % 6 != 0 {
                s.set_idle_timeout(Duration::ZERO); // expired once written
            }
            s.save().expect("save");
        }
        store.flush().expect("flush");
        export_lines(&store)
            .into_iter()
            .filter(|l| l.contains("\"idle_timeout_s\":1800"))
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(live.len(), 500);
    let copy = |to: &Path| copy_database(&src, to);
    let typical = {
        let dir = tempfile::tempdir().expect("tempdir");
        copy(&dir.path().join("db"));
        timed(sessctl(&dir.path().join("db"), &["purge", "--expired"]))
    };
    let mut rng = fastrand::Rng::with_seed(base_seed());
    let (mut killed, mut partial) = (0, 0);
    for _ in 0..sessctl_iterations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        copy(&db);
        killed += u32::from(run_and_kill(
            sessctl(&db, &["purge", "--expired"]),
            typical,
            &mut rng,
        ));
        {
            let store = Store::open(&db).expect("opens after the kill");
            let report = store.check().expect("check");
            assert!(!report.has_problems(), "after the kill: {report:?}");
            let stats = store.stats().expect("stats");
            assert_eq!(stats.live, 500);
            partial += u32::from(stats.expired > 0 && stats.expired < 2_500);
        }
        timed(sessctl(&db, &["purge", "--expired"]));
        let store = Store::open(&db).expect("open");
        assert!(!store.check().expect("check").has_problems());
        let stats = store.stats().expect("stats");
        assert_eq!((stats.live, stats.expired), (500, 0));
        assert!(export_lines(&store) == live, "the live sessions changed");
    }
    assert!(killed > 0, "no run was killed while purging");
    eprintln!("purge: {killed} runs killed, {partial} of them midway through removing");
}

/// Killed at any moment, `sessctl compact` leaves a whole database at the path: the original
/// until the exchange of the folders, the copy after it. What it leaves beside the path (a
/// copy cut short, or the old database not yet removed) is named by the next compaction, and
/// once removed, that compaction finishes.
#[test]
fn sessctl_compact_killed_at_any_moment_leaves_a_whole_database() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let src = pristine.path().join("db");
    let want = {
        let store = Store::open(&src).expect("open");
        fill(&store);
        store.flush().expect("flush");
        export_lines(&store)
    };
    let copy = |to: &Path| copy_database(&src, to);
    let typical = {
        let dir = tempfile::tempdir().expect("tempdir");
        copy(&dir.path().join("db"));
        timed(sessctl(&dir.path().join("db"), &["compact"]))
    };
    let mut rng = fastrand::Rng::with_seed(base_seed());
    let (mut killed, mut left) = (0, 0);
    for _ in 0..sessctl_iterations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        copy(&db);
        killed += u32::from(run_and_kill(sessctl(&db, &["compact"]), typical, &mut rng));
        {
            let store = Store::open(&db).expect("opens after the kill");
            assert!(!store.check().expect("check").has_problems());
            assert!(export_lines(&store) == want, "sessions changed by the kill");
        }
        let leftover = dir.path().join("db.compact-new");
        if leftover.exists() {
            left += 1;
            let out = sessctl(&db, &["compact"]).output().expect("run sessctl");
            assert_eq!(out.status.code(), Some(5));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("db.compact-new is in the way"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::remove_dir_all(&leftover).expect("remove the leftover");
        }
        timed(sessctl(&db, &["compact"]));
        let store = Store::open(&db).expect("open");
        assert!(!store.check().expect("check").has_problems());
        assert!(
            export_lines(&store) == want,
            "sessions changed by the compaction"
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["db"]);
    }
    assert!(killed > 0, "no run was killed while compacting");
    eprintln!("compact: {killed} runs killed, {left} of them left a folder beside the database");
}
