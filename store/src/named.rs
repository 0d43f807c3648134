//! Named sessions: an API client's cached login, a pool entry. A name maps to a fixed id, and
//! get-or-create runs the caller's authentication once however many threads ask at once.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::session::{validate_metadata, Session};
use crate::store::{lock, Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The lock of one name: held while a call gets or creates its session, and which thread holds
/// it, so that an `init` asking for its own name fails instead of waiting for itself.
#[derive(Default)]
pub(crate) struct NameLock {
    held: Mutex<()>,
    holder: Mutex<Option<std::thread::ThreadId>>,
}

/// Records the thread holding a name's lock, and forgets it when dropped, before the lock is
/// let go: also when `init` panics, so that a later call on the same thread is not taken for
/// one from inside `init`.
struct Holding<'a>(&'a NameLock);

impl<'a> Holding<'a> {
    fn new(name_lock: &'a NameLock, me: std::thread::ThreadId) -> Self {
        *lock(&name_lock.holder) = Some(me);
        Holding(name_lock)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        *lock(&self.0.holder) = None;
    }
}

impl Store {
    /// The live session named `name`, or a new one filled by `init` and saved.
    ///
    /// The session's id is [`SessionId::named`]`(name)` and its label is the name. While
    /// `init` runs (typically a login against a remote API), other callers asking for the same
    /// name wait and then get its result, so `init` runs once. If `init` fails, nothing is
    /// saved and the error is returned: a session that `init` saved before it failed is
    /// removed again, so the next call runs `init` afresh.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessdb::Store::open(dir.path().join("db"))?;
    /// let session = store.get_or_create("user:42/tenant:acme", |s| {
    ///     s.insert("token", "secret-from-the-identity-service")?;
    ///     Ok::<_, sessdb::Error>(())
    /// })?;
    /// assert_eq!(session.label(), Some("user:42/tenant:acme"));
    /// # Ok::<(), sessdb::Error>(())
    /// ```
    ///
    /// The session keeps its named id: a `cycle_id` in `init` before any save (as on an
    /// ordinary login) does not move it to a random id, where no later call would find it. A
    /// `save` followed by a `cycle_id` in `init` would leave the name's session under another
    /// id, so it is refused: that session is removed and the call fails with [`Error::Init`].
    ///
    /// `init` may ask for other names; asking for its own on the same thread fails with
    /// [`Error::Init`] rather than wait for itself (one it waits for on another thread would
    /// wait for it forever). It may not change the session's label, which is its name (what
    /// finds it); a session stored under the name's id with another label is not the named
    /// session, and is replaced.
    ///
    /// # Errors
    /// [`Error::Init`] wrapping the error of `init`, for a save and then a `cycle_id` in it, for
    /// another label given in it, for a session it left already expired (a deadline from an
    /// expired token, say: nothing is stored), or for a call for the same name from inside
    /// `init`;
    /// [`Error::InvalidField`] for an empty name or one over 4,096 bytes (the name is the
    /// session's label);
    /// [`Error::Corrupt`] if the record stored under the name cannot be read (`sessctl check
    /// --repair` removes it); errors of the save or of storage.
    pub fn get_or_create<E>(
        &self,
        name: &str,
        init: impl FnOnce(&mut Session) -> Result<(), E>,
    ) -> Result<Session>
    where
        E: Into<BoxError>,
    {
        self.get_or_create_validated(name, |_| true, init)
    }

    /// Like [`Store::get_or_create`], but a loaded session is first passed to `valid`; if it
    /// returns false (the token was revoked, say) the session is invalidated and re-created
    /// with `init`. `valid` runs on every call that finds a stored session, and again if
    /// another holder of the session saved it between the load and the invalidation (that
    /// newer session is validated, never removed unseen).
    ///
    /// # Errors
    /// As for [`Store::get_or_create`].
    pub fn get_or_create_validated<E>(
        &self,
        name: &str,
        valid: impl FnMut(&Session) -> bool,
        init: impl FnOnce(&mut Session) -> Result<(), E>,
    ) -> Result<Session>
    where
        E: Into<BoxError>,
    {
        if name.is_empty() {
            return Err(Error::InvalidField {
                field: "session name",
                reason: "it is empty".into(),
            });
        }
        validate_metadata("session name", Some(name))?;
        let id = SessionId::named(name);
        let name_lock = self.name_lock(&id);
        let me = std::thread::current().id();
        let result = if *lock(&name_lock.holder) == Some(me) {
            // An `init` that asks for its own name would wait for itself, and every later
            // caller of the name behind it.
            Err(Error::Init {
                name: name.to_string(),
                source: "asked for from inside its own init, which would wait for itself".into(),
            })
        } else {
            let _g = lock(&name_lock.held);
            let _holding = Holding::new(&name_lock, me);
            self.get_or_create_locked(id, name, valid, init)
        };
        self.release_name_lock(&id, name_lock);
        result
    }

    fn get_or_create_locked<E>(
        &self,
        id: SessionId,
        name: &str,
        mut valid: impl FnMut(&Session) -> bool,
        init: impl FnOnce(&mut Session) -> Result<(), E>,
    ) -> Result<Session>
    where
        E: Into<BoxError>,
    {
        // Callers of this name wait on its lock, but a session handed out earlier may be saved
        // (a refreshed token, say) between the load and the removal: remove only the session
        // that `valid` refused, and validate the newer one.
        const ATTEMPTS: u32 = 100;
        let mut attempts = 0;
        while let Some(session) = self.load_named(name)? {
            if valid(&session) {
                return Ok(session);
            }
            if session.invalidate_if_unchanged()? {
                break;
            }
            attempts += 1;
            if attempts == ATTEMPTS {
                return Err(Error::TooManyConflicts {
                    handle: id.handle().to_string(),
                    attempts,
                });
            }
        }
        // A live record under the name's id that is not the named session (another label: one
        // relabelled before sessdb refused that, or made with `create_with_id`) is reachable by
        // that id, and in the way of the named session: replaced.
        if let Some((_, record)) = self.load_record(&id.handle())? {
            if !id.is_named(record.head.label.as_deref()) {
                self.invalidate_handle(&id.handle())?;
            }
        }
        let mut session = self.create();
        session.set_named_id(id);
        session.set_label(Some(name))?;
        if let Err(e) = init(&mut session) {
            if !session.is_new() {
                // Saved by `init` before it failed: half made, and found by the next call,
                // which would then not run `init` at all.
                session.invalidate()?;
            }
            return Err(Error::Init {
                name: name.to_string(),
                source: e.into(),
            });
        }
        if session.id() != &id {
            if !session.is_new() {
                // Saved and then rotated inside `init`: stored where no call will look, so
                // removed again (it would hold the label, and count against its principal's
                // limit, until it expired).
                session.invalidate()?;
                return Err(Error::Init {
                    name: name.to_string(),
                    source: "init saved the session and then gave it another id (cycle_id); \
                             a named session's id is its name's"
                        .into(),
                });
            }
            session.set_named_id(id);
        }
        if session.label() != Some(name) {
            // Relabelled inside `init` (after a `cycle_id`, when the label can change): saved
            // under the name's id, it would not be the named session, and a client could reach
            // it by that id.
            if !session.is_new() {
                session.invalidate()?;
            }
            return Err(Error::Init {
                name: name.to_string(),
                source: "init gave the session another label; a named session's label is its name"
                    .into(),
            });
        }
        // A login whose token had already expired, say: the session would be stored expired,
        // and no call may return an expired session.
        let expires_at = session.expires_at();
        if expires_at <= crate::clock::from_ms(self.now()) {
            if !session.is_new() {
                session.invalidate()?;
            }
            return Err(Error::Init {
                name: name.to_string(),
                source: format!(
                    "init made a session that is already expired (it expires at {}, not after \
                     now: its idle timeout or absolute deadline)",
                    expires_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                )
                .into(),
            });
        }
        match session.save() {
            Ok(()) => Ok(session),
            // The load found nothing, yet a record is stored: one it cannot read.
            Err(e) if e.is_conflict() => Err(self.undecodable(&id.handle())?.unwrap_or(e)),
            Err(e) => Err(e),
        }
    }

    fn name_lock(&self, id: &SessionId) -> Arc<NameLock> {
        lock(&self.inner.named_locks)
            .entry(*id)
            .or_default()
            .clone()
    }

    fn release_name_lock(&self, id: &SessionId, name_lock: Arc<NameLock>) {
        let mut map = lock(&self.inner.named_locks);
        drop(name_lock);
        // Only the map's reference left: nobody else waits on this name.
        if map.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(id);
        }
    }
}
