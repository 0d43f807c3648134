//! Raw sled access for tests that damage a database behind the store's back (used by the
//! store's tests and, by path, by sessctl's).

use std::path::Path;
use std::time::Duration;

/// Opens the database with sled directly, as a bug or a disk would reach it. sled releases its
/// file lock from background threads a moment after the last handle is dropped (the reason
/// `Store::open` waits up to 500 ms for a lock, `store.rs` `LOCK_WAIT`), so right after the
/// store closes the lock may still be held in this process: retry until it is free,
/// for at most 5 s, yielding (no sleep).
pub fn open_raw_sled(db: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(db) {
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
