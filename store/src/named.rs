//! Named sessions: an API client's cached login, a pool entry. A name maps to a fixed id, and
//! get-or-create runs the caller's authentication once however many threads ask at once.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::session::Session;
use crate::store::{lock, Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Store {
    /// The live session named `name`, or a new one filled by `init` and saved.
    ///
    /// The session's id is [`SessionId::named`]`(name)` and its label is the name. While
    /// `init` runs (typically a login against a remote API), other callers asking for the same
    /// name wait and then get its result, so `init` runs once. If `init` fails, nothing is
    /// saved and the error is returned.
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
    /// # Errors
    /// [`Error::Init`] wrapping the error of `init`; errors of the save or of storage.
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
    /// with `init`. `valid` runs on every call that finds a stored session.
    ///
    /// # Errors
    /// As for [`Store::get_or_create`].
    pub fn get_or_create_validated<E>(
        &self,
        name: &str,
        valid: impl FnOnce(&Session) -> bool,
        init: impl FnOnce(&mut Session) -> Result<(), E>,
    ) -> Result<Session>
    where
        E: Into<BoxError>,
    {
        let id = SessionId::named(name);
        let name_lock = self.name_lock(&id);
        let result = {
            let _g = lock(&name_lock);
            self.get_or_create_locked(id, name, valid, init)
        };
        self.release_name_lock(&id, name_lock);
        result
    }

    fn get_or_create_locked<E>(
        &self,
        id: SessionId,
        name: &str,
        valid: impl FnOnce(&Session) -> bool,
        init: impl FnOnce(&mut Session) -> Result<(), E>,
    ) -> Result<Session>
    where
        E: Into<BoxError>,
    {
        if let Some(session) = self.load(&id)? {
            if valid(&session) {
                return Ok(session);
            }
            session.invalidate()?;
        }
        let mut session = self.create();
        session.set_named_id(id);
        session.set_label(Some(name))?;
        init(&mut session).map_err(|e| Error::Init {
            name: name.to_string(),
            source: e.into(),
        })?;
        session.save()?;
        Ok(session)
    }

    fn name_lock(&self, id: &SessionId) -> Arc<Mutex<()>> {
        lock(&self.inner.named_locks)
            .entry(*id)
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    }

    fn release_name_lock(&self, id: &SessionId, name_lock: Arc<Mutex<()>>) {
        let mut map = lock(&self.inner.named_locks);
        drop(name_lock);
        // Only the map's reference left: nobody else waits on this name.
        if map.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(id);
        }
    }
}
