//! What scans and imports hold in memory, counted by this binary's own allocator: `check`
//! and `repair` a fingerprint per index entry, not the entries' keys; an import the handles it
//! has seen, not its sessions. They run inside the application when they come through its
//! admin socket, where sets of keys took about 690 MB at a million sessions and an import's
//! sessions about 1.7 GB. The tests take turns, so nothing else allocates while one counts.

// A global allocator is an `unsafe impl`; this one only counts and hands on to `System`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sessdb::{Admin, ImportOptions, OnConflict};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test counts at a time.
static TURN: Mutex<()> = Mutex::new(());

/// How far the heap rose above where it was while `f` ran.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

const SESSIONS: usize = 20_000;

/// A store whose background flush waits an hour: the heap is the process's, and sled's flush
/// thread, allocating its write buffers while a measured call runs, counted in its growth
/// (a check measured 80+ bytes a session now and then, 26 otherwise). Tests flush by hand.
fn quiet_fixture() -> common::Fixture {
    common::fixture_with(
        sessdb::Store::builder().durability(sessdb::Durability::Periodic {
            flush_every: std::time::Duration::from_secs(3600),
        }),
    )
}

#[test]
fn check_and_repair_hold_a_fingerprint_per_entry_not_its_key() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let f = quiet_fixture();
    for i in 0..SESSIONS {
        let mut s = f.store.create();
        s.set_principal(Some(&format!("user{}@example.com", i / 4)))
            .expect("principal");
        s.insert("cart", &vec![i; 3]).expect("insert");
        s.save().expect("save");
    }
    f.store.flush().expect("flush");
    // Once first, so that sled's cache holds every page and the second run measures the
    // check's own memory.
    assert!(f.store.check().expect("check").is_clean());

    let (report, grew) = peak_growth(|| f.store.check().expect("check"));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records, SESSIONS as u64);
    // Two sets of 8-byte fingerprints: 26 bytes a session measured, with the sets' spare
    // room. The keys took 325 (a 24-byte and a 30-byte key, each held twice, in their own
    // allocations).
    let per_session = grew / SESSIONS;
    assert!(
        per_session < 80,
        "check's heap grew by {grew} bytes, {per_session} a session"
    );

    let (report, grew) = peak_growth(|| f.store.repair().expect("repair"));
    assert_eq!(report.added_entries, 0, "{report:?}");
    assert_eq!(report.removed_entries, 0, "{report:?}");
    let per_session = grew / SESSIONS;
    assert!(
        per_session < 80,
        "repair's heap grew by {grew} bytes, {per_session} a session"
    );
}

#[test]
fn an_import_keeps_its_sessions_in_a_temporary_file_not_in_memory() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let from = quiet_fixture();
    for i in 0..SESSIONS {
        let mut s = from.store.create();
        s.set_principal(Some(&format!("user{}@example.com", i / 4)))
            .expect("principal");
        s.set_user_agent(Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0",
        ))
        .expect("user agent");
        s.insert("csrf", &format!("{i:064x}")).expect("insert");
        s.insert("cart", &vec![i; 20]).expect("insert");
        s.save().expect("save");
    }
    let mut export = Vec::new();
    from.store.export(&mut export, true).expect("export");
    drop(from);

    // A dry run into an empty store reads, checks and keeps every session, and writes none:
    // nothing of sled's grows meanwhile.
    let to = quiet_fixture();
    let folder = || {
        let mut names: Vec<_> = std::fs::read_dir(to.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        names
    };
    let before = folder();
    let dry = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    let (report, grew) = peak_growth(|| to.store.import(&mut export.as_slice(), &dry));
    let report = report.expect("dry run");
    assert_eq!(report.imported, SESSIONS as u64, "{report:?}");
    // The handles seen (for duplicates) and a line's buffers: 56 bytes a session measured.
    // The sessions took 877 (their head and encoded data, and those allocations).
    let per_session = grew / SESSIONS;
    assert!(
        per_session < 150,
        "a dry run's heap grew by {grew} bytes, {per_session} a session"
    );

    let report = to
        .store
        .import(&mut export.as_slice(), &ImportOptions::default())
        .expect("import");
    assert_eq!(report.imported, SESSIONS as u64, "{report:?}");
    // Read back from the file whole: a second import finds every session as it is.
    let again = ImportOptions {
        on_conflict: OnConflict::Replace,
        ..ImportOptions::default()
    };
    let report = to
        .store
        .import(&mut export.as_slice(), &again)
        .expect("import again");
    assert_eq!(report.unchanged, SESSIONS as u64, "{report:?}");
    assert!(to.store.check().expect("check").is_clean());
    // The temporary file is gone, and was never a name in the folder to leave behind.
    assert_eq!(folder(), before);
}
