//! A damaged log: bytes of the input written over a real store's `db` (sled's log) at an
//! offset the input picks, with or without its `conf` (without it, or to check it, sessdb
//! reads the segment size from the log's headers: `segment_size_from_log`,
//! `conf_contradicted`; those read only past 512 KiB, so run with `LOG_OPEN_SESSIONS=1500`,
//! a log of several segments, to reach them: the default template's log is 11 KB, which the
//! campaign of 2026-12-06 used). The open and the readers must
//! fail with an error or succeed; a panic that sessdb catches (it turns sled's into
//! `Error::Damaged`) is fine, so the panic hook here does not abort: only a panic that
//! escapes, a hang or a memory blow-up is a finding.
#![no_main]

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessdb::{Admin, Store};

#[path = "common/store_dir.rs"]
mod store_dir;
use store_dir::copy_dir;

fn template() -> &'static (tempfile::TempDir, PathBuf, u64) {
    static T: OnceLock<(tempfile::TempDir, PathBuf, u64)> = OnceLock::new();
    T.get_or_init(|| {
        // Caught panics are sessdb's business; an escaping one still aborts (libfuzzer-sys
        // aborts on a panic out of the target).
        std::panic::set_hook(Box::new(|_| {}));
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        {
            let store = Store::open(&db).expect("open");
            let n: usize = std::env::var("LOG_OPEN_SESSIONS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(40);
            for i in 0..n {
                let mut s = store.create();
                s.set_principal(Some(&format!("u{}", i % 3))).unwrap();
                s.insert("n", &i).unwrap();
                if n > 40 {
                    s.insert("pad", &"x".repeat(2000)).unwrap();
                }
                s.save().unwrap();
            }
            store.flush().unwrap();
        }
        let len = std::fs::metadata(db.join("db")).unwrap().len();
        (dir, db, len)
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (_, template, len) = template();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    copy_dir(template, &db);
    let mode = data[0];
    let at = u64::from(u32::from_le_bytes([data[1], data[2], data[3], 0])) % (*len).max(1);
    {
        let mut log = std::fs::OpenOptions::new()
            .write(true)
            .open(db.join("db"))
            .unwrap();
        log.seek(SeekFrom::Start(at)).unwrap();
        log.write_all(&data[4..]).unwrap();
        if mode & 2 != 0 {
            log.set_len(at + data.len() as u64 - 4).unwrap();
        }
    }
    if mode & 1 != 0 {
        std::fs::remove_file(db.join("conf")).unwrap();
    }
    if let Ok(store) = Store::open(&db) {
        let _ = store.stats();
        let _ = store.check();
        let _ = store.export(&mut std::io::sink(), true);
    }
});
