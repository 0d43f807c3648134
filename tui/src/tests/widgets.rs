//! Layer 2: one widget rendered into a plain `Buffer`, cells and styles asserted.

use ratatui::buffer::Buffer;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::widgets::Widget;

use ratatui::crossterm::event::KeyCode;

use super::{ch, key, press, started, started_with, work_now, Fixture, Flaky};
use crate::app::{Action, App, Confirm, Mode};
use crate::keys;
use crate::listing::PAGE_SIZE;
use crate::theme::Theme;
use crate::ui::{ConfirmDialog, DetailPane, Header, HelpOverlay, KeyBar, SessionTable};

fn draw(widget: impl Widget, width: u16, height: u16) -> Buffer {
    let mut buf = Buffer::empty(Rect::new(0, 0, width, height));
    widget.render(buf.area, &mut buf);
    buf
}

fn lines(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// The lines as a terminal shows them: a wide character, then the cells it covers skipped.
fn visible_lines(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            let mut line = String::new();
            let mut x = 0;
            while x < buf.area.width {
                let symbol = buf[(x, y)].symbol();
                line.push_str(symbol);
                x += crate::text::width(symbol).max(1) as u16;
            }
            line
        })
        .collect()
}

/// The position of the first `text` on screen.
fn find(buf: &Buffer, text: &str) -> (u16, u16) {
    for (y, line) in lines(buf).iter().enumerate() {
        if let Some(byte) = line.find(text) {
            let x = line[..byte].chars().count();
            return (
                u16::try_from(x).expect("fits"),
                u16::try_from(y).expect("fits"),
            );
        }
    }
    panic!("{text:?} not on screen:\n{}", lines(buf).join("\n"));
}

fn with_expired(f: &Fixture) -> App {
    let mut app = started(&f.store, 100, 30);
    press(&mut app, &f.store, &[ch('e')]);
    app
}

/// The table's columns, in order, as the issue names them.
const COLUMNS: [&str; 8] = [
    "HANDLE",
    "PRINCIPAL",
    "LABEL",
    "ADDRESS",
    "CREATED",
    "ACCESSED",
    "EXPIRES",
    "SIZE",
];

#[test]
fn the_table_has_the_columns_of_the_issue() {
    let f = Fixture::demo();
    let app = started(&f.store, 100, 30);
    let buf = draw(SessionTable { app: &app }, 100, 12);
    let header = &lines(&buf)[1];
    let mut last = 0;
    for column in COLUMNS {
        let at = header
            .find(column)
            .unwrap_or_else(|| panic!("{column} missing in {header:?}"));
        assert!(at > last, "{column} out of order in {header:?}");
        last = at;
    }
    let (x, y) = find(&buf, "HANDLE");
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
}

#[test]
fn narrow_tables_drop_the_least_identifying_columns_first() {
    let f = Fixture::demo();
    let app = started(&f.store, 100, 30);
    let header = |width: u16| {
        let buf = draw(SessionTable { app: &app }, width, 12);
        let names = lines(&buf)[1].trim_matches('│').to_string();
        names
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(header(90).len(), 8);
    // The addresses on screen are kept whole before SIZE is (cut from their end, a user found
    // them all reading `203.0.113…` at 80 columns).
    assert_eq!(header(80), COLUMNS[..7]);
    let buf = draw(SessionTable { app: &app }, 80, 12);
    let text = lines(&buf).join("\n");
    for address in ["203.0.113.7 ", "198.51.100.4 ", "203.0.113.99 "] {
        assert!(text.contains(address), "{address} in\n{text}");
    }
    assert_eq!(
        header(70),
        [
            "HANDLE",
            "PRINCIPAL",
            "LABEL",
            "ADDRESS",
            "ACCESSED",
            "EXPIRES"
        ]
    );
    assert_eq!(
        header(60),
        ["HANDLE", "PRINCIPAL", "LABEL", "ADDRESS", "EXPIRES"]
    );
    assert_eq!(header(50), ["HANDLE", "PRINCIPAL", "LABEL", "ADDRESS"]);
    assert_eq!(header(40), ["HANDLE", "PRINCIPAL", "LABEL"]);
    assert_eq!(header(25), ["HANDLE", "PRINCIPAL"]);
    // At 40 columns the principal has room for more than a few letters.
    let buf = draw(SessionTable { app: &app }, 40, 12);
    let text = lines(&buf).join("\n");
    assert!(text.contains(" svc-billing "), "{text}");
    // Narrower still, the handle keeps the 6 characters sessctl accepts.
    let buf = draw(SessionTable { app: &app }, 18, 12);
    let carol = &lines(&buf)[2];
    let handle = app.listing.rows()[0].handle.short();
    assert!(
        carol.starts_with(&format!("│{} carol", &handle[..6])),
        "{carol:?}"
    );
}

#[test]
fn stale_rows_are_dimmed_and_the_header_says_so() {
    let f = Fixture::demo();
    let mut app = started(&f.store, 80, 24);
    app.stale = Some(crate::app::Stale::ReadFailed);
    let top = |app: &App, width: u16| lines(&draw(Header { app }, width, 2))[0].clone();
    assert_eq!(
        top(&app, 80),
        " sessdb  /srv/app/sessions.sessdb      stale · refreshed 22:27:20 UTC · auto 2s "
    );
    assert_eq!(top(&app, 40), " sessdb  …sions.sessdb stale · 22:27:20 ");
    let buf = draw(Header { app: &app }, 80, 2);
    assert_eq!(buf[find(&buf, "stale")].fg, Color::Red);
    let buf = draw(SessionTable { app: &app }, 80, 12);
    assert!(lines(&buf)[0].contains(" live sessions (stale) "));
    let (x, y) = find(&buf, "bob");
    assert!(buf[(x, y)].modifier.contains(Modifier::DIM));
    app.stale = None;
    let buf = draw(SessionTable { app: &app }, 80, 12);
    let (x, y) = find(&buf, "bob");
    assert!(!buf[(x, y)].modifier.contains(Modifier::DIM));
}

#[test]
fn a_failed_count_marks_the_counts_stale_and_not_the_rows() {
    let f = Fixture::demo();
    let flaky = Flaky::new(&f.store);
    let mut app = started(&flaky, 100, 30);
    let header = |app: &App| lines(&draw(Header { app }, 100, 2));
    // The size on disk changes as sled writes in the background: the line up to it.
    let current = " live 6 · expired 1 · principals 5 · on disk ";
    assert!(
        header(&app)[1].starts_with(current),
        "{:?}",
        header(&app)[1]
    );
    // The rows are read; the count, made after them on a thread (and a connection) of its
    // own, fails.
    app.update(&flaky, Action::Refresh);
    flaky.failing.store(true, Ordering::SeqCst);
    work_now(&mut app, &flaky);
    flaky.failing.store(false, Ordering::SeqCst);
    let [top, counts] = [0, 1].map(|i| header(&app)[i].clone());
    assert!(!top.contains("stale"), "the rows were read: {top:?}");
    assert_eq!(app.stale, None);
    assert!(
        counts.starts_with(" stale · live 6 · expired 1 · principals 5 · on disk "),
        "{counts:?}"
    );
    assert!(
        counts.trim_end().ends_with(" · counted 22:27:20"),
        "the time of the counts shown: {counts:?}"
    );
    let buf = draw(Header { app: &app }, 100, 2);
    assert_eq!(buf[find(&buf, "stale")].fg, Color::Red);
    let (x, y) = find(&buf, "live 6");
    assert!(buf[(x + 5, y)].modifier.contains(Modifier::DIM), "dimmed");
    // The next count that works makes them current again.
    app.update(&flaky, Action::Refresh);
    work_now(&mut app, &flaky);
    let counts = header(&app)[1].clone();
    assert!(counts.starts_with(current), "{counts:?}");
    assert!(!counts.contains("counted"), "{counts:?}");
    let buf = draw(Header { app: &app }, 100, 2);
    let (x, y) = find(&buf, "live 6");
    assert!(!buf[(x + 5, y)].modifier.contains(Modifier::DIM));

    // A first count that fails does not say it is still counting.
    let mut app = App::new(&crate::Options::default());
    app.update(&flaky, Action::Resize(100, 30));
    app.start(&flaky);
    flaky.failing.store(true, Ordering::SeqCst);
    work_now(&mut app, &flaky);
    flaky.failing.store(false, Ordering::SeqCst);
    assert_eq!(header(&app)[1].trim_end(), " count failed");
    assert_eq!(app.stale, None);
}

#[test]
fn a_failed_read_of_the_open_session_marks_its_pane_stale_and_not_the_rows() {
    let f = Fixture::demo();
    let flaky = Flaky::new(&f.store);
    let app = &mut started(&flaky, 100, 40);
    let read_at = app.refreshed_at.expect("read at start");
    press(app, &flaky, &[key(KeyCode::Enter)]);
    let pane = |app: &App| {
        let detail = app.detail().expect("the pane is open");
        draw(DetailPane { app, detail }, 100, 20)
    };
    assert!(!lines(&pane(app))[0].contains("stale"));
    flaky.show_failing.store(true, Ordering::SeqCst);
    f.advance(60);
    press(app, &flaky, &[ch('r')]);
    assert_eq!(app.stale, None, "the rows were read");
    assert_eq!(app.refreshed_at, Some(read_at + Duration::from_secs(60)));
    let buf = pane(app);
    assert!(lines(&buf)[0].contains(" (stale) "), "{:?}", lines(&buf)[0]);
    let (x, y) = find(&buf, "principal");
    assert!(buf[(x, y)].modifier.contains(Modifier::DIM), "dimmed");
    assert!(matches!(
        app.message,
        Some(crate::app::Message::ReadError(_))
    ));
    // Read again: current, and the error is over.
    flaky.show_failing.store(false, Ordering::SeqCst);
    press(app, &flaky, &[ch('r')]);
    let buf = pane(app);
    assert!(!lines(&buf)[0].contains("stale"), "{:?}", lines(&buf)[0]);
    assert!(!buf[find(&buf, "principal")]
        .modifier
        .contains(Modifier::DIM));
    assert_eq!(app.message, None);
    // A pane opened on stale rows shows what they hold, no newer.
    flaky.failing.store(true, Ordering::SeqCst);
    press(
        app,
        &flaky,
        &[key(KeyCode::Enter), ch('r'), key(KeyCode::Enter)],
    );
    assert!(app.stale.is_some());
    assert!(lines(&pane(app))[0].contains(" (stale) "));
}

#[test]
fn a_narrow_header_shortens_the_time_before_running_together() {
    let f = Fixture::demo();
    let app = started(&f.store, 80, 24);
    let top = |width: u16| lines(&draw(Header { app: &app }, width, 2))[0].clone();
    assert_eq!(
        top(80),
        " sessdb  /srv/app/sessions.sessdb              refreshed 22:27:20 UTC · auto 2s "
    );
    assert_eq!(
        top(60),
        " sessdb  …/sessions.sessdb refreshed 22:27:20 UTC · auto 2s "
    );
    assert_eq!(
        top(50),
        " sessdb  …/sessions.sessdb refreshed 22:27:20 UTC "
    );
    assert_eq!(top(40), " sessdb  …/sessions.sessdb 22:27:20 UTC ");
    assert_eq!(top(30), " sessdb  …ons.sessdb 22:27:20 ");
    assert_eq!(top(20), " sessdb  … 22:27:20 ");
}

/// As of a fixed time (`--as-of`), the header shows that time with its date: the time of a
/// refresh would be a clock that never moves.
#[test]
fn as_of_a_fixed_time_the_header_says_so_with_the_date() {
    let f = Fixture::demo();
    let as_of = time::macros::datetime!(2030-01-01 00:00:00 UTC);
    let options = crate::Options {
        title: "/srv/app/sessions.sessdb".into(),
        as_of: Some(as_of),
        ..crate::Options::default()
    };
    let app = started_with(&f.store, 90, 24, &options);
    let top = |width: u16| lines(&draw(Header { app: &app }, width, 2))[0].clone();
    assert_eq!(
        top(90),
        " sessdb  /srv/app/sessions.sessdb                 as of 2030-01-01 00:00:00 UTC · auto 2s "
    );
    assert_eq!(
        top(50),
        " sessdb  …sessions.sessdb 2030-01-01 00:00:00 UTC "
    );
}

#[test]
fn a_session_expiring_within_a_minute_is_red_and_an_expired_one_dimmed() {
    let f = Fixture::demo();
    let app = with_expired(&f);
    let buf = draw(SessionTable { app: &app }, 100, 12);
    // carol's session has 20 s left.
    let (_, carol) = find(&buf, "carol");
    let (x, y) = find(&buf, "20s ");
    assert_eq!(y, carol);
    assert_eq!(buf[(x, y)].fg, Color::Red);
    assert_eq!(buf[(x + 1, y)].fg, Color::Red);
    // The other live sessions' expiry is not red.
    let (x, y) = find(&buf, "16m");
    assert_ne!(buf[(x, y)].fg, Color::Red);
    // dave's has expired: the whole row is dimmed, and says so.
    let (x, dave) = find(&buf, "dave");
    let (ex, ey) = find(&buf, "expired   ");
    assert_eq!(ey, dave);
    assert!(buf[(x, dave)].modifier.contains(Modifier::DIM));
    assert!(buf[(ex, ey)].modifier.contains(Modifier::DIM));
    assert!(!buf[find(&buf, "carol")].modifier.contains(Modifier::DIM));
}

#[test]
fn the_selected_row_is_highlighted_and_the_scrollbar_drawn() {
    let f = Fixture::many(40);
    let mut app = started(&f.store, 100, 15);
    press(&mut app, &f.store, &[ch('j'), ch('j')]);
    let rows = app.table_rows();
    let buf = draw(SessionTable { app: &app }, 100, 15 - 4);
    let (x, y) = find(&buf, "user0002");
    assert_eq!(buf[(x, y)].bg, Color::Blue);
    assert_ne!(buf[find(&buf, "user0001")].bg, Color::Blue);
    // 40 sessions, `rows` of them visible: a thumb on a track.
    let bar: String = (1..buf.area.height - 1)
        .map(|y| buf[(buf.area.width - 1, y)].symbol().to_string())
        .collect();
    assert!(bar.contains('█') && bar.contains('║'), "{bar:?}");
    assert_eq!(
        lines(&buf).iter().filter(|l| l.contains("user")).count(),
        rows
    );
    assert!(lines(&buf)[0].contains("1–40"), "{:?}", lines(&buf)[0]);
}

#[test]
fn the_title_numbers_the_last_page_from_the_counts_or_from_the_end() {
    let f = Fixture::many(250);
    let mut app = started(&f.store, 100, 15);
    press(&mut app, &f.store, &[ch('G')]);
    let title = |app: &App| lines(&draw(SessionTable { app }, 100, 11))[0].clone();
    // No filter: the header's count places the page.
    assert!(title(&app).contains(" 151–250 "), "{:?}", title(&app));
    press(&mut app, &f.store, &[ch('k')]);
    let buf = draw(SessionTable { app: &app }, 100, 11);
    let bar: String = (1..10).map(|y| buf[(99, y)].symbol().to_string()).collect();
    assert!(bar.ends_with('█'), "the thumb is at the bottom: {bar:?}");
    // A filter: how many match is unknown, so the page is counted from the end.
    press(&mut app, &f.store, &[ch('/')]);
    super::type_text(&mut app, &f.store, "user");
    press(&mut app, &f.store, &[key(KeyCode::Enter), ch('G')]);
    assert!(
        title(&app).contains(" 1–100 from the end "),
        "{:?}",
        title(&app)
    );
    for _ in 0..PAGE_SIZE {
        press(&mut app, &f.store, &[ch('k')]);
    }
    assert!(
        title(&app).contains(" 101–200 from the end "),
        "{:?}",
        title(&app)
    );
}

#[test]
fn no_color_draws_the_whole_screen_without_colours() {
    let f = Fixture::demo();
    let mut app = with_expired(&f);
    app.theme = Theme::new(true);
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(100, 30)).expect("test terminal");
    for keys in [&[][..], &[ch('?')], &[ch('?'), ch('d')]] {
        press(&mut app, &f.store, keys);
        terminal
            .draw(|frame| crate::ui::render(&app, frame))
            .expect("draw");
        let buf = terminal.backend().buffer();
        for cell in buf.content() {
            assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
        }
        // Emphasis survives: the selection in reverse video, dave's expired row dimmed.
        let (x, y) = find(buf, "dave");
        assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
        assert!(buf[(x, y)].modifier.contains(Modifier::DIM));
    }
}

/// A read-only view (`sessctl --as-of` a later time) offers no key that writes: they would only
/// be refused. The other keys stay.
#[test]
fn a_read_only_footer_leaves_out_the_keys_that_write() {
    for filtered in [false, true] {
        let writes = keys::footer(&Mode::Browsing, filtered, true);
        let read_only = keys::footer(&Mode::Browsing, filtered, false);
        let names = |keys: &[keys::KeyHelp]| keys.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        assert!(["d", "D", "p"].iter().all(|k| names(&writes).contains(k)));
        assert!(["d", "D", "p"]
            .iter()
            .all(|k| !names(&read_only).contains(k)));
        assert_eq!(read_only.len(), writes.len() - 3);
        assert!(names(&read_only).contains(&"/"));
    }
}

#[test]
fn the_key_bar_shows_whole_items_that_fit() {
    let theme = Theme::new(false);
    let keys = &keys::footer(&Mode::Browsing, false, true);
    let buf = draw(
        KeyBar {
            keys,
            theme: &theme,
        },
        30,
        1,
    );
    assert_eq!(lines(&buf)[0], " ? help  q quit  ↑↓ move      ");
    assert_eq!(buf[(1, 0)].fg, Color::Cyan);
    let wide = draw(
        KeyBar {
            keys,
            theme: &theme,
        },
        200,
        1,
    );
    for (key, what) in keys {
        assert!(lines(&wide)[0].contains(&format!("{key} {what}")));
    }
}

#[test]
fn the_header_shows_counts_and_keeps_the_end_of_a_long_title() {
    let f = Fixture::demo();
    let mut app = started(&f.store, 80, 24);
    app.title = "/var/lib/a-very-long-application-name/state/sessions/production.sessdb".into();
    let buf = draw(Header { app: &app }, 80, 2);
    let text = lines(&buf);
    assert!(
        text[0].starts_with(" sessdb  …"),
        "the title is cut on the left: {:?}",
        text[0]
    );
    assert!(text[0].contains("production.sessdb refreshed 22:27:20 UTC · auto 2s"));
    assert!(
        text[1].starts_with(" live 6 · expired 1 · principals 5 · on disk "),
        "{:?}",
        text[1]
    );
    assert!(!text[1].contains("counted"));
    press(&mut app, &f.store, &[ch('a')]);
    // A refresh that skipped a slow count says how old the counts are.
    app.stats_skipped = true;
    let buf = draw(Header { app: &app }, 80, 2);
    assert!(lines(&buf)[0].ends_with("auto off "));
    assert!(
        lines(&buf)[1].contains(" · counted 22:27:20"),
        "{:?}",
        lines(&buf)[1]
    );
    // While the next count is made (a large store), the last one shows, and says so.
    app.counting = true;
    let buf = draw(Header { app: &app }, 80, 2);
    assert!(
        lines(&buf)[1].starts_with(" live 6 · expired 1 · principals 5 · on disk "),
        "{:?}",
        lines(&buf)[1]
    );
    assert!(
        lines(&buf)[1].contains(" · counting…"),
        "{:?}",
        lines(&buf)[1]
    );
    assert!(!lines(&buf)[1].contains("counted"));
    // Before the first count there is nothing else to show.
    app.stats = None;
    let buf = draw(Header { app: &app }, 80, 2);
    assert_eq!(lines(&buf)[1].trim_end(), " counting sessions…");
}

#[test]
fn the_confirm_dialog_says_how_many_in_red() {
    let theme = Theme::new(false);
    let ask = Confirm::InvalidatePrincipal {
        principal: "alice".into(),
        count: 2,
    };
    let buf = draw(
        ConfirmDialog {
            ask: &ask,
            theme: &theme,
        },
        80,
        24,
    );
    let (x, y) = find(&buf, "Invalidate all 2 sessions of alice?");
    find(&buf, "alice is logged out everywhere.");
    find(&buf, "y yes    n no");
    let (bx, by) = find(&buf, "┌ Confirm");
    assert!(by < y && bx < x);
    assert_eq!(buf[(bx, by)].fg, Color::Red);
    let purge = Confirm::Purge { count: Some(1) };
    let buf = draw(
        ConfirmDialog {
            ask: &purge,
            theme: &theme,
        },
        80,
        24,
    );
    find(&buf, "Purge 1 expired session?");
}

#[test]
fn the_detail_pane_shows_metadata_and_pretty_json_and_scrolls() {
    let f = Fixture::demo();
    let mut app = started(&f.store, 80, 40);
    press(&mut app, &f.store, &[ch('j')]);
    app.update(&f.store, crate::app::Action::ToggleDetail);
    let detail = app.detail().expect("open").clone();
    let buf = draw(
        DetailPane {
            app: &app,
            detail: &detail,
        },
        80,
        30,
    );
    let text = lines(&buf).join("\n");
    for expected in [
        "principal    alice",
        "remote addr  203.0.113.7",
        "created      2023-11-14T22:13:20Z (14m ago)",
        "idle timeout 30m",
        "expires      2023-11-14T22:43:20Z (in 16m)",
        "  {",
        "    \"cart\": [",
        "      1,",
        "    \"theme\": \"dark\"",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in\n{text}");
    }
    let scrolled = crate::app::Detail {
        scroll: 3,
        ..detail
    };
    let buf = draw(
        DetailPane {
            app: &app,
            detail: &scrolled,
        },
        80,
        12,
    );
    assert!(
        lines(&buf)[1].contains("remote addr"),
        "{:?}",
        lines(&buf)[1]
    );
}

/// JSON escapes the C0 controls only: a direction override or a C1 control (CSI) in a data
/// string is shown escaped, as in every other field, not handed to the terminal.
#[test]
fn the_detail_pane_escapes_what_json_leaves_raw_in_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    let mut s = store.create();
    s.insert("note", "adm\u{202e}nimda \u{9b}31m").unwrap();
    s.save().unwrap();
    let target = sessdb::Target::Handle(s.handle());
    let info = sessdb::Admin::show(&store, &target).unwrap();
    let lines = crate::ui::detail_lines(
        &Theme::new(false),
        sessdb::Admin::now(&store),
        200,
        &s.handle(),
        info.as_ref(),
    );
    let text = texts(&lines).join("\n");
    assert!(
        text.contains(r#""note": "adm\u{202e}nimda \u{9b}31m""#),
        "{text}"
    );
    assert!(!text.contains(['\u{202e}', '\u{9b}']), "{text}");
}

/// The text of each of `lines`.
fn texts(lines: &[ratatui::text::Line<'_>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
        .collect()
}

/// A value longer than the pane goes on over the lines below it, indented under where it
/// started, rather than being cut at the pane's edge: a browser's user agent and a long data
/// string (wide characters among it) read whole, at any width, and no line is wider than the
/// pane.
#[test]
fn the_detail_pane_wraps_a_long_value_rather_than_cut_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sessdb::Store::open(dir.path().join("db")).unwrap();
    let mut s = store.create();
    s.set_user_agent(Some(super::CHROME)).unwrap();
    let token = format!("{}{}", "漢字".repeat(12), "0123456789".repeat(12));
    s.insert("token", token.as_str()).unwrap();
    s.save().unwrap();
    let info = sessdb::Admin::show(&store, &sessdb::Target::Handle(s.handle())).unwrap();
    for width in [77, 40, 29, 28, 20] {
        let lines = crate::ui::detail_lines(
            &Theme::new(false),
            sessdb::Admin::now(&store),
            width,
            &s.handle(),
            info.as_ref(),
        );
        let rows = texts(&lines);
        for row in &rows {
            let shown = row.trim_end();
            assert!(
                crate::text::width(shown) <= width,
                "{row:?} wider than {width}"
            );
        }
        // Read back as a person reads it: each value's first line after its label or
        // indent, then the lines indented further below it.
        let read = |first: &str, indent: usize, more: usize| {
            let at = rows
                .iter()
                .position(|r| r.starts_with(first))
                .unwrap_or_else(|| panic!("no {first:?} in {rows:#?}"));
            let mut value = rows[at][indent..].to_string();
            let pad = " ".repeat(more);
            for row in rows[at + 1..].iter().take_while(|r| {
                r.starts_with(&pad) && r.len() > more && !r[more..].starts_with(' ')
            }) {
                value.push_str(&row[more..]);
            }
            value
        };
        assert!(rows.len() > 16, "nothing wrapped at {width}: {rows:#?}");
        let agent = if width >= 29 {
            read("user agent", 13, 13)
        } else {
            // Too narrow for values beside their labels: under them.
            assert!(rows.iter().any(|r| r == "user agent"), "{rows:#?}");
            read("  Mozilla", 2, 2)
        };
        assert_eq!(agent, super::CHROME, "at {width}");
        assert_eq!(
            read("    \"token\"", 4, 6),
            format!("\"token\": \"{token}\""),
            "at {width}"
        );
    }
}

/// A resize formats the open session again for the new width, as of the time it was read, and
/// keeps its scroll within the lines it then has.
#[test]
fn a_resize_wraps_the_detail_pane_again() {
    let f = Fixture::demo();
    let mut app = started(&f.store, 80, 24);
    press(&mut app, &f.store, &[ch('j'), key(KeyCode::Enter)]);
    let agent_rows = |app: &App| {
        let rows = texts(&app.detail().expect("open").lines);
        let at = rows
            .iter()
            .position(|r| r.starts_with("user agent"))
            .unwrap();
        rows[at + 1..]
            .iter()
            .take_while(|r| r.starts_with("             "))
            .count()
            + 1
    };
    assert_eq!(agent_rows(&app), 2);
    let read_at = app.detail().unwrap().read_at;
    f.advance(600);
    app.update(&f.store, Action::Resize(200, 50));
    assert_eq!(agent_rows(&app), 1);
    assert_eq!(app.detail().unwrap().read_at, read_at);
    app.update(&f.store, Action::Resize(40, 12));
    assert_eq!(agent_rows(&app), 6);
    for _ in 0..40 {
        app.update(&f.store, Action::Down);
    }
    let scrolled = app.detail().unwrap().scroll;
    assert!(scrolled > 0);
    app.update(&f.store, Action::Resize(200, 50));
    let d = app.detail().unwrap();
    assert!(
        d.scroll < scrolled,
        "{} of {} lines",
        d.scroll,
        d.lines.len()
    );
    assert!(d.scroll + usize::from(crate::ui::detail_body_height(app.area)) >= d.lines.len());
}

#[test]
fn the_help_lists_every_key() {
    let theme = Theme::new(false);
    let buf = draw(HelpOverlay { theme: &theme }, 80, 24);
    let text = lines(&buf).join("\n");
    for (key, what) in keys::HELP {
        assert!(text.contains(what), "{what:?} missing");
        assert!(text.contains(key), "{key:?} missing");
    }
}

/// Every key that does something while browsing or filtering is in the help, by the name it
/// has there: the key table and the help are kept by hand, and had drifted (Space, Home/End,
/// Delete, F1, F5 and Ctrl-U were bound and listed nowhere).
#[test]
fn every_bound_key_is_in_the_help() {
    use ratatui::crossterm::event::{KeyEvent, KeyModifiers};
    let named: Vec<&str> = keys::HELP
        .iter()
        .flat_map(|(key, _)| key.split(' '))
        .flat_map(|word| [word].into_iter().chain(word.split('/')))
        .collect();
    let mut codes: Vec<(KeyCode, &str)> = vec![
        (KeyCode::Up, "↑"),
        (KeyCode::Down, "↓"),
        (KeyCode::PageUp, "PgUp"),
        (KeyCode::PageDown, "PgDn"),
        (KeyCode::Home, "Home"),
        (KeyCode::End, "End"),
        (KeyCode::Enter, "Enter"),
        (KeyCode::Esc, "Esc"),
        (KeyCode::Delete, "Del"),
        (KeyCode::Backspace, "Backspace"),
        (KeyCode::Tab, "Tab"),
        (KeyCode::Insert, "Ins"),
        (KeyCode::Left, "←"),
        (KeyCode::Right, "→"),
        (KeyCode::Char(' '), "Space"),
    ];
    let fkeys: Vec<String> = (1..=12).map(|n| format!("F{n}")).collect();
    codes.extend((1..=12).map(|n| (KeyCode::F(n), fkeys[usize::from(n) - 1].as_str())));
    let chars: Vec<String> = ('!'..='~').map(String::from).collect();
    codes.extend(
        ('!'..='~')
            .zip(&chars)
            .map(|(c, s)| (KeyCode::Char(c), s.as_str())),
    );
    let ctrl: Vec<String> = ('a'..='z')
        .map(|c| format!("Ctrl-{}", c.to_ascii_uppercase()))
        .collect();
    let filter = Mode::Filter {
        input: String::new(),
    };
    for mode in [Mode::Browsing, filter] {
        for (code, name) in &codes {
            let typed = matches!(mode, Mode::Filter { .. })
                && matches!(code, KeyCode::Char(_) | KeyCode::Backspace);
            if keys::action(&mode, true, KeyEvent::from(*code)).is_some() && !typed {
                assert!(
                    named.contains(name),
                    "{mode:?}: {name} is bound, not in the help"
                );
            }
        }
        for (c, name) in ('a'..='z').zip(&ctrl) {
            let key = KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
            if keys::action(&mode, true, key).is_some() {
                assert!(
                    named.contains(&name.as_str()),
                    "{mode:?}: {name} is bound, not in the help"
                );
            }
        }
    }
}

#[test]
fn a_help_too_large_for_the_terminal_says_what_it_cuts() {
    let theme = Theme::new(false);
    let buf = draw(HelpOverlay { theme: &theme }, 30, 8);
    let shown = lines(&buf);
    // 30×8: a box of 28×6 inside its border, so five keys and a line for the rest.
    let inside: Vec<&str> = shown[1..7].iter().map(|l| l.trim_end()).collect();
    assert!(inside[0].contains("j/k"), "{inside:?}");
    assert!(
        inside[0].ends_with("…│"),
        "a cut line ends in the marker: {inside:?}"
    );
    let more = keys::HELP.len() - 5;
    assert!(
        inside[5].contains(&format!("… {more} more lines")),
        "{inside:?}"
    );
    // Large enough, nothing is cut and no line says so.
    let text = lines(&draw(HelpOverlay { theme: &theme }, 80, 24)).join("\n");
    assert!(!text.contains('…') && !text.contains("more:"), "{text}");
}

/// One emoji of seven characters (four people joined), two cells wide.
const FAMILY: &str = "👩\u{200d}👩\u{200d}👧\u{200d}👦";

/// Sessions whose principals are wider on screen than they are long in characters, and wider
/// than the 32 cells a principal's column keeps before it is cut.
fn wide_principals() -> Fixture {
    let f = Fixture::empty();
    let family = format!("{}-team", FAMILY.repeat(16));
    for (name, principal) in [
        ("cjk", "漢字テストユーザー漢字テストユーザー"),
        ("family", family.as_str()),
        ("ascii", "alice"),
    ] {
        f.add(super::Spec {
            name,
            principal: Some(principal),
            label: Some("web"),
            addr: Some("192.0.2.1"),
            ..super::Spec::default()
        });
        f.advance(10);
    }
    f
}

#[test]
fn wide_text_is_cut_by_cells_with_the_marker_and_keeps_the_columns_in_line() {
    let f = wide_principals();
    let app = started(&f.store, 80, 24);
    let buf = draw(SessionTable { app: &app }, 80, 10);
    let (label_x, _) = find(&buf, "LABEL");
    let shown = visible_lines(&buf);
    let row_of = |text: &str| {
        let y = shown.iter().position(|l| l.contains(text));
        u16::try_from(y.unwrap_or_else(|| panic!("{text:?} not in {shown:#?}"))).expect("fits")
    };
    let (cjk_y, family_y) = (row_of("漢字"), row_of(FAMILY));
    for y in [cjk_y, family_y, find(&buf, "alice").1] {
        // Cells hidden behind a wide character are blank in the buffer, so the row's
        // columns are found by position, not by text.
        assert_eq!(
            buf[(label_x, y)].symbol(),
            "w",
            "row {y}:\n{}",
            lines(&buf).join("\n")
        );
        assert_eq!(buf[(label_x - 1, y)].symbol(), " ");
    }
    // The CJK principal is 36 cells in a column of 32: cut, and it shows.
    let row = &shown[usize::from(cjk_y)];
    assert!(row.contains("漢字テストユーザー漢字テストユ… "), "{row:?}");
    // Sixteen emoji of two cells and five letters, in 32 cells: cut after 30 (the next
    // emoji would take 32 with no room for the marker), graphemes whole.
    let row = &shown[usize::from(family_y)];
    assert!(
        row.contains(&format!("{}…  ", FAMILY.repeat(15))),
        "{row:?}"
    );
}

#[test]
fn the_confirm_dialog_shows_both_ends_of_a_long_principal() {
    let theme = Theme::new(false);
    let prefix = "tenant-42/service-accounts/reporting-pipeline/nightly-export-";
    let render = |principal: String, width: u16| {
        let ask = Confirm::InvalidatePrincipal {
            principal,
            count: 3,
        };
        visible_lines(&draw(
            ConfirmDialog {
                ask: &ask,
                theme: &theme,
            },
            width,
            24,
        ))
        .join("\n")
    };
    // Wrapped onto lines of its own: the whole principal shows.
    let eu = render(format!("{prefix}eu-west"), 80);
    let us = render(format!("{prefix}us-east"), 80);
    assert_ne!(eu, us);
    assert!(
        eu.contains("Invalidate all 3 sessions of this principal?"),
        "{eu}"
    );
    assert!(eu.contains("tenant-42/service-accounts/reporting-pipeline/nightly-export-eu-w"));
    assert!(eu.contains("est"), "{eu}");
    assert!(eu.contains("It is logged out everywhere."), "{eu}");
    assert!(eu.contains("y yes    n no"), "{eu}");
    // Too long even for three lines: both ends show, and the cut is marked.
    let huge = render(format!("{}{prefix}eu-west", "x".repeat(300)), 60);
    assert!(huge.contains("…"), "{huge}");
    assert!(huge.contains("export-eu-west"), "{huge}");
    assert!(huge.contains("xxxxxxxx"), "{huge}");
    // Wide characters are measured in cells: the dialog holds the whole CJK name.
    let cjk = render("漢字テストユーザー".repeat(4), 80);
    assert!(cjk.contains(&"漢字テストユーザー".repeat(4)), "{cjk}");
    for line in cjk.lines() {
        assert!(crate::text::width(line) <= 80, "{line:?}");
    }
}

/// While the application has not answered, the header says the auto-refresh is paused rather
/// than promise one every 2 s.
#[test]
fn the_header_says_the_auto_refresh_is_paused() {
    let f = Fixture::demo();
    let mut app = started(&f.store, 80, 24);
    app.unanswered = true;
    let top = lines(&draw(Header { app: &app }, 80, 2))[0].clone();
    assert!(top.ends_with("· auto paused "), "{top}");
}

/// On a narrow terminal a column goes before a principal is cut: a principal cut short may read
/// as another, an address left out only hides a detail.
#[test]
fn a_narrow_table_drops_columns_before_it_cuts_a_principal() {
    let f = Fixture::empty();
    f.add(super::Spec {
        name: "user",
        principal: Some("user1024@example.com"),
        label: Some("web"),
        addr: Some("192.0.2.1"),
        ..super::Spec::default()
    });
    let app = started(&f.store, 50, 24);
    let buf = draw(SessionTable { app: &app }, 50, 6);
    let shown = lines(&buf).join("\n");
    assert!(shown.contains("user1024@example.com "), "{shown}");
    assert!(
        shown.contains("LABEL") && !shown.contains("ADDRESS"),
        "{shown}"
    );
}
