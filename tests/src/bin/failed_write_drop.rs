//! Makes sled fail the write of a blob, as a full disk would (a file-size limit, with
//! `SIGXFSZ` ignored so that the write fails with `EFBIG` instead of killing the process), then
//! saves a small session, flushes and drops the store, saying on stdout what happened: `save:
//! ...`, `then: ...`, `flush: ...` and `dropped` once the drop has returned. Run by
//! `tests/tests/failed_write.rs`; the arguments are the store's folder and `periodic` or
//! `immediate`.
//!
//! sled 0.34.7 never ends a flush after such a failure, so before the store guarded against it
//! the small save's commit (immediate durability), the flush and the drop never returned, and
//! with periodic durability the small save was taken and never written.

// The signal disposition and the resource limit are set through the C library.
#![allow(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use sessdb::Store;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: failed_write_drop DIR");
        return ExitCode::from(2);
    };
    let path = std::path::PathBuf::from(path);
    let durability = match std::env::args().nth(2).as_deref() {
        Some("immediate") => sessdb::Durability::Immediate,
        _ => sessdb::Durability::Periodic {
            flush_every: Duration::from_millis(500),
        },
    };
    let store = match Store::builder()
        .durability(durability)
        .max_session_bytes(16 << 20)
        .__drop_flush_wait_for_tests(Duration::from_millis(200))
        .open(&path)
    {
        Ok(store) => store,
        Err(e) => {
            eprintln!("open: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut small = store.create();
    let written = small
        .insert("cart", &[1, 2, 3])
        .and_then(|()| small.save())
        .and_then(|()| store.flush());
    if let Err(e) = written {
        eprintln!("first save: {e}");
        return ExitCode::FAILURE;
    }
    // Room for the log's small writes, not for a blob of a few MiB.
    let log = std::fs::metadata(path.join("db")).map_or(0, |m| m.len());
    let limit = log + (1 << 20);
    // SAFETY: setting a signal's disposition to "ignore" and a resource limit of this process,
    // before any write that could meet it; no memory is shared with the calls.
    let limited = unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let rlimit = libc::rlimit {
            rlim_cur: limit,
            rlim_max: libc::RLIM_INFINITY,
        };
        libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit)
    };
    if limited != 0 {
        eprintln!("setrlimit: {}", std::io::Error::last_os_error());
        return ExitCode::FAILURE;
    }
    let mut large = store.create();
    let saved = large
        .insert("upload", &"x".repeat(4 << 20))
        .and_then(|()| large.save());
    match saved {
        Ok(()) => println!("save: ok"),
        Err(e) => println!("save: {e}"),
    }
    drop(large);
    let mut then = store.create();
    let saved = then.insert("cart", &[4]).and_then(|()| then.save());
    let said = |r: sessdb::Result<()>| r.map_or_else(|e| e.to_string(), |()| "ok".into());
    println!("then: {}", said(saved));
    println!("flush: {}", said(store.flush()));
    drop(then);
    drop(small);
    drop(store);
    println!("dropped");
    ExitCode::SUCCESS
}
