//! Shared by the CLI tests: the binary with a clean environment, a fixture database with
//! known sessions at known times, and small output helpers.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use sessdb::{ManualClock, SessionId, Store, Value};
use time::macros::datetime;
use time::OffsetDateTime;

// Shared with the store's tests.
#[path = "../../../store/tests/common/raw_sled.rs"]
mod raw_sled;
#[allow(unused_imports)] // each test file uses its own subset
pub use raw_sled::open_raw_sled;

/// The moment the fixture's "now" is; pass it as `--as-of` for deterministic output.
pub const T0: &str = "2025-01-31T12:00:00Z";

pub fn t0() -> OffsetDateTime {
    datetime!(2025-01-31 12:00 UTC)
}

/// The binary, with none of the caller's environment (no SESSCTL_DB, no NO_COLOR).
pub fn sessctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessctl"));
    cmd.env_clear();
    cmd
}

/// The binary on the database `db`.
pub fn on(db: &Path) -> Command {
    let mut cmd = sessctl();
    cmd.arg("--db").arg(db);
    cmd
}

/// The binary on `db`, as of [`T0`].
pub fn at_t0(db: &Path) -> Command {
    let mut cmd = on(db);
    cmd.args(["--as-of", T0]);
    cmd
}

/// What sessctl says on stderr when it reaches `db` through the admin socket of the running
/// application `pid`.
pub fn via_socket(db: &Path, pid: u32) -> String {
    format!(
        "note: a running application (pid {pid}) holds the database {}; going through its \
         admin socket {}\n",
        db.display(),
        db.join("admin.sock").display()
    )
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Out {
    let out = cmd.output().expect("the binary runs");
    Out {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs and checks exit code, stdout and stderr exactly.
pub fn expect(cmd: &mut Command, code: i32, stdout: &str, stderr: &str) {
    let out = run(cmd);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (code, stdout, stderr),
        "{cmd:?}"
    );
}

/// The fixture's sessions, in the order they were made.
pub fn id(n: u8) -> SessionId {
    SessionId::from_bytes([n; 16])
}

pub fn handle(n: u8) -> String {
    id(n).handle().to_string()
}

pub const API_CLIENT: &str = "api-client:billing";

pub fn api_handle() -> String {
    SessionId::named(API_CLIENT).handle().to_string()
}

/// A database with five sessions, as of [`T0`]:
///
/// | session | principal | label | expires |
/// |---|---|---|---|
/// | 1 | alice | web | T0 + 20m |
/// | 2 | alice | ios-app | T0 + 5m |
/// | 3 | bob | - | T0 - 30m (expired) |
/// | 4 | - | a label with an escape sequence | T0 - 10m (expired) |
/// | api | svc:billing | api-client:billing | T0 + 6h |
pub fn fixture(dir: &Path) -> PathBuf {
    let db = dir.join("fixture.sessdb");
    let clock = ManualClock::at(t0());
    let store = Store::builder()
        .clock(clock.clone())
        .open(&db)
        .expect("open fixture");
    let t0_ms = i64::try_from(t0().unix_timestamp_nanos() / 1_000_000).expect("fits");
    let at = |minutes_ago: i64| clock.set_ms(t0_ms - minutes_ago * 60_000);

    at(10);
    let mut s = store.create_with_id(id(1));
    s.set_principal(Some("alice")).expect("principal");
    s.set_label(Some("web")).expect("label");
    s.set_remote_addr(Some("203.0.113.7")).expect("addr");
    s.set_user_agent(Some("Mozilla/5.0 (X11; Linux x86_64)"))
        .expect("agent");
    s.insert("cart", &vec![1, 2, 3]).expect("insert");
    s.insert(
        "prefs",
        &serde_json::json!({"theme": "dark", "lang": "en-GB"}),
    )
    .expect("insert");
    s.save().expect("save");

    at(120);
    let mut s = store.create_with_id(id(2));
    // Alive through its history (a save never revives an expired session); 30 minutes from
    // its last save on.
    s.set_idle_timeout(Duration::from_secs(24 * 3600));
    s.set_principal(Some("alice")).expect("principal");
    s.set_label(Some("ios-app")).expect("label");
    s.set_remote_addr(Some("198.51.100.20")).expect("addr");
    s.save().expect("save");
    at(25);
    s.set_idle_timeout(Duration::from_secs(30 * 60));
    s.insert("page_views", &7).expect("insert");
    s.save().expect("save");

    at(180);
    let mut s = store.create_with_id(id(3));
    s.set_idle_timeout(Duration::from_secs(24 * 3600));
    s.set_principal(Some("bob")).expect("principal");
    s.set_remote_addr(Some("2001:db8::1")).expect("addr");
    s.save().expect("save");
    at(60);
    s.set_idle_timeout(Duration::from_secs(30 * 60));
    s.insert("flash", &serde_json::Value::Null).expect("insert");
    s.save().expect("save");

    at(40);
    let mut s = store.create_with_id(id(4));
    s.set_label(Some("guest\u{1b}[2J")).expect("label");
    s.insert_value("seed", Value::Bytes(vec![0, 1, 2, 255]))
        .expect("insert");
    s.save().expect("save");

    at(60);
    let mut s = store
        .get_or_create(API_CLIENT, |s| {
            s.set_principal(Some("svc:billing"))?;
            s.insert(
                "token",
                &serde_json::json!({"scope": ["invoices:read"], "expires_in": 3600}),
            )?;
            Ok::<_, sessdb::Error>(())
        })
        .expect("named session");
    s.set_idle_timeout(Duration::from_secs(12 * 3600));
    s.set_absolute_deadline(t0() + Duration::from_secs(6 * 3600));
    s.save().expect("save");

    drop(s);
    store.flush().expect("flush");
    db
}

/// The JSON lines of an export or a `--json` listing, parsed.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The session lines of the export of `db` (expired sessions included) as of T0: without its
/// header line and its end line, which must count them.
pub fn export_body(db: &Path) -> String {
    let out = run(at_t0(db).args(["export", "--include-expired"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, body) = out.stdout.split_once('\n').expect("a header line");
    let body = body
        .strip_suffix('\n')
        .expect("a newline after the end line");
    let (sessions, end) = body.rsplit_once('\n').unwrap_or(("", body));
    let end: serde_json::Value = serde_json::from_str(end).expect("an end line");
    let count = sessions.lines().count();
    assert_eq!(
        end,
        serde_json::json!({"end": "sessdb-export", "sessions": count}),
        "{body}"
    );
    if sessions.is_empty() {
        String::new()
    } else {
        format!("{sessions}\n")
    }
}

/// What a spawned sessctl said on stderr, and its exit code, once it ended.
pub fn stderr_and_exit(child: &mut std::process::Child) -> (String, Option<i32>) {
    use std::io::Read as _;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    (stderr, child.wait().expect("wait").code())
}

/// The count in an export's warning that its reader went away ("at most its first N
/// sessions"), checked to be at least the ten the tests read and fewer than the thousand
/// they export: how many went into the pipe before it closed depends on the pipe's size.
pub fn sessions_in_cut_warning(stderr: &str) -> u64 {
    let sessions = stderr
        .split_once("at most its first ")
        .and_then(|(_, rest)| rest.split_once(" sessions"))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count in {stderr:?}"));
    assert!((10..1000).contains(&sessions), "{stderr}");
    sessions
}

/// Returns once `child` sleeps in the kernel where `waits_in` says (by the kernel function
/// /proc's `wchan` names), or, on a kernel that hides it ("0"), in a system call whose line in
/// /proc's `syscall` starts with one of `syscalls` (its number and first argument). Fails
/// after a minute.
pub fn wait_until_blocked(
    child: &std::process::Child,
    waits_in: impl Fn(&str) -> bool,
    syscalls: &[&str],
) {
    let wchan = format!("/proc/{}/wchan", child.id());
    let syscall = format!("/proc/{}/syscall", child.id());
    let waiting = || match std::fs::read_to_string(&wchan).as_deref() {
        Ok("0") | Err(_) => std::fs::read_to_string(&syscall)
            .is_ok_and(|t| syscalls.iter().any(|s| t.starts_with(s))),
        Ok(function) => waits_in(function),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !waiting() {
        assert!(std::time::Instant::now() < deadline, "sessctl never waited");
        std::thread::yield_now();
    }
}
