//! Raw sled access for tests that damage a database behind the store's back (used by the
//! store's tests and, by path, by sessctl's).

use std::path::Path;
use std::time::Duration;

/// Opens the database with sled directly, as a bug or a disk would reach it. sled releases its
/// file lock from background threads a moment after the last handle is dropped (the reason
/// `Store::open` waits up to 500 ms for a lock, `store.rs` `LOCK_WAIT`), so right after the
/// store closes the lock may still be held in this process: retry until it is free,
/// for at most 5 s, yielding (no sleep). The segment size is the one the store was created
/// with, from sled's `conf`: sled refuses any other.
pub fn open_raw_sled(db: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut config = sled::Config::new().path(db);
        if let Some(size) = segment_size(db) {
            config = config.segment_size(size);
        }
        match config.open() {
            Ok(sled) => return sled,
            Err(sled::Error::Io(e)) if std::time::Instant::now() < deadline => {
                assert!(
                    e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock"),
                    "sled cannot open {}: {e}",
                    db.display()
                );
                std::thread::yield_now();
            }
            Err(e) => panic!("sled cannot open {}: {e}", db.display()),
        }
    }
}

/// The segment size in sled's `conf` (a line `segment_size: N`), if the folder has one. Read
/// here on its own, not through the store's reader, so that tests can check what sled wrote.
pub fn segment_size(db: &Path) -> Option<usize> {
    // The text ends in a binary CRC.
    let conf = std::fs::read(db.join("conf")).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|line| line.strip_prefix("segment_size: ")?.parse().ok())
}
