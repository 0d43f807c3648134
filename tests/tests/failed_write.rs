//! A store whose write failed (a full disk) refuses the writes after it, and still lets its
//! application exit: the last handle's drop returns. sled 0.34.7 never ends a flush after a failed write of a blob, and the drop
//! waited for one for ever, so an application told to restart after freeing space could not
//! stop (found by a second reviewer, on a full tmpfs with sessions of 100 KB).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITER: &str = env!("CARGO_BIN_EXE_failed_write_drop");

/// After the failed write, a save and a flush are refused with its error (sled would take the
/// save and never write it, or wait for ever in immediate mode), and the last handle's drop
/// returns.
#[test]
fn writes_are_refused_and_the_last_drop_returns_after_sled_failed_a_write() {
    for durability in ["periodic", "immediate"] {
        after_a_failed_write(durability);
    }
}

fn after_a_failed_write(durability: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(WRITER)
        .arg(dir.path().join("db"))
        .arg(durability)
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
    let lines: Vec<&str> = stdout.lines().collect();
    let failed = "storage engine I/O error: File too large (os error 27) (after a failed write";
    assert!(
        exited && out.status.success(),
        "{durability}: the process ended (exited: {exited}, {}): {stdout}{stderr}",
        out.status
    );
    assert_eq!(lines.len(), 4, "{durability}: {stdout}{stderr}");
    assert!(lines[0].starts_with(&format!("save: {failed}")), "{stdout}");
    assert!(lines[1].starts_with(&format!("then: {failed}")), "{stdout}");
    assert!(
        lines[2].starts_with(&format!("flush: {failed}")),
        "{stdout}"
    );
    assert_eq!(lines[3], "dropped");
}
