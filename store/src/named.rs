//! Named sessions: an API client's cached login, a pool entry. A name maps to a fixed id, and
//! get-or-create runs the caller's authentication once however many threads ask at once.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result, SledResult as _};
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
    inits: Mutex<Inits>,
}

/// The `init`s run for one name while callers waited: a caller that waited for a failed one
/// gets its failure, rather than try the login again (N callers would otherwise make N failed
/// logins in a row, enough to lock an account).
#[derive(Default)]
struct Inits {
    /// How many have finished.
    finished: u64,
    /// The failure of the last one to finish (its message and its causes'), if it failed.
    failure: Option<String>,
}

/// Records, when dropped by an `init` that panics, the panic as that `init`'s failure for the
/// callers waiting on the name: they get it rather than run `init` (the same code) again, one
/// after another. Dropped before the name's lock is let go.
struct PanicNote<'a> {
    name_lock: &'a NameLock,
    /// Whether `init` was called, and whether the call around it returned: a panic out of
    /// `init` leaves the first set and not the second (a `get_or_create` made while another
    /// panic unwinds is not one).
    ran: &'a std::cell::Cell<bool>,
    returned: &'a std::cell::Cell<bool>,
}

impl Drop for PanicNote<'_> {
    fn drop(&mut self) {
        if self.ran.get() && !self.returned.get() {
            let mut inits = lock(&self.name_lock.inits);
            inits.finished += 1;
            inits.failure = Some("it panicked".into());
        }
    }
}

/// A caller's reference to its name's lock, given back when dropped ([`Store`]'s
/// `release_name_lock`): also when `init` panics, or the map of name locks would keep the
/// entries of names whose login panicked.
struct NameLockRef<'a> {
    store: &'a Store,
    id: SessionId,
    name_lock: Arc<NameLock>,
}

impl NameLockRef<'_> {
    fn get_ref(&self) -> &NameLock {
        &self.name_lock
    }
}

impl Drop for NameLockRef<'_> {
    fn drop(&mut self) {
        self.store.release_name_lock(&self.id, &self.name_lock);
    }
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
    /// name wait and then get its result, so `init` runs once: the session it made, or its
    /// failure ([`Error::Init`], whose cause then gives that failure's message: the error
    /// itself goes to the call that ran `init`). If `init` fails or panics, nothing is saved: a
    /// session that `init` saved before it failed is removed again, so the next call runs
    /// `init` afresh.
    ///
    /// A call that finds the session is an access, as a request's load and save is: it moves
    /// the idle deadline (writing it at most once a touch interval, [`Builder::touch_interval`](
    /// crate::Builder::touch_interval)), so a named session in use outlives the store's idle
    /// timeout, up to its absolute deadline (set one in `init` from the token's lifetime:
    /// [`Session::set_absolute_deadline`]). [`Store::load_named`] only reads.
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
    /// [`Error::Init`] wrapping the error of `init` (or, in a call that waited for another
    /// call's `init`, giving that one's failure as its cause), for a save and then a
    /// `cycle_id` in it, for
    /// another label given in it, for a session it left already expired (a deadline from an
    /// expired token, say: nothing is stored), or for a call for the same name from inside
    /// `init`. Whatever `init` saved before such a failure (or a panic) is removed; if that
    /// removal fails too (storage), the error is still `init`'s, the failure is logged, and
    /// the half-made session is left to its deadline;
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
    /// `valid` runs under the name's lock, as `init` does, so that a refused session is
    /// replaced by one login however many callers refused it: callers of the same name wait
    /// for each other's `valid`. Keep it a local check (the token's expiry, say); a remote
    /// check on every call serializes the name's callers behind it.
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
        let (name_lock, seen) = self.name_lock(&id);
        // Let go when this call ends, also by a panic of `init`.
        let name_lock = NameLockRef {
            store: self,
            id,
            name_lock,
        };
        let name_lock = name_lock.get_ref();
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
            let _holding = Holding::new(name_lock, me);
            let waited_for = {
                let inits = lock(&name_lock.inits);
                if inits.finished > seen {
                    inits.failure.clone()
                } else {
                    None
                }
            };
            if let Some(failure) = waited_for {
                Err(Error::Init {
                    name: name.to_string(),
                    source: format!("the call this one waited for failed: {failure}").into(),
                })
            } else {
                let ran = std::cell::Cell::new(false);
                let returned = std::cell::Cell::new(false);
                let _panic = PanicNote {
                    name_lock,
                    ran: &ran,
                    returned: &returned,
                };
                let result = self.get_or_create_locked(id, name, valid, |s: &mut Session| {
                    ran.set(true);
                    init(s)
                });
                returned.set(true);
                if ran.get() {
                    let mut inits = lock(&name_lock.inits);
                    inits.finished += 1;
                    inits.failure = result.as_ref().err().map(|e| crate::error::chain(e));
                }
                result
            }
        };
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
        while let Some(mut session) = self.load_named(name)? {
            if valid(&session) {
                if self.inner.config.read_only {
                    return Ok(session);
                }
                // The access moves the idle deadline: a save of an unchanged session, which
                // writes only when the touch is due, and never conflicts. One ended meanwhile
                // is looked for again (and made again if gone). A touch that fails otherwise
                // (a full disk, where sled then refuses every write, and may fail reads; a session
                // over a lowered size limit) does not take the valid session from the caller.
                match session.save() {
                    Ok(()) => return Ok(session),
                    Err(Error::NotFound { .. }) => {}
                    Err(e) => {
                        log::warn!(
                            target: "sessdb::named",
                            "named session {name:?}: its touch was not written: {}",
                            crate::error::chain(&e)
                        );
                        return Ok(session);
                    }
                }
            } else if session.invalidate_if_unchanged()? {
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
        // A read-only store would refuse the save: the login is not made for nothing.
        self.check_writable("get_or_create")?;
        let mut session = self.create();
        session.set_named_id(id);
        session.set_label(Some(name))?;
        // Saved by `init` before it failed or panicked: half made, and found by the next call,
        // which would then not run `init` at all. (A panic goes on once that is removed.)
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| init(&mut session)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Ok(e)),
            Err(panic) => Some(Err(panic)),
        };
        match failure {
            None => {}
            Some(Ok(e)) => {
                discard_half_made(session, name);
                return Err(Error::Init {
                    name: name.to_string(),
                    source: e.into(),
                });
            }
            Some(Err(panic)) => {
                discard_half_made(session, name);
                std::panic::resume_unwind(panic)
            }
        }
        if session.id() != &id {
            if !session.is_new() {
                // Saved and then rotated inside `init`: stored where no call will look, so
                // removed again (it would hold the label, and count against its principal's
                // limit, until it expired).
                discard_half_made(session, name);
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
            discard_half_made(session, name);
            return Err(Error::Init {
                name: name.to_string(),
                source: "init gave the session another label; a named session's label is its name"
                    .into(),
            });
        }
        // A login whose token had already expired, say: the session would be stored expired,
        // and no call may return an expired session. Judged as the save will store it: a
        // login slower than the idle timeout still makes a live session.
        let expires_at = session.expiry_if_saved_now();
        if expires_at <= self.now() {
            discard_half_made(session, name);
            return Err(Error::Init {
                name: name.to_string(),
                source: format!(
                    "init made a session that is already expired (it expires at {}, not after \
                     now: its idle timeout or absolute deadline)",
                    crate::clock::from_ms(expires_at)
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                )
                .into(),
            });
        }
        match session.save() {
            Ok(()) => Ok(session),
            // The load found nothing, yet a record is stored: one it cannot read.
            Err(e) if e.is_conflict() && session.is_new() => {
                Err(self.undecodable(&id.handle())?.unwrap_or(e))
            }
            // Saved part way by `init`, and ended before `init` returned: expired (a save
            // never brings an expired session back), or invalidated meanwhile.
            Err(Error::NotFound { .. }) if !session.is_new() => {
                let expired = self
                    .inner
                    .sessions
                    .get(id.handle().as_bytes())
                    .storage()?
                    .and_then(|bytes| crate::record::decode_head(&bytes).ok())
                    .is_some_and(|head| head.is_expired(self.now()));
                discard_half_made(session, name);
                let why = if expired {
                    "init saved the session, which then expired before init returned (a login \
                     slower than the session's idle timeout: save only at the end of init, or \
                     not at all)"
                } else {
                    "init saved the session, which was then ended (invalidated) before init \
                     returned"
                };
                Err(Error::Init {
                    name: name.to_string(),
                    source: why.into(),
                })
            }
            Err(e) => {
                // Saved by `init` and then refused (too large, say): half made, as above.
                discard_half_made(session, name);
                Err(e)
            }
        }
    }

    /// The lock of the name whose id is `id`, and how many of its `init`s had finished when
    /// this caller asked (read under the map's lock, which tests use to know that a caller is
    /// on its way to wait).
    fn name_lock(&self, id: &SessionId) -> (Arc<NameLock>, u64) {
        let mut map = lock(&self.inner.named_locks);
        let name_lock = map.entry(*id).or_default().clone();
        let seen = lock(&name_lock.inits).finished;
        (name_lock, seen)
    }

    /// Forgets the name's lock once only the map and this caller (`name_lock`, about to be
    /// dropped) hold it: nobody else waits on this name.
    fn release_name_lock(&self, id: &SessionId, name_lock: &Arc<NameLock>) {
        let mut map = lock(&self.inner.named_locks);
        if map
            .get(id)
            .is_some_and(|l| Arc::ptr_eq(l, name_lock) && Arc::strong_count(l) == 2)
        {
            map.remove(id);
        }
    }
}

/// Removes a session `init` saved before the call failed (or panicked): half made, it would be
/// found by the next call, which would then not run `init`. Best effort, with one rule for
/// every failure: the caller is told what went wrong with `init` (its own error, which it may
/// downcast), and a removal that fails too (storage) is logged and leaves the session to its
/// deadline.
fn discard_half_made(session: Session, name: &str) {
    if session.is_new() {
        return;
    }
    if let Err(e) = session.invalidate() {
        log::warn!(
            target: "sessdb::named",
            "named session {name:?}: the session init saved before it failed was not removed: {}",
            crate::error::chain(&e)
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;

    /// Until a second caller holds the name's lock (the map, the first caller and the second
    /// hold it): it has read how many inits had finished, and waits for the first one's.
    fn until_a_second_caller_waits(store: &Store, id: &SessionId) {
        while lock(&store.inner.named_locks)
            .get(id)
            .map_or(0, Arc::strong_count)
            < 3
        {
            std::thread::yield_now();
        }
    }

    /// How the first caller's `init` ends, while a second caller waits for it.
    enum Ends {
        Failing,
        Panicking,
    }

    /// A first caller's `init` that ends as `ends` while a second caller waits on the name:
    /// what the second gets, and how many times its own `init` ran; the first caller's result
    /// is checked here.
    fn waiting_for_an_init_that(ends: Ends) -> (Result<Session>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let id = SessionId::named("svc");
        let (in_init, entered) = mpsc::channel();
        let (release, go) = mpsc::channel::<()>();
        let first = {
            let store = store.clone();
            std::thread::spawn(move || {
                store.get_or_create("svc", |_| {
                    in_init.send(()).unwrap();
                    go.recv().unwrap();
                    match ends {
                        Ends::Failing => Err(std::io::Error::other("identity service down")),
                        Ends::Panicking => panic!("identity client bug"),
                    }
                })
            })
        };
        entered.recv().unwrap();
        let inits = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (store, inits) = (store.clone(), inits.clone());
            std::thread::spawn(move || {
                store.get_or_create("svc", |s| {
                    inits.fetch_add(1, Ordering::SeqCst);
                    s.insert("token", "t")
                })
            })
        };
        until_a_second_caller_waits(&store, &id);
        release.send(()).unwrap();
        match first.join() {
            Ok(Err(err)) => {
                let cause = std::error::Error::source(&err).unwrap();
                assert!(cause.downcast_ref::<std::io::Error>().is_some(), "{err:?}");
            }
            Ok(Ok(_)) => panic!("the first init succeeded"),
            Err(_) => {} // it panicked
        }
        let got = waiter.join().unwrap();
        // A later call was not waiting: it logs in.
        let s = store
            .get_or_create("svc", |s| s.insert("token", "t"))
            .unwrap();
        assert_eq!(s.get::<String>("token").unwrap().as_deref(), Some("t"));
        (got, inits.load(Ordering::SeqCst))
    }

    /// A call's lock of its name is given back when its `init` panics too: the map of name
    /// locks kept the entry of each name whose login panicked.
    #[test]
    fn a_panicking_init_gives_its_name_lock_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        for i in 0..3 {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.get_or_create(&format!("n{i}"), |_| -> Result<()> { panic!("bug") })
            }));
            assert!(panicked.is_err());
        }
        store.get_or_create("ok", |_| Ok::<_, Error>(())).unwrap();
        assert_eq!(lock(&store.inner.named_locks).len(), 0);
    }

    /// A `get_or_create` made while another panic unwinds (in a request's clean-up guard) whose
    /// `init` succeeds: its waiter gets the session, not "it panicked".
    #[test]
    fn a_call_made_during_an_unwind_shares_its_success() {
        struct CleanUp {
            store: Store,
            in_init: mpsc::Sender<()>,
            go: mpsc::Receiver<()>,
        }
        impl Drop for CleanUp {
            fn drop(&mut self) {
                let made = self.store.get_or_create("svc", |s| {
                    self.in_init.send(()).unwrap();
                    self.go.recv().unwrap();
                    s.insert("token", "t")
                });
                assert!(made.is_ok(), "{made:?}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let (in_init, entered) = mpsc::channel();
        let (release, go) = mpsc::channel::<()>();
        let failing = {
            let store = store.clone();
            std::thread::spawn(move || {
                let _clean_up = CleanUp { store, in_init, go };
                panic!("the request failed");
            })
        };
        entered.recv().unwrap();
        let waiter = {
            let store = store.clone();
            std::thread::spawn(move || store.get_or_create("svc", |s| s.insert("token", "second")))
        };
        until_a_second_caller_waits(&store, &SessionId::named("svc"));
        release.send(()).unwrap();
        assert!(failing.join().is_err());
        let s = waiter.join().unwrap().unwrap();
        assert_eq!(s.get::<String>("token").unwrap().as_deref(), Some("t"));
    }

    /// Callers that waited for an `init` that failed get its failure, and do not log in again
    /// one after another (8 callers made 8 failed logins before); one that panicked, too.
    #[test]
    fn callers_that_waited_for_a_failed_init_get_its_failure() {
        for (ends, why) in [
            (
                Ends::Failing,
                "creating named session \"svc\" failed: identity service down",
            ),
            (Ends::Panicking, "it panicked"),
        ] {
            let (got, inits) = waiting_for_an_init_that(ends);
            let err = got.unwrap_err();
            assert!(
                matches!(&err, Error::Init { name, .. } if name == "svc"),
                "{err}"
            );
            assert_eq!(
                std::error::Error::source(&err).unwrap().to_string(),
                format!("the call this one waited for failed: {why}")
            );
            assert_eq!(inits, 0);
        }
    }
}
