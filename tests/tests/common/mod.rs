//! What the crash writers acknowledged, and the checks of a store reopened after a crash
//! against it: shared by the kill test (`crash.rs`) and the power-loss test (`power.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use sessdb::{Admin, Handle, SessionId, Store, Target};

/// One operation the writer reported.
#[derive(Debug, Clone)]
pub enum Op {
    Create(SessionId, Option<String>),
    Update(SessionId, u64),
    Rotate(SessionId),
    Invalidate(SessionId),
    InvalidatePrincipal(String),
    CreateExpired(SessionId, Option<String>),
    Purge,
}

pub fn parse_op(line: &str) -> Op {
    let words: Vec<&str> = line.split(' ').collect();
    let id = |i: usize| -> SessionId { words[i].parse().expect("an id") };
    let principal = |i: usize| (words[i] != "-").then(|| words[i].to_string());
    match words[1] {
        "create" => Op::Create(id(2), principal(3)),
        "update" => Op::Update(id(2), words[3].parse().expect("n")),
        "rotate" => Op::Rotate(id(2)),
        "invalidate" => Op::Invalidate(id(2)),
        "invalidate_principal" => Op::InvalidatePrincipal(words[2].to_string()),
        "create_expired" => Op::CreateExpired(id(2), principal(3)),
        "purge" => Op::Purge,
        other => panic!("unknown operation {other:?} in {line:?}"),
    }
}

/// What the acknowledged operations left, by id.
#[derive(Debug, Default)]
pub struct Model {
    /// Live sessions: principal and counter.
    pub live: HashMap<SessionId, (Option<String>, u64)>,
    /// Expired sessions not yet purged.
    pub expired: HashMap<SessionId, Option<String>>,
    /// Ids that must be gone.
    pub gone: HashSet<SessionId>,
}

impl Model {
    pub fn apply(&mut self, op: &Op, ok: &str) {
        match op {
            Op::Create(id, p) => {
                self.live.insert(*id, (p.clone(), 0));
            }
            Op::Update(id, n) => {
                self.live.get_mut(id).expect("updated a live session").1 = *n;
            }
            Op::Rotate(id) => {
                let new: SessionId = ok.parse().expect("the new id");
                let state = self.live.remove(id).expect("rotated a live session");
                self.live.insert(new, state);
                self.gone.insert(*id);
            }
            Op::Invalidate(id) => {
                self.live.remove(id);
                self.gone.insert(*id);
            }
            Op::InvalidatePrincipal(p) => {
                let mine = |q: &Option<String>| q.as_deref() == Some(p.as_str());
                let ids: Vec<SessionId> = self
                    .live
                    .iter()
                    .filter(|(_, (q, _))| mine(q))
                    .map(|(id, _)| *id)
                    .chain(
                        self.expired
                            .iter()
                            .filter(|(_, q)| mine(q))
                            .map(|(id, _)| *id),
                    )
                    .collect();
                for id in ids {
                    self.live.remove(&id);
                    self.expired.remove(&id);
                    self.gone.insert(id);
                }
            }
            Op::CreateExpired(id, p) => {
                self.expired.insert(*id, p.clone());
            }
            Op::Purge => {
                self.gone.extend(self.expired.drain().map(|(id, _)| id));
            }
        }
    }

    /// The ids whose state the operation in flight may or may not have changed.
    pub fn touched_by(&self, op: &Op) -> HashSet<SessionId> {
        let mine = |q: &Option<String>, p: &str| q.as_deref() == Some(p);
        match op {
            Op::Create(id, _)
            | Op::Update(id, _)
            | Op::Rotate(id)
            | Op::Invalidate(id)
            | Op::CreateExpired(id, _) => [*id].into(),
            Op::InvalidatePrincipal(p) => self
                .live
                .iter()
                .filter(|(_, (q, _))| mine(q, p))
                .map(|(id, _)| *id)
                .chain(
                    self.expired
                        .iter()
                        .filter(|(_, q)| mine(q, p))
                        .map(|(id, _)| *id),
                )
                .collect(),
            Op::Purge => self.expired.keys().copied().collect(),
        }
    }
}

/// Folds the writer's output into the model of what was acknowledged, and the operation in
/// flight, if any.
pub fn acknowledged(lines: &[String]) -> (Model, Option<Op>) {
    let mut model = Model::default();
    let mut pending: Option<Op> = None;
    for line in lines {
        if line.starts_with("op ") {
            assert!(pending.is_none(), "two operations without an ok");
            pending = Some(parse_op(line));
        } else if let Some(rest) = line.strip_prefix("ok") {
            let op = pending.take().expect("an ok without an operation");
            model.apply(&op, rest.trim());
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    (model, pending)
}

/// The session lines of an export: without its header (which holds the time of export) and
/// its end line, which must count them.
pub fn session_lines(export: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = export.lines().skip(1).collect();
    let end: serde_json::Value =
        serde_json::from_str(lines.pop().expect("an end line")).expect("json");
    assert_eq!(
        end,
        serde_json::json!({"end": "sessdb-export", "sessions": lines.len()})
    );
    lines
}

/// Every record in the store: handle → (principal, counter, expired), from an export.
pub fn records(store: &Store) -> BTreeMap<Handle, (Option<String>, Option<u64>, bool)> {
    let mut out = Vec::new();
    let report = store.export(&mut out, true).expect("export");
    assert_eq!(report.undecodable, 0);
    let now = Admin::now(store);
    let mut map = BTreeMap::new();
    for line in session_lines(&String::from_utf8(out).expect("utf-8")) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let handle: Handle = v["handle"]
            .as_str()
            .expect("handle")
            .parse()
            .expect("handle");
        let info = store
            .show(&Target::Handle(handle))
            .expect("show")
            .expect("exported");
        map.insert(
            handle,
            (
                info.principal.clone(),
                info.data.get("n").and_then(|n| match n {
                    sessdb::Value::Int(i) => u64::try_from(*i).ok(),
                    _ => None,
                }),
                info.is_expired_at(now),
            ),
        );
    }
    map
}

/// Checks a store reopened after an immediate-mode crash against what was acknowledged.
pub fn verify_immediate(db: &Path, lines: &[String]) {
    let (model, in_flight) = acknowledged(lines);
    let store = Store::open(db).expect("the store opens after a crash");
    let report = store.check().expect("check");
    assert!(!report.has_problems(), "check found problems: {report:?}");
    let touched = in_flight
        .as_ref()
        .map(|op| model.touched_by(op))
        .unwrap_or_default();
    let mut records = records(&store);

    for (id, (p, n)) in &model.live {
        let got = records.remove(&id.handle());
        if touched.contains(id) {
            // In flight: before or after, never something else.
            match (&in_flight, got) {
                (_, None) => {} // invalidated, rotated away, or not yet created
                (Some(Op::Update(_, new)), Some((q, m, false))) => {
                    assert_eq!(&q, p);
                    assert!(
                        m == Some(*n) || m == Some(*new),
                        "counter {m:?} of {n} or {new}"
                    );
                }
                (_, Some((q, m, expired))) => {
                    assert_eq!((&q, m, expired), (p, Some(*n), false), "{id:?}");
                }
            }
            continue;
        }
        let (q, m, expired) =
            got.unwrap_or_else(|| panic!("acknowledged live session {id:?} is missing"));
        assert_eq!((&q, m, expired), (p, Some(*n), false), "session {id:?}");
    }
    for (id, p) in &model.expired {
        match records.remove(&id.handle()) {
            Some((q, _, expired)) => assert!(expired && &q == p, "expired session {id:?}"),
            None => assert!(touched.contains(id), "expired session {id:?} vanished"),
        }
    }
    for id in &model.gone {
        assert!(
            !records.contains_key(&id.handle()),
            "session {id:?} is back after it was acknowledged gone"
        );
    }
    // What is left is what the operation in flight created: one session at most.
    match (&in_flight, records.len()) {
        (_, 0) => {}
        (Some(Op::Create(id, p)), 1) | (Some(Op::CreateExpired(id, p)), 1) => {
            let (q, _, _) = records.get(&id.handle()).expect("the new session");
            assert_eq!(q, p);
        }
        (Some(Op::Rotate(old)), 1) => {
            let (p, n) = &model.live[old];
            let (q, m, _) = records.values().next().expect("one");
            assert_eq!((q, m), (p, &Some(*n)), "the rotated session");
        }
        (op, n) => panic!("{n} unexpected sessions (operation in flight: {op:?})"),
    }
    // The principal index agrees with the records.
    let all = self::records(&store);
    for p in ["alice", "bob", "carol"] {
        let listed: BTreeSet<Handle> = store
            .sessions_of(p)
            .expect("sessions_of")
            .into_iter()
            .map(|s| s.handle)
            .collect();
        let want: BTreeSet<Handle> = all
            .iter()
            .filter(|(_, (q, _, expired))| q.as_deref() == Some(p) && !expired)
            .map(|(h, _)| *h)
            .collect();
        assert_eq!(listed, want, "sessions_of({p})");
    }
    store.repair().expect("repair");
    assert!(store.check().expect("check").is_clean());
}

/// The second writer only knows its own sessions: check those it acknowledged.
pub fn verify_second_life(db: &Path, lines: &[String]) {
    let (model, in_flight) = acknowledged(lines);
    let store = Store::open(db).expect("opens");
    let touched = in_flight
        .as_ref()
        .map(|op| model.touched_by(op))
        .unwrap_or_default();
    for (id, (p, n)) in &model.live {
        if touched.contains(id) {
            continue;
        }
        let s = store
            .load(id)
            .expect("load")
            .unwrap_or_else(|| panic!("acknowledged session {id:?} is missing"));
        assert_eq!(s.principal(), p.as_deref());
        assert_eq!(s.get::<u64>("n").expect("n"), Some(*n));
    }
    for id in &model.gone {
        assert!(store.show(&Target::Id(*id)).expect("show").is_none());
    }
}

/// A number set in the environment variable `name` (a test's iterations or seed), if any.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}
