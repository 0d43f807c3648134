//! The read-only commands (stats, list, show) on the fixture, as of its fixed "now": exact
//! output, and proof that they write nothing.

mod common;

use common::{api_handle, at_t0, expect, fixture, handle, json_lines, on, run};

#[test]
fn stats_counts_live_expired_and_principals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let out = run(at_t0(&db).arg("stats"));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    // The size on disk depends on sled's allocation; everything else is exact.
    let (head, disk) = out.stdout.split_once("on disk").expect("an on-disk line");
    assert_eq!(
        head,
        format!(
            "\
database             {}
as of                2025-01-31T12:00:00Z
format version       2
live sessions        3
expired, not purged  2 (`sessctl purge --expired` removes them)
principals           3
",
            db.display()
        )
    );
    assert!(disk.ends_with(" bytes)\n"), "{disk:?}");

    let out = run(at_t0(&db).args(["stats", "--json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let stats = &json_lines(&out.stdout)[0];
    assert_eq!(stats["live"], 3);
    assert_eq!(stats["expired"], 2);
    assert_eq!(stats["principals"], 3);
    assert_eq!(stats["undecodable"], 0);
    assert_eq!(stats["format_version"], 2);
    assert_eq!(stats["as_of"], "2025-01-31T12:00:00.000Z");
    assert!(stats["bytes_on_disk"].as_u64().expect("a number") > 0);

    // An hour later everything but the API client has expired.
    let out = run(on(&db).args(["--as-of", "2025-01-31T13:00:00Z", "stats", "--json"]));
    let stats = &json_lines(&out.stdout)[0];
    assert_eq!(
        (stats["live"].as_u64(), stats["expired"].as_u64()),
        (Some(1), Some(4))
    );
    // As of a time later than now, nothing acts on the count: no purge to suggest (it would
    // be refused as of then).
    let out = run(on(&db).args(["--as-of", "2999-01-01T00:00:00Z", "stats"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert!(
        out.stdout.contains("\nexpired, not purged  5\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn list_shows_live_sessions_soonest_expiry_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let (h1, h2, api) = (handle(1), handle(2), api_handle());
    expect(
        at_t0(&db).arg("list"),
        0,
        &format!(
            "\
HANDLE                            PRINCIPAL    LABEL               REMOTE ADDR    LAST ACCESS  EXPIRES
{h2}  alice        ios-app             198.51.100.20  25m ago      in 5m
{h1}  alice        web                 203.0.113.7    10m ago      in 20m
{api}  svc:billing  api-client:billing  -              1h ago       in 6h
"
        ),
        "",
    );
}

#[test]
fn list_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let (h1, h2, h3, h4) = (handle(1), handle(2), handle(3), handle(4));
    // Expired sessions; the label's escape sequence is shown escaped, never sent to the
    // terminal.
    expect(
        at_t0(&db).args(["list", "--expired"]),
        0,
        &format!(
            "\
HANDLE                            PRINCIPAL  LABEL           REMOTE ADDR  LAST ACCESS  EXPIRES
{h3}  bob        -               2001:db8::1  1h ago       30m ago
{h4}  -          guest\\u{{1b}}[2J  -            40m ago      10m ago
"
        ),
        "",
    );
    expect(
        at_t0(&db).args(["list", "--principal", "alice", "--label", "web"]),
        0,
        &format!(
            "\
HANDLE                            PRINCIPAL  LABEL  REMOTE ADDR  LAST ACCESS  EXPIRES
{h1}  alice      web    203.0.113.7  10m ago      in 20m
"
        ),
        "",
    );
    expect(
        at_t0(&db).args(["list", "--expiring-within", "10m"]),
        0,
        &format!(
            "\
HANDLE                            PRINCIPAL  LABEL    REMOTE ADDR    LAST ACCESS  EXPIRES
{h2}  alice      ios-app  198.51.100.20  25m ago      in 5m
"
        ),
        "",
    );
    expect(
        at_t0(&db).args(["list", "--limit", "1"]),
        0,
        &format!(
            "\
HANDLE                            PRINCIPAL  LABEL    REMOTE ADDR    LAST ACCESS  EXPIRES
{h2}  alice      ios-app  198.51.100.20  25m ago      in 5m
"
        ),
        "more sessions match; --limit N shows more, --limit 0 shows all\n",
    );
    // With --json too (on stderr: the lines on stdout stay whole for jq), and as a note
    // only when more match.
    let out = run(at_t0(&db).args(["list", "--json", "--limit", "1"]));
    assert_eq!(
        (out.code, out.stdout.lines().count(), out.stderr.as_str()),
        (
            0,
            1,
            "more sessions match; --limit N shows more, --limit 0 shows all\n"
        )
    );
    let out = run(at_t0(&db).args(["list", "--json", "--limit", "3"]));
    assert_eq!(
        (out.code, out.stdout.lines().count(), out.stderr.as_str()),
        (0, 3, "")
    );
    expect(
        at_t0(&db).args(["list", "--principal", "nobody"]),
        0,
        "",
        "no sessions match\n",
    );
    // A limit equal to the number of matches is not "more".
    let out = run(at_t0(&db).args(["list", "--limit", "3"]));
    assert_eq!(
        (out.code, out.stdout.lines().count(), out.stderr.as_str()),
        (0, 4, "")
    );
}

#[test]
fn list_json_is_the_export_schema_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let out = run(at_t0(&db).args(["list", "--json", "--limit", "0"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let listed = json_lines(&out.stdout);
    let handles: Vec<&str> = listed
        .iter()
        .map(|s| s["handle"].as_str().expect("a handle"))
        .collect();
    assert_eq!(handles, [handle(2), handle(1), api_handle()]);
    // Every time has three fraction digits, so times sort as strings (`jq sort`).
    for s in &listed {
        for key in ["created", "last_access", "absolute_deadline", "expires_at"] {
            let t = s[key].as_str().expect("a time");
            assert!(
                t.len() == 24 && t.ends_with('Z') && &t[19..20] == ".",
                "{t}"
            );
        }
    }
    // Each object is exactly what the export writes for that session.
    let export = json_lines(&run(at_t0(&db).arg("export")).stdout);
    for session in &listed {
        assert!(export.contains(session), "{session}");
    }
    let out = run(at_t0(&db).args(["list", "--json", "--expired"]));
    assert_eq!(json_lines(&out.stdout).len(), 2);
    // No session: no output at all, so `jq` sees an empty stream.
    expect(
        at_t0(&db).args(["list", "--json", "--principal", "nobody"]),
        0,
        "",
        "",
    );
}

#[test]
fn show_by_handle_and_by_session_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let h1 = handle(1);
    let pretty = format!(
        "\
handle             {h1}
principal          alice
label              web
remote address     203.0.113.7
user agent         Mozilla/5.0 (X11; Linux x86_64)
created            2025-01-31T11:50:00Z  (10m ago)
last access        2025-01-31T11:50:00Z  (10m ago)
idle timeout       30m
absolute deadline  2025-02-01T11:50:00Z  (in 23h 50m)
expires            2025-01-31T12:20:00Z  (in 20m)
version            1
size               141 B
data
  {{
    \"cart\": [
      1,
      2,
      3
    ],
    \"prefs\": {{
      \"lang\": \"en-GB\",
      \"theme\": \"dark\"
    }}
  }}
"
    );
    expect(at_t0(&db).args(["show", &h1]), 0, &pretty, "");
    // Upper case, and the raw session id as pasted from a cookie, name the same session.
    expect(
        at_t0(&db).args(["show", &h1.to_uppercase()]),
        0,
        &pretty,
        "",
    );
    let id = common::id(1).to_string();
    expect(at_t0(&db).args(["show", &id]), 0, &pretty, "");
    // The same id in a tower-sessions cookie: its 16 bytes in unpadded base64url.
    let cookie = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(common::id(1).as_bytes())
    };
    expect(at_t0(&db).args(["show", &cookie]), 0, &pretty, "");
    // The id in the UUID's simple form (32 hex characters, as a handle is): no session has
    // that handle, so it is the session id.
    let simple = common::id(1).to_string().replace('-', "");
    assert_eq!(simple.len(), 32);
    expect(at_t0(&db).args(["show", &simple]), 0, &pretty, "");
    // And when neither reading names a session, what was typed is said as the handle.
    let unknown = "0123456789abcdef0123456789abcdef";
    expect(
        at_t0(&db).args(["show", unknown]),
        1,
        "",
        &format!("error: no session with handle {unknown}\n"),
    );

    let out = run(at_t0(&db).args(["show", &id, "--json"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(
        out.stdout,
        format!(
            // The export format's documented order, handle first.
            "{{\"handle\":\"{h1}\",\"principal\":\"alice\",\"label\":\"web\",\
             \"remote_addr\":\"203.0.113.7\",\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64)\",\
             \"created\":\"2025-01-31T11:50:00.000Z\",\"last_access\":\"2025-01-31T11:50:00.000Z\",\
             \"idle_timeout_s\":1800,\"absolute_deadline\":\"2025-02-01T11:50:00.000Z\",\
             \"expires_at\":\"2025-01-31T12:20:00.000Z\",\"version\":1,\
             \"data\":{{\"cart\":[1,2,3],\"prefs\":{{\"lang\":\"en-GB\",\"theme\":\"dark\"}}}}}}\n"
        )
    );
    // The raw id is a secret: it never appears in the output.
    assert!(!out.stdout.contains(&id));
}

#[test]
fn show_an_expired_session_without_deleting_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let h4 = handle(4);
    expect(
        at_t0(&db).args(["show", &h4]),
        0,
        &format!(
            "\
handle             {h4}
principal          -
label              guest\\u{{1b}}[2J
remote address     -
user agent         -
created            2025-01-31T11:20:00Z  (40m ago)
last access        2025-01-31T11:20:00Z  (40m ago)
idle timeout       30m
absolute deadline  2025-02-01T11:20:00Z  (in 23h 20m)
expires            2025-01-31T11:50:00Z  (expired 10m ago, not yet purged)
version            1
size               60 B
data
  {{
    \"seed\": {{
      \"$base64\": \"AAEC/w==\"
    }}
  }}
"
        ),
        "",
    );
    // Still there: reading an expired session is not a lazy deletion.
    let out = run(at_t0(&db).args(["stats", "--json"]));
    assert_eq!(json_lines(&out.stdout)[0]["expired"], 2);
}

#[test]
fn show_unknown_sessions_exit_1_and_never_print_the_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    expect(
        at_t0(&db).args(["show", "00000000000000000000000000000000"]),
        1,
        "",
        "error: no session with handle 00000000000000000000000000000000\n",
    );
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let out = run(at_t0(&db).args(["show", id]));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            1,
            "",
            "error: no session with that session id (handle a9fc34d2eacf7c29d03525b07c6d29c1)\n"
        )
    );
}

#[test]
fn malformed_handles_and_ids_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    for bad in ["zzz", "not-a-uuid-but-a-long-secret"] {
        let out = run(at_t0(&db).args(["show", bad]));
        assert_eq!((out.code, out.stdout.as_str()), (2, ""), "{bad}");
        assert!(
            out.stderr.ends_with(
                " is not a valid handle or session id: expected a handle (32 hex characters, or \
                 its first 6 or more) or a session id (a UUID, or a tower-sessions cookie's 22 \
                 characters)\n"
            ),
            "{}",
            out.stderr
        );
        // A pasted token is shortened, never echoed whole.
        assert!(!out.stderr.contains("long-secret"), "{}", out.stderr);
    }
    expect(
        at_t0(&db).args(["show", "zzz"]),
        2,
        "",
        "error: \"zzz\" is not a valid handle or session id: expected a handle (32 hex \
         characters, or its first 6 or more) or a session id (a UUID, or a tower-sessions cookie's 22 \
                 characters)\n",
    );
    // One character too many for a handle: shown cut short, so the reason names its length.
    expect(
        at_t0(&db).args(["show", "cc8cd41cef907c4d216069122c4b89930"]),
        2,
        "",
        "error: \"cc8cd41c…\" is not a valid handle or session id: more hex characters than a \
         handle has (32)\n",
    );
    // A prefix too short to be one says how long it must be.
    expect(
        at_t0(&db).args(["show", "def25"]),
        2,
        "",
        "error: \"def25\" is not a valid handle or session id: a handle prefix needs at least 6 \
         hex characters (or give all 32, or a session id)\n",
    );
}

#[test]
fn output_has_no_colour_when_stdout_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    for args in [
        &["list", "--limit", "0"][..],
        &["list", "--expired"],
        &["check"],
    ] {
        let out = run(at_t0(&db).args(args));
        assert_eq!(out.code, 0);
        assert!(!out.stdout.contains('\u{1b}'), "{args:?}: {:?}", out.stdout);
        assert!(out.stdout.contains("HANDLE") || out.stdout.contains("checked"));
    }
}

#[test]
fn read_commands_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let before = (
        common::export_body(&db),
        run(at_t0(&db).arg("check")).stdout,
    );
    for args in [
        &["stats"][..],
        &["list", "--expired"],
        &["show", &handle(3)],
        &["export", "--include-expired"],
        &["check"],
        &["purge", "--expired", "--dry-run"],
    ] {
        // A year later every session is expired, and still none is deleted lazily. (sled
        // itself may rewrite its snapshot file on open; the sessions and indexes stay.)
        let out = run(on(&db).args(["--as-of", "2026-01-31T12:00:00Z"]).args(args));
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let after = (
        common::export_body(&db),
        run(at_t0(&db).arg("check")).stdout,
    );
    assert_eq!(after, before);
    assert_eq!(before.0.lines().count(), 5);
    assert_eq!(before.1, "checked 5 records: no problems\n");
}

#[test]
fn list_orders_exactly_by_expiry_within_the_index_buckets() {
    // The expiry index groups deadlines in 10-second buckets, ordered by handle inside one;
    // the listing must still be soonest first.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("buckets.sessdb");
    let (a, b) = (common::id(10), common::id(11));
    let (low, high) = if a.handle() < b.handle() {
        (a, b)
    } else {
        (b, a)
    };
    {
        let clock = sessdb::ManualClock::at(common::t0());
        let store = sessdb::Store::builder()
            .clock(clock.clone())
            .open(&db)
            .expect("open");
        // Both expire between T0+30m and T0+30m10s; the higher handle expires first.
        for (id, seconds) in [(low, 9), (high, 1)] {
            clock.set_ms(
                i64::try_from(common::t0().unix_timestamp_nanos() / 1_000_000).expect("fits")
                    + seconds * 1000,
            );
            let mut s = store.create_with_id(id);
            s.save().expect("save");
        }
    }
    let out = run(at_t0(&db).args(["list", "--json"]));
    let order: Vec<String> = json_lines(&out.stdout)
        .iter()
        .map(|s| s["handle"].as_str().expect("handle").to_string())
        .collect();
    assert_eq!(order, [high.handle().to_string(), low.handle().to_string()]);
}

#[test]
fn show_and_invalidate_accept_the_start_of_a_handle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture(dir.path());
    let h1 = handle(1);
    let full = run(at_t0(&db).args(["show", &h1]));
    expect(at_t0(&db).args(["show", &h1[..8]]), 0, &full.stdout, "");
    expect(
        at_t0(&db).args(["show", "abcdef01"]),
        1,
        "",
        "error: no session with a handle starting with abcdef01\n",
    );
    // Fewer than six characters are not taken as a prefix.
    let out = run(at_t0(&db).args(["show", &h1[..5]]));
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    // Every name is resolved before anything is invalidated, and the error says so.
    expect(
        at_t0(&db).args(["invalidate", &h1, "abcdef01"]),
        1,
        "",
        "error: no session with a handle starting with abcdef01; nothing was invalidated\n",
    );
    expect(
        at_t0(&db).args(["invalidate", &h1[..8], &handle(3)[..10], &h1]),
        0,
        "invalidated 2 sessions\n",
        "",
    );
}

#[test]
fn an_ambiguous_handle_prefix_is_a_usage_error() {
    // Two ids whose handles share their first six hex characters (a birthday search).
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u128..)
        .find_map(|n| {
            let id = sessdb::SessionId::from_bytes(n.to_be_bytes());
            let prefix = id.handle().to_string()[..6].to_string();
            seen.insert(prefix, id).map(|other| (other, id))
        })
        .expect("a collision");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("twins.sessdb");
    {
        let store = sessdb::Store::open(&db).expect("open");
        for id in [a, b] {
            store.create_with_id(id).save().expect("save");
        }
    }
    let prefix = &a.handle().to_string()[..6];
    let out = run(on(&db).args(["show", prefix]));
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    assert!(
        out.stderr.starts_with(&format!(
            "error: {prefix} is the start of several handles ("
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(", ...); give more of it\n"),
        "{}",
        out.stderr
    );
    let out = run(on(&db).args(["invalidate", prefix]));
    assert_eq!(out.code, 2);
    let out = run(on(&db).args(["show", &a.handle().to_string()[..12]]));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// A listing of more than one page (1,000 sessions) keeps its columns where they are: the
/// first page is laid out for the widest values a column shows, not for its own.
#[test]
fn a_listing_of_several_pages_keeps_its_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("many.sessdb");
    {
        let store = sessdb::Store::builder()
            .clock(sessdb::ManualClock::at(common::t0()))
            .open(&db)
            .expect("open");
        for i in 0..1_100u32 {
            let mut s = store.create();
            // Short values on the first page, longer ones after it.
            let long = i >= 1_050;
            let principal = if long {
                format!("user-{i}@example.com")
            } else {
                "u".into()
            };
            s.set_principal(Some(&principal)).expect("principal");
            s.set_label(Some(if long { "a longer label" } else { "w" }))
                .expect("label");
            s.set_idle_timeout(std::time::Duration::from_secs(60 + u64::from(i)));
            s.save().expect("save");
        }
        store.flush().expect("flush");
    }
    let out = run(at_t0(&db).args(["list", "--limit", "0"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1_101);
    // Where the LABEL column starts on the header, it starts on every row.
    let label_at = lines[0].find("LABEL").expect("a header");
    for line in &lines[1..] {
        let before = &line[..label_at];
        assert!(before.ends_with("  "), "{line:?} at {label_at}");
        assert_ne!(line.as_bytes()[label_at], b' ', "{line:?} at {label_at}");
    }
}

/// A domain login with a backslash (`CORP\tom`) and a principal with a tab where the
/// backslash and `t` are: before, both showed as `CORP\tom`, and an operator who logged out
/// the one typed so ended another's sessions than the one meant. Now the backslash before `t` is
/// doubled, what is shown names nothing, and sessctl says how to type it.
#[test]
fn a_backslash_and_an_escape_never_show_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    {
        let store = sessdb::Store::open(&db).expect("open");
        for (principal, label) in [("CORP\\tom", "domain"), ("CORP\tom", "tab")] {
            let mut s = store.create();
            s.set_principal(Some(principal)).expect("principal");
            s.set_label(Some(label)).expect("label");
            s.save().expect("save");
        }
    }
    let out = run(on(&db).arg("list"));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let row = |label: &str| {
        let line = out.stdout.lines().find(|l| l.contains(label));
        line.unwrap_or_else(|| panic!("no {label} row in\n{}", out.stdout))
            .to_string()
    };
    assert!(row(" domain ").contains(" CORP\\\\tom "), "{}", out.stdout);
    assert!(row(" tab ").contains(" CORP\\tom "), "{}", out.stdout);

    // Typed as shown, the domain login names no one, and the hint's quoting ($'CORP\\tom',
    // which the shell makes `CORP\tom`) names it alone.
    let out = run(on(&db).args(["invalidate", "--principal", "CORP\\\\tom"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .ends_with("quoting: --principal $'CORP\\\\tom')\n"),
        "{}",
        out.stderr
    );
    expect(
        on(&db).args(["invalidate", "--principal", "CORP\\tom"]),
        0,
        "invalidated 1 session of principal \"CORP\\\\tom\"\n",
        "",
    );
    let left = run(on(&db).args(["list", "--json"]));
    let left = json_lines(&left.stdout);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["principal"], "CORP\tom");
}

/// Text from the database as a terminal would show it, in the TUI's form: a CJK principal
/// (two cells a character) keeps the columns after it in line, and a direction override, which
/// would make one principal read as another, is shown escaped like a control character.
#[test]
fn wide_and_invisible_characters_keep_the_table_honest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    {
        let store = sessdb::Store::open(&db).expect("open");
        for (principal, label) in [
            ("漢字テスト", "cjk"),
            ("adm\u{202e}nimda", "rtl"),
            ("bob", "ascii"),
        ] {
            let mut s = store.create();
            s.set_principal(Some(principal)).expect("principal");
            s.set_label(Some(label)).expect("label");
            // In the data too: JSON escapes neither the override nor a C1 control (CSI).
            s.insert("note", &format!("{principal} \u{9b}31m"))
                .expect("insert");
            s.save().expect("save");
        }
    }
    let rtl = run(on(&db).args(["list", "--label", "rtl", "--json"]));
    let handle = json_lines(&rtl.stdout)[0]["handle"]
        .as_str()
        .expect("handle")
        .to_string();
    let shown = run(on(&db).args(["show", &handle]));
    assert_eq!((shown.code, shown.stderr.as_str()), (0, ""));
    assert!(
        shown
            .stdout
            .contains("\"note\": \"adm\\u{202e}nimda \\u{9b}31m\""),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains(['\u{202e}', '\u{9b}']));
    let out = run(on(&db).arg("list"));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
    let label_at = |line: &str, label: &str| width(&line[..line.find(label).expect(label)]);
    let header = label_at(&out.stdout, "LABEL");
    for label in ["cjk", "rtl", "ascii"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {label} ")))
            .unwrap_or_else(|| panic!("no {label} row in\n{}", out.stdout));
        assert_eq!(label_at(line, label), header, "{}", out.stdout);
    }
    assert!(out.stdout.contains("adm\\u{202e}nimda"), "{}", out.stdout);
    assert!(!out.stdout.contains('\u{202e}'));
    // Typed back as shown, it names no one (a backslash is a backslash), and sessctl says how
    // to type the character itself; so typed, it finds the session.
    expect(
        on(&db).args(["list", "--principal", "adm\\u{202e}nimda"]),
        0,
        "",
        "no sessions match\nnote: sessctl shows invisible characters escaped, and doubles a \
         backslash that would read as an escape, as in adm\\u{202e}nimda; to give the text \
         itself, use the shell's $'…' quoting: --principal $'adm\\u202enimda'\n",
    );
    let out = run(on(&db).args(["list", "--principal", "adm\u{202e}nimda"]));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert!(out.stdout.contains(" rtl "), "{}", out.stdout);
    let out = run(on(&db).args(["invalidate", "--principal", "adm\\u{202e}nimda"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .ends_with("quoting: --principal $'adm\\u202enimda')\n"),
        "{}",
        out.stderr
    );
}
