//! A process that opens a database's log without sessdb's gate and keeps trying for sled's lock
//! of it, as sled itself or a sessdb older than the gate would: `lock_intruder DIR`.
//!
//! It opens `DIR/db` once, prints `ready` after its first attempt, and tries again and again
//! until its stdin ends. A lock it gets while `DIR/db` still names the file it opened (the
//! database a compaction is working on, not the copy the compaction put in its place) is an
//! intrusion: the compaction's swap would put away what it wrote. At the end it prints
//! `intrusions N of M attempts`.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};

fn main() -> io::Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: lock_intruder DIR"),
    );
    let path = dir.join("db");
    let mut log = File::open(&path)?;
    let original = log.metadata()?.ino();
    let done = Arc::new(AtomicBool::new(false));
    std::thread::spawn({
        let done = done.clone();
        move || {
            let _ = io::stdin().lock().read_to_end(&mut Vec::new());
            done.store(true, Ordering::SeqCst);
        }
    });
    let (mut attempts, mut intrusions) = (0u64, 0u64);
    loop {
        log = match Flock::lock(log, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                // A compaction swaps only once it holds the lock, so while this does, the path
                // names the file it opened unless the swap came first.
                if std::fs::metadata(&path)?.ino() == original {
                    intrusions += 1;
                }
                lock.unlock().map_err(|(_, e)| io::Error::from(e))?
            }
            Err((log, _)) => log,
        };
        attempts += 1;
        if attempts == 1 {
            println!("ready");
        }
        if done.load(Ordering::SeqCst) {
            break;
        }
    }
    println!("intrusions {intrusions} of {attempts} attempts");
    Ok(())
}
