//! Shared helpers of the store's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use sessdb::{Builder, ManualClock, Store};
use tempfile::TempDir;

mod raw_sled;
#[allow(unused_imports)] // each test file uses its own subset
pub use raw_sled::{open_raw_sled, segment_size};

/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;

pub struct Fixture {
    pub dir: TempDir,
    pub clock: ManualClock,
    pub store: Store,
}

impl Fixture {
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("db")
    }

    /// Closes the store and opens it again from the same folder. Every session of the old
    /// store must have been dropped (they hold the store open).
    pub fn reopen(self, builder: Builder) -> Fixture {
        let Fixture { dir, clock, store } = self;
        drop(store);
        let store = builder
            .clock(clock.clone())
            .open(dir.path().join("db"))
            .expect("reopen");
        Fixture { dir, clock, store }
    }

    pub fn clock_ms(&self) -> i64 {
        sessdb::Clock::now_ms(&self.clock)
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

/// A store with the default settings and a manual clock at [`T0`].
pub fn fixture() -> Fixture {
    fixture_with(Store::builder())
}

pub fn fixture_with(builder: Builder) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::at_ms(T0);
    let store = builder
        .clock(clock.clone())
        .open(dir.path().join("db"))
        .expect("open");
    Fixture { dir, clock, store }
}

/// The session lines of an export: without its header, and without its end line, which must
/// count them.
pub fn body(export: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = export.lines().skip(1).collect();
    let end = lines.pop().expect("an end line");
    assert_eq!(end, end_line(lines.len()));
    lines
}

/// The end line of an export of `sessions` sessions.
pub fn end_line(sessions: usize) -> String {
    format!("{{\"end\":\"sessdb-export\",\"sessions\":{sessions}}}")
}
