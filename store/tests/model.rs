//! Model-based test of the store: random sequences of operations run against the real store and
//! against a small in-memory model, and after every step everything observable must agree —
//! loadable sessions and their data, `show`, `sessions_of`, purge counts, stats, and a clean
//! `check` (not even harmless leftovers, since nothing crashes here).
//!
//! The checks read no open session's data unless an op does (`ReadData`), so a loaded session
//! goes through the ops with its data still undecoded, as a request that never reads it would:
//! `replace_data` then compares encodings, and a save writes back the stored bytes or the
//! encoding `replace_data` made. Values include both float zeros, which a change must tell
//! apart.
//!
//! The default case count keeps a debug run short. A longer campaign:
//! `PROPTEST_CASES=5000 cargo test -p sessdb --release --test model`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use sessdb::{
    Admin, Error, Handle, ImportOptions, ListQuery, ManualClock, OnConflict, OnPrincipalLimit,
    Session, SessionId, Status, Store, Target, Value,
};

const IDLE_MS: i64 = 30 * 60 * 1000;
const LIFETIME_MS: i64 = 2 * 3600 * 1000;
const TOUCH_MS: i64 = 60 * 1000;
const START_MS: i64 = 1_700_000_000_000;
/// Open session handles kept at once; loading another drops the oldest.
const MAX_HANDLES: usize = 5;
/// Cases per run unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum P {
    Alice,
    Bob,
    Carol,
}

const PRINCIPALS: [P; 3] = [P::Alice, P::Bob, P::Carol];

impl P {
    fn name(self) -> &'static str {
        match self {
            P::Alice => "alice",
            P::Bob => "bob",
            P::Carol => "carol",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum K {
    A,
    B,
    C,
}

impl K {
    fn name(self) -> &'static str {
        match self {
            K::A => "a",
            K::B => "b",
            K::C => "c",
        }
    }
}

/// One step. `session` picks among every id ever handed out (live, expired, invalidated or
/// rotated away); `handle` among the open session handles. Both wrap around.
#[derive(Debug, Clone)]
enum Op {
    /// create → set principal → insert → save; the saved session stays open as a handle.
    Create {
        principal: Option<P>,
        key: K,
        val: u8,
    },
    Load {
        session: u8,
    },
    Insert {
        handle: u8,
        key: K,
        val: u8,
    },
    Remove {
        handle: u8,
        key: K,
    },
    /// `Session::replace_data` with a map made from the handle's current data.
    Replace {
        handle: u8,
        how: How,
    },
    Clear {
        handle: u8,
    },
    /// Reads the whole data (decoding it, if nothing has yet).
    ReadData {
        handle: u8,
    },
    MarkChanged {
        handle: u8,
    },
    SetPrincipal {
        handle: u8,
        principal: Option<P>,
    },
    Save {
        handle: u8,
    },
    /// Overrides the session's idle timeout (minutes).
    SetIdle {
        handle: u8,
        mins: u8,
    },
    /// Two handles of one session: the first saves, the second's save must conflict.
    StaleSave {
        session: u8,
        key: K,
    },
    CycleId {
        handle: u8,
    },
    Invalidate {
        session: u8,
    },
    /// `Session::invalidate` on an open handle (possibly a stale one).
    InvalidateHandle {
        handle: u8,
    },
    InvalidatePrincipal {
        principal: P,
    },
    DropHandle {
        handle: u8,
    },
    Advance {
        secs: u32,
    },
    /// The clock goes back (NTP step, VM restore).
    Rewind {
        secs: u32,
    },
    Purge,
    /// Export everything, import it back: every line must come back unchanged.
    ExportImport,
    /// Drop every handle and the store, open it again from the same folder.
    Reopen,
}

/// How a `Replace` makes its map from the handle's data: the same map again (what a framework
/// hands back for a request that changed nothing), one key set or dropped, or nothing.
#[derive(Debug, Clone, Copy)]
enum How {
    Same,
    Set(K, u8),
    Drop(K),
    Empty,
}

/// The values the ops write: small integers, and both zeros, which compare equal as floats but
/// are different values to store.
fn value(val: u8) -> Value {
    match val {
        4 => Value::Float(0.0),
        5 => Value::Float(-0.0),
        n => Value::Int(i64::from(n)),
    }
}

/// Value equality as the store must keep it: floats by their bits (`Value`'s `==` is the
/// float `==`, for which 0.0 and -0.0 are equal).
fn same(a: &Value, b: &Value) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn same_data(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
}

fn principal() -> impl Strategy<Value = P> {
    prop::sample::select(PRINCIPALS.to_vec())
}

fn key() -> impl Strategy<Value = K> {
    prop::sample::select(vec![K::A, K::B, K::C])
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![
        3 => Just(How::Same),
        3 => (key(), 0u8..6).prop_map(|(key, val)| How::Set(key, val)),
        1 => key().prop_map(How::Drop),
        1 => Just(How::Empty),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop::option::of(principal()), key(), 0u8..6)
            .prop_map(|(principal, key, val)| Op::Create { principal, key, val }),
        3 => any::<u8>().prop_map(|session| Op::Load { session }),
        3 => (any::<u8>(), key(), 0u8..6).prop_map(|(handle, key, val)| Op::Insert { handle, key, val }),
        1 => (any::<u8>(), key()).prop_map(|(handle, key)| Op::Remove { handle, key }),
        3 => (any::<u8>(), how()).prop_map(|(handle, how)| Op::Replace { handle, how }),
        1 => any::<u8>().prop_map(|handle| Op::Clear { handle }),
        1 => any::<u8>().prop_map(|handle| Op::ReadData { handle }),
        1 => any::<u8>().prop_map(|handle| Op::MarkChanged { handle }),
        2 => (any::<u8>(), prop::option::of(principal()))
            .prop_map(|(handle, principal)| Op::SetPrincipal { handle, principal }),
        4 => any::<u8>().prop_map(|handle| Op::Save { handle }),
        1 => (any::<u8>(), prop::sample::select(vec![1u8, 30, 90]))
            .prop_map(|(handle, mins)| Op::SetIdle { handle, mins }),
        1 => (any::<u8>(), key()).prop_map(|(session, key)| Op::StaleSave { session, key }),
        2 => any::<u8>().prop_map(|handle| Op::CycleId { handle }),
        1 => any::<u8>().prop_map(|session| Op::Invalidate { session }),
        1 => any::<u8>().prop_map(|handle| Op::InvalidateHandle { handle }),
        1 => principal().prop_map(|principal| Op::InvalidatePrincipal { principal }),
        1 => any::<u8>().prop_map(|handle| Op::DropHandle { handle }),
        3 => prop::sample::select(vec![1u32, 20, 59, 61, 240, 600, 1_680, 1_799, 1_801, 3_600, 7_201])
            .prop_map(|secs| Op::Advance { secs }),
        1 => prop::sample::select(vec![1u32, 61, 1_801]).prop_map(|secs| Op::Rewind { secs }),
        2 => Just(Op::Purge),
        1 => Just(Op::ExportImport),
        1 => Just(Op::Reopen),
    ]
}

/// A stored record as the model sees it.
#[derive(Debug, Clone)]
struct Rec {
    version: u64,
    data: BTreeMap<String, Value>,
    principal: Option<P>,
    last_access: i64,
    idle: i64,
    absolute: i64,
    expires: i64,
}

/// Whether `now` differs from `then` only by touches: the last access, the deadline and the
/// version.
fn touched_only(then: &Rec, now: &Rec) -> bool {
    let untouched = |r: &Rec| Rec {
        version: 0,
        last_access: 0,
        expires: 0,
        ..r.clone()
    };
    untouched(then) == untouched(now)
}

impl Rec {
    /// The record a write at `now` makes of this one (the store's `next_record`).
    fn next(&self, now: i64) -> Rec {
        let last_access = self.last_access.max(now);
        Rec {
            version: self.version + 1,
            last_access,
            expires: (last_access + self.idle).min(self.absolute),
            ..self.clone()
        }
    }

    fn is_live(&self, now: i64) -> bool {
        now < self.expires
    }
}

impl PartialEq for Rec {
    fn eq(&self, other: &Rec) -> bool {
        let Rec {
            version,
            data,
            principal,
            last_access,
            idle,
            absolute,
            expires,
        } = self;
        *version == other.version
            && same_data(data, &other.data)
            && *principal == other.principal
            && *last_access == other.last_access
            && *idle == other.idle
            && *absolute == other.absolute
            && *expires == other.expires
    }
}

/// An open session handle and what the model expects it to hold.
struct Open {
    session: Session,
    id: SessionId,
    /// The record as stored when the handle loaded or last wrote it.
    base: Rec,
    /// `base` plus the handle's unsaved changes.
    pending: Rec,
    /// The handle is new, or its head was changed, or marked changed: a save writes it.
    head_dirty: bool,
}

impl Open {
    /// Whether a save has changes to write: data that holds what `base` holds again is none.
    fn dirty(&self) -> bool {
        self.head_dirty || !same_data(&self.pending.data, &self.base.data)
    }
}

/// What a save should do.
#[derive(Debug, PartialEq)]
enum Outcome {
    Written,
    Skipped,
    Conflict,
    NotFound,
    /// The principal already has its maximum of sessions (`OnPrincipalLimit::Refuse`).
    Refused,
}

/// The per-principal session limit a run is configured with.
type Limit = Option<(usize, OnPrincipalLimit)>;

struct Model {
    limit: Limit,
    clock: ManualClock,
    now: i64,
    /// Every id ever handed out, in order; those not in `records` must be gone.
    ids: Vec<SessionId>,
    records: BTreeMap<Handle, (SessionId, Rec)>,
    handles: Vec<Open>,
    /// A counter for values that differ from everything stored.
    fresh: i64,
}

fn open(path: &Path, clock: &ManualClock, limit: Limit) -> Store {
    let mut builder = Store::builder()
        .idle_timeout(Duration::from_millis(IDLE_MS as u64))
        .absolute_lifetime(Duration::from_millis(LIFETIME_MS as u64))
        .touch_interval(Duration::from_millis(TOUCH_MS as u64))
        .clock(clock.clone());
    if let Some((n, policy)) = limit {
        builder = builder.max_sessions_per_principal(n, policy);
    }
    builder.open(path).expect("open the store")
}

fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn principal_of(name: Option<&str>) -> Option<P> {
    name.map(|n| {
        PRINCIPALS
            .into_iter()
            .find(|p| p.name() == n)
            .unwrap_or_else(|| panic!("unknown principal {n:?}"))
    })
}

fn rec_of(session: &Session) -> Rec {
    Rec {
        data: session.data().clone(),
        ..meta_of(session, &BTreeMap::new())
    }
}

/// The session's record with `data` in place of its own, which stays as it is: read nothing
/// of a handle's data that the ops did not, so that handles whose data was never decoded
/// (a lazy load) go through the same ops as the others.
fn meta_of(session: &Session, data: &BTreeMap<String, Value>) -> Rec {
    Rec {
        version: session.version(),
        data: data.clone(),
        principal: principal_of(session.principal()),
        last_access: ms(session.last_access()),
        idle: session.idle_timeout().as_millis() as i64,
        absolute: ms(session.absolute_deadline()),
        expires: ms(session.expires_at()),
    }
}

/// The outcome of a save-like call, told apart by the store's counters.
fn outcome(store: &Store, before: sessdb::Counters, r: sessdb::Result<()>) -> Outcome {
    let after = store.counters();
    match r {
        Ok(()) if after.writes == before.writes + 1 => Outcome::Written,
        Ok(()) if after.skipped_saves == before.skipped_saves + 1 => Outcome::Skipped,
        Ok(()) => panic!("save returned Ok but counters show neither a write nor a skip"),
        Err(Error::Conflict { .. }) => Outcome::Conflict,
        Err(Error::NotFound { .. }) => Outcome::NotFound,
        Err(Error::PrincipalLimit { .. }) => Outcome::Refused,
        Err(e) => panic!("unexpected error from save: {e:#}"),
    }
}

impl Model {
    fn pick_id(&self, i: u8) -> Option<SessionId> {
        (!self.ids.is_empty()).then(|| self.ids[usize::from(i) % self.ids.len()])
    }

    fn pick_handle(&self, i: u8) -> Option<usize> {
        (!self.handles.is_empty()).then(|| usize::from(i) % self.handles.len())
    }

    fn push_handle(&mut self, open: Open) {
        if self.handles.len() == MAX_HANDLES {
            self.handles.remove(0);
        }
        self.handles.push(open);
    }

    fn record(&self, id: &SessionId) -> Option<&Rec> {
        self.records.get(&id.handle()).map(|(_, r)| r)
    }

    /// What saving the handle should do, the record it writes and the sessions it evicts to
    /// keep the principal within its limit.
    fn expect_save(&self, open: &Open) -> (Outcome, Option<Rec>, Vec<Handle>) {
        let next = open.pending.next(self.now);
        // A touch is due once the deadline or the last access moved by the interval, or by half
        // the idle timeout if that is less.
        let touch = TOUCH_MS.min(next.idle / 2).max(1);
        if !open.dirty()
            && next.expires - open.base.expires < touch
            && next.last_access - open.base.last_access < touch
        {
            return (Outcome::Skipped, None, Vec::new());
        }
        let mut victims = Vec::new();
        if let (Some((limit, policy)), Some(p)) = (self.limit, next.principal) {
            if open.base.principal != next.principal {
                // The principal's other live sessions, least recently used first.
                let mut live: Vec<(i64, Handle)> = self
                    .records
                    .iter()
                    .filter(|(h, (_, r))| {
                        **h != open.id.handle() && r.principal == Some(p) && r.is_live(self.now)
                    })
                    .map(|(h, (_, r))| (r.last_access, *h))
                    .collect();
                live.sort();
                if live.len() >= limit {
                    if policy == OnPrincipalLimit::Refuse {
                        return (Outcome::Refused, None, Vec::new());
                    }
                    victims = live[..=live.len() - limit]
                        .iter()
                        .map(|(_, h)| *h)
                        .collect();
                }
            }
        }
        match self.record(&open.id) {
            // A save that fails writes nothing, and so evicts nobody.
            None => (Outcome::NotFound, None, Vec::new()),
            // Written by another handle since it was loaded, and this one changed nothing: its
            // touch goes on top of the stored record, changes and all, or writes nothing if
            // that record's deadline is within the touch interval; the handle then holds what
            // is stored. Also when the session as loaded has expired since, and the other
            // write kept it alive. A stored record that has expired is not brought back.
            Some(r) if r.version != open.base.version && !open.dirty() => {
                if !r.is_live(self.now) {
                    return (Outcome::NotFound, None, Vec::new());
                }
                let last_access = next.last_access.max(r.last_access);
                let touched = Rec {
                    version: r.version + 1,
                    last_access,
                    expires: (last_access + r.idle).min(r.absolute),
                    ..r.clone()
                };
                let touch = TOUCH_MS.min(r.idle / 2).max(1);
                if touched.expires - r.expires < touch
                    && touched.last_access - r.last_access < touch
                {
                    (Outcome::Skipped, Some(r.clone()), Vec::new())
                } else {
                    (Outcome::Written, Some(touched), Vec::new())
                }
            }
            // Only touched since it was loaded (by a handle whose save wrote nothing else), and
            // live (past the deadline the handle loaded too: the touch moved it): the save goes
            // on top of the touch.
            Some(r)
                if r.version != open.base.version
                    && r.is_live(self.now)
                    && touched_only(&open.base, r) =>
            {
                let last_access = next.last_access.max(r.last_access);
                let next = Rec {
                    version: r.version + 1,
                    last_access,
                    expires: (last_access + next.idle).min(next.absolute),
                    ..next
                };
                (Outcome::Written, Some(next), victims)
            }
            Some(r) if r.version != open.base.version => (Outcome::Conflict, None, Vec::new()),
            // A save never brings back a session that expired after it was loaded.
            Some(_) if !open.base.is_live(self.now) => (Outcome::NotFound, None, Vec::new()),
            Some(_) => (Outcome::Written, Some(next), victims),
        }
    }

    /// Saves handle `h` in the store and the model, checking they agree.
    fn save(&mut self, store: &Store, h: usize) -> Result<Outcome, TestCaseError> {
        let (expected, next, victims) = self.expect_save(&self.handles[h]);
        let before = store.counters();
        let got = outcome(store, before, self.handles[h].session.save());
        prop_assert_eq!(&got, &expected, "save outcome");
        if let Some(next) = next {
            let open = &mut self.handles[h];
            prop_assert_eq!(
                &meta_of(&open.session, &next.data),
                &next,
                "record after save"
            );
            open.base = next.clone();
            open.pending = next.clone();
            open.head_dirty = false;
            self.records.insert(open.id.handle(), (open.id, next));
        }
        for victim in victims {
            self.records.remove(&victim);
        }
        Ok(got)
    }

    fn remove(&mut self, id: &SessionId) -> bool {
        self.records.remove(&id.handle()).is_some()
    }
}

fn step(
    slot: &mut Option<Store>,
    path: &Path,
    m: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    if let Op::Reopen = op {
        m.handles.clear();
        // sled lets one opener at a time: the old store must be gone first.
        *slot = None;
        *slot = Some(open(path, &m.clock, m.limit));
        return Ok(());
    }
    let Some(store) = slot.as_ref() else {
        return Err(TestCaseError::fail("no open store"));
    };
    match *op {
        Op::Create {
            principal,
            key,
            val,
        } => {
            let mut s = store.create();
            s.set_principal(principal.map(P::name))?;
            s.insert_value(key.name(), value(val))?;
            let mut data = BTreeMap::new();
            data.insert(key.name().to_string(), value(val));
            let new = Rec {
                version: 0,
                data: BTreeMap::new(),
                principal: None,
                last_access: m.now,
                idle: IDLE_MS,
                absolute: m.now + LIFETIME_MS,
                expires: (m.now + IDLE_MS).min(m.now + LIFETIME_MS),
            };
            let id = *s.id();
            m.ids.push(id);
            // The model treats a new session as a stored version 0 that nobody else holds.
            m.records.insert(id.handle(), (id, new.clone()));
            m.push_handle(Open {
                session: s,
                id,
                pending: Rec {
                    data,
                    principal,
                    ..new.clone()
                },
                base: new,
                head_dirty: true,
            });
            let h = m.handles.len() - 1;
            if m.save(store, h)? != Outcome::Written {
                m.records.remove(&id.handle());
                m.handles.remove(h);
            }
        }
        Op::Load { session } => {
            let Some(id) = m.pick_id(session) else {
                return Ok(());
            };
            let got = store.load(&id)?;
            match m.record(&id).cloned() {
                Some(rec) if rec.is_live(m.now) => {
                    let s = got.ok_or_else(|| TestCaseError::fail("live session not loaded"))?;
                    // The data stays undecoded until an op reads or changes it.
                    prop_assert_eq!(&meta_of(&s, &rec.data), &rec, "loaded record");
                    prop_assert!(!s.is_dirty());
                    m.push_handle(Open {
                        session: s,
                        id,
                        base: rec.clone(),
                        pending: rec,
                        head_dirty: false,
                    });
                }
                expired_or_gone => {
                    prop_assert!(got.is_none(), "an expired or removed session was loaded");
                    // Loading an expired session deletes it.
                    if expired_or_gone.is_some() {
                        m.remove(&id);
                    }
                }
            }
        }
        Op::Insert { handle, key, val } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &mut m.handles[h];
            let v = value(val);
            open.session.insert_value(key.name(), v.clone())?;
            open.pending.data.insert(key.name().to_string(), v);
            prop_assert_eq!(open.session.is_dirty(), open.dirty());
        }
        Op::Remove { handle, key } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &mut m.handles[h];
            let got = open.session.remove(key.name());
            let want = open.pending.data.remove(key.name());
            let same_removed = match (&got, &want) {
                (Some(a), Some(b)) => same(a, b),
                (a, b) => a.is_none() && b.is_none(),
            };
            prop_assert!(same_removed, "removed {:?}, model {:?}", got, want);
            prop_assert_eq!(open.session.is_dirty(), open.dirty());
        }
        Op::Replace { handle, how } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &mut m.handles[h];
            let mut data = open.pending.data.clone();
            match how {
                How::Same => {}
                How::Set(key, val) => {
                    data.insert(key.name().to_string(), value(val));
                }
                How::Drop(key) => {
                    data.remove(key.name());
                }
                How::Empty => data.clear(),
            }
            open.session.replace_data(data.clone())?;
            open.pending.data = data;
            prop_assert_eq!(open.session.is_dirty(), open.dirty());
        }
        Op::Clear { handle } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &mut m.handles[h];
            open.session.clear();
            open.pending.data.clear();
            prop_assert_eq!(open.session.is_dirty(), open.dirty());
        }
        Op::ReadData { handle } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &m.handles[h];
            prop_assert!(
                same_data(open.session.data(), &open.pending.data),
                "handle data {:?}, model {:?}",
                open.session.data(),
                open.pending.data
            );
        }
        Op::MarkChanged { handle } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &mut m.handles[h];
            open.session.mark_changed();
            open.head_dirty = true;
            prop_assert!(open.session.is_dirty());
        }
        Op::SetPrincipal { handle, principal } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &mut m.handles[h];
            open.session.set_principal(principal.map(P::name))?;
            if open.pending.principal != principal {
                open.pending.principal = principal;
                open.head_dirty = true;
            }
            prop_assert_eq!(open.session.is_dirty(), open.dirty());
        }
        Op::SetIdle { handle, mins } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            let open = &mut m.handles[h];
            let idle = i64::from(mins) * 60_000;
            open.session
                .set_idle_timeout(Duration::from_millis(idle as u64));
            if open.pending.idle != idle {
                open.pending.idle = idle;
                open.pending.expires = (open.pending.last_access + idle).min(open.pending.absolute);
                open.head_dirty = true;
            }
            prop_assert_eq!(open.session.is_dirty(), open.dirty());
        }
        Op::Save { handle } => {
            if let Some(h) = m.pick_handle(handle) {
                m.save(store, h)?;
            }
        }
        Op::StaleSave { session, key } => {
            let Some(id) = m.pick_id(session) else {
                return Ok(());
            };
            let first = store.load(&id)?;
            let second = store.load(&id)?;
            let Some(rec) = m.record(&id).cloned().filter(|r| r.is_live(m.now)) else {
                prop_assert!(first.is_none() && second.is_none());
                if m.record(&id).is_some() {
                    m.remove(&id);
                }
                return Ok(());
            };
            let (Some(mut first), Some(mut second)) = (first, second) else {
                return Err(TestCaseError::fail("live session not loaded"));
            };
            m.fresh += 1;
            first.insert_value(key.name(), Value::Int(1_000 + m.fresh))?;
            first.save()?;
            let mut next = rec.next(m.now);
            next.data
                .insert(key.name().to_string(), Value::Int(1_000 + m.fresh));
            prop_assert_eq!(&rec_of(&first), &next);
            m.records.insert(id.handle(), (id, next));
            second.insert_value(key.name(), Value::Int(-1))?;
            let before = store.counters();
            let err = second.save().expect_err("a stale save must fail");
            prop_assert!(err.is_conflict(), "stale save: {err:#}");
            prop_assert_eq!(store.counters().writes, before.writes, "stale save wrote");
        }
        Op::CycleId { handle } => {
            let Some(h) = m.pick_handle(handle) else {
                return Ok(());
            };
            if m.handles[h].base.principal != m.handles[h].pending.principal {
                // A login: the principal change is saved first.
                if m.save(store, h)? != Outcome::Written {
                    // The session's own save failed; cycle_id must fail the same way.
                    prop_assert!(m.handles[h].session.cycle_id().is_err());
                    return Ok(());
                }
            }
            let before = store.counters();
            let old_id = m.handles[h].id;
            let base = &m.handles[h].base;
            // Only touched since it was loaded, and live: the rotation goes on top of the touch.
            let mut over = None;
            let expected = match m.record(&old_id) {
                None => Outcome::NotFound,
                Some(r)
                    if r.version != base.version && r.is_live(m.now) && touched_only(base, r) =>
                {
                    over = Some(r.clone());
                    Outcome::Written
                }
                Some(r) if r.version != base.version => Outcome::Conflict,
                Some(_) if !base.is_live(m.now) => Outcome::NotFound,
                Some(_) => Outcome::Written,
            };
            let got = outcome(store, before, m.handles[h].session.cycle_id());
            prop_assert_eq!(&got, &expected, "cycle_id outcome");
            if got == Outcome::Written {
                let open = &mut m.handles[h];
                let mut next = open.pending.next(m.now);
                if let Some(r) = over {
                    next.version = r.version + 1;
                    next.last_access = next.last_access.max(r.last_access);
                    next.expires = (next.last_access + next.idle).min(next.absolute);
                }
                prop_assert_eq!(
                    &meta_of(&open.session, &next.data),
                    &next,
                    "record after cycle_id"
                );
                let new_id = *open.session.id();
                prop_assert_ne!(new_id, old_id);
                open.id = new_id;
                open.base = next.clone();
                open.pending = next.clone();
                open.head_dirty = false;
                m.records.remove(&old_id.handle());
                m.records.insert(new_id.handle(), (new_id, next));
                m.ids.push(new_id);
            }
        }
        Op::Invalidate { session } => {
            if let Some(id) = m.pick_id(session) {
                let got = store.invalidate(&id)?;
                prop_assert_eq!(got, m.remove(&id), "invalidate result");
            }
        }
        Op::InvalidateHandle { handle } => {
            if let Some(h) = m.pick_handle(handle) {
                let open = m.handles.remove(h);
                let got = open.session.invalidate()?;
                prop_assert_eq!(got, m.remove(&open.id), "Session::invalidate result");
            }
        }
        Op::InvalidatePrincipal { principal } => {
            let got = store.invalidate_principal(principal.name())?;
            let now = m.now;
            let mut live = 0;
            m.records.retain(|_, (_, r)| {
                let theirs = r.principal == Some(principal);
                live += usize::from(theirs && r.is_live(now));
                !theirs
            });
            prop_assert_eq!(got, live, "invalidate_principal count (live sessions)");
        }
        Op::DropHandle { handle } => {
            if let Some(h) = m.pick_handle(handle) {
                m.handles.remove(h);
            }
        }
        Op::Advance { secs } => {
            m.clock.advance(Duration::from_secs(u64::from(secs)));
            m.now += i64::from(secs) * 1000;
        }
        Op::Rewind { secs } => {
            m.now -= i64::from(secs) * 1000;
            m.clock.set_ms(m.now);
        }
        Op::Purge => {
            let got = store.purge_expired()?;
            let before = m.records.len();
            let now = m.now;
            m.records.retain(|_, (_, r)| r.is_live(now));
            prop_assert_eq!(got, (before - m.records.len()) as u64, "purge count");
        }
        Op::ExportImport => {
            let mut out = Vec::new();
            let exported = store.export(&mut out, true)?;
            prop_assert_eq!(exported.exported, m.records.len() as u64);
            let before = store.counters();
            let report = store.import(
                &mut out.as_slice(),
                &ImportOptions {
                    on_conflict: OnConflict::Replace,
                    ..ImportOptions::default()
                },
            )?;
            prop_assert!(report.bad.is_empty(), "bad lines: {:?}", report.bad);
            prop_assert_eq!(report.unchanged, m.records.len() as u64, "{:?}", report);
            prop_assert!(!report.written);
            prop_assert_eq!(store.counters().writes, before.writes);
        }
        Op::Reopen => unreachable!("handled above"),
    }
    Ok(())
}

/// Everything observable must agree with the model.
fn verify(store: &Store, m: &Model) -> Result<(), TestCaseError> {
    let now = m.now;
    for id in &m.ids {
        let shown = store.show(&Target::Id(*id))?;
        match m.record(id) {
            Some(rec) => {
                let info = shown.ok_or_else(|| TestCaseError::fail("stored session not shown"))?;
                prop_assert!(
                    same_data(&info.data, &rec.data),
                    "stored data {:?}, model {:?}",
                    info.data,
                    rec.data
                );
                prop_assert_eq!(principal_of(info.principal.as_deref()), rec.principal);
                prop_assert_eq!(info.version, rec.version);
                prop_assert_eq!(ms(info.expires_at), rec.expires);
                prop_assert_eq!(ms(info.last_access), rec.last_access);
                if rec.is_live(now) {
                    let s = store
                        .load(id)?
                        .ok_or_else(|| TestCaseError::fail("live session not loadable"))?;
                    prop_assert_eq!(&rec_of(&s), rec);
                }
            }
            None => prop_assert!(shown.is_none(), "a removed session is still stored"),
        }
    }
    for open in &m.handles {
        prop_assert_eq!(
            &meta_of(&open.session, &open.pending.data),
            &open.pending,
            "handle contents"
        );
        prop_assert_eq!(open.session.is_dirty(), open.dirty());
        prop_assert_eq!(open.session.id(), &open.id);
    }
    let live = m.records.values().filter(|(_, r)| r.is_live(now)).count() as u64;
    let expired = m.records.len() as u64 - live;
    let stats = store.stats()?;
    prop_assert_eq!(stats.live, live, "stats.live");
    prop_assert_eq!(stats.expired, expired, "stats.expired");
    prop_assert_eq!(stats.undecodable, 0);
    let principals: BTreeSet<P> = m
        .records
        .values()
        .filter_map(|(_, r)| r.principal)
        .collect();
    prop_assert_eq!(
        stats.principals,
        principals.len() as u64,
        "stats.principals"
    );
    prop_assert_eq!(store.count_expired()?, expired, "count_expired");
    // The expiry listings find exactly the model's sessions, though entries may lag.
    for (status, within) in [
        (Status::Live, None),
        (Status::Expired, None),
        (Status::Live, Some(10 * 60_000)),
    ] {
        let query = ListQuery {
            status,
            expiring_within: within.map(|ms: i64| Duration::from_millis(ms.unsigned_abs())),
            limit: 100_000,
            ..ListQuery::default()
        };
        let page = store.list(&query)?;
        prop_assert!(page.next.is_none());
        let got: BTreeSet<Handle> = page.sessions.iter().map(|s| s.handle).collect();
        // Pages of two, both ways, find the same sessions once each, in deadline order to
        // within the lag of an expiry entry and its bucket (5 min + 10 s).
        for reverse in [false, true] {
            let paged = paged(
                store,
                &ListQuery {
                    reverse,
                    ..query.clone()
                },
            )?;
            let mut seen = BTreeSet::new();
            let mut furthest: Option<i64> = None;
            for s in &paged {
                prop_assert!(seen.insert(s.handle), "{:?} listed twice", s.handle);
                let at = (s.expires_at.unix_timestamp_nanos() / 1_000_000) as i64;
                if let Some(f) = furthest {
                    let behind = if reverse { at - f } else { f - at };
                    prop_assert!(
                        behind < 310_000,
                        "list {:?} (reverse {}) is {} ms out of order",
                        status,
                        reverse,
                        behind
                    );
                }
                furthest =
                    Some(furthest.map_or(at, |f| if reverse { f.min(at) } else { f.max(at) }));
            }
            prop_assert_eq!(&seen, &got, "paged list {:?} (reverse {})", status, reverse);
        }
        let want: BTreeSet<Handle> = m
            .records
            .iter()
            .filter(|(_, (_, r))| match status {
                Status::Expired => !r.is_live(now),
                _ => r.is_live(now) && within.is_none_or(|w| r.expires <= now + w),
            })
            .map(|(h, _)| *h)
            .collect();
        prop_assert_eq!(got, want, "list {:?} within {:?}", status, within);
    }
    for p in PRINCIPALS {
        let got: BTreeSet<Handle> = store
            .sessions_of(p.name())?
            .into_iter()
            .map(|s| s.handle)
            .collect();
        let want: BTreeSet<Handle> = m
            .records
            .iter()
            .filter(|(_, (_, r))| r.principal == Some(p) && r.is_live(now))
            .map(|(h, _)| *h)
            .collect();
        prop_assert_eq!(got, want, "sessions_of({})", p.name());
    }
    let report = store.check()?;
    prop_assert!(report.is_clean(), "check: {report:?}");
    Ok(())
}

/// Every session of a listing, fetched two at a time through its cursors.
fn paged(store: &Store, query: &ListQuery) -> Result<Vec<sessdb::SessionInfo>, TestCaseError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(&ListQuery {
            limit: 2,
            after,
            ..query.clone()
        })?;
        all.extend(page.sessions);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

fn run(ops: &[Op], limit: Limit) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let clock = ManualClock::at_ms(START_MS);
    let mut store = Some(open(&path, &clock, limit));
    let mut m = Model {
        limit,
        clock,
        now: START_MS,
        ids: Vec::new(),
        records: BTreeMap::new(),
        handles: Vec::new(),
        fresh: 0,
    };
    for op in ops {
        step(&mut store, &path, &mut m, op)?;
        verify(store.as_ref().expect("open store"), &m)?;
    }
    // The checks above leave the handles' data as the ops left it (decoded or not); now that no
    // op follows, read every handle's data, so that a wrong map in a handle that was never
    // saved or read is caught too.
    for open in &m.handles {
        prop_assert!(
            same_data(open.session.data(), &open.pending.data),
            "handle data {:?}, model {:?}",
            open.session.data(),
            open.pending.data
        );
    }
    Ok(())
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        // Failures found are kept as the named regression tests below, not as seed files.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn store_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops, None)?;
    }

    #[test]
    fn store_agrees_with_the_model_under_a_principal_limit_that_evicts(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        run(&ops, Some((2, OnPrincipalLimit::EvictOldest)))?;
    }

    #[test]
    fn store_agrees_with_the_model_under_a_principal_limit_that_refuses(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        run(&ops, Some((2, OnPrincipalLimit::Refuse)))?;
    }
}

#[test]
fn the_model_itself_sees_a_scripted_life() {
    use Op::*;
    run(
        &[
            Create {
                principal: Some(P::Alice),
                key: K::A,
                val: 1,
            },
            Create {
                principal: Some(P::Alice),
                key: K::B,
                val: 2,
            },
            Insert {
                handle: 0,
                key: K::C,
                val: 3,
            },
            Save { handle: 0 },
            StaleSave {
                session: 0,
                key: K::A,
            },
            Save { handle: 0 }, // stale now: conflicts
            CycleId { handle: 1 },
            Advance { secs: 1_801 },
            Reopen,
            Purge,
            Create {
                principal: Some(P::Bob),
                key: K::A,
                val: 0,
            },
            InvalidatePrincipal { principal: P::Bob },
            ExportImport,
        ],
        None,
    )
    .unwrap();
}

/// Found by the model's `Reopen` step: sled releases its file lock from background threads a
/// moment after the last handle is dropped (sled issues #1234, #1289), so reopening a store in
/// the same process right after dropping it failed now and then with `Error::Locked`.
#[test]
fn a_store_reopens_right_after_it_is_dropped() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("db");
                for i in 0..100 {
                    let store = Store::open(&path)
                        .unwrap_or_else(|e| panic!("thread {t}, open #{i}: {e:#}"));
                    for n in 0..20 {
                        let mut s = store.create();
                        s.insert("n", &n).expect("insert");
                        s.save().expect("save");
                    }
                    store.purge_expired().expect("purge");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread failed");
    }
}

/// Found by the model (limit 2, evict oldest; after 1,219 cases): a login whose save failed —
/// here because the session had been invalidated meanwhile — still evicted the principal's
/// oldest session. A failed save must write nothing.
#[test]
fn a_failed_save_evicts_nobody() {
    use Op::*;
    let alice = Some(P::Alice);
    run(
        &[
            Create {
                principal: None,
                key: K::A,
                val: 0,
            },
            Invalidate { session: 0 },
            SetPrincipal {
                handle: 0,
                principal: alice,
            },
            Create {
                principal: alice,
                key: K::A,
                val: 0,
            },
            Create {
                principal: alice,
                key: K::A,
                val: 0,
            },
            // The login of the invalidated session: its save fails with NotFound.
            CycleId { handle: 0 },
        ],
        Some((2, OnPrincipalLimit::EvictOldest)),
    )
    .unwrap();
}

/// Found by the model (limit 2, evict oldest; after ~15,000 cases) once a touch became due
/// after half a short idle timeout (`1e22a30`): a session with a one-minute idle timeout saved
/// 59 s after its last write is touched, where the touch interval alone (60 s) would skip it.
#[test]
fn a_short_idle_timeout_is_touched_after_half_of_it() {
    use Op::*;
    let create = || Create {
        principal: None,
        key: K::A,
        val: 0,
    };
    run(
        &[
            create(),
            create(),
            SetIdle { handle: 5, mins: 1 },
            CycleId { handle: 29 },
            create(),
            Advance { secs: 59 },
            create(),
            Save { handle: 61 },
        ],
        Some((2, OnPrincipalLimit::EvictOldest)),
    )
    .unwrap();
}

/// The model's touch rule follows the store's since a touch is due when the last access moved
/// by the interval on its own (`8c640c7`): a session whose idle timeout (90 min) reaches past
/// its absolute deadline (2 h), saved unchanged 61 s after its last write once its deadline is
/// capped, records its use. (Found by a review: the model skipped it, and 4,000 cases failed.)
#[test]
fn a_capped_session_saved_unchanged_records_its_use() {
    use Op::*;
    run(
        &[
            Create {
                principal: None,
                key: K::A,
                val: 0,
            },
            SetIdle {
                handle: 0,
                mins: 90,
            },
            Save { handle: 0 },
            Advance { secs: 3_600 },
            Load { session: 0 },
            Save { handle: 1 },
            Advance { secs: 61 },
            Load { session: 0 },
            Save { handle: 2 },
        ],
        None,
    )
    .unwrap();
}

/// A change through a handle past the deadline it loaded goes on top of another request's
/// touch that kept the session live (`e56784f`), in the model as in the store.
#[test]
fn a_change_past_the_loaded_deadline_goes_on_top_of_a_live_touch() {
    use Op::*;
    run(
        &[
            Create {
                principal: None,
                key: K::A,
                val: 0,
            },
            Advance { secs: 1_799 },
            Load { session: 0 },
            Load { session: 0 },
            Save { handle: 2 },
            Advance { secs: 20 },
            Insert {
                handle: 1,
                key: K::B,
                val: 1,
            },
            Save { handle: 1 },
        ],
        None,
    )
    .unwrap();
}

/// A login through a handle loaded before the deadline, after another handle's touch whose
/// deadline has passed too: `Conflict`, as a change through it gets, not `NotFound` (the
/// store's rotation went on top of the expired touch; found by a random seed of the limited
/// configuration).
#[test]
fn a_login_over_a_touch_that_expired_too_is_a_conflict() {
    use Op::*;
    run(
        &[
            Create {
                principal: None,
                key: K::A,
                val: 0,
            },
            Load { session: 0 },
            Advance { secs: 61 },
            Save { handle: 14 },
            Advance { secs: 1_801 },
            CycleId { handle: 253 },
        ],
        Some((2, OnPrincipalLimit::EvictOldest)),
    )
    .unwrap();
}
