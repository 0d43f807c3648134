//! A database held by a running application that serves its admin socket: sessctl reaches
//! it through the socket by itself, with the same output as on the database opened directly.

mod common;

use common::{
    at_t0, expect, export_body, fixture, handle, json_lines, on, run, sessctl, t0, via_socket,
};
use std::io::{self, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use sessdb::Admin as _;
use sessdb::{ManualClock, Store};

/// The "application": the fixture opened with its admin socket, its clock at T0.
fn application(db: &std::path::Path) -> Store {
    Store::builder()
        .clock(ManualClock::at(t0()))
        .admin_socket_default()
        .open(db)
        .expect("the application opens its database")
}

/// sessctl's warning when `--db` names `named` but the application behind the socket serves
/// `served`: a read goes on, to `served`.
fn wrong_db_warning(named: &std::path::Path, served: &std::path::Path) -> String {
    format!(
        "warning: --db {} is not the database that application serves; the command goes to {}\n",
        named.display(),
        served.display()
    )
}

#[test]
fn commands_go_through_the_admin_socket_of_a_running_application() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let direct_list = run(at_t0(&db).args(["list", "--limit", "0"]));
    let direct_show = run(at_t0(&db).args(["show", &handle(4)]));
    let direct_export = export_body(&db);
    assert_eq!(direct_list.code, 0);

    let app = application(&db);
    // The application is this test process; sessctl says it goes through its socket.
    let note = via_socket(&db, std::process::id());
    // No --as-of: through the socket, "now" is the application's clock (T0 here).
    expect(
        on(&db).args(["list", "--limit", "0"]),
        0,
        &direct_list.stdout,
        &note,
    );
    expect(
        on(&db).args(["show", &handle(4)]),
        0,
        &direct_show.stdout,
        &note,
    );
    let out = run(on(&db).args(["export", "--include-expired"]));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, format!("{note}exported 5 sessions to stdout\n").as_str())
    );
    assert_eq!(
        out.stdout.split_once('\n').expect("header").1,
        format!("{direct_export}{{\"end\":\"sessdb-export\",\"sessions\":5}}\n")
    );
    let out = run(on(&db).args(["stats", "--json"]));
    assert_eq!(out.stderr, note);
    assert_eq!(json_lines(&out.stdout)[0]["live"], 3);
    // For cron, --quiet says only warnings and errors on stderr: not the note, not the
    // export's summary nor a listing's hint; stdout is the same.
    let out = run(on(&db).args(["-q", "stats", "--json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(json_lines(&out.stdout)[0]["live"], 3);
    let out = run(on(&db).args(["--quiet", "export"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(out.stdout.lines().count(), 5);
    let out = run(on(&db).args(["-q", "list", "--json", "--limit", "1"]));
    assert_eq!(
        (out.code, out.stdout.lines().count(), out.stderr.as_str()),
        (0, 1, "")
    );
    let out = run(on(&db).args(["-q", "show", "00000000000000000000000000000000"]));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "error: no session with handle 00000000000000000000000000000000\n"
        )
    );
    expect(
        on(&db).arg("check"),
        0,
        "checked 5 records: no problems\n",
        &note,
    );

    // Writes reach the application's store.
    expect(
        on(&db).args(["invalidate", "--principal", "alice"]),
        0,
        "invalidated 2 sessions of principal \"alice\"\n",
        &note,
    );
    assert!(app.sessions_of("alice").expect("sessions_of").is_empty());
    expect(
        on(&db).args(["purge", "--expired"]),
        0,
        "removed 2 expired sessions\n",
        &note,
    );
    expect(
        on(&db).args(["show", &handle(3)]),
        1,
        "",
        &format!("{note}error: no session with handle {}\n", handle(3)),
    );

    // --as-of cannot move the application's clock.
    expect(
        at_t0(&db).arg("stats"),
        2,
        "",
        &format!(
            "error: --as-of cannot be used while a running application holds {}: through its \
             admin socket, expiry follows the application's clock\n",
            db.display()
        ),
    );
    // The demo never replaces a database in use, socket or not, and says who uses it (not
    // "have the application serve its admin socket", which it does).
    expect(
        on(&db).args(["demo", "--force"]),
        3,
        "",
        &format!(
            "error: the database at {} is in use by a running application (pid {}); demo \
             --force does not replace a database in use: stop that process first, or choose \
             another --db\n",
            db.display(),
            std::process::id()
        ),
    );
    drop(app);
    let out = run(at_t0(&db).args(["stats", "--json"]));
    assert_eq!(json_lines(&out.stdout)[0]["live"], 1);
}

#[test]
fn a_socket_that_does_not_answer_still_means_exit_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let held = Store::open(&db).expect("open");
    // Not a socket: what a crashed application's leftover could look like.
    std::fs::write(db.join("admin.sock"), "").expect("write");
    let out = run(on(&db).arg("stats"));
    assert_eq!((out.code, out.stdout.as_str()), (3, ""));
    let prefix = format!(
        "error: the database at {} is held by another process (sled allows one process at a \
         time){}, and its admin socket does not answer: ",
        db.display(),
        sessctl::held_by(&db)
    );
    assert!(out.stderr.starts_with(&prefix), "{}", out.stderr);
    assert!(out.stderr.contains("admin.sock"), "{}", out.stderr);
    drop(held);
}

#[test]
fn a_socket_left_by_a_crashed_application_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    std::fs::write(db.join("admin.sock"), "").expect("write");
    let out = run(at_t0(&db).args(["stats", "--json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(json_lines(&out.stdout)[0]["live"], 3);
    expect(
        at_t0(&db).args(["purge", "--expired"]),
        0,
        "removed 2 expired sessions\n",
        "",
    );
}

#[test]
fn socket_names_the_admin_socket_whatever_db_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let app = application(&db);
    let socket = db.join("admin.sock");
    let elsewhere = dir.path().join("not-the-database");
    let note = via_socket(&db, std::process::id());
    let out = run(on(&elsewhere)
        .args(["--socket", socket.to_str().expect("utf-8 path")])
        .args(["stats", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The figures are the application's: stats names its database, and --db, which names
    // another, gets a warning.
    assert_eq!(
        out.stderr,
        format!("{note}{}", wrong_db_warning(&elsewhere, &db))
    );
    let stats = &json_lines(&out.stdout)[0];
    assert_eq!(
        (&stats["live"], &stats["database"]),
        (&3.into(), &db.to_str().into())
    );
    assert!(!elsewhere.exists(), "--db is not opened or created");
    // Without --db (the default ./sessions.sessdb is not what it serves either): no warning,
    // and the table names the application's database.
    let out = run(sessctl().current_dir(dir.path()).args([
        "--socket",
        socket.to_str().expect("utf-8 path"),
        "stats",
    ]));
    assert_eq!((out.code, out.stderr.as_str()), (0, note.as_str()));
    assert!(
        out.stdout
            .starts_with(&format!("database             {}\n", db.display())),
        "{}",
        out.stdout
    );
    // --db naming the same folder another way: no warning either.
    let out = run(on(&dir.path().join(".").join("fixture.sessdb")).args([
        "--socket",
        socket.to_str().expect("utf-8 path"),
        "stats",
    ]));
    assert_eq!((out.code, out.stderr.as_str()), (0, note.as_str()));
    drop(app);

    let gone = dir.path().join("gone.sock");
    expect(
        on(&db).args(["--socket", gone.to_str().expect("utf-8 path"), "stats"]),
        5,
        "",
        &format!(
            "error: cannot connect to the admin socket {}: No such file or directory (os error 2)\n",
            gone.display()
        ),
    );
}

#[test]
fn a_socket_serving_another_database_than_db_names_is_refused_for_writes_and_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let app = application(&db);
    let socket = db.join("admin.sock");
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).expect("mkdir");
    let other = fixture(&other_dir);
    let file = dir.path().join("backup.jsonl");
    std::fs::write(&file, format!("{}\n", export_lines_header())).expect("write");
    let backup = dir.path().join("other-backup.jsonl");
    let refusal = |db_flag: &str, socket_flag: &str, keep_socket: &str, keep_db: &str| {
        format!(
            "error: {db_flag} names {other}, but the application behind the admin socket \
             {socket} ({socket_flag}) serves {db}; the command would act on {db}, not on \
             {other}: to act on {db}, {keep_socket}; to act on {other}, {keep_db}\n",
            other = other.display(),
            socket = socket.display(),
            db = db.display(),
        )
    };
    // As the review found it: the socket from the environment, --db typed.
    let from_env = refusal(
        "--db",
        "SESSCTL_SOCKET",
        "leave out --db",
        "unset SESSCTL_SOCKET",
    );
    let one = handle(1);
    let writes: [&[&std::ffi::OsStr]; 6] = [
        &[
            "invalidate".as_ref(),
            "--principal".as_ref(),
            "alice".as_ref(),
        ],
        &["invalidate".as_ref(), one.as_ref()],
        &["purge".as_ref(), "--expired".as_ref()],
        &["import".as_ref(), file.as_os_str()],
        &["check".as_ref(), "--repair".as_ref()],
        &["export".as_ref(), "--out".as_ref(), backup.as_os_str()],
    ];
    for args in writes {
        expect(
            on(&other).env("SESSCTL_SOCKET", &socket).args(args),
            2,
            "",
            &from_env,
        );
    }
    expect(
        on(&other).env("SESSCTL_SOCKET", &socket).arg("export"),
        2,
        "",
        &from_env,
    );
    // The other way round: the database from the environment, --socket typed.
    expect(
        sessctl()
            .env("SESSCTL_DB", &other)
            .arg("--socket")
            .arg(&socket)
            .args(["invalidate", "--principal", "alice"]),
        2,
        "",
        &refusal(
            "SESSCTL_DB",
            "--socket",
            "unset SESSCTL_DB",
            "leave out --socket",
        ),
    );
    assert!(!backup.exists());
    let stats = app.stats().expect("stats");
    assert_eq!((stats.live, stats.expired), (3, 2), "nothing changed");
    assert_eq!(app.sessions_of("alice").expect("sessions_of").len(), 2);

    // A read only warns: what it shows is named, and nothing is changed.
    let note = via_socket(&db, std::process::id());
    let out = run(on(&other)
        .env("SESSCTL_SOCKET", &socket)
        .args(["list", "--principal", "alice"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!("{note}{}", wrong_db_warning(&other, &db))
    );
    // Without --db, the socket alone says where to write.
    expect(
        sessctl()
            .current_dir(dir.path())
            .env("SESSCTL_SOCKET", &socket)
            .args(["invalidate", "--principal", "alice"]),
        0,
        "invalidated 2 sessions of principal \"alice\"\n",
        &note,
    );
    drop(app);
    // The database --db named was never touched.
    let out = run(at_t0(&other).args(["list", "--principal", "alice", "--json"]));
    assert_eq!(json_lines(&out.stdout).len(), 2, "{}", out.stderr);
}

/// An export header and no sessions: an import that would change nothing.
fn export_lines_header() -> &'static str {
    r#"{"format":"sessdb-export","version":1,"exported_at":"2025-01-31T12:00:00Z"}"#
}

#[test]
fn import_through_a_socket_reports_each_bad_line_and_removes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let app = application(&db);
    let socket = db.join("admin.sock");
    let file = dir.path().join("bad.jsonl");
    let header = r#"{"format":"sessdb-export","version":1,"exported_at":"2025-01-31T12:00:00Z"}"#;
    std::fs::write(&file, format!("{header}\nhello world\n")).expect("write");
    let note = via_socket(&db, std::process::id());
    let line = "line 2: expected value at column 1\n";
    // No --db, and nothing at the default ./sessions.sessdb where sessctl runs: the import
    // goes to the application's database, and no local folder is made or removed.
    let import = |dry_run: bool| {
        let mut cmd = sessctl();
        cmd.current_dir(dir.path())
            .arg("--socket")
            .arg(&socket)
            .arg("import")
            .arg(&file);
        if dry_run {
            cmd.arg("--dry-run");
        }
        cmd
    };
    expect(
        &mut import(false),
        4,
        "imported 0, replaced 0, unchanged 0, skipped 0, bad 1\n",
        &format!(
            "{note}{line}error: 1 bad line, so nothing was imported (fix them, or pass \
             --skip-bad to import the good lines)\n"
        ),
    );
    expect(
        &mut import(true),
        4,
        "dry run, nothing written; would have imported 0, replaced 0, unchanged 0, skipped 0, \
         bad 1\n",
        &format!("{note}{line}error: 1 bad line\n"),
    );
    assert!(!dir.path().join("sessions.sessdb").exists());
    assert_eq!(app.stats().expect("stats").live, 3);
}

/// An export of the fixture in `dir` (`export.jsonl`), and an application serving a new,
/// empty database (`app.sessdb`) to import it into.
fn export_and_application(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Store) {
    let file = dir.join("export.jsonl");
    let body = export_body(&fixture(dir));
    std::fs::write(&file, format!("{}\n{body}", export_lines_header())).expect("write");
    let db = dir.join("app.sessdb");
    let app = application(&db);
    (file, db, app)
}

/// Through an application's socket the import's report counts the sessions it wrote that had
/// already expired (protocol version 4), and sessctl says so as for a database it opens.
#[test]
fn an_import_through_a_socket_says_how_many_sessions_it_wrote_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, db, app) = export_and_application(dir.path());
    let out = run(sessctl()
        .current_dir(dir.path())
        .arg("--socket")
        .arg(db.join("admin.sock"))
        .arg("import")
        .arg(&file));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "imported 5, replaced 0, unchanged 0, skipped 0, bad 0\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(
            "note: 2 of the sessions written had already expired: `sessctl purge --expired` \
             removes them\n"
        ),
        "{}",
        out.stderr
    );
    let stats = app.stats().expect("stats");
    assert_eq!((stats.live, stats.expired), (3, 2));
}

/// One frame of the admin protocol, read whole: a `u32` big-endian length, then that many bytes.
fn read_frame(from: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut frame = vec![0; 4];
    from.read_exact(&mut frame)?;
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    frame.resize(4 + len as usize, 0);
    from.read_exact(&mut frame[4..])?;
    Ok(frame)
}

/// An application that dies as it answers: a proxy on `path` to the admin socket `to` that
/// passes each connection's hello and its answer on, and the client's frames after it, but
/// closes the connection when the answer to the request comes, in place of passing it on.
/// The request has run; the client cannot know.
fn dying_after_the_request(path: &Path, to: &Path) {
    dying_after_answers(path, to, 0);
}

/// [`dying_after_the_request`], after passing `answers` answers on whole (one frame each).
fn dying_after_answers(path: &Path, to: &Path, answers: usize) {
    let listener = UnixListener::bind(path).expect("bind the proxy");
    let to = to.to_path_buf();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let mut client = client.expect("accept");
            let mut server = UnixStream::connect(&to).expect("the application answers");
            let mut from_client = client.try_clone().expect("clone");
            let mut to_server = server.try_clone().expect("clone");
            std::thread::spawn(move || io::copy(&mut from_client, &mut to_server));
            std::thread::spawn(move || {
                for _ in 0..=answers {
                    if let Ok(frame) = read_frame(&mut server) {
                        let _ = client.write_all(&frame);
                    }
                }
                // The answer begins: the request is done.
                let _ = server.read(&mut [0; 1]);
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
}

/// A fake application's bytes: frames of the admin protocol written by hand, in postcard as
/// the store encodes them (a variant's index and an integer as a varint, a string or byte
/// string as its length and its bytes), so a test can send what no real application would.
mod wire {
    /// The protocol version the fake speaks.
    pub const VERSION: u32 = 4;
    /// `Response::Error`'s index among the responses.
    pub const RESPONSE_ERROR: u32 = 15;
    /// Indexes among the wire errors.
    pub const REFUSED: u32 = 15;
    pub const PROTOCOL: u32 = 16;
    pub const OTHER: u32 = 18;

    pub fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    pub fn bytes(b: &[u8], out: &mut Vec<u8>) {
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    /// The welcome that accepts a client: `Ok(ServerInfo { version, pid, database })`.
    pub fn welcome(pid: u32, database: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        varint(VERSION.into(), &mut out);
        varint(pid.into(), &mut out);
        bytes(database, &mut out);
        out
    }

    /// A wire error with one text field (`Refused`, `Protocol`, `Other`).
    pub fn error(variant: u32, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(variant.into(), &mut out);
        bytes(text, &mut out);
        out
    }

    /// The welcome that refuses a client with `error`: `Err(error)`.
    pub fn turned_away(error: Vec<u8>) -> Vec<u8> {
        [vec![1], error].concat()
    }

    /// The answer to a request that failed with `error`.
    pub fn failed(error: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        varint(RESPONSE_ERROR.into(), &mut out);
        out.extend(error);
        out
    }

    pub fn frame(payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("a small frame");
        [&len.to_be_bytes()[..], payload].concat()
    }
}

/// A fake application on `path`: it answers the hello of each of its first `welcomed`
/// connections with `welcome`, and then each request with `answer` (or with nothing, for
/// ever, when that is `None`); later connections it accepts and never answers, as a hung
/// application's queue would.
fn fake_application(path: &Path, welcome: Vec<u8>, answer: Option<Vec<u8>>, welcomed: usize) {
    let listener = UnixListener::bind(path).expect("bind the fake application");
    std::thread::spawn(move || {
        let mut unanswered = Vec::new();
        for (n, client) in listener.incoming().enumerate() {
            let mut client = client.expect("accept");
            if n >= welcomed {
                unanswered.push(client);
                continue;
            }
            let (welcome, answer) = (welcome.clone(), answer.clone());
            std::thread::spawn(move || {
                if read_frame(&mut client).is_err()
                    || client.write_all(&wire::frame(&welcome)).is_err()
                {
                    return;
                }
                while read_frame(&mut client).is_ok() {
                    if let Some(answer) = &answer {
                        let _ = client.write_all(&wire::frame(answer));
                    }
                }
            });
        }
    });
}

/// An application that falls silent during a command (it stops answering, and takes no new
/// connection either) ends it with exit 5, as `--timeout`'s help says: also when sessctl found
/// its socket in the --db folder, where one that does not answer at all is exit 3.
#[test]
fn an_application_that_falls_silent_during_a_command_is_exit_5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.sessdb");
    std::fs::create_dir(&db).expect("mkdir");
    let socket = db.join("admin.sock");
    let database = db.as_os_str().as_encoded_bytes();
    fake_application(&socket, wire::welcome(4242, database), None, 1);
    expect(
        on(&db).args(["--timeout", "0.05", "stats"]),
        5,
        "",
        &format!(
            "{}error: the application behind the admin socket {} did not answer within 100 ms \
             (is it stopped or hung?)\n",
            via_socket(&db, 4242),
            socket.display()
        ),
    );
}

/// The name of a database folder with terminal escapes in it: an OSC that sets the window's
/// title, a carriage return, a screen clear.
const HOSTILE: &str = "app\x1b]0;owned\x07\r\x1b[2J.sessdb";

/// [`HOSTILE`] as sessctl prints it.
const HOSTILE_SHOWN: &str = "app\\u{1b}]0;owned\\u{7}\\r\\u{1b}[2J.sessdb";

/// What a running application names (its database's path) is printed escaped, on stderr and
/// in stats, as session fields are: a hostile or broken one cannot drive the terminal.
#[test]
fn the_database_an_application_names_is_printed_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join(HOSTILE);
    let _app = application(&db);
    let shown = format!("{}/{HOSTILE_SHOWN}", dir.path().display());
    let note = format!(
        "note: a running application (pid {}) holds the database {shown}; going through its \
         admin socket {shown}/admin.sock\n",
        std::process::id()
    );
    let out = run(on(&db).arg("stats"));
    assert_eq!((out.code, out.stderr.as_str()), (0, note.as_str()));
    assert!(
        out.stdout
            .starts_with(&format!("database             {shown}\n")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
    // JSON carries it whole, in JSON's own escapes.
    let out = run(on(&db).args(["stats", "--json"]));
    assert_eq!(
        json_lines(&out.stdout)[0]["database"],
        db.to_str().expect("utf-8")
    );
    assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
}

/// The errors a running application sends (a failure of its own, a refusal, a protocol
/// complaint) are printed escaped, their line breaks kept.
#[test]
fn the_errors_an_application_sends_are_printed_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.sessdb");
    std::fs::create_dir(&db).expect("mkdir");
    let hostile_db = dir.path().join(HOSTILE);
    let welcome = wire::welcome(4242, hostile_db.as_os_str().as_encoded_bytes());
    let text = b"disk on fire\x1b]0;owned\x07\rall good\nsee the log\x1b[2J";
    let shown = "disk on fire\\u{1b}]0;owned\\u{7}\\rall good\nsee the log\\u{1b}[2J";

    let failing = dir.path().join("failing.sock");
    let answer = wire::failed(wire::error(wire::OTHER, text));
    fake_application(&failing, welcome, Some(answer), usize::MAX);
    expect(
        on(&db).arg("--socket").arg(&failing).arg("stats"),
        5,
        "",
        &format!(
            "note: a running application (pid 4242) holds the database {served}; going through \
             its admin socket {}\nwarning: --db {} is not the database that application serves; \
             the command goes to {served}\nerror: the application reported: {shown}\n",
            failing.display(),
            db.display(),
            served = format!("{}/{HOSTILE_SHOWN}", dir.path().display()),
        ),
    );

    let refusing = dir.path().join("refusing.sock");
    let refusal = wire::turned_away(wire::error(wire::REFUSED, text));
    fake_application(&refusing, refusal, None, usize::MAX);
    expect(
        on(&db).arg("--socket").arg(&refusing).arg("stats"),
        5,
        "",
        &format!(
            "error: the admin socket {} refused the connection: {shown}\n",
            refusing.display()
        ),
    );

    let complaining = dir.path().join("complaining.sock");
    let complaint = wire::turned_away(wire::error(wire::PROTOCOL, text));
    fake_application(&complaining, complaint, None, usize::MAX);
    expect(
        on(&db).arg("--socket").arg(&complaining).arg("stats"),
        5,
        "",
        &format!(
            "error: admin socket {}: the application says: {shown}\n",
            complaining.display()
        ),
    );
}

/// An export the application cuts off (it stopped, or dropped a reader that stalled 60 s) looks
/// whole on stdout: sessctl says it is not, as it does for a reader that goes away. (A stall
/// is named only when a write of the output waited 30 s or more, which this reader does not.)
#[test]
fn an_export_cut_off_by_the_application_says_it_is_not_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, db, _app) = export_and_application(dir.path());
    let socket = db.join("admin.sock");
    let imported = run(sessctl()
        .arg("--socket")
        .arg(&socket)
        .arg("import")
        .arg(&file));
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let dying = dir.path().join("dying.sock");
    // The welcome and the first chunk of the export go through; the rest does not.
    dying_after_answers(&dying, &socket, 1);
    let out = run(sessctl().arg("--socket").arg(&dying).arg("export"));
    assert_eq!(out.code, 5, "{}", out.stderr);
    let sessions = out.stdout.lines().count() - 1;
    assert!(sessions > 0, "{}", out.stdout);
    let plural = if sessions == 1 { "" } else { "s" };
    assert!(
        out.stderr.contains(&format!(
            "warning: the export to stdout stopped part way: what was written is not a whole \
             export but at most its first {sessions} session{plural}, without the end line: an \
             import refuses it as cut short (with --skip-bad, it restores only those)\n"
        )),
        "{}",
        out.stderr
    );
}

/// An import cut off by the application's end may have been written, whole or in part: sessctl
/// says what running it again does, and so it does, what the application ended since included.
#[test]
fn an_import_cut_off_by_the_application_says_what_a_rerun_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, db, app) = export_and_application(dir.path());
    let socket = db.join("admin.sock");
    let dying = dir.path().join("dying.sock");
    dying_after_the_request(&dying, &socket);
    let import = |socket: &Path, more: &[&str]| {
        let mut cmd = sessctl();
        cmd.current_dir(dir.path())
            .arg("--socket")
            .arg(socket)
            .arg("import")
            .arg(&file)
            .args(more);
        cmd
    };
    let note = |socket: &Path| {
        format!(
            "note: a running application (pid {}) holds the database {}; going through its \
             admin socket {}\n",
            std::process::id(),
            db.display(),
            socket.display()
        )
    };
    let cut = |more: &[&str], hint: &str| {
        expect(
            &mut import(&dying, more),
            5,
            "",
            &format!(
                "{}error: the application behind the admin socket {} closed the connection; \
                 {hint}\n",
                note(&dying),
                dying.display()
            ),
        )
    };
    let rerun = "the import may have been written, whole or in part; running the same command \
                 again with the same file finishes it, but also brings back any session the \
                 first run wrote that the application has ended since (a logout, sessctl \
                 invalidate); sessions the application changed since are";
    cut(&[], &format!("{rerun} kept (--on-conflict skip)"));
    assert_eq!(
        app.stats().expect("stats").live,
        3,
        "the import was written"
    );
    // The application changes a session the import wrote, and logs another out; the rerun
    // keeps the first and brings the other back.
    let mut changed = app.load(&common::id(1)).expect("load").expect("imported");
    changed.insert("cart", &[7]).expect("insert");
    changed.save().expect("save");
    assert!(app.invalidate(&common::id(2)).expect("log out"));
    expect(
        &mut import(&socket, &[]),
        0,
        "imported 1, replaced 0, unchanged 3, skipped 1, bad 0\n",
        &note(&socket),
    );
    let kept = app.load(&common::id(1)).expect("load").expect("kept");
    assert_eq!(kept.get::<Vec<u8>>("cart").expect("get"), Some(vec![7]));
    assert!(app.load(&common::id(2)).expect("load").is_some(), "back");
    // With --on-conflict replace, a rerun overwrites it again.
    cut(
        &["--on-conflict", "replace"],
        &format!("{rerun} overwritten with the file's (--on-conflict replace)"),
    );
    let replaced = app.load(&common::id(1)).expect("load").expect("replaced");
    assert_ne!(replaced.get::<Vec<u8>>("cart").expect("get"), Some(vec![7]));
    expect(
        &mut import(&socket, &["--on-conflict", "replace"]),
        0,
        "imported 0, replaced 0, unchanged 5, skipped 0, bad 0\n",
        &note(&socket),
    );
    cut(
        &["--dry-run"],
        "a dry run writes nothing, so running the same command again with the same file is \
         safe",
    );
}

/// An invalidate of several sessions cut off by the application partway says how many it
/// ended before the failure, and which one was in flight: a rerun would otherwise call the
/// ended ones unknown.
#[test]
fn an_invalidate_cut_off_partway_says_how_many_it_ended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let app = application(&db);
    let socket = db.join("admin.sock");
    let dying = dir.path().join("dying.sock");
    dying_after_answers(&dying, &socket, 1);
    let (h1, h2, api) = (handle(1), handle(2), common::api_handle());
    let out = run(sessctl()
        .arg("--socket")
        .arg(&dying)
        .args(["invalidate", &h1, &h2, &api]));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (5, "invalidated 1 session\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(&format!(
            "error: invalidating session {h2} (2 of 3) failed; the 1 session after it was not \
             tried: the application behind the admin socket {} closed the connection\n",
            dying.display()
        )),
        "{}",
        out.stderr
    );
    assert!(app.load(&common::id(1)).expect("load").is_none());
    // The one in flight ran; the application could not say so.
    assert!(app.load(&common::id(2)).expect("load").is_none());
    assert!(app.load_named(common::API_CLIENT).expect("load").is_some());
}

#[test]
fn socket_that_is_not_one_or_has_no_application_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "").expect("write");
    expect(
        on(&db).arg("--socket").arg(&file).arg("stats"),
        5,
        "",
        &format!(
            "error: {} is not a socket (--socket names the admin socket of a running \
             application)\n",
            file.display()
        ),
    );
    // A socket file whose process has gone: binding leaves the file, dropping stops listening.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    expect(
        on(&db).arg("--socket").arg(&stale).arg("stats"),
        5,
        "",
        &format!(
            "error: no application is listening on {} (left behind by a process that \
             exited?); without --socket sessctl opens the database directly\n",
            stale.display()
        ),
    );
}

/// An application whose admin socket has all its 64 connections taken refuses one more: sessctl
/// says the application holds the database and why it refused, not that the socket "does not
/// answer" (it did).
#[test]
fn a_full_admin_socket_is_reported_as_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let _app = application(&db);
    let socket = sessdb::RemoteAdmin::default_socket(&db);
    let clients: Vec<_> = (0..64)
        .map(|_| sessdb::RemoteAdmin::connect(&socket).expect("one of 64"))
        .collect();
    let out = run(on(&db).arg("stats"));
    assert_eq!((out.code, out.stdout.as_str()), (3, ""), "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: a running application{} holds the database at {}, and the admin socket {} \
             refused the connection: ",
            sessctl::held_by(&db),
            db.display(),
            socket.display()
        )) && !out.stderr.contains("does not answer"),
        "{}",
        out.stderr
    );
    drop(clients);
}

/// A hung application: its admin socket accepts connections into the queue and never answers.
/// `--timeout` (or `SESSCTL_TIMEOUT`) is how long sessctl waits for it at a time, so the
/// operator learns it in a fraction of a second instead of the default's 20.
#[test]
fn timeout_is_how_long_sessctl_waits_for_a_hung_application() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let held = Store::open(&db).expect("open");
    let socket = sessdb::RemoteAdmin::default_socket(&db);
    let hung = UnixListener::bind(&socket).expect("bind");
    hung.set_nonblocking(true).expect("nonblocking");
    // The connections sessctl made, still in the queue: one wait for the application, not
    // a second one after finding the database held.
    let connections = || std::iter::from_fn(|| hung.accept().ok()).count();
    let unanswered = format!(
        "the application behind the admin socket {} did not answer within 50 ms (is it \
         stopped or hung?)\n",
        socket.display()
    );
    // Found in the --db folder: the database is held, and the socket does not answer.
    let held_by = format!(
        "error: the database at {} is held by another process (sled allows one process at a \
         time){}, and its admin socket does not answer: {unanswered}",
        db.display(),
        sessctl::held_by(&db)
    );
    expect(
        on(&db).args(["--timeout", "0.05", "stats"]),
        3,
        "",
        &held_by,
    );
    assert_eq!(connections(), 1);
    expect(
        on(&db).env("SESSCTL_TIMEOUT", "0.05").arg("stats"),
        3,
        "",
        &held_by,
    );
    assert_eq!(connections(), 1);
    // Named with --socket: the wait for the handshake is the error.
    expect(
        on(&db)
            .arg("--socket")
            .arg(&socket)
            .args(["stats", "--timeout=0.05"]),
        5,
        "",
        &format!("error: {unanswered}"),
    );
    drop(held);
}

#[test]
fn a_bad_timeout_is_a_usage_error_naming_where_it_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    for bad in ["0", "-1", "soon", "NaN", "3601"] {
        expect(
            on(&db).arg(format!("--timeout={bad}")).arg("stats"),
            2,
            "",
            &format!(
                "error: --timeout: {bad:?} is not a number of seconds between 0.001 and 3600 (or \
                 a duration such as 10s or 2m)\n"
            ),
        );
    }
    expect(
        on(&db).env("SESSCTL_TIMEOUT", "10x").arg("stats"),
        2,
        "",
        "error: SESSCTL_TIMEOUT: \"10x\" is not a number of seconds between 0.001 and 3600 (or a \
         duration such as 10s or 2m)\n",
    );
    // Set empty, it counts as unset: the default.
    let out = run(at_t0(&db)
        .env("SESSCTL_TIMEOUT", "")
        .args(["stats", "--json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(json_lines(&out.stdout)[0]["live"], 3);
}

/// Through a running application's socket too, an export file in the database folder that
/// application serves is refused before anything is written (a user's `export --out
/// sessions.sessdb/db` beside `demo --live` exited 0, and the database was damaged once the
/// application stopped).
#[test]
fn an_export_into_the_folder_the_application_serves_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let want = export_body(&db);
    let app = application(&db);
    let note = via_socket(&db, std::process::id());
    // Named by the socket alone, with --db naming nothing: the served folder is what counts.
    let out = db.join("db");
    expect(
        sessctl()
            .arg("--socket")
            .arg(db.join("admin.sock"))
            .args(["export", "--out"])
            .arg(&out),
        2,
        "",
        &format!(
            "{note}error: --out {} is inside the database folder {}: an export written there \
             could replace the database's own files, and would stop `sessctl compact`; write it \
             outside that folder\n",
            out.display(),
            std::fs::canonicalize(&db).expect("canonicalize").display()
        ),
    );
    drop(app);
    assert_eq!(export_body(&db), want, "the database is whole");
}
