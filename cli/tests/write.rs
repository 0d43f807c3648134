//! The commands that change the database (invalidate, purge, check --repair, demo), and
//! check's verdicts on damaged indexes.

mod common;

use std::fs;
use std::path::Path;

use common::{
    api_handle, at_t0, expect, export_body, fixture, handle, id, json_lines, on, open_raw_sled,
    run, sessctl, T0,
};

/// The handles `list --json` shows as of `as_of`, expired ones included when asked.
fn handles(db: &Path, as_of: &str, expired: bool) -> Vec<String> {
    let mut cmd = on(db);
    cmd.args(["--as-of", as_of, "list", "--json", "--limit", "0"]);
    if expired {
        cmd.arg("--expired");
    }
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    json_lines(&out.stdout)
        .iter()
        .map(|s| s["handle"].as_str().expect("handle").to_string())
        .collect()
}

#[test]
fn invalidate_by_handle_and_by_session_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    expect(
        at_t0(&db).args(["invalidate", &handle(1)]),
        0,
        "invalidated 1 session\n",
        "",
    );
    expect(
        at_t0(&db).args(["invalidate", &id(2).to_string()]),
        0,
        "invalidated 1 session\n",
        "",
    );
    assert_eq!(handles(&db, T0, false), [api_handle()]);
    // An expired session not yet purged still exists, so it can be invalidated. Session 4 is
    // named by its id without hyphens: 32 hex characters, as a handle is; no session has that
    // handle, so it is taken for the id. Named by its handle too, in either order, it counts
    // once.
    let simple = id(4).to_string().replace('-', "");
    assert_eq!(simple.len(), 32);
    expect(
        at_t0(&db).args(["invalidate", &handle(3), &simple, &handle(4)]),
        0,
        "invalidated 2 sessions\n",
        "",
    );
    assert_eq!(handles(&db, T0, true), Vec::<String>::new());
    let again = dir.path().join("again");
    std::fs::create_dir(&again).expect("mkdir");
    let db = fixture(&again);
    expect(
        at_t0(&db).args(["invalidate", &handle(4), &simple]),
        0,
        "invalidated 1 session\n",
        "",
    );
    assert!(!handles(&db, T0, true).contains(&handle(4)));
}

#[test]
fn invalidate_reports_each_unknown_session_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let unknown = "00000000000000000000000000000000";
    expect(
        at_t0(&db).args(["invalidate", &handle(1), unknown]),
        1,
        "invalidated 1 session\n",
        &format!("error: no session with handle {unknown}\n"),
    );
    expect(
        at_t0(&db).args(["invalidate", &handle(1)]),
        1,
        "",
        &format!("error: no session with handle {}\n", handle(1)),
    );
    // Named by its id, the same: the error alone, nothing on stdout.
    let out = run(at_t0(&db).args(["invalidate", &id(1).to_string()]));
    assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: no session with that session id"),
        "{}",
        out.stderr
    );
    // Several, none found: the count of none says what happened to the set.
    expect(
        at_t0(&db).args(["invalidate", &handle(1), unknown]),
        1,
        "invalidated 0 sessions\n",
        &format!(
            "error: no session with handle {}\nerror: no session with handle {unknown}\n",
            handle(1)
        ),
    );
}

#[test]
fn invalidate_with_a_malformed_target_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let out = run(at_t0(&db).args(["invalidate", &handle(1), "not-a-handle"]));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            2,
            "",
            "error: \"not-a-ha…\" is not a valid handle or session id: expected a handle \
             (32 hex characters, or its first 6 or more) or a session id (a UUID, or a tower-sessions cookie's 22 \
                 characters)\n"
        )
    );
    assert_eq!(
        handles(&db, T0, false),
        [handle(2), handle(1), api_handle()]
    );
    // Targets and --principal together, or neither, are usage errors too.
    let out = run(at_t0(&db).args(["invalidate", &handle(1), "--principal", "alice"]));
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr.starts_with("error: the argument"),
        "{}",
        out.stderr
    );
    let out = run(at_t0(&db).arg("invalidate"));
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert_eq!(handles(&db, T0, false).len(), 3);
}

#[test]
fn invalidate_every_session_of_a_principal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    expect(
        at_t0(&db).args(["invalidate", "--principal", "alice"]),
        0,
        "invalidated 2 sessions of principal \"alice\"\n",
        "",
    );
    assert_eq!(handles(&db, T0, false), [api_handle()]);
    expect(
        at_t0(&db).args(["invalidate", "--principal", "alice"]),
        1,
        "",
        "error: principal \"alice\" has no live sessions\n",
    );
    // bob's only session is expired, not yet purged: there is no one to log out, as `list`
    // shows, but it goes all the same.
    let expired = handles(&db, T0, true).len();
    expect(
        at_t0(&db).args(["invalidate", "--principal", "bob"]),
        1,
        "",
        "error: principal \"bob\" has no live sessions; its expired sessions were removed\n",
    );
    assert_eq!(handles(&db, T0, true).len(), expired - 1);
}

#[test]
fn purge_removes_exactly_the_sessions_expired_as_of_the_given_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    expect(
        at_t0(&db).args(["purge", "--expired", "--dry-run"]),
        0,
        "would remove 2 expired sessions (dry run, nothing removed)\n",
        "",
    );
    assert_eq!(handles(&db, T0, true), [handle(3), handle(4)]);
    // What would purge remove in ten minutes? The session expiring at T0+5m as well.
    expect(
        on(&db).args([
            "--as-of",
            "2025-01-31T12:10:00Z",
            "purge",
            "--expired",
            "--dry-run",
        ]),
        0,
        "would remove 3 expired sessions (dry run, nothing removed)\n",
        "",
    );
    expect(
        at_t0(&db).args(["purge", "--expired"]),
        0,
        "removed 2 expired sessions\n",
        "",
    );
    assert_eq!(handles(&db, T0, true), Vec::<String>::new());
    assert_eq!(
        handles(&db, T0, false),
        [handle(2), handle(1), api_handle()]
    );
    // A session expires at its deadline: at T0+5m exactly, session 2 is gone, 1 is not.
    expect(
        on(&db).args(["--as-of", "2025-01-31T12:05:00Z", "purge", "--expired"]),
        0,
        "removed 1 expired session\n",
        "",
    );
    assert_eq!(handles(&db, T0, false), [handle(1), api_handle()]);
    expect(
        on(&db).args(["--as-of", "2025-01-31T12:05:00Z", "purge", "--expired"]),
        0,
        "removed 0 expired sessions\n",
        "",
    );
    // `purge` alone does nothing: --expired is required.
    let out = run(at_t0(&db).arg("purge"));
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(out.stderr.contains("--expired"), "{}", out.stderr);
    assert_eq!(handles(&db, T0, false).len(), 2);
}

#[test]
fn as_of_a_future_time_only_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = export_body(&db);
    let future = "2999-01-01T00:00:00Z";
    let refused = format!(
        "error: --as-of {future} is later than now: sessctl only reads as of a future time, \
         since writing then would act on sessions that are still live (to see what purge would \
         remove then: `purge --expired --dry-run`)\n"
    );
    // What would purge remove then? Every session; only counted.
    expect(
        on(&db).args(["--as-of", future, "purge", "--expired", "--dry-run"]),
        0,
        "would remove 5 expired sessions (dry run, nothing removed)\n",
        "",
    );
    let file = dir.path().join("backup.jsonl");
    fs::write(&file, run(at_t0(&db).arg("export")).stdout).expect("write");
    let writes: [&[&str]; 5] = [
        &["purge", "--expired"],
        &["invalidate", "--principal", "alice"],
        &["invalidate", &handle(1)],
        &["check", "--repair"],
        &["import", file.to_str().expect("utf-8 path")],
    ];
    for args in writes {
        expect(
            on(&db).args(["--as-of", future]).args(args),
            2,
            "",
            &refused,
        );
    }
    assert_eq!(export_body(&db), before, "nothing written");
    // Nor a demo, new or replacing a database.
    let demo = dir.path().join("demo.sessdb");
    expect(on(&demo).args(["--as-of", future, "demo"]), 2, "", &refused);
    assert!(!demo.exists());
    // Reads and dry runs as of then are fine.
    expect(
        on(&db)
            .args(["--as-of", future, "import", "--dry-run"])
            .arg(&file),
        0,
        "dry run, nothing written; would have imported 0, replaced 0, unchanged 3, skipped 0, \
         bad 0\n",
        "",
    );
    let out = run(on(&db).args(["--as-of", future, "stats", "--json"]));
    assert_eq!(json_lines(&out.stdout)[0]["expired"], 5);
}

/// Damages the fixture's indexes with sled directly, as a bug or a disk could.
fn damage(db: &Path, f: impl FnOnce(&sled::Db)) {
    let sled = open_raw_sled(db);
    f(&sled);
    sled.flush().expect("flush");
}

fn expiry_entry_of(sled: &sled::Db, n: u8) -> sled::IVec {
    let handle = id(n).handle();
    sled.open_tree("expiry")
        .expect("tree")
        .iter()
        .keys()
        .map(|k| k.expect("key"))
        .find(|k| k.ends_with(handle.as_bytes()))
        .expect("an expiry entry")
}

#[test]
fn check_passes_on_a_clean_database_and_reports_leftovers_without_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    expect(
        at_t0(&db).arg("check"),
        0,
        "checked 5 records: no problems\n",
        "",
    );
    // --repair on a clean database says it had nothing to do, not as if it had run.
    expect(
        at_t0(&db).args(["check", "--repair"]),
        0,
        "checked 5 records: no problems\nrepair: nothing to repair\n",
        "",
    );
    // A stale entry, as a crash between the write steps leaves: harmless.
    damage(&db, |sled| {
        let mut key = vec![0u8; 8];
        key.extend_from_slice(id(9).handle().as_bytes());
        sled.open_tree("expiry")
            .expect("tree")
            .insert(key, &[])
            .expect("insert");
    });
    expect(
        at_t0(&db).arg("check"),
        0,
        "checked 5 records: no problems\n  leftovers: 1 stale expiry entry and 0 stale principal \
         entries (harmless: a crash can leave them, readers ignore them, purge and --repair \
         remove them)\n",
        "",
    );
    expect(
        at_t0(&db).args(["check", "--repair"]),
        0,
        "checked 5 records: no problems\n  leftovers: 1 stale expiry entry and 0 stale principal \
         entries (harmless: a crash can leave them, readers ignore them, purge and --repair \
         remove them)\nrepair: added 0 index entries, removed 1 stale index entry\nafter repair: \
         checked 5 records: no problems\n",
        "",
    );
    expect(
        at_t0(&db).arg("check"),
        0,
        "checked 5 records: no problems\n",
        "",
    );
}

/// A record whose format byte this sessdb does not know is damage (a newer record format would
/// come with a newer database format, refused at open): `--repair` removes it with its index
/// entries, and the check passes again. Before, it was kept as "newer" and every later check
/// failed, though almost every garbage record starts with such a byte.
#[test]
fn repair_removes_a_record_of_an_unknown_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let h1 = handle(1);
    damage(&db, |sled| {
        let sessions = sled.open_tree("sessions").expect("tree");
        sessions
            .insert(id(1).handle().as_bytes(), &b"garbage!"[..])
            .expect("insert");
    });
    let reason = "unknown record format 103 (this database holds formats 1 and 2)";
    expect(
        at_t0(&db).args(["check", "--repair"]),
        0,
        &format!(
            "checked 5 records: 1 problem\n  problem: record {h1} cannot be decoded: {reason}\n  \
             leftovers: 1 stale expiry entry and 1 stale principal entry (harmless: a crash can \
             leave them, readers ignore them, purge and --repair remove them)\nrepair: removed undecodable record {h1} ({reason})\nrepair: added 0 index entries, \
             removed 2 stale index entries\nafter repair: checked 4 records: no problems\n"
        ),
        "",
    );
    expect(
        at_t0(&db).args(["show", &h1]),
        1,
        "",
        &format!("error: no session with handle {h1}\n"),
    );
}

#[test]
fn check_fails_with_exit_4_until_repair_fixes_a_missing_index_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    damage(&db, |sled| {
        let entry = expiry_entry_of(sled, 1);
        sled.open_tree("expiry")
            .expect("tree")
            .remove(entry)
            .expect("remove");
        sled.open_tree("principals")
            .expect("tree")
            .remove(
                b"bob\0"
                    .iter()
                    .chain(id(3).handle().as_bytes())
                    .copied()
                    .collect::<Vec<u8>>(),
            )
            .expect("remove");
    });
    let (h1, h3) = (handle(1), handle(3));
    let report = format!(
        "checked 5 records: 2 problems\n  problem: session {h1} has no expiry index entry\n  \
         problem: session {h3} has no principal index entry\n"
    );
    expect(
        at_t0(&db).arg("check"),
        4,
        &report,
        "error: the check found 2 problems (`sessctl check --repair` rebuilds the indexes and \
         removes undecodable records)\n",
    );
    expect(
        at_t0(&db).args(["check", "--repair"]),
        0,
        &format!(
            "{report}repair: added 2 index entries, removed 0 stale index entries\nafter \
             repair: checked 5 records: no problems\n"
        ),
        "",
    );
    expect(
        at_t0(&db).arg("check"),
        0,
        "checked 5 records: no problems\n",
        "",
    );
    assert_eq!(
        handles(&db, T0, false),
        [handle(2), handle(1), api_handle()]
    );
}

#[test]
fn an_undecodable_record_is_bad_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let bad = [7u8; 16];
    damage(&db, |sled| {
        sled.open_tree("sessions")
            .expect("tree")
            .insert(bad, b"\x01garbage".to_vec())
            .expect("insert");
    });
    let hex = "07".repeat(16);
    let out = run(at_t0(&db).arg("check"));
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stdout.starts_with(&format!(
            "checked 6 records: 1 problem\n  problem: record {hex} cannot be decoded: "
        )),
        "{}",
        out.stdout
    );
    let out = run(at_t0(&db).args(["show", &hex]));
    assert_eq!((out.code, out.stdout.as_str()), (4, ""));
    assert!(
        out.stderr.starts_with(&format!(
            "error: session {hex}: stored record is undecodable"
        )),
        "{}",
        out.stderr
    );
    // stats counts it; export leaves it out and says so with exit 4.
    let out = run(at_t0(&db).args(["stats", "--json"]));
    assert_eq!(json_lines(&out.stdout)[0]["undecodable"], 1);
    let out = run(at_t0(&db).args(["export", "--include-expired"]));
    assert_eq!(out.code, 4);
    assert_eq!(out.stdout.lines().count(), 7);
    assert_eq!(
        out.stdout.lines().last(),
        Some("{\"end\":\"sessdb-export\",\"sessions\":5}")
    );
    assert_eq!(
        out.stderr,
        "exported 5 sessions to stdout\nerror: left out 1 record that cannot be decoded (see \
         `sessctl check`)\n"
    );
    let out = run(at_t0(&db).args(["check", "--repair"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .ends_with("after repair: checked 5 records: no problems\n"),
        "{}",
        out.stdout
    );
}

const DEMO_AT_T0: &str = "\
created a demo database at {DB}
  120 sessions: 27 users with 99 sessions, 18 guests, 3 API clients
  83 live (20 expiring within 15m), 37 expired and not yet purged
  as of 2025-01-31T12:00:00Z

try next:
  export SESSCTL_DB={DB}
  sessctl --as-of 2025-01-31T12:00:00Z stats                                     # counts and size
  sessctl --as-of 2025-01-31T12:00:00Z list --limit 10                           # sessions, soonest expiry first
  sessctl --as-of 2025-01-31T12:00:00Z list --principal alice@example.com        # every session of one user
  sessctl --as-of 2025-01-31T12:00:00Z list --expiring-within 15m                # who is about to be logged out
  sessctl --as-of 2025-01-31T12:00:00Z list --expired                            # expired sessions not yet purged
  sessctl --as-of 2025-01-31T12:00:00Z show 4b27b0529d8bd7c24e810ea82677f0ed     # one session (an API client's cached login)
  sessctl --as-of 2025-01-31T12:00:00Z invalidate --principal alice@example.com  # log a user out everywhere
  sessctl --as-of 2025-01-31T12:00:00Z purge --expired --dry-run                 # what the cron job would remove
  sessctl --as-of 2025-01-31T12:00:00Z export --out backup.jsonl                 # a backup (created owner-only)
  sessctl --as-of 2025-01-31T12:00:00Z check                                     # verify records and indexes
  sessctl --as-of 2025-01-31T12:00:00Z tui                                       # browse it interactively
";

#[test]
fn demo_suggests_the_binary_that_ran_when_sessctl_is_not_on_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_sessctl");
    // As after `cargo run --release -p sessctl -- demo` in a checkout: no sessctl on PATH, the
    // binary under the current folder.
    let out = run(sessctl()
        .current_dir(dir.path())
        .env("PATH", "/usr/bin:/bin")
        .args(["--as-of", T0, "demo"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let tries = out.stdout.split_once("\n\n").expect("a blank line").1;
    assert_eq!(
        tries.lines().next(),
        Some(
            "try next (sessctl is not on your PATH, so these run it where it is; `cargo install \
             --path cli` in the sessdb checkout puts it there):"
        )
    );
    for line in tries.lines().skip(1) {
        assert!(
            line.starts_with(&format!("  {bin} --as-of {T0} ")),
            "{line}"
        );
    }
    // And what it suggests runs.
    let first = tries.lines().nth(1).expect("a suggestion");
    let args: Vec<&str> = first.split_whitespace().take_while(|w| *w != "#").collect();
    let out = run(assert_cmd::Command::new(args[0])
        .env_clear()
        .current_dir(dir.path())
        .args(&args[1..]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("database "), "{}", out.stdout);
}

#[test]
fn demo_makes_a_realistic_database_that_passes_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.sessdb");
    let shown = db.display().to_string();
    // This sessctl on PATH: the suggestions say `sessctl`.
    let bin = Path::new(env!("CARGO_BIN_EXE_sessctl"))
        .parent()
        .expect("the binary's folder");
    expect(
        at_t0(&db).env("PATH", bin).arg("demo"),
        0,
        &DEMO_AT_T0.replace("{DB}", &shown),
        "",
    );
    expect(
        at_t0(&db).arg("check"),
        0,
        "checked 120 records: no problems\n",
        "",
    );
    let out = run(at_t0(&db).args(["stats", "--json"]));
    let stats = &json_lines(&out.stdout)[0];
    assert_eq!(
        (stats["live"].as_u64(), stats["expired"].as_u64()),
        (Some(83), Some(37))
    );
    assert_eq!(stats["principals"], 30);
    // Several sessions per principal, nested data, some expiring soon.
    let alice = json_lines(
        &run(at_t0(&db).args(["list", "--json", "--principal", "alice@example.com"])).stdout,
    );
    let export = json_lines(&run(at_t0(&db).args(["export", "--include-expired"])).stdout);
    // The sessions: neither the header nor the end line.
    let all = &export[..export.len() - 1];
    assert_eq!(export[121]["sessions"], 120);
    let of_alice = all
        .iter()
        .filter(|s| s["principal"] == "alice@example.com")
        .count();
    assert!(of_alice >= 2, "{of_alice}");
    assert!(!alice.is_empty());
    assert!(all[1..]
        .iter()
        .any(|s| s["data"]["cart"]["items"].is_array()));
    assert!(all[1..]
        .iter()
        .any(|s| s["data"]["auth"]["mfa"]["verified"].is_boolean()));
    assert!(all[1..].iter().all(|s| s["remote_addr"].is_string()));
    let soon = run(at_t0(&db).args(["list", "--json", "--expiring-within", "15m"]));
    assert_eq!(json_lines(&soon.stdout).len(), 20);
    // The handle it suggests exists.
    let out = run(at_t0(&db).args(["show", "4b27b0529d8bd7c24e810ea82677f0ed"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out
        .stdout
        .contains("label              api-client:billing-sync\n"));
}

#[test]
fn demo_replaces_a_database_only_with_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.sessdb");
    let out = run(at_t0(&db).args(["demo", "--sessions", "10"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    expect(
        at_t0(&db).arg("demo"),
        2,
        "",
        &format!(
            "error: a database already exists at {}; pass --force to replace it with a demo \
             database\n",
            db.display()
        ),
    );
    let count = |db: &Path| {
        let out = run(at_t0(db).args(["stats", "--json"]));
        let s = &json_lines(&out.stdout)[0];
        s["live"].as_u64().expect("n") + s["expired"].as_u64().expect("n")
    };
    assert_eq!(count(&db), 10);
    let out = run(at_t0(&db).args(["demo", "--sessions", "7", "--force"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert!(out.stdout.starts_with(&format!(
        "created a demo database at {}\n  7 sessions: ",
        db.display()
    )));
    assert_eq!(count(&db), 7);

    // Never a database folder that holds anything sled did not make: --force removes the
    // folder, and the operator's backup next to the database would go with it.
    let backup = db.join("backup.jsonl");
    std::fs::write(&backup, "keep me").expect("write");
    std::fs::create_dir(db.join("old")).expect("mkdir");
    expect(
        at_t0(&db).args(["demo", "--sessions", "3", "--force"]),
        5,
        "",
        &format!(
            "error: {} holds files that are not part of the database (backup.jsonl, old); \
             --force replaces only a folder that holds nothing else: move them out, or choose \
             another --db\n",
            db.display()
        ),
    );
    assert_eq!(std::fs::read_to_string(&backup).expect("read"), "keep me");
    assert_eq!(count(&db), 7);
    std::fs::remove_file(&backup).expect("rm");
    std::fs::remove_dir(db.join("old")).expect("rmdir");

    // Never into a folder of other files, even with --force.
    let other = dir.path().join("home");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "keep me").expect("write");
    expect(
        at_t0(&other).args(["demo", "--force"]),
        5,
        "",
        &format!(
            "error: {} is a folder that holds other files, not a sessdb database; choose \
             another --db\n",
            other.display()
        ),
    );
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).expect("read"),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(&other).expect("read_dir").count(), 1);

    // Never a database that a process holds open.
    let held = sessdb::Store::open(&db).expect("open");
    expect(
        at_t0(&db).args(["demo", "--force"]),
        3,
        "",
        &format!(
            "error: the database at {} is in use by another process (sled allows one at a \
             time); demo --force does not replace a database in use: stop that process first, \
             or choose another --db\n",
            db.display()
        ),
    );
    drop(held);
    assert_eq!(count(&db), 7);

    // A --db that names the folder by `.` (`db/.`, or `.` inside it): the folder stays, what
    // it held is replaced. Before, its database was removed and then the removal of `db/.`
    // failed (EINVAL): nothing was left, and no demo was made.
    let out = run(at_t0(&db.join(".")).args(["demo", "--sessions", "5", "--force"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    assert_eq!(count(&db), 5);
    let out =
        run(at_t0(Path::new("."))
            .current_dir(&db)
            .args(["demo", "--sessions", "4", "--force"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    assert_eq!(count(&db), 4);

    // Out-of-range session counts are usage errors.
    let out = run(at_t0(&dir.path().join("x")).args(["demo", "--sessions", "0"]));
    assert_eq!(out.code, 2);
    assert!(!dir.path().join("x").exists());
}
