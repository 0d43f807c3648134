//! Layer 1: key events in, state out; nothing is drawn.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sessdb::{Admin, Handle, SessionId, Target};
use time::OffsetDateTime;

use super::{
    ch, key, press, principals, started, started_on, started_on_with, started_with, type_text,
    work_now, Fixture, Flaky, Spec, HUNG,
};
use crate::app::{Action, Confirm, Counted, Job, Message, Mode, Report, Stale};
use crate::clock::Clock;
use crate::listing::{Filter, Sort, PAGE_SIZE};

fn handle_of(name: &str) -> Handle {
    SessionId::named(name).handle()
}

fn selected_principal(app: &crate::app::App) -> Option<String> {
    app.selected_session().and_then(|s| s.principal.clone())
}

#[test]
fn starts_on_live_sessions_in_expiry_order_with_counts() {
    let f = Fixture::demo();
    let app = started(&f.store, 100, 30);
    assert_eq!(
        principals(&app),
        ["carol", "alice", "bob", "-", "alice", "svc-billing"]
    );
    assert_eq!(app.selected, 0);
    let stats = app.stats.as_ref().expect("stats loaded");
    assert_eq!((stats.live, stats.expired, stats.principals), (6, 1, 5));
    assert_eq!(app.mode, Mode::Browsing);
    assert!(!app.busy());
}

#[test]
fn arrows_and_vim_keys_move_within_bounds() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('j'), key(KeyCode::Down)]);
    assert_eq!(app.selected, 2);
    press(app, &f.store, &[ch('k')]);
    assert_eq!(app.selected, 1);
    press(
        app,
        &f.store,
        &[key(KeyCode::Up), key(KeyCode::Up), ch('k')],
    );
    assert_eq!(app.selected, 0, "stops at the top");
    press(app, &f.store, &[ch('G')]);
    assert_eq!(app.selected, 5);
    press(app, &f.store, &[ch('j')]);
    assert_eq!(app.selected, 5, "stops at the bottom");
    press(app, &f.store, &[ch('g')]);
    assert_eq!(app.selected, 0);
    press(app, &f.store, &[key(KeyCode::PageDown)]);
    assert_eq!(
        app.selected, 5,
        "a page down past the end lands on the last row"
    );
    press(app, &f.store, &[key(KeyCode::PageUp)]);
    assert_eq!(app.selected, 0);
}

#[test]
fn enter_opens_a_detail_pane_pinned_to_the_session_and_scrolls_it() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('j'), key(KeyCode::Enter)]);
    let Mode::Detail(detail) = &app.mode else {
        panic!("detail pane not open: {:?}", app.mode);
    };
    assert_eq!(detail.handle, handle_of("alice-web"));
    assert_eq!(detail.scroll, 0);
    // In the pane, j/k scroll it and leave the table's selection alone.
    press(app, &f.store, &[ch('j'), ch('j'), ch('k')]);
    assert_eq!(app.detail().map(|d| d.scroll), Some(1));
    assert_eq!(app.selected, 1);
    press(app, &f.store, &[ch('G')]);
    let bottom = app.detail().map(|d| d.scroll).expect("open");
    press(app, &f.store, &[ch('j')]);
    assert_eq!(
        app.detail().map(|d| d.scroll),
        Some(bottom),
        "stops at the end"
    );
    assert!(bottom > 1);
    press(app, &f.store, &[key(KeyCode::Esc)]);
    assert_eq!(app.mode, Mode::Browsing);
    assert!(!app.quit, "Esc closes the pane, it does not quit");
    press(app, &f.store, &[key(KeyCode::Enter), key(KeyCode::Enter)]);
    assert_eq!(app.mode, Mode::Browsing, "Enter toggles");
}

#[test]
fn the_detail_pane_says_when_its_session_is_gone() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[key(KeyCode::Enter)]);
    f.store
        .invalidate_handle(&handle_of("carol"))
        .expect("invalidate");
    press(app, &f.store, &[ch('r')]);
    let detail = app.detail().expect("still open");
    assert_eq!(detail.handle, handle_of("carol"));
    assert!(detail.info.is_none());
    // `d` and `D` say so, not "No session selected" with the pane open.
    for k in ['d', 'D'] {
        press(app, &f.store, &[ch(k)]);
        assert_eq!(
            app.message,
            Some(Message::Info(format!(
                "Session {} no longer exists: nothing to invalidate",
                handle_of("carol").short()
            ))),
            "{k}"
        );
    }
}

#[test]
fn slash_filters_as_you_type_and_esc_clears() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('/')]);
    assert!(matches!(app.mode, Mode::Filter { .. }));
    type_text(app, &f.store, "al");
    assert_eq!(principals(app), ["alice", "alice"]);
    assert_eq!(app.listing.view().filter, Filter::Search("al".into()));
    press(
        app,
        &f.store,
        &[key(KeyCode::Backspace), key(KeyCode::Backspace)],
    );
    assert_eq!(app.listing.rows().len(), 6);
    type_text(app, &f.store, "gue");
    assert_eq!(principals(app), ["-"], "labels match too");
    press(app, &f.store, &[key(KeyCode::Enter)]);
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(app.filter_text, "gue", "Enter keeps the filter");
    press(app, &f.store, &[key(KeyCode::Esc)]);
    assert_eq!(app.listing.view().filter, Filter::None);
    assert_eq!(app.listing.rows().len(), 6);
    assert!(!app.quit, "the first Esc clears the filter");
    press(app, &f.store, &[key(KeyCode::Esc)]);
    assert!(!app.quit, "Esc is never a way out: q is");
    assert_eq!(
        app.message,
        Some(Message::Info("Nothing to close or clear (q quits)".into()))
    );
    press(app, &f.store, &[ch('q')]);
    assert!(app.quit);
}

#[test]
fn filter_by_handle_prefix_and_exact_principal_and_label() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    let bob = handle_of("bob-web").to_string();
    press(app, &f.store, &[ch('/')]);
    type_text(app, &f.store, &bob[..6]);
    assert_eq!(principals(app), ["bob"]);
    press(app, &f.store, &[key(KeyCode::Esc), ch('/')]);
    type_text(app, &f.store, "p:alice");
    assert_eq!(app.listing.view().filter, Filter::Principal("alice".into()));
    assert_eq!(principals(app), ["alice", "alice"]);
    // The principal index lists by handle, so even expiry order is sorted on the page.
    assert!(!app
        .listing
        .view()
        .sort
        .served_by_index(&app.listing.view().filter));
    let expiries: Vec<_> = app.listing.rows().iter().map(|s| s.expires_at).collect();
    assert!(expiries.windows(2).all(|w| w[0] <= w[1]));
    press(app, &f.store, &[key(KeyCode::Esc), ch('/')]);
    type_text(app, &f.store, "p:ali");
    assert!(app.listing.rows().is_empty(), "p: is exact");
    press(app, &f.store, &[key(KeyCode::Esc), ch('/')]);
    type_text(app, &f.store, "l:web");
    assert_eq!(
        principals(app),
        ["alice", "bob"],
        "dave's web session expired"
    );
}

#[test]
fn s_cycles_the_sort_and_keeps_the_selected_session() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('j'), ch('j')]);
    assert_eq!(selected_principal(app).as_deref(), Some("bob"));
    press(app, &f.store, &[ch('s')]);
    assert_eq!(app.listing.view().sort, Sort::LastAccess);
    assert_eq!(
        principals(app),
        ["svc-billing", "carol", "alice", "-", "bob", "alice"]
    );
    assert_eq!(selected_principal(app).as_deref(), Some("bob"));
    press(app, &f.store, &[ch('s')]);
    assert_eq!(
        principals(app),
        ["alice", "alice", "bob", "carol", "svc-billing", "-"]
    );
    press(app, &f.store, &[ch('s')]);
    assert_eq!(app.listing.view().sort, Sort::Created);
    assert_eq!(
        principals(app),
        ["svc-billing", "carol", "alice", "-", "bob", "alice"]
    );
    press(app, &f.store, &[ch('s')]);
    assert_eq!(app.listing.view().sort, Sort::Expiry);
    assert_eq!(
        principals(app),
        ["carol", "alice", "bob", "-", "alice", "svc-billing"]
    );
    assert_eq!(selected_principal(app).as_deref(), Some("bob"));
}

#[test]
fn e_toggles_expired_sessions() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('e')]);
    assert!(app.listing.view().show_expired);
    assert_eq!(principals(app)[0], "dave");
    assert_eq!(app.listing.rows().len(), 7);
    press(app, &f.store, &[ch('e')]);
    assert_eq!(app.listing.rows().len(), 6);
    assert!(!principals(app).contains(&"dave".to_string()));
}

#[test]
fn d_asks_then_y_invalidates_the_selected_session() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('j'), ch('d')]);
    let bob_web = handle_of("alice-web");
    assert_eq!(
        app.mode,
        Mode::Confirm {
            ask: Confirm::Invalidate {
                handle: bob_web,
                principal: Some("alice".into()),
            },
            back: Box::new(Mode::Browsing),
        }
    );
    press(app, &f.store, &[ch('x'), ch('j')]);
    assert!(
        matches!(app.mode, Mode::Confirm { .. }),
        "other keys do nothing"
    );
    press(app, &f.store, &[ch('y')]);
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(f.store.show(&Target::Handle(bob_web)).expect("show"), None);
    assert_eq!(
        principals(app),
        ["carol", "bob", "-", "alice", "svc-billing"]
    );
    assert_eq!(
        selected_principal(app).as_deref(),
        Some("bob"),
        "the selection stays at its place"
    );
    assert_eq!(app.stats.as_ref().map(|s| s.live), Some(5));
    assert!(matches!(&app.message, Some(Message::Info(m)) if m.starts_with("Invalidated session")));
    // Said until the next key, which it would otherwise seem to be the outcome of.
    app.update(&f.store, Action::AutoRefresh);
    assert!(app.message.is_some(), "a refresh is not a key");
    press(app, &f.store, &[ch('j')]);
    assert_eq!(app.message, None);
}

#[test]
fn n_and_esc_cancel_a_confirmation() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    for answer in [ch('n'), key(KeyCode::Esc)] {
        press(app, &f.store, &[ch('d'), answer]);
        assert_eq!(app.mode, Mode::Browsing);
        assert!(!app.quit);
    }
    assert_eq!(f.store.stats().expect("stats").live, 6);
    assert_eq!(app.message, Some(Message::Info("Cancelled".into())));
}

/// `j` `D` on the demo fixture: the confirmation asks to log alice out of `count` sessions.
fn asks_to_log_alice_out(app: &mut crate::app::App, store: &sessdb::Store, count: usize) {
    press(app, store, &[ch('j'), ch('D')]);
    let Mode::Confirm { ask, .. } = &app.mode else {
        panic!("no confirmation: {:?}", app.mode);
    };
    assert_eq!(
        *ask,
        Confirm::InvalidatePrincipal {
            principal: "alice".into(),
            count
        }
    );
}

#[test]
fn capital_d_counts_the_live_sessions_it_ends_as_the_store_does() {
    let f = Fixture::demo();
    // One more session of alice's, expired and not purged yet: it goes too, uncounted.
    f.add(Spec {
        name: "alice-old",
        principal: Some("alice"),
        idle: Some(Duration::from_secs(1)),
        ..Spec::default()
    });
    f.advance(2);
    let expired = f.store.stats().expect("stats").expired;
    let app = &mut started(&f.store, 100, 30);
    asks_to_log_alice_out(app, &f.store, 2);
    press(app, &f.store, &[ch('y')]);
    assert_eq!(
        app.message,
        Some(Message::Info("Invalidated 2 sessions of alice".into()))
    );
    assert_eq!(f.store.stats().expect("stats").expired, expired - 1);
}

#[test]
fn capital_d_says_how_many_and_logs_the_principal_out() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    asks_to_log_alice_out(app, &f.store, 2);
    press(app, &f.store, &[ch('y')]);
    assert!(f.store.sessions_of("alice").expect("list").is_empty());
    assert_eq!(principals(app), ["carol", "bob", "-", "svc-billing"]);
    assert_eq!(
        app.message,
        Some(Message::Info("Invalidated 2 sessions of alice".into()))
    );
    // The anonymous session has no principal to log out.
    press(app, &f.store, &[ch('g'), ch('j'), ch('j'), ch('D')]);
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(
        app.message,
        Some(Message::Info("This session has no principal".into()))
    );
}

#[test]
fn p_asks_how_many_expired_then_purges() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('p')]);
    assert!(matches!(
        app.mode,
        Mode::Confirm {
            ask: Confirm::Purge { count: Some(1) },
            ..
        }
    ));
    press(app, &f.store, &[ch('y')]);
    assert_eq!(f.store.count_expired().expect("count"), 0);
    assert_eq!(
        app.message,
        Some(Message::Info("Purged 1 expired session".into()))
    );
    assert_eq!(app.stats.as_ref().map(|s| s.expired), Some(0));
    press(app, &f.store, &[ch('p')]);
    assert_eq!(app.mode, Mode::Browsing, "nothing to purge, nothing to ask");
    assert_eq!(
        app.message,
        Some(Message::Info("No expired sessions to purge".into()))
    );
}

/// `p` asks at once: the expired sessions are counted on the worker (seconds at a million),
/// and the question shows their number when it comes. `y` need not wait for it; the purge
/// runs on the worker too, after the count under way, and the status line follows it.
#[test]
fn p_asks_at_once_and_the_purge_runs_on_the_worker() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    app.update(&f.store, Action::AskPurge);
    assert!(matches!(
        app.mode,
        Mode::Confirm {
            ask: Confirm::Purge { count: None },
            ..
        }
    ));
    assert_eq!(app.take_job(), Some(Job::CountExpired));
    assert_eq!(app.take_job(), None, "one job at a time");
    // Confirmed before the count came: the purge waits for the worker.
    app.update(&f.store, Action::Answer(true));
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(
        app.purging.map(crate::app::purge_progress).as_deref(),
        Some("Purge confirmed: it starts once the count under way ends")
    );
    // The count comes after the question was answered: it has nothing left to fill in.
    app.report(&f.store, Report::Expired(Ok(1)));
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(
        f.store.count_expired().expect("count"),
        1,
        "nothing purged yet"
    );
    // A second `p` meanwhile asks nothing: the status line goes on following the purge (a
    // message of its own would hold a number still).
    assert_eq!(app.take_job(), Some(Job::Purge));
    app.report(&f.store, Report::Purging(0));
    press(app, &f.store, &[ch('p')]);
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(app.message, None);
    app.report(&f.store, Report::Purging(7));
    let status = super::status_line(app);
    assert!(
        status.starts_with(" Purging the expired sessions: 7 removed so far"),
        "{status}"
    );
    // The keys keep working while it runs.
    press(app, &f.store, &[ch('j')]);
    assert_eq!(app.selected, 1);
    crate::app::work(&f.store, Job::Purge, &mut |report| {
        app.report(&f.store, report);
    });
    assert_eq!(app.purging, None);
    assert_eq!(
        app.message,
        Some(Message::Info("Purged 1 expired session".into()))
    );
    assert_eq!(f.store.count_expired().expect("count"), 0);
    // The refresh after it asked for the header's counts again.
    work_now(app, &f.store);
    assert_eq!(app.stats.as_ref().map(|s| s.expired), Some(0));
}

/// The count of the expired sessions decides the open question: its number shows, none
/// closes it with a word, a failure closes it with the error.
#[test]
fn the_purge_question_takes_its_count_when_it_comes() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    let asked = |app: &mut crate::app::App| {
        app.update(&f.store, Action::AskPurge);
        assert_eq!(app.take_job(), Some(Job::CountExpired));
    };
    asked(app);
    app.report(&f.store, Report::Expired(Ok(830_000)));
    assert!(matches!(
        app.mode,
        Mode::Confirm {
            ask: Confirm::Purge {
                count: Some(830_000)
            },
            ..
        }
    ));
    press(app, &f.store, &[ch('n')]);
    asked(app);
    app.report(&f.store, Report::Expired(Ok(0)));
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(
        app.message,
        Some(Message::Info("No expired sessions to purge".into()))
    );
    asked(app);
    let refused = sessdb::Error::Io {
        path: "/srv/app/sessions.sessdb".into(),
        source: std::io::Error::other("disk gone"),
    };
    app.report(&f.store, Report::Expired(Err(refused)));
    assert_eq!(app.mode, Mode::Browsing);
    assert_eq!(
        app.message,
        Some(Message::ActionError(
            "Could not count the expired sessions: I/O error on /srv/app/sessions.sessdb: disk \
             gone"
                .into()
        ))
    );
    // `n` while the count runs, then `p` again: the count under way answers both.
    app.update(&f.store, Action::AskPurge);
    assert_eq!(app.take_job(), Some(Job::CountExpired));
    press(app, &f.store, &[ch('n')]);
    app.update(&f.store, Action::AskPurge);
    assert_eq!(app.take_job(), None, "no second count");
    app.report(&f.store, Report::Expired(Ok(1)));
    assert!(matches!(
        app.mode,
        Mode::Confirm {
            ask: Confirm::Purge { count: Some(1) },
            ..
        }
    ));
}

/// A purge's outcome comes between keys: a key pressed within 3 s of it was not pressed in
/// answer to it and leaves it on screen; a later one, or what a key says, ends it as usual.
#[test]
fn what_the_worker_says_survives_keys_pressed_just_after_it() {
    let f = Fixture::demo();
    let clock = Clock::manual();
    let app = &mut started_on(&f.store, 100, 30, &clock);
    press(app, &f.store, &[ch('p')]);
    app.update(&f.store, Action::Answer(true));
    assert_eq!(app.take_job(), Some(Job::Purge));
    crate::app::work(&f.store, Job::Purge, &mut |report| {
        app.report(&f.store, report);
    });
    let purged = Some(Message::Info("Purged 1 expired session".into()));
    assert_eq!(app.message, purged);
    clock.advance(Duration::from_millis(2_999));
    press(app, &f.store, &[ch('j')]);
    assert_eq!(app.message, purged, "pressed before it could be read");
    clock.advance(Duration::from_millis(1));
    press(app, &f.store, &[ch('j')]);
    assert_eq!(app.message, None, "pressed once it had been on screen 3 s");
    // What a key says is over at the next key, however soon.
    app.update(&f.store, Action::AskPurge);
    assert_eq!(app.take_job(), Some(Job::CountExpired));
    app.report(&f.store, Report::Expired(Ok(0)));
    assert_eq!(
        app.message,
        Some(Message::Info("No expired sessions to purge".into()))
    );
    press(app, &f.store, &[ch('a')]);
    assert_eq!(
        app.message,
        Some(Message::Info("Auto-refresh off (r refreshes)".into()))
    );
    press(app, &f.store, &[ch('j')]);
    assert_eq!(app.message, None);
}

/// `d` and `y` on the first row, with `stops` making `admin` fail the invalidation: the
/// row's handle, and the action's error the status line says.
fn invalidate_failing(f: &Fixture, stops: impl Fn(&Flaky)) -> (sessdb::Handle, String) {
    let admin = Flaky::new(&f.store);
    let app = &mut started(&admin, 100, 30);
    let first = app.selected_session().expect("a row").handle;
    press(app, &admin, &[ch('d')]);
    stops(&admin);
    press(app, &admin, &[ch('y')]);
    let Some(Message::ActionError(text)) = &app.message else {
        panic!("{:?}", app.message);
    };
    (first, text.clone())
}

/// An invalidation sent to an application that stopped before it answered is not said to be
/// undone: a stopped application does it once it runs again.
#[test]
fn an_unanswered_invalidation_is_said_as_sent_not_as_undone() {
    let f = Fixture::demo();
    let (first, text) = invalidate_failing(&f, |a| a.hung.store(true, Ordering::SeqCst));
    assert!(
        text.starts_with(&format!(
            "Invalidating session {} was sent and not confirmed (the application may still do \
             it when it runs again; r shows whether it did): ",
            first.short()
        )),
        "{text}"
    );
    assert!(!text.contains("NOT"), "{text}");
}

/// An invalidation that never reached the application (it did not answer the connection the
/// request was to go on: the TUI had dropped its own after the application stopped) is not
/// said as sent: nothing will do it when the application runs again (before, the TUI said
/// it would, and the session stayed logged in; found by a second reviewer).
#[test]
fn an_invalidation_that_was_never_sent_is_said_as_not_done() {
    let f = Fixture::demo();
    let (first, text) = invalidate_failing(&f, |a| a.unreachable.store(true, Ordering::SeqCst));
    assert!(text.contains("NOT invalidated"), "{text}");
    assert!(!text.contains("was sent"), "{text}");
    let target = sessdb::Target::Handle(first);
    assert!(
        Admin::show(&f.store, &target).unwrap().is_some(),
        "still there"
    );
}

/// An app whose purge (on `admin`) ended while the failure of a `d` was on screen, no key
/// pressed since; and that failure.
fn purged_behind_a_failed_d(admin: &Flaky, clock: &Clock) -> (crate::app::App, Option<Message>) {
    let mut app = started_on(admin, 100, 30, clock);
    press(&mut app, admin, &[ch('p')]);
    app.update(admin, Action::Answer(true));
    assert_eq!(app.take_job(), Some(Job::Purge));
    // While it runs, `d` fails.
    admin.failing.store(true, Ordering::SeqCst);
    press(&mut app, admin, &[ch('d'), ch('y')]);
    admin.failing.store(false, Ordering::SeqCst);
    let failed = app.message.clone();
    assert!(
        matches!(&failed, Some(Message::ActionError(t)) if t.contains("NOT invalidated")),
        "{failed:?}"
    );
    crate::app::work(admin, Job::Purge, &mut |report| app.report(admin, report));
    (app, failed)
}

/// A purge that ends while a key's failure is on screen does not hide it: its outcome is
/// said at the operator's next key, and then stays through keys for a moment, as any the
/// worker says. A new purge's `y` clears an old outcome so that its progress shows.
#[test]
fn the_workers_outcome_waits_behind_an_unseen_failure() {
    let f = Fixture::demo();
    let admin = Flaky::new(&f.store);
    let clock = Clock::manual();
    let (mut app, failed) = purged_behind_a_failed_d(&admin, &clock);
    let app = &mut app;
    assert_eq!(app.message, failed, "the failure stays until a key");
    let purged = Some(Message::Info("Purged 1 expired session".into()));
    press(app, &admin, &[ch('j')]);
    assert_eq!(app.message, purged, "said at the next key");
    press(app, &admin, &[ch('j')]);
    assert_eq!(app.message, purged, "and kept through a key just after");
    // A new purge: its `y` within a moment of the last outcome clears it for the progress.
    f.clock.advance(Duration::from_secs(365 * 86_400));
    press(app, &admin, &[ch('p')]);
    assert!(matches!(app.mode, Mode::Confirm { .. }));
    app.update(&admin, Action::Answer(true));
    assert_eq!(app.message, None);
    assert!(app.purging.is_some(), "the status line follows it");
}

/// What the worker said behind a failure is not lost to a key that speaks itself: that key's
/// words come first, the worker's at the key after.
#[test]
fn the_workers_outcome_outlasts_a_key_that_speaks() {
    let f = Fixture::demo();
    let admin = Flaky::new(&f.store);
    let (mut app, _) = purged_behind_a_failed_d(&admin, &Clock::manual());
    let app = &mut app;
    press(app, &admin, &[ch('e')]);
    assert_eq!(
        app.message,
        Some(Message::Info(
            "Showing expired sessions too (dimmed)".into()
        ))
    );
    press(app, &admin, &[ch('j')]);
    assert_eq!(
        app.message,
        Some(Message::Info("Purged 1 expired session".into()))
    );
}

/// `p` answered before the worker took its count: the count is not made for nobody after the
/// purge, ahead of the header's counts the purge asked for.
#[test]
fn an_answered_purge_question_cancels_a_count_not_started() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    for yes in [false, true] {
        app.update(&f.store, Action::AskPurge);
        app.update(&f.store, Action::Answer(yes));
    }
    assert_eq!(app.take_job(), Some(Job::Purge));
    crate::app::work(&f.store, Job::Purge, &mut |r| app.report(&f.store, r));
    assert_eq!(app.take_job(), Some(Job::Count));
    app.report(&f.store, Report::Counted(crate::app::count(&f.store)));
    assert_eq!(app.take_job(), None);
}

/// `p`, its count of `counted` coming back from the worker, and `y`: the purge is the
/// worker's job now.
fn purge_confirmed(app: &mut crate::app::App, admin: &dyn Admin, counted: u64) {
    app.update(admin, Action::AskPurge);
    assert_eq!(app.take_job(), Some(Job::CountExpired));
    app.report(admin, Report::Expired(Ok(counted)));
    app.update(admin, Action::Answer(true));
    assert_eq!(app.take_job(), Some(Job::Purge));
}

/// An application goes on while a question waits: what was done is said against what the
/// question counted.
#[test]
fn what_was_done_is_said_against_what_was_counted() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    purge_confirmed(app, &f.store, 10);
    app.report(&f.store, Report::Purged(Ok(12)));
    assert_eq!(
        app.message,
        Some(Message::Info(
            "Purged 12 expired sessions (2 more expired since the count)".into()
        ))
    );
    // alice's two sessions are counted; she logs in once more before `y`.
    press(app, &f.store, &[ch('j')]);
    assert_eq!(selected_principal(app).as_deref(), Some("alice"));
    press(app, &f.store, &[ch('D')]);
    assert!(matches!(
        app.mode,
        Mode::Confirm {
            ask: Confirm::InvalidatePrincipal { count: 2, .. },
            ..
        }
    ));
    let mut again = f.store.create();
    again.set_principal(Some("alice")).expect("principal");
    again.save().expect("save");
    press(app, &f.store, &[ch('y')]);
    assert_eq!(
        app.message,
        Some(Message::Info(
            "Invalidated 3 sessions of alice (1 more logged in since the count)".into()
        ))
    );
}

/// A purge that fails partway, or whose worker is gone, says how far it went: what it
/// removed stays removed, and the counts are read again.
#[test]
fn a_purge_that_fails_partway_says_how_far_it_went() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    for gone in [false, true] {
        purge_confirmed(app, &f.store, 10);
        app.report(&f.store, Report::Purging(3));
        assert_eq!(
            app.purging.map(crate::app::purge_progress).as_deref(),
            Some("Purging 10 expired sessions: 3 removed so far")
        );
        let why = if gone {
            app.worker_gone();
            ": the TUI's worker thread stopped"
        } else {
            let unanswered = sessdb::Error::Unresponsive {
                path: "/srv/app/admin.sock".into(),
                waited: super::HUNG,
                sent: true,
            };
            app.report(&f.store, Report::Purged(Err(unanswered)));
            " (the application may go on with it when it runs again): Auto-refresh paused, r \
             tries again: the application did not answer within 20s"
        };
        assert_eq!(app.purging, None);
        let Some(Message::ActionError(text)) = &app.message else {
            panic!("{:?}", app.message);
        };
        assert!(
            text.starts_with(&format!(
                "The purge did NOT finish (3 expired sessions removed before it stopped){why}"
            )),
            "{text}"
        );
        assert_eq!(
            app.take_job(),
            Some(Job::Count),
            "the counts are read again"
        );
        app.report(&f.store, Report::Counted(crate::app::count(&f.store)));
    }
}

#[test]
fn the_selected_session_stays_selected_across_refreshes() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('j'), ch('j')]);
    assert_eq!(selected_principal(app).as_deref(), Some("bob"));
    // A session that expires sooner than all others goes to the top of the list.
    f.add(Spec {
        name: "erin",
        principal: Some("erin"),
        idle: Some(Duration::from_secs(10)),
        ..Spec::default()
    });
    press(app, &f.store, &[ch('r')]);
    assert_eq!(principals(app)[0], "erin");
    assert_eq!(app.selected, 3);
    assert_eq!(selected_principal(app).as_deref(), Some("bob"));
    // When it is gone, the selection stays where it was.
    f.store
        .invalidate_handle(&handle_of("bob-web"))
        .expect("invalidate");
    press(app, &f.store, &[ch('r')]);
    assert_eq!(app.selected, 3);
    assert_eq!(selected_principal(app), None, "the guest session moved up");
}

#[test]
fn auto_refresh_follows_a_and_r_always_refreshes() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    assert!(app.auto_refresh);
    f.add(Spec {
        name: "erin",
        principal: Some("erin"),
        ..Spec::default()
    });
    app.update(&f.store, Action::AutoRefresh);
    assert_eq!(app.listing.rows().len(), 7);
    press(app, &f.store, &[ch('a')]);
    assert!(!app.auto_refresh);
    f.add(Spec {
        name: "frank",
        principal: Some("frank"),
        ..Spec::default()
    });
    app.update(&f.store, Action::AutoRefresh);
    assert_eq!(app.listing.rows().len(), 7, "auto-refresh is off");
    press(app, &f.store, &[ch('r')]);
    assert_eq!(app.listing.rows().len(), 8);
    press(app, &f.store, &[ch('a')]);
    assert!(app.auto_refresh);
}

#[test]
fn relative_times_follow_the_store_clock_at_each_refresh() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    assert_eq!(
        app.now,
        OffsetDateTime::UNIX_EPOCH + Duration::from_millis(1_700_000_840_000)
    );
    f.advance(5);
    app.update(&f.store, Action::AutoRefresh);
    assert_eq!(
        app.now,
        OffsetDateTime::UNIX_EPOCH + Duration::from_millis(1_700_000_845_000)
    );
    assert_eq!(app.refreshed_at, Some(app.now));
}

#[test]
fn help_opens_over_any_pane_and_any_key_goes_back() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[key(KeyCode::Enter), ch('?')]);
    assert!(matches!(app.mode, Mode::Help { .. }));
    assert!(app.detail().is_some(), "the pane stays under the help");
    press(app, &f.store, &[ch('x')]);
    assert!(matches!(app.mode, Mode::Detail(_)));
    press(app, &f.store, &[ch('?'), ch('q')]);
    assert!(app.quit, "q quits from the help");
}

#[test]
fn ctrl_c_quits_from_every_mode() {
    let f = Fixture::demo();
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    let setups: [&[KeyEvent]; 5] = [
        &[],
        &[key(KeyCode::Enter)],
        &[ch('/'), ch('a')],
        &[ch('d')],
        &[ch('?')],
    ];
    for setup in setups {
        let app = &mut started(&f.store, 100, 30);
        press(app, &f.store, setup);
        assert!(!app.quit, "{setup:?}");
        press(app, &f.store, &[ctrl_c]);
        assert!(app.quit, "Ctrl-C after {setup:?}");
    }
    assert_eq!(
        f.store.stats().expect("stats").live,
        6,
        "nothing was changed"
    );
}

#[test]
fn pages_come_from_the_store_a_hundred_at_a_time() {
    let f = Fixture::many(250);
    let app = &mut started(&f.store, 100, 30);
    assert_eq!(app.listing.rows().len(), PAGE_SIZE);
    assert_eq!(app.listing.page_index(), 0);
    // G lists the last page backward from the end, in one step however far that is.
    press(app, &f.store, &[ch('G')]);
    assert!(!app.busy());
    assert_eq!(app.listing.page_index(), 0, "the page at the end");
    assert_eq!(app.listing.rows().len(), PAGE_SIZE);
    assert_eq!(principals(app)[0], "user0150");
    assert_eq!(selected_principal(app).as_deref(), Some("user0249"));
    press(app, &f.store, &[ch('g')]);
    assert_eq!(app.listing.page_index(), 0);
    assert_eq!(selected_principal(app).as_deref(), Some("user0000"));
    // Walking down past the page loads the next one.
    for _ in 0..PAGE_SIZE {
        press(app, &f.store, &[ch('j')]);
    }
    assert_eq!(app.listing.page_index(), 1);
    assert_eq!(selected_principal(app).as_deref(), Some("user0100"));
    press(app, &f.store, &[ch('k')]);
    assert_eq!(app.listing.page_index(), 0, "and back");
    assert_eq!(selected_principal(app).as_deref(), Some("user0099"));
    let visible = app.table_rows();
    assert!(app.offset + visible > app.selected && app.offset <= app.selected);
    press(app, &f.store, &[key(KeyCode::PageDown)]);
    assert_eq!(app.listing.page_index(), 1);
    assert_eq!(app.selected, visible - 1);
    press(app, &f.store, &[key(KeyCode::PageUp)]);
    assert_eq!(selected_principal(app).as_deref(), Some("user0099"));
}

#[test]
fn a_page_that_is_exactly_full_ends_without_an_empty_page() {
    let f = Fixture::many(PAGE_SIZE);
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('G')]);
    while app.busy() {
        app.update(&f.store, Action::Tick);
    }
    assert_eq!(app.listing.page_index(), 0);
    assert_eq!(selected_principal(app).as_deref(), Some("user0099"));
    press(app, &f.store, &[ch('j')]);
    assert_eq!(app.listing.page_index(), 0);
    assert!(!app.listing.has_next());
}

#[test]
fn a_selective_search_scans_in_bounded_steps() {
    let f = Fixture::many(5_000);
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('/')]);
    type_text(app, &f.store, "user4999");
    assert!(
        app.busy(),
        "the first call stops at the scan budget, before user4999"
    );
    assert!(app.listing.rows().is_empty());
    let mut ticks = 0;
    while app.busy() {
        app.update(&f.store, Action::Tick);
        ticks += 1;
        assert!(ticks < 10, "the scan does not end");
    }
    assert!(
        ticks >= 2,
        "5000 entries need at least three budgets of 2000"
    );
    assert_eq!(principals(app), ["user4999"]);
}

#[test]
fn resizing_keeps_the_selection_on_screen() {
    let f = Fixture::many(50);
    let app = &mut started(&f.store, 100, 40);
    press(app, &f.store, &[ch('G')]);
    assert_eq!(app.selected, 49);
    let tall = app.table_rows();
    app.update(&f.store, Action::Resize(80, 24));
    let short = app.table_rows();
    assert!(short < tall);
    assert!(app.offset <= 49 && 49 < app.offset + short);
    app.update(&f.store, Action::Resize(120, 60));
    assert_eq!(app.offset, 0, "everything fits again");
}

#[test]
fn store_errors_go_to_the_status_line_and_clear_when_it_works_again() {
    let f = Fixture::demo();
    let flaky = Flaky::new(&f.store);
    let app = &mut started(&flaky, 100, 30);
    flaky.failing.store(true, Ordering::SeqCst);
    // The table stays while reads fail, until a new view needs a new listing. A read's error
    // and an action's (the count `D` and `p` ask first) are said alike, and end apart.
    // An action's says first what was not done.
    let disk_gone = "I/O error on /srv/app/sessions.sessdb: disk gone";
    for (k, said) in [
        ('r', Message::ReadError(disk_gone.into())),
        (
            'D',
            Message::ActionError(format!(
                "Could not count the sessions of carol: {disk_gone}"
            )),
        ),
        (
            'p',
            Message::ActionError(format!("Could not count the expired sessions: {disk_gone}")),
        ),
        ('e', Message::ReadError(disk_gone.into())),
    ] {
        press(app, &flaky, &[ch(k)]);
        assert_eq!(app.message, Some(said), "after {k}");
        assert_eq!(app.mode, Mode::Browsing);
        assert!(!app.quit);
    }
    assert!(app.listing.rows().is_empty());
    flaky.failing.store(false, Ordering::SeqCst);
    press(app, &flaky, &[ch('r')]);
    assert_eq!(app.message, None, "a good refresh clears the error");
    assert!(!app.listing.rows().is_empty());
}

/// A purge confirmed while reads fail (an application stopped) is said in the status line
/// before the read's error, and `p` pressed again shows it too: before, the error hid it until
/// the purge ended, and `p` did nothing to see (found by a second reviewer).
#[test]
fn a_purge_under_way_shows_beside_a_reads_error() {
    let f = Fixture::demo();
    let flaky = Flaky::new(&f.store);
    let app = &mut started(&flaky, 160, 30);
    flaky.failing.store(true, Ordering::SeqCst);
    press(app, &flaky, &[ch('r')]);
    assert!(matches!(app.message, Some(Message::ReadError(_))));
    flaky.failing.store(false, Ordering::SeqCst);
    press(app, &flaky, &[ch('p')]);
    app.update(&flaky, Action::Answer(true));
    assert_eq!(app.take_job(), Some(Job::Purge));
    flaky.failing.store(true, Ordering::SeqCst);
    for k in [None, Some('p')] {
        if let Some(k) = k {
            press(app, &flaky, &[ch(k)]);
        }
        assert!(matches!(app.message, Some(Message::ReadError(_))), "{k:?}");
        let line = super::status_line(app);
        assert!(line.starts_with(" Purging "), "after {k:?}: {line}");
        assert!(line.contains(" removed so far · "), "after {k:?}: {line}");
        assert!(line.contains("disk gone"), "after {k:?}: {line}");
    }
}

#[test]
fn a_failed_refresh_keeps_the_time_of_the_last_read_and_marks_the_rows_stale() {
    let f = Fixture::demo();
    let flaky = Flaky::new(&f.store);
    let app = &mut started(&flaky, 100, 30);
    let read_at = app.refreshed_at.expect("read at start");
    assert_eq!(app.stale, None);
    // An application that exited: reads fail, and `now` falls back to another clock.
    flaky.failing.store(true, Ordering::SeqCst);
    f.advance(60);
    app.update(&flaky, Action::AutoRefresh);
    assert_eq!(app.stale, Some(Stale::ReadFailed));
    assert_eq!(app.refreshed_at, Some(read_at), "not refreshed");
    assert_eq!(app.now, read_at, "the rows' times stay those of their read");
    assert_eq!(app.listing.rows().len(), 6, "the last rows stay on screen");
    press(app, &flaky, &[ch('r')]);
    assert_eq!(app.refreshed_at, Some(read_at));
    flaky.failing.store(false, Ordering::SeqCst);
    press(app, &flaky, &[ch('r')]);
    assert_eq!(app.stale, None);
    assert_eq!(app.refreshed_at, Some(read_at + Duration::from_secs(60)));
}

#[test]
fn a_failed_page_marks_the_rows_stale_until_a_page_is_read() {
    let f = Fixture::many(250);
    let flaky = Flaky::new(&f.store);
    let app = &mut started(&flaky, 100, 30);
    let mut read_at = app.refreshed_at.expect("read at start");
    // Each key reads another page: G the last, g the first, j past the first page's last row,
    // k above the second page's first.
    let to_last_row = vec![ch('j'); PAGE_SIZE - 1];
    for (setup, k, first) in [
        (&[][..], 'G', "user0150"),
        (&[][..], 'g', "user0000"),
        (&to_last_row[..], 'j', "user0100"),
        (&[][..], 'k', "user0000"),
    ] {
        press(app, &flaky, setup);
        assert_eq!(app.stale, None, "{k}");
        let before = principals(app);
        // The application exits, a minute later.
        flaky.failing.store(true, Ordering::SeqCst);
        f.advance(60);
        press(app, &flaky, &[ch(k)]);
        assert_eq!(app.stale, Some(Stale::ReadFailed), "{k}");
        assert_eq!(app.refreshed_at, Some(read_at), "{k}: nothing was read");
        assert_eq!(principals(app), before, "{k}: the last rows stay");
        assert!(
            matches!(app.message, Some(Message::ReadError(_))),
            "{k}: {:?}",
            app.message
        );
        // Back: the page that comes is current, and read at the store's time.
        flaky.failing.store(false, Ordering::SeqCst);
        press(app, &flaky, &[ch(k)]);
        read_at += Duration::from_secs(60);
        assert_eq!(app.stale, None, "{k}");
        assert_eq!(app.refreshed_at, Some(read_at), "{k}");
        assert_eq!(
            app.now, read_at,
            "{k}: the rows' times are those of their read"
        );
        assert_eq!(app.message, None, "{k}: the read error is over");
        assert_eq!(principals(app)[0], first, "{k}");
    }
}

#[test]
fn a_failed_scan_marks_the_rows_stale_and_waits_for_the_next_refresh() {
    let f = Fixture::many(5_000);
    let flaky = Flaky::new(&f.store);
    let app = &mut started(&flaky, 100, 30);
    press(app, &flaky, &[ch('/')]);
    type_text(app, &flaky, "user0001");
    press(app, &flaky, &[key(KeyCode::Enter)]);
    assert!(app.busy(), "the search goes on scanning");
    flaky.failing.store(true, Ordering::SeqCst);
    app.update(&flaky, Action::Tick);
    assert_eq!(app.stale, Some(Stale::ReadFailed));
    assert_eq!(principals(app), ["user0001"], "what was found stays");
    // The event loop ticks at once while busy: a scan that fails would be retried in a loop.
    assert!(!app.busy(), "the failed scan waits for a refresh");
    let lists = flaky.lists.load(Ordering::SeqCst);
    app.update(&flaky, Action::Tick);
    assert_eq!(
        flaky.lists.load(Ordering::SeqCst),
        lists,
        "a tick reads nothing"
    );
    flaky.failing.store(false, Ordering::SeqCst);
    press(app, &flaky, &[ch('r')]);
    assert_eq!(app.stale, None);
    assert!(app.busy(), "the refreshed page scans again");
    let mut ticks = 0;
    while app.busy() {
        app.update(&flaky, Action::Tick);
        ticks += 1;
        assert!(ticks < 10, "the scan does not end");
    }
    assert_eq!(principals(app), ["user0001"]);
    assert_eq!(app.stale, None);
}

#[test]
fn a_page_read_after_the_folder_was_deleted_keeps_it_said() {
    let f = Fixture::many(150);
    let folder = f.store.path().to_path_buf();
    let options = crate::Options {
        folder: Some(folder.clone()),
        ..crate::Options::default()
    };
    let app = &mut started_with(&f.store, 100, 30, &options);
    press(app, &f.store, &[key(KeyCode::Enter)]);
    std::fs::remove_dir_all(&folder).expect("delete the folder");
    press(app, &f.store, &[ch('r')]);
    assert_eq!(app.stale, Some(Stale::FolderGone));
    assert!(
        app.detail().expect("the pane is open").stale,
        "so is the pane"
    );
    press(app, &f.store, &[key(KeyCode::Enter)]);
    // The store reads its deleted files without an error: the page comes, and is no less stale.
    press(app, &f.store, &[ch('G')]);
    assert_eq!(selected_principal(app).as_deref(), Some("user0149"));
    assert_eq!(app.stale, Some(Stale::FolderGone));
    assert!(matches!(app.message, Some(Message::ReadError(_))));
}

#[test]
fn a_deleted_database_folder_is_said_and_never_written_into() {
    let f = Fixture::demo();
    let folder = f.store.path().to_path_buf();
    let options = crate::Options {
        folder: Some(folder.clone()),
        ..crate::Options::default()
    };
    let app = &mut started_with(&f.store, 100, 30, &options);
    assert_eq!(app.stale, None);
    let first = app.selected_session().expect("a row").handle;
    // Asked before the folder went, answered after: the key says what it did not do, and why
    // (a user saw only the folder's message, and could not tell that nothing was invalidated).
    press(app, &f.store, &[ch('d')]);
    std::fs::remove_dir_all(&folder).expect("delete the folder");
    press(app, &f.store, &[ch('y')]);
    let gone = format!(
        "the database folder {} was deleted or replaced; quit and reopen",
        folder.display()
    );
    assert_eq!(
        app.message,
        Some(Message::ActionError(format!(
            "Session {} NOT invalidated: {gone}",
            first.short()
        )))
    );
    assert_eq!(app.stale, Some(Stale::FolderGone));
    // Asked after it went: refused at once, no question asked.
    for (key, not_done) in [
        ('d', "No session invalidated"),
        ('D', "No session invalidated"),
        ('p', "Nothing purged"),
    ] {
        press(app, &f.store, &[ch(key)]);
        assert!(!matches!(app.mode, Mode::Confirm { .. }), "{key}");
        assert_eq!(
            app.message,
            Some(Message::ActionError(format!("{not_done}: {gone}"))),
            "{key}"
        );
    }
    // The next key ends the key's error; the folder's stays.
    press(app, &f.store, &[ch('j')]);
    let Some(Message::ReadError(text)) = &app.message else {
        panic!("{:?}", app.message);
    };
    assert!(
        text.starts_with(&format!(
            "The database folder {} was deleted or replaced",
            folder.display()
        )),
        "{text}"
    );
    assert!(
        f.store
            .show(&Target::Handle(first))
            .expect("show")
            .is_some(),
        "nothing was invalidated"
    );
    // A refresh does not make it look current again; nor does a folder made anew there.
    std::fs::create_dir(&folder).expect("a new folder");
    press(app, &f.store, &[ch('r'), ch('e')]);
    assert_eq!(app.stale, Some(Stale::FolderGone));
    assert!(matches!(app.message, Some(Message::ReadError(_))));
}

#[test]
fn a_read_only_store_refuses_invalidation_in_the_status_line() {
    let f = Fixture::demo().read_only();
    let store = f.store.clone();
    let app = &mut started(&store, 100, 30);
    press(app, &store, &[ch('d'), ch('y')]);
    assert!(
        matches!(&app.message, Some(Message::ActionError(_))),
        "{:?}",
        app.message
    );
    assert_eq!(store.stats().expect("stats").live, 6);
}

/// The options sessctl gives the TUI as of a time later than now, and the reason they carry.
fn as_of_later_than_now() -> (&'static str, crate::Options) {
    let reason = "Read-only: --as-of is later than now";
    let options = crate::Options {
        read_only: Some(reason.into()),
        ..crate::Options::default()
    };
    (reason, options)
}

#[test]
fn read_only_options_refuse_every_write_key_with_their_reason() {
    let f = Fixture::demo();
    let (reason, options) = as_of_later_than_now();
    let app = &mut started_with(&f.store, 100, 30, &options);
    f.clock.advance(Duration::from_secs(365 * 86_400));
    let before = f.store.stats().expect("stats");
    assert!(before.expired > 0, "something a purge could remove");
    for k in ['d', 'D', 'p'] {
        press(app, &f.store, &[ch(k), ch('y')]);
        assert_eq!(app.mode, Mode::Browsing, "{k}: nothing asked");
        assert_eq!(
            app.message,
            Some(Message::ActionError(reason.into())),
            "{k}"
        );
    }
    assert_eq!(f.store.stats().expect("stats"), before);
}

/// `n` auto-refreshes as the event loop makes them, 2 s apart on the app's `clock`, each with
/// the count it asks for.
fn auto_refreshes(app: &mut crate::app::App, admin: &dyn Admin, clock: &Clock, n: usize) {
    for _ in 0..n {
        clock.advance(Duration::from_secs(2));
        app.update(admin, Action::AutoRefresh);
        work_now(app, admin);
    }
}

#[test]
fn an_actions_error_stays_through_auto_refreshes_until_the_next_key() {
    // Every read works and every write is refused.
    let f = Fixture::demo().read_only();
    let store = f.store.clone();
    let clock = Clock::manual();
    let app = &mut started_on(&store, 100, 30, &clock);
    for keys in [[ch('d'), ch('y')], [ch('D'), ch('y')], [ch('p'), ch('y')]] {
        press(app, &store, &keys);
        let refused = app.message.clone();
        assert!(
            matches!(&refused, Some(Message::ActionError(m)) if m.contains("read-only")),
            "{keys:?}: {refused:?}"
        );
        auto_refreshes(app, &store, &clock, 5);
        assert_eq!(app.stale, None, "{keys:?}: the rows were read");
        assert_eq!(
            app.message, refused,
            "{keys:?}: 10 s of auto-refreshes later"
        );
        press(app, &store, &[ch('j')]);
        assert_eq!(app.message, None, "{keys:?}: the next key ends it");
    }
    assert_eq!(store.stats().expect("stats").live, 6);
}

#[test]
fn a_refused_write_key_stays_said_through_auto_refreshes() {
    let f = Fixture::demo();
    let (reason, options) = as_of_later_than_now();
    let clock = Clock::manual();
    let app = &mut started_on_with(&f.store, 100, 30, &clock, &options);
    press(app, &f.store, &[ch('p')]);
    auto_refreshes(app, &f.store, &clock, 5);
    assert_eq!(app.message, Some(Message::ActionError(reason.into())));
    press(app, &f.store, &[key(KeyCode::Down)]);
    assert_eq!(app.message, None);
}

#[test]
fn a_read_that_fails_after_an_actions_error_does_not_take_its_place() {
    let (f, flaky, clock) = flaky_demo();
    let app = &mut started_on(&flaky, 100, 30, &clock);
    let disk_gone = "I/O error on /srv/app/sessions.sessdb: disk gone".to_string();
    // The application exits under `d y`, and the auto-refresh after it fails too.
    flaky.failing.store(true, Ordering::SeqCst);
    let selected = app.selected_session().expect("a session").handle.short();
    press(app, &flaky, &[ch('d'), ch('y')]);
    // Said as what was not done: a read's error reads alike.
    let refused = Some(Message::ActionError(format!(
        "Session {selected} NOT invalidated: {disk_gone}"
    )));
    assert_eq!(app.message, refused);
    auto_refreshes(app, &flaky, &clock, 1);
    assert_eq!(app.stale, Some(Stale::ReadFailed));
    assert_eq!(app.message, refused, "the read's error waits behind it");
    // It comes back: everything on screen is read again, and the action's error stays.
    flaky.failing.store(false, Ordering::SeqCst);
    auto_refreshes(app, &flaky, &clock, 2);
    assert_eq!(app.stale, None);
    assert_eq!(app.message, refused, "until the next key");
    press(app, &flaky, &[ch('j')]);
    assert_eq!(app.message, None, "and the read's error is over");
    // While reads still fail at that key, their error is said after it, until they work.
    flaky.failing.store(true, Ordering::SeqCst);
    press(app, &flaky, &[ch('d'), ch('y')]);
    auto_refreshes(app, &flaky, &clock, 1);
    press(app, &flaky, &[ch('k')]);
    assert_eq!(app.message, Some(Message::ReadError(disk_gone)));
    flaky.failing.store(false, Ordering::SeqCst);
    auto_refreshes(app, &flaky, &clock, 1);
    assert_eq!(app.message, None);
    assert_eq!(
        f.store.stats().expect("stats").live,
        6,
        "nothing was invalidated"
    );
}

#[test]
fn a_failed_counts_error_stays_until_the_counts_are_read_again() {
    let (_f, flaky, clock) = flaky_demo();
    let app = &mut started_on(&flaky, 100, 30, &clock);
    flaky.stats_failing.store(true, Ordering::SeqCst);
    auto_refreshes(app, &flaky, &clock, 1);
    assert!(app.count_failed);
    let failed = app.message.clone();
    assert!(
        matches!(&failed, Some(Message::ReadError(m)) if m.ends_with("count cut short")),
        "{failed:?}"
    );
    // The next auto-refresh reads the rows; its count comes later, from the worker. Until it
    // does, the header's counts are marked stale, and the error that made them so stays.
    flaky.stats_failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(2));
    app.update(&flaky, Action::AutoRefresh);
    assert_eq!(app.stale, None, "the rows were read");
    assert!(app.count_failed);
    assert_eq!(app.message, failed);
    work_now(app, &flaky);
    assert!(!app.count_failed);
    assert_eq!(app.message, None, "everything on screen was read again");
}

#[test]
fn a_reads_error_ends_with_the_auto_refresh_that_reads_again_not_with_a_key() {
    let (_f, flaky, clock) = flaky_demo();
    let app = &mut started_on(&flaky, 100, 30, &clock);
    flaky.failing.store(true, Ordering::SeqCst);
    auto_refreshes(app, &flaky, &clock, 1);
    let failed = app.message.clone();
    assert!(matches!(failed, Some(Message::ReadError(_))), "{failed:?}");
    // A key that reads nothing does not make the rows current.
    press(app, &flaky, &[ch('j')]);
    auto_refreshes(app, &flaky, &clock, 2);
    assert_eq!(app.message, failed, "the rows are still stale");
    flaky.failing.store(false, Ordering::SeqCst);
    auto_refreshes(app, &flaky, &clock, 1);
    assert_eq!(app.stale, None);
    assert_eq!(app.message, None, "everything on screen was read again");
}

#[test]
fn capital_g_and_g_cost_one_page_and_paging_up_from_the_end_goes_on_backward() {
    let f = Fixture::many(1_200);
    let admin = Flaky::new(&f.store);
    let app = &mut started(&admin, 100, 30);
    let lists = |admin: &Flaky| admin.lists.load(Ordering::SeqCst);
    let before = lists(&admin);
    press(app, &admin, &[ch('G')]);
    assert_eq!(lists(&admin) - before, 1, "one page, not twelve");
    assert!(!app.busy());
    assert_eq!(selected_principal(app).as_deref(), Some("user1199"));
    assert_eq!(principals(app)[0], "user1100");
    // Up past the top of the last page: the page before it, listed on backward.
    for _ in 0..PAGE_SIZE {
        press(app, &admin, &[ch('k')]);
    }
    assert_eq!(selected_principal(app).as_deref(), Some("user1099"));
    assert_eq!(app.listing.page_index(), 1, "one page from the end");
    press(app, &admin, &[key(KeyCode::PageUp)]);
    let visible = app.table_rows();
    assert_eq!(
        selected_principal(app),
        Some(format!("user{:04}", 1099 - visible))
    );
    // And down again, back to the page at the end.
    for _ in 0..=visible {
        press(app, &admin, &[ch('j')]);
    }
    assert_eq!(selected_principal(app).as_deref(), Some("user1100"));
    assert_eq!(app.listing.page_index(), 0);
    press(app, &admin, &[ch('j')]);
    assert_eq!(selected_principal(app).as_deref(), Some("user1101"));
    // g is one page too, and G from there one more.
    let before = lists(&admin);
    press(app, &admin, &[ch('g')]);
    assert_eq!(selected_principal(app).as_deref(), Some("user0000"));
    press(app, &admin, &[ch('G')]);
    assert_eq!(selected_principal(app).as_deref(), Some("user1199"));
    assert_eq!(lists(&admin) - before, 2);
    // A refresh at the end stays at the end.
    press(app, &admin, &[ch('r')]);
    assert_eq!(selected_principal(app).as_deref(), Some("user1199"));
    assert_eq!(principals(app)[0], "user1100");
}

#[test]
fn capital_g_with_a_selective_search_scans_backward_in_bounded_steps() {
    let f = Fixture::many(5_000);
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('/')]);
    type_text(app, &f.store, "user0001");
    press(app, &f.store, &[key(KeyCode::Enter)]);
    // The forward scan has found user0001 at the start and is still looking further.
    assert_eq!(principals(app), ["user0001"]);
    assert!(app.busy());
    press(app, &f.store, &[ch('G')]);
    assert!(app.busy(), "from the end, the first budget finds nothing");
    assert!(app.listing.rows().is_empty());
    let mut ticks = 0;
    while app.busy() {
        app.update(&f.store, Action::Tick);
        ticks += 1;
        assert!(ticks < 10, "the scan does not end");
    }
    assert!(ticks >= 2, "5000 entries need three budgets of 2000");
    assert_eq!(principals(app), ["user0001"]);
    assert_eq!(selected_principal(app).as_deref(), Some("user0001"));
}

/// The demo fixture through an admin interface whose reads can be made to fail, and a manual
/// clock for the app.
fn flaky_demo() -> (Fixture, Flaky, Clock) {
    let f = Fixture::demo();
    let flaky = Flaky::new(&f.store);
    (f, flaky, Clock::manual())
}

/// `Fixture::many(5_000)` through an admin interface each of whose `list` calls takes a second
/// on the app's clock, and the app on that clock.
fn slow_lists() -> (Fixture, Flaky, Clock) {
    let f = Fixture::many(5_000);
    let clock = Clock::manual();
    let admin = Flaky::new(&f.store).costing(&clock, Duration::from_secs(1));
    (f, admin, clock)
}

/// Types `/text` and Enter.
fn search(app: &mut crate::app::App, admin: &Flaky, text: &str) {
    press(app, admin, &[ch('/')]);
    type_text(app, admin, text);
    press(app, admin, &[key(KeyCode::Enter)]);
}

/// Ticks until the search scan ends; how many ticks it took.
/// Searches for what no session matches and scans to the end (three budgets of a slow
/// listing); an auto-refresh 2 s later waits. Returns the listing calls made so far.
fn a_long_search_scanned(app: &mut crate::app::App, admin: &Flaky, clock: &Clock) -> usize {
    search(app, admin, "zzq");
    scan_to_end(app, admin);
    let before = list_calls(admin);
    clock.advance(Duration::from_secs(2));
    app.update(admin, Action::AutoRefresh);
    assert_eq!(
        list_calls(admin),
        before,
        "an auto-refresh after a long scan waits"
    );
    before
}

fn scan_to_end(app: &mut crate::app::App, admin: &Flaky) -> usize {
    let mut ticks = 0;
    while app.busy() {
        app.update(admin, Action::Tick);
        ticks += 1;
        assert!(ticks < 10, "the scan does not end");
    }
    ticks
}

fn list_calls(admin: &Flaky) -> usize {
    admin.lists.load(Ordering::SeqCst)
}

fn show_calls(admin: &Flaky) -> usize {
    admin.shows.load(Ordering::SeqCst)
}

#[test]
fn an_auto_refresh_leaves_a_running_search_scan_to_its_ticks() {
    let (_f, admin, clock) = slow_lists();
    let app = &mut started_on(&admin, 100, 30, &clock);
    search(app, &admin, "zzq");
    assert!(app.busy(), "the first budget of 2000 entries found nothing");
    let before = list_calls(&admin);
    for _ in 0..3 {
        clock.advance(Duration::from_secs(2));
        app.update(&admin, Action::AutoRefresh);
        assert!(app.busy());
    }
    assert_eq!(list_calls(&admin), before, "the scan is not started over");
    assert_eq!(
        scan_to_end(app, &admin),
        2,
        "5000 entries are three budgets of 2000, the first one read before the refreshes"
    );
    assert!(app.listing.rows().is_empty());
}

#[test]
fn after_a_long_search_scan_auto_refresh_waits_ten_times_its_cost() {
    let (f, admin, clock) = slow_lists();
    let app = &mut started_on(&admin, 100, 30, &clock);
    search(app, &admin, "zzq");
    scan_to_end(app, &admin);
    // Three calls of a second each: the scan cost 3 s, so the next comes 30 s after it ended.
    let read_at = app.refreshed_at;
    let before = list_calls(&admin);
    for _ in 0..14 {
        clock.advance(Duration::from_secs(2));
        f.advance(2);
        app.update(&admin, Action::AutoRefresh);
    }
    clock.advance(Duration::from_millis(1_999));
    app.update(&admin, Action::AutoRefresh);
    assert_eq!(list_calls(&admin), before, "nothing read for 29.999 s");
    assert!(!app.busy());
    assert_eq!(
        app.refreshed_at, read_at,
        "the header keeps the time the table was read"
    );
    clock.advance(Duration::from_millis(1));
    app.update(&admin, Action::AutoRefresh);
    assert_eq!(
        list_calls(&admin) - before,
        1,
        "at 30 s the scan starts over"
    );
    assert!(app.busy());
    assert_ne!(app.refreshed_at, read_at);
}

#[test]
fn r_reads_a_long_search_at_once_and_starts_a_running_scan_over() {
    let (_f, admin, clock) = slow_lists();
    let app = &mut started_on(&admin, 100, 30, &clock);
    let before = a_long_search_scanned(app, &admin, &clock);
    press(app, &admin, &[ch('r')]);
    assert_eq!(list_calls(&admin) - before, 1, "r reads at once");
    assert!(app.busy());
    press(app, &admin, &[ch('r')]);
    assert_eq!(
        list_calls(&admin) - before,
        2,
        "r starts a running scan over"
    );
    assert_eq!(scan_to_end(app, &admin), 2, "from the start: three budgets");
    clock.advance(Duration::from_secs(2));
    app.update(&admin, Action::AutoRefresh);
    assert_eq!(
        list_calls(&admin) - before,
        4,
        "after the scan r started, an auto-refresh waits again"
    );
}

#[test]
fn pages_that_fill_in_one_call_refresh_every_time_however_slow() {
    let (_f, admin, clock) = slow_lists();
    let app = &mut started_on(&admin, 100, 30, &clock);
    a_long_search_scanned(app, &admin, &clock);
    // The wait belongs to the scan's page: without a filter, each auto-refresh reads the page,
    // though each read takes a second.
    press(app, &admin, &[key(KeyCode::Esc)]);
    assert_eq!(app.listing.rows().len(), PAGE_SIZE);
    let before = list_calls(&admin);
    for n in 1..=3 {
        clock.advance(Duration::from_secs(2));
        app.update(&admin, Action::AutoRefresh);
        assert_eq!(list_calls(&admin) - before, n);
    }
    // So does a search whose page fills in its first call.
    search(app, &admin, "user");
    assert!(!app.busy());
    assert_eq!(app.listing.rows().len(), PAGE_SIZE);
    let before = list_calls(&admin);
    for n in 1..=3 {
        clock.advance(Duration::from_secs(2));
        app.update(&admin, Action::AutoRefresh);
        assert_eq!(list_calls(&admin) - before, n);
    }
}

#[test]
fn a_search_scan_that_fails_partway_waits_ten_times_what_its_calls_that_worked_took() {
    let (_f, admin, clock) = slow_lists();
    let app = &mut started_on(&admin, 100, 30, &clock);
    search(app, &admin, "zzq");
    app.update(&admin, Action::Tick);
    assert!(
        app.busy(),
        "two budgets of 2000 entries scanned, a second each"
    );
    // The store fails: the third call fails (after its second). The scan took 2 s of the
    // store's time up to the call that failed, and that is what the auto-refresh waits on,
    // not 3 s. (An application that stops answering pauses the auto-refresh instead: see
    // `a_read_the_application_does_not_answer_pauses_the_auto_refresh_until_r`.)
    admin.failing.store(true, Ordering::SeqCst);
    app.update(&admin, Action::Tick);
    assert_eq!(app.stale, Some(Stale::ReadFailed));
    let before = list_calls(&admin);
    for _ in 0..9 {
        clock.advance(Duration::from_secs(2));
        app.update(&admin, Action::AutoRefresh);
    }
    clock.advance(Duration::from_millis(1_999));
    app.update(&admin, Action::AutoRefresh);
    assert_eq!(
        list_calls(&admin),
        before,
        "a failing store is not scanned again for 19.999 s"
    );
    clock.advance(Duration::from_millis(1));
    app.update(&admin, Action::AutoRefresh);
    assert_eq!(
        list_calls(&admin) - before,
        1,
        "at 20 s the scan starts over"
    );
    assert_eq!(app.stale, Some(Stale::ReadFailed), "and fails again");
    // The store is back: the next auto-refresh scans the whole page again, a failed read of
    // its start having cost the scan nothing.
    admin.failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(2));
    app.update(&admin, Action::AutoRefresh);
    assert_eq!(app.stale, None);
    assert_eq!(scan_to_end(app, &admin), 2, "three budgets of 2000");
    assert!(app.listing.rows().is_empty());
}

/// An application that stopped answering: every call to it blocks the keys for the client's
/// timeout (20 s through the admin socket). The read that finds it so is the last the TUI
/// makes on its own: the open session's read is not tried after it, and the auto-refresh
/// reads nothing until `r`, which tries again (and, once the application is back, resumes it).
#[test]
fn a_read_the_application_does_not_answer_pauses_the_auto_refresh_until_r() {
    let (_f, admin, clock) = flaky_demo();
    let app = &mut started_on(&admin, 100, 30, &clock);
    press(app, &admin, &[key(KeyCode::Enter)]);
    assert!(app.detail().is_some());
    admin.hung.store(true, Ordering::SeqCst);
    let (lists, shows) = (list_calls(&admin), show_calls(&admin));
    clock.advance(Duration::from_secs(2));
    app.update(&admin, Action::AutoRefresh);
    assert_eq!(
        (list_calls(&admin) - lists, show_calls(&admin) - shows),
        (1, 0),
        "one call waited; the pane's read is not tried after it"
    );
    assert!(app.unanswered);
    assert_eq!(app.stale, Some(Stale::ReadFailed));
    assert!(app.detail().is_some_and(|d| d.stale));
    let Some(Message::ReadError(text)) = &app.message else {
        panic!("{:?}", app.message);
    };
    assert!(
        text.starts_with("Auto-refresh paused, r tries again: the application"),
        "{text}"
    );
    // The reason first, where an 80-column status line keeps it; the socket's path last.
    assert!(
        text.starts_with(
            "Auto-refresh paused, r tries again: the application did not answer within 20s: is \
             it stopped or hung? (its admin socket /srv/app/admin.sock)"
        ),
        "{text}"
    );
    auto_refreshes(app, &admin, &clock, 30);
    assert_eq!(
        (list_calls(&admin) - lists, show_calls(&admin) - shows),
        (1, 0),
        "a minute of auto-refreshes called nothing"
    );
    // `a` twice leaves it paused, and says so (it said only "on").
    press(app, &admin, &[ch('a'), ch('a')]);
    assert_eq!(
        app.message,
        Some(Message::Info(
            "Auto-refresh on, every 2s, paused until the application answers (r tries again)"
                .into()
        ))
    );
    assert!(app.unanswered);
    // `r` tries again, and while it still does not answer, pauses again.
    press(app, &admin, &[ch('r')]);
    assert_eq!(list_calls(&admin) - lists, 2);
    assert!(app.unanswered);
    // Back: `r` reads the rows and the pane, and the auto-refresh goes on.
    admin.hung.store(false, Ordering::SeqCst);
    press(app, &admin, &[ch('r')]);
    assert!(!app.unanswered);
    assert_eq!(app.stale, None);
    assert!(app.detail().is_some_and(|d| !d.stale));
    assert_eq!(app.message, None);
    let lists = list_calls(&admin);
    auto_refreshes(app, &admin, &clock, 1);
    assert_eq!(list_calls(&admin) - lists, 1);
    // Any read that comes, not only `r`'s, ends the pause: here the page read of `e`.
    press(app, &admin, &[key(KeyCode::Esc)]);
    admin.hung.store(true, Ordering::SeqCst);
    auto_refreshes(app, &admin, &clock, 1);
    assert!(app.unanswered);
    admin.hung.store(false, Ordering::SeqCst);
    press(app, &admin, &[ch('e')]);
    assert!(!app.unanswered, "the rows came");
    let lists = list_calls(&admin);
    auto_refreshes(app, &admin, &clock, 2);
    assert_eq!(list_calls(&admin) - lists, 2);
}

/// What the worker hands back for a count through the admin socket of an application that
/// stopped: `Error::Unresponsive`, once the client has waited [`HUNG`] on `clock`.
fn hung_count(admin: &dyn Admin, clock: &Clock) -> Counted {
    clock.advance(HUNG);
    let failed = Err(sessdb::Error::Unresponsive {
        path: "/srv/app/admin.sock".into(),
        waited: HUNG,
        sent: true,
    });
    Counted::new(failed, admin.now(), HUNG)
}

#[test]
fn a_count_that_failed_waits_no_longer_than_the_last_that_worked() {
    let f = Fixture::demo();
    let clock = Clock::manual();
    let app = &mut started_on(&f.store, 100, 30, &clock);
    // A small store's count is quick: after one that hung for 20 s, the next auto-refresh
    // counts again.
    clock.advance(Duration::from_secs(2));
    app.update(&f.store, Action::AutoRefresh);
    assert_eq!(app.take_job(), Some(Job::Count));
    app.report(&f.store, Report::Counted(hung_count(&f.store, &clock)));
    assert!(app.count_failed);
    auto_refreshes(app, &f.store, &clock, 1);
    assert!(!app.stats_skipped, "counted at once, not 600 s later");
    assert!(!app.count_failed);
    // A large store's count takes a second: the next comes 30 s after it, and after one that
    // hung, 30 s after that one failed, not 600 s.
    app.update(&f.store, Action::Refresh);
    assert_eq!(app.take_job(), Some(Job::Count));
    app.report(
        &f.store,
        Report::Counted(Counted::new(
            f.store.stats(),
            f.store.now(),
            Duration::from_secs(1),
        )),
    );
    clock.advance(Duration::from_secs(30));
    app.update(&f.store, Action::AutoRefresh);
    assert!(!app.stats_skipped);
    assert_eq!(app.take_job(), Some(Job::Count));
    app.report(&f.store, Report::Counted(hung_count(&f.store, &clock)));
    assert!(app.count_failed);
    for _ in 0..14 {
        clock.advance(Duration::from_secs(2));
        app.update(&f.store, Action::AutoRefresh);
        assert!(app.stats_skipped);
    }
    clock.advance(Duration::from_millis(1_999));
    app.update(&f.store, Action::AutoRefresh);
    assert!(app.stats_skipped, "29.999 s after the failure");
    clock.advance(Duration::from_millis(1));
    app.update(&f.store, Action::AutoRefresh);
    assert!(!app.stats_skipped, "30 s after it");
    work_now(app, &f.store);
    assert!(!app.count_failed);
}

/// On a terminal too small to show a row, `d` and `D` ask nothing: the operator cannot see
/// the session they would act on. Taller, they ask.
#[test]
fn d_asks_nothing_about_a_row_not_on_screen() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 20, 5);
    assert_eq!(app.table_rows(), 0);
    for k in ['d', 'D'] {
        press(app, &f.store, &[ch(k)]);
        assert_eq!(app.mode, Mode::Browsing, "{k}");
        assert_eq!(
            app.message,
            Some(Message::Info(
                "No session is on screen: make the terminal taller".into()
            ))
        );
    }
    app.update(&f.store, Action::Resize(80, 24));
    press(app, &f.store, &[ch('d')]);
    assert!(matches!(app.mode, Mode::Confirm { .. }));
}
