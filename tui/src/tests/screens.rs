//! Layer 3: whole screens on a `TestBackend`, as insta snapshots. Handles, timestamps and the
//! size on disk are redacted; relative times stay, since the `ManualClock` fixes them.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use sessdb::{Admin, SessionId, Target};

use super::{ch, key, press, row, started, type_text, Fixture, Flaky};
use crate::app::{Action, App};
use crate::term::{event_loop, Events, Worker};
use crate::Options;

fn redacted() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    // Same widths as what they hide, so the screen keeps its shape.
    settings.add_filter(r"\b[0-9a-f]{32}\b", "[---------full handle----------]");
    settings.add_filter(r"\b[0-9a-f]{8}\b", "[handle]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "YYYY-MM-DDThh:mm:ssZ");
    settings.add_filter(r"\d\d:\d\d:\d\d UTC", "hh:mm:ss UTC");
    // The size on disk varies from run to run, and with it the padding after it, and a
    // narrow screen cuts it anywhere (`1.6 K`): everything after it to the line's end.
    settings.add_filter(r#"on disk [0-9][^"]*"#, "on disk [size]");
    settings
}

fn screen(app: &App) -> Terminal<TestBackend> {
    let mut terminal =
        Terminal::new(TestBackend::new(app.area.width, app.area.height)).expect("test terminal");
    terminal
        .draw(|frame| crate::ui::render(app, frame))
        .expect("draw");
    terminal
}

/// The rows of `app`'s screen as drawn, as text.
fn screen_rows(app: &App) -> Vec<String> {
    let terminal = screen(app);
    (0..app.area.height).map(|y| row(&terminal, y)).collect()
}

macro_rules! assert_screen {
    ($name:literal, $app:expr) => {
        let terminal = screen($app);
        redacted().bind(|| insta::assert_snapshot!($name, terminal.backend()));
    };
}

#[test]
fn browsing_100x30() {
    let f = Fixture::demo();
    let app = started(&f.store, 100, 30);
    assert_screen!("browsing_100x30", &app);
}

#[test]
fn browsing_80x24() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('j'), ch('j')]);
    assert_screen!("browsing_80x24", app);
}

#[test]
fn narrow_terminals_keep_the_handle_and_principal() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 40, 10);
    assert_screen!("browsing_40x10", app);
    app.update(&f.store, Action::Resize(50, 12));
    assert_screen!("browsing_50x12", app);
}

#[test]
fn empty_database() {
    let f = Fixture::empty();
    let app = started(&f.store, 80, 24);
    assert_screen!("empty_database_80x24", &app);
}

#[test]
fn detail_pane() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('j'), key(KeyCode::Enter)]);
    assert_screen!("detail_pane_80x24", app);
    press(app, &f.store, &[key(KeyCode::PageDown)]);
    assert_screen!("detail_pane_scrolled_80x24", app);
}

#[test]
fn confirm_invalidate() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('j'), ch('d')]);
    assert_screen!("confirm_invalidate_80x24", app);
}

#[test]
fn confirm_invalidate_principal() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('j'), ch('D')]);
    assert_screen!("confirm_invalidate_principal_80x24", app);
}

#[test]
fn confirm_purge_with_expired_shown() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 100, 30);
    press(app, &f.store, &[ch('e'), ch('p')]);
    assert_screen!("confirm_purge_100x30", app);
}

#[test]
fn help_overlay() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('?')]);
    assert_screen!("help_80x24", app);
}

#[test]
fn filter_prompt_and_sort_note() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('/')]);
    type_text(app, &f.store, "p:alice");
    assert_screen!("filter_typing_80x24", app);
    press(app, &f.store, &[key(KeyCode::Enter), ch('s')]);
    assert_screen!("filtered_sorted_by_last_access_80x24", app);
}

#[test]
fn a_store_error_in_the_status_line() {
    let f = Fixture::demo().read_only();
    let store = f.store.clone();
    let app = &mut started(&store, 80, 24);
    press(app, &store, &[ch('d'), ch('y')]);
    assert_screen!("read_only_error_80x24", app);
}

#[test]
fn a_later_page_of_a_large_store() {
    let f = Fixture::many(250);
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('G')]);
    while app.busy() {
        app.update(&f.store, Action::Tick);
    }
    press(app, &f.store, &[ch('k'), ch('k')]);
    assert_screen!("last_page_80x24", app);
}

#[test]
fn the_screen_follows_a_resize_and_survives_tiny_terminals() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[key(KeyCode::Enter)]);
    app.update(&f.store, Action::Resize(120, 36));
    assert_screen!("detail_resized_to_120x36", app);
    for (width, height) in [(40, 12), (20, 6), (1, 1), (0, 0)] {
        app.update(&f.store, Action::Resize(width, height));
        for keys in [
            &[][..],
            &[ch('?')],
            &[ch('x'), ch('d')],
            &[ch('n'), ch('k')],
        ] {
            press(app, &f.store, keys);
            let terminal = screen(app);
            let area = terminal.backend().buffer().area;
            assert_eq!((area.width, area.height), (width, height));
        }
    }
}

/// Key presses, then the terminal's timeouts, as a script.
struct Script(VecDeque<Option<Event>>);

impl Events for Script {
    fn next(&mut self, _timeout: Duration) -> io::Result<Option<Event>> {
        self.0.pop_front().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the script ended before a quit",
            )
        })
    }
}

/// The real event loop with its counting thread, as `run` starts it. With `settle: None`
/// each frame waits for a count that has started, so what the frames show does not depend
/// on how fast the thread is.
fn run_loop(
    terminal: &mut Terminal<TestBackend>,
    app: &mut App,
    admin: &dyn Admin,
    events: &mut dyn Events,
    settle: Option<Duration>,
) -> io::Result<()> {
    std::thread::scope(|scope| {
        let counter = Worker::spawn(scope, admin)?;
        event_loop(terminal, app, admin, events, &counter, settle)
    })
}

fn keys(text: &str) -> impl Iterator<Item = Option<Event>> + '_ {
    text.chars().map(|c| Some(Event::Key(ch(c))))
}

#[test]
fn the_event_loop_filters_invalidates_and_quits_on_a_test_backend() {
    let f = Fixture::demo();
    let bob = SessionId::named("bob-web").handle();
    let mut script = Script(VecDeque::new());
    script.0.extend(keys("/p:bob"));
    script.0.push_back(Some(Event::Key(key(KeyCode::Enter))));
    script.0.push_back(None); // the refresh interval passes
    script.0.extend(keys("dy"));
    script.0.push_back(Some(Event::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    ))));
    script.0.extend(keys("q")); // never read: Ctrl-C has quit
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let mut app = App::new(&Options {
        title: "/srv/app/sessions.sessdb".into(),
        ..Options::default()
    });
    run_loop(&mut terminal, &mut app, &f.store, &mut script, None).expect("loop ends cleanly");
    assert_eq!(script.0.len(), 1, "the loop stopped at Ctrl-C");
    assert_eq!(f.store.show(&Target::Handle(bob)).expect("show"), None);
    assert_eq!(f.store.stats().expect("stats").live, 5);
    redacted().bind(|| insta::assert_snapshot!("event_loop_after_invalidate", terminal.backend()));
}

#[test]
fn the_event_loop_reports_a_script_that_never_quits() {
    let f = Fixture::demo();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let mut app = App::new(&Options::default());
    let mut script = Script(keys("jj").collect());
    let err = run_loop(&mut terminal, &mut app, &f.store, &mut script, None)
        .expect_err("no quit in the script");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(app.selected, 2, "both keys were handled");
    assert!(f.store.stats().expect("stats").live == 6);
}

/// Keys for a loop whose counts are held: before the last key it notes how many counts had
/// finished, then lets them go (the loop's scope waits for its counting thread).
struct HeldScript<'a> {
    keys: VecDeque<Option<Event>>,
    admin: &'a Flaky,
    counted_before_last_key: Option<usize>,
}

impl Events for HeldScript<'_> {
    fn next(&mut self, _timeout: Duration) -> io::Result<Option<Event>> {
        if self.keys.len() == 1 {
            self.counted_before_last_key = Some(self.admin.counts.load(Ordering::SeqCst));
            self.admin.release();
        }
        Ok(self.keys.pop_front().flatten())
    }
}

#[test]
fn keys_work_while_the_counts_are_still_being_made() {
    let f = Fixture::demo();
    let admin = Flaky::new(&f.store);
    admin.hold();
    let mut script = HeldScript {
        keys: keys("jjq").collect(),
        admin: &admin,
        counted_before_last_key: None,
    };
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let mut app = App::new(&Options::default());
    run_loop(
        &mut terminal,
        &mut app,
        &admin,
        &mut script,
        Some(Duration::ZERO),
    )
    .expect("loop ends cleanly");
    assert_eq!(
        script.counted_before_last_key,
        Some(0),
        "every key was answered while the first count was still running"
    );
    assert_eq!(app.selected, 2, "both moves were made");
    assert_eq!(app.message, None);
    assert_eq!(row(&terminal, 1).trim_end(), " counting sessions…");
    assert_eq!(
        admin.counts.load(Ordering::SeqCst),
        1,
        "the count finished once released"
    );
}

#[test]
fn the_filter_cursor_follows_wide_characters() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    press(app, &f.store, &[ch('/')]);
    type_text(app, &f.store, "漢字");
    let mut terminal = screen(app);
    let status = terminal.backend().buffer().area.height - 2;
    // " filter: " is 9 cells, each of the two characters 2.
    assert_eq!(
        terminal.get_cursor_position().expect("cursor"),
        (13, status).into()
    );
    type_text(app, &f.store, "x");
    terminal
        .draw(|frame| crate::ui::render(app, frame))
        .expect("draw");
    assert_eq!(
        terminal.get_cursor_position().expect("cursor"),
        (14, status).into()
    );
}

/// What [`beside_a_held_worker`] leaves.
struct Held {
    app: App,
    terminal: Terminal<TestBackend>,
    /// The worker's connection, held: release it when done.
    worker: Arc<Flaky>,
    /// The UI's connection.
    ui: Flaky,
    outcome: io::Result<()>,
}

/// The real event loop at 80×24 on a connection of its own, its worker on another that is
/// held busy (a large store's count) and owned by the worker's thread, which nothing joins:
/// what `keys` do meanwhile.
fn beside_a_held_worker(f: &Fixture, keys_typed: &str) -> Held {
    let worker = Arc::new(Flaky::new(&f.store));
    worker.hold();
    let ui = Flaky::new(&f.store);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let mut app = App::new(&Options::default());
    let mut script = Script(keys(keys_typed).collect());
    let own = Worker::spawn_owned(worker.clone()).expect("worker thread");
    let outcome = event_loop(
        &mut terminal,
        &mut app,
        &ui,
        &mut script,
        &own,
        Some(Duration::ZERO),
    );
    Held {
        app,
        terminal,
        worker,
        ui,
        outcome,
    }
}

#[test]
fn counts_on_their_own_connection_never_hold_up_keys_or_quitting() {
    let f = Fixture::demo();
    let Held {
        app,
        worker: counter,
        ui,
        outcome,
        ..
    } = beside_a_held_worker(&f, "jjq");
    outcome.expect("loop ends cleanly");
    // Quit with the count still held, and every key answered meanwhile.
    assert!(app.quit);
    assert_eq!(app.selected, 2, "both moves were made");
    assert_eq!(counter.counts.load(Ordering::SeqCst), 0, "still counting");
    assert_eq!(
        ui.counts.load(Ordering::SeqCst),
        0,
        "no count on the UI's connection"
    );
    assert!(ui.lists.load(Ordering::SeqCst) > 0);
    counter.release();
}

/// `p` and its `y` never wait for the worker: with a count held on it (a large store), the
/// question opens at once, the purge is confirmed, the keys after it are answered, and the
/// status line says the purge waits for the count. Quitting before it started purges nothing.
#[test]
fn p_and_its_purge_never_hold_up_keys() {
    let f = Fixture::demo();
    let Held {
        app,
        terminal,
        worker,
        outcome,
        ..
    } = beside_a_held_worker(&f, "pyjj");
    // The script ended before a quit: every key was read, none waited for the worker.
    assert_eq!(
        outcome.map_err(|e| e.kind()),
        Err(io::ErrorKind::UnexpectedEof)
    );
    assert_eq!(app.selected, 2, "both moves were made");
    assert_eq!(
        app.mode,
        crate::app::Mode::Browsing,
        "the question was answered"
    );
    let status = row(&terminal, 22);
    assert!(
        status.starts_with(" Purge confirmed: it starts once the count under way ends"),
        "{status}"
    );
    worker.release();
    assert_eq!(
        f.store.count_expired().expect("count"),
        1,
        "the purge never started"
    );
}

/// With the worker free, `p` shows the count in its question and `y` purges on the worker;
/// the status line says what was purged, and the header's counts follow.
#[test]
fn the_event_loop_purges_on_its_worker() {
    let f = Fixture::demo();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let mut app = App::new(&Options::default());
    std::thread::scope(|scope| {
        let worker = Worker::spawn(scope, &f.store).expect("worker thread");
        // The script ends after `p`: the last frame drawn is the question, with its count.
        let mut script = Script(keys("p").collect());
        let asked = event_loop(
            &mut terminal,
            &mut app,
            &f.store,
            &mut script,
            &worker,
            None,
        );
        assert_eq!(
            asked.map_err(|e| e.kind()),
            Err(io::ErrorKind::UnexpectedEof)
        );
        assert!(
            (0..24).any(|y| row(&terminal, y).contains("Purge 1 expired session?")),
            "{}",
            terminal.backend()
        );
        let mut script = Script(keys("yq").collect());
        event_loop(
            &mut terminal,
            &mut app,
            &f.store,
            &mut script,
            &worker,
            None,
        )
        .expect("loop ends cleanly");
    });
    assert_eq!(f.store.count_expired().expect("count"), 0);
    // The last frame, before `q`: what was purged, and the counts read again.
    let status = row(&terminal, 22);
    assert!(status.starts_with(" Purged 1 expired session "), "{status}");
    assert_eq!(app.stats.as_ref().map(|s| s.expired), Some(0));
}

/// A filter longer than the status line shows its typed end, with the cursor after it, and
/// never runs into the sort; once done, the status line shows both its ends beside the sort,
/// and so does the empty table.
#[test]
fn a_long_filter_shows_its_typed_end_and_never_runs_into_the_sort() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 60, 12);
    press(app, &f.store, &[ch('/')]);
    type_text(app, &f.store, &format!("{}ABC", "x".repeat(70)));
    let mut terminal = screen(app);
    let status = row(&terminal, 10);
    assert!(status.ends_with(" sort expiry "), "{status}");
    let typed = status.trim_end().trim_end_matches("sort expiry").trim_end();
    assert!(typed.starts_with(" filter: …x"), "{status}");
    assert!(typed.ends_with("xABC"), "{status}");
    terminal
        .draw(|frame| crate::ui::render(app, frame))
        .expect("draw");
    let cursor = terminal.get_cursor_position().expect("cursor");
    assert_eq!(
        (cursor.x, cursor.y),
        (u16::try_from(typed.chars().count()).expect("narrow"), 10),
        "right after the last character typed"
    );
    press(app, &f.store, &[key(KeyCode::Enter)]);
    let terminal = screen(app);
    let status = row(&terminal, 10);
    assert!(
        status.contains(" sort expiry · filter xxxxxxxxxxxxxxx…xxxxxxxxxxxABC "),
        "{status}"
    );
    let table: String = (0..10).map(|y| row(&terminal, y)).collect();
    assert!(
        table.contains("No sessions match “xxxxxxxxxxxxxx…xxxxxxxxxxxABC”"),
        "{table}"
    );
}

/// A whole handle, the filter a `show` or a log line gives, shows whole beside the sort from
/// 64 columns on.
#[test]
fn a_handle_filter_shows_whole_at_80_columns() {
    let f = Fixture::demo();
    let app = &mut started(&f.store, 80, 24);
    let handle = app.selected_session().expect("a row").handle.to_string();
    press(app, &f.store, &[ch('/')]);
    type_text(app, &f.store, &handle);
    press(app, &f.store, &[key(KeyCode::Enter)]);
    let status = row(&screen(app), 22);
    assert!(
        status.ends_with(&format!(" sort expiry · filter {handle} ")),
        "{status}"
    );
}

/// A domain login with a backslash (`CORP\tom`) and a principal with a tab where its
/// backslash and `t` are: the table shows them apart (before, both read `CORP\tom`), and so
/// does the question before `D` logs one of them out everywhere.
#[test]
fn a_backslash_and_an_escape_never_show_alike() {
    let f = Fixture::empty();
    f.add(super::Spec {
        name: "domain",
        principal: Some("CORP\\tom"),
        label: Some("domain"),
        ..Default::default()
    });
    f.add(super::Spec {
        name: "tab",
        principal: Some("CORP\tom"),
        label: Some("tab"),
        ..Default::default()
    });
    let app = &mut started(&f.store, 100, 12);
    let rows = screen_rows(app);
    let shown = |label: &str| {
        let line = rows.iter().find(|r| r.contains(&format!(" {label} ")));
        line.unwrap_or_else(|| panic!("no {label} row in\n{}", rows.join("\n")))
            .clone()
    };
    assert!(
        shown("domain").contains(" CORP\\\\tom "),
        "{}",
        rows.join("\n")
    );
    assert!(shown("tab").contains(" CORP\\tom "), "{}", rows.join("\n"));

    // The row of the domain login, then `D`: the question names it as the table does.
    let at = super::principals(app)
        .iter()
        .position(|p| p == "CORP\\tom")
        .expect("the domain login is listed");
    for _ in 0..at {
        press(app, &f.store, &[key(KeyCode::Down)]);
    }
    press(app, &f.store, &[ch('D')]);
    let text = screen_rows(app).join("\n");
    assert!(text.contains("the only session of CORP\\\\tom?"), "{text}");
    assert!(
        text.contains("CORP\\\\tom is logged out everywhere"),
        "{text}"
    );
}

/// The question before `d` or `D` shows the principal escaped, as the table does: before, it
/// held it raw, and a direction override went to the terminal as it was.
#[test]
fn the_confirm_dialog_escapes_the_principal() {
    let f = Fixture::empty();
    f.add(super::Spec {
        name: "rtl",
        principal: Some("adm\u{202e}nimda"),
        ..Default::default()
    });
    for k in ['d', 'D'] {
        let app = &mut started(&f.store, 100, 12);
        press(app, &f.store, &[ch(k)]);
        let text = screen_rows(app).join("\n");
        assert!(text.contains("of adm\\u{202e}nimda?"), "{k}: {text}");
        assert!(!text.contains('\u{202e}'), "{k}: {text}");
    }
}
