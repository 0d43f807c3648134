//! What `check` and `repair` hold while they compare the records with the indexes: a
//! fingerprint per index entry, not the entries' keys. They run inside the application when
//! they come through its admin socket, where sets of keys took about 690 MB at a million
//! sessions. The heap is counted by this binary's own allocator (one test, so nothing else
//! allocates meanwhile).

// A global allocator is an `unsafe impl`; this one only counts and hands on to `System`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use sessdb::Admin;

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

/// How far the heap rose above where it was while `f` ran.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

const SESSIONS: usize = 20_000;

#[test]
fn check_and_repair_hold_a_fingerprint_per_entry_not_its_key() {
    let f = common::fixture();
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
