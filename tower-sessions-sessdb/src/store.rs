//! [`SessdbStore`]: tower-sessions' `SessionStore` and `ExpiredDeletion` on a sessdb [`Store`].

use std::sync::Arc;

use async_trait::async_trait;
use sessdb::{Durability, Store};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, Error, ExpiredDeletion, SessionStore};

use crate::convert::{fill, session_id, to_record, PrincipalPointer, Touch};
use crate::error::backend;

/// How many fresh ids `create` tries before giving up. With 128 random bits a single collision
/// is already never expected; sixteen in a row means the random source is broken.
const CREATE_ATTEMPTS: u32 = 16;

/// How many times `save` reloads after losing a race with a concurrent writer of the same
/// session.
const SAVE_ATTEMPTS: u32 = 1_000;

/// A tower-sessions session store backed by a sessdb [`Store`].
///
/// Cheap to clone: clones share the store. See the [crate docs](crate) for how records map onto
/// sessdb sessions.
#[derive(Debug, Clone)]
pub struct SessdbStore {
    store: Store,
    principal: Option<Arc<PrincipalPointer>>,
    inline: bool,
}

/// What a call may wait for, which decides where [`SessdbStore`] runs it. (A purge walks every
/// expired session: it always runs on the blocking pool.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    /// A read: sled's cache, or one read from the disk on a miss.
    Read,
    /// A write: microseconds with periodic durability, an `fsync` with immediate durability.
    Write,
}

impl SessdbStore {
    /// A session store on `store`, with no principal: sessions are anonymous to sessdb until
    /// [`SessdbStore::with_principal_key`] or [`SessdbStore::with_principal_pointer`] says where
    /// the user id is.
    pub fn new(store: Store) -> Self {
        SessdbStore {
            store,
            principal: None,
            inline: false,
        }
    }

    /// Runs the calls that take microseconds on the calling task instead of on tokio's blocking
    /// pool: `load`, and `create`, `save` and `delete` when the store's durability is
    /// [periodic](sessdb::Durability::Periodic). A write to a store with immediate durability
    /// still goes to the blocking pool (it waits for an `fsync`), and so does
    /// `delete_expired` (it walks every expired session).
    ///
    /// This saves the blocking pool's round trip, ~20 µs per call on a 2-core machine, most of
    /// a cached load + save through this store (see "Blocking" in the
    /// [crate docs](crate)). The price: a load that misses sled's cache reads the disk on the
    /// async worker, stalling the other tasks of that worker for the read; and a write that
    /// meets one of sessdb's locks held waits for it there too: another request's save of the
    /// same session, `Store::invalidate_principal` ending a user's sessions (4 s for a
    /// principal of 200k sessions), or `sessctl check --repair`, which holds every write for
    /// its rebuild (6–8 s at a million sessions). Choose it when the sessions in use fit in
    /// sled's cache ([`sessdb::Builder::cache_bytes`]), the runtime has more than one worker
    /// thread, and such pauses of the writes may pause that worker.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    /// let sessions = tower_sessions_sessdb::SessdbStore::new(store)
    ///     .with_principal_key("user_id")
    ///     .with_inline_calls();
    /// ```
    pub fn with_inline_calls(mut self) -> Self {
        self.inline = true;
        self
    }

    /// Takes each session's principal from the data key `key` (a string, or a number in its
    /// JSON form; none when the key is missing, null or the empty string). The principal feeds
    /// [`Store::sessions_of`], [`Store::invalidate_principal`] and
    /// `sessctl invalidate --principal`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    /// // The application does `session.insert("user_id", "alice")` on login.
    /// let sessions = tower_sessions_sessdb::SessdbStore::new(store).with_principal_key("user_id");
    /// ```
    pub fn with_principal_key(mut self, key: &str) -> Self {
        self.principal = Some(Arc::new(PrincipalPointer::key(key)));
        self
    }

    /// Takes each session's principal from a value nested in the data, named by a JSON Pointer
    /// (RFC 6901) whose first segment is the data key. axum-login keeps its user id at
    /// `/axum-login.data/user_id`.
    ///
    /// # Panics
    /// If `pointer` does not start with `/` (a configuration mistake, caught at startup).
    pub fn with_principal_pointer(mut self, pointer: &str) -> Self {
        let parsed = PrincipalPointer::parse(pointer).unwrap_or_else(|| {
            panic!("principal pointer {pointer:?} must start with '/', as in \"/user_id\"")
        });
        self.principal = Some(Arc::new(parsed));
        self
    }

    /// The sessdb store, for the operations tower-sessions has no word for: a user's sessions,
    /// ending one by handle, purge, the admin interface.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn principal(&self) -> Option<&PrincipalPointer> {
        self.principal.as_deref()
    }

    /// Whether a call of this cost runs on the calling task ([`SessdbStore::with_inline_calls`]).
    fn runs_inline(&self, cost: Cost) -> bool {
        self.inline
            && match cost {
                Cost::Read => true,
                Cost::Write => matches!(self.store.durability(), Durability::Periodic { .. }),
            }
    }

    /// Runs `f` on tokio's blocking pool (see "Blocking" in the crate docs for why).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SessdbStore) -> session_store::Result<T> + Send + 'static,
    ) -> session_store::Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| Error::Backend(format!("the sessdb task did not complete: {e}")))?
    }

    // The calls themselves, synchronous: run inline or inside `blocking`.

    fn load_sync(&self, id: Id) -> session_store::Result<Option<Record>> {
        self.store
            .load(&session_id(&id))
            .map_err(backend)?
            .map(|session| to_record(id, session))
            .transpose()
    }

    fn delete_sync(&self, id: Id) -> session_store::Result<()> {
        self.store
            .invalidate(&session_id(&id))
            .map_err(backend)
            .map(drop)
    }

    fn create_sync(&self, mut record: Record) -> session_store::Result<Id> {
        for _ in 0..CREATE_ATTEMPTS {
            let mut session = self.store.create_with_id(session_id(&record.id));
            fill(&mut session, &record, self.principal(), None)?;
            match session.save() {
                Ok(()) => return Ok(record.id),
                // The id is taken (live or expired, not yet purged): draw another, as
                // tower-sessions asks of a store.
                Err(e) if e.is_conflict() => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
        Err(Error::Backend(format!(
            "{CREATE_ATTEMPTS} random session ids in a row were already taken"
        )))
    }

    fn save_sync(&self, record: &Record) -> session_store::Result<()> {
        let id = session_id(&record.id);
        for _ in 0..SAVE_ATTEMPTS {
            let Some(mut session) = self.store.load(&id).map_err(backend)? else {
                // Invalidated (logout everywhere, sessctl), deleted or expired since this request
                // loaded it: never bring it back.
                return Ok(());
            };
            let touch = Touch {
                interval: self.store.touch_interval(),
                now: sessdb::Admin::now(&self.store),
            };
            fill(&mut session, record, self.principal(), Some(touch))?;
            match session.save() {
                Ok(()) => return Ok(()),
                // Another request saved in between: reload and write this record over it.
                Err(e) if e.is_conflict() => std::thread::yield_now(),
                Err(sessdb::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(backend(e)),
            }
        }
        Err(Error::Backend(format!(
            "session {}: gave up after {SAVE_ATTEMPTS} conflicting saves",
            id.handle()
        )))
    }
}

#[async_trait]
impl SessionStore for SessdbStore {
    /// Stores a new session under `record.id`, or under a fresh id (written back to
    /// `record.id`) if that one is taken. Never overwrites a stored session.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        if self.runs_inline(Cost::Write) {
            record.id = self.create_sync(record.clone())?;
            return Ok(());
        }
        let pending = record.clone();
        record.id = self.blocking(move |s| s.create_sync(pending)).await?;
        Ok(())
    }

    /// Replaces the stored session's data, expiry and principal with the record's. A session
    /// that is no longer stored (invalidated, deleted or expired since it was loaded) is not
    /// re-created: the next request starts a new session.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if self.runs_inline(Cost::Write) {
            return self.save_sync(record);
        }
        let record = record.clone();
        self.blocking(move |s| s.save_sync(&record)).await
    }

    /// The live session with this id; `None` if it is unknown, invalidated or expired.
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let id = *id;
        if self.runs_inline(Cost::Read) {
            return self.load_sync(id);
        }
        self.blocking(move |s| s.load_sync(id)).await
    }

    /// Removes the session, if it is stored.
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let id = *id;
        if self.runs_inline(Cost::Write) {
            return self.delete_sync(id);
        }
        self.blocking(move |s| s.delete_sync(id)).await
    }
}

#[async_trait]
impl ExpiredDeletion for SessdbStore {
    /// Purges every expired session ([`Store::purge_expired`]), in bounded batches.
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.blocking(|s| s.store.purge_expired().map_err(backend))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(durability: Durability) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder()
            .durability(durability)
            .open(dir.path().join("db"))
            .unwrap();
        (dir, store)
    }

    #[test]
    fn inline_calls_are_the_cheap_ones_only() {
        let periodic = Durability::Periodic {
            flush_every: std::time::Duration::from_millis(500),
        };
        for (durability, write_inline) in [(periodic, true), (Durability::Immediate, false)] {
            let (_dir, store) = open(durability);
            let default = SessdbStore::new(store.clone());
            let inline = SessdbStore::new(store).with_inline_calls();
            for cost in [Cost::Read, Cost::Write] {
                assert!(!default.runs_inline(cost), "{cost:?} inline by default");
            }
            assert!(inline.runs_inline(Cost::Read));
            assert_eq!(
                inline.runs_inline(Cost::Write),
                write_inline,
                "{durability:?}"
            );
        }
    }
}
