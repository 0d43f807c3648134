//! Immediate durability's commit journal, from outside: sled's files are synced only at a
//! checkpoint, so a power cut can leave them as they were there, with every commit since in
//! the journal alone. The next open, in any mode, must give back each of those commits.

mod common;

use std::fs;
use std::path::Path;

use common::T0;
use sessdb::{Admin, Durability, ManualClock, SessionId, Store, JOURNAL_FILE};

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn export(store: &Store) -> String {
    let mut out = Vec::new();
    store.export(&mut out, true).unwrap();
    // The header line holds the time of the export.
    String::from_utf8(out)
        .unwrap()
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n")
}

fn immediate(clock: &ManualClock) -> sessdb::Builder {
    Store::builder()
        .durability(Durability::Immediate)
        .clock(clock.clone())
}

/// `n` sessions saved, the i-th of `principal(i)` with `i` under "i", and the first ten
/// invalidated. Returns their ids.
fn saved_then_ten_ended(
    store: &Store,
    n: usize,
    principal: impl Fn(usize) -> String,
) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut s = store.create();
        s.set_principal(Some(&principal(i))).unwrap();
        s.insert("i", &i).unwrap();
        s.save().unwrap();
        ids.push(*s.id());
    }
    for id in &ids[..10] {
        assert!(store.invalidate(id).unwrap());
    }
    ids
}

/// What a power cut after the commits of `after` can leave: sled's files as the checkpoint
/// after `before` synced them, the journal as `after` left it. Returns the folder of that cut,
/// the export of the store as `after` left it, and the export of sled's files alone.
struct Cut {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: ManualClock,
    committed: String,
    checkpointed: String,
}

fn cut(before: impl FnOnce(&Store), after: impl FnOnce(&Store)) -> Cut {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let clock = ManualClock::at_ms(T0);
    let store = immediate(&clock).open(&live).unwrap();
    before(&store);
    store.flush().unwrap(); // a checkpoint: sled's flush and `fsync`
    let sled_files = dir.path().join("sled-files");
    copy_tree(&live, &sled_files);
    fs::remove_file(sled_files.join(JOURNAL_FILE)).unwrap();
    after(&store);
    let committed = export(&store);
    let path = dir.path().join("cut");
    copy_tree(&sled_files, &path);
    fs::copy(live.join(JOURNAL_FILE), path.join(JOURNAL_FILE)).unwrap();
    drop(store);
    let checkpointed = {
        let alone = dir.path().join("alone");
        copy_tree(&sled_files, &alone);
        export(&Store::builder().clock(clock.clone()).open(&alone).unwrap())
    };
    Cut {
        _dir: dir,
        path,
        clock,
        committed,
        checkpointed,
    }
}

/// Sessions made, changed, rotated and ended, among others from before the checkpoint.
fn work() -> Cut {
    let ids = std::sync::Mutex::new(Vec::new());
    cut(
        |store| {
            for i in 0..20 {
                let mut s = store.create();
                s.set_principal(Some(&format!("user{}", i % 4))).unwrap();
                s.insert("n", &i).unwrap();
                s.save().unwrap();
                ids.lock().unwrap().push(*s.id());
            }
        },
        |store| {
            let ids = ids.lock().unwrap();
            for id in &ids[..5] {
                let mut s = store.load(id).unwrap().unwrap();
                s.insert("changed", &true).unwrap();
                s.save().unwrap();
            }
            for id in &ids[5..8] {
                assert!(store.invalidate(id).unwrap());
            }
            let mut s = store.load(&ids[8]).unwrap().unwrap();
            s.cycle_id().unwrap();
            s.set_principal(Some("rotated")).unwrap();
            s.save().unwrap();
            assert_eq!(store.invalidate_principal("user3").unwrap(), 4);
            for i in 0..4 {
                let mut s = store.create();
                s.set_principal(Some("new")).unwrap();
                s.insert("big", &"x".repeat(i * 40_000)).unwrap();
                s.save().unwrap();
            }
        },
    )
}

#[test]
fn every_commit_since_the_checkpoint_comes_back_from_the_journal() {
    let cut = work();
    assert_ne!(
        cut.committed, cut.checkpointed,
        "sled's files alone lack the commits since the checkpoint"
    );
    let store = immediate(&cut.clock).open(&cut.path).unwrap();
    assert_eq!(export(&store), cut.committed);
    assert!(store.check().unwrap().is_clean(), "{:?}", store.check());
    assert_eq!(store.sessions_of("new").unwrap().len(), 4);
    assert_eq!(store.sessions_of("user3").unwrap().len(), 0);
    assert_eq!(store.sessions_of("rotated").unwrap().len(), 1);
    // The replay was checkpointed: sled's files now hold it, and a second open replays
    // nothing that changes anything.
    drop(store);
    let store = immediate(&cut.clock).open(&cut.path).unwrap();
    assert_eq!(export(&store), cut.committed);
}

#[test]
fn a_periodic_open_replays_the_journal_and_removes_it() {
    let cut = work();
    let store = Store::builder()
        .clock(cut.clock.clone())
        .open(&cut.path)
        .unwrap();
    assert_eq!(export(&store), cut.committed);
    assert!(store.check().unwrap().is_clean());
    assert!(!cut.path.join(JOURNAL_FILE).exists());
    drop(store);
    let store = Store::builder()
        .clock(cut.clock.clone())
        .open(&cut.path)
        .unwrap();
    assert_eq!(export(&store), cut.committed, "on sled's files since");
}

#[test]
fn a_read_only_open_shows_the_commits_and_leaves_the_journal() {
    let cut = work();
    let journal = fs::read(cut.path.join(JOURNAL_FILE)).unwrap();
    let store = Store::builder()
        .read_only(true)
        .clock(cut.clock.clone())
        .open(&cut.path)
        .unwrap();
    assert_eq!(export(&store), cut.committed);
    drop(store);
    assert_eq!(fs::read(cut.path.join(JOURNAL_FILE)).unwrap(), journal);
    let store = immediate(&cut.clock).open(&cut.path).unwrap();
    assert_eq!(export(&store), cut.committed);
}

/// A commit that reached sled's files too (its buffer filled and was written) is replayed on
/// top of itself: the same state.
#[test]
fn a_replay_over_changes_sled_already_has_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_ms(T0);
    let path = dir.path().join("db");
    let store = immediate(&clock).open(&path).unwrap();
    saved_then_ten_ended(&store, 30, |_| "p".into());
    let committed = export(&store);
    // The journal with its frames since the last checkpoint; then the last drop checkpoints,
    // and sled's files hold every commit. Both together: a cut just before the checkpoint's
    // header was written.
    let journal = fs::read(path.join(JOURNAL_FILE)).unwrap();
    drop(store);
    assert_ne!(fs::read(path.join(JOURNAL_FILE)).unwrap(), journal);
    fs::write(path.join(JOURNAL_FILE), &journal).unwrap();
    let store = immediate(&clock).open(&path).unwrap();
    assert_eq!(export(&store), committed);
    assert!(store.check().unwrap().is_clean());
}

#[test]
fn a_folder_with_a_journal_and_no_log_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(
        Store::builder()
            .durability(Durability::Immediate)
            .open(&path)
            .unwrap(),
    );
    fs::remove_file(path.join("db")).unwrap();
    fs::remove_file(path.join("conf")).unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(matches!(err, sessdb::Error::Damaged { .. }), "{err}");
    assert!(path.join(JOURNAL_FILE).exists(), "left as it was");
}

/// A store with a journal is format 3, so that a build that knows no journal refuses it
/// rather than ignore commits only the journal holds; one only ever opened in periodic mode
/// stays at 2, which such a build opens.
#[test]
fn an_immediate_open_marks_the_database_as_format_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let format = |store: &Store| store.stats().unwrap().format_version;
    let store = Store::open(&path).unwrap();
    assert_eq!(format(&store), 2);
    drop(store);
    assert!(!path.join(JOURNAL_FILE).exists());
    let store = Store::builder()
        .durability(Durability::Immediate)
        .open(&path)
        .unwrap();
    assert_eq!(format(&store), sessdb::FORMAT_VERSION);
    assert_eq!(sessdb::FORMAT_VERSION, 3);
    assert!(path.join(JOURNAL_FILE).exists());
    drop(store);
    // A periodic open replays and removes the journal; the mark stays.
    let store = Store::open(&path).unwrap();
    assert!(!path.join(JOURNAL_FILE).exists());
    assert_eq!(format(&store), 3);
    drop(store);
    let store = Store::builder().read_only(true).open(&path).unwrap();
    assert_eq!(format(&store), 3);
}

/// A compaction of a store in immediate durability: the copy holds every commit, the old
/// journal goes with the old folder, and the compacted store commits and replays as before.
#[test]
fn a_compacted_immediate_store_keeps_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_ms(T0);
    let path = dir.path().join("db");
    let store = immediate(&clock).open(&path).unwrap();
    let ids = saved_then_ten_ended(&store, 40, |i| format!("user{}", i % 3));
    let committed = export(&store);
    let report = store.compact(&sessdb::CompactOptions::default()).unwrap();
    assert_eq!(report.sessions, 30);
    let store = immediate(&clock).open(&path).unwrap();
    assert_eq!(export(&store), committed);
    assert!(store.check().unwrap().is_clean());
    assert_eq!(
        store.stats().unwrap().format_version,
        sessdb::FORMAT_VERSION
    );
    let mut s = store.load(&ids[20]).unwrap().unwrap();
    s.insert("after", &true).unwrap();
    s.save().unwrap();
    drop(s);
    let committed = export(&store);
    drop(store);
    let store = immediate(&clock).open(&path).unwrap();
    assert_eq!(export(&store), committed);
}
