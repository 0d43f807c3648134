//! The "Scale" promise of the TUI (issue 4), measured: with 1,000,000 sessions the first frame,
//! a frame after `G` and paging from the end take milliseconds, as with 100, rather than time
//! that grows with the store. Ignored by default (building the store takes about a minute);
//! run in release, with its figures printed:
//!
//! ```text
//! cargo test --release -p sessdb-tui -- --ignored --nocapture scale
//! ```
//!
//! `SESSDB_SCALE_DIR=/some/dir` keeps the million-session store there and reuses it on the next
//! run. The test asserts what the frames show, never how long they took.

use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use sessdb::{Admin, ManualClock, Store};

use super::T0_MS;
use crate::app::{Action, App, Job, Report};
use crate::Options;

/// Sessions are created this far apart on the store's clock.
const STEP_MS: u64 = 1;

/// The store's clock when the frames are measured: 20 minutes after the first session, so the
/// one in ten with a 5-minute idle timeout created in the first 15 minutes has expired.
fn measured_at(n: usize) -> i64 {
    T0_MS + (n as i64 * STEP_MS as i64).max(20 * 60 * 1000)
}

/// Opens (building it first if it is not there) a store of `n` sessions of `n / 4` principals.
fn store(dir: &Path, n: usize) -> (Store, ManualClock) {
    let clock = ManualClock::at_ms(T0_MS);
    let path = dir.join(format!("scale-{n}.sessdb"));
    let fresh = !path.exists();
    let store = Store::builder()
        .clock(clock.clone())
        .open(&path)
        .expect("open store");
    if fresh {
        let began = Instant::now();
        let labels = ["web", "mobile", "api"];
        for i in 0..n {
            let mut s = store.create();
            s.set_principal(Some(&format!("user{:06}", i % (n / 4).max(1))))
                .expect("principal");
            s.set_label(Some(labels[i % 3])).expect("label");
            s.set_remote_addr(Some(&format!(
                "10.{}.{}.{}",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255
            )))
            .expect("addr");
            s.insert("cart", &[i, i + 1]).expect("insert");
            if i % 10 == 0 {
                s.set_idle_timeout(Duration::from_secs(5 * 60));
            }
            s.save().expect("save");
            clock.advance(Duration::from_millis(STEP_MS));
        }
        store.flush().expect("flush");
        eprintln!("built {n} sessions in {:.1?}", began.elapsed());
    }
    clock.set_ms(measured_at(n));
    (store, clock)
}

fn terminal() -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(120, 40)).expect("test terminal")
}

fn draw(terminal: &mut Terminal<TestBackend>, app: &App) {
    terminal
        .draw(|frame| crate::ui::render(app, frame))
        .expect("draw");
}

/// The text of row `y` of the screen.
fn row(terminal: &Terminal<TestBackend>, y: u16) -> String {
    let buf = terminal.backend().buffer();
    (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol())
        .collect::<String>()
}

/// What one step cost: `Admin::stats` (twice: the second finds sled's cache warm), then
/// frames, each the app's update (the store reads) and the drawing.
type Figures = Vec<(&'static str, Duration)>;

/// Runs `step` and draws a frame, timed.
fn frame(
    terminal: &mut Terminal<TestBackend>,
    app: &mut App,
    step: impl FnOnce(&mut App),
) -> Duration {
    let began = Instant::now();
    step(app);
    draw(terminal, app);
    began.elapsed()
}

fn measure(store: &Store, n: usize) -> Figures {
    let mut figures = Figures::new();
    let began = Instant::now();
    let stats = store.stats().expect("stats");
    figures.push(("stats", began.elapsed()));
    let began = Instant::now();
    let again = store.stats().expect("stats");
    figures.push(("stats again", began.elapsed()));
    assert_eq!(stats.live + stats.expired, n as u64);
    assert_eq!(again, stats);

    let mut terminal = terminal();
    let mut app = App::new(&Options {
        title: "scale".into(),
        ..Options::default()
    });
    let first = frame(&mut terminal, &mut app, |app| {
        app.update(store, Action::Resize(120, 40));
        app.start(store);
    });
    figures.push(("first frame", first));
    assert_eq!(
        app.listing.rows().len() as u64,
        stats.live.min(crate::listing::PAGE_SIZE as u64)
    );
    // What the counting thread would do, untimed: the header is not part of a frame's cost.
    assert_eq!(app.take_job(), Some(Job::Count));
    app.report(store, Report::Counted(crate::app::count(store)));

    let last = frame(&mut terminal, &mut app, |app| {
        app.update(store, Action::Last);
        while app.busy() {
            app.update(store, Action::Tick);
        }
    });
    figures.push(("frame after G", last));
    // The last row is the last of the store's own last page, listed backward.
    let expected = store
        .list(&sessdb::ListQuery {
            limit: crate::listing::PAGE_SIZE,
            reverse: true,
            ..sessdb::ListQuery::default()
        })
        .expect("list")
        .sessions
        .into_iter()
        .max_by_key(|s| (s.expires_at, s.handle))
        .map(|s| s.handle);
    let selected = app.selected_session().map(|s| s.handle);
    assert_eq!(selected, expected);
    let short = selected.expect("a session").short();
    assert!(
        (0..40).any(|y| row(&terminal, y).contains(&short)),
        "the selected session is on screen"
    );

    // Up from the end across a page boundary: the page above, listed on backward.
    let rows = app.listing.rows().len();
    let mut up = Duration::ZERO;
    for _ in 0..4 {
        up = up.max(frame(&mut terminal, &mut app, |app| {
            app.update(store, Action::PageUp)
        }));
    }
    figures.push(("slowest of 4 PgUp frames", up));
    if n > 2 * crate::listing::PAGE_SIZE {
        assert!(4 * app.table_rows() > rows);
        assert_eq!(app.listing.page_index(), 1, "one page up from the end");
    }
    let first_again = frame(&mut terminal, &mut app, |app| {
        app.update(store, Action::First)
    });
    figures.push(("frame after g", first_again));
    figures
}

#[test]
#[ignore = "builds a store of a million sessions; run in release with --ignored --nocapture"]
fn scale_frames_take_milliseconds_with_a_million_sessions() {
    let temp = tempfile::tempdir().expect("temp dir");
    let keep = std::env::var_os("SESSDB_SCALE_DIR").map(std::path::PathBuf::from);
    let dir = keep.as_deref().unwrap_or(temp.path());
    std::fs::create_dir_all(dir).expect("scale dir");
    for n in [100, 1_000_000] {
        let (store, _clock) = store(dir, n);
        for (what, took) in measure(&store, n) {
            eprintln!("{n:>9} sessions: {what:<24} {took:>9.1?}");
        }
    }
}
