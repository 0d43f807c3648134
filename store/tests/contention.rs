//! Contention: many threads on one session, one name, one principal. Each test asserts the
//! outcome a single-threaded run would give, however the threads interleave.
//!
//! Sizes are the (8 threads × 10,000 updates); `SESSDB_CONTENTION_SCALE=10` multiplies
//! the rounds of the other two tests for a longer run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use sessdb::{Admin, Durability, Error, Handle, SessionId, Store};

const THREADS: usize = 8;

fn scale() -> usize {
    std::env::var("SESSDB_CONTENTION_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("db")).expect("open");
    (dir, store)
}

#[test]
fn eight_threads_times_ten_thousand_updates_count_to_exactly_eighty_thousand() {
    const UPDATES: u64 = 10_000;
    let (_dir, store) = store();
    let mut s = store.create();
    s.insert("n", &0u64).expect("insert");
    s.save().expect("save");
    let id = *s.id();
    drop(s);
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..UPDATES {
                    let done = store
                        .update(&id, |s| {
                            let n: u64 = s.get("n").expect("a number").expect("present");
                            s.insert("n", &(n + 1)).expect("insert");
                        })
                        .expect("update");
                    assert!(done.is_some(), "the session disappeared");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let s = store.load(&id).expect("load").expect("live");
    assert_eq!(
        s.get::<u64>("n").expect("number"),
        Some(THREADS as u64 * UPDATES)
    );
    // One write per successful update, plus the create; every other attempt was a conflict.
    let c = store.counters();
    assert_eq!(c.writes, 1 + THREADS as u64 * UPDATES);
    assert_eq!(s.version(), 1 + THREADS as u64 * UPDATES);
    assert!(store.check().expect("check").is_clean());
}

#[test]
fn get_or_create_runs_init_once_however_many_threads_ask() {
    let (_dir, store) = store();
    let rounds = 30 * scale();
    let inits = Arc::new(AtomicUsize::new(0));
    for round in 0..rounds {
        let name = format!("user:{round}/tenant:acme");
        let start = Arc::new(Barrier::new(THREADS));
        let callers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (store, start, inits, name) =
                    (store.clone(), start.clone(), inits.clone(), name.clone());
                thread::spawn(move || {
                    start.wait();
                    let s = store
                        .get_or_create(&name, |s| {
                            inits.fetch_add(1, Ordering::SeqCst);
                            s.insert("token", &format!("token-{name}"))
                        })
                        .expect("get_or_create");
                    (*s.id(), s.get::<String>("token").expect("string"))
                })
            })
            .collect();
        for c in callers {
            let (id, token) = c.join().expect("caller");
            assert_eq!(id, SessionId::named(&name));
            assert_eq!(token, Some(format!("token-{name}")));
        }
        assert_eq!(inits.load(Ordering::SeqCst), round + 1, "round {round}");
    }
    let stats = store.stats().expect("stats");
    assert_eq!(stats.live, rounds as u64);
    assert!(store.check().expect("check").is_clean());
}

#[test]
fn invalidate_principal_racing_logins_leaves_no_session_saved_before_it_began() {
    const LOGIN_THREADS: usize = 4;
    let logins_per_thread = 500 * scale();
    let (_dir, store) = store();
    // Events are ordered on one counter: a login's save returning, an invalidation beginning.
    let clock = Arc::new(AtomicU64::new(0));
    // Every handle a login's session had: the moment its save returned, and whether the handle
    // is the one `cycle_id` gave it.
    let saved_at: Arc<Mutex<HashMap<Handle, (u64, bool)>>> = Arc::default();
    let logging_in = Arc::new(AtomicUsize::new(LOGIN_THREADS));
    let start = Arc::new(Barrier::new(LOGIN_THREADS + 1));
    let users: Vec<_> = (0..LOGIN_THREADS)
        .map(|t| {
            let (store, clock, saved_at, logging_in, start) = (
                store.clone(),
                clock.clone(),
                saved_at.clone(),
                logging_in.clone(),
                start.clone(),
            );
            thread::spawn(move || {
                start.wait();
                let mut logins = 0;
                for i in 0..logins_per_thread {
                    let mut s = store.create();
                    s.insert("who", &format!("{t}/{i}")).expect("insert");
                    s.set_principal(Some("alice")).expect("principal");
                    s.save().expect("save");
                    let at = clock.fetch_add(1, Ordering::SeqCst);
                    lock(&saved_at).insert(s.handle(), (at, false));
                    logins += 1;
                    // The rotation fails only if an invalidation removed the session first.
                    match s.cycle_id() {
                        Ok(()) => {
                            lock(&saved_at).insert(s.handle(), (at, true));
                        }
                        Err(Error::NotFound { .. }) => {}
                        Err(e) => panic!("cycle_id: {e:#}"),
                    }
                }
                logging_in.fetch_sub(1, Ordering::SeqCst);
                logins
            })
        })
        .collect();
    let invalidator = {
        let (store, clock, logging_in, start) = (
            store.clone(),
            clock.clone(),
            logging_in.clone(),
            start.clone(),
        );
        thread::spawn(move || {
            start.wait();
            // (when it began, what it removed, who was left right after it returned)
            let mut rounds = Vec::new();
            while logging_in.load(Ordering::SeqCst) > 0 {
                let began = clock.fetch_add(1, Ordering::SeqCst);
                let removed = store.invalidate_principal("alice").expect("invalidate");
                let left: Vec<Handle> = store
                    .sessions_of("alice")
                    .expect("sessions_of")
                    .into_iter()
                    .map(|s| s.handle)
                    .collect();
                rounds.push((began, removed, left));
            }
            rounds
        })
    };
    let logins: usize = users.into_iter().map(|u| u.join().expect("user")).sum();
    let rounds = invalidator.join().expect("invalidator");
    let saved_at = lock(&saved_at);

    // A session whose save returned before an invalidation began must not outlive it, under
    // its first id or a rotated one.
    let mut violations = Vec::new();
    for (began, _, left) in &rounds {
        for h in left {
            match saved_at.get(h) {
                Some((at, rotated)) if at < began => violations.push((*at, *began, *rotated)),
                _ => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} sessions outlived an invalidation that began after their login; \
         first (saved at, invalidation began at, handle from cycle_id): {:?}",
        violations.len(),
        violations.first()
    );
    // The rest go now; each login's session is removed exactly once in all.
    let last = store.invalidate_principal("alice").expect("invalidate");
    let removed: usize = rounds.iter().map(|(_, n, _)| n).sum::<usize>() + last;
    assert_eq!(removed, logins);
    assert!(store.sessions_of("alice").expect("sessions_of").is_empty());
    let report = store.check().expect("check");
    assert!(report.is_clean(), "{report:?}");
    assert!(
        rounds.len() > 1,
        "the invalidations must overlap the logins"
    );
}

/// Immediate durability with eight savers: the group commit, with its gathering leader, lets
/// every save and update return and loses none of them (the reopen reads what the store's drop
/// flushed; that a save is on disk when it returns is for the crash tests, `tests/crash.rs`).
/// A leader that waited for tickets that never come would hang this test.
#[test]
fn eight_durable_savers_all_return_and_lose_no_update() {
    const ROUNDS: u64 = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = Store::builder()
        .durability(Durability::Immediate)
        .open(&path)
        .expect("open");
    let shared = {
        let mut s = store.create();
        s.insert("n", &0u64).expect("insert");
        s.save().expect("save");
        *s.id()
    };
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || -> SessionId {
                let mut own = store.create();
                start.wait();
                for round in 1..=ROUNDS {
                    own.insert("n", &round).expect("insert");
                    own.save().expect("durable save of its own session");
                    let done = store
                        .update(&shared, |s| {
                            let n: u64 = s.get("n").expect("a number").expect("present");
                            s.insert("n", &(n + 1)).expect("insert");
                        })
                        .expect("durable update of the shared session");
                    assert!(done.is_some(), "the shared session disappeared");
                }
                *own.id()
            })
        })
        .collect();
    let own: Vec<SessionId> = workers
        .into_iter()
        .map(|w| w.join().expect("saver"))
        .collect();
    drop(store);

    let store = Store::open(&path).expect("reopen");
    for id in &own {
        let s = store
            .load(id)
            .expect("load")
            .expect("every saver's session is there");
        assert_eq!(s.get::<u64>("n").expect("a number"), Some(ROUNDS));
    }
    let s = store
        .load(&shared)
        .expect("load")
        .expect("the shared session is there");
    assert_eq!(
        s.get::<u64>("n").expect("a number"),
        Some(THREADS as u64 * ROUNDS),
        "an acknowledged update was lost"
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
