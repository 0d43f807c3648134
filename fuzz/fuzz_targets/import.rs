//! Import lines: arbitrary bytes, alone and after a valid export header of each version,
//! through a dry-run import. Bad input must be reported, never panic.
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
    // After a header of each version: version 2's end line, missing, miscounted or followed
    // by more, is checked; version 1 has none.
    for version in [1, 2] {
        let mut input = format!(
            r#"{{"format":"sessdb-export","version":{version},"exported_at":"2026-01-01T00:00:00Z"}}"#
        )
        .into_bytes();
        input.push(b'\n');
        input.extend_from_slice(data);
        let report = store
            .import(&mut input.as_slice(), &options)
            .expect("import from memory");
        assert!(!report.written);
    }
});
