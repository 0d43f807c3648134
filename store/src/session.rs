//! A loaded or new session: its data, metadata, dirty tracking and the save decision.
//!
//! A loaded session decodes only its record's head; the data is decoded when it is first read
//! whole, one key's value when only that key is read, and a save splices changed keys into the
//! stored data bytes or writes them back as they were (`data.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::IVec;
use time::OffsetDateTime;

use crate::clock::{duration_ms, from_ms, ms_duration, to_ms};
use crate::data::Data;
use crate::error::{redact, Error, Result};
use crate::id::{Handle, SessionId};
use crate::record::{encode_parts, Head, LazyRecord, StoredHead};
use crate::store::Store;
use crate::value::{Value, ValueError, MAX_DEPTH};

/// The longest principal, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 1024;
/// The longest label, remote address or user agent, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

/// A session: an id, its data and metadata.
///
/// Changes stay in memory until [`Session::save`]; dropping a session without saving discards
/// them. A session remembers the version it was loaded at, and `save` refuses to overwrite a
/// newer one ([`Error::Conflict`]).
///
/// Loading decodes the session's metadata only. Until something reads the whole data map,
/// [`Session::get`] (for its first three reads), [`Session::insert`] and [`Session::remove`]
/// work on one key: they decode that key's value alone, and a save writes the changed keys into the stored data without
/// decoding the others. The whole map is decoded the first time something reads it whole
/// ([`Session::data`], [`Session::get_value`], [`Session::into_data`]) or clears it; from then
/// on changes go to the decoded map and a save encodes all of it. The stored data was
/// checked at load, so none of these decodes can fail, and a save that did not change the data
/// writes it back as stored.
pub struct Session {
    store: Store,
    id: SessionId,
    handle: Handle,
    head: Head,
    data: Data,
    /// The stored bytes this session was loaded from (or last saved as), and what a write
    /// needs of their head; `None` if never saved.
    stored: Option<(IVec, StoredHead)>,
    /// Something was changed since the load or the last save.
    dirty: bool,
    /// Of those changes, one to the head (principal, label, client details, timeouts) or a
    /// [`Session::mark_changed`]: a save writes them. Without one, a save writes nothing if the
    /// data holds what is stored after all (a key removed, then set back to its value).
    head_dirty: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the id or the data: both may be secrets.
        f.debug_struct("Session")
            .field("handle", &self.handle)
            .field("version", &self.head.version)
            .field("changed", &self.dirty)
            .finish_non_exhaustive()
    }
}

/// What a save wrote, when another request may have written the session since it was loaded.
enum OverTouches {
    /// The session as this handle holds it: the record's bytes and where its data starts.
    Wrote((IVec, usize)),
    /// The record another request stored, which the handle takes on: it had nothing of its
    /// own to write but a touch. `wrote` says whether that touch was written on top of the
    /// record (these are then the bytes written) or was no longer due.
    Theirs {
        bytes: IVec,
        record: LazyRecord,
        wrote: bool,
    },
}

impl Session {
    pub(crate) fn new(store: Store, id: SessionId, head: Head) -> Self {
        Session {
            store,
            handle: id.handle(),
            id,
            head,
            data: Data::new(),
            stored: None,
            dirty: true,
            head_dirty: true,
        }
    }

    /// A session loaded from `bytes`, stored under `handle` (its id's, which the caller has
    /// computed already: hashing it again would cost every load a second SHA-256).
    pub(crate) fn loaded(
        store: Store,
        id: SessionId,
        handle: Handle,
        bytes: IVec,
        record: LazyRecord,
    ) -> Self {
        debug_assert!(handle == id.handle());
        Session {
            store,
            handle,
            id,
            stored: Some((bytes.clone(), record.head.stored())),
            head: record.head,
            data: Data::loaded(bytes, record.data_at, record.data),
            dirty: false,
            head_dirty: false,
        }
    }

    /// Gives a never-saved session the id of a named session.
    pub(crate) fn set_named_id(&mut self, id: SessionId) {
        self.id = id;
        self.handle = id.handle();
    }

    /// The session id: the token to hand to the client (in a cookie, say).
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The storage handle (what sessctl shows; not a usable token).
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// Whether this session has never been saved.
    pub fn is_new(&self) -> bool {
        self.stored.is_none()
    }

    /// Whether the session has changes that [`Session::save`] will write. Changes that undo
    /// each other are none: data that holds what is stored again (a key removed, then set
    /// back to the value it had) is compared in its stored encoding, and writes nothing. (Data
    /// stored in another form than sessdb's own, which only a writer other than sessdb makes,
    /// compares as changed, and a save writes it in sessdb's form.) For changed data this
    /// encodes it to compare, each call; [`Session::save`] encodes it once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    /// let mut session = store.create();
    /// session.insert("cart", &[1, 2])?;
    /// session.save()?;
    ///
    /// let mut loaded = store.load(session.id())?.unwrap();
    /// let cart = loaded.remove("cart").unwrap();
    /// assert!(loaded.is_dirty());
    /// loaded.insert_value("cart", cart)?;
    /// assert!(!loaded.is_dirty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_dirty(&self) -> bool {
        self.dirty && (self.head_dirty || self.stored.is_none() || !self.data.holds_stored())
    }

    /// Marks the session changed, for a value mutated in a way the session cannot see: the
    /// next save writes it, even if its data reads as stored.
    pub fn mark_changed(&mut self) {
        self.changed_head();
        self.data.changed();
    }

    /// Records a change that a save writes whatever the data holds (see `head_dirty`).
    fn changed_head(&mut self) {
        self.dirty = true;
        self.head_dirty = true;
    }

    /// The value under `key`, converted to `T`. `None` if there is no such key. Only this
    /// key's value is decoded, for the first three reads of data not decoded yet; the fourth
    /// decodes the whole map once, which then serves every read.
    ///
    /// # Errors
    /// [`Error::Value`] when the stored value does not fit `T`; [`Error::Corrupt`] if the
    /// stored data does not decode (a load refuses such a record, so only a bug makes this
    /// happen).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.data
            .value(key)
            .map_err(|e| undecodable(&self.handle, &e))?
            .map(|v| {
                v.to_deserialize().map_err(|e| Error::Value {
                    key: key.to_string(),
                    reason: redact(&e.0),
                })
            })
            .transpose()
    }

    /// The raw value under `key`. Decodes the whole data map (once), since the value is
    /// borrowed from it; [`Session::get`] decodes this one value only.
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.data.get_or_empty().get(key)
    }

    /// All of the session's data.
    pub fn data(&self) -> &BTreeMap<String, Value> {
        self.data.get_or_empty()
    }

    /// All of the session's data, taken out of the session (which is dropped, unsaved): for a
    /// caller that converts the whole map, without copying it.
    ///
    /// # Errors
    /// [`Error::Corrupt`] as for [`Session::get`].
    pub fn into_data(self) -> Result<BTreeMap<String, Value>> {
        let handle = self.handle;
        self.data.into_map().map_err(|e| undecodable(&handle, &e))
    }

    /// Stores `value` under `key`. The session counts as changed only if the value differs from
    /// the one stored. While the data has not been read whole, the other keys' values are
    /// neither decoded nor encoded again.
    ///
    /// `value` goes through serde's JSON data model, as [`Session::get`] comes back through
    /// it. That model has no form for a float that is not finite, so a NaN or an infinity
    /// anywhere in `value` (a field, an element, a map key, a variant) is refused rather than
    /// stored as `null`, which would read back as something else or not at all. Such a float
    /// can be stored with [`Session::insert_value`] as a [`Value::Float`], and read with
    /// [`Session::get_value`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    /// use sessdb::{Error, Value};
    ///
    /// let mut session = store.create();
    /// let refused = session.insert("ratio", &[1.0, f64::NAN]);
    /// assert!(matches!(refused, Err(Error::Value { .. })));
    /// assert_eq!(session.get_value("ratio"), None);
    ///
    /// session.insert_value("ratio", Value::Float(f64::NAN))?;
    /// assert!(matches!(session.get_value("ratio"), Some(Value::Float(x)) if x.is_nan()));
    /// # Ok::<(), sessdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Value`] when `value` cannot be serialized, holds a float that is not finite or
    /// nests deeper than 64 levels (the session is unchanged); [`Error::Corrupt`] as for
    /// [`Session::get`].
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let value = Value::from_serialize(value).map_err(|e| Error::Value {
            key: key.to_string(),
            reason: redact(&e.0),
        })?;
        self.insert_value(key, value)
    }

    /// Stores a raw value under `key`.
    ///
    /// # Errors
    /// [`Error::Value`] when the value nests deeper than 64 levels; [`Error::Corrupt`] as for
    /// [`Session::get`].
    pub fn insert_value(&mut self, key: &str, mut value: Value) -> Result<()> {
        if value.deeper_than(MAX_DEPTH) {
            return Err(Error::Value {
                key: key.to_string(),
                reason: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        value.normalize();
        if self
            .data
            .set(key, value)
            .map_err(|e| undecodable(&self.handle, &e))?
        {
            self.dirty = true;
        }
        Ok(())
    }

    /// Replaces all of the session's data with `data`. The session counts as changed only if
    /// `data` differs from what it held; data not read since the load is compared in its
    /// stored encoding, without decoding it. (For a framework that hands over a whole map per
    /// request, as tower-sessions does.)
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    /// use std::collections::BTreeMap;
    /// use sessdb::Value;
    ///
    /// let mut session = store.create();
    /// session.insert("cart", &[1, 2])?;
    /// session.save()?;
    ///
    /// let mut loaded = store.load(session.id())?.unwrap();
    /// let cart = Value::from_plain_json(&serde_json::json!([1, 2]))?;
    /// loaded.replace_data(BTreeMap::from([("cart".to_string(), cart)]))?;
    /// assert!(!loaded.is_dirty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Data that cannot be decoded (which a load refuses, so only a bug leaves any) is
    /// replaced, as [`Session::clear`] replaces it.
    ///
    /// # Errors
    /// [`Error::Value`] when a value nests deeper than 64 levels (the session is unchanged).
    pub fn replace_data(&mut self, mut data: BTreeMap<String, Value>) -> Result<()> {
        if let Some((key, _)) = data.iter().find(|(_, v)| v.deeper_than(MAX_DEPTH)) {
            return Err(Error::Value {
                key: key.clone(),
                reason: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        data.values_mut().for_each(Value::normalize);
        if self.data.replace(data) {
            self.dirty = true;
        }
        Ok(())
    }

    /// Removes and returns the value under `key` (decoding that value only).
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let old = self.data.remove(key).ok()?;
        if old.is_some() {
            self.dirty = true;
        }
        old
    }

    /// Removes all data (metadata and principal stay).
    pub fn clear(&mut self) {
        if self.data.clear() {
            self.dirty = true;
        }
    }

    /// The principal (the user this session belongs to), if any.
    pub fn principal(&self) -> Option<&str> {
        self.head.principal.as_deref()
    }

    /// Sets or clears the principal. Takes effect in the principal index on save. On a login,
    /// follow it with [`Session::cycle_id`].
    ///
    /// # Errors
    /// [`Error::InvalidField`] for an empty principal, one over 1,024 bytes, or one with a NUL.
    pub fn set_principal(&mut self, principal: Option<&str>) -> Result<()> {
        if let Some(p) = principal {
            validate_principal(p)?;
        }
        if set_field(&mut self.head.principal, principal) {
            self.changed_head();
        }
        Ok(())
    }

    /// The label: a non-secret display name (a named session's name, say).
    pub fn label(&self) -> Option<&str> {
        self.head.label.as_deref()
    }

    /// Sets or clears the label.
    ///
    /// # Errors
    /// [`Error::InvalidField`] when it is over 4,096 bytes, or for another label on a named
    /// session ([`Store::get_or_create`]): its label is its name, which finds it.
    pub fn set_label(&mut self, label: Option<&str>) -> Result<()> {
        validate_metadata("label", label)?;
        if label != self.head.label.as_deref() && self.id.is_named(self.head.label.as_deref()) {
            return Err(Error::InvalidField {
                field: "label",
                reason: "a named session's label is its name".into(),
            });
        }
        if set_field(&mut self.head.label, label) {
            self.changed_head();
        }
        Ok(())
    }

    /// The client's remote address, if recorded.
    pub fn remote_addr(&self) -> Option<&str> {
        self.head.remote_addr.as_deref()
    }

    /// Records the client's remote address.
    ///
    /// # Errors
    /// [`Error::InvalidField`] when it is over 4,096 bytes.
    pub fn set_remote_addr(&mut self, addr: Option<&str>) -> Result<()> {
        validate_metadata("remote address", addr)?;
        if set_field(&mut self.head.remote_addr, addr) {
            self.changed_head();
        }
        Ok(())
    }

    /// The client's user agent, if recorded.
    pub fn user_agent(&self) -> Option<&str> {
        self.head.user_agent.as_deref()
    }

    /// Records the client's user agent.
    ///
    /// # Errors
    /// [`Error::InvalidField`] when it is over 4,096 bytes.
    pub fn set_user_agent(&mut self, agent: Option<&str>) -> Result<()> {
        validate_metadata("user agent", agent)?;
        if set_field(&mut self.head.user_agent, agent) {
            self.changed_head();
        }
        Ok(())
    }

    /// When the session was created.
    pub fn created(&self) -> OffsetDateTime {
        from_ms(self.head.created)
    }

    /// When the session was last saved or touched.
    pub fn last_access(&self) -> OffsetDateTime {
        from_ms(self.head.last_access)
    }

    /// When the session expires: `min(last_access + idle_timeout, absolute_deadline)`.
    pub fn expires_at(&self) -> OffsetDateTime {
        from_ms(self.head.expires_at)
    }

    /// The session's idle timeout: `Duration::MAX` if it has none.
    pub fn idle_timeout(&self) -> Duration {
        ms_duration(self.head.idle_timeout_ms)
    }

    /// Overrides the store's idle timeout for this session; `Duration::MAX` for none (the
    /// session then lives to its absolute deadline, however idle). Unlike
    /// [`Builder::idle_timeout`](crate::Builder::idle_timeout), which refuses one under a
    /// millisecond, a session takes any: one under a millisecond ends it at its next save
    /// (saved, it is expired, so no load returns it).
    pub fn set_idle_timeout(&mut self, d: Duration) {
        let ms = duration_ms(d);
        if self.head.idle_timeout_ms != ms {
            self.head.idle_timeout_ms = ms;
            self.head.expires_at = self.head.compute_expiry();
            self.changed_head();
        }
    }

    /// The latest moment the session can live to, however busy.
    pub fn absolute_deadline(&self) -> OffsetDateTime {
        from_ms(self.head.absolute_deadline)
    }

    /// Overrides the absolute deadline (an API token's expiry, say). A deadline that is not
    /// after now ends the session at its next save (saved, it is expired, so no load returns
    /// it; [`Store::get_or_create`](crate::Store::get_or_create) refuses an `init` that does
    /// this).
    pub fn set_absolute_deadline(&mut self, t: OffsetDateTime) {
        let ms = to_ms(t);
        if self.head.absolute_deadline != ms {
            self.head.absolute_deadline = ms;
            self.head.expires_at = self.head.compute_expiry();
            self.changed_head();
        }
    }

    /// The stored version this session was loaded at (0 if never saved).
    pub fn version(&self) -> u64 {
        self.head.version
    }

    /// The access time and deadline a save now would store: a save is an access, and a clock
    /// that went backwards never moves last access back.
    fn accessed_now(&self) -> (i64, i64) {
        let last_access = self.head.last_access.max(self.store.now());
        (last_access, self.head.expiry_if_accessed_at(last_access))
    }

    /// The deadline a save now would store (milliseconds since the Unix epoch).
    pub(crate) fn expiry_if_saved_now(&self) -> i64 {
        self.accessed_now().1
    }

    /// The head as it would be written now, or `None` if nothing needs writing: no change and
    /// no touch due.
    fn next_head(&self) -> Option<Head> {
        let (last_access, expires_at) = self.accessed_now();
        if !self.dirty {
            // Unchanged, the head is the stored one: its last access is the stored one.
            let stored = self.stored.as_ref().map_or(i64::MIN, |(_, h)| h.expires_at);
            if !self.touch_due_with(
                self.head.idle_timeout_ms,
                (last_access, expires_at),
                (self.head.last_access, stored),
            ) {
                // Decided before copying the head: a save that writes nothing costs nothing.
                return None;
            }
        }
        let mut next = self.head.clone();
        next.last_access = last_access;
        next.expires_at = expires_at;
        next.version = next.version.wrapping_add(1);
        Some(next)
    }

    /// Whether an unchanged session whose idle timeout is `idle_timeout_ms`, and whose last
    /// access and deadline would move from `stored` to `now` (each `(last_access,
    /// expires_at)`), is due a touch: when either moved by the touch interval, or by half the
    /// idle timeout if that is less (a touch interval longer than the idle timeout would
    /// otherwise let a session in use expire untouched). The last access counts on its own:
    /// a session without an idle timeout, or near its absolute deadline, has a deadline that
    /// no longer moves, and its recorded last access is still what `EvictOldest` goes by.
    fn touch_due_with(&self, idle_timeout_ms: i64, now: (i64, i64), stored: (i64, i64)) -> bool {
        let touch = duration_ms(self.store.inner.config.touch_interval)
            .min(idle_timeout_ms / 2)
            .max(1);
        now.0.saturating_sub(stored.0) >= touch || now.1.saturating_sub(stored.1) >= touch
    }

    /// The session was written as `bytes` with `head`.
    fn written(&mut self, bytes: IVec, data_at: usize, head: Head) {
        self.data.saved(bytes.clone(), data_at);
        self.stored = Some((bytes, head.stored()));
        self.head = head;
        self.dirty = false;
        self.head_dirty = false;
    }

    /// Writes the session if it changed, or if a touch is due (the idle deadline or the last
    /// access moved by at least the touch interval; see
    /// [`Builder::touch_interval`](crate::Builder::touch_interval)). Otherwise writes nothing.
    /// Data changes that undo each other are no change (see [`Session::is_dirty`]).
    ///
    /// A touch never conflicts. When another request only touched the session since this one
    /// loaded it (it read the session, and its save moved the deadline), this save goes on top
    /// of that touch, and writes nothing if all it had to write was a touch. When this handle
    /// changed nothing, its touch goes on top of whatever another request stored, changes
    /// included (or writes nothing if that write already moved the deadline far enough), and
    /// the handle then holds that stored session. So requests that only read a session never
    /// fail each other, nor one that changes it.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another writer changed the session since it was loaded (its
    /// data, principal or settings; nothing is written; load again and retry, or use
    /// [`Store::update`]); [`Error::NotFound`] if it was invalidated, purged or expired
    /// meanwhile (a save never brings an expired session back), or another holder rotated its
    /// id ([`Session::cycle_id`], a login in another request: the session lives on under the
    /// new id, which this handle does not know; a request that only read the session can
    /// ignore this error); [`Error::TooLarge`]; [`Error::PrincipalLimit`]; [`Error::ReadOnly`];
    /// storage errors.
    pub fn save(&mut self) -> Result<()> {
        // Data changes that undid each other are no change: at most a touch is due.
        if self.dirty && !self.head_dirty && self.stored.is_some() && self.data.settle() {
            self.dirty = false;
        }
        let Some(next) = self.next_head() else {
            self.store.inner.counters.skipped();
            return Ok(());
        };
        self.store.check_writable("save")?;
        let old_principal = self.stored.as_ref().and_then(|(_, h)| h.principal.clone());
        let principal_changed = old_principal != next.principal;
        let mut next = next;
        // The data is encoded only if it changed; otherwise the stored tokens are reused.
        let data = self
            .data
            .encoded()
            .map_err(|e| undecodable(&self.handle, &e))?;
        let (written, evicted) = {
            // A changed principal takes the principal locks first (limit, invalidation race).
            let _p = if principal_changed {
                self.store
                    .lock_principals(&[old_principal.as_deref(), next.principal.as_deref()])
            } else {
                self.store.lock_principals(&[])
            };
            let victims = match &next.principal {
                Some(p) if principal_changed => self.store.make_room(p, &self.handle)?,
                _ => Vec::new(),
            };
            let written = {
                let _k = self.store.lock_key(&self.handle);
                if let Some((loaded, head)) = &self.stored {
                    self.store
                        .refuse_expired(&self.handle, loaded, head, !self.dirty)?;
                }
                let old = self.stored.as_ref().map(|(b, h)| (b, h));
                match self.store.write_locked(&self.handle, old, &mut next, &data) {
                    Err(e @ Error::Conflict { .. }) => {
                        self.save_over_touches(e, &mut next, &data)?
                    }
                    written => OverTouches::Wrote(written?),
                }
            };
            // Only a save that succeeded makes room. A crash before this leaves the principal
            // one session over its limit, never an index out of step.
            let evicted = match written {
                OverTouches::Wrote(_) => self.store.evict(&victims),
                // Only a changed principal has victims, and a handle with changes never takes
                // another request's record.
                OverTouches::Theirs { .. } => Ok(()),
            };
            (written, evicted)
        };
        drop(data);
        match written {
            // The record is written whether or not the eviction failed.
            OverTouches::Wrote((bytes, data_at)) => self.written(bytes, data_at, next),
            OverTouches::Theirs {
                bytes,
                record,
                wrote,
            } => {
                self.stored = Some((bytes.clone(), record.head.stored()));
                self.head = record.head;
                self.data = Data::loaded(bytes, record.data_at, record.data);
                self.dirty = false;
                self.head_dirty = false;
                if !wrote {
                    // Nothing to write after all: the session is what another request stored.
                    self.store.inner.counters.skipped();
                    return Ok(());
                }
            }
        }
        evicted?;
        self.store.sync()
    }

    /// After `conflict`, under the key lock. A handle that changed nothing puts its touch on
    /// top of whatever another request stored ([`Session::touch_over`]). A handle with changes
    /// writes `next` on top of the stored record only if other writers merely touched it since
    /// the load (requests that read it); anything else that changed gives `conflict` back.
    fn save_over_touches(
        &self,
        conflict: Error,
        next: &mut Head,
        data: &[u8],
    ) -> Result<OverTouches> {
        let Some((base, _)) = &self.stored else {
            return Err(conflict);
        };
        if !self.dirty {
            return self.touch_over(conflict, next);
        }
        let Some((current, record)) = self.store.touched_since(&self.handle, base)? else {
            return Err(conflict);
        };
        self.store.inner.counters.conflict_resolved();
        let theirs = record.head;
        next.version = theirs.version.wrapping_add(1);
        next.last_access = next.last_access.max(theirs.last_access);
        next.expires_at = next.expiry_if_accessed_at(next.last_access);
        let old = (&current, &theirs.stored());
        self.store
            .write_locked(&self.handle, Some(old), next, data)
            .map(OverTouches::Wrote)
    }

    /// The touch of a handle that changed nothing (`next` is its head with the touch), after
    /// another request wrote the session since the load: written on top of the stored record,
    /// whose data and settings stay as that request left them, or nothing if that record's
    /// deadline is already within the touch interval of this one. Either way the handle then
    /// holds the stored session. A stored record that has expired meanwhile is
    /// [`Error::NotFound`]: a touch never brings it back.
    fn touch_over(&self, conflict: Error, next: &Head) -> Result<OverTouches> {
        let Some((current, record)) = self.store.stored_record(&self.handle)? else {
            return Err(conflict);
        };
        // Not refused because another writer saved first: the touch goes on top, or the
        // session is gone.
        self.store.inner.counters.conflict_resolved();
        let theirs = &record.head;
        if theirs.is_expired(self.store.now()) {
            return Err(Error::NotFound {
                handle: self.handle.to_string(),
            });
        }
        let mut touched = theirs.clone();
        touched.version = theirs.version.wrapping_add(1);
        touched.last_access = next.last_access.max(theirs.last_access);
        touched.expires_at = touched.expiry_if_accessed_at(touched.last_access);
        if !self.touch_due_with(
            theirs.idle_timeout_ms,
            (touched.last_access, touched.expires_at),
            (theirs.last_access, theirs.expires_at),
        ) {
            return Ok(OverTouches::Theirs {
                bytes: current,
                record,
                wrote: false,
            });
        }
        let old = (&current, &theirs.stored());
        let data = current.get(record.data_at..).unwrap_or_default();
        let (bytes, data_at) =
            self.store
                .write_locked(&self.handle, Some(old), &mut touched, data)?;
        Ok(OverTouches::Theirs {
            bytes,
            record: LazyRecord {
                head: touched,
                data_at,
                data: record.data,
            },
            wrote: true,
        })
    }

    /// Gives the session a new random id, keeping its data and principal, and writes it: the
    /// old id stops working in the same atomic step. Call it on login and on privilege changes
    /// (session fixation). Pending changes, a new principal among them, are written in that
    /// step too: the old id never holds them, and if the rotation fails (a conflict, say)
    /// nothing is written.
    ///
    /// A session that was never saved only takes the new id, which its first save writes.
    ///
    /// A named session ([`Store::get_or_create`](crate::Store::get_or_create)) is found by its
    /// name, whose id it keeps: a stored one is not rotated (under a random id no call would
    /// find it, and the next `get_or_create` would log in again beside it). To replace its
    /// login, invalidate it ([`Store::invalidate_named`](crate::Store::invalidate_named)) and
    /// call `get_or_create` again.
    ///
    /// # Errors
    /// As for [`Session::save`]; [`Error::InvalidField`] for a stored named session (nothing is
    /// written).
    pub fn cycle_id(&mut self) -> Result<()> {
        self.store.check_writable("cycle_id")?;
        if self.stored.is_some() && self.id.is_named(self.head.label.as_deref()) {
            return Err(Error::InvalidField {
                field: "session id",
                reason: "a named session keeps its name's id, so it is not rotated (invalidate \
                         it and get_or_create it again to replace it)"
                    .into(),
            });
        }
        let new_id = SessionId::random();
        let new_handle = new_id.handle();
        let Some((loaded, loaded_head)) = &self.stored else {
            // Never stored: nothing to remove, the new id is used by the first save.
            self.id = new_id;
            self.handle = new_handle;
            return Ok(());
        };
        // A login changes the principal in the same step: the old id never holds it.
        let mut next = self.next_head().unwrap_or_else(|| {
            let mut h = self.head.clone();
            h.version = h.version.wrapping_add(1);
            h
        });
        next.last_access = next.last_access.max(self.store.now());
        next.expires_at = next.compute_expiry();
        // A new key: its expiry entry goes to its deadline.
        next.place_entry(None);
        let data = self
            .data
            .encoded()
            .map_err(|e| undecodable(&self.handle, &e))?;
        // The record the rotation replaces: the one loaded, or, when other requests only
        // touched it since (as for `save`), the touched one, which the rotation goes on top of.
        let mut old = (loaded.clone(), loaded_head.clone());
        let mut tries = 0;
        let rotated = loop {
            let (encoded, data_at) = encode_parts(&next, &data);
            match self
                .store
                .rotate(&self.handle, (&old.0, &old.1), &new_handle, &next, encoded)
            {
                // As for `save`: a rotation goes on top of another request's touch that left
                // the session live, and one that has expired since, touch and all, is the
                // conflict it is for `save` (`Store::refuse_expired`: another writer changed
                // the record; a retry's load finds it gone). Going on top of it would end in
                // `NotFound` where the same race ends a change in `Conflict`.
                Err(conflict @ Error::Conflict { .. }) if tries < 3 => {
                    tries += 1;
                    let now = self.store.now();
                    let Some((current, record)) = self
                        .store
                        .touched_since(&self.handle, loaded)?
                        .filter(|(_, record)| !record.head.is_expired(now))
                    else {
                        return Err(conflict);
                    };
                    self.store.inner.counters.conflict_resolved();
                    next.version = record.head.version.wrapping_add(1);
                    next.last_access = next.last_access.max(record.head.last_access);
                    next.expires_at = next.compute_expiry();
                    next.place_entry(None);
                    old = (current, record.head.stored());
                }
                rotated => break rotated.map(|r| (r, data_at)),
            }
        };
        drop(data);
        let ((written, evicted), data_at) = rotated?;
        self.id = new_id;
        self.handle = new_handle;
        // The record is moved whether or not the eviction failed.
        self.written(written, data_at, next);
        evicted?;
        self.store.sync()
    }

    /// Deletes the session from the store. Returns whether it was stored.
    ///
    /// # Errors
    /// Storage errors, or [`Error::ReadOnly`].
    pub fn invalidate(self) -> Result<bool> {
        if self.stored.is_none() {
            return Ok(false);
        }
        self.store.invalidate_handle(&self.handle)
    }

    /// Deletes the session from the store if it is still stored as this handle loaded or last
    /// wrote it. Returns whether it was removed: `false` if another writer changed it since (or
    /// it is gone, or was never saved).
    pub(crate) fn invalidate_if_unchanged(&self) -> Result<bool> {
        let Some((bytes, head)) = &self.stored else {
            return Ok(false);
        };
        self.store.check_writable("invalidate")?;
        let removed = self.store.remove_if_unchanged(
            &self.handle,
            bytes,
            head.expiry_entry,
            head.principal.as_deref(),
        )?;
        self.store.sync()?;
        Ok(removed)
    }
}

/// The error for session data that does not decode (which the check at load rules out).
fn undecodable(handle: &Handle, e: &ValueError) -> Error {
    Error::Corrupt {
        handle: handle.to_string(),
        reason: e.0.clone(),
    }
}

/// Sets `field` to `value`; returns whether that changed it.
fn set_field(field: &mut Option<String>, value: Option<&str>) -> bool {
    let changed = field.as_deref() != value;
    if changed {
        *field = value.map(str::to_string);
    }
    changed
}

pub(crate) fn validate_principal(p: &str) -> Result<()> {
    let reason = if p.is_empty() {
        "it is empty".to_string()
    } else if p.len() > MAX_PRINCIPAL_BYTES {
        format!(
            "it is {} bytes, over the limit of {MAX_PRINCIPAL_BYTES}",
            p.len()
        )
    } else if p.contains('\0') {
        "it contains a NUL character".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidField {
        field: "principal",
        reason,
    })
}

pub(crate) fn validate_metadata(field: &'static str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) if v.len() > MAX_METADATA_BYTES => Err(Error::InvalidField {
            field,
            reason: format!(
                "it is {} bytes, over the limit of {MAX_METADATA_BYTES}",
                v.len()
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::clock::ManualClock;
    use crate::record::decode_lazy;
    use crate::value::Checked;

    use super::*;

    /// The stored record of `id`, as bytes.
    fn raw(store: &Store, id: &SessionId) -> Vec<u8> {
        store
            .inner
            .sessions
            .get(id.handle().as_bytes())
            .unwrap()
            .unwrap()
            .to_vec()
    }

    /// The data part of a stored record.
    fn data_part(record: &[u8]) -> Vec<u8> {
        record[decode_lazy(record).unwrap().data_at..].to_vec()
    }

    /// A store in `dir` on a manual clock, holding one saved session with a cart and a token.
    fn cart_and_csrf(dir: &tempfile::TempDir) -> (ManualClock, Store, Session) {
        let clock = ManualClock::at_ms(1_767_225_600_000);
        let store = Store::builder()
            .clock(clock.clone())
            .open(dir.path().join("db"))
            .unwrap();
        let mut s = store.create();
        s.insert("cart", &vec![1, 2, 3]).unwrap();
        s.insert("csrf", "token").unwrap();
        s.save().unwrap();
        (clock, store, s)
    }

    /// A save that does not change the data writes the stored data bytes back as they were,
    /// decoded or not. The stored data here ends in bytes the decoder ignores (after the last
    /// token), which a re-encoding would drop: they survive every save but a data change.
    #[test]
    fn saves_that_leave_the_data_alone_write_its_stored_bytes_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, store, s) = cart_and_csrf(&dir);
        let id = *s.id();
        drop(s);
        let mut planted = raw(&store, &id);
        planted.extend_from_slice(b"\xaa\xbb");
        store
            .inner
            .sessions
            .insert(id.handle().as_bytes(), planted.clone())
            .unwrap();
        let stored_data = data_part(&planted);
        assert_eq!(decode_lazy(&planted).unwrap().data, Checked::Valid);

        // A touch (the idle deadline moves), never decoded.
        clock.advance(Duration::from_secs(120));
        let mut s = store.load(&id).unwrap().unwrap();
        s.save().unwrap();
        assert!(!s.data.is_decoded());
        let touched = raw(&store, &id);
        assert_ne!(touched, planted, "the touch wrote a new head");
        assert_eq!(data_part(&touched), stored_data);

        // Metadata and principal changed, and the data read but not changed: one key (decoded
        // alone), then the whole map (decoded).
        let mut s = store.load(&id).unwrap().unwrap();
        assert_eq!(s.get::<String>("csrf").unwrap().as_deref(), Some("token"));
        assert!(!s.data.is_decoded());
        assert_eq!(s.data().len(), 2);
        assert!(s.data.is_decoded());
        s.set_principal(Some("alice")).unwrap();
        s.set_label(Some("web")).unwrap();
        s.save().unwrap();
        let relabelled = raw(&store, &id);
        assert_eq!(
            decode_lazy(&relabelled).unwrap().head.principal.as_deref(),
            Some("alice")
        );
        assert_eq!(data_part(&relabelled), stored_data);

        // A rotation keeps them too.
        let mut s = store.load(&id).unwrap().unwrap();
        s.cycle_id().unwrap();
        let id = *s.id();
        assert_eq!(data_part(&raw(&store, &id)), stored_data);

        // A data change encodes the data (spliced, never decoded): the ignored bytes are gone,
        // the values are not.
        let mut s = store.load(&id).unwrap().unwrap();
        s.insert("n", &1).unwrap();
        s.save().unwrap();
        assert!(!s.data.is_decoded());
        let changed = data_part(&raw(&store, &id));
        assert!(!changed.ends_with(b"\xaa\xbb"));
        let s = store.load(&id).unwrap().unwrap();
        assert_eq!(s.get::<Vec<i32>>("cart").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(s.get::<i32>("n").unwrap(), Some(1));
    }

    /// Changes that undo each other (a key taken out and put back, a key added and removed,
    /// the data cleared and given back) are no change, whether the data was decoded or not:
    /// the save writes nothing, or only the touch that is due, and goes on top of another
    /// request's change as a touch does. A head change or `mark_changed` is still written.
    #[test]
    fn changes_that_undo_each_other_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, store, s) = cart_and_csrf(&dir);
        let id = *s.id();
        let stored = raw(&store, &id);
        let data = s.data().clone();

        type Undo = fn(&mut Session, &BTreeMap<String, Value>);
        let undos: [(&str, Undo); 4] = [
            ("taken out and put back", |s, _| {
                let cart = s.remove("cart").unwrap();
                assert!(s.is_dirty());
                s.insert_value("cart", cart).unwrap();
            }),
            ("added and removed", |s, _| {
                s.insert("n", &1).unwrap();
                assert!(s.is_dirty());
                s.remove("n").unwrap();
            }),
            ("changed and changed back", |s, _| {
                s.insert("csrf", "other").unwrap();
                assert!(s.is_dirty());
                s.insert("csrf", "token").unwrap();
            }),
            ("cleared and given back", |s, data| {
                s.clear();
                assert!(s.is_dirty());
                s.replace_data(data.clone()).unwrap();
            }),
        ];
        for (what, undo) in undos {
            for decoded in [false, true] {
                let before = store.counters();
                let mut s = store.load(&id).unwrap().unwrap();
                if decoded {
                    assert_eq!(s.data().len(), 2);
                }
                undo(&mut s, &data);
                assert!(!s.is_dirty(), "{what}, decoded: {decoded}");
                s.save().unwrap();
                let after = store.counters();
                assert_eq!(after.writes, before.writes, "{what}, decoded: {decoded}");
                assert_eq!(after.skipped_saves, before.skipped_saves + 1);
                assert_eq!(raw(&store, &id), stored);
                if what == "taken out and put back" && !decoded {
                    assert!(!s.data.is_decoded(), "compared without decoding");
                }
                // Changes after the save are judged against the stored data still.
                s.insert("n", &2).unwrap();
                assert!(s.is_dirty(), "{what}, decoded: {decoded}");
            }
        }

        // A touch that is due is written, with the data as stored.
        clock.advance(Duration::from_secs(120));
        let mut s = store.load(&id).unwrap().unwrap();
        let cart = s.remove("cart").unwrap();
        s.insert_value("cart", cart.clone()).unwrap();
        s.save().unwrap();
        let touched = raw(&store, &id);
        assert_eq!(decode_lazy(&touched).unwrap().head.version, s.version());
        assert_eq!(s.version(), decode_lazy(&stored).unwrap().head.version + 1);
        assert_eq!(data_part(&touched), data_part(&stored));

        // Another request changed the session meanwhile: no conflict, the handle takes on what
        // that request stored, as for a handle that changed nothing.
        clock.advance(Duration::from_secs(120));
        let mut mine = store.load(&id).unwrap().unwrap();
        let mut theirs = store.load(&id).unwrap().unwrap();
        theirs.insert("n", &3).unwrap();
        theirs.save().unwrap();
        mine.remove("cart").unwrap();
        mine.insert_value("cart", cart.clone()).unwrap();
        let before = store.counters();
        mine.save().unwrap();
        let after = store.counters();
        assert_eq!(after.conflicts, before.conflicts);
        assert_eq!(mine.get::<i32>("n").unwrap(), Some(3));
        let stored = store.load(&id).unwrap().unwrap();
        assert_eq!(stored.get::<i32>("n").unwrap(), Some(3));
        assert_eq!(mine.version(), stored.version());
        // Their save moved the deadline as far as this one would: nothing more to write.
        assert_eq!(after.writes, before.writes);
        assert_eq!(after.skipped_saves, before.skipped_saves + 1);

        // A head change set back, or mark_changed, is written all the same.
        let mut s = store.load(&id).unwrap().unwrap();
        s.set_label(Some("web")).unwrap();
        s.set_label(None).unwrap();
        s.remove("cart").unwrap();
        s.insert_value("cart", cart.clone()).unwrap();
        assert!(s.is_dirty());
        let version = s.version();
        s.save().unwrap();
        assert_eq!(s.version(), version + 1);
        let mut s = store.load(&id).unwrap().unwrap();
        s.remove("cart").unwrap();
        s.insert_value("cart", cart).unwrap();
        s.mark_changed();
        assert!(s.is_dirty());
        s.save().unwrap();
        assert_eq!(s.version(), version + 2);
    }

    /// A store holding one saved session with `data`.
    fn saved_with(data: &BTreeMap<String, Value>) -> (tempfile::TempDir, Store, SessionId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let mut s = store.create();
        for (key, value) in data {
            s.insert_value(key, value.clone()).unwrap();
        }
        s.save().unwrap();
        (dir, store, *s.id())
    }

    #[test]
    fn replacing_the_data_with_what_it_holds_writes_nothing() {
        let cart = Value::List(vec![Value::Int(1), Value::Int(2)]);
        let same = BTreeMap::from([
            ("cart".to_string(), cart),
            ("csrf".to_string(), Value::String("token".into())),
        ]);
        let (_dir, store, id) = saved_with(&same);

        let before = store.counters();
        let mut s = store.load(&id).unwrap().unwrap();
        s.replace_data(same.clone()).unwrap();
        assert!(!s.is_dirty());
        assert!(!s.data.is_decoded(), "compared without decoding");
        s.save().unwrap();
        let after = store.counters();
        assert_eq!(after.writes, before.writes);
        assert_eq!(after.skipped_saves, before.skipped_saves + 1);

        // Too deep: refused, the session unchanged.
        let mut deep = Value::Null;
        for _ in 0..=MAX_DEPTH {
            deep = Value::List(vec![deep]);
        }
        let mut bad = same.clone();
        bad.insert("deep".into(), deep);
        let err = s.replace_data(bad).unwrap_err();
        assert!(
            matches!(&err, Error::Value { key, .. } if key == "deep"),
            "{err}"
        );
        assert!(!s.is_dirty());
        assert_eq!(s.data(), &same);

        let mut other = same;
        other.remove("cart");
        other.insert("n".into(), Value::Int(7));
        s.replace_data(other.clone()).unwrap();
        assert!(s.is_dirty());
        s.save().unwrap();
        assert_eq!(store.counters().writes, before.writes + 1);
        assert_eq!(store.load(&id).unwrap().unwrap().data(), &other);
    }

    /// What a replacement leaves to be saved (its encoding, kept from the comparison) gives way
    /// to every later change: a clear, a rotation's write, a change the session cannot see.
    #[test]
    fn changes_after_a_replace_are_saved() {
        let (_dir, store, id) = saved_with(&BTreeMap::from([("a".to_string(), Value::Int(1))]));
        let replaced = BTreeMap::from([("b".to_string(), Value::Int(2))]);

        let mut s = store.load(&id).unwrap().unwrap();
        s.replace_data(replaced.clone()).unwrap();
        s.clear();
        s.save().unwrap();
        assert!(store.load(&id).unwrap().unwrap().data().is_empty());

        let mut s = store.load(&id).unwrap().unwrap();
        s.replace_data(replaced.clone()).unwrap();
        s.cycle_id().unwrap();
        let id = *s.id();
        assert_eq!(store.load(&id).unwrap().unwrap().data(), &replaced);

        let mut s = store.load(&id).unwrap().unwrap();
        s.replace_data(BTreeMap::new()).unwrap();
        s.mark_changed();
        s.insert("c", &3).unwrap();
        s.save().unwrap();
        let expected = BTreeMap::from([("c".to_string(), Value::Int(3))]);
        assert_eq!(store.load(&id).unwrap().unwrap().data(), &expected);
    }

    /// One-key changes to data never read whole reach the store through a save and through a
    /// rotation, and a pending removal too; the session stays undecoded throughout.
    #[test]
    fn one_key_changes_are_written_by_save_and_rotation_without_decoding() {
        let stored = BTreeMap::from([
            ("a".to_string(), Value::Int(1)),
            ("b".to_string(), Value::String("two".into())),
            ("c".to_string(), Value::List(vec![Value::Null])),
        ]);
        let (_dir, store, id) = saved_with(&stored);

        let mut s = store.load(&id).unwrap().unwrap();
        assert_eq!(s.get::<i64>("a").unwrap(), Some(1));
        s.insert("a", &1).unwrap();
        assert!(!s.is_dirty(), "the same value again is no change");
        s.insert("d", &4).unwrap();
        assert_eq!(s.remove("b"), Some(Value::String("two".into())));
        assert_eq!(s.get::<i64>("d").unwrap(), Some(4));
        assert_eq!(s.get::<String>("b").unwrap(), None);
        assert!(s.is_dirty());
        s.cycle_id().unwrap();
        assert!(!s.data.is_decoded());
        let id = *s.id();
        let expected = BTreeMap::from([
            ("a".to_string(), Value::Int(1)),
            ("c".to_string(), Value::List(vec![Value::Null])),
            ("d".to_string(), Value::Int(4)),
        ]);
        assert_eq!(store.load(&id).unwrap().unwrap().data(), &expected);

        let mut s = store.load(&id).unwrap().unwrap();
        s.insert("a", &2).unwrap();
        s.save().unwrap();
        assert!(!s.data.is_decoded());
        // The saved session reads its own write without decoding, and so does a new load.
        assert_eq!(s.get::<i64>("a").unwrap(), Some(2));
        assert!(!s.data.is_decoded());
        let mut expected = expected;
        expected.insert("a".into(), Value::Int(2));
        assert_eq!(store.load(&id).unwrap().unwrap().data(), &expected);
    }

    /// A change of a float's sign is a change, and writing a NaN over the same NaN is not,
    /// whether the data was decoded or not (`==` on floats says the opposite of both).
    #[test]
    fn float_changes_are_judged_by_their_bits() {
        let stored = BTreeMap::from([
            ("f".to_string(), Value::Float(0.0)),
            ("n".to_string(), Value::Float(f64::NAN)),
        ]);
        let (_dir, store, id) = saved_with(&stored);

        for decoded in [false, true] {
            let mut s = store.load(&id).unwrap().unwrap();
            if decoded {
                assert_eq!(s.data().len(), 2);
            }
            s.replace_data(stored.clone()).unwrap();
            s.insert_value("n", Value::Float(f64::NAN)).unwrap();
            assert!(!s.is_dirty(), "decoded: {decoded}");
        }

        let mut s = store.load(&id).unwrap().unwrap();
        s.insert_value("f", Value::Float(-0.0)).unwrap();
        assert!(s.is_dirty());
        s.save().unwrap();
        let mut s = store.load(&id).unwrap().unwrap();
        assert!(s.get::<f64>("f").unwrap().unwrap().is_sign_negative());

        let mut positive = s.data().clone();
        positive.insert("f".into(), Value::Float(0.0));
        s.replace_data(positive).unwrap();
        assert!(s.is_dirty(), "the decoded map compares by bits too");
        s.save().unwrap();
        let s = store.load(&id).unwrap().unwrap();
        assert!(s.get::<f64>("f").unwrap().unwrap().is_sign_positive());
    }

    #[test]
    fn load_leaves_the_data_undecoded_until_an_accessor_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let mut s = store.create();
        s.insert("k", "v").unwrap();
        s.save().unwrap();
        let id = *s.id();
        let s = store.load(&id).unwrap().unwrap();
        assert!(!s.data.is_decoded());
        assert_eq!(s.principal(), None);
        assert!(!s.data.is_decoded(), "metadata needs no data");
        assert!(s.get_value("k").is_some());
        assert!(s.data.is_decoded());
    }
}
