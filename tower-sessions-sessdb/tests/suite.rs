//! What tower-sessions expects of a session store, written once and run against sessdb and,
//! as the reference, tower-sessions' own `MemoryStore`. Behaviours where sessdb deliberately
//! differs (a save never re-creates a deleted session) are in `sessdb_store.rs`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, MemoryStore, Session};
use tower_sessions_sessdb::SessdbStore;

/// A store under test, and what must outlive it.
struct Fixture<S> {
    store: Arc<S>,
    _dir: Option<TempDir>,
}

fn sessdb_fixture() -> Fixture<SessdbStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    Fixture {
        store: Arc::new(SessdbStore::new(store).with_principal_key("user_id")),
        _dir: Some(dir),
    }
}

/// With [`SessdbStore::with_inline_calls`]: every call but the purge runs on the test's task.
fn sessdb_inline_fixture() -> Fixture<SessdbStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    Fixture {
        store: Arc::new(
            SessdbStore::new(store)
                .with_principal_key("user_id")
                .with_inline_calls(),
        ),
        _dir: Some(dir),
    }
}

/// Inline calls on a store with immediate durability: reads inline, writes on the blocking pool.
fn sessdb_inline_immediate_fixture() -> Fixture<SessdbStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = sessdb::Store::builder()
        .durability(sessdb::Durability::Immediate)
        .open(dir.path().join("db"))
        .unwrap();
    Fixture {
        store: Arc::new(SessdbStore::new(store).with_inline_calls()),
        _dir: Some(dir),
    }
}

fn memory_fixture() -> Fixture<MemoryReference> {
    Fixture {
        store: Arc::new(MemoryReference::default()),
        _dir: None,
    }
}

/// `MemoryStore` with the `ExpiredDeletion` it lacks: it remembers the ids it was given and
/// deletes those its `load` no longer returns.
#[derive(Debug, Clone, Default)]
struct MemoryReference {
    store: MemoryStore,
    ids: Arc<Mutex<HashSet<Id>>>,
}

#[async_trait::async_trait]
impl SessionStore for MemoryReference {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.store.create(record).await?;
        self.ids.lock().unwrap().insert(record.id);
        Ok(())
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.store.save(record).await?;
        self.ids.lock().unwrap().insert(record.id);
        Ok(())
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.store.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.ids.lock().unwrap().remove(id);
        self.store.delete(id).await
    }
}

#[async_trait::async_trait]
impl ExpiredDeletion for MemoryReference {
    async fn delete_expired(&self) -> session_store::Result<()> {
        let ids: Vec<Id> = self.ids.lock().unwrap().iter().copied().collect();
        for id in ids {
            if self.store.load(&id).await?.is_none() {
                self.delete(&id).await?;
            }
        }
        Ok(())
    }
}

/// Now plus `d`, to the whole millisecond (what sessdb keeps), so records compare exactly.
fn at(d: Duration) -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() + d;
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap()
}

fn record(data: serde_json::Value, expiry_date: OffsetDateTime) -> Record {
    Record {
        id: Id::default(),
        data: serde_json::from_value(data).unwrap(),
        expiry_date,
    }
}

async fn create_then_load<S: SessionStore>(store: Arc<S>) {
    let mut r = record(
        json!({"foo": 42, "user_id": "alice", "bar": {"baz": ["qux", 1.5]}}),
        at(Duration::hours(1)),
    );
    let id = r.id;
    store.create(&mut r).await.unwrap();
    assert_eq!(r.id, id, "a free id is kept");
    assert_eq!(store.load(&id).await.unwrap(), Some(r));
}

async fn load_of_an_unknown_id_is_none<S: SessionStore>(store: Arc<S>) {
    assert_eq!(store.load(&Id::default()).await.unwrap(), None);
    assert_eq!(store.load(&Id(0)).await.unwrap(), None);
}

async fn create_never_overwrites_a_taken_id<S: SessionStore>(store: Arc<S>) {
    let mut first = record(json!({"who": "first"}), at(Duration::hours(1)));
    store.create(&mut first).await.unwrap();
    let mut second = record(json!({"who": "second"}), at(Duration::hours(2)));
    second.id = first.id;
    store.create(&mut second).await.unwrap();
    assert_ne!(second.id, first.id, "a taken id is replaced by a fresh one");
    assert_eq!(store.load(&first.id).await.unwrap(), Some(first));
    assert_eq!(store.load(&second.id).await.unwrap(), Some(second));
}

async fn save_replaces_data_and_expiry<S: SessionStore>(store: Arc<S>) {
    let mut r = record(json!({"keep": 1, "drop": 2}), at(Duration::hours(1)));
    store.create(&mut r).await.unwrap();
    let mut other = record(json!({"other": true}), at(Duration::hours(1)));
    store.create(&mut other).await.unwrap();

    r.data.remove("drop");
    r.data.insert("keep".into(), json!(10));
    r.data.insert("new".into(), json!([1, 2, 3]));
    r.expiry_date = at(Duration::hours(3));
    store.save(&r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r));
    assert_eq!(store.load(&other.id).await.unwrap(), Some(other));
}

async fn delete_removes_and_is_idempotent<S: SessionStore>(store: Arc<S>) {
    let mut r = record(json!({"foo": 1}), at(Duration::hours(1)));
    store.create(&mut r).await.unwrap();
    let mut other = record(json!({"foo": 2}), at(Duration::hours(1)));
    store.create(&mut other).await.unwrap();
    store.delete(&r.id).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    store.delete(&r.id).await.unwrap();
    store.delete(&Id::default()).await.unwrap();
    assert_eq!(store.load(&other.id).await.unwrap(), Some(other));
}

async fn an_expired_record_is_not_loaded<S: SessionStore>(store: Arc<S>) {
    let mut past = record(json!({"foo": 1}), at(-Duration::seconds(1)));
    store.create(&mut past).await.unwrap();
    assert_eq!(store.load(&past.id).await.unwrap(), None);

    let mut r = record(json!({"foo": 2}), at(Duration::hours(1)));
    store.create(&mut r).await.unwrap();
    assert!(store.load(&r.id).await.unwrap().is_some());
    r.expiry_date = at(-Duration::milliseconds(1));
    store.save(&r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), None);
}

async fn expiry_is_kept_to_the_millisecond<S: SessionStore>(store: Arc<S>) {
    let expiry = OffsetDateTime::now_utc() + Duration::hours(1);
    let mut r = record(json!({}), expiry.replace_nanosecond(123_456_789).unwrap());
    store.create(&mut r).await.unwrap();
    let loaded = store.load(&r.id).await.unwrap().unwrap().expiry_date;
    assert!(loaded <= r.expiry_date, "never later than asked");
    assert!(
        r.expiry_date - loaded < Duration::milliseconds(1),
        "{loaded} vs {}",
        r.expiry_date
    );
}

async fn any_json_comes_back_unchanged<S: SessionStore>(store: Arc<S>) {
    let data = json!({
        "null": null, "t": true, "f": false,
        "min": i64::MIN, "max": i64::MAX, "umax": u64::MAX, "float": -0.125, "big": 1e300,
        "text": "héllo \u{1F980} \"quoted\" \n", "empty": "",
        "list": [1, "two", [3, [4]], {}], "empty_list": [], "empty_map": {},
        // Objects that look like sessdb's tagged export forms stay plain objects.
        "b64": {"$base64": "not base64!"}, "b64_valid": {"$base64": "aGk="},
        "float_tag": {"$float": "NaN"},
        "": "empty key", "key with / and ~": 1
    });
    let mut r = record(data, at(Duration::hours(1)));
    store.create(&mut r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r));
}

async fn session_round_trip_with_inactivity_expiry<S: SessionStore>(store: Arc<S>) {
    let expiry = Some(Expiry::OnInactivity(Duration::minutes(10)));
    let session = Session::new(None, store.clone(), expiry);
    session.insert("foo", 42).await.unwrap();
    session.save().await.unwrap();
    let id = session.id().expect("saved sessions have an id");

    let loaded = store.load(&id).await.unwrap().unwrap();
    let left = loaded.expiry_date - OffsetDateTime::now_utc();
    assert!(
        left > Duration::minutes(9) && left <= Duration::minutes(10),
        "{left}"
    );

    let again = Session::new(Some(id), store.clone(), expiry);
    assert_eq!(again.get::<u32>("foo").await.unwrap(), Some(42));
}

async fn session_cycle_id_keeps_data_and_retires_the_old_id<S: SessionStore>(store: Arc<S>) {
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", 42).await.unwrap();
    session.save().await.unwrap();
    let old = session.id().unwrap();

    let session = Session::new(Some(old), store.clone(), None);
    session.cycle_id().await.unwrap();
    assert!(session.is_modified());
    session.save().await.unwrap();
    let new = session.id().unwrap();

    assert_ne!(old, new);
    assert_eq!(store.load(&old).await.unwrap(), None);
    let again = Session::new(Some(new), store.clone(), None);
    assert_eq!(again.get::<u32>("foo").await.unwrap(), Some(42));
}

async fn session_flush_deletes_the_record<S: SessionStore>(store: Arc<S>) {
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", "bar").await.unwrap();
    session.save().await.unwrap();
    let id = session.id().unwrap();
    assert!(store.load(&id).await.unwrap().is_some());

    session.flush().await.unwrap();
    assert_eq!(session.id(), None);
    assert!(session.is_empty().await);
    assert_eq!(store.load(&id).await.unwrap(), None);
}

async fn session_delete_then_load_starts_afresh<S: SessionStore>(store: Arc<S>) {
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", 1).await.unwrap();
    session.save().await.unwrap();
    let id = session.id().unwrap();
    session.delete().await.unwrap();

    let after = Session::new(Some(id), store.clone(), None);
    assert_eq!(after.get::<u32>("foo").await.unwrap(), None);
    after.insert("foo", 2).await.unwrap();
    after.save().await.unwrap();
    assert_ne!(after.id(), Some(id), "a deleted session's id is not reused");
}

async fn delete_expired_frees_only_expired_ids<S: SessionStore + ExpiredDeletion>(store: Arc<S>) {
    let mut live = record(json!({"live": true}), at(Duration::hours(1)));
    store.create(&mut live).await.unwrap();
    let mut expired = record(json!({"live": false}), at(-Duration::seconds(1)));
    store.create(&mut expired).await.unwrap();

    // Until it is deleted, an expired record still holds its id.
    let mut taker = record(json!({}), at(Duration::hours(1)));
    taker.id = expired.id;
    store.create(&mut taker).await.unwrap();
    assert_ne!(taker.id, expired.id);

    store.delete_expired().await.unwrap();
    store.delete_expired().await.unwrap();
    assert_eq!(store.load(&live.id).await.unwrap(), Some(live));
    assert_eq!(store.load(&taker.id).await.unwrap(), Some(taker));

    let mut reuse = record(json!({"reused": 1}), at(Duration::hours(1)));
    reuse.id = expired.id;
    store.create(&mut reuse).await.unwrap();
    assert_eq!(
        reuse.id, expired.id,
        "the expired record is gone, its id free"
    );
    assert_eq!(store.load(&expired.id).await.unwrap(), Some(reuse));
}

/// One `#[tokio::test]` per suite function, in a module per store.
macro_rules! suite {
    ($module:ident, $fixture:expr) => {
        mod $module {
            suite!(@tests $fixture;
                create_then_load,
                load_of_an_unknown_id_is_none,
                create_never_overwrites_a_taken_id,
                save_replaces_data_and_expiry,
                delete_removes_and_is_idempotent,
                an_expired_record_is_not_loaded,
                expiry_is_kept_to_the_millisecond,
                any_json_comes_back_unchanged,
                session_round_trip_with_inactivity_expiry,
                session_cycle_id_keeps_data_and_retires_the_old_id,
                session_flush_deletes_the_record,
                session_delete_then_load_starts_afresh,
                delete_expired_frees_only_expired_ids
            );
        }
    };
    (@tests $fixture:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                let fixture = $fixture;
                super::$test(fixture.store.clone()).await;
            }
        )*
    };
}

suite!(sessdb_store, super::sessdb_fixture());
suite!(sessdb_store_inline, super::sessdb_inline_fixture());
suite!(
    sessdb_store_inline_immediate,
    super::sessdb_inline_immediate_fixture()
);
suite!(memory_store, super::memory_fixture());
