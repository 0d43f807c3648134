//! Optimistic concurrency: conflicts, update() retries, named get-or-create.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use common::{fixture, fixture_with};
use sessdb::{Admin, Error, SessionId};
use std::time::Duration;

/// Runs `increment` (which adds one to the session's `n`) `EACH` times on each of `THREADS`
/// threads started together; returns how many increments that was.
fn increments_from_threads(
    store: &sessdb::Store,
    increment: impl Fn(&sessdb::Store) + Send + Sync + 'static,
) -> u64 {
    const THREADS: usize = 4;
    const EACH: u64 = 300;
    let barrier = Arc::new(Barrier::new(THREADS));
    let increment = Arc::new(increment);
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let increment = increment.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..EACH {
                    increment(&store);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    THREADS as u64 * EACH
}

/// Adds one to `n` in the session `s`.
fn add_one(s: &mut sessdb::Session) {
    let n: u64 = s.get("n").unwrap().unwrap();
    s.insert("n", &(n + 1)).unwrap();
}

#[test]
fn update_from_several_threads_loses_no_increment() {
    let f = fixture();
    let mut s = f.store.create();
    s.insert("n", &0u64).unwrap();
    s.save().unwrap();
    let id = *s.id();
    let total = increments_from_threads(&f.store, move |store| {
        store.update(&id, add_one).unwrap().expect("session exists");
    });
    let s = f.store.load(&id).unwrap().unwrap();
    assert_eq!(s.get::<u64>("n").unwrap(), Some(total));
    assert_eq!(s.version(), 1 + total);
}

/// A named session's token refreshed from several threads at once: `update_named` retries
/// as `update` does, and reaches the named session, which `update` by its id never does.
#[test]
fn update_named_from_several_threads_loses_no_increment() {
    let f = fixture();
    f.store
        .get_or_create("svc", |s| s.insert("n", &0u64))
        .unwrap();
    assert!(f
        .store
        .update(&SessionId::named("svc"), |_| ())
        .unwrap()
        .is_none());
    let total = increments_from_threads(&f.store, |store| {
        store
            .update_named("svc", add_one)
            .unwrap()
            .expect("the named session exists");
    });
    let s = f.store.load_named("svc").unwrap().unwrap();
    assert_eq!(s.get::<u64>("n").unwrap(), Some(total));
    let mut called = false;
    assert!(f
        .store
        .update_named("other", |_| called = true)
        .unwrap()
        .is_none());
    assert!(!called);
}

#[test]
fn update_of_a_missing_session_does_not_call_f() {
    let f = fixture();
    let called = f
        .store
        .update(&SessionId::random(), |_| unreachable!())
        .unwrap();
    assert!(called.is_none());
}

#[test]
fn get_or_create_runs_init_once_across_threads() {
    let f = fixture();
    let inits = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, inits, barrier) = (f.store.clone(), inits.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let s = store
                    .get_or_create("admin", |s| {
                        inits.fetch_add(1, Ordering::SeqCst);
                        s.insert("token", "t-1")
                    })
                    .unwrap();
                *s.id()
            })
        })
        .collect();
    let ids: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(inits.load(Ordering::SeqCst), 1);
    assert!(ids.iter().all(|id| *id == SessionId::named("admin")));
}

#[test]
fn get_or_create_validates_on_every_get_and_recreates_when_rejected() {
    let f = fixture();
    let mut inits = 0;
    let s = f
        .store
        .get_or_create("svc", |s| {
            inits += 1;
            s.insert("token", "old")
        })
        .unwrap();
    assert_eq!(s.label(), Some("svc"));
    let mut validations = 0;
    let s = f
        .store
        .get_or_create_validated(
            "svc",
            |s| {
                validations += 1;
                s.get::<String>("token").unwrap().as_deref() != Some("old")
            },
            |s| {
                inits += 1;
                s.insert("token", "new")
            },
        )
        .unwrap();
    assert_eq!((inits, validations), (2, 1));
    assert_eq!(s.get::<String>("token").unwrap().as_deref(), Some("new"));
    let again = f
        .store
        .get_or_create_validated("svc", |_| true, |_| Ok::<_, Error>(()))
        .unwrap();
    assert_eq!(
        again.get::<String>("token").unwrap().as_deref(),
        Some("new")
    );
}

/// `cycle_id` in `init`, as on any login, keeps the named id: later calls find the session and
/// do not log in again.
#[test]
fn a_rotation_inside_init_keeps_the_named_id() {
    let f = fixture();
    let mut inits = 0;
    for _ in 0..3 {
        let s = f
            .store
            .get_or_create("svc", |s| {
                inits += 1;
                s.insert("token", "t")?;
                s.cycle_id()
            })
            .unwrap();
        assert_eq!(*s.id(), SessionId::named("svc"));
    }
    assert_eq!(inits, 1);
    assert_eq!(Admin::stats(&f.store).unwrap().live, 1);
    // Saved, then rotated: stored where no call would look, so refused.
    let err = f
        .store
        .get_or_create("other", |s| {
            s.save()?;
            s.cycle_id()
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::Init { name, .. } if name == "other"),
        "{err}"
    );
    // And left nothing behind under the random id.
    assert_eq!(Admin::stats(&f.store).unwrap().live, 1);
}

/// A stored named session is not rotated: under a random id no call would find it, and the
/// next `get_or_create` would log in again beside it (as a user's service did).
#[test]
fn a_stored_named_session_is_not_rotated() {
    let f = fixture();
    let mut s = f
        .store
        .get_or_create("svc", |s| s.insert("token", "t"))
        .unwrap();
    let err = s.cycle_id().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidField {
                field: "session id",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(*s.id(), SessionId::named("svc"));
    let mut inits = 0;
    let again = f
        .store
        .get_or_create("svc", |_| {
            inits += 1;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(inits, 0, "found by its name, no second login");
    assert_eq!(again.get::<String>("token").unwrap().as_deref(), Some("t"));
    assert_eq!(Admin::stats(&f.store).unwrap().live, 1);
}

/// An `init` that leaves the session already expired (a login handing back a token past its
/// expiry) fails: no call returns an expired session, and nothing is stored, whether or not
/// `init` saved it.
#[test]
fn an_init_that_leaves_the_session_expired_fails_and_stores_nothing() {
    let f = fixture();
    for save_in_init in [false, true] {
        let err = f
            .store
            .get_or_create("svc", |s| {
                s.insert("token", "expired")?;
                if save_in_init {
                    s.save()?;
                }
                let past = s.created() - std::time::Duration::from_secs(1);
                s.set_absolute_deadline(past);
                Ok::<_, Error>(())
            })
            .unwrap_err();
        assert!(
            matches!(&err, Error::Init { name, .. } if name == "svc"),
            "{err}"
        );
        let why = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            why.is_some_and(|w| w.contains("already expired")),
            "{err:?}"
        );
        assert!(f.store.load_named("svc").unwrap().is_none());
        let stats = Admin::stats(&f.store).unwrap();
        assert_eq!((stats.live, stats.expired), (0, 0), "{save_in_init}");
    }
}

/// A holder of the named session refreshes it between the load and the removal of a session
/// `valid` refused: the newer session is validated and kept, not removed unseen.
#[test]
fn a_session_saved_after_the_validated_load_is_validated_not_removed() {
    let f = fixture();
    let mut holder = f
        .store
        .get_or_create("svc", |s| s.insert("token", "stale"))
        .unwrap();
    let (mut validations, mut inits) = (0, 0);
    let got = f
        .store
        .get_or_create_validated(
            "svc",
            |s| {
                validations += 1;
                if validations == 1 {
                    // Another request refreshes the token after this call loaded the session.
                    holder.insert("token", "fresh").unwrap();
                    holder.save().unwrap();
                }
                s.get::<String>("token").unwrap().as_deref() == Some("fresh")
            },
            |s| {
                inits += 1;
                s.insert("token", "relogin")
            },
        )
        .unwrap();
    assert_eq!((validations, inits), (2, 0));
    assert_eq!(
        got.get::<String>("token").unwrap().as_deref(),
        Some("fresh")
    );
    assert_eq!(Admin::stats(&f.store).unwrap().live, 1);
}

/// A record under the name that cannot be read: `load` finds no session, and the create that
/// follows must not pass for a conflict with another writer.
#[test]
fn an_unreadable_record_under_the_name_is_reported_as_such() {
    let f = fixture();
    let path = f.dir.path().join("db");
    let common::Fixture { dir, clock, store } = f;
    drop(store);
    {
        let db = common::open_raw_sled(&path);
        let sessions = db.open_tree("sessions").unwrap();
        sessions
            .insert(
                SessionId::named("svc").handle().as_bytes(),
                &[2u8, 0xff, 0xff][..],
            )
            .unwrap();
        db.flush().unwrap();
    }
    let f = common::Fixture {
        store: sessdb::Store::builder()
            .clock(clock.clone())
            .open(&path)
            .unwrap(),
        dir,
        clock,
    };
    for _ in 0..2 {
        let err = f
            .store
            .get_or_create("svc", |s| s.insert("token", "t"))
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&SessionId::named("svc").handle().to_string()),
            "{err}"
        );
    }
}

#[test]
fn failed_init_saves_nothing_and_reports_the_cause() {
    let f = fixture();
    let err = f
        .store
        .get_or_create("flaky", |_| {
            Err(std::io::Error::other("identity service down"))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Init { .. }));
    assert_eq!(err.to_string(), "creating named session \"flaky\" failed");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(source, "identity service down");
    assert!(f.store.load_named("flaky").unwrap().is_none());
}

/// An `init` that saved the session and then failed: the half-made session is removed, so the
/// next call runs `init` afresh instead of handing it out. Before, the next call found it and
/// never ran `init`.
#[test]
fn a_failed_init_that_saved_leaves_nothing_for_the_next_call() {
    let f = fixture();
    let err = f
        .store
        .get_or_create("svc", |s| {
            s.insert("user", "bob")?;
            s.save()?;
            Err::<(), Box<dyn std::error::Error + Send + Sync>>("identity service down".into())
        })
        .unwrap_err();
    assert!(matches!(err, Error::Init { .. }), "{err}");
    assert!(f.store.load_named("svc").unwrap().is_none());
    assert!(f.store.check().unwrap().is_clean());
    let mut ran = false;
    let s = f
        .store
        .get_or_create("svc", |s| {
            ran = true;
            s.insert("token", "t")
        })
        .unwrap();
    assert!(ran);
    assert_eq!(s.get::<String>("token").unwrap().as_deref(), Some("t"));
    assert_eq!(s.get::<String>("user").unwrap(), None);
}

/// A name is the session's label, with the label's limit: a longer one is refused as a name,
/// before anything is looked up or run.
#[test]
fn a_name_over_the_label_limit_is_refused_as_a_name() {
    let f = fixture();
    let name = "n".repeat(4097);
    let err = f
        .store
        .get_or_create(&name, |_| -> Result<(), Error> {
            panic!("init must not run")
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid session name: it is 4097 bytes, over the limit of 4096"
    );
    let at_limit = "n".repeat(4096);
    let s = f
        .store
        .get_or_create(&at_limit, |_| Ok::<(), Error>(()))
        .unwrap();
    assert_eq!(s.label(), Some(at_limit.as_str()));
}

/// The parallel requests of one page, each loading the session, reading it and saving it, once
/// a touch is due: none fails, and one touch is written per round.
#[test]
fn parallel_requests_that_only_read_never_conflict() {
    let f = fixture();
    let mut s = f.store.create();
    s.insert("cart", &vec![1, 2]).unwrap();
    s.save().unwrap();
    let id = *s.id();
    const THREADS: usize = 4;
    for _ in 0..100 {
        f.advance(120);
        let before = f.store.counters();
        let barrier = Arc::new(Barrier::new(THREADS));
        let results: Vec<_> = (0..THREADS)
            .map(|_| {
                let store = f.store.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut s = store.load(&id).unwrap().expect("live");
                    barrier.wait();
                    assert_eq!(s.get::<Vec<i32>>("cart").unwrap(), Some(vec![1, 2]));
                    s.save()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for r in results {
            r.unwrap();
        }
        let after = f.store.counters();
        assert_eq!(
            (
                after.writes - before.writes,
                after.conflicts - before.conflicts
            ),
            (1, 0)
        );
    }
}

/// `check` holds no lock over its scan, so saves that move index entries, logins, new sessions
/// and invalidations run beside it; none of them may look like a problem or a leftover. (It
/// used to hold every key stripe: 27 s without a single save at a million sessions.)
#[test]
fn check_beside_writers_reports_nothing() {
    let f = fixture();
    let ids: Vec<SessionId> = (0..300)
        .map(|i| {
            let mut s = f.store.create();
            s.set_principal(Some(&format!("user{}", i % 10))).unwrap();
            s.save().unwrap();
            *s.id()
        })
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = f.store.clone();
            let ids = ids.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let id = ids[(n * 7 + w) % ids.len()];
                    // Moves the expiry entry (a new idle timeout) and the principals entry.
                    let _ = store.update(&id, |s| {
                        s.set_idle_timeout(std::time::Duration::from_secs(
                            600 + (n % 5000) as u64 * 60,
                        ));
                        s.set_principal(Some(&format!("user{}", n % 10))).unwrap();
                    });
                    let mut fresh = store.create();
                    fresh.set_principal(Some("newcomer")).unwrap();
                    fresh.save().unwrap();
                    if n % 2 == 0 {
                        fresh.invalidate().unwrap();
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    for _ in 0..20 {
        let report = f.store.check().unwrap();
        assert!(report.is_clean(), "{report:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.join().unwrap() > 0);
    }
    assert!(f.store.check().unwrap().is_clean());
}

/// An `init` that asks for its own name fails at once instead of waiting for itself (and every
/// later caller of the name behind it); other names work from inside `init`, and the name works
/// again after. An empty name is refused: it could not be told from no label.
#[test]
fn an_init_that_asks_for_its_own_name_fails_instead_of_waiting_forever() {
    let f = fixture();
    let err = f
        .store
        .get_or_create("outer", |s| {
            let inner = f.store.get_or_create("outer", |_| Ok::<_, Error>(()));
            let err = inner.expect_err("its own name from inside init");
            assert_eq!(
                std::error::Error::source(&err).map(ToString::to_string),
                Some("asked for from inside its own init, which would wait for itself".into())
            );
            let other = f.store.get_or_create("other", |_| Ok::<_, Error>(()))?;
            s.insert("other", &other.label())?;
            Err(err)
        })
        .unwrap_err();
    assert!(matches!(err, Error::Init { .. }), "{err}");
    assert!(f.store.load_named("other").unwrap().is_some());
    assert!(f.store.load_named("outer").unwrap().is_none());
    let s = f
        .store
        .get_or_create("outer", |s| s.insert("n", &1))
        .expect("the name works again");
    assert_eq!(s.get::<i32>("n").unwrap(), Some(1));

    let err = f
        .store
        .get_or_create("", |_| Ok::<_, Error>(()))
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid session name: it is empty");
}

/// An `init` that panics lets go of its name: the next call, on the same thread, runs `init`
/// afresh rather than being taken for a call from inside the first one.
#[test]
fn an_init_that_panics_leaves_its_name_usable_on_the_same_thread() {
    let f = fixture();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.store.get_or_create("svc", |_| -> Result<(), Error> {
            panic!("identity client bug")
        })
    }));
    assert!(panicked.is_err());
    let s = f
        .store
        .get_or_create("svc", |s| s.insert("n", &1))
        .expect("the name works after the panic");
    assert_eq!(s.get::<i32>("n").unwrap(), Some(1));
}

/// An `init` that saved the session and then panicked: the half-made session is removed as for
/// an error, and the next call runs `init`. Before, the next call returned it as the login.
#[test]
fn an_init_that_saved_and_panicked_leaves_nothing_for_the_next_call() {
    let f = fixture();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.store.get_or_create("svc", |s| -> Result<(), Error> {
            s.insert("step", "1-of-2")?;
            s.save()?;
            panic!("identity client bug")
        })
    }));
    assert!(panicked.is_err());
    assert!(f.store.load_named("svc").unwrap().is_none());
    let mut ran = false;
    f.store
        .get_or_create("svc", |s| {
            ran = true;
            s.insert("step", "done")
        })
        .unwrap();
    assert!(ran);
}

/// `init` saves part way and the final save is refused (too large): the half-made session is
/// removed, so the next call runs `init`. Before, it was returned as the login.
#[test]
fn a_refused_final_save_leaves_nothing_for_the_next_call() {
    let f = fixture_with(sessdb::Store::builder().max_session_bytes(1024));
    let err = f
        .store
        .get_or_create("svc", |s| {
            s.insert("step", "logged-in")?;
            s.save()?;
            s.insert("blob", &"x".repeat(4096))
        })
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(f.store.load_named("svc").unwrap().is_none());
    let mut ran = false;
    f.store
        .get_or_create("svc", |s| {
            ran = true;
            s.insert("step", "logged-in")
        })
        .unwrap();
    assert!(ran);
}

/// A login slower than the idle timeout makes a live session: the save stores it as accessed
/// when it is saved. Before, it was refused as "already expired".
#[test]
fn an_init_slower_than_the_idle_timeout_makes_a_live_session() {
    let f = fixture_with(sessdb::Store::builder().idle_timeout(Duration::from_secs(5)));
    let s = f
        .store
        .get_or_create("svc", |s| {
            f.advance(6);
            s.insert("token", "t")
        })
        .unwrap();
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(f.clock_ms()) * 1_000_000)
        .unwrap();
    assert_eq!(s.expires_at(), now + Duration::from_secs(5));
    assert!(f.store.load_named("svc").unwrap().is_some());
}

/// A named session in use is an access each time it is found: it outlives the idle timeout
/// (30 minutes by default) up to its absolute deadline, writing at most once a touch interval.
/// Before, a client using it every minute logged in again every 30 minutes.
#[test]
fn a_named_session_in_use_outlives_the_idle_timeout() {
    let f = fixture();
    let logins = AtomicUsize::new(0);
    let init = |s: &mut sessdb::Session| {
        logins.fetch_add(1, Ordering::SeqCst);
        s.insert("token", "t")
    };
    f.store.get_or_create("svc", init).unwrap();
    let writes = f.store.counters().writes;
    // Every 10 s for two hours.
    for _ in 0..720 {
        f.advance(10);
        f.store.get_or_create("svc", init).unwrap();
    }
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    let touches = f.store.counters().writes - writes;
    let interval = f.store.touch_interval().as_secs();
    assert_eq!(touches, 2 * 3600 / interval, "one write a touch interval");
    // Unused for longer than the idle timeout, it expires: the next call logs in again.
    f.advance(31 * 60);
    f.store.get_or_create("svc", init).unwrap();
    assert_eq!(logins.load(Ordering::SeqCst), 2);
}

/// A touch that cannot be written (here a session over a size limit lowered since it was
/// saved; in life a full disk, where reads go on) does not take the valid session from the
/// caller: it is returned as found. Before, the call failed.
#[test]
fn a_touch_that_cannot_be_written_still_hands_out_the_session() {
    let f = fixture();
    f.store
        .get_or_create("svc", |s| s.insert("token", &"t".repeat(3000)))
        .unwrap();
    let f = f.reopen(sessdb::Store::builder().max_session_bytes(1024));
    f.advance(10 * 60);
    let s = f
        .store
        .get_or_create("svc", |_| -> Result<(), Error> { unreachable!("init ran") })
        .unwrap();
    assert_eq!(
        s.get::<String>("token").unwrap().map(|t| t.len()),
        Some(3000)
    );
}

/// An `init` that saves part way and then takes longer than the idle timeout: the saved copy
/// expired meanwhile, and a save never brings an expired session back. The call says why,
/// and stores nothing. (Before, a bare NotFound.)
#[test]
fn an_init_that_saved_and_then_outlived_the_idle_timeout_says_why() {
    let f = fixture_with(sessdb::Store::builder().idle_timeout(Duration::from_secs(5)));
    let err = f
        .store
        .get_or_create("svc", |s| {
            s.insert("step", "1-of-2")?;
            s.save()?;
            f.advance(6);
            s.insert("step", "2-of-2")
        })
        .unwrap_err();
    assert!(matches!(&err, Error::Init { .. }), "{err:?}");
    let why = std::error::Error::source(&err).unwrap().to_string();
    assert!(why.contains("expired before init returned"), "{why}");
    assert!(f.store.load_named("svc").unwrap().is_none());
    assert_eq!(Admin::stats(&f.store).unwrap().expired, 0);
}

/// An `init` that saved, whose session an operator then ended (`invalidate --principal`)
/// before `init` returned: the call says so, and does not blame the idle timeout (no time
/// passed).
#[test]
fn an_init_whose_saved_session_was_invalidated_says_so() {
    let f = fixture();
    let store = f.store.clone();
    let err = f
        .store
        .get_or_create("svc", |s| {
            s.set_principal(Some("svc-account"))?;
            s.save()?;
            assert_eq!(store.invalidate_principal("svc-account")?, 1);
            s.insert("step", "2")
        })
        .unwrap_err();
    let why = std::error::Error::source(&err).unwrap().to_string();
    assert!(why.contains("ended (invalidated)"), "{why}");
    assert!(f.store.load_named("svc").unwrap().is_none());
}

/// On a read-only store, a cached login is returned as stored (nothing written), and a missing
/// one fails before `init` runs: the remote login is not made for a save that would be refused.
#[test]
fn a_read_only_store_hands_out_cached_logins_and_runs_no_init() {
    let f = fixture();
    f.store
        .get_or_create("cached", |s| s.insert("token", "t"))
        .unwrap();
    let f = f.reopen(sessdb::Store::builder().read_only(true));
    f.advance(20 * 60);
    let s = f
        .store
        .get_or_create("cached", |_| -> Result<(), Error> {
            unreachable!("init ran")
        })
        .unwrap();
    assert_eq!(s.get::<String>("token").unwrap().as_deref(), Some("t"));
    assert_eq!(f.store.counters().writes, 0);
    let mut ran = false;
    let err = f
        .store
        .get_or_create("missing", |_| {
            ran = true;
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    assert!(!ran);
}

/// Another request, run from inside a clock read.
type Request = Box<dyn FnOnce() + Send>;

/// A clock that, the first time a test arms it, runs another request (on another thread)
/// before it answers: what happens between a load's read of the record and its read of the
/// clock, deterministically.
#[derive(Clone)]
struct Interleaving {
    ms: Arc<std::sync::atomic::AtomicI64>,
    between: Arc<std::sync::Mutex<Option<Request>>>,
}

impl std::fmt::Debug for Interleaving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interleaving")
    }
}

impl sessdb::Clock for Interleaving {
    fn now_ms(&self) -> i64 {
        let between = self.between.lock().expect("lock").take();
        if let Some(other) = between {
            std::thread::spawn(other).join().expect("the other request");
        }
        self.ms.load(Ordering::SeqCst)
    }
}

/// Another request touches a session 1 ms before its deadline while this request's load has
/// read the record and not yet the clock, which then reads 1 ms later: the load finds the
/// record it read expired, but the session is live (its touch moved the deadline), and the
/// load returns it rather than logging its holder out.
#[test]
fn a_touch_just_before_the_deadline_during_a_load_keeps_the_session() {
    let t0 = 1_800_000_000_000;
    let clock = Interleaving {
        ms: Arc::new(std::sync::atomic::AtomicI64::new(t0)),
        between: Arc::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = sessdb::Store::builder()
        .idle_timeout(std::time::Duration::from_secs(1800))
        .clock(clock.clone())
        .open(dir.path().join("db"))
        .unwrap();
    let mut s = store.create();
    s.insert("user", "alice").unwrap();
    s.save().unwrap();
    let id = *s.id();
    clock.ms.store(t0 + 1_800_000 - 1, Ordering::SeqCst);
    let (other_store, other_clock) = (store.clone(), clock.clone());
    let other: Request = Box::new(move || {
        let mut other = other_store
            .load(&id)
            .unwrap()
            .expect("live for the other request");
        other.save().unwrap();
        other_clock.ms.fetch_add(1, Ordering::SeqCst);
    });
    // Armed now: the load's first read of the clock, after its read of the record, runs it.
    *clock.between.lock().unwrap() = Some(other);
    let loaded = store.load(&id).unwrap();
    assert!(
        loaded.is_some(),
        "the session the other request kept live was taken for expired"
    );
    assert_eq!(
        loaded.unwrap().get::<String>("user").unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(store.stats().unwrap().live, 1);
}
