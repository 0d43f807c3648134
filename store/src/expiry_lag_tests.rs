//! The expiry entry that lags behind its deadline (`keys.rs`, `Head::place_entry`): which saves
//! move it, and that purge, the listings, check and format-1 records still see every session
//! exactly. These look into the index trees, which the public API does not show.

use std::time::Duration;

use crate::keys::{bucket, expiry_key, parse_expiry_key, EXPIRY_BUCKET_MS, EXPIRY_ENTRY_LAG_MS};
use crate::record::{decode_head, encode_parts, Head};
use crate::{Admin, ListQuery, ManualClock, SessionId, Status, Store};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const MINUTE: u64 = 60;

struct Fixture {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_ms(T0);
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.path().join("db"))
        .unwrap();
    Fixture {
        _dir: dir,
        clock,
        store,
    }
}

impl Fixture {
    /// Every expiry entry, as (bucket, handle).
    fn entries(&self) -> Vec<(u64, crate::Handle)> {
        self.store
            .inner
            .expiry
            .iter()
            .keys()
            .map(|k| parse_expiry_key(&k.unwrap()).unwrap())
            .collect()
    }

    /// The session's stored record.
    fn record(&self, id: &SessionId) -> sled::IVec {
        let bytes = self.store.inner.sessions.get(id.handle().as_bytes());
        bytes.unwrap().expect("a stored record")
    }

    fn head(&self, id: &SessionId) -> Head {
        decode_head(&self.record(id)).unwrap()
    }

    fn minutes(&self, m: u64) {
        self.clock.advance(Duration::from_secs(m * MINUTE));
    }

    /// Loads, changes and saves the session.
    fn visit(&self, id: &SessionId) {
        let mut s = self.store.load(id).unwrap().expect("live session");
        let n = s.get::<u64>("n").unwrap().unwrap_or(0);
        s.insert("n", &(n + 1)).unwrap();
        s.save().unwrap();
    }

    /// Rewrites the session's record as format 1 wrote it (no entry field: the entry at the
    /// deadline's bucket, so the session's entry must not lag). Returns its head.
    fn rewrite_as_format_1(&self, id: &SessionId) -> Head {
        let handle = id.handle();
        let bytes = self.record(id);
        let head = decode_head(&bytes).unwrap();
        assert_eq!(
            head.entry_lag, 0,
            "format 1 cannot say where a lagging entry is"
        );
        let data_at = encode_parts(&head, &[]).0.len();
        let mut v1 = vec![1u8];
        v1.extend(
            postcard::to_allocvec(&(
                head.expires_at,
                head.version,
                head.created,
                head.last_access,
                head.idle_timeout_ms,
                head.absolute_deadline,
                &head.principal,
                &head.label,
                &head.remote_addr,
                &head.user_agent,
            ))
            .unwrap(),
        );
        v1.extend_from_slice(&bytes[data_at..]);
        self.store
            .inner
            .sessions
            .insert(handle.as_bytes(), v1)
            .unwrap();
        head
    }

    fn assert_consistent(&self) {
        let report = self.store.check().unwrap();
        assert!(report.is_clean(), "{report:?}");
    }
}

fn new_session(f: &Fixture) -> SessionId {
    let mut s = f.store.create();
    s.set_principal(Some("alice")).unwrap();
    s.save().unwrap();
    *s.id()
}

#[test]
fn a_save_within_the_lag_leaves_the_entry_and_a_later_one_moves_it() {
    let f = fixture();
    let id = new_session(&f);
    let placed = bucket(f.head(&id).expires_at);
    assert_eq!(f.entries(), vec![(placed, id.handle())]);

    // Clicks a minute apart move the deadline later; up to the lag, the entry stays.
    let lag_minutes = EXPIRY_ENTRY_LAG_MS / 60_000;
    for _ in 0..lag_minutes {
        f.minutes(1);
        f.visit(&id);
        let head = f.head(&id);
        assert!(bucket(head.expires_at) > placed);
        assert_eq!(head.expiry_entry(), placed);
        assert_eq!(f.entries(), vec![(placed, id.handle())]);
    }
    f.assert_consistent();

    // One more and the deadline is past the lag: the entry moves to the deadline, the old one
    // is gone.
    f.minutes(1);
    f.visit(&id);
    let head = f.head(&id);
    assert_eq!(head.expiry_entry(), bucket(head.expires_at));
    assert_eq!(f.entries(), vec![(bucket(head.expires_at), id.handle())]);
    f.assert_consistent();
}

#[test]
fn a_deadline_moved_earlier_moves_the_entry_with_it() {
    let f = fixture();
    let id = new_session(&f);
    f.minutes(2);
    f.visit(&id);
    let lagging = f.head(&id).expiry_entry();
    let mut s = f.store.load(&id).unwrap().unwrap();
    s.set_idle_timeout(Duration::from_secs(60));
    s.save().unwrap();
    let head = f.head(&id);
    assert!(bucket(head.expires_at) < lagging);
    assert_eq!(f.entries(), vec![(bucket(head.expires_at), id.handle())]);
    f.assert_consistent();
}

#[test]
fn purge_leaves_a_live_session_whose_entry_is_due_and_removes_it_once_expired() {
    let f = fixture();
    let id = new_session(&f);
    assert!(
        f.head(&id).idle_timeout_ms > 4 * 60_000,
        "outlives the visit"
    );
    f.minutes(4);
    f.visit(&id);
    let head = f.head(&id);
    let entry_at = i64::try_from(head.expiry_entry()).unwrap();
    assert!(entry_at < head.expires_at);

    // Past the entry, before the deadline: purge reads the session and keeps it.
    f.clock.set_ms(entry_at + EXPIRY_BUCKET_MS);
    assert_eq!(f.store.purge_expired().unwrap(), 0);
    assert_eq!(f.store.count_expired().unwrap(), 0);
    assert!(f.store.load(&id).unwrap().is_some());
    assert_eq!(f.entries(), vec![(head.expiry_entry(), id.handle())]);

    // The listings find it by its deadline, though its entry is before now.
    let live = f.store.list(&ListQuery::default()).unwrap();
    assert_eq!(live.sessions.len(), 1);
    let soon = f
        .store
        .list(&ListQuery {
            expiring_within: Some(Duration::from_secs(5 * MINUTE)),
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(soon.sessions.len(), 1);
    let expired = f
        .store
        .list(&ListQuery {
            status: Status::Expired,
            ..ListQuery::default()
        })
        .unwrap();
    assert!(expired.sessions.is_empty());

    // At its deadline it goes, with both entries.
    f.clock.set_ms(head.expires_at);
    assert_eq!(f.store.count_expired().unwrap(), 1);
    assert_eq!(f.store.purge_expired().unwrap(), 1);
    assert!(f.entries().is_empty());
    assert!(f.store.inner.principals.is_empty());
    assert!(f.store.inner.sessions.is_empty());
}

#[test]
fn a_format_1_record_is_read_and_rewritten_as_format_2() {
    let f = fixture();
    let id = new_session(&f);
    let handle = id.handle();
    let head = f.rewrite_as_format_1(&id);
    f.assert_consistent();

    f.minutes(1);
    f.visit(&id);
    assert_eq!(f.record(&id)[0], crate::record::RECORD_FORMAT);
    assert_eq!(
        f.head(&id).expiry_entry(),
        head.expiry_entry(),
        "the entry stays"
    );
    assert_eq!(f.entries(), vec![(head.expiry_entry(), handle)]);
    f.assert_consistent();
}

#[test]
fn import_of_the_same_file_after_saves_within_the_lag_changes_nothing() {
    let f = fixture();
    let id = new_session(&f);
    f.minutes(3);
    f.visit(&id);
    let mut out = Vec::new();
    f.store.export(&mut out, true).unwrap();
    let again = f
        .store
        .import(
            &mut out.as_slice(),
            &crate::ImportOptions {
                on_conflict: crate::OnConflict::Replace,
                ..crate::ImportOptions::default()
            },
        )
        .unwrap();
    assert_eq!((again.unchanged, again.replaced), (1, 0), "{again:?}");
    assert_eq!(
        f.entries(),
        vec![(f.head(&id).expiry_entry(), id.handle())],
        "one entry, where it was"
    );
    assert_ne!(f.head(&id).expiry_entry(), bucket(f.head(&id).expires_at));
    f.assert_consistent();
    // The key layout the tests rely on.
    assert_eq!(expiry_key(7, &id.handle())[..8], 7u64.to_be_bytes());
}

/// A format-1 database (written by sessdb before the lag) is marked format 2 by the first
/// writable open, so a build that knows only format 1 refuses it rather than take its new
/// records for undecodable ones; a read-only open leaves it as it is.
#[test]
fn a_writable_open_marks_a_format_1_database_as_format_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let format = |store: &Store| {
        let v = store.inner.db.open_tree("meta").unwrap().get("format");
        u32::from_be_bytes(v.unwrap().unwrap().as_ref().try_into().unwrap())
    };
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(format(&store), 2);
        let meta = store.inner.db.open_tree("meta").unwrap();
        meta.insert("format", &1u32.to_be_bytes()).unwrap();
    }
    {
        let store = Store::builder().read_only(true).open(&path).unwrap();
        assert_eq!(format(&store), 1);
        assert_eq!(store.stats().unwrap().format_version, 1);
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(format(&store), 2);
    assert_eq!(store.stats().unwrap().format_version, 2);
}

/// A backup re-imported over the database it came from changes nothing, also where a record is
/// still in format 1: the same session in the older format is not a conflict.
#[test]
fn import_over_a_format_1_record_of_the_same_session_changes_nothing() {
    let f = fixture();
    let id = new_session(&f);
    // A NaN is the same NaN after the round trip, though `==` says otherwise.
    f.store
        .update(&id, |s| {
            s.insert_value("ratio", crate::Value::Float(f64::NAN))
                .unwrap()
        })
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    f.store.export(&mut out, true).unwrap();
    f.rewrite_as_format_1(&id);
    let v1 = f.store.inner.sessions.get(id.handle().as_bytes()).unwrap();
    for on_conflict in [crate::OnConflict::Skip, crate::OnConflict::Replace] {
        let options = crate::ImportOptions {
            on_conflict,
            ..crate::ImportOptions::default()
        };
        let report = f.store.import(&mut out.as_slice(), &options).unwrap();
        assert_eq!(
            (
                report.unchanged,
                report.skipped,
                report.replaced,
                report.written
            ),
            (1, 0, 0, false),
            "{report:?}"
        );
    }
    let stored = f.store.inner.sessions.get(id.handle().as_bytes()).unwrap();
    assert_eq!(stored, v1, "left in format 1");

    // Another session content in the file is still a conflict.
    f.visit(&id);
    let report = f
        .store
        .import(&mut out.as_slice(), &crate::ImportOptions::default())
        .unwrap();
    assert_eq!((report.unchanged, report.skipped), (0, 1), "{report:?}");
    f.assert_consistent();
}

/// A format-1 record is the file's session only when both its head and its data are the file's:
/// the same head with other data, or another head with the same data, is a conflict (kept with
/// `skip`, written with `replace`), not a session left unchanged.
#[test]
fn import_over_a_format_1_record_of_other_content_is_a_conflict() {
    let f = fixture();
    let id = new_session(&f);
    f.store
        .update(&id, |s| s.insert("theme", "dark").unwrap())
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    f.store.export(&mut out, true).unwrap();
    let text = String::from_utf8(out).unwrap();
    let other_data = text.replace(r#""theme":"dark""#, r#""theme":"light""#);
    let other_head = text.replace(r#""principal":"alice""#, r#""principal":"bob""#);
    assert!(other_data != text && other_head != text, "{text}");
    let replace = crate::ImportOptions {
        on_conflict: crate::OnConflict::Replace,
        ..crate::ImportOptions::default()
    };
    for file in [other_data, other_head] {
        // The session as exported, stored as format 1 wrote it.
        f.store.import(&mut text.as_bytes(), &replace).unwrap();
        f.rewrite_as_format_1(&id);
        let report = f
            .store
            .import(&mut file.as_bytes(), &crate::ImportOptions::default())
            .unwrap();
        assert_eq!((report.unchanged, report.skipped), (0, 1), "{report:?}");
        let report = f.store.import(&mut file.as_bytes(), &replace).unwrap();
        assert_eq!((report.unchanged, report.replaced), (0, 1), "{report:?}");
    }
    f.assert_consistent();
}
