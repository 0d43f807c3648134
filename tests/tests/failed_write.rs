//! A store whose write failed (a full disk) still lets its application exit: the last handle's
//! drop returns. sled 0.34.7 never ends a flush after a failed write of a blob, and the drop
//! waited for one for ever, so an application told to restart after freeing space could not
//! stop (found by a second reviewer, on a full tmpfs with sessions of 100 KB).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITER: &str = env!("CARGO_BIN_EXE_failed_write_drop");

#[test]
fn the_last_drop_returns_after_sled_failed_a_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(WRITER)
        .arg(dir.path().join("db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the writer");
    // The drop waits 200 ms for the flush; a drop that hangs is killed well after that. Polled
    // (no sleep): the time bounds a hang, it measures nothing.
    let start = Instant::now();
    let exited = loop {
        if child.try_wait().expect("try_wait").is_some() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().expect("SIGKILL");
            break false;
        }
        std::hint::spin_loop();
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.starts_with("save: storage engine I/O error: File too large (os error 27)"),
        "the blob's write failed: {stdout}{stderr}"
    );
    assert!(
        exited && out.status.success() && stdout.ends_with("dropped\n"),
        "the drop of the last handle returned (exited: {exited}, {}): {stdout}{stderr}",
        out.status
    );
}
