//! The files an open reads before sled: arbitrary bytes as sled's `conf` of a real store
//! with sessions (sessdb reads its `segment_size` to choose sled's), then the store opened,
//! read and checked. A damaged `conf` must be an error or be recovered from, never a panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessdb::{Admin, Store};

#[path = "common/store_dir.rs"]
mod store_dir;
use store_dir::copy_dir;

fn template() -> &'static (tempfile::TempDir, PathBuf) {
    static T: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        {
            let store = Store::open(&db).expect("open");
            // PROBE_SESSIONS: a larger store, whose log spans several segments.
            let n: usize = std::env::var("PROBE_SESSIONS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(20);
            for i in 0..n {
                let mut s = store.create();
                s.set_principal(Some(&format!("u{}", i % 3))).unwrap();
                s.insert("n", &i).unwrap();
                if n > 20 {
                    s.insert("pad", &"x".repeat(2000)).unwrap();
                }
                if i % 4 == 1 {
                    s.set_label(Some("phone")).unwrap();
                    s.set_remote_addr(Some("10.0.0.1")).unwrap();
                    s.set_user_agent(Some("curl/8")).unwrap();
                    s.insert("f", &1.5f64).unwrap();
                    s.insert("l", &vec![vec![1u8, 2], vec![3]]).unwrap();
                    s.insert_value("b", sessdb::Value::Bytes(vec![0, 255]))
                        .unwrap();
                    s.insert_value(
                        "m",
                        sessdb::Value::Map(
                            [("k".to_string(), sessdb::Value::Float(f64::NAN))].into(),
                        ),
                    )
                    .unwrap();
                    s.set_idle_timeout(std::time::Duration::MAX);
                }
                s.save().unwrap();
            }
            store.flush().unwrap();
        }
        // DUMP_RECORDS=DIR: the stored records, as seeds for the `record` target.
        if let Some(out) = std::env::var_os("DUMP_RECORDS") {
            let raw = (0..50)
                .find_map(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    sled::Config::new()
                        .path(&db)
                        .segment_size(2 << 20)
                        .open()
                        .map_err(|e| eprintln!("{e}"))
                        .ok()
                })
                .expect("sled");
            let sessions = raw.open_tree("sessions").expect("tree");
            for (i, item) in sessions.iter().enumerate() {
                let (_, v) = item.expect("record");
                std::fs::write(Path::new(&out).join(format!("rec{i}")), &v).unwrap();
            }
        }
        if std::env::var_os("PROBE").is_some() {
            let conf = std::fs::read(db.join("conf")).unwrap();
            let log = std::fs::metadata(db.join("db")).unwrap().len();
            eprintln!(
                "PROBE template conf {:?}, log {log} bytes",
                String::from_utf8_lossy(&conf[..conf.len() - 4])
            );
        }
        (dir, db)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, template) = template();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    copy_dir(template, &db);
    // First byte odd: the rest with sled's CRC appended (as sled writes it), so that the
    // fuzzer explores what a well-formed `conf` says, not only its checksum failing.
    let conf = match data.split_first() {
        Some((&m, rest)) if m & 1 == 1 => {
            let mut c = rest.to_vec();
            c.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
            c
        }
        _ => data.to_vec(),
    };
    std::fs::write(db.join("conf"), conf).unwrap();
    let opened = Store::open(&db);
    if std::env::var_os("PROBE").is_some() {
        match &opened {
            Ok(s) => eprintln!("PROBE open ok: {:?}", s.stats().map(|s| s.live)),
            Err(e) => eprintln!("PROBE open failed: {e}"),
        }
    }
    if let Ok(store) = opened {
        let _ = store.stats();
        let _ = store.check();
        let _ = store.export(&mut std::io::sink(), true);
        if std::env::var_os("PROBE").is_some() {
            eprintln!(
                "PROBE check clean: {:?}",
                store.check().map(|r| r.is_clean())
            );
            drop(store);
            std::fs::copy(template.join("conf"), db.join("conf")).unwrap();
            let again = Store::open(&db).map(|s| s.stats().map(|s| s.live));
            eprintln!("PROBE reopened with the store's own conf: {again:?}");
        }
    }
});
