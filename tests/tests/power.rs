//! Power-loss test: the `power_writer` binary runs the crash writer's operations in immediate
//! mode (with sessions big enough to be sled blobs) and records every write, truncation,
//! creation, rename, removal, `fsync` and `sync_file_range` it makes (`sessdb_e2e::power`). From
//! that journal the test builds the folder a power cut at a given step leaves: each file as at
//! its last `fsync`, each folder's entries as at its last `fsync` (`Keep::Synced`); or with
//! part of what was not synced kept as well: what `sync_file_range` wrote (`Keep::Pushed`),
//! everything up to an earlier step (`Keep::Prefix`), or a prefix of the writes of each 4 KiB
//! page (`Keep::Pages`). It opens that folder and checks it against the operations
//! acknowledged before the cut, as the SIGKILL test does: the store opens, `check` finds no
//! problem, every acknowledged operation is there, the one in flight wholly or not at all.
//! A second writer then runs on one of the cuts (sled's recovery writes too) and is cut in
//! turn. A third test runs 4 savers at once (the group commit). No root, no FUSE, no sleep:
//! the cuts are built from the journal after the writer ran.
//!
//! `SESSDB_POWER_RUNS=N` runs more writers (default 2); `SESSDB_POWER_SEED=N` repeats a failed
//! run's operations and choice of cuts, not its threads' timing (sled's background writes may
//! split or order differently, so the journal, and the cut, may differ);
//! `SESSDB_POWER_KEEP=DIR` leaves a failing cut and the journal's steps up to it in DIR, which
//! is what reproduces it.

// The writer's journal is made by defining glibc's calls (`src/bin/power_writer.rs`).
#![cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::{verify_immediate, verify_second_life};
use sessdb::{Admin, SessionId, Store};
use sessdb_e2e::power::{differences, Before, Journal, Keep};

const WRITER: &str = env!("CARGO_BIN_EXE_power_writer");

fn runs() -> u64 {
    common::env_u64("SESSDB_POWER_RUNS").unwrap_or(2)
}

fn base_seed() -> u64 {
    common::env_u64("SESSDB_POWER_SEED").unwrap_or_else(|| fastrand::u64(..))
}

/// Runs the writer on the database `root/db` for `ops` operations, and returns its journal.
/// Checks that the journal followed every change: replayed whole, it gives the tree the writer
/// left.
fn run_writer(root: &Path, seed: u64, ops: u64, scratch: &Path) -> Journal {
    run_writer_with(root, seed, ops, None, scratch)
}

/// [`run_writer`], with `threads` concurrent savers if given.
fn run_writer_with(
    root: &Path,
    seed: u64,
    ops: u64,
    threads: Option<u64>,
    scratch: &Path,
) -> Journal {
    let before = Before::scan(root).expect("scan the tree before the writer");
    let journal_path = scratch.join(format!("journal-{seed}"));
    let out = Command::new(WRITER)
        .arg(root.join("db"))
        .arg(&journal_path)
        .arg(seed.to_string())
        .arg(ops.to_string())
        .args(threads.map(|t| t.to_string()))
        .output()
        .expect("run the writer");
    assert!(
        out.status.success(),
        "the writer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let journal = Journal::read(
        std::fs::read(&journal_path).expect("read the journal"),
        before,
    );
    let whole = scratch.join(format!("whole-{seed}"));
    journal
        .cut(journal.len(), Keep::Prefix(journal.len()), &whole)
        .expect("replay the journal");
    let diff = differences(&whole, root).expect("compare");
    assert!(
        diff.is_empty(),
        "the journal missed a change of the writer: {diff:?}"
    );
    std::fs::remove_dir_all(&whole).expect("remove the replay");
    journal
}

/// Where to cut a journal: right after a few acknowledgements (the state the writer reported
/// durable), right before a few `fsync`s of a file (what was written since the last one is
/// all unsynced), and at random steps (an operation in flight); `n` in all.
fn cut_points(journal: &Journal, rng: &mut fastrand::Rng, n: usize) -> Vec<usize> {
    let acks: Vec<usize> = journal
        .notes()
        .into_iter()
        .filter(|(_, line)| line.starts_with("ok"))
        .map(|(i, _)| i + 1)
        .collect();
    let syncs = journal.file_syncs();
    let mut points: Vec<usize> = (0..n / 3).map(|_| acks[rng.usize(..acks.len())]).collect();
    points.extend((0..n / 3).map(|_| syncs[rng.usize(..syncs.len())]));
    points.extend((0..n - 2 * (n / 3)).map(|_| rng.usize(1..=journal.len())));
    points.sort_unstable();
    points.dedup();
    points
}

/// Builds the cut of `journal` at `at` keeping `keep`, and runs `verify` on its database
/// with the writer's lines before the cut. On a failure, says where (the check's panic
/// message is printed above); with
/// `SESSDB_POWER_KEEP=DIR`, also leaves the cut in DIR (the journal's steps up to it in
/// `DIR/steps`) for a look.
fn check_cut(
    life: &str,
    journal: &Journal,
    at: usize,
    keep: Keep,
    scratch: &Path,
    verify: fn(&Path, &[String]),
) -> Result<(), String> {
    let to = scratch.join(format!("cut-{at}"));
    journal.cut(at, keep, &to).expect("build the cut");
    let lines = journal.lines_before(at);
    let checked = std::panic::catch_unwind(|| verify(&to.join("db"), &lines));
    std::fs::remove_dir_all(&to).expect("remove the cut");
    if checked.is_err() {
        if let Some(dir) = std::env::var_os("SESSDB_POWER_KEEP") {
            let dir = Path::new(&dir);
            let _ = std::fs::remove_dir_all(dir);
            journal.cut(at, keep, dir).expect("build the cut again");
            std::fs::write(dir.join("steps"), journal.describe(at).join("\n")).expect("write");
        }
        return Err(format!(
            "{life} life, power cut at step {at} of {} ({keep:?}, {} fsyncs before it, {} \
             lines of the writer): an acknowledged operation is lost, or the store is damaged",
            journal.len(),
            journal.syncs_before(at),
            lines.len()
        ));
    }
    Ok(())
}

/// The second writer's check: the store opens with no problem, and its own acknowledged
/// operations are there.
fn verify_second(db: &Path, lines: &[String]) {
    {
        let store = Store::open(db).expect("the store opens after a power cut");
        let report = store.check().expect("check");
        assert!(!report.has_problems(), "check found problems: {report:?}");
    }
    verify_second_life(db, lines);
}

/// How a campaign cuts: every cut under `Keep::Synced` and sampled ones under `Keep::Prefix`
/// (a disk that honours `fsync` and writes the rest back in order), or sampled ones keeping
/// unsynced writes out of order (`Keep::Pushed`, `Keep::Pages`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cuts {
    InOrder,
    OutOfOrder,
}

/// The variants checked at a sampled cut.
fn keeps(cuts: Cuts, at: usize, rng: &mut fastrand::Rng) -> Vec<Keep> {
    match cuts {
        Cuts::InOrder => vec![Keep::Prefix(rng.usize(..=at))],
        Cuts::OutOfOrder => vec![Keep::Pushed, Keep::Pages(rng.u64(..))],
    }
}

/// Runs the writers of a campaign and checks their cuts. Returns how many cuts were checked
/// and the failures (`stop`: panics at the first).
fn campaign(cuts: Cuts, samples: usize, stop: bool) -> (usize, Vec<String>) {
    let base = base_seed();
    let scratch = tempfile::tempdir().expect("tempdir");
    let scratch = scratch.path();
    let mut checked = 0;
    let mut failed = Vec::new();
    for run in 0..runs() {
        let seed = base.wrapping_add(run);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut check =
            |life: &str, journal: &Journal, at: usize, keep: Keep, verify: fn(&Path, &[String])| {
                checked += 1;
                if let Err(e) = check_cut(life, journal, at, keep, scratch, verify) {
                    let e = format!("{e} [run {run}, seed {seed}; SESSDB_POWER_SEED={seed}]");
                    assert!(!stop, "{e}");
                    eprintln!("{e}");
                    failed.push(e);
                }
            };
        let root = scratch.join(format!("run-{seed}"));
        std::fs::create_dir(&root).expect("mkdir");
        let journal = run_writer(&root, seed, 60, scratch);
        if cuts == Cuts::InOrder {
            for at in journal.sync_points() {
                check("first", &journal, at, Keep::Synced, verify_immediate);
            }
        }
        let points = cut_points(&journal, &mut rng, samples);
        for &at in &points {
            for keep in keeps(cuts, at, &mut rng) {
                check("first", &journal, at, keep, verify_immediate);
            }
        }
        // A second life on what a cut left: sled's recovery writes too (the log's torn tail,
        // a new snapshot), and a cut during it or after must lose nothing either.
        let root = scratch.join(format!("second-{seed}"));
        let at = points[rng.usize(..points.len())];
        journal.cut(at, Keep::Synced, &root).expect("build the cut");
        let journal = run_writer(&root, seed ^ 0x5eed, 30, scratch);
        if cuts == Cuts::InOrder {
            for at in journal.sync_points() {
                check("second", &journal, at, Keep::Synced, verify_second);
            }
        }
        for at in cut_points(&journal, &mut rng, samples * 2 / 3) {
            for keep in keeps(cuts, at, &mut rng) {
                check("second", &journal, at, keep, verify_second);
            }
        }
    }
    (checked, failed)
}

/// Every cut a disk that honours `fsync` can leave, writing back in order what was not synced:
/// each file and folder as at its last `fsync` (all such cuts), or with everything up to an
/// earlier step as well (sampled).
#[test]
fn immediate_mode_survives_power_loss_with_every_acknowledged_operation() {
    let (checked, _) = campaign(Cuts::InOrder, 9, true);
    eprintln!("{checked} power cuts checked");
}

/// Cuts that keep unsynced writes out of order: what `sync_file_range` wrote (a disk without a
/// write cache), or a prefix of each page's writes. Ignored: it fails now and then, on sled's
/// side (`docs/RELIABILITY.md`, "Power loss"): a sled transaction (an id rotation) writes and
/// `sync_file_range`s its log before sessdb's commit can sync the blob that log points at,
/// and sled's recovery of a batch with a missing blob panics (the store reports `Damaged`).
/// `cargo test -p sessdb-e2e --test power -- --ignored` runs it and lists every failing cut.
#[test]
#[ignore = "fails now and then: sled pushes a transaction's log ahead of its blob"]
fn immediate_mode_power_loss_keeping_unsynced_writes_out_of_order() {
    let (checked, failed) = campaign(Cuts::OutOfOrder, 15, false);
    eprintln!("{checked} power cuts checked, {} failed", failed.len());
    assert!(
        failed.is_empty(),
        "{} of {checked} cuts failed",
        failed.len()
    );
}

/// The concurrent savers' check: the store opens with no problem, and every acknowledged
/// create and update is there (an update in flight may show, a create in flight may exist).
fn verify_concurrent(db: &Path, lines: &[String]) {
    let mut acked: HashMap<SessionId, u64> = HashMap::new();
    let mut pending: HashMap<String, (SessionId, u64)> = HashMap::new();
    for line in lines {
        let w: Vec<&str> = line.split(' ').collect();
        match (w[0], w.get(2)) {
            ("op", Some(&"create")) => {
                pending.insert(w[1].to_string(), (w[3].parse().expect("id"), 0));
            }
            ("op", Some(&"update")) => {
                let n = w[4].parse().expect("n");
                pending.insert(w[1].to_string(), (w[3].parse().expect("id"), n));
            }
            ("ok", None) => {
                let (id, n) = pending.remove(w[1]).expect("an ok after its op");
                acked.insert(id, n);
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
    let store = Store::open(db).expect("the store opens after a power cut");
    let report = store.check().expect("check");
    assert!(!report.has_problems(), "check found problems: {report:?}");
    for (id, n) in &acked {
        let in_flight = pending.values().any(|(p, m)| p == id && *m == n + 1);
        let s = store
            .load(id)
            .expect("load")
            .unwrap_or_else(|| panic!("acknowledged session {id:?} is missing"));
        let got = s.get::<u64>("n").expect("n");
        assert!(
            got == Some(*n) || (in_flight && got == Some(n + 1)),
            "session {id:?}: n = {got:?}, acknowledged {n}"
        );
    }
}

/// Four savers at once (the group commit serves several), on sessions of their own: every
/// cut under `Keep::Synced` and sampled `Keep::Prefix` cuts.
#[test]
fn immediate_mode_survives_power_loss_with_concurrent_savers() {
    let base = base_seed();
    let scratch = tempfile::tempdir().expect("tempdir");
    let scratch = scratch.path();
    let mut checked = 0;
    for run in 0..runs() {
        let seed = base.wrapping_add(run);
        let mut rng = fastrand::Rng::with_seed(seed);
        let root = scratch.join(format!("concurrent-{seed}"));
        std::fs::create_dir(&root).expect("mkdir");
        let journal = run_writer_with(&root, seed, 12, Some(4), scratch);
        // How many savers a log fsync served at most: the group commit at work.
        let syncs = journal.file_syncs();
        let oks: Vec<usize> = journal
            .notes()
            .into_iter()
            .filter(|(_, l)| l.starts_with("ok"))
            .map(|(i, _)| i)
            .collect();
        let most = syncs
            .windows(2)
            .map(|w| oks.iter().filter(|&&i| w[0] < i && i < w[1]).count())
            .max()
            .unwrap_or(0);
        eprintln!("run {run}: at most {most} acknowledgements between two fsyncs");
        let mut points = journal.sync_points();
        let sampled = cut_points(&journal, &mut rng, 9);
        points.extend(&sampled);
        for at in points {
            let keep = if sampled.contains(&at) {
                Keep::Prefix(rng.usize(..=at))
            } else {
                Keep::Synced
            };
            checked += 1;
            if let Err(e) = check_cut("concurrent", &journal, at, keep, scratch, verify_concurrent)
            {
                panic!("{e} [run {run}, seed {seed}; SESSDB_POWER_SEED={seed}]");
            }
        }
    }
    eprintln!("{checked} power cuts checked");
}
