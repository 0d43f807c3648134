//! `sessctl compact`: the database rewritten into a new folder and swapped in, a copy with
//! `--into`, and the refusals that leave everything as it was.

mod common;

use std::fs;
use std::path::Path;

use common::{
    at_t0, expect, export_body, fixture, id, on, open_raw_sled, run, t0, wait_until_blocked,
};
use sessdb::{ManualClock, Store};

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

/// The first line of a compaction's stdout, up to the sizes.
fn said(out: &str) -> &str {
    out.split_once(", ").map_or(out, |(head, _)| head)
}

#[test]
fn compact_keeps_every_session_and_says_what_it_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);
    let out = run(at_t0(&db).arg("compact"));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(
        said(&out.stdout),
        format!("compacted {}: 5 sessions", db.display())
    );
    assert!(out.stdout.ends_with(" on disk\n"), "{}", out.stdout);
    assert_eq!(export_body(&db), before);
    expect(
        at_t0(&db).arg("check"),
        0,
        "checked 5 records: no problems\n",
        "",
    );
    assert_eq!(names(dir.path()), ["fixture.sessdb"]);
}

#[test]
fn drop_expired_leaves_out_what_purge_would_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let purged = fixture(&dir.path().join("other"));
    expect(
        at_t0(&purged).args(["purge", "--expired"]),
        0,
        "removed 2 expired sessions\n",
        "",
    );
    let out = run(at_t0(&db).args(["compact", "--drop-expired"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(
        said(&out.stdout),
        format!(
            "compacted {}: 3 sessions (2 expired sessions left out)",
            db.display()
        )
    );
    assert_eq!(export_body(&db), export_body(&purged));
}

#[test]
fn into_writes_a_copy_and_leaves_the_database_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);
    let files_before = names(&db);
    let copy = dir.path().join("copy.sessdb");
    let out = run(at_t0(&db).arg("compact").arg("--into").arg(&copy));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(
        said(&out.stdout),
        format!(
            "copied {} into {}: 5 sessions",
            db.display(),
            copy.display()
        )
    );
    assert_eq!(export_body(&copy), before);
    assert_eq!(export_body(&db), before);
    assert_eq!(names(&db), files_before);

    // Taken now: refused as a usage error, and the copy there is left alone; so is a file.
    let file = dir.path().join("notes.txt");
    fs::write(&file, "keep me").expect("a file");
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).expect("a link");
    for taken in [&copy, &file, &dangling] {
        let out = run(at_t0(&db).arg("compact").arg("--into").arg(taken));
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(
            out.stderr,
            format!(
                "error: --into {} exists and is not an empty folder: the copy goes into a new \
                 database (give a path that does not exist yet, or an empty folder)\n",
                taken.display()
            )
        );
    }
    assert_eq!(export_body(&copy), before);
    assert_eq!(fs::read_to_string(&file).expect("the file"), "keep me");

    // Inside the database folder: a usage error too, as `export --out` there is, whether the
    // folder is new, already there and empty, or named through `..` or a link; the database
    // is not opened, and nothing is made.
    let canonical = fs::canonicalize(&db).expect("canonicalize");
    let empty = db.join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let link = dir.path().join("link-to-db");
    std::os::unix::fs::symlink(&db, &link).expect("a link");
    let files_before = names(&db);
    // Held by this process: had sessctl opened it, it would say so (exit 3).
    let held = Store::open(&db).expect("open");
    for inside in [
        db.join("inside"),
        empty.clone(),
        db.join("empty/../new"),
        link.join("via-link"),
    ] {
        let out = run(on(&db).arg("compact").arg("--into").arg(&inside));
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr),
            (
                2,
                "",
                format!(
                    "error: --into {} is inside the database folder {}: the copy would sit \
                     among the database's own files; give a folder outside it\n",
                    inside.display(),
                    canonical.display()
                )
            )
        );
    }
    drop(held);
    assert_eq!(names(&db), files_before);
    assert_eq!(export_body(&db), before);
}

#[test]
fn keep_old_keeps_the_old_database_beside_the_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);
    let out = run(at_t0(&db).args(["compact", "--keep-old"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let old = dir.path().join("fixture.sessdb.compact-old");
    let canonical_old = fs::canonicalize(&old).expect("old is there");
    assert!(
        out.stdout.ends_with(&format!(
            "the old database is kept at {} (the next compaction needs it moved away)\n",
            canonical_old.display()
        )),
        "{}",
        out.stdout
    );
    assert_eq!(export_body(&old), before);
    assert_eq!(export_body(&db), before);

    // A second compaction finds the old one in the way, and changes nothing.
    let out = run(at_t0(&db).arg("compact"));
    assert_eq!(out.code, 5);
    assert!(
        out.stderr.contains(
            "fixture.sessdb.compact-old is in the way (the database as it was before \
                       an earlier compaction, kept by `keep_old` (`sessctl compact --keep-old`)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        names(dir.path()),
        ["fixture.sessdb", "fixture.sessdb.compact-old"]
    );
}

#[test]
fn compact_is_refused_while_an_application_holds_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);
    let app = Store::builder()
        .clock(ManualClock::at(t0()))
        .admin_socket_default()
        .open(&db)
        .expect("the application opens its database");
    for args in [&["compact"][..], &["compact", "--into", "elsewhere"]] {
        let out = run(on(&db).args(args));
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert_eq!(
            out.stderr,
            format!(
                "error: a running application (pid {}) holds the database {}: compact needs \
                 it to itself, since the application would go on writing to the old files; \
                 stop the application, compact, then start it again\n",
                std::process::id(),
                db.display()
            )
        );
    }
    drop(app);
    // Held without a socket: sled's lock says so.
    let app = Store::open(&db).expect("open");
    let out = run(on(&db).arg("compact"));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("is held by another process"),
        "{}",
        out.stderr
    );
    drop(app);
    assert_eq!(names(dir.path()), ["fixture.sessdb"]);
    assert_eq!(export_body(&db), before);
}

#[test]
fn compact_refuses_what_it_would_lose_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);

    fs::write(db.join("notes.txt"), "mine").expect("write");
    let out = run(at_t0(&db).arg("compact"));
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot compact {}: {} in it is not part of the database, and compaction \
             replaces the whole folder: move it out first\n",
            db.display(),
            fs::canonicalize(&db)
                .expect("db")
                .join("notes.txt")
                .display()
        )
    );
    fs::remove_file(db.join("notes.txt")).expect("remove");

    expect(
        on(&db).args(["--socket", "app.sock", "compact"]),
        2,
        "",
        "error: compact needs the database itself, not an application's admin socket \
         (app.sock): stop the application and give --db\n",
    );
    // One from the environment (a shell profile's) is ignored with a note: --db is the
    // database. Before, it was refused, with advice to give the --db that was given.
    let out = run(on(&db)
        .env("SESSCTL_SOCKET", dir.path().join("app.sock"))
        .args(["compact", "--into"])
        .arg(dir.path().join("copy")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "note: SESSCTL_SOCKET ({}) is ignored: compact works on the database itself, at \
             --db\n",
            dir.path().join("app.sock").display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        dir.path().join("copy").join("db").exists(),
        "the copy was written"
    );
    fs::remove_dir_all(dir.path().join("copy")).expect("remove the copy");
    // So does demo, which makes its own database (an ignored socket would read as obeyed).
    expect(
        on(&dir.path().join("demo.sessdb")).args(["--socket", "app.sock", "demo"]),
        2,
        "",
        "error: demo makes its own database at --db; --socket names an application's admin \
         socket (app.sock), which demo does not use: leave it out\n",
    );
    // One from the environment (a profile's SESSCTL_SOCKET, for the other commands) is said
    // to be ignored, and the demo made.
    let demo = dir.path().join("env-demo.sessdb");
    let out = run(on(&demo)
        .env("SESSCTL_SOCKET", "app.sock")
        .args(["demo", "--sessions", "3"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "note: SESSCTL_SOCKET (app.sock) is ignored: demo makes its own database at --db\n"
        ),
        "{}",
        out.stderr
    );
    assert!(demo.join("conf").exists());
    fs::remove_dir_all(&demo).expect("remove the demo");
    let out = run(on(&db).args(["--as-of", "2999-01-01T00:00:00Z", "compact"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("later than now"), "{}", out.stderr);

    assert_eq!(names(dir.path()), ["fixture.sessdb"]);
    assert_eq!(export_body(&db), before);
}

#[test]
fn a_damaged_record_stops_compact_with_exit_4_and_advice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let sled = open_raw_sled(&db);
    sled.open_tree("sessions")
        .expect("tree")
        .insert(id(9).handle().as_bytes(), b"\x01garbage".to_vec())
        .expect("insert");
    sled.flush().expect("flush");
    drop(sled);
    // The export leaves the damaged record out (and exits 4); the check lists it.
    let sessions = || {
        let out = run(at_t0(&db).args(["export", "--include-expired"]));
        assert_eq!(out.code, 4, "{}", out.stderr);
        out.stdout.split_once('\n').expect("header").1.to_string()
    };
    let check = || run(at_t0(&db).arg("check")).stdout;
    let before = (sessions(), check());
    assert!(before.1.contains("cannot be decoded"), "{}", before.1);

    let out = run(at_t0(&db).arg("compact"));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: session {}: stored record is undecodable",
            id(9).handle()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(
            "; nothing was changed; `sessctl check` lists every damaged record, and `sessctl \
             check --repair` removes them (their sessions cannot be loaded anyway); then compact \
             again\n"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(names(dir.path()), ["fixture.sessdb"]);
    assert_eq!((sessions(), check()), before);
}

/// Where folders cannot be exchanged, compaction renames twice; a crash between the two leaves
/// no database at the path, and sessctl says where the two are, for a read and for an import
/// (which would otherwise make a new, empty database there).
#[test]
fn a_compaction_cut_between_its_two_renames_is_named_where_the_database_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let old = dir.path().join("fixture.sessdb.compact-old");
    let new = dir.path().join("fixture.sessdb.compact-new");
    let out = run(at_t0(&db).arg("compact").arg("--into").arg(&new));
    assert_eq!(out.code, 0, "{}", out.stderr);
    fs::rename(&db, &old).expect("rename");
    expect(
        at_t0(&db).arg("stats"),
        5,
        "",
        &format!(
            "error: no database at {}: a compaction was cut between its two renames; the \
             original database is at {} and its compacted copy at {}: rename one of them to {} \
             (until then no new database is made there)\n",
            db.display(),
            old.display(),
            new.display(),
            db.display()
        ),
    );
    let file = dir.path().join("export.jsonl");
    let out = run(at_t0(&old).arg("export").arg("--out").arg(&file));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(at_t0(&db).arg("import").arg(&file));
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("cut between its two renames"),
        "{}",
        out.stderr
    );
    assert!(!db.exists());
    fs::rename(&new, &db).expect("rename");
    assert_eq!(export_body(&db), export_body(&old));
}

/// Ctrl-C stops a compaction and removes its unfinished copy, with exit 130, where it used to
/// end the process and leave the copy beside the database for the next run to complain of.
/// The test holds the folder's gate (as an opening process does), so that the compaction waits
/// for it with its signal handler in place, sends SIGINT, then lets it go on.
#[test]
fn ctrl_c_stops_compact_and_removes_its_copy() {
    use nix::fcntl::{Flock, FlockArg};
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);
    let gate = Flock::lock(fs::File::open(&db).expect("open"), FlockArg::LockShared)
        .map_err(|(_, e)| e)
        .expect("gate");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sessctl"))
        .env_clear()
        .arg("--db")
        .arg(&db)
        .args(["--as-of", common::T0, "compact"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Its wait for the gate: a millisecond's sleep at a time.
    wait_until_blocked(&child, |f| f.contains("nanosleep"), &["230 "]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("kill");
    drop(gate);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (
            Some(130),
            "",
            format!(
                "error: compact interrupted: {} is unchanged and the unfinished copy removed\n",
                db.display()
            )
            .as_str()
        )
    );
    assert_eq!(names(dir.path()), ["fixture.sessdb"]);
    assert_eq!(export_body(&db), before);
}
