//! Arbitrary bytes as a stored record, written with sled as corruption would, then read
//! through the store's readers and repaired. Slow (a database per input) but thorough.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessdb::{Admin, SessionId, Store, Target};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let id = SessionId::named("fuzzed record");
    {
        let db = sled::open(&path).expect("sled");
        let sessions = db.open_tree("sessions").expect("tree");
        sessions
            .insert(id.handle().as_bytes(), data)
            .expect("insert");
        db.flush().expect("flush");
    }
    let store = Store::open(&path).expect("open");
    let _ = store.load(&id).expect("load");
    let _ = store.show(&Target::Id(id));
    store.stats().expect("stats");
    store.check().expect("check");
    store.export(&mut std::io::sink(), true).expect("export");
    store.repair().expect("repair");
    assert!(store.check().expect("check").is_clean());
});
