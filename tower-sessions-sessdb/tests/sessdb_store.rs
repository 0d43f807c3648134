//! What this store adds to tower-sessions' expectations: the principal index, no resurrection
//! of an invalidated session, the store's clock and purge, and dirty tracking.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use serde_json::json;
use sessdb::{ManualClock, Store};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, ExpiredDeletion, SessionStore};
use tower_sessions::Session;
use tower_sessions_sessdb::{session_id, SessdbStore, NO_IDLE_TIMEOUT};

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db")).unwrap();
    (dir, store)
}

fn record(data: serde_json::Value, expiry_date: OffsetDateTime) -> Record {
    Record {
        id: Id::default(),
        data: serde_json::from_value(data).unwrap(),
        expiry_date,
    }
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

#[tokio::test]
async fn the_principal_key_feeds_sessions_of_and_invalidate_principal() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store.clone()).with_principal_key("user_id");
    let mut ids = Vec::new();
    for user in [json!("alice"), json!("alice"), json!("bob"), json!(null)] {
        let mut r = record(json!({ "user_id": user, "n": 1 }), in_an_hour());
        sessions.create(&mut r).await.unwrap();
        ids.push(r.id);
    }
    let mut anonymous = record(json!({"n": 1}), in_an_hour());
    sessions.create(&mut anonymous).await.unwrap();

    let mut alice: Vec<_> = store
        .sessions_of("alice")
        .unwrap()
        .iter()
        .map(|s| s.handle)
        .collect();
    let mut expected = vec![session_id(&ids[0]).handle(), session_id(&ids[1]).handle()];
    alice.sort();
    expected.sort();
    assert_eq!(alice, expected);
    assert_eq!(store.sessions_of("bob").unwrap().len(), 1);

    assert_eq!(store.invalidate_principal("alice").unwrap(), 2);
    assert_eq!(sessions.load(&ids[0]).await.unwrap(), None);
    assert_eq!(sessions.load(&ids[1]).await.unwrap(), None);
    assert!(sessions.load(&ids[2]).await.unwrap().is_some());
    assert!(sessions.load(&ids[3]).await.unwrap().is_some());
    assert!(sessions.load(&anonymous.id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_principal_pointer_reads_axum_login_data() {
    let (_dir, store) = open();
    let sessions =
        SessdbStore::new(store.clone()).with_principal_pointer("/axum-login.data/user_id");
    let mut r = record(
        json!({"axum-login.data": {"user_id": 42, "auth_hash": [1, 2, 3]}}),
        in_an_hour(),
    );
    sessions.create(&mut r).await.unwrap();
    let of_42 = store.sessions_of("42").unwrap();
    assert_eq!(of_42.len(), 1);
    assert_eq!(of_42[0].handle, session_id(&r.id).handle());
}

#[tokio::test]
async fn the_principal_follows_the_data_on_save() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store.clone()).with_principal_key("user_id");
    let mut r = record(json!({"user_id": "alice"}), in_an_hour());
    sessions.create(&mut r).await.unwrap();
    assert_eq!(store.sessions_of("alice").unwrap().len(), 1);

    r.data.insert("user_id".into(), json!("bob"));
    sessions.save(&r).await.unwrap();
    assert!(store.sessions_of("alice").unwrap().is_empty());
    assert_eq!(store.sessions_of("bob").unwrap().len(), 1);

    r.data.remove("user_id");
    sessions.save(&r).await.unwrap();
    assert!(store.sessions_of("bob").unwrap().is_empty());
    let stored = store.load(&session_id(&r.id)).unwrap().unwrap();
    assert_eq!(stored.principal(), None);
}

/// An application may clear the user id on logout by writing "" rather than removing it: the
/// session then has no principal, as with null, and every save still succeeds.
#[tokio::test]
async fn an_empty_principal_is_no_principal() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store.clone()).with_principal_key("user_id");
    let mut r = record(json!({ "user_id": "alice" }), in_an_hour());
    sessions.create(&mut r).await.unwrap();
    assert_eq!(store.sessions_of("alice").unwrap().len(), 1);
    r.data.insert("user_id".into(), json!(""));
    sessions.save(&r).await.unwrap();
    assert!(store.sessions_of("alice").unwrap().is_empty());
    let stored = store.load(&session_id(&r.id)).unwrap().unwrap();
    assert_eq!(stored.principal(), None);
    let mut fresh = record(json!({ "user_id": "" }), in_an_hour());
    sessions.create(&mut fresh).await.unwrap();
    assert!(sessions.load(&fresh.id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_bad_principal_is_an_encode_error_and_writes_nothing() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store.clone()).with_principal_key("user_id");
    for bad in [
        json!({"id": 1}),
        json!("a\u{0}b"),
        json!(true),
        json!("x".repeat(1025)),
    ] {
        let mut r = record(json!({ "user_id": bad }), in_an_hour());
        let err = sessions.create(&mut r).await.unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{bad}: {err:?}");
        assert_eq!(sessions.load(&r.id).await.unwrap(), None);
    }
    assert_eq!(store.counters().writes, 0);
}

#[tokio::test]
async fn a_value_nested_too_deep_is_an_encode_error() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store);
    let mut deep = json!(1);
    for _ in 0..=sessdb::MAX_DEPTH {
        deep = json!([deep]);
    }
    let mut r = record(json!({ "deep": deep }), in_an_hour());
    let err = sessions.create(&mut r).await.unwrap_err();
    assert!(
        matches!(&err, Error::Encode(m) if m.contains("deep")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_save_never_brings_back_an_invalidated_session() {
    let (_dir, store) = open();
    let sessions = Arc::new(SessdbStore::new(store.clone()).with_principal_key("user_id"));
    let mut r = record(json!({"user_id": "alice", "n": 1}), in_an_hour());
    sessions.create(&mut r).await.unwrap();

    // A request loads its session; an operator logs alice out; the request ends and saves.
    let session = Session::new(Some(r.id), sessions.clone(), None);
    assert_eq!(session.get::<u32>("n").await.unwrap(), Some(1));
    assert_eq!(store.invalidate_principal("alice").unwrap(), 1);
    session.insert("n", 2).await.unwrap();
    session.save().await.unwrap();

    assert_eq!(sessions.load(&r.id).await.unwrap(), None);
    assert!(store.sessions_of("alice").unwrap().is_empty());
}

#[tokio::test]
async fn expiry_follows_the_store_clock_and_delete_expired_purges() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(OffsetDateTime::now_utc());
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.path().join("db"))
        .unwrap();
    let sessions = SessdbStore::new(store.clone());
    let now = OffsetDateTime::now_utc();
    let mut short = Vec::new();
    for _ in 0..2 {
        let mut r = record(json!({"short": true}), now + Duration::minutes(1));
        sessions.create(&mut r).await.unwrap();
        short.push(r.id);
    }
    let mut long = record(json!({"short": false}), now + Duration::hours(1));
    sessions.create(&mut long).await.unwrap();

    clock.advance(StdDuration::from_secs(120));
    assert_eq!(store.count_expired().unwrap(), 2);
    sessions.delete_expired().await.unwrap();
    assert_eq!(store.count_expired().unwrap(), 0);
    assert_eq!(store.counters().removals, 2);
    for id in &short {
        assert_eq!(sessions.load(id).await.unwrap(), None);
    }
    assert!(sessions.load(&long.id).await.unwrap().is_some());

    clock.advance(StdDuration::from_secs(3600));
    assert_eq!(sessions.load(&long.id).await.unwrap(), None);
}

#[tokio::test]
async fn the_record_expiry_alone_decides() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store.clone());
    // Far beyond the store's default idle timeout (30 minutes) and absolute lifetime (a day),
    // and beyond any idle timeout short of none (a century was the cap before).
    for expiry in [
        OffsetDateTime::now_utc() + Duration::days(30),
        OffsetDateTime::now_utc() + Duration::days(200 * 365),
    ] {
        let mut r = record(json!({}), expiry);
        sessions.create(&mut r).await.unwrap();
        let stored = store.load(&session_id(&r.id)).unwrap().unwrap();
        assert_eq!(stored.idle_timeout(), NO_IDLE_TIMEOUT);
        assert_eq!(stored.expires_at(), stored.absolute_deadline());
        assert!(
            (expiry - stored.expires_at()).abs() < Duration::milliseconds(1),
            "{expiry}"
        );
        let loaded = sessions.load(&r.id).await.unwrap().unwrap();
        assert!(
            (expiry - loaded.expiry_date).abs() < Duration::milliseconds(1),
            "{expiry}"
        );
    }
}

#[tokio::test]
async fn an_unchanged_save_writes_nothing() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store.clone()).with_principal_key("user_id");
    let mut r = record(json!({"user_id": "alice", "n": [1, 2]}), in_an_hour());
    sessions.create(&mut r).await.unwrap();
    let before = store.counters();
    sessions.save(&r).await.unwrap();
    let after = store.counters();
    assert_eq!(after.writes, before.writes);
    assert_eq!(after.skipped_saves, before.skipped_saves + 1);

    r.data.insert("n".into(), json!([1, 2, 3]));
    sessions.save(&r).await.unwrap();
    assert_eq!(store.counters().writes, before.writes + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_of_one_session_all_succeed() {
    let (_dir, store) = open();
    let sessions = Arc::new(SessdbStore::new(store));
    let mut r = record(json!({"writer": -1}), in_an_hour());
    sessions.create(&mut r).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let sessions = sessions.clone();
            let mut mine = r.clone();
            mine.data.insert("writer".into(), json!(i));
            tokio::spawn(async move { sessions.save(&mine).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let last = sessions.load(&r.id).await.unwrap().unwrap();
    let writer = last.data["writer"].as_i64().unwrap();
    assert!(
        (0..8).contains(&writer),
        "one of the saves won whole: {writer}"
    );
}

/// Another writer saves the session between a request's load and its save: the request's
/// record still wins whole, and the save does not fail.
#[tokio::test]
async fn a_save_after_another_writer_writes_the_record_whole() {
    let (_dir, store) = open();
    let sessions = SessdbStore::new(store.clone()).with_principal_key("user_id");
    let mut r = record(json!({"user_id": "alice", "n": 1}), in_an_hour());
    sessions.create(&mut r).await.unwrap();

    let mut loaded = sessions.load(&r.id).await.unwrap().unwrap();
    store
        .update(&session_id(&r.id), |s| s.insert("other", &true).unwrap())
        .unwrap()
        .unwrap();
    loaded.data.insert("n".into(), json!(2));
    let before = store.counters();
    sessions.save(&loaded).await.unwrap();
    assert_eq!(store.counters().writes, before.writes + 1);
    let stored = sessions.load(&r.id).await.unwrap().unwrap();
    assert_eq!(
        stored.data, loaded.data,
        "no trace of the other writer's key"
    );
}

/// A session that expires between a request's load and its save is not brought back.
#[tokio::test]
async fn a_session_that_expired_since_its_load_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let clock = ManualClock::at(now);
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.path().join("db"))
        .unwrap();
    let sessions = SessdbStore::new(store.clone());
    let mut r = record(json!({"n": 1}), now + Duration::minutes(1));
    sessions.create(&mut r).await.unwrap();
    let mut loaded = sessions.load(&r.id).await.unwrap().unwrap();
    clock.advance(StdDuration::from_secs(120));
    loaded.data.insert("n".into(), json!(2));
    loaded.expiry_date = now + Duration::hours(1);
    let before = store.counters();
    sessions.save(&loaded).await.unwrap();
    assert_eq!(store.counters().writes, before.writes);
    assert_eq!(sessions.load(&r.id).await.unwrap(), None);
}

/// Requests of one session that each load and save at once: every save succeeds, one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_one_session_all_save() {
    let (_dir, store) = open();
    let sessions = Arc::new(SessdbStore::new(store).with_inline_calls());
    let mut r = record(json!({"writer": -1}), in_an_hour());
    sessions.create(&mut r).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let sessions = sessions.clone();
            let id = r.id;
            tokio::spawn(async move {
                for round in 0..20 {
                    let mut mine = sessions.load(&id).await?.expect("the session is live");
                    mine.data.insert("writer".into(), json!(i * 100 + round));
                    sessions.save(&mine).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The last save of all was some task's last: its round 19, whole.
    let last = sessions.load(&r.id).await.unwrap().unwrap();
    let writer = last.data["writer"].as_i64().unwrap();
    assert!((0..800).contains(&writer) && writer % 100 == 19, "{writer}");
}

#[test]
#[should_panic(expected = "must start with '/'")]
fn a_pointer_without_a_slash_is_refused_at_startup() {
    let (_dir, store) = open();
    let _ = SessdbStore::new(store).with_principal_pointer("user_id");
}

#[test]
fn the_store_is_a_cheap_shareable_handle() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<SessdbStore>();
}

/// An operator pastes the session cookie's value into sessctl (`show`, `invalidate`): it names
/// the same session as the id the adapter stores, whatever the id.
#[test]
fn a_cookie_value_names_the_stored_session() {
    for _ in 0..100 {
        let id = Id::default();
        let cookie = id.to_string();
        assert_eq!(cookie.len(), 22);
        assert_eq!(
            cookie.parse::<sessdb::Target>().unwrap(),
            sessdb::Target::Id(session_id(&id))
        );
    }
}

/// tower-sessions moves `expiry_date` on every save (now plus the inactivity period, or two
/// weeks by default), so with `with_always_save(true)` every request saved a changed record: a
/// deadline that slid by less than the store's touch interval is a touch not yet due and writes
/// nothing; one that slid further writes; one moved earlier always writes.
#[tokio::test]
async fn a_sliding_expiry_date_writes_only_when_a_touch_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc();
    let clock = ManualClock::at(start);
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.path().join("db"))
        .unwrap();
    let sessions = SessdbStore::new(store.clone());
    let inactivity = Duration::minutes(30);
    let mut r = record(json!({"n": 1}), start + inactivity);
    sessions.create(&mut r).await.unwrap();
    let writes = || store.counters().writes;
    let before = writes();
    for step in 1..=10 {
        // A request every 5 s, each sliding the deadline as OnInactivity does.
        clock.advance(StdDuration::from_secs(5));
        r.expiry_date = start + Duration::seconds(5 * step) + inactivity;
        sessions.save(&r).await.unwrap();
    }
    assert_eq!(writes(), before, "50 s of sliding is no touch yet");
    clock.advance(StdDuration::from_secs(15));
    r.expiry_date = start + Duration::seconds(65) + inactivity;
    sessions.save(&r).await.unwrap();
    assert_eq!(writes(), before + 1, "a minute of sliding is");
    let stored = sessions.load(&r.id).await.unwrap().unwrap();
    assert!((stored.expiry_date - r.expiry_date).abs() < Duration::milliseconds(1));
    r.expiry_date -= Duration::seconds(1);
    sessions.save(&r).await.unwrap();
    assert_eq!(
        writes(),
        before + 2,
        "an earlier deadline is always written"
    );
    // A save that writes anyway (its data changed) takes the deadline however little it slid:
    // held back, a short inactivity window ended early (an outside trial's 10 s window ended
    // after 6 s of inactivity, though a request had changed the session).
    clock.advance(StdDuration::from_secs(5));
    r.expiry_date = start + Duration::seconds(70) + inactivity;
    r.data.insert("n".into(), json!(2));
    sessions.save(&r).await.unwrap();
    assert_eq!(writes(), before + 3);
    let stored = sessions.load(&r.id).await.unwrap().unwrap();
    assert!((stored.expiry_date - r.expiry_date).abs() < Duration::milliseconds(1));
}

/// A client that builds a named session's id (computable from its name) into a cookie gets no
/// session: not its data on load, not its data overwritten on save, not its removal on delete.
#[tokio::test]
async fn a_cookie_built_from_a_named_sessions_id_reaches_nothing() {
    let (_dir, store) = open();
    store
        .get_or_create("admin", |s| s.insert("token", "upstream-secret"))
        .unwrap();
    let sessions = SessdbStore::new(store.clone());
    let forged = Id(i128::from_le_bytes(
        *sessdb::SessionId::named("admin").as_bytes(),
    ));
    assert_eq!(session_id(&forged), sessdb::SessionId::named("admin"));

    assert!(sessions.load(&forged).await.unwrap().is_none());
    let mut overwrite = record(json!({ "token": "attacker" }), in_an_hour());
    overwrite.id = forged;
    sessions.save(&overwrite).await.unwrap();
    sessions.delete(&forged).await.unwrap();

    let named = store.load_named("admin").unwrap().expect("still stored");
    assert_eq!(
        named.get::<String>("token").unwrap().as_deref(),
        Some("upstream-secret")
    );
}

/// `EvictOldest` goes by the recorded last access, which a request records only when it
/// reaches the store: with `with_always_save(true)` (here, a save after a read) an unchanged
/// session under a fixed `AtDateTime` records its use once a touch interval, as one under
/// `OnInactivity` does. Before, its deadline did not move, so nothing was written, and a new
/// login evicted the session just used rather than the idle one.
#[tokio::test]
async fn evict_oldest_goes_by_use_with_always_save_whatever_the_expiry() {
    let at = OffsetDateTime::now_utc() + Duration::days(1);
    for expiry in [
        tower_sessions::Expiry::AtDateTime(at),
        tower_sessions::Expiry::OnInactivity(Duration::hours(1)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(OffsetDateTime::now_utc());
        let store = Store::builder()
            .clock(clock.clone())
            .max_sessions_per_principal(2, sessdb::OnPrincipalLimit::EvictOldest)
            .open(dir.path().join("db"))
            .unwrap();
        let sessions = Arc::new(SessdbStore::new(store.clone()).with_principal_key("user_id"));
        let login = || async {
            let s = Session::new(None, sessions.clone(), Some(expiry));
            s.insert("user_id", "alice").await.unwrap();
            s.save().await.unwrap();
            s.id().unwrap()
        };
        let phone = login().await;
        clock.advance(StdDuration::from_secs(600));
        let laptop = login().await;
        clock.advance(StdDuration::from_secs(600));
        // A request of the phone's that only reads its session.
        let request = Session::new(Some(phone), sessions.clone(), Some(expiry));
        assert_eq!(
            request.get::<String>("user_id").await.unwrap().as_deref(),
            Some("alice")
        );
        request.save().await.unwrap();
        clock.advance(StdDuration::from_secs(600));
        login().await;
        assert!(sessions.load(&phone).await.unwrap().is_some(), "{expiry:?}");
        assert!(
            sessions.load(&laptop).await.unwrap().is_none(),
            "{expiry:?}"
        );
    }
}

/// One write per touch interval when tower-sessions' clock runs a moment behind the store's
/// (its `expiry_date` is computed before the save's hop to the blocking pool; 1 ms here), with
/// a request every 10 ms across the interval: the write that records the last access takes
/// the slid deadline too. Before, the last-access touch came first, without the deadline, and
/// the next request wrote again for it. (Found by a review.)
#[tokio::test]
async fn one_write_per_touch_interval_when_tower_sessions_lags_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc();
    let clock = ManualClock::at(start);
    let store = Store::builder()
        .clock(clock.clone())
        .touch_interval(StdDuration::from_secs(60))
        .open(dir.path().join("db"))
        .unwrap();
    let sessions = SessdbStore::new(store.clone());
    let inactivity = Duration::minutes(30);
    let lag = Duration::milliseconds(1);
    let mut r = record(json!({"n": 1}), start + inactivity);
    sessions.create(&mut r).await.unwrap();
    let before = store.counters().writes;
    // Requests every 10 ms, from 59.99 s to 60.05 s after the write.
    clock.advance(StdDuration::from_millis(59_990));
    let mut elapsed = Duration::milliseconds(59_990);
    for _ in 0..7 {
        r.expiry_date = start + elapsed - lag + inactivity;
        sessions.save(&r).await.unwrap();
        clock.advance(StdDuration::from_millis(10));
        elapsed += Duration::milliseconds(10);
    }
    assert_eq!(store.counters().writes - before, 1);
    let stored = sessions.load(&r.id).await.unwrap().expect("live");
    assert!(stored.expiry_date > start + inactivity, "the deadline slid");
}
