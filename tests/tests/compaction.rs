//! A compaction beside a process that opens the database without sessdb's gate (sled itself,
//! or a sessdb older than the gate): it must never get into the original between the
//! compaction's close of it and the swap, where what it wrote would be put away with the old
//! folder. An outside trial ran an older `sessctl import` and `invalidate` beside compactions:
//! 2 to 4 acknowledged writes in a thousand were lost that way.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use sessdb::{CompactOptions, Store};

const INTRUDER: &str = env!("CARGO_BIN_EXE_lock_intruder");

#[test]
fn a_process_that_skips_the_gate_never_gets_the_lock_of_a_database_being_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.sessdb");
    let store = Store::open(&path).expect("open");
    let mut ids = Vec::new();
    for i in 0..50 {
        let mut s = store.create();
        s.insert("n", &i).expect("insert");
        s.save().expect("save");
        ids.push(*s.id());
    }
    drop(store);
    for round in 0..20 {
        let store = Store::open(&path).expect("open");
        // Started on the original while the store holds it: its attempts fail until then.
        let mut intruder = Command::new(INTRUDER)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the intruder");
        let mut out = BufReader::new(intruder.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read");
        assert_eq!(line, "ready\n");
        let report = store.compact(&CompactOptions::default()).expect("compact");
        assert_eq!(report.sessions, 50, "round {round}");
        drop(intruder.stdin.take());
        line.clear();
        out.read_line(&mut line).expect("read");
        assert!(intruder.wait().expect("wait").success());
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["intrusions", intrusions, "of", _, "attempts"] = words[..] else {
            panic!("{line:?}");
        };
        assert_eq!(intrusions, "0", "round {round}: {line}");
    }
    let store = Store::open(&path).expect("open");
    for id in &ids {
        assert!(store.load(id).expect("load").is_some());
    }
}
