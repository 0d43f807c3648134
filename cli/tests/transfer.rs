//! Export and import: owner-only files, the round trip, idempotence, dry runs, conflicts,
//! and every kind of bad import line.

mod common;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::{
    at_t0, expect, export_body, fixture, handle, json_lines, on, run, wait_until_blocked,
};

const BAD_LINES_HINT: &str =
    "so nothing was imported (fix them, or pass --skip-bad to import the good lines)";

/// What follows `error: <input> does not start with a sessdb export header that this sessctl
/// reads, so nothing was imported` (or `would be`).
const HEADER_HINT: &str = ": an export's first line is \
    {\"format\":\"sessdb-export\",\"version\":2,\"exported_at\":\"<RFC 3339 time>\"}, as \
    `sessctl export` writes it";

/// The error for an import from stdin that does not start with an export header.
fn no_header(input: &str) -> String {
    format!(
        "error: {input} does not start with a sessdb export header that this sessctl reads, so \
         nothing was imported{HEADER_HINT}\n"
    )
}

#[test]
fn export_to_stdout_writes_the_header_then_one_session_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let out = run(at_t0(&db).arg("export"));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            0,
            "exported 3 sessions to stdout; left out 2 expired sessions (--include-expired \
             includes them)\n"
        )
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(
        lines[0],
        serde_json::json!({"format": "sessdb-export", "version": 2,
                           "exported_at": "2025-01-31T12:00:00.000Z"})
    );
    assert_eq!(lines.len(), 5);
    assert_eq!(
        lines[4],
        serde_json::json!({"end": "sessdb-export", "sessions": 3})
    );
    let out = run(at_t0(&db).args(["export", "--include-expired"]));
    assert_eq!(
        (out.code, out.stdout.lines().count(), out.stderr.as_str()),
        (0, 7, "exported 5 sessions to stdout\n")
    );
}

#[test]
fn export_files_are_owner_only_and_replaced_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let file = dir.path().join("backup.jsonl");
    expect(
        at_t0(&db)
            .args(["export", "--include-expired", "--out"])
            .arg(&file),
        0,
        "",
        &format!("exported 5 sessions to {}\n", file.display()),
    );
    let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        fs::read_to_string(&file).expect("read"),
        run(at_t0(&db).args(["export", "--include-expired"])).stdout
    );
    // An existing, world-readable file is replaced by an owner-only one.
    fs::write(&file, "old").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run(at_t0(&db).args(["export", "--out"]).arg(&file));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(fs::read_to_string(&file).expect("read").lines().count(), 5);
    // No temporary file is left next to it.
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // A folder that does not exist: an error naming the file, exit 5.
    let missing = dir.path().join("no/such/dir/backup.jsonl");
    let out = run(at_t0(&db).args(["export", "--out"]).arg(&missing));
    assert_eq!((out.code, out.stdout.as_str()), (5, ""));
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot write {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
}

#[test]
fn export_out_a_directory_is_refused_before_exporting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let folder = dir.path().join("backups");
    fs::create_dir(&folder).expect("mkdir");
    for (out, what) in [
        (format!("{}/", folder.display()), "is a directory"),
        (folder.display().to_string(), "is a directory"),
        (
            format!("{}/new/", folder.display()),
            "ends with /, which names a directory",
        ),
    ] {
        expect(
            at_t0(&db).args(["export", "--out", &out]),
            2,
            "",
            &format!("error: --out {out} {what}; give the name of the file to write\n"),
        );
    }
    assert_eq!(fs::read_dir(&folder).expect("read_dir").count(), 0);
    assert_eq!(
        fs::read_dir(dir.path()).expect("read_dir").count(),
        2,
        "no temporary file left beside it"
    );
}

/// An export file in the database's folder, by its name or through a link, would replace
/// sled's `db` or `conf` (the database destroyed, as a user found: exit 0 and then "damaged"),
/// or stop `compact`: refused before anything is written, the database untouched.
#[test]
fn export_out_inside_the_database_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = names(&db);
    let want = export_body(&db);
    let link = dir.path().join("backup.jsonl");
    std::os::unix::fs::symlink(db.join("conf"), &link).expect("symlink");
    let inside = |out: &Path| {
        format!(
            "error: --out {} is inside the database folder {}: an export written there could \
             replace the database's own files, and would stop `sessctl compact`; write it \
             outside that folder\n",
            out.display(),
            fs::canonicalize(&db).expect("canonicalize").display()
        )
    };
    for out in [
        db.join("db"),
        db.join("conf"),
        db.join("backup.jsonl"),
        db.join(".").join("db"),
        link.clone(),
    ] {
        expect(
            at_t0(&db).arg("export").arg("--out").arg(&out),
            2,
            "",
            &inside(&out),
        );
    }
    // Run from inside the folder, a bare file name is there too.
    expect(
        at_t0(Path::new("."))
            .current_dir(&db)
            .args(["export", "--out", "db"]),
        2,
        "",
        &inside(Path::new("db")),
    );
    // sled writes a snapshot when it opens a database; nothing else may appear.
    let sled_files = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| !n.starts_with("snap."))
            .collect()
    };
    assert_eq!(
        sled_files(names(&db)),
        sled_files(before),
        "nothing written in the database folder"
    );
    assert!(fs::symlink_metadata(&link)
        .expect("the link")
        .file_type()
        .is_symlink());
    assert_eq!(export_body(&db), want, "the database is whole");
}

/// The names in `dir`, sorted: what an export left beside its file.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn export_out_a_symbolic_link_replaces_the_file_it_leads_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let expected = run(at_t0(&db).arg("export")).stdout;
    // A link to a file in another folder: the link stays, the file is replaced whole, and the
    // temporary file went beside the file, not beside the link.
    let backups = dir.path().join("backups");
    fs::create_dir(&backups).expect("mkdir");
    fs::write(backups.join("2025-01.jsonl"), "old").expect("write");
    let links = dir.path().join("links");
    fs::create_dir(&links).expect("mkdir");
    let link = links.join("latest.jsonl");
    std::os::unix::fs::symlink("../backups/2025-01.jsonl", &link).expect("symlink");
    expect(
        at_t0(&db).args(["export", "--out"]).arg(&link),
        0,
        "",
        &format!(
            "exported 3 sessions to {}; left out 2 expired sessions (--include-expired \
             includes them)\n",
            link.display()
        ),
    );
    assert!(fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_link(&link).expect("readlink"),
        Path::new("../backups/2025-01.jsonl")
    );
    let file = backups.join("2025-01.jsonl");
    assert_eq!(fs::read_to_string(&file).expect("read"), expected);
    let mode = fs::metadata(&file).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(names(&backups), ["2025-01.jsonl"]);
    assert_eq!(names(&links), ["latest.jsonl"]);

    // A dangling link (through a second one) gets its file created, as a shell's `>` would.
    let next = links.join("next.jsonl");
    std::os::unix::fs::symlink("latest-but-one.jsonl", &next).expect("symlink");
    std::os::unix::fs::symlink(
        "../backups/2025-02.jsonl",
        links.join("latest-but-one.jsonl"),
    )
    .expect("symlink");
    let out = run(at_t0(&db).args(["export", "--out"]).arg(&next));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(backups.join("2025-02.jsonl")).expect("read"),
        expected
    );
    assert_eq!(names(&backups), ["2025-01.jsonl", "2025-02.jsonl"]);
    assert_eq!(
        names(&links),
        ["latest-but-one.jsonl", "latest.jsonl", "next.jsonl"]
    );

    // A link to a folder that does not exist: the error names the link and where it leads.
    let nowhere = links.join("nowhere.jsonl");
    std::os::unix::fs::symlink("../gone/x.jsonl", &nowhere).expect("symlink");
    expect(
        at_t0(&db).args(["export", "--out"]).arg(&nowhere),
        5,
        "",
        &format!(
            "error: cannot write {} (a symbolic link to {}): No such file or directory (os \
             error 2)\n",
            nowhere.display(),
            links.join("../gone/x.jsonl").display()
        ),
    );
    // A link to a folder is refused like the folder.
    let to_dir = links.join("to-dir");
    std::os::unix::fs::symlink("../backups", &to_dir).expect("symlink");
    expect(
        at_t0(&db).args(["export", "--out"]).arg(&to_dir),
        2,
        "",
        &format!(
            "error: --out {} is a directory; give the name of the file to write\n",
            to_dir.display()
        ),
    );
}

#[test]
fn export_out_a_link_planted_in_a_shared_folder_is_not_followed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: giving a link to another user needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    // A folder like /tmp (world-writable, sticky), and in it another user's link to a file of
    // ours: following it would let that user choose what our export replaces.
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let victim = dir.path().join("precious");
    fs::write(&victim, "keep me").expect("write");
    let link = shared.join("backup.jsonl");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).expect("lchown");
    expect(
        at_t0(&db).args(["export", "--out"]).arg(&link),
        2,
        "",
        &format!(
            "error: --out {link}: the symbolic link {link} belongs to another user (uid 65534) \
             in the shared folder {shared}; sessctl does not follow it, as the kernel would not \
             (protected_symlinks): give the path of the file itself\n",
            link = link.display(),
            shared = shared.display()
        ),
    );
    assert_eq!(fs::read_to_string(&victim).expect("read"), "keep me");
    assert_eq!(names(&shared), ["backup.jsonl"]);
    // Our own link there is followed.
    fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let out = run(at_t0(&db).args(["export", "--out"]).arg(&link));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(fs::read_to_string(&victim)
        .expect("read")
        .starts_with("{\"format\":\"sessdb-export\""));
}

#[test]
fn export_out_a_named_pipe_writes_into_the_pipe() {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let expected = run(at_t0(&db).args(["export", "--include-expired"])).stdout;
    assert!(
        expected.len() < 16 * 1024,
        "the export fits in the pipe's buffer"
    );
    let fifo = dir.path().join("backup.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    // The reading end, opened first and without blocking: sessctl's open then finds a reader
    // at once, writes into the pipe's buffer and exits; nothing here can wait for ever.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&fifo)
        .expect("open the reading end");
    let out = run(at_t0(&db)
        .args(["export", "--include-expired", "--out"])
        .arg(&fifo)
        .timeout(std::time::Duration::from_secs(60)));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            0,
            format!("exported 5 sessions to {}\n", fifo.display()).as_str()
        )
    );
    let mut got = String::new();
    match reader.read_to_string(&mut got) {
        Ok(_) => {}
        // Nothing written and no writer left is end of file; a writer still there would
        // block, which sessctl's exit rules out.
        Err(e) => panic!("reading the pipe: {e}"),
    }
    assert_eq!(got, expected);
    assert!(fs::symlink_metadata(&fifo)
        .expect("lstat")
        .file_type()
        .is_fifo());
    assert_eq!(names(dir.path()), ["backup.fifo", "fixture.sessdb"]);
}

/// `sessctl export` of `db` as of T0 into the named pipe `fifo`, started and left running,
/// its stderr piped.
fn export_into_the_pipe(db: &Path, fifo: &Path, more: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessctl"))
        .env_clear()
        .arg("--db")
        .arg(db)
        .args(["--as-of", common::T0, "export"])
        .args(more)
        .arg("--out")
        .arg(fifo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// A named pipe with no reader yet is waited for before the database is opened: an export
/// waiting for its backup job does not keep the application from opening its database.
/// (It opened the database first, and held it while it waited.)
#[test]
fn an_export_waiting_for_its_pipes_reader_does_not_hold_the_database() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let fifo = dir.path().join("backup.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut child = export_into_the_pipe(&db, &fifo, &[]);
    // Until it waits in the open of the pipe: the kernel function it sleeps in, as /proc
    // shows it (a kernel that hides it shows "0": then the open's syscall, openat, is 257 on
    // x86_64 and 56 on aarch64, which the loader's opens pass through too quickly to matter).
    wait_until_blocked(&child, |f| f == "wait_for_partner", &["257 ", "56 "]);
    // Meanwhile the application opens its database, and lets it go again.
    drop(sessdb::Store::open(&db).expect("the database is free while sessctl waits"));
    let mut got = String::new();
    fs::File::open(&fifo)
        .expect("open the reading end")
        .read_to_string(&mut got)
        .expect("read");
    let (stderr, code) = common::stderr_and_exit(&mut child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        got.lines().count(),
        5,
        "a header, the 3 live sessions and the end line"
    );
}

/// An import from a pipe whose writer has not started yet (`ssh host sessctl export |
/// sessctl import -`) waits for its first bytes before it opens the database, so the
/// application can start meanwhile. (It opened the database first, and held it while it
/// waited.)
#[test]
fn an_import_waiting_for_its_input_does_not_hold_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let export = run(at_t0(&db).args(["export", "--include-expired"])).stdout;
    let target = dir.path().join("target.sessdb");
    drop(sessdb::Store::open(&target).expect("an empty database"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessctl"))
        .env_clear()
        .arg("--db")
        .arg(&target)
        .args(["--as-of", common::T0, "import", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Until it waits for its empty pipe.
    wait_until_blocked(&child, waits_for_input, POLL_SYSCALLS);
    // Meanwhile the application opens its database, and lets it go again.
    drop(sessdb::Store::open(&target).expect("the database is free while sessctl waits"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(export.as_bytes()).expect("write");
    drop(stdin);
    let (stderr, code) = common::stderr_and_exit(&mut child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(export_body(&target), export_body(&db));
}

/// Whether the kernel function a process sleeps in, as /proc shows it, is a wait for its input
/// (sessctl's import waits in `poll` before each read, to see a stall or a Ctrl-C).
fn waits_for_input(function: &str) -> bool {
    function.contains("poll")
}

/// The syscall of that wait, for a kernel that hides the function (it shows "0"): `poll` on
/// x86_64, `ppoll` on aarch64.
const POLL_SYSCALLS: &[&str] = if cfg!(target_arch = "aarch64") {
    &["73 "]
} else {
    &["7 "]
};

/// Ctrl-C or SIGTERM while an import reads its input stops it: nothing is written, a database
/// it made for the import is removed, and it exits 130 saying so. Before, the signal ended the
/// process, which left the new database behind, with whatever the import had written to it.
/// The input here is the export but its end line, from a pipe kept open: the import has opened
/// the database and waits for more when the signal comes.
#[test]
fn a_signal_while_an_import_reads_stops_it_with_nothing_written() {
    use nix::sys::signal::{kill, Signal};

    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let export = run(at_t0(&db).args(["export", "--include-expired"])).stdout;
    let (body, _end_line) = export.trim_end().rsplit_once('\n').expect("an end line");
    let existing = dir.path().join("existing.sessdb");
    drop(sessdb::Store::open(&existing).expect("an empty database"));
    let new = dir.path().join("new.sessdb");
    for (target, signal) in [(&new, Signal::SIGINT), (&existing, Signal::SIGTERM)] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessctl"))
            .env_clear()
            .arg("--db")
            .arg(target)
            .args(["--as-of", common::T0, "import", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(body.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        wait_until_blocked(&child, waits_for_input, POLL_SYSCALLS);
        assert!(target.join("conf").exists(), "the import opened {target:?}");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        kill(pid, signal).expect("kill");
        // An import that missed the signal would wait for ever on its open input: after a
        // minute it is killed, and the test fails on its exit.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_err()
            {
                let _ = kill(pid, Signal::SIGKILL);
            }
            drop(stdin);
        });
        let out = child.wait_with_output().expect("wait");
        let _ = done.send(());
        watchdog.join().expect("watchdog");
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).as_ref(),
                String::from_utf8_lossy(&out.stderr).as_ref()
            ),
            (
                Some(130),
                "",
                "error: import interrupted while reading stdin: nothing was written\n"
            ),
            "{signal}"
        );
    }
    assert!(!new.exists(), "the database the import made is removed");
    assert_eq!(export_body(&existing), "", "nothing written");
}

/// What needs no input is refused before the input is waited for: an import as of a future
/// time, with a stdin that never says anything (a terminal, a producer that hangs), exits 2 at
/// once. (For a minute at most: then the test kills it, and fails.)
#[test]
fn a_future_as_of_import_is_refused_before_its_input_comes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessctl"))
        .env_clear()
        .arg("--db")
        .arg(dir.path().join("db"))
        .args(["--as-of", "2999-01-01T00:00:00Z", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_err()
        {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        drop(stdin);
    });
    let (stderr, code) = common::stderr_and_exit(&mut child);
    let _ = done.send(());
    watchdog.join().expect("watchdog");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("later than now"), "{stderr}");
    assert!(!dir.path().join("db").exists());
}

/// An import that makes a new database says so, also when it holds no session (a header-only
/// export into a mistyped --db).
#[test]
fn an_import_that_makes_an_empty_database_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("typo.sessdb");
    expect(
        on(&typo).args(["import", "-"]).write_stdin(HEADER),
        0,
        "imported 0, replaced 0, unchanged 0, skipped 0, bad 0\n",
        &made("no database at", &typo),
    );
    assert!(typo.join("conf").exists());
}

/// A named pipe whose reader goes away part way (a backup job that died) gets what a closed
/// stdout gets: exit 0, and a warning that what it read is not a whole export.
#[test]
fn export_out_a_named_pipe_whose_reader_goes_away_says_so() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.sessdb");
    // A thousand sessions export as about 800 KB: more than a pipe and sessctl's buffers
    // hold, so it cannot end before the reader stops reading.
    let out = run(at_t0(&db).args(["demo", "--sessions", "1000"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fifo = dir.path().join("backup.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut child = export_into_the_pipe(&db, &fifo, &["--include-expired"]);
    // Opening the reading end waits for sessctl's writing end; should sessctl fail before it
    // opens the pipe, this thread waits on, and the assertions below say why.
    let reading = fifo.clone();
    let reader = std::thread::spawn(move || {
        let pipe = fs::File::open(&reading).expect("open the reading end");
        let mut lines = std::io::BufReader::new(pipe).lines();
        let header = lines.next().expect("a header").expect("read");
        assert!(
            header.starts_with("{\"format\":\"sessdb-export\""),
            "{header}"
        );
        for _ in 0..10 {
            lines.next().expect("a session").expect("read");
        }
        // Dropped here: the reader goes away.
    });
    let (stderr, code) = common::stderr_and_exit(&mut child);
    reader.join().expect("the reader read 11 lines");
    assert_eq!(code, Some(0), "{stderr}");
    let sessions = common::sessions_in_cut_warning(&stderr);
    assert_eq!(
        stderr,
        format!(
            "warning: the reader of {} went away before the export ended: what it read is not a \
             whole export but at most its first {sessions} sessions, without the end line: an \
             import refuses it as cut short (with --skip-bad, it restores only those)\n",
            fifo.display()
        )
    );
}

#[test]
fn export_out_a_device_writes_to_it_and_a_socket_is_refused() {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::os::unix::fs::FileTypeExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let socket = dir.path().join("app.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    expect(
        at_t0(&db).args(["export", "--out"]).arg(&socket),
        2,
        "",
        &format!(
            "error: --out {} is a socket; sessctl writes exports to files, named pipes and \
             character devices only\n",
            socket.display()
        ),
    );
    assert!(fs::symlink_metadata(&socket)
        .expect("lstat")
        .file_type()
        .is_socket());
    // Device nodes of our own in the temporary folder, never the system's: a null device
    // (1, 3), and a block device of a number no driver has (240 is for local use).
    let null = dir.path().join("null");
    let block = dir.path().join("disk");
    let perm = Mode::from_bits_truncate(0o600);
    if mknod(&null, SFlag::S_IFCHR, perm, makedev(1, 3)).is_err()
        || mknod(&block, SFlag::S_IFBLK, perm, makedev(240, 0)).is_err()
        || fs::OpenOptions::new().write(true).open(&null).is_err()
    {
        eprintln!("skipped the device nodes: mknod needs root, and a folder without nodev");
        return;
    }
    expect(
        at_t0(&db).args(["export", "--out"]).arg(&null),
        0,
        "",
        &format!(
            "exported 3 sessions to {}; left out 2 expired sessions (--include-expired \
             includes them)\n",
            null.display()
        ),
    );
    let kind = fs::symlink_metadata(&null).expect("lstat").file_type();
    assert!(kind.is_char_device(), "{kind:?}");
    expect(
        at_t0(&db).args(["export", "--out"]).arg(&block),
        2,
        "",
        &format!(
            "error: --out {} is a block device; sessctl writes exports to files, named pipes \
             and character devices only\n",
            block.display()
        ),
    );
    assert!(fs::symlink_metadata(&block)
        .expect("lstat")
        .file_type()
        .is_block_device());
    assert_eq!(
        names(dir.path()),
        ["app.sock", "disk", "fixture.sessdb", "null"]
    );
}

#[test]
fn export_then_import_into_a_fresh_database_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let file = dir.path().join("backup.jsonl");
    // Without --as-of: the real clock, so the header's timestamp differs between exports.
    let out = run(on(&db)
        .args(["export", "--include-expired", "--out"])
        .arg(&file));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fresh = dir.path().join("restored.sessdb");
    expect(
        at_t0(&fresh).arg("import").arg(&file),
        0,
        "imported 5, replaced 0, unchanged 0, skipped 0, bad 0\n",
        &format!("{}{EXPIRED_AT_T0}", made("no database at", &fresh)),
    );
    // With --quiet the notes go, and only they (given twice, as a script that adds it to a
    // command line that may have it already would, it is the same).
    let quiet = dir.path().join("quiet.sessdb");
    expect(
        at_t0(&quiet).args(["--quiet", "import", "-q"]).arg(&file),
        0,
        "imported 5, replaced 0, unchanged 0, skipped 0, bad 0\n",
        "",
    );
    let out = run(at_t0(&quiet)
        .args(["-q", "import", "-"])
        .write_stdin(format!("{HEADER}garbage\n")));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            4,
            "line 2: expected value at column 1\nerror: 1 bad line, so nothing was imported \
             (fix them, or pass --skip-bad to import the good lines)\n"
        )
    );
    let original = fs::read_to_string(&file).expect("read");
    let again = run(on(&fresh).args(["export", "--include-expired"])).stdout;
    let (h1, body1) = original.split_once('\n').expect("header");
    let (h2, body2) = again.split_once('\n').expect("header");
    assert_eq!(body2, body1);
    assert!(h1.starts_with("{\"format\":\"sessdb-export\",\"version\":2,\"exported_at\":\""));
    assert!(h2.starts_with("{\"format\":\"sessdb-export\",\"version\":2,\"exported_at\":\""));
    // The restored database behaves the same: same listing, same check.
    assert_eq!(
        run(at_t0(&fresh).args(["list", "--limit", "0"])).stdout,
        run(at_t0(&db).args(["list", "--limit", "0"])).stdout
    );
    expect(
        at_t0(&fresh).arg("check"),
        0,
        "checked 5 records: no problems\n",
        "",
    );

    // A second import of the same file changes nothing.
    expect(
        on(&fresh).arg("import").arg(&file),
        0,
        "imported 0, replaced 0, unchanged 5, skipped 0, bad 0\n",
        "",
    );
    assert_eq!(export_body(&fresh), export_body(&db));
    // From stdin too.
    expect(
        on(&fresh)
            .args(["import", "-"])
            .write_stdin(original.clone()),
        0,
        "imported 0, replaced 0, unchanged 5, skipped 0, bad 0\n",
        "",
    );
}

#[test]
fn dry_run_import_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let export = run(at_t0(&db).args(["export", "--include-expired"])).stdout;
    // An empty database to import into.
    let target = dir.path().join("empty.sessdb");
    drop(sessdb::Store::open(&target).expect("create"));
    expect(
        at_t0(&target)
            .args(["import", "-", "--dry-run"])
            .write_stdin(export.clone()),
        0,
        "dry run, nothing written; would have imported 5, replaced 0, unchanged 0, skipped 0, \
         bad 0\n",
        EXPIRED_IN_DRY_RUN,
    );
    assert_eq!(export_body(&target), "");
    // Without a database, a dry run checks the file on its own and creates nothing: every
    // good line would be imported into the new database.
    let missing = dir.path().join("missing.sessdb");
    let note = format!(
        "note: no database at {}: checking the file on its own, as an import that creates the \
         database would\n",
        missing.display()
    );
    expect(
        at_t0(&missing)
            .args(["import", "-", "--dry-run"])
            .write_stdin(export.clone()),
        0,
        "dry run, nothing written; would have imported 5, replaced 0, unchanged 0, skipped 0, \
         bad 0\n",
        &format!("{note}{EXPIRED_IN_DRY_RUN}"),
    );
    assert!(!missing.exists());
    // Its bad lines are reported as a real import would report them.
    let mut lines: Vec<&str> = export.lines().collect();
    lines.pop();
    lines[2] = "hello world";
    lines.push(lines[1]);
    let handle = json_lines(lines[1])[0]["handle"].clone();
    expect(
        at_t0(&missing)
            .args(["import", "-", "--dry-run", "--skip-bad"])
            .write_stdin(whole(&lines)),
        4,
        "dry run, nothing written; would have imported 4, replaced 0, unchanged 0, skipped 0, \
         bad 2\n",
        &format!(
            "{note}line 3: expected value at column 1\nline 7: duplicate handle {}, \
             first on line 2\n{}error: 2 bad lines\n",
            handle.as_str().expect("a handle"),
            // Line 3 held one of the two expired sessions.
            EXPIRED_IN_DRY_RUN.replace("note: 2 of them", "note: 1 of them"),
        ),
    );
    assert!(!missing.exists());
    // An empty folder is no database either: checked the same way, and left empty.
    let empty = dir.path().join("empty-folder");
    fs::create_dir(&empty).expect("mkdir");
    expect(
        at_t0(&empty)
            .args(["import", "-", "--dry-run"])
            .write_stdin(export.clone()),
        0,
        "dry run, nothing written; would have imported 5, replaced 0, unchanged 0, skipped 0, \
         bad 0\n",
        &format!(
            "note: an empty folder at {}: checking the file on its own, as an import that \
             creates the database would\n{EXPIRED_IN_DRY_RUN}",
            empty.display()
        ),
    );
    assert_eq!(fs::read_dir(&empty).expect("read_dir").count(), 0);
}

/// A rejected file leaves no trace: not the database made for it, nor the folders made above
/// it, nor a database in the empty folder it was pointed at (which stays, empty).
#[test]
fn a_rejected_import_leaves_nothing_it_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.jsonl");
    fs::write(&bad, "not an export\n").expect("write");
    let nested = dir.path().join("a").join("b").join("new.sessdb");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    for db in [&nested, &empty] {
        let out = run(on(db).arg("import").arg(&bad));
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (4, "imported 0, replaced 0, unchanged 0, skipped 0, bad 1\n"),
            "{}",
            out.stderr
        );
    }
    assert!(
        !dir.path().join("a").exists(),
        "folders made for the import were left"
    );
    assert_eq!(fs::read_dir(&empty).expect("read_dir").count(), 0);
    // A good file into the same places makes its database there.
    let good = dir.path().join("good.jsonl");
    let export = run(at_t0(&fixture(dir.path())).args(["export", "--include-expired"])).stdout;
    fs::write(&good, export).expect("write");
    for (db, absent) in [(&nested, "no database at"), (&empty, "an empty folder at")] {
        expect(
            at_t0(db).arg("import").arg(&good),
            0,
            "imported 5, replaced 0, unchanged 0, skipped 0, bad 0\n",
            &format!("{}{EXPIRED_AT_T0}", made(absent, db)),
        );
    }
}

/// An export's first line, as of T0.
const HEADER: &str =
    "{\"format\":\"sessdb-export\",\"version\":1,\"exported_at\":\"2025-01-31T12:00:00Z\"}\n";

/// What an import that made a new database says of it: a restore to a mistyped `--db` must not
/// look like one to the database meant.
fn made(absent: &str, db: &Path) -> String {
    format!(
        "note: {absent} {}: the import made a new database there\n",
        db.display()
    )
}

#[test]
fn import_conflicts_skip_or_replace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let file = dir.path().join("backup.jsonl");
    let out = run(at_t0(&db)
        .args(["export", "--include-expired", "--out"])
        .arg(&file));
    assert_eq!(out.code, 0);
    let before = export_body(&db);
    // Session 1 changes after the backup.
    expect(
        at_t0(&db).args(["invalidate", &handle(1)]),
        0,
        "invalidated 1 session\n",
        "",
    );
    {
        let store = sessdb::Store::builder()
            .clock(sessdb::ManualClock::at(common::t0()))
            .open(&db)
            .expect("open");
        let mut s = store.create_with_id(common::id(1));
        s.insert("changed", &true).expect("insert");
        s.save().expect("save");
    }
    let changed = export_body(&db);
    assert_ne!(changed, before);
    expect(
        at_t0(&db).arg("import").arg(&file),
        0,
        "imported 0, replaced 0, unchanged 4, skipped 1, bad 0\n",
        "",
    );
    assert_eq!(export_body(&db), changed);
    expect(
        at_t0(&db)
            .arg("import")
            .arg(&file)
            .args(["--on-conflict", "replace", "--dry-run"]),
        0,
        "dry run, nothing written; would have imported 0, replaced 1, unchanged 4, skipped 0, \
         bad 0\n",
        "",
    );
    assert_eq!(export_body(&db), changed);
    expect(
        at_t0(&db)
            .arg("import")
            .arg(&file)
            .args(["--on-conflict", "replace"]),
        0,
        "imported 0, replaced 1, unchanged 4, skipped 0, bad 0\n",
        "",
    );
    assert_eq!(export_body(&db), before);
    let out = run(on(&db)
        .arg("import")
        .arg(&file)
        .args(["--on-conflict", "merge"]));
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr.contains("invalid value 'merge'"),
        "{}",
        out.stderr
    );
}

/// What an import of the whole fixture as of T0 says on stderr: sessions 3 and 4 had expired.
const EXPIRED_AT_T0: &str =
    "note: 2 of the sessions written had already expired: `sessctl purge --expired` removes them\n";

/// The same, said by a dry run.
const EXPIRED_IN_DRY_RUN: &str = "note: 2 of them had already expired: an import writes them as \
     the file holds them, for `sessctl purge --expired` to remove\n";

/// A valid export of the fixture (expired sessions included), as lines: its header and session
/// lines, without the end line ([`whole`] puts one back).
fn export_lines(db: &Path) -> Vec<String> {
    let mut lines: Vec<String> = run(at_t0(db).args(["export", "--include-expired"]))
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    let end = lines.pop().expect("an end line");
    assert_eq!(end, end_line(lines.len() - 1));
    lines
}

/// The end line of an export of `sessions` sessions.
fn end_line(sessions: usize) -> String {
    format!("{{\"end\":\"sessdb-export\",\"sessions\":{sessions}}}")
}

/// `lines` (a header, then session lines, good or bad) and the end line that counts them, as
/// an export ends.
fn whole<S: AsRef<str>>(lines: &[S]) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    let sessions = lines[1..]
        .iter()
        .filter(|l| !l.as_ref().trim().is_empty())
        .count();
    text + &end_line(sessions) + "\n"
}

/// Imports `input` into a fresh copy of nothing: the target database must stay absent.
fn import_bad(dir: &Path, input: Vec<u8>, code: i32, stderr: &str) {
    let target = dir.join("target.sessdb");
    let out = run(on(&target).args(["import", "-"]).write_stdin(input));
    assert_eq!((out.code, out.stderr.as_str()), (code, stderr));
    assert!(!target.exists(), "a rejected import left a database behind");
}

#[test]
fn import_rejects_bad_lines_with_their_numbers_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let lines = export_lines(&db);
    let join = |ls: &[String]| whole(ls);

    // Garbage on line 3.
    let mut garbage = lines.clone();
    garbage.insert(2, "hello world".into());
    import_bad(
        dir.path(),
        join(&garbage).into_bytes(),
        4,
        &format!("line 3: expected value at column 1\nerror: 1 bad line, {BAD_LINES_HINT}\n"),
    );

    // JSON, but not an object: said so, not in serde's words ("invalid length 0, expected
    // struct Line with 12 elements", as a user saw it).
    let mut not_objects = lines.clone();
    for (at, line) in [(2, "[]"), (3, "42"), (4, "\"x\""), (5, "null"), (6, "true")] {
        not_objects.insert(at, line.into());
    }
    import_bad(
        dir.path(),
        join(&not_objects).into_bytes(),
        4,
        &format!(
            "line 3: not a session: the line is an array, where a session is a JSON object\n\
             line 4: not a session: the line is a number, where a session is a JSON object\n\
             line 5: not a session: the line is a string, where a session is a JSON object\n\
             line 6: not a session: the line is null, where a session is a JSON object\n\
             line 7: not a session: the line is a boolean, where a session is a JSON object\n\
             error: 5 bad lines, {BAD_LINES_HINT}\n"
        ),
    );

    // Truncated in the middle of the last line (no newline at the end): the end line is
    // missing too.
    let mut truncated = (lines.join("\n") + "\n").into_bytes();
    truncated.truncate(truncated.len() - 40);
    import_bad(
        dir.path(),
        truncated,
        4,
        &format!(
            "line 6: truncated: EOF while parsing a string at column {}\nline 7: the export \
             was cut short: the input ends after line 6 without the end line that ends an \
             export of version 2 ({{\"end\":\"sessdb-export\",\"sessions\":<how many>}})\n\
             error: 2 bad lines, {BAD_LINES_HINT}\n",
            lines[5].len() - 39
        ),
    );
    // Cut short after a whole line: every line is good, and only the missing end line tells.
    import_bad(
        dir.path(),
        (lines[..4].join("\n") + "\n").into_bytes(),
        4,
        &format!(
            "line 5: the export was cut short: the input ends after line 4 without the end \
             line that ends an export of version 2 ({{\"end\":\"sessdb-export\",\"sessions\":\
             <how many>}})\nerror: 1 bad line, {BAD_LINES_HINT}\n"
        ),
    );

    // Invalid UTF-8 on line 2.
    let mut invalid = lines.clone();
    invalid[1] = invalid[1].replace("alice", "al\u{fffd}ce");
    let bytes = join(&invalid).replace('\u{fffd}', "\u{1}").into_bytes();
    let bytes: Vec<u8> = bytes
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect();
    import_bad(
        dir.path(),
        bytes,
        4,
        &format!("line 2: not valid UTF-8\nerror: 1 bad line, {BAD_LINES_HINT}\n"),
    );

    // The same session twice.
    let mut duplicate = lines.clone();
    duplicate.push(lines[1].clone());
    let first = json_lines(&lines[1])[0]["handle"]
        .as_str()
        .expect("handle")
        .to_string();
    import_bad(
        dir.path(),
        join(&duplicate).into_bytes(),
        4,
        &format!(
            "line 7: duplicate handle {first}, first on line 2\nerror: 1 bad line, \
             {BAD_LINES_HINT}\n"
        ),
    );

    // Not an export at all: a wrong header stops at line 1.
    let mut wrong = lines.clone();
    wrong[0] = r#"{"format":"csv","version":1,"exported_at":"2025-01-31T12:00:00Z"}"#.into();
    import_bad(
        dir.path(),
        join(&wrong).into_bytes(),
        4,
        &format!(
            "line 1: not a sessdb export: format is \"csv\"\n{}",
            no_header("stdin")
        ),
    );
    let mut newer = lines.clone();
    newer[0] = newer[0].replace("\"version\":2", "\"version\":9");
    import_bad(
        dir.path(),
        join(&newer).into_bytes(),
        4,
        &format!(
            "line 1: export version 9 is newer than this sessdb reads (2)\n{}",
            no_header("stdin")
        ),
    );
    import_bad(
        dir.path(),
        Vec::new(),
        4,
        &format!(
            "line 1: empty input: no export header\n{}",
            no_header("stdin")
        ),
    );
    // No export has version 0 or a header time that is not a time.
    let mut zero = lines.clone();
    zero[0] = zero[0].replace("\"version\":2", "\"version\":0");
    import_bad(
        dir.path(),
        join(&zero).into_bytes(),
        4,
        &format!(
            "line 1: version: 0 is not an export version (the first is 1; this sessdb reads up \
             to 2)\n{}",
            no_header("stdin")
        ),
    );
    let mut garbage_time = lines.clone();
    garbage_time[0] = r#"{"format":"sessdb-export","version":1,"exported_at":"yesterday"}"#.into();
    let out = run(on(&dir.path().join("target.sessdb"))
        .args(["import", "-"])
        .write_stdin(join(&garbage_time)));
    assert_eq!(out.code, 4);
    assert!(
        out.stderr
            .starts_with("line 1: exported_at: \"yesterday\" is not an RFC 3339 time: "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.ends_with(&no_header("stdin")), "{}", out.stderr);

    // A session whose fields contradict each other.
    let mut inconsistent = lines.clone();
    inconsistent[1] = inconsistent[1].replace("\"idle_timeout_s\":1800", "\"idle_timeout_s\":60");
    import_bad(
        dir.path(),
        join(&inconsistent).into_bytes(),
        4,
        &format!(
            "line 2: expires_at does not equal min(last_access + idle_timeout_s, \
             absolute_deadline)\nerror: 1 bad line, {BAD_LINES_HINT}\n"
        ),
    );
}

/// An export without its first line, an empty file, a binary file: --skip-bad cannot help
/// (a bad header ends the reading), so the error says what the file must start with instead.
#[test]
fn import_of_a_file_without_a_header_says_what_it_must_start_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let lines = export_lines(&db);
    let headless = dir.path().join("headless.jsonl");
    fs::write(&headless, lines[1..].join("\n") + "\n").expect("write");
    let target = dir.path().join("target.sessdb");
    let error = format!(
        "error: {} does not start with a sessdb export header that this sessctl reads, so \
         nothing was imported{HEADER_HINT}\n",
        headless.display()
    );
    for skip_bad in [false, true] {
        let mut cmd = on(&target);
        cmd.arg("import").arg(&headless);
        if skip_bad {
            cmd.arg("--skip-bad");
        }
        let out = run(&mut cmd);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (4, "imported 0, replaced 0, unchanged 0, skipped 0, bad 1\n")
        );
        assert!(
            out.stderr
                .starts_with("line 1: not a sessdb export header: unknown field `handle`"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.ends_with(&error), "{}", out.stderr);
        assert!(!out.stderr.contains("--skip-bad"), "{}", out.stderr);
        assert!(!target.exists());
    }
    // A dry run says the same, in the conditional.
    let out = run(on(&db).args(["import", "--dry-run"]).arg(&headless));
    assert_eq!(out.code, 4);
    assert!(
        out.stderr
            .ends_with(&error.replace("was imported", "would be imported")),
        "{}",
        out.stderr
    );
    // Blank lines before a bad header: still the header, on the line it is on.
    import_bad(
        dir.path(),
        format!("\n  \n{}\n", lines[1]).into_bytes(),
        4,
        &format!(
            "line 3: not a sessdb export header: unknown field `handle`, expected one of \
             `format`, `version`, `exported_at` at column 9\n{}",
            no_header("stdin")
        ),
    );
    // Blank lines only, and binary data.
    import_bad(
        dir.path(),
        b"\n\n".to_vec(),
        4,
        &format!(
            "line 2: empty input: no export header\n{}",
            no_header("stdin")
        ),
    );
    import_bad(
        dir.path(),
        vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, b'\n', 0x00],
        4,
        &format!("line 1: not valid UTF-8\n{}", no_header("stdin")),
    );
    // A good header followed by one bad line keeps the --skip-bad advice.
    import_bad(
        dir.path(),
        whole(&[lines[0].as_str(), "garbage"]).into_bytes(),
        4,
        &format!("line 2: expected value at column 1\nerror: 1 bad line, {BAD_LINES_HINT}\n"),
    );
}

#[test]
fn import_rejects_times_no_real_session_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let lines = export_lines(&db);
    let session = &json_lines(&lines[1])[0];
    let with = |field: &str, value: &str| {
        let mut s = session.clone();
        s[field] = value.into();
        whole(&[lines[0].clone(), s.to_string()]).into_bytes()
    };
    // Before 1970: it used to be clamped to 1970 silently.
    import_bad(
        dir.path(),
        with("created", "1969-12-31T23:59:59Z"),
        4,
        &format!(
            "line 2: created: \"1969-12-31T23:59:59Z\" is before 1970-01-01T00:00:00Z, the \
             earliest time sessdb stores\nerror: 1 bad line, {BAD_LINES_HINT}\n"
        ),
    );
    // Created after its last access: a session is created at its first access.
    let last_access = session["last_access"].as_str().expect("a time");
    import_bad(
        dir.path(),
        with("created", "2099-01-01T00:00:00Z"),
        4,
        &format!(
            "line 2: created (2099-01-01T00:00:00Z) is after last_access ({last_access})\nerror: \
             1 bad line, {BAD_LINES_HINT}\n"
        ),
    );
    // Created at its last access is what a new session is.
    let target = dir.path().join("target.sessdb");
    let out = run(at_t0(&target)
        .args(["import", "-"])
        .write_stdin(with("created", last_access)));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            "imported 1, replaced 0, unchanged 0, skipped 0, bad 0\n",
            made("no database at", &target).as_str()
        )
    );
}

#[test]
fn import_into_an_existing_database_with_bad_lines_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);
    // Ten sessions the fixture does not have, and one bad line after them.
    let demo = dir.path().join("demo.sessdb");
    let out = run(at_t0(&demo).args(["demo", "--sessions", "10"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut input = export_lines(&demo);
    assert_eq!(input.len(), 11);
    input.push("{\"handle\":\"nothex\"}".into());
    let input = whole(&input);
    let out = run(on(&db).args(["import", "-"]).write_stdin(input.clone()));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (4, "imported 0, replaced 0, unchanged 0, skipped 0, bad 1\n")
    );
    assert!(out.stderr.starts_with("line 12: "), "{}", out.stderr);
    assert!(out
        .stderr
        .ends_with(&format!("error: 1 bad line, {BAD_LINES_HINT}\n")));
    assert_eq!(export_body(&db), before);

    // --skip-bad imports the good lines and still reports the bad one (exit 4).
    let out = run(at_t0(&db)
        .args(["import", "-", "--skip-bad"])
        .write_stdin(input));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            4,
            "imported 10, replaced 0, unchanged 0, skipped 0, bad 1\n"
        )
    );
    assert!(
        out.stderr.ends_with("error: 1 bad line\n"),
        "{}",
        out.stderr
    );
    assert_eq!(export_body(&db).lines().count(), 15);
}

#[test]
fn skip_bad_imports_the_good_lines_of_a_new_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let mut lines = export_lines(&db);
    lines.insert(3, "garbage".into());
    let target = dir.path().join("target.sessdb");
    let out = run(at_t0(&target)
        .args(["import", "-", "--skip-bad"])
        .write_stdin(whole(&lines)));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            4,
            "imported 5, replaced 0, unchanged 0, skipped 0, bad 1\n",
            format!(
                "{}line 4: expected value at column 1\n{EXPIRED_AT_T0}error: 1 bad line\n",
                made("no database at", &target)
            )
            .as_str()
        )
    );
    assert_eq!(export_body(&target), export_body(&db));
}

/// Half a million garbage lines (1 MB): the first 1,000 are named, the rest counted, and the
/// import's memory stays bounded (it kept one reason of ~60 bytes per line before: ~64 times
/// the input).
#[test]
fn a_file_of_garbage_is_reported_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let lines = export_lines(&db);
    let file = dir.path().join("garbage.jsonl");
    let lines_of_garbage = 500_000;
    fs::write(
        &file,
        format!(
            "{}\n{}{}\n",
            lines[0],
            "x\n".repeat(lines_of_garbage),
            end_line(lines_of_garbage)
        ),
    )
    .expect("write");
    let target = dir.path().join("target.sessdb");
    let out = run(on(&target).arg("import").arg(&file));
    assert_eq!(out.code, 4);
    assert_eq!(
        out.stdout,
        format!("imported 0, replaced 0, unchanged 0, skipped 0, bad {lines_of_garbage}\n")
    );
    let err: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(err.len(), 1002, "{:?}", &err[..3]);
    assert_eq!(err[0], "line 2: expected value at column 1");
    assert_eq!(err[999], "line 1001: expected value at column 1");
    assert_eq!(
        err[1000],
        "… and 499000 more bad lines (only the first 1000 are named)"
    );
    assert_eq!(
        err[1001],
        format!("error: {lines_of_garbage} bad lines, {BAD_LINES_HINT}")
    );
    assert!(!target.exists());
    if let Some(kib) = peak_rss_kib(dir.path(), &target, &file, 4) {
        assert!(
            kib < 50 * 1024,
            "peak RSS {kib} KiB for 1 MB of garbage (79 MiB before)"
        );
    }
}

/// A good import is all or nothing, so it keeps its sessions until the input ends: first
/// decoded, then in the stored encoding (about six times smaller), now in a temporary file.
/// 20,000 sessions of a demo database: 175, 76, then 60 MiB peak (a debug build; most of it
/// sled's, so the limit only catches a return to the decoded form. The heap an import holds is
/// pinned by `store/tests/memory.rs`).
#[test]
fn a_good_import_keeps_its_sessions_out_of_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("demo.sessdb");
    let out = run(common::sessctl()
        .arg("--db")
        .arg(&src)
        .args(["demo", "--sessions", "2000"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(on(&src).args(["export", "--include-expired"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    let header = lines.next().expect("header");
    let mut sessions: Vec<&str> = lines.collect();
    assert_eq!(sessions.pop(), Some(end_line(2000).as_str()));
    // Ten copies under other handles: the first two hex digits of each handle changed.
    let mut text = format!("{header}\n");
    for copy in 0..10u8 {
        for line in &sessions {
            let rest = line
                .strip_prefix("{\"handle\":\"")
                .expect("the handle comes first");
            text.push_str(&format!("{{\"handle\":\"{copy:02x}{}\n", &rest[2..]));
        }
    }
    text.push_str(&(end_line(20_000) + "\n"));
    let file = dir.path().join("big.jsonl");
    fs::write(&file, text).expect("write");
    let target = dir.path().join("target.sessdb");
    if let Some(kib) = peak_rss_kib(dir.path(), &target, &file, 0) {
        assert!(kib < 120 * 1024, "peak RSS {kib} KiB for 20,000 sessions");
    } else {
        expect(
            on(&target).arg("import").arg(&file),
            0,
            "imported 20000, replaced 0, unchanged 0, skipped 0, bad 0\n",
            "",
        );
    }
    let stats = run(on(&target).arg("stats"));
    assert!(stats.stdout.contains("principals"), "{}", stats.stdout);
    let out = run(on(&target).args(["import", "--dry-run"]).arg(&file));
    assert_eq!(
        out.stdout,
        "dry run, nothing written; would have imported 0, replaced 0, unchanged 20000, \
         skipped 0, bad 0\n"
    );
}

#[test]
fn a_100_mb_line_is_rejected_with_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let lines = export_lines(&db);
    let file = dir.path().join("huge.jsonl");
    {
        let mut w = std::io::BufWriter::new(fs::File::create(&file).expect("create"));
        writeln!(w, "{}", lines[0]).expect("write");
        write!(w, "{{\"handle\":\"").expect("write");
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..100 {
            w.write_all(&chunk).expect("write");
        }
        writeln!(w, "\"}}").expect("write");
        writeln!(w, "{}", lines[1]).expect("write");
        writeln!(w, "{}", end_line(2)).expect("write");
    }
    let len = 100 * (1 << 20) + 13;
    let target = dir.path().join("target.sessdb");
    let expected_stderr = format!(
        "line 2: line is {len} bytes, over the limit of 2162688\nerror: 1 bad line, \
         {BAD_LINES_HINT}\n"
    );
    expect(
        on(&target).arg("import").arg(&file),
        4,
        "imported 0, replaced 0, unchanged 0, skipped 0, bad 1\n",
        &expected_stderr,
    );
    assert!(!target.exists());
    // The peak memory of the import stays far below the line's size.
    if let Some(kib) = peak_rss_kib(dir.path(), &target, &file, 4) {
        assert!(kib < 60 * 1024, "peak RSS {kib} KiB for a 100 MiB line");
    }
}

/// The peak RSS in KiB of `sessctl --db target import file` (which must exit with `code`),
/// measured by GNU time; `None` where /usr/bin/time is not installed.
fn peak_rss_kib(dir: &Path, target: &Path, file: &Path, code: i32) -> Option<u64> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return None;
    }
    let rss = dir.join("rss");
    let mut cmd = assert_cmd::Command::new(time);
    cmd.env_clear()
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss)
        .arg(env!("CARGO_BIN_EXE_sessctl"))
        .arg("--db")
        .arg(target)
        .arg("import")
        .arg(file);
    assert_eq!(run(&mut cmd).code, code);
    // time's report ends with the peak RSS in KiB (after "Command exited with ...").
    let report = fs::read_to_string(&rss).expect("time wrote its report");
    let kib = report
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {report:?}"));
    Some(kib)
}

#[test]
fn import_refuses_a_folder_and_removes_its_new_database_after_a_read_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new = dir.path().join("new.sessdb");
    let folder = dir.path().join("exports");
    fs::create_dir(&folder).expect("mkdir");
    // A folder opens like a file; it is refused before any database is made.
    expect(
        common::sessctl()
            .env("SESSCTL_DB", &new)
            .arg("import")
            .arg(&folder),
        2,
        "",
        &format!(
            "error: {} is a directory, not an export file\n",
            folder.display()
        ),
    );
    assert!(!new.exists(), "a refused input left a database behind");
    // A file that fails to read (reading /proc/self/mem at offset 0 is EIO): the error names
    // the file, and the database made for it is gone again.
    let unreadable = "/proc/self/mem";
    let read_error = format!("error: I/O error on {unreadable}: Input/output error (os error 5)\n");
    expect(on(&new).arg("import").arg(unreadable), 5, "", &read_error);
    assert!(!new.exists(), "a failed import left a database behind");
    // An existing database is kept, unchanged.
    let db = fixture(dir.path());
    let before = export_body(&db);
    expect(on(&db).arg("import").arg(unreadable), 5, "", &read_error);
    assert_eq!(export_body(&db), before);
}
