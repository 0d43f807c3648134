//! `sessctl demo --live` the way an operator uses it: the simulated application serves its
//! admin socket, a second sessctl invalidates one of its sessions and the running store no
//! longer has it, and Ctrl-C ends the application cleanly (socket removed, database free).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use common::{at_t0, expect, json_lines, on, run, via_socket, Out};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sessdb::SessionId;

/// The rate the tests run the application at: busy, and light on a shared machine.
const RATE: &str = "200";

/// A running `demo --live`, killed if a test fails before it ends it.
struct App {
    child: Child,
    db: PathBuf,
    /// What it said up to "stop with Ctrl-C".
    startup: String,
    /// The rest of its stderr, read as it comes so that it can never block on a full pipe.
    rest: Option<JoinHandle<String>>,
}

impl App {
    /// Starts the live demo on `db` (creating it) and returns once the application says it
    /// serves its socket. `--duration` ends it by itself should this test process die.
    fn start(db: &Path) -> App {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sessctl"))
            .env_clear()
            .arg("--db")
            .arg(db)
            .args(["demo", "--live", "--sessions", "40", "--rate", RATE])
            .args(["--duration", "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut startup = String::new();
        // Its last startup line comes after the socket is bound: its own words are the signal.
        while !startup.ends_with("stop with Ctrl-C\n") {
            let read = stderr.read_line(&mut startup).expect("stderr is UTF-8");
            if read == 0 {
                let status = child.wait().expect("wait");
                panic!("the live demo ended ({status}) before serving:\n{startup}");
            }
        }
        let rest = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).expect("stderr is UTF-8");
            text
        });
        App {
            child,
            db: db.to_path_buf(),
            startup,
            rest: Some(rest),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `sessctl stats --json` once it answers through the socket. Bounded: the application
    /// serves before it says so, so the first try answers unless the machine is very slow.
    fn stats(&self) -> serde_json::Value {
        let mut last = None;
        for _ in 0..10 {
            let out = run(on(&self.db).args(["stats", "--json"]));
            if out.code == 0 && out.stderr == via_socket(&self.db, self.pid()) {
                return json_lines(&out.stdout)[0].clone();
            }
            last = Some(out);
        }
        panic!("stats never answered through the socket: {last:?}");
    }

    /// Whether the process is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `signal` (SIGINT is what Ctrl-C sends) and waits for the application to end.
    fn stop(mut self, signal: Signal) -> Out {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("a pid fits"));
        kill(pid, signal).expect("kill");
        let status = self.child.wait().expect("wait");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut stdout)
            .expect("stdout is UTF-8");
        let rest = self.rest.take().expect("once").join().expect("reader");
        Out {
            code: status.code().expect("exited, not killed by the signal"),
            stdout,
            stderr: rest,
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Only when a test failed before interrupting it: never leave it running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the application says first, on a database it creates. No sessctl is on its (empty)
/// PATH, so it names the binary by its path.
fn startup(db: &Path, pid: u32) -> String {
    let db = db.display();
    let bin = env!("CARGO_BIN_EXE_sessctl");
    format!(
        "created a demo database at {db} with 40 sessions\n\
         serving the demo database {db} on its admin socket {db}/admin.sock (pid {pid})\n\
         simulating {RATE} operations a second: logins, page views, id rotations, logouts, \
         sessions left to expire\n\
         in another terminal: {bin} --db {db} tui\n\
         stop with Ctrl-C\n"
    )
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[test]
fn an_operator_logs_out_a_session_of_the_running_application_and_ctrl_c_ends_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("live.sessdb");
    let socket = db.join("admin.sock");
    let mut app = App::start(&db);
    let note = via_socket(&db, app.pid());
    assert_eq!(app.startup, startup(&db, app.pid()));
    assert!(is_socket(&socket));
    assert!(app.stats()["live"].as_u64().expect("a count") > 0);

    // The operator picks a session: an API client's cached login, which the application does
    // not rotate or log out by itself meanwhile (its users' sessions it may).
    let out = run(on(&db).args([
        "list",
        "--limit",
        "1",
        "--json",
        "--principal",
        "svc:billing",
    ]));
    assert_eq!((out.code, out.stderr.as_str()), (0, note.as_str()));
    let listed = json_lines(&out.stdout);
    assert_eq!(listed.len(), 1);
    let handle = listed[0]["handle"].as_str().expect("a handle").to_string();
    assert_eq!(
        handle,
        SessionId::named("api-client:billing-sync")
            .handle()
            .to_string()
    );
    expect(
        on(&db).args(["invalidate", &handle]),
        0,
        "invalidated 1 session\n",
        &note,
    );
    // The running application's store no longer has it.
    expect(
        on(&db).args(["show", &handle]),
        1,
        "",
        &format!("{note}error: no session with handle {handle}\n"),
    );
    assert!(app.running());
    assert!(app.stats()["live"].as_u64().expect("a count") > 0);

    let out = app.stop(Signal::SIGINT);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert!(out.stderr.starts_with("stopped: "), "{}", out.stderr);
    assert!(
        out.stderr.contains("; of the sessions it served, "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .ends_with(" expired); the admin socket is closed\n"),
        "{}",
        out.stderr
    );
    assert!(!socket.exists(), "the socket file is removed");
    // The database is free again: opened directly (no note), and sound.
    let out = run(on(&db).arg("check"));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    assert!(
        out.stdout.starts_with("checked ") && out.stdout.ends_with(" records: no problems\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_second_application_cannot_serve_a_database_already_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("live.sessdb");
    let app = App::start(&db);
    let served = format!(
        "error: {db} is already served by a running application (pid {pid}) on its admin \
         socket {db}/admin.sock; watch it with `sessctl --db {db} tui`, or stop that \
         application first\n",
        db = db.display(),
        pid = app.pid()
    );
    expect(on(&db).args(["demo", "--live"]), 3, "", &served);
    // Not even to replace it.
    expect(on(&db).args(["demo", "--live", "--force"]), 3, "", &served);
    assert!(is_socket(&db.join("admin.sock")));
    // What a service manager sends ends it as cleanly as Ctrl-C.
    let out = app.stop(Signal::SIGTERM);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.starts_with("stopped: "), "{}", out.stderr);
    assert!(
        out.stderr.contains("; of the sessions it served, "),
        "{}",
        out.stderr
    );
    assert!(!db.join("admin.sock").exists());
}

#[test]
fn duration_ends_the_application_by_itself_and_an_existing_database_is_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("live.sessdb");
    let live = ["demo", "--live", "--sessions", "40", "--rate", "100"];
    let out = run(on(&db).args(live).args(["--duration", "0.3"]));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "created a demo database at {} with 40 sessions",
            db.display()
        )
    );
    assert!(
        lines
            .last()
            .expect("a summary")
            .starts_with("--duration is over: "),
        "{}",
        out.stderr
    );
    assert!(!db.join("admin.sock").exists());

    // A database that exists is used as it is, not replaced: a session invalidated while it
    // was free stays gone (a new demo would have it again).
    let billing = SessionId::named("api-client:billing-sync")
        .handle()
        .to_string();
    expect(
        on(&db).args(["invalidate", &billing]),
        0,
        "invalidated 1 session\n",
        "",
    );
    let out = run(on(&db).args(live).args(["--duration", "0.3"]));
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("serving the demo database "),
        "{}",
        out.stderr
    );
    let out = run(on(&db).args(["show", &billing]));
    assert_eq!(out.code, 1, "{}", out.stdout);
    // The other API client's login is still the demo's.
    let out = run(on(&db).args([
        "show",
        "--json",
        &SessionId::named("api-client:crm-export")
            .handle()
            .to_string(),
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn live_options_are_checked_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("live.sessdb");
    expect(
        on(&db).args(["demo", "--live", "--rate", "0"]),
        2,
        "",
        "error: --rate: \"0\" is not a whole number of operations per second between 1 and \
         100000\n",
    );
    expect(
        on(&db).args(["demo", "--live", "--duration", "soon"]),
        2,
        "",
        "error: --duration: \"soon\" is not a number of seconds between 0.1 and 31536000 (or a \
         duration such as 10s or 2m)\n",
    );
    expect(
        at_t0(&db).args(["demo", "--live"]),
        2,
        "",
        "error: --as-of cannot be used with demo --live: the simulated application runs on \
         the system clock\n",
    );
    // --rate and --duration mean nothing without --live.
    let out = run(on(&db).args(["demo", "--rate", "10"]));
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr
            .starts_with("error: the following required arguments were not provided:\n  --live"),
        "{}",
        out.stderr
    );
    assert!(!db.exists());
}
