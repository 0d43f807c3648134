//! Tests of the whole crate in three layers (STYLE.md): keys → state with no drawing
//! (`state`), one widget into a `Buffer` (`widgets`), and whole screens on a `TestBackend` as
//! insta snapshots (`screens`). They share the stores built here, whose `ManualClock` makes
//! every relative time on screen the same on every run.

mod scale;
mod screens;
mod state;
mod widgets;

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sessdb::{
    Admin, CheckReport, ExportReport, ImportOptions, ImportReport, ListQuery, ManualClock, Page,
    RepairReport, SessionId, SessionInfo, Stats, Store, Target,
};
use tempfile::TempDir;
use time::OffsetDateTime;

use crate::app::{Action, App};
use crate::clock::Clock;
use crate::Options;

/// 2023-11-14T22:13:20Z.
pub(crate) const T0_MS: i64 = 1_700_000_000_000;

/// A store in a temporary folder with a clock the test moves.
pub(crate) struct Fixture {
    pub(crate) store: Store,
    pub(crate) clock: ManualClock,
    _dir: TempDir,
}

/// What one test session holds.
#[derive(Default)]
pub(crate) struct Spec<'a> {
    pub(crate) name: &'a str,
    pub(crate) principal: Option<&'a str>,
    pub(crate) label: Option<&'a str>,
    pub(crate) addr: Option<&'a str>,
    pub(crate) agent: Option<&'a str>,
    pub(crate) idle: Option<Duration>,
    pub(crate) data: &'a [(&'a str, serde_json::Value)],
}

/// A desktop browser's user agent, as a session records it.
pub(crate) const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

impl Fixture {
    /// The same database opened again read-only, on the same clock: every read works and every
    /// write is refused.
    pub(crate) fn read_only(self) -> Fixture {
        let Fixture { store, clock, _dir } = self;
        let path = store.path().to_path_buf();
        drop(store);
        let store = Store::builder()
            .clock(clock.clone())
            .read_only(true)
            .open(&path)
            .expect("open read-only");
        Fixture { store, clock, _dir }
    }

    /// An empty store at `T0_MS`.
    pub(crate) fn empty() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::at_ms(T0_MS);
        let store = Store::builder()
            .clock(clock.clone())
            .open(dir.path().join("sessions.sessdb"))
            .expect("open store");
        Fixture {
            store,
            clock,
            _dir: dir,
        }
    }

    /// Saves a session whose id derives from `spec.name`, so its handle (and with it the
    /// order of sessions that tie on a sort key) is the same on every run.
    pub(crate) fn add(&self, spec: Spec<'_>) -> sessdb::Handle {
        let mut s = self.store.create_with_id(SessionId::named(spec.name));
        s.set_principal(spec.principal).expect("principal");
        s.set_label(spec.label).expect("label");
        s.set_remote_addr(spec.addr).expect("addr");
        s.set_user_agent(spec.agent).expect("agent");
        if let Some(idle) = spec.idle {
            s.set_idle_timeout(idle);
        }
        for (k, v) in spec.data {
            s.insert(k, v).expect("insert");
        }
        s.save().expect("save");
        s.handle()
    }

    pub(crate) fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Seven sessions of five principals (alice's web session with a browser's user agent, longer
    /// than an 80-column detail pane) and one anonymous; at the fixture's time, 22:27:20 UTC
    /// (14 minutes after the first was created), carol's expires in 20 s and dave's has expired.
    pub(crate) fn demo() -> Fixture {
        let f = Fixture::empty();
        f.add(Spec {
            name: "alice-web",
            principal: Some("alice"),
            label: Some("web"),
            addr: Some("203.0.113.7"),
            agent: Some(CHROME),
            data: &[
                ("cart", serde_json::json!([1, 2, 3])),
                ("theme", serde_json::json!("dark")),
            ],
            ..Spec::default()
        });
        f.advance(120);
        f.add(Spec {
            name: "bob-web",
            principal: Some("bob"),
            label: Some("web"),
            addr: Some("198.51.100.4"),
            data: &[("csrf", serde_json::json!("k2Jx9"))],
            ..Spec::default()
        });
        f.advance(180);
        f.add(Spec {
            name: "guest",
            label: Some("guest"),
            addr: Some("192.0.2.10"),
            ..Spec::default()
        });
        f.advance(300);
        f.add(Spec {
            name: "alice-mobile",
            principal: Some("alice"),
            label: Some("mobile"),
            addr: Some("203.0.113.99"),
            data: &[("device", serde_json::json!({"os": "android", "push": true}))],
            ..Spec::default()
        });
        f.advance(60);
        f.add(Spec {
            name: "carol",
            principal: Some("carol"),
            addr: Some("2001:db8::1"),
            idle: Some(Duration::from_secs(200)),
            ..Spec::default()
        });
        f.advance(60);
        f.add(Spec {
            name: "billing",
            principal: Some("svc-billing"),
            label: Some("api:billing"),
            addr: Some("10.0.0.5"),
            idle: Some(Duration::from_secs(8 * 3600)),
            ..Spec::default()
        });
        f.advance(30);
        f.add(Spec {
            name: "dave",
            principal: Some("dave"),
            label: Some("web"),
            addr: Some("198.51.100.77"),
            idle: Some(Duration::from_secs(60)),
            ..Spec::default()
        });
        f.advance(90);
        f
    }

    /// `n` sessions `user0000`… ten seconds apart (the expiry index's resolution, so the
    /// index order is the creation order), each of its own principal, all live for 20 hours.
    pub(crate) fn many(n: usize) -> Fixture {
        let f = Fixture::empty();
        for i in 0..n {
            let name = format!("user{i:04}");
            f.add(Spec {
                name: &name,
                principal: Some(&name),
                label: Some("web"),
                idle: Some(Duration::from_secs(20 * 3600)),
                ..Spec::default()
            });
            f.advance(10);
        }
        f
    }
}

/// An app started on `admin` in a terminal of `width`×`height`, with its counts, as the
/// event loop leaves it before the first key once the worker has counted.
pub(crate) fn started(admin: &dyn Admin, width: u16, height: u16) -> App {
    started_with(
        admin,
        width,
        height,
        &Options {
            title: "/srv/app/sessions.sessdb".into(),
            refresh: Duration::from_secs(2),
            no_color: false,
            read_only: None,
            as_of: None,
            folder: None,
        },
    )
}

/// As [`started`], with `options`.
pub(crate) fn started_with(admin: &dyn Admin, width: u16, height: u16, options: &Options) -> App {
    start(admin, width, height, App::new(options))
}

/// As [`started`], on `clock`: the time that says what the app's reads cost.
pub(crate) fn started_on(admin: &dyn Admin, width: u16, height: u16, clock: &Clock) -> App {
    let options = Options {
        title: "/srv/app/sessions.sessdb".into(),
        ..Options::default()
    };
    started_on_with(admin, width, height, clock, &options)
}

/// As [`started_on`], with `options`.
pub(crate) fn started_on_with(
    admin: &dyn Admin,
    width: u16,
    height: u16,
    clock: &Clock,
    options: &Options,
) -> App {
    start(
        admin,
        width,
        height,
        App::new(options).with_clock(clock.clone()),
    )
}

fn start(admin: &dyn Admin, width: u16, height: u16, mut app: App) -> App {
    app.update(admin, Action::Resize(width, height));
    app.start(admin);
    work_now(&mut app, admin);
    app
}

/// Does the jobs the app asked for (counts, a purge) at once, on this thread: what the event
/// loop's worker does, without a thread, so these tests stay deterministic.
pub(crate) fn work_now(app: &mut App, admin: &dyn Admin) {
    while let Some(job) = app.take_job() {
        crate::app::work(admin, job, &mut |report| app.report(admin, report));
    }
}

pub(crate) fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub(crate) fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// Feeds keys through the key map and `update`, as the event loop does.
pub(crate) fn press(app: &mut App, admin: &dyn Admin, keys: &[KeyEvent]) {
    for k in keys {
        let filtered = app.listing.view().filter.is_active();
        if let Some(action) = crate::keys::action(&app.mode, filtered, *k) {
            app.update(admin, action);
            work_now(app, admin);
        }
    }
}

/// The status line of `app`'s screen, as drawn.
pub(crate) fn status_line(app: &App) -> String {
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(
        app.area.width,
        app.area.height,
    ))
    .expect("test terminal");
    terminal
        .draw(|frame| crate::ui::render(app, frame))
        .expect("draw");
    row(&terminal, app.area.height - 2)
}

/// The text of row `y` of the screen.
pub(crate) fn row(terminal: &ratatui::Terminal<ratatui::backend::TestBackend>, y: u16) -> String {
    let buf = terminal.backend().buffer();
    (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect()
}

/// Types `text` as separate key presses.
pub(crate) fn type_text(app: &mut App, admin: &dyn Admin, text: &str) {
    let keys: Vec<KeyEvent> = text.chars().map(ch).collect();
    press(app, admin, &keys);
}

/// The principals of the loaded rows, in order.
pub(crate) fn principals(app: &App) -> Vec<String> {
    app.listing
        .rows()
        .iter()
        .map(|s| s.principal.clone().unwrap_or_else(|| "-".into()))
        .collect()
}

/// How long a client waits on an application that stopped before it fails with
/// `Error::Unresponsive`: twice `RemoteAdmin`'s default timeout of 10 s.
pub(crate) const HUNG: Duration = Duration::from_secs(20);

/// A transport over a store whose reads fail while `failing` is set, and whose `stats`,
/// `count_expired` and `purge` wait while it is held, as a large store's count or purge keeps
/// the worker thread busy.
pub(crate) struct Flaky {
    /// A handle of its own, so that a counting thread nothing joins can own the transport.
    inner: sessdb::Store,
    pub(crate) failing: AtomicBool,
    /// `show` fails while set, whatever `failing` says: one session that cannot be read while
    /// the listing can.
    pub(crate) show_failing: AtomicBool,
    /// `stats` fails while set, whatever `failing` says: a count that fails while the rows
    /// are read.
    pub(crate) stats_failing: AtomicBool,
    held: Mutex<bool>,
    released: Condvar,
    /// `stats` calls that have returned (with an error too).
    pub(crate) counts: AtomicUsize,
    /// `list` calls.
    pub(crate) lists: AtomicUsize,
    /// `show` calls.
    pub(crate) shows: AtomicUsize,
    /// `list` fails while set, as through the admin socket of an application that stopped:
    /// with `Error::Unresponsive` once the client's timeout ([`HUNG`]) has passed on the
    /// app's clock, in place of the call's usual cost.
    pub(crate) hung: AtomicBool,
    /// `invalidate` fails while set, as through the admin socket of an application that had
    /// stopped before the request could be sent: `Error::Unresponsive`, nothing done.
    pub(crate) unreachable: AtomicBool,
    /// What each `list` call takes on the app's clock: the clock is moved on by it.
    list_cost: Option<(Clock, Duration)>,
}

impl Flaky {
    pub(crate) fn new(inner: &sessdb::Store) -> Self {
        Flaky {
            inner: inner.clone(),
            failing: AtomicBool::new(false),
            show_failing: AtomicBool::new(false),
            stats_failing: AtomicBool::new(false),
            held: Mutex::new(false),
            released: Condvar::new(),
            counts: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            shows: AtomicUsize::new(0),
            hung: AtomicBool::new(false),
            unreachable: AtomicBool::new(false),
            list_cost: None,
        }
    }

    /// Makes every `list` call take `each` on `clock`, as a large store's scan takes time.
    pub(crate) fn costing(self, clock: &Clock, each: Duration) -> Self {
        Flaky {
            list_cost: Some((clock.clone(), each)),
            ..self
        }
    }

    /// Makes `stats`, `count_expired` and `purge` wait until [`Flaky::release`].
    pub(crate) fn hold(&self) {
        *self.held.lock().expect("lock") = true;
    }

    pub(crate) fn release(&self) {
        *self.held.lock().expect("lock") = false;
        self.released.notify_all();
    }

    /// Waits while held. The limit only turns a hang (a loop that counts on its own thread
    /// and so never releases) into an error the test reports.
    fn wait(&self) -> sessdb::Result<()> {
        let held = self.held.lock().expect("lock");
        let (held, waited) = self
            .released
            .wait_timeout_while(held, Duration::from_secs(30), |held| *held)
            .expect("lock");
        drop(held);
        if waited.timed_out() {
            return Err(sessdb::Error::Io {
                path: "/srv/app/sessions.sessdb".into(),
                source: std::io::Error::other("held work never released"),
            });
        }
        Ok(())
    }

    fn check(&self) -> sessdb::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(sessdb::Error::Io {
                path: "/srv/app/sessions.sessdb".into(),
                source: std::io::Error::other("disk gone"),
            });
        }
        Ok(())
    }
}

impl Admin for Flaky {
    fn stats(&self) -> sessdb::Result<Stats> {
        let stats = self.wait().and_then(|()| self.check()).and_then(|()| {
            match self.stats_failing.load(Ordering::SeqCst) {
                true => Err(sessdb::Error::Io {
                    path: "/srv/app/sessions.sessdb".into(),
                    source: std::io::Error::other("count cut short"),
                }),
                false => self.inner.stats(),
            }
        });
        self.counts.fetch_add(1, Ordering::SeqCst);
        stats
    }
    fn list(&self, query: &ListQuery) -> sessdb::Result<Page> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let hung = self.hung.load(Ordering::SeqCst);
        if let Some((clock, each)) = &self.list_cost {
            clock.advance(if hung { HUNG } else { *each });
        }
        if hung {
            return Err(sessdb::Error::Unresponsive {
                path: "/srv/app/admin.sock".into(),
                waited: HUNG,
                sent: true,
            });
        }
        self.check()?;
        self.inner.list(query)
    }
    fn show(&self, target: &Target) -> sessdb::Result<Option<SessionInfo>> {
        self.shows.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        if self.show_failing.load(Ordering::SeqCst) {
            return Err(sessdb::Error::Io {
                path: "/srv/app/sessions.sessdb".into(),
                source: std::io::Error::other("read timed out"),
            });
        }
        self.inner.show(target)
    }
    fn invalidate(&self, target: &Target) -> sessdb::Result<bool> {
        self.check()?;
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(sessdb::Error::Unresponsive {
                path: "/srv/app/admin.sock".into(),
                waited: HUNG,
                sent: false,
            });
        }
        if self.hung.load(Ordering::SeqCst) {
            // Sent, and the application stopped before it answered: done once it resumes.
            Admin::invalidate(&self.inner, target)?;
            return Err(sessdb::Error::Unresponsive {
                path: "/srv/app/admin.sock".into(),
                waited: HUNG,
                sent: true,
            });
        }
        Admin::invalidate(&self.inner, target)
    }
    fn invalidate_principal(&self, principal: &str) -> sessdb::Result<usize> {
        self.check()?;
        Admin::invalidate_principal(&self.inner, principal)
    }
    fn purge(&self, progress: &mut dyn FnMut(u64)) -> sessdb::Result<u64> {
        self.wait()?;
        self.check()?;
        self.inner.purge(progress)
    }
    fn count_expired(&self) -> sessdb::Result<u64> {
        self.wait()?;
        self.check()?;
        Admin::count_expired(&self.inner)
    }
    fn export(&self, out: &mut dyn Write, include_expired: bool) -> sessdb::Result<ExportReport> {
        self.inner.export(out, include_expired)
    }
    fn import(
        &self,
        input: &mut dyn BufRead,
        options: &ImportOptions,
    ) -> sessdb::Result<ImportReport> {
        self.inner.import(input, options)
    }
    fn check(&self) -> sessdb::Result<CheckReport> {
        Admin::check(&self.inner)
    }
    fn repair(&self) -> sessdb::Result<RepairReport> {
        self.inner.repair()
    }
    fn now(&self) -> OffsetDateTime {
        Admin::now(&self.inner)
    }
}
