//! Idle and absolute expiry, per-session overrides, edges, clock going backwards, purge.

mod common;

use std::time::Duration;

use common::{fixture, fixture_with, T0};
use sessdb::{Admin, ListQuery, ManualClock, Status, Store};

fn idle_30m_abs_2h() -> sessdb::Builder {
    Store::builder()
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_lifetime(Duration::from_secs(2 * 3600))
}

#[test]
fn expires_at_is_the_earlier_of_idle_and_absolute() {
    let f = fixture_with(idle_30m_abs_2h());
    let mut s = f.store.create();
    s.save().unwrap();
    assert_eq!(s.expires_at().unix_timestamp() * 1000, T0 + 30 * 60 * 1000);
    assert_eq!(
        s.absolute_deadline().unix_timestamp() * 1000,
        T0 + 2 * 3600 * 1000
    );
    // Keep it busy: every 20 minutes a modification moves the idle deadline...
    for _ in 0..5 {
        f.advance(20 * 60);
        let mut s = f.store.load(s.id()).unwrap().expect("busy session lives");
        s.insert("tick", &1).unwrap();
        s.mark_changed();
        s.save().unwrap();
    }
    // ...until the absolute deadline caps it (T0 + 100 min; idle would allow T0 + 130 min).
    let s2 = f.store.load(s.id()).unwrap().unwrap();
    assert_eq!(s2.expires_at(), s2.absolute_deadline());
    f.advance(20 * 60); // T0 + 120 min = the absolute deadline
    assert!(f.store.load(s.id()).unwrap().is_none());
}

#[test]
fn expired_exactly_at_the_deadline_not_a_millisecond_before() {
    let f = fixture_with(idle_30m_abs_2h());
    let mut s = f.store.create();
    s.save().unwrap();
    f.clock.set_ms(T0 + 30 * 60 * 1000 - 1);
    assert!(f.store.load(s.id()).unwrap().is_some());
    f.clock.set_ms(T0 + 30 * 60 * 1000);
    assert!(f.store.load(s.id()).unwrap().is_none());
}

#[test]
fn expired_session_is_deleted_lazily_on_load() {
    let f = fixture_with(idle_30m_abs_2h());
    let mut s = f.store.create();
    s.set_principal(Some("alice")).unwrap();
    s.save().unwrap();
    f.advance(31 * 60);
    assert_eq!(f.store.stats().unwrap().expired, 1);
    assert!(f.store.load(s.id()).unwrap().is_none());
    let stats = f.store.stats().unwrap();
    assert_eq!((stats.live, stats.expired, stats.principals), (0, 0, 0));
    // Going back in time cannot bring a deleted session back.
    f.clock.set_ms(T0);
    assert!(f.store.load(s.id()).unwrap().is_none());
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn per_session_overrides_of_idle_timeout_and_deadline() {
    let f = fixture_with(idle_30m_abs_2h());
    let mut s = f.store.create();
    s.set_idle_timeout(Duration::from_secs(60));
    s.save().unwrap();
    f.advance(61);
    assert!(f.store.load(s.id()).unwrap().is_none());

    let mut t = f.store.create();
    let deadline = t.created() + time::Duration::minutes(5);
    t.set_absolute_deadline(deadline);
    t.save().unwrap();
    assert_eq!(t.expires_at(), deadline);
    f.advance(5 * 60);
    assert!(f.store.load(t.id()).unwrap().is_none());
}

#[test]
fn clock_going_backwards_never_moves_last_access_back() {
    let f = fixture_with(idle_30m_abs_2h());
    let mut s = f.store.create();
    s.save().unwrap();
    f.advance(600);
    let mut s = f.store.load(s.id()).unwrap().unwrap();
    s.insert("a", &1).unwrap();
    s.save().unwrap();
    let last = s.last_access();
    let expires = s.expires_at();
    f.clock.set_ms(T0 - 3_600_000);
    let mut s = f
        .store
        .load(s.id())
        .unwrap()
        .expect("not expired in the past");
    s.insert("a", &2).unwrap();
    s.save().unwrap();
    assert_eq!(s.last_access(), last);
    assert_eq!(s.expires_at(), expires);
}

#[test]
fn expired_sessions_are_never_listed_as_live() {
    let f = fixture_with(idle_30m_abs_2h());
    for i in 0..4 {
        let mut s = f.store.create();
        s.set_principal(Some("p")).unwrap();
        if i % 2 == 0 {
            s.set_idle_timeout(Duration::from_secs(60));
        }
        s.save().unwrap();
    }
    f.advance(120);
    let live = f.store.list(&ListQuery::default()).unwrap().sessions;
    assert_eq!(live.len(), 2);
    assert!(live
        .iter()
        .all(|s| s.idle_timeout == Duration::from_secs(30 * 60)));
    let expired = f
        .store
        .list(&ListQuery {
            status: Status::Expired,
            ..ListQuery::default()
        })
        .unwrap()
        .sessions;
    assert_eq!(expired.len(), 2);
    assert_eq!(f.store.sessions_of("p").unwrap().len(), 2);
}

#[test]
fn purge_removes_exactly_the_expired_10k_of_100k() {
    let f = fixture_with(idle_30m_abs_2h());
    let mut short = Vec::new();
    let mut long = Vec::new();
    for i in 0..100_000u32 {
        let mut s = f.store.create();
        if i % 10 == 0 {
            s.set_idle_timeout(Duration::from_secs(60));
            s.set_principal(Some(&format!("user{}", i % 7))).unwrap();
            short.push(*s.id());
        } else if i % 1000 == 1 {
            long.push(*s.id());
        }
        s.save().unwrap();
    }
    f.advance(60);
    let mut calls = 0;
    let mut last = 0;
    let removed = f
        .store
        .purge_expired_with(|n| {
            calls += 1;
            assert!(n >= last);
            last = n;
        })
        .unwrap();
    assert_eq!(removed, 10_000);
    assert_eq!(last, 10_000);
    assert!(calls >= 10_000 / 512, "progress is reported per batch");
    let stats = f.store.stats().unwrap();
    assert_eq!((stats.live, stats.expired), (90_000, 0));
    for id in short.iter().take(200) {
        assert!(f.store.load(id).unwrap().is_none());
    }
    for id in &long {
        assert!(f.store.load(id).unwrap().is_some());
    }
    assert_eq!(f.store.purge_expired().unwrap(), 0, "nothing left to purge");
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn purge_counts_match_count_expired_and_leave_unexpired_in_the_same_bucket() {
    let f = fixture();
    // Two sessions whose deadlines share an expiry bucket: one expires before "now", one after.
    let mut a = f.store.create();
    a.set_idle_timeout(Duration::from_millis(1_000));
    a.save().unwrap();
    let mut b = f.store.create();
    b.set_idle_timeout(Duration::from_millis(3_000));
    b.save().unwrap();
    f.clock.set_ms(T0 + 2_000);
    assert_eq!(f.store.count_expired().unwrap(), 1);
    assert_eq!(f.store.purge_expired().unwrap(), 1);
    assert!(f.store.load(b.id()).unwrap().is_some());
    f.clock.set_ms(T0 + 3_000);
    assert_eq!(f.store.purge_expired().unwrap(), 1);
    assert!(f.store.check().unwrap().is_clean());
}

#[test]
fn reaper_purges_in_the_background_and_stops_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = sessdb::ManualClock::at_ms(T0);
    let store = Store::builder()
        .clock(clock.clone())
        .idle_timeout(Duration::from_secs(1))
        .reap_every(Duration::from_millis(1))
        .open(dir.path().join("db"))
        .unwrap();
    let mut s = store.create();
    s.save().unwrap();
    drop(s);
    clock.advance(Duration::from_secs(2));
    // The reaper runs every millisecond; give it (generously) until a deadline to show up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.counters().removals == 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        store.counters().removals,
        1,
        "the reaper removed the expired session"
    );
    drop(store);
    // The reaper lets go of the database: it can be opened again (once a purge in flight,
    // if any, has finished).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match Store::open(dir.path().join("db")) {
            Ok(_) => break,
            Err(sessdb::Error::Locked { .. } | sessdb::Error::AlreadyOpen { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now()
            }
            Err(e) => panic!("reopen after the reaper stopped: {e}"),
        }
    }
}

/// A clock chosen at run time (`Arc<dyn Clock>`) is a clock the builder takes, and the store
/// reads the time through it.
#[test]
fn a_shared_clock_chosen_at_run_time_drives_expiry() {
    let manual = ManualClock::at_ms(T0);
    let clock: std::sync::Arc<dyn sessdb::Clock> = std::sync::Arc::new(manual.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::builder()
        .idle_timeout(Duration::from_secs(60))
        .clock(clock)
        .open(dir.path().join("db"))
        .expect("open");
    let mut s = store.create();
    s.save().expect("save");
    assert_eq!(s.created().unix_timestamp() * 1000, T0);
    manual.advance(Duration::from_secs(60));
    assert!(
        store.load(s.id()).expect("load").is_none(),
        "expired at its deadline"
    );
}

/// Purge reads the expiry index a batch of 512 entries at a time and reports progress once a
/// batch (`purge_expired_with`): 600 expired sessions are two reports, not one per session.
#[test]
fn purge_reports_its_progress_once_a_batch() {
    let f = fixture_with(idle_30m_abs_2h());
    for _ in 0..600 {
        f.store.create().save().unwrap();
    }
    f.advance(31 * 60);
    let mut reports = Vec::new();
    let removed = f.store.purge_expired_with(|n| reports.push(n)).unwrap();
    assert_eq!(removed, 600);
    assert_eq!(reports, vec![512, 600]);
}
