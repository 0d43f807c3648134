//! The admin interface: export/import, check/repair, show, stats.

mod common;

use std::io::Cursor as Io;

use common::{body, end_line, fixture};
use sessdb::{Admin, ImportOptions, OnConflict, Store, Target, Value};

fn populate(store: &Store) -> Vec<sessdb::SessionId> {
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut s = store.create();
        if i % 3 != 0 {
            s.set_principal(Some(&format!("user{}", i % 4))).unwrap();
        }
        s.set_label(Some("web")).unwrap();
        s.set_remote_addr(Some("203.0.113.7")).unwrap();
        s.insert("cart", &vec![i, i + 1]).unwrap();
        s.insert_value("raw", Value::Bytes(vec![0, 1, 255]))
            .unwrap();
        s.insert("nested", &serde_json::json!({"a": {"b": [1.5, null, "x"]}}))
            .unwrap();
        if i % 5 == 0 {
            s.set_idle_timeout(std::time::Duration::from_millis(1500));
        }
        s.save().unwrap();
        ids.push(*s.id());
    }
    ids
}

fn export(store: &Store, include_expired: bool) -> String {
    let mut out = Vec::new();
    store.export(&mut out, include_expired).unwrap();
    String::from_utf8(out).unwrap()
}

/// A session with no idle timeout (`Duration::MAX`, stored as i64::MAX ms, which is no whole
/// number of seconds) exports as whole seconds, an integer as the schema has it, and imports
/// back unchanged; so does any session into a store whose size limit is `usize::MAX` (the line
/// limit saturates). The float that exports of earlier builds held imports as none too.
#[test]
fn extreme_settings_export_and_import_back() {
    let a = fixture();
    let mut s = a.store.create();
    s.set_idle_timeout(std::time::Duration::MAX);
    s.insert("k", &"v").unwrap();
    s.save().unwrap();
    let text = export(&a.store, false);
    assert!(
        body(&text)[0].contains("\"idle_timeout_s\":9223372036854775,"),
        "{text}"
    );
    let earlier = text.replace(
        "\"idle_timeout_s\":9223372036854775,",
        "\"idle_timeout_s\":9223372036854776.0,",
    );
    let b = common::fixture_with(Store::builder().max_session_bytes(usize::MAX));
    b.clock.set_ms(a.clock_ms());
    let report = b
        .store
        .import(&mut Io::new(text.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!(
        (report.imported, report.bad.len()),
        (1, 0),
        "{:?}",
        report.bad
    );
    let back = b.store.load(s.id()).unwrap().expect("imported");
    assert_eq!(back.idle_timeout(), s.idle_timeout());
    assert_eq!(body(&export(&b.store, false)), body(&text));
    let c = common::fixture_with(Store::builder());
    c.clock.set_ms(a.clock_ms());
    let report = c
        .store
        .import(&mut Io::new(earlier.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((report.imported, report.bad.len()), (1, 0));
    assert_eq!(body(&export(&c.store, false)), body(&text));
}

/// A file of garbage: the report names the first `MAX_REPORTED_BAD_LINES` bad lines and
/// counts the rest, and nothing is written; with `skip_bad` the good lines among them still
/// import.
#[test]
fn a_file_of_garbage_gives_a_bounded_report() {
    let a = fixture();
    populate(&a.store);
    let good = export(&a.store, false);
    let header = good.lines().next().unwrap();
    let sessions = body(&good);
    let garbage = "x\n".repeat(sessdb::MAX_REPORTED_BAD_LINES + 500);
    // The end line counts the garbage too: every line of the file is one of its sessions'.
    let text = format!(
        "{header}\n{garbage}{}\n{}\n",
        sessions.join("\n"),
        end_line(sessdb::MAX_REPORTED_BAD_LINES + 500 + sessions.len())
    );
    for skip_bad in [false, true] {
        let b = fixture();
        b.clock.set_ms(a.clock_ms());
        let opts = ImportOptions {
            skip_bad,
            ..ImportOptions::default()
        };
        let report = b
            .store
            .import(&mut Io::new(text.as_bytes()), &opts)
            .unwrap();
        assert_eq!(report.bad.len(), sessdb::MAX_REPORTED_BAD_LINES);
        assert_eq!(report.bad_lines, 1500);
        assert_eq!(report.bad_total(), 1500);
        assert_eq!((report.bad[0].line, report.bad[999].line), (2, 1001));
        let live = body(&good).len() as u64;
        assert_eq!(
            report.imported,
            if skip_bad { live } else { 0 },
            "{skip_bad}"
        );
        assert_eq!(report.written, skip_bad);
        let dry = ImportOptions {
            dry_run: true,
            skip_bad,
            ..ImportOptions::default()
        };
        let checked = sessdb::validate_export(&mut Io::new(text.as_bytes()), &dry).unwrap();
        assert_eq!(
            (checked.bad_lines, checked.imported),
            (1500, report.imported)
        );
    }
}

#[test]
fn export_import_export_is_identical_apart_from_the_header() {
    let a = fixture();
    populate(&a.store);
    a.advance(2); // some sessions expired: the export with --include-expired keeps them
    let first = export(&a.store, true);
    let header: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], "sessdb-export");
    assert_eq!(header["version"], 2);
    assert_eq!(body(&first).len(), 20);

    let b = fixture();
    b.clock.set_ms(a.clock_ms());
    let report = b
        .store
        .import(&mut Io::new(first.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((report.imported, report.bad.len()), (20, 0));
    assert!(report.written);
    let second = export(&b.store, true);
    assert_eq!(body(&first), body(&second));
    assert!(b.store.check().unwrap().is_clean());

    // A second import changes nothing.
    let writes = b.store.counters().writes;
    let again = b
        .store
        .import(&mut Io::new(first.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!(
        (again.imported, again.unchanged, again.written),
        (0, 20, false)
    );
    assert_eq!(b.store.counters().writes, writes);

    // Without --include-expired, the 4 expired sessions are left out.
    let live = export(&a.store, false);
    assert_eq!(body(&live).len(), 16);
}

#[test]
fn export_line_has_the_documented_fields_and_no_raw_id() {
    let f = fixture();
    let ids = populate(&f.store);
    let text = export(&f.store, true);
    let line: serde_json::Value = serde_json::from_str(body(&text)[0]).unwrap();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "handle",
        "principal",
        "label",
        "remote_addr",
        "user_agent",
        "created",
        "last_access",
        "idle_timeout_s",
        "absolute_deadline",
        "expires_at",
        "version",
        "data",
    ] {
        assert!(keys.contains(&k), "missing {k}");
    }
    assert_eq!(line["data"]["raw"], serde_json::json!({"$base64": "AAH/"}));
    for id in ids {
        assert!(!text.contains(&id.to_string()));
        assert!(!text.contains(
            &id.as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
    }
}

#[test]
fn dry_run_and_bad_lines_write_nothing() {
    let a = fixture();
    populate(&a.store);
    let good = export(&a.store, true);
    let b = fixture();
    let dry = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    let report = b.store.import(&mut Io::new(good.as_bytes()), &dry).unwrap();
    assert_eq!((report.imported, report.written), (20, false));
    assert_eq!(b.store.stats().unwrap().live, 0);

    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    lines[3] = "{garbage".into();
    lines[5] = lines[4].clone(); // duplicate handle
    let truncated = lines[7][..lines[7].len() / 2].to_string();
    lines[7] = truncated;
    let text = lines.join("\n");
    let report = b
        .store
        .import(&mut Io::new(text.as_bytes()), &ImportOptions::default())
        .unwrap();
    let bad: Vec<u64> = report.bad.iter().map(|l| l.line).collect();
    assert_eq!(bad, vec![4, 6, 8]);
    assert!(
        report.bad[1].reason.contains("duplicate handle"),
        "{:?}",
        report.bad[1]
    );
    assert!(
        report.bad[2].reason.starts_with("truncated"),
        "{:?}",
        report.bad[2]
    );
    assert!(!report.written);
    assert_eq!(
        b.store.stats().unwrap().live,
        0,
        "nothing written from a file with bad lines"
    );

    let skip = ImportOptions {
        skip_bad: true,
        ..ImportOptions::default()
    };
    let report = b
        .store
        .import(&mut Io::new(text.as_bytes()), &skip)
        .unwrap();
    assert_eq!((report.imported, report.bad.len()), (17, 3));
}

#[test]
fn wrong_header_invalid_utf8_and_overlong_lines_are_reported() {
    let f = fixture_small();
    let store = &f.store;
    let r = store
        .import(
            &mut Io::new(&b"{\"format\":\"other\",\"version\":1,\"exported_at\":\"x\"}\n"[..]),
            &ImportOptions::default(),
        )
        .unwrap();
    assert_eq!(r.bad[0].line, 1);
    assert!(
        r.bad[0].reason.contains("not a sessdb export"),
        "{:?}",
        r.bad
    );
    let r = store
        .import(&mut Io::new(&b""[..]), &ImportOptions::default())
        .unwrap();
    assert!(r.bad[0].reason.contains("no export header"));
    let mut text = export(store, true).into_bytes();
    text.extend_from_slice(b"\xff\xfe\n");
    text.extend_from_slice(&vec![b'x'; 200_000]);
    text.push(b'\n');
    let r = store
        .import(&mut Io::new(&text[..]), &ImportOptions::default())
        .unwrap();
    assert_eq!(r.bad.len(), 2);
    assert_eq!(r.bad[0].reason, "not valid UTF-8");
    assert!(r.bad[1].reason.contains("over the limit"), "{:?}", r.bad[1]);
}

fn fixture_small() -> common::Fixture {
    common::fixture_with(Store::builder().max_session_bytes(1024))
}

/// A backup restored into a store of a smaller size limit: a session over that limit is
/// refused for its size, naming the limit to raise, and not for the length of its line, a
/// number no setting names (the longest line read leaves room for any session under the limit,
/// and 64 KiB more).
#[test]
fn a_session_over_a_smaller_stores_limit_is_refused_for_its_size() {
    let a = fixture();
    let mut s = a.store.create();
    s.insert("text", &"a".repeat(20_000)).unwrap();
    s.save().unwrap();
    let text = export(&a.store, false);
    // Longer than 8 times the small limit and 1 KiB: more than a line limit without the slack.
    let line = body(&text)[0].len();
    assert!(line > 10 * 1024, "the line is {line} bytes");
    let b = fixture_small();
    b.clock.set_ms(a.clock_ms());
    let r = b
        .store
        .import(&mut Io::new(text.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((r.imported, r.bad.len()), (0, 1), "{:?}", r.bad);
    let reason = &r.bad[0].reason;
    assert!(
        reason.starts_with("session is ") && reason.ends_with(", over the limit of 1024 bytes"),
        "{reason}"
    );
}

#[test]
fn import_conflicts_skip_or_replace() {
    let a = fixture();
    let ids = populate(&a.store);
    let text = export(&a.store, true);
    let mut s = a.store.load(&ids[1]).unwrap().unwrap();
    s.insert("changed", &true).unwrap();
    s.save().unwrap();
    let r = a
        .store
        .import(&mut Io::new(text.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((r.unchanged, r.skipped, r.replaced), (19, 1, 0));
    assert!(a
        .store
        .load(&ids[1])
        .unwrap()
        .unwrap()
        .get_value("changed")
        .is_some());
    let replace = ImportOptions {
        on_conflict: OnConflict::Replace,
        ..ImportOptions::default()
    };
    let r = a
        .store
        .import(&mut Io::new(text.as_bytes()), &replace)
        .unwrap();
    assert_eq!((r.unchanged, r.replaced), (19, 1));
    assert!(a
        .store
        .load(&ids[1])
        .unwrap()
        .unwrap()
        .get_value("changed")
        .is_none());
    assert!(a.store.check().unwrap().is_clean());
}

/// Skip keeps a stored *session*: a record that has expired and is not yet purged, or one that
/// cannot be read, is none (no load returns it), so the backup's session is written over it
/// and counted as imported. Before, both were "kept" and the backup's session lost.
#[test]
fn import_skip_writes_over_an_expired_or_unreadable_record() {
    let src = fixture();
    let mut s = src.store.create();
    s.insert("cart", &vec![1, 2, 3]).unwrap();
    s.save().unwrap();
    let id = *s.id();
    let early = export(&src.store, true);
    // Used on: a later backup holds its newer state, live 20 minutes longer.
    src.advance(20 * 60);
    let mut s = src.store.load(&id).unwrap().unwrap();
    s.insert("cart", &vec![4]).unwrap();
    s.save().unwrap();
    let late = export(&src.store, true);

    let dst = fixture();
    let r = dst
        .store
        .import(&mut Io::new(early.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!(r.imported, 1);
    dst.advance(40 * 60); // the early state expired at 30 minutes, the late lives to 50
    let r = dst
        .store
        .import(&mut Io::new(late.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((r.imported, r.skipped, r.replaced), (1, 0, 0), "{r:?}");
    let restored = dst.store.load(&id).unwrap().expect("the backup's session");
    assert_eq!(restored.get::<Vec<i32>>("cart").unwrap(), Some(vec![4]));
    assert!(dst.store.check().unwrap().is_clean());
    assert_eq!(r.expired, 0);
    // Imported after its deadline, it is written and counted as expired.
    let later = fixture();
    later.advance(60 * 60);
    let r = later
        .store
        .import(&mut Io::new(late.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((r.imported, r.expired), (1, 1), "{r:?}");
    assert_eq!(Admin::stats(&later.store).unwrap().expired, 1);

    // A record no load can read, under the session's key.
    let handle = id.handle();
    let path = dst.path();
    let common::Fixture { dir, clock, store } = dst;
    drop((store, restored));
    {
        let raw = common::open_raw_sled(&path);
        let sessions = raw.open_tree("sessions").unwrap();
        sessions.insert(handle.as_bytes(), &[0xffu8][..]).unwrap();
        raw.flush().unwrap();
    }
    let store = Store::builder().clock(clock).open(&path).unwrap();
    assert!(store.load(&id).unwrap().is_none());
    let r = store
        .import(&mut Io::new(late.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((r.imported, r.skipped, r.replaced), (1, 0, 0), "{r:?}");
    assert!(store.load(&id).unwrap().is_some());
    assert!(store.check().unwrap().is_clean());
    drop(dir);
}

/// A session written over a stored one, replacing a live session or over an expired record,
/// that has itself ended since the export counts as expired, as one written anew does: the
/// report tells its user that such sessions were restored only for a purge to remove.
#[test]
fn a_session_written_over_a_stored_one_counts_as_expired_if_it_has_ended() {
    let src = fixture();
    let mut s = src.store.create();
    s.insert("cart", &vec![1]).unwrap();
    s.save().unwrap();
    let id = *s.id();
    let early = export(&src.store, true); // ends at 30 minutes
    src.advance(20 * 60);
    let mut s = src.store.load(&id).unwrap().unwrap();
    s.insert("cart", &vec![2]).unwrap();
    s.save().unwrap();
    let late = export(&src.store, true); // ends at 50 minutes

    // Replaced: the stored (late) session is live at 40 minutes, the early one has ended.
    let dst = fixture();
    let r = dst
        .store
        .import(&mut Io::new(late.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((r.imported, r.expired), (1, 0), "{r:?}");
    dst.advance(40 * 60);
    let replace = ImportOptions {
        on_conflict: OnConflict::Replace,
        ..ImportOptions::default()
    };
    let r = dst
        .store
        .import(&mut Io::new(early.as_bytes()), &replace)
        .unwrap();
    assert_eq!((r.replaced, r.imported, r.expired), (1, 0, 1), "{r:?}");

    // Over an expired record: at an hour both have ended.
    let dst = fixture();
    dst.store
        .import(&mut Io::new(early.as_bytes()), &ImportOptions::default())
        .unwrap();
    dst.advance(60 * 60);
    let r = dst
        .store
        .import(&mut Io::new(late.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((r.replaced, r.imported, r.expired), (0, 1, 1), "{r:?}");
}

#[test]
fn show_by_handle_or_id() {
    let f = fixture();
    let ids = populate(&f.store);
    let by_id = f.store.show(&Target::Id(ids[2])).unwrap().unwrap();
    let by_handle: Target = ids[2].handle().to_string().parse().unwrap();
    assert_eq!(f.store.show(&by_handle).unwrap().unwrap(), by_id);
    let parsed: Target = ids[2].to_string().parse().unwrap();
    assert_eq!(parsed, Target::Id(ids[2]));
    assert!(f
        .store
        .show(&Target::Id(sessdb::SessionId::random()))
        .unwrap()
        .is_none());
    assert!("zz".parse::<Target>().is_err());
}

#[test]
fn check_detects_broken_index_entries_and_repair_rebuilds_them() {
    let f = fixture();
    let ids = populate(&f.store);
    assert!(f.store.check().unwrap().is_clean());
    let path = f.path();
    drop(f.store);
    {
        // Break the indexes behind the store's back.
        let db = common::open_raw_sled(&path);
        let expiry = db.open_tree("expiry").unwrap();
        let principals = db.open_tree("principals").unwrap();
        let sessions = db.open_tree("sessions").unwrap();
        let victim = ids[1].handle();
        let key = expiry
            .iter()
            .keys()
            .map(|k| k.unwrap())
            .find(|k| k[8..] == victim.as_bytes()[..])
            .unwrap();
        expiry.remove(key).unwrap(); // a record without its expiry entry
        let pk = principals.iter().keys().next().unwrap().unwrap();
        principals.remove(pk).unwrap(); // a record without its principal entry
        expiry.insert([0u8; 24], &[]).unwrap(); // an entry without a record
        sessions.insert([7u8; 16], &b"\x01garbage"[..]).unwrap(); // an undecodable record
        db.flush().unwrap();
    }
    let f = common::Fixture {
        store: Store::builder().clock(f.clock.clone()).open(&path).unwrap(),
        ..f
    };
    let report = f.store.check().unwrap();
    assert!(report.has_problems());
    assert_eq!(report.missing_expiry, vec![ids[1].handle()]);
    assert_eq!(report.missing_principal.len(), 1);
    assert_eq!(report.stale_expiry, 1);
    assert_eq!(report.undecodable.len(), 1);
    assert_eq!(report.undecodable[0].handle, "07".repeat(16));

    let repaired = f.store.repair().unwrap();
    assert_eq!(repaired.removed_records.len(), 1);
    assert_eq!(repaired.added_entries, 2);
    assert_eq!(repaired.removed_entries, 1);
    assert!(f.store.check().unwrap().is_clean());
    assert_eq!(f.store.stats().unwrap().live, 20);
}

/// A record whose format byte this build does not know is damage, like any other undecodable
/// record: a newer record format comes with a newer database format, which this build refuses
/// to open (`FORMAT_VERSION`). Repair removes it and the index entries that were its.
#[test]
fn repair_removes_records_of_an_unknown_format_and_their_index_entries() {
    let f = fixture();
    let ids = populate(&f.store);
    let path = f.path();
    drop(f.store);
    let victim = ids[1].handle();
    let entries = {
        let db = common::open_raw_sled(&path);
        let sessions = db.open_tree("sessions").unwrap();
        let mut record = sessions.get(victim.as_bytes()).unwrap().unwrap().to_vec();
        record[0] = 200;
        sessions.insert(victim.as_bytes(), record).unwrap();
        let mut entries = Vec::new();
        for tree in ["expiry", "principals"] {
            let tree = db.open_tree(tree).unwrap();
            for k in tree.iter().keys() {
                let k = k.unwrap();
                if k.ends_with(victim.as_bytes()) {
                    entries.push(k.to_vec());
                }
            }
        }
        db.flush().unwrap();
        entries.len()
    };
    assert_eq!(entries, 2, "the victim has a principal");
    let f = common::Fixture {
        store: Store::builder().clock(f.clock.clone()).open(&path).unwrap(),
        ..f
    };
    // A request holding its id gets no session, as for any undecodable record.
    assert!(f.store.load(&ids[1]).unwrap().is_none());
    let report = f.store.check().unwrap();
    assert_eq!(report.undecodable.len(), 1);
    assert_eq!(
        (
            report.undecodable[0].handle.as_str(),
            report.undecodable[0].reason.as_str()
        ),
        (
            victim.to_string().as_str(),
            "unknown record format 200 (this database holds formats 1 and 2)"
        )
    );
    assert_eq!((report.stale_expiry, report.stale_principal), (1, 1));

    let repaired = f.store.repair().unwrap();
    assert_eq!(repaired.removed_records, report.undecodable);
    assert_eq!((repaired.added_entries, repaired.removed_entries), (0, 2));
    assert!(f.store.check().unwrap().is_clean());
    drop(f.store);
    let db = common::open_raw_sled(&path);
    let stored = db.open_tree("sessions").unwrap().get(victim.as_bytes());
    assert_eq!(stored.unwrap(), None);
}

#[test]
fn stats_count_live_expired_and_principals() {
    let f = fixture();
    populate(&f.store);
    let s = f.store.stats().unwrap();
    assert_eq!(
        (s.live, s.expired, s.principals, s.format_version),
        (20, 0, 4, 2),
        "format 2: opened in periodic durability only"
    );
    assert!(s.bytes_on_disk > 0);
    f.advance(2);
    let s = f.store.stats().unwrap();
    assert_eq!((s.live, s.expired), (16, 4));
    assert_eq!(f.store.count_expired().unwrap(), 4);
}

#[test]
fn validate_export_reports_what_a_dry_run_into_a_new_store_does() {
    let a = fixture();
    populate(&a.store);
    let good = export(&a.store, true);
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    lines[3] = "{garbage".into();
    lines[5] = lines[4].clone(); // duplicate handle
    let bad = lines.join("\n");
    for text in [&good, &bad] {
        for skip_bad in [false, true] {
            let opts = ImportOptions {
                dry_run: true,
                skip_bad,
                ..ImportOptions::default()
            };
            let empty = fixture();
            let dry_run = empty
                .store
                .import(&mut Io::new(text.as_bytes()), &opts)
                .unwrap();
            let at = time::OffsetDateTime::from_unix_timestamp(empty.clock_ms() / 1000).unwrap();
            let alone =
                sessdb::validate_export_as_of(&mut Io::new(text.as_bytes()), &opts, at).unwrap();
            assert_eq!(alone, dry_run, "skip_bad {skip_bad}");
        }
    }
}

/// `validate_export_as_of` judges expiry at the time it is given, as a dry run into a new store
/// whose clock reads that time does: checked as of two seconds after the export, the four
/// sessions with an idle timeout of 1.5 s count as expired. `sessctl import --dry-run` where
/// there is no database yet (with `--as-of` or now) tells its user from this how many of a
/// backup's sessions would be restored already ended.
#[test]
fn validate_export_as_of_counts_the_sessions_expired_by_then() {
    let a = fixture();
    populate(&a.store);
    let text = export(&a.store, true);
    let opts = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    for (later, expired) in [(0, 0), (2, 4)] {
        let empty = fixture();
        empty.advance(later);
        let dry_run = empty
            .store
            .import(&mut Io::new(text.as_bytes()), &opts)
            .unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(empty.clock_ms() / 1000).unwrap();
        let alone =
            sessdb::validate_export_as_of(&mut Io::new(text.as_bytes()), &opts, at).unwrap();
        assert_eq!((alone.imported, alone.expired), (20, expired), "{alone:?}");
        assert_eq!(alone, dry_run, "{later} s later");
    }
}

/// The session that grows most into JSON, a list of empty byte strings (2 bytes stored,
/// `{"$base64":""},` exported: 7.5 times), at the size limit, exports and imports back: a
/// backup restores every session the store took.
#[test]
fn the_session_that_grows_most_in_json_imports_back() {
    let a = fixture();
    let mut s = a.store.create();
    let limit = sessdb::Builder::DEFAULT_MAX_SESSION_BYTES;
    let mut n = limit / 2;
    // As many as fit under the limit.
    let id = loop {
        s.insert_value("b", Value::List(vec![Value::Bytes(Vec::new()); n]))
            .unwrap();
        match s.save() {
            Ok(()) => break *s.id(),
            Err(sessdb::Error::TooLarge { .. }) => n -= 1_000,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        n * 2 > limit - 10_000,
        "close to the limit: {n} byte strings"
    );
    let text = export(&a.store, false);
    let line = body(&text)[0].len();
    assert!(line > limit * 7, "the line is {line} bytes");
    let b = fixture();
    let report = b
        .store
        .import(&mut Io::new(text.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert!(report.bad.is_empty(), "{:?}", report.bad);
    assert_eq!(report.imported, 1);
    let back = b.store.load(&id).unwrap().unwrap();
    assert_eq!(
        back.get_value("b"),
        Some(&Value::List(vec![Value::Bytes(Vec::new()); n]))
    );
}

/// An unsigned integer that fits `i64` is stored as `Int`, as JSON reads it back: an export
/// imported into its own store finds every session unchanged, not in conflict.
#[test]
fn a_small_uint_is_stored_as_an_int_and_reimports_unchanged() {
    let a = fixture();
    let mut s = a.store.create();
    s.insert_value("n", Value::UInt(5)).unwrap();
    s.insert_value(
        "deep",
        Value::List(vec![Value::UInt(7), Value::UInt(u64::MAX)]),
    )
    .unwrap();
    s.replace_data(
        [
            ("n".to_string(), Value::UInt(5)),
            (
                "deep".to_string(),
                Value::List(vec![Value::UInt(7), Value::UInt(u64::MAX)]),
            ),
        ]
        .into(),
    )
    .unwrap();
    s.save().unwrap();
    let id = *s.id();
    let loaded = a.store.load(&id).unwrap().unwrap();
    assert_eq!(loaded.get_value("n"), Some(&Value::Int(5)));
    assert_eq!(
        loaded.get_value("deep"),
        Some(&Value::List(vec![Value::Int(7), Value::UInt(u64::MAX)]))
    );
    let text = export(&a.store, false);
    let report = a
        .store
        .import(&mut Io::new(text.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!((report.unchanged, report.skipped), (1, 0), "{report:?}");
}

/// An import restores what its file holds, the per-principal limit notwithstanding (as
/// documented); the principal's next login applies the policy.
#[test]
fn an_import_restores_sessions_over_the_principal_limit_and_the_next_login_applies_it() {
    let a = fixture();
    for _ in 0..3 {
        let mut s = a.store.create();
        s.set_principal(Some("alice")).unwrap();
        s.save().unwrap();
    }
    let text = export(&a.store, false);
    let b = common::fixture_with(
        Store::builder().max_sessions_per_principal(2, sessdb::OnPrincipalLimit::EvictOldest),
    );
    let report = b
        .store
        .import(&mut Io::new(text.as_bytes()), &ImportOptions::default())
        .unwrap();
    assert_eq!(report.imported, 3);
    assert_eq!(b.store.sessions_of("alice").unwrap().len(), 3);
    let mut login = b.store.create();
    login.set_principal(Some("alice")).unwrap();
    login.save().unwrap();
    let left = b.store.sessions_of("alice").unwrap();
    assert_eq!(left.len(), 2, "back to the limit");
    assert!(left.iter().any(|s| s.handle == login.id().handle()));
}
