//! Help, usage errors, and the database-level bad input: missing, a file, unwritable, of a
//! newer format, held by another process; a closed stdout; the TUI without a terminal.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;

use common::{at_t0, expect, export_body, fixture, json_lines, on, open_raw_sled, run, sessctl};

/// Every subcommand sessctl has, as its help lists them.
const COMMANDS: [&str; 11] = [
    "demo",
    "stats",
    "list",
    "show",
    "invalidate",
    "purge",
    "export",
    "import",
    "check",
    "compact",
    "tui",
];

#[test]
fn help_documents_every_exit_code() {
    let out = run(sessctl().arg("--help"));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    for line in [
        "Exit codes:\n",
        "  0    success (also when the reader of the output goes away, as with `| head`;\n",
        "       a list that matches nothing is not an error: it exits 0)\n",
        "  1    the session that show or invalidate acts on does not exist, or the\n",
        "       principal that invalidate --principal logs out has no live session\n",
        "  2    usage error: a bad option, argument, time, duration, handle or session id\n",
        "  3    the database is held by another process (sled allows one process at a\n",
        "       time; for `demo --live`: a running application already serves it)\n",
        "  4    bad data: bad import lines, a check that found problems, an undecodable\n",
        "       record, a damaged database\n",
        "  5    any other I/O or database error (missing database, not a folder, newer\n",
        "       format, ...)\n",
        "  101  a bug in sessctl (it says so; please report it)\n",
        "  130  compact stopped by Ctrl-C or SIGTERM (its unfinished copy removed, the\n",
        "  SESSCTL_DB       the database folder when --db is not given\n",
        "  SESSCTL_SOCKET   the admin socket when --socket is not given\n",
        "  SESSCTL_TIMEOUT  the admin socket's timeout when --timeout is not given\n",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?} in\n{}",
            out.stdout
        );
    }
    // What --as-of cannot do is said where it is described, not only when it is refused.
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains(
            "Not while a running application serves the database: through its admin socket, \
             expiry follows the application's clock"
        ),
        "{}",
        out.stdout
    );
    // The exit codes of a hung application, as `classify` gives them: falling silent during a
    // command is exit 5 whether sessctl found the socket itself or was given it.
    assert!(
        help.contains(
            "one that is stopped or hung is reported after this when connecting (exit 3 when it \
             holds the database, 5 through --socket), and after twice this when it falls silent \
             during a command (exit 5 either way)"
        ),
        "{}",
        out.stdout
    );
    for command in COMMANDS {
        assert!(out.stdout.contains(&format!("\n  {command} ")), "{command}");
        let sub = run(sessctl().args([command, "--help"]));
        assert_eq!((sub.code, sub.stderr.as_str()), (0, ""), "{command}");
        assert!(sub.stdout.contains("Exit codes:") || sub.stdout.contains("Usage: sessctl"));
        // The options every command takes come after the command's own, under their heading.
        let (own, global) = sub
            .stdout
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{command}: {}", sub.stdout));
        for flag in [
            "--db <PATH>",
            "--as-of <TIME>",
            "--socket <PATH>",
            "--timeout <SECS>",
        ] {
            assert!(
                global.contains(flag) && !own.contains(flag),
                "{command} {flag}"
            );
        }
        assert!(global.contains("-q, --quiet"), "{command}");
    }
    expect(
        sessctl().arg("-V"),
        0,
        &format!("sessctl {}\n", env!("CARGO_PKG_VERSION")),
        "",
    );
    // What tells two builds apart for an operator: what each reads and writes.
    expect(
        sessctl().arg("--version"),
        0,
        &format!(
            "sessctl {}\ndatabase format {format} (opens 1 to {format}), export version {}, \
             admin socket protocol 1 to {}\n",
            env!("CARGO_PKG_VERSION"),
            sessdb::EXPORT_VERSION,
            sessdb::PROTOCOL_VERSION,
            format = sessdb::FORMAT_VERSION,
        ),
        "",
    );
}

#[test]
fn usage_errors_exit_2_before_touching_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("never.sessdb");
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage: sessctl [OPTIONS] <COMMAND>"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (
            &["list", "--limit", "many"],
            "invalid value 'many' for '--limit <N>'",
        ),
        (
            &["list", "--expired", "--expiring-within", "5m"],
            "cannot be used with",
        ),
        (&["import"], "<FILE|->"),
        (
            &["tui", "--refresh", "0"],
            "--refresh: \"0\" is not a number of seconds",
        ),
    ];
    for (args, needle) in cases {
        let out = run(on(&db).args(*args));
        assert_eq!((out.code, out.stdout.as_str()), (2, ""), "{args:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    expect(
        on(&db).args(["--as-of", "tomorrow", "stats"]),
        2,
        "",
        "error: --as-of: \"tomorrow\" is not an RFC 3339 time such as 2025-01-31T12:00:00Z\n",
    );
    // Outside the times sessdb stores: they used to be clamped to 1970 (or 9999) silently.
    expect(
        on(&db).args(["--as-of", "1960-01-01T00:00:00Z", "stats"]),
        2,
        "",
        "error: --as-of: \"1960-01-01T00:00:00Z\" is before 1970-01-01T00:00:00Z, the earliest \
         time sessdb stores\n",
    );
    expect(
        on(&db).args(["--as-of", "9999-12-31T23:30:00-01:00", "stats"]),
        2,
        "",
        "error: --as-of: \"9999-12-31T23:30:00-01:00\" is after the end of 9999, the latest \
         time sessdb stores\n",
    );
    expect(
        on(&db).args(["list", "--expiring-within", "15"]),
        2,
        "",
        "error: --expiring-within: \"15\" is not a duration (the last number has no unit; e.g. \
         90s, 15m, 2h, 1d, 1h30m)\n",
    );
    // A negative value is taken as the option's value and refused as such, not as an unknown
    // option.
    for (args, said) in [
        (
            &["list", "--expiring-within", "-5m"][..],
            "error: --expiring-within: \"-5m\" is not a duration",
        ),
        (
            &["--timeout", "-1", "stats"],
            "error: --timeout: \"-1\" is not a number of seconds",
        ),
        (
            &["list", "--limit", "-1"],
            "error: invalid value '-1' for '--limit <N>': expected a whole number of sessions \
             (0 for all)",
        ),
        // An unset shell variable: not a principal without sessions (exit 1).
        (
            &["invalidate", "--principal", ""],
            "error: invalid value '' for '--principal <P>': a principal cannot be empty (an \
             unset shell variable?)",
        ),
    ] {
        let out = run(on(&db).args(args));
        assert_eq!((out.code, out.stdout.as_str()), (2, ""), "{}", out.stderr);
        assert!(out.stderr.starts_with(said), "{}", out.stderr);
    }
    assert!(!db.exists());
}

#[test]
fn sessctl_db_names_the_database_when_db_is_not_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let out =
        run(sessctl()
            .env("SESSCTL_DB", &db)
            .args(["--as-of", common::T0, "stats", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json_lines(&out.stdout)[0]["live"], 3);
    // Without either, ./sessions.sessdb in the working directory; an empty SESSCTL_DB is
    // none (it was clap's "a value is required for '--db <PATH>'", a flag nobody typed).
    for empty in [false, true] {
        let mut cmd = sessctl();
        if empty {
            cmd.env("SESSCTL_DB", "");
        }
        expect(
            cmd.current_dir(dir.path()).arg("stats"),
            5,
            "",
            "error: no database at ./sessions.sessdb; check --db or SESSCTL_DB, or create a demo \
             database with `sessctl demo`\n",
        );
    }
    // An empty SESSCTL_SOCKET is no socket: the database is opened directly.
    let out = run(at_t0(&db)
        .env("SESSCTL_SOCKET", "")
        .args(["stats", "--json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(json_lines(&out.stdout)[0]["live"], 3);
    // Typed empty, --db is still an error of its own.
    let out = run(sessctl().args(["--db", "", "stats"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("a value is required for '--db <PATH>' but none was supplied"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_database_is_reported_and_never_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("missing.sessdb");
    let message = format!(
        "error: no database at {}; check --db or SESSCTL_DB, or create a demo database with \
         `sessctl demo`\n",
        db.display()
    );
    for args in [
        &["stats"][..],
        &["list"],
        &["show", "00000000000000000000000000000000"],
        &["export"],
        &["check"],
        &["check", "--repair"],
        &["purge", "--expired"],
        &["purge", "--expired", "--dry-run"],
        &["invalidate", "--principal", "alice"],
    ] {
        expect(on(&db).args(args), 5, "", &message);
        assert!(!db.exists(), "{args:?} created the database");
    }
}

#[test]
fn a_path_that_is_not_a_database_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file.txt");
    fs::write(&file, "not a database").expect("write");
    for args in [&["stats"][..], &["import", "-"], &["demo"]] {
        expect(
            on(&file).args(args).write_stdin(""),
            5,
            "",
            &format!("error: {} is not a database folder\n", file.display()),
        );
    }
    assert_eq!(fs::read_to_string(&file).expect("read"), "not a database");
    // A folder of something else is left alone: sled would create files in it.
    let folder = dir.path().join("photos");
    fs::create_dir(&folder).expect("mkdir");
    fs::write(folder.join("cat.jpg"), "meow").expect("write");
    expect(
        on(&folder).arg("stats"),
        5,
        "",
        &format!(
            "error: {} is a folder that holds other files, not a sessdb database\n",
            folder.display()
        ),
    );
    assert_eq!(fs::read_dir(&folder).expect("read_dir").count(), 1);
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    expect(
        on(&empty).arg("list"),
        5,
        "",
        &format!(
            "error: {} is an empty folder, not a sessdb database\n",
            empty.display()
        ),
    );
    assert_eq!(fs::read_dir(&empty).expect("read_dir").count(), 0);
}

/// Runs the binary as an unprivileged user when the tests run as root (root ignores file
/// permissions), so that "unwritable" means unwritable.
fn unprivileged() -> assert_cmd::Command {
    if is_root() {
        let mut cmd = assert_cmd::Command::new("/usr/bin/setpriv");
        cmd.env_clear().args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_sessctl"),
        ]);
        cmd
    } else {
        sessctl()
    }
}

#[test]
fn an_unwritable_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let locked_dir = dir.path().join("readonly");
    fs::create_dir(&locked_dir).expect("mkdir");
    fs::set_permissions(&locked_dir, fs::Permissions::from_mode(0o555)).expect("chmod");
    let db = locked_dir.join("new.sessdb");
    let out = run(unprivileged()
        .arg("--db")
        .arg(&db)
        .args(["import", "-"])
        .write_stdin(""));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            5,
            "",
            format!(
                "error: I/O error on {}: Permission denied (os error 13)\n",
                db.display()
            )
            .as_str()
        )
    );
    assert!(!db.exists());
    let out = run(unprivileged()
        .arg("--db")
        .arg(dir.path().join("x"))
        .args(["export", "--out"])
        .arg(locked_dir.join("backup.jsonl")));
    // The database is missing, which is reported first; an export file is never attempted.
    assert_eq!(out.code, 5);
    assert!(!locked_dir.join("backup.jsonl").exists());
}

/// The error names the folder, where the export's new file is made, and not only the file,
/// which a user would check first and, when it is there already, may find writable: it is left
/// as it was.
#[test]
fn export_into_an_unwritable_folder_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let db = fixture(dir.path());
    // The unprivileged user must be able to open the database.
    chown_nobody(&db);
    let locked_dir = dir.path().join("readonly");
    fs::create_dir(&locked_dir).expect("mkdir");
    fs::set_permissions(&locked_dir, fs::Permissions::from_mode(0o555)).expect("chmod");
    let target = locked_dir.join("backup.jsonl");
    let denied = format!(
        "error: cannot write {}: the export is written into a new file in {} and renamed over it \
         once complete, and that folder takes no new file: Permission denied (os error 13)\n",
        target.display(),
        locked_dir.display()
    );
    let export = || {
        run(unprivileged()
            .arg("--db")
            .arg(&db)
            .args(["export", "--out"])
            .arg(&target))
    };
    let out = export();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (5, "", denied.as_str())
    );
    assert_eq!(fs::read_dir(&locked_dir).expect("read_dir").count(), 0);
    // A backup there already that this user may write: the same error, the file unchanged.
    fs::set_permissions(&locked_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(&target, "the last backup").expect("write");
    chown_nobody(&target);
    fs::set_permissions(&locked_dir, fs::Permissions::from_mode(0o555)).expect("chmod");
    let out = export();
    assert_eq!((out.code, out.stderr.as_str()), (5, denied.as_str()));
    assert_eq!(
        fs::read_to_string(&target).expect("read"),
        "the last backup"
    );
}

/// A database whose folder its user cannot write: sled writes there at every open, so even a
/// read fails, and sessctl says why rather than only "Permission denied".
#[test]
fn a_database_folder_its_user_cannot_write_says_why_even_a_read_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let db = fixture(dir.path());
    chown_nobody(&db);
    fs::set_permissions(&db, fs::Permissions::from_mode(0o500)).expect("chmod");
    let out = run(unprivileged().arg("--db").arg(&db).arg("stats"));
    fs::set_permissions(&db, fs::Permissions::from_mode(0o700)).expect("chmod");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            5,
            "",
            format!(
                "error: I/O error on {}: Permission denied (os error 13); sled writes in the \
                 database folder at every open, even to read (a snapshot and its log's tail), \
                 so the folder and its files must be writable by this user: run sessctl as the \
                 user that owns them (the running application's admin socket, like the folder, \
                 serves that user only)\n",
                db.display()
            )
            .as_str()
        )
    );
}

/// A compaction that may not write its copy fails as other permission errors do (exit 5), the
/// system's error last in the chain (a failed write of the copy carries it as its source), and
/// says where this user must be able to write; the database is unchanged.
#[test]
fn a_compaction_that_may_not_write_its_copy_says_where_it_must_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let parent = dir.path().join("parent");
    fs::create_dir(&parent).expect("mkdir");
    let db = fixture(&parent);
    chown_nobody(&db);
    let before = export_body(&db);
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o555)).expect("chmod");
    let denied = format!(
        "error: I/O error on {}.compact-new: Permission denied (os error 13); compaction writes \
         its copy into a new folder beside the database's and swaps the two, so this user must \
         be able to write in the folder that holds the database: run sessctl as a user who can, \
         or copy the database with --into DIR into a folder this user can write\n",
        db.display()
    );
    let out = run(unprivileged().arg("--db").arg(&db).arg("compact"));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (5, "", denied.as_str())
    );
    // A folder for the copy that this user may not make.
    let made = parent.join("new");
    let out = run(unprivileged()
        .arg("--db")
        .arg(&db)
        .args(["compact", "--into"])
        .arg(&made));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            5,
            "",
            format!(
                "error: I/O error on {}: Permission denied (os error 13); the copy is written \
                 into {}, which this user must be able to write (or make): give --into a folder \
                 this user can write\n",
                made.display(),
                made.display()
            )
            .as_str()
        )
    );
    // An empty folder for the copy that this user may not write: the store's write of the
    // copy fails, and its I/O error is the compaction error's source.
    let into = parent.join("copy");
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(&into).expect("mkdir");
    fs::set_permissions(&into, fs::Permissions::from_mode(0o555)).expect("chmod");
    let out = run(unprivileged()
        .arg("--db")
        .arg(&db)
        .args(["compact", "--into"])
        .arg(&into));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            5,
            "",
            format!(
                "error: cannot compact {}: writing its copy in {} failed; the database is \
                 unchanged and the copy removed: Permission denied (os error 13); the copy is \
                 written into {}, \
                 which this user must be able to write (or make): give --into a folder this \
                 user can write\n",
                db.display(),
                into.display(),
                into.display()
            )
            .as_str()
        )
    );
    assert_eq!(fs::read_dir(&into).expect("read_dir").count(), 0);
    let mut names: Vec<_> = fs::read_dir(&parent)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["copy", "fixture.sessdb"]);
    assert_eq!(export_body(&db), before);
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Gives the database to the user [`unprivileged`] runs as (a no-op when not root).
fn chown_nobody(path: &Path) {
    if is_root() {
        let status = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(path)
            .status()
            .expect("chown runs");
        assert!(status.success());
    }
}

#[test]
fn a_database_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    {
        let sled = open_raw_sled(&db);
        sled.open_tree("meta")
            .expect("meta")
            .insert("format", &(sessdb::FORMAT_VERSION + 1).to_be_bytes())
            .expect("insert");
        sled.flush().expect("flush");
    }
    let message = format!(
        "error: the database at {} has format version {}; this sessdb reads up to {}; use a \
         newer sessctl\n",
        db.display(),
        sessdb::FORMAT_VERSION + 1,
        sessdb::FORMAT_VERSION
    );
    for args in [&["stats"][..], &["purge", "--expired"], &["import", "-"]] {
        expect(on(&db).args(args).write_stdin(""), 5, "", &message);
    }
}

/// A database folder that lost one of its files is still a database: without its `conf`
/// it opens (the store reads the log), without its log it is damaged (exit 4, with what to
/// do). Before, both were "a folder that holds other files, not a sessdb database".
#[test]
fn a_database_missing_a_file_is_one_still() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    // Opened again, so that sled has written its snapshot.
    drop(sessdb::Store::open(&db).expect("open"));
    let copy = dir.path().join("copy.sessdb");
    fs::create_dir(&copy).expect("mkdir");
    for entry in fs::read_dir(&db).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
        }
    }
    fs::remove_file(db.join("conf")).expect("rm conf");
    let out = run(at_t0(&db).args(["stats", "--json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(json_lines(&out.stdout)[0]["live"], 3);
    fs::remove_file(copy.join("db")).expect("rm db");
    let out = run(on(&copy).arg("stats"));
    assert_eq!((out.code, out.stdout.as_str()), (4, ""), "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: the database at {} is damaged: its log file `db` is missing",
            copy.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!copy.join("db").exists());
}

/// A log file overwritten in the middle makes sled 0.34 panic while opening it (or report
/// corruption, or recover a prefix, depending on where the damage falls). sessctl says the
/// database is damaged and what to do, exit 4, and no panic report reaches the operator.
#[test]
fn a_damaged_database_is_reported_without_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("pristine.sessdb");
    {
        // Made with sled's 512 KiB segments (a store from before the 2 MiB default), which it
        // keeps: where damage makes sled panic depends on how its log was written, and with
        // 2 MiB segments written under heavy disk load (CI, right after the build), no offset
        // did. Over 1 MB: several segments, so that later ones survive damage to an earlier
        // one, which makes sled panic at the next open (the store's own test finds it at every
        // offset it tries).
        drop(open_raw_sled(&db));
        let store = sessdb::Store::open(&db).expect("open");
        for i in 0..2000 {
            let mut s = store.create();
            s.set_principal(Some(&format!("user{}", i % 7)))
                .expect("principal");
            s.insert("k", &"v".repeat(300)).expect("insert");
            s.save().expect("save");
        }
        // Written out before the copies are taken: the flush of a dropped store finishes on
        // sled's threads, and a copy taken before it ends has another log.
        store.flush().expect("flush");
    }
    let files: Vec<(std::ffi::OsString, Vec<u8>)> = fs::read_dir(&db)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_type().expect("type").is_file())
        .map(|e| (e.file_name(), fs::read(e.path()).expect("read")))
        .collect();
    let log_len = files.iter().find(|(n, _)| n == "db").expect("log").1.len();
    let hint = "; move the folder aside (sessions are disposable: an application then starts \
                with an empty store), and restore the last export into a new one with `sessctl \
                --db NEW import FILE` if you have one\n";
    let mut panicked = 0;
    // Every 32 KiB: at 128 KiB, a CI run (a clean checkout, a quiet machine) once met no offset
    // that made sled panic, though every other run met some.
    for offset in (64 * 1024..log_len).step_by(32 * 1024) {
        let copy = dir.path().join(format!("at{offset}.sessdb"));
        fs::create_dir(&copy).expect("mkdir");
        for (name, bytes) in &files {
            let mut bytes = bytes.clone();
            if name == "db" {
                // The log's length varies from run to run: an offset may be near its end.
                let end = (offset + 200).min(bytes.len());
                bytes[offset..end].fill(0xab);
            }
            fs::write(copy.join(name), bytes).expect("write");
        }
        let out = run(on(&copy).arg("stats").env("RUST_BACKTRACE", "1"));
        if out.code == 0 {
            continue; // sled took the damage for the end of its log
        }
        let prefix = format!("error: the database at {} is damaged: ", copy.display());
        let stderr = out.stderr;
        assert_eq!((out.code, out.stdout.as_str()), (4, ""), "{stderr}");
        assert!(
            stderr.starts_with(&prefix) && stderr.ends_with(hint) && stderr.lines().count() == 1,
            "{stderr}"
        );
        panicked += u32::from(stderr.contains("the storage engine failed while reading it: "));
    }
    assert!(
        panicked > 0,
        "no damage made sled panic: the test no longer tests the hook"
    );
}

#[test]
fn a_database_held_by_another_process_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let held = sessdb::Store::open(&db).expect("open");
    let head = format!(
        "error: the database at {} is held by another process (sled allows one process at a \
         time); stop the process that has it open",
        db.display()
    );
    let tail = " and try again, or have the application serve its admin socket \
                (Builder::admin_socket_default), which sessctl then uses (one that serves it \
                makes it again after its removal, within its socket check interval, 2 s by \
                default: try again then)\n";
    // The holder (this process) is named where Linux lists it in /proc/locks.
    let me = std::process::id();
    let named = fs::read_to_string("/proc/locks").is_ok_and(|l| l.contains(&format!(" {me} ")));
    for args in [
        &["stats"][..],
        &["list"],
        &["purge", "--expired"],
        &["invalidate", "--principal", "alice"],
        &["export"],
        &["check", "--repair"],
    ] {
        let out = run(on(&db).args(args));
        let said = out.stderr.as_str();
        assert_eq!((out.code, out.stdout.as_str()), (3, ""), "{said}");
        assert!(said.starts_with(&head) && said.ends_with(tail), "{said}");
        let holder = &said[head.len()..said.len() - tail.len()];
        if named {
            assert!(holder.starts_with(&format!(" (process {me}: ")), "{said}");
            assert!(holder.ends_with(')') && !holder.contains('\n'), "{said}");
        }
    }
    drop(held);
    let out = run(at_t0(&db).arg("stats"));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// The warning of an export whose reader went away after at most `sessions` sessions.
fn cut_export(sessions: &str) -> String {
    format!(
        "warning: the reader of stdout went away before the export ended: what it read is not a \
         whole export but at most its first {sessions}, without the end line: an import refuses \
         it as cut short (with --skip-bad, it restores only those)\n"
    )
}

#[test]
fn a_closed_stdout_exits_0_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.sessdb");
    let out = run(at_t0(&db).args(["demo", "--sessions", "500"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    for args in [
        &["list", "--limit", "0"][..],
        &["list", "--json", "--limit", "0"],
        &["export", "--include-expired"],
        &["stats"],
    ] {
        // The reader goes away before sessctl writes anything: every write fails with EPIPE.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessctl"))
            .env_clear()
            .arg("--db")
            .arg(&db)
            .args(["--as-of", common::T0])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let (stderr, code) = common::stderr_and_exit(&mut child);
        // Only an export says that what the reader got is not all of it.
        let said = if args[0] == "export" {
            cut_export("0 sessions")
        } else {
            String::new()
        };
        assert_eq!((code, stderr), (Some(0), said), "{args:?}");
    }
    // And the shell's way: `sessctl list | head -1`.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' --db '{}' --as-of {} list --json --limit 0 | head -1",
            env!("CARGO_BIN_EXE_sessctl"),
            db.display(),
            common::T0
        ))
        .env_clear()
        .output()
        .expect("sh");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// An export to stdout whose reader goes away part way (`| dd bs=1M count=3`) still exits 0,
/// but says that what the reader got is not a whole export, which would import without a
/// complaint: at most how many sessions it holds, and that only those would come back.
#[test]
fn an_export_cut_short_by_its_reader_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.sessdb");
    // A thousand sessions export as about 800 KB: more than a pipe and sessctl's buffers
    // hold, so it cannot end before this test stops reading.
    let out = run(at_t0(&db).args(["demo", "--sessions", "1000"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessctl"))
        .env_clear()
        .arg("--db")
        .arg(&db)
        .args(["--as-of", common::T0, "export", "--include-expired"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut read = String::new();
    for _ in 0..11 {
        std::io::BufRead::read_line(&mut stdout, &mut read).expect("a line");
    }
    assert!(read.starts_with("{\"format\":\"sessdb-export\""), "{read}");
    drop(stdout);
    let (stderr, code) = common::stderr_and_exit(&mut child);
    assert_eq!(code, Some(0), "{stderr}");
    let sessions = common::sessions_in_cut_warning(&stderr);
    assert_eq!(stderr, cut_export(&format!("{sessions} sessions")));
}

#[test]
fn the_tui_needs_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    expect(
        on(&db).arg("tui"),
        2,
        "",
        "error: sessctl tui needs a terminal, and stdout is not one (for scripts, use list, show \
         and invalidate)\n",
    );
}

/// Help is wrapped to the terminal (up to 100 columns): in an 80-column terminal no line is
/// wider, and the exit codes, laid out by hand, keep their layout there.
#[test]
fn help_fits_an_80_column_terminal() {
    for command in std::iter::once("").chain(COMMANDS) {
        let mut cmd = sessctl();
        cmd.env("COLUMNS", "80");
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = run(cmd.arg("--help"));
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{command}");
        for line in out.stdout.lines() {
            assert!(line.chars().count() <= 80, "{command}: {line:?}");
        }
        if command.is_empty() {
            assert!(
                out.stdout.contains(
                    "  1    the session that show or invalidate acts on does not exist, or the\n       \
                     principal that invalidate --principal logs out has no live session\n"
                ),
                "{}",
                out.stdout
            );
        }
    }
    // Without a terminal or COLUMNS the width is 100, as before.
    let wide = run(sessctl().args(["list", "--help"]));
    assert!(
        wide.stdout.lines().any(|line| line.chars().count() > 80),
        "{}",
        wide.stdout
    );
    assert!(
        wide.stdout.lines().all(|line| line.chars().count() <= 100),
        "{}",
        wide.stdout
    );
}
