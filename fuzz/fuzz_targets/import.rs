//! Import lines: arbitrary bytes, alone and after a valid export header, through a dry-run
//! import. Bad input must be reported, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessdb::{Admin, ImportOptions, Store};

fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path().join("db")).expect("open");
            (dir, store)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let options = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    let store = store();
    let _ = store.import(&mut &data[..], &options);
    let mut input =
        br#"{"format":"sessdb-export","version":1,"exported_at":"2026-01-01T00:00:00Z"}"#.to_vec();
    input.push(b'\n');
    input.extend_from_slice(data);
    let report = store
        .import(&mut input.as_slice(), &options)
        .expect("import from memory");
    assert!(!report.written);
});
