//! The state of the TUI and the one place it changes, [`App::update`]. Data is read from the
//! store here, on an action or a tick, and never while drawing; `ui` only reads `&App`. What
//! reads or writes every record (the header's counts, the count of expired sessions and the
//! purge that `p` asks for) is only asked for here ([`App::take_job`]): the event loop has it
//! made on a worker thread and hands back what it reports ([`App::report`]), so that the keys
//! keep working meanwhile.

use std::error::Error as _;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ratatui::layout::Rect;
use ratatui::text::Line;
use sessdb::{Admin, Handle, ListQuery, SessionInfo, Stats, Status, Target};
use time::OffsetDateTime;

use crate::clock::{Clock, Cost};
use crate::listing::{Filter, Listing, View};
use crate::theme::Theme;
use crate::Options;

/// A `stats` call slower than this (a full scan of a large store) is not repeated on every
/// auto-refresh, only [`STATS_COST_FACTOR`] times its cost after it ended.
const SLOW_STATS: Duration = Duration::from_millis(200);
const STATS_COST_FACTOR: u32 = 30;
/// A search scan that filled its page over several calls and took this long or longer (a
/// filter that matches little of a large store) is read again by an auto-refresh only
/// [`SCAN_COST_FACTOR`] times its cost after it ended, rather than started over and over.
const SLOW_SCAN: Duration = SLOW_STATS;
const SCAN_COST_FACTOR: u32 = 10;
/// How long what the worker said (a purge's outcome) stays through keys: one pressed sooner
/// was not pressed in answer to it.
const SEEN: Duration = Duration::from_secs(3);
/// The shortest auto-refresh interval honoured; shorter ones would busy-loop.
const MIN_REFRESH: Duration = Duration::from_millis(100);

/// Something the operator (or the clock) asks for. Keys map to actions in `keys`; the event
/// loop adds [`Action::Tick`], [`Action::AutoRefresh`] and [`Action::Resize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    ToggleDetail,
    OpenFilter,
    FilterInput(char),
    FilterBackspace,
    /// Leaves the filter prompt, keeping the filter.
    FilterDone,
    ClearFilter,
    CycleSort,
    ToggleExpired,
    AskInvalidate,
    AskInvalidatePrincipal,
    AskPurge,
    /// `y` (true) or `n` (false) to a confirmation.
    Answer(bool),
    Refresh,
    ToggleAutoRefresh,
    Help,
    /// Closes the help, the detail pane or the filter prompt.
    Back,
    /// `Esc` with nothing to close or clear: said, not a way out (a pane that closed by
    /// itself, or a filter that came out empty, made a user's next `Esc` quit the TUI).
    NothingToClose,
    /// Time passed with no input: continue a scan.
    Tick,
    /// The auto-refresh interval passed.
    AutoRefresh,
    /// The terminal has a new size.
    Resize(u16, u16),
}

/// What the screen is doing; each mode has its own keys.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mode {
    /// Moving through the table.
    Browsing,
    /// The detail pane of one session is open.
    Detail(Detail),
    /// Typing a filter; it applies as it is typed.
    Filter { input: String },
    /// A destructive action waits for `y` or `n`.
    Confirm { ask: Confirm, back: Box<Mode> },
    /// The key help is shown over the screen.
    Help { back: Box<Mode> },
}

/// The session in the detail pane, pinned by handle: it stays the same session while the
/// table refreshes or pages, and says so when it is gone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Detail {
    pub(crate) handle: Handle,
    /// `None` once the session no longer exists.
    pub(crate) info: Option<Box<SessionInfo>>,
    /// What the pane shows, formatted to the pane's width when the session is read or the
    /// terminal resized (not on every frame: its data can be large).
    pub(crate) lines: Vec<Line<'static>>,
    /// When the session was read: the pane's "ago" and "in" are as of then.
    pub(crate) read_at: OffsetDateTime,
    /// The cells a line may take, which `lines` were formatted for.
    pub(crate) width: usize,
    /// The first line shown.
    pub(crate) scroll: usize,
    /// What the pane shows may be out of date: the last read of the session failed, it was
    /// opened on stale rows, or the database folder is gone. The rows are marked apart.
    pub(crate) stale: bool,
}

impl Detail {
    fn new(
        handle: Handle,
        info: Option<SessionInfo>,
        theme: &Theme,
        now: OffsetDateTime,
        area: Rect,
        stale: bool,
    ) -> Self {
        let width = usize::from(crate::ui::detail_body_width(area));
        let lines = crate::ui::detail_lines(theme, now, width, &handle, info.as_ref());
        Detail {
            handle,
            info: info.map(Box::new),
            lines,
            read_at: now,
            width,
            scroll: 0,
            stale,
        }
    }
}

/// A destructive action and what it will touch, as the dialog states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Confirm {
    /// Invalidate one session.
    Invalidate {
        handle: Handle,
        principal: Option<String>,
    },
    /// Invalidate every session of a principal.
    InvalidatePrincipal { principal: String, count: usize },
    /// Purge the expired sessions; `count` is `None` while they are being counted (a large
    /// store's count takes seconds, and `y` need not wait for it).
    Purge { count: Option<u64> },
}

/// Work the event loop has made on its worker thread, one job at a time, so that reading or
/// writing every record of a large store never holds up a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Job {
    /// The header's counts.
    Count,
    /// How many sessions `p` would purge.
    CountExpired,
    /// The purge the operator confirmed.
    Purge,
}

/// What the worker hands back. Each job ends with one report; a purge sends its running
/// total before that.
#[derive(Debug)]
pub(crate) enum Report {
    Counted(Counted),
    Expired(sessdb::Result<u64>),
    /// Expired sessions removed so far by the purge under way.
    Purging(u64),
    Purged(sessdb::Result<u64>),
}

impl Report {
    /// Whether this report ends its job.
    fn ends_job(&self) -> bool {
        !matches!(self, Report::Purging(_))
    }
}

/// The purge under way on the worker thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PurgeRun {
    /// Removed so far.
    pub(crate) removed: u64,
    /// How many were counted when the operator confirmed, if the count had come.
    pub(crate) of: Option<u64>,
    /// Whether the worker has started it: it waits for a count under way to end first.
    pub(crate) started: bool,
}

/// Does `job` on `admin`, handing each report to `report`: what the worker thread runs.
pub(crate) fn work(admin: &dyn Admin, job: Job, report: &mut dyn FnMut(Report)) {
    match job {
        Job::Count => report(Report::Counted(count(admin))),
        Job::CountExpired => report(Report::Expired(admin.count_expired())),
        Job::Purge => {
            let purged = admin.purge(&mut |removed| report(Report::Purging(removed)));
            report(Report::Purged(purged));
        }
    }
}

/// Why the rows on screen may no longer be what the store holds. (The header's counts and
/// the detail pane are read apart, and marked apart: [`App::count_failed`], [`Detail::stale`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stale {
    /// The last read of the rows (a refresh, a page, a search's scan) failed: an application
    /// that exited, a disk error. The rows are those of the last read that worked, at
    /// `refreshed_at`.
    ReadFailed,
    /// The database folder opened directly was deleted or replaced. The store still reads
    /// and writes its open files, so nothing fails, but what it writes is lost.
    FolderGone,
}

/// The database folder opened directly, and which folder it was (device and inode) when the
/// TUI started: a folder deleted, or deleted and made again, is no longer that one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Folder {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl Folder {
    fn new(path: &Path) -> Folder {
        Folder {
            path: path.to_path_buf(),
            id: Folder::id(path).ok(),
        }
    }

    fn id(path: &Path) -> io::Result<(u64, u64)> {
        std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
    }

    /// Whether the folder is gone. Other errors (a permission changed) say nothing about
    /// where the store's files are, and are not taken for it.
    fn is_gone(&self) -> bool {
        match Folder::id(&self.path) {
            Ok(id) => self.id.is_some_and(|was| was != id),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }
}

/// The status line. An error says what it is about, since that decides when it is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    Info(String),
    /// A read failed (the rows, the detail pane, the counts), or the database folder is gone:
    /// over once everything on screen has been read again, which an auto-refresh may do
    /// ([`App::settle`]). It never takes an action's error's place
    /// ([`App::say_read_error`]).
    ReadError(String),
    /// What the operator asked for failed or was refused (`d`, `D`, `p`): over at their next
    /// key, so that no refresh, failed or not, takes it away before it was read.
    ActionError(String),
}

impl Action {
    /// Whether the operator pressed a key for it, rather than the event loop sending it.
    fn is_key(self) -> bool {
        !matches!(
            self,
            Action::Tick | Action::AutoRefresh | Action::Resize(..)
        )
    }
}

/// The whole state of the TUI.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) title: String,
    /// Why the write keys are refused, if they are.
    read_only: Option<String>,
    /// The fixed time every read is as of (`sessctl --as-of`), shown in the header.
    pub(crate) as_of: Option<OffsetDateTime>,
    pub(crate) theme: Theme,
    pub(crate) refresh: Duration,
    pub(crate) auto_refresh: bool,
    pub(crate) mode: Mode,
    pub(crate) listing: Listing,
    /// The filter as typed (what the header shows).
    pub(crate) filter_text: String,
    /// Index of the selected row in the loaded page.
    pub(crate) selected: usize,
    /// The first row shown.
    pub(crate) offset: usize,
    /// The session the operator chose; selected again whenever it is on the loaded page.
    sticky: Option<Handle>,
    pub(crate) stats: Option<Stats>,
    /// The store's time when `stats` were read.
    pub(crate) stats_at: Option<OffsetDateTime>,
    /// The last refresh skipped a slow count (a large store): the header says how old it is.
    pub(crate) stats_skipped: bool,
    /// A count is wanted and not yet handed to the worker.
    count_wanted: bool,
    /// A count is being made.
    pub(crate) counting: bool,
    /// A count of the expired sessions is wanted (`p`), and not yet handed to the worker.
    expired_wanted: bool,
    /// The expired sessions are being counted.
    expired_counting: bool,
    /// A purge was confirmed and not yet handed to the worker.
    purge_wanted: bool,
    /// The purge under way (or wanted), which the status line follows.
    pub(crate) purging: Option<PurgeRun>,
    /// The job the worker is doing.
    working: Option<Job>,
    /// The last count failed: the counts shown, if any, are those of the last that worked,
    /// at `stats_at`. The rows are read apart from them, and are not marked for it.
    pub(crate) count_failed: bool,
    /// The store's time at the last refresh: every relative time on screen is against it.
    pub(crate) now: OffsetDateTime,
    /// The store's time at the last read of the table that worked.
    pub(crate) refreshed_at: Option<OffsetDateTime>,
    /// Set while the rows on screen may be out of date.
    pub(crate) stale: Option<Stale>,
    /// A read on this thread found the application behind the admin socket not answering
    /// (stopped or hung): each call to it blocks the keys for the client's timeout, so the
    /// auto-refresh makes none until `r` tries again.
    pub(crate) unanswered: bool,
    /// The database folder, when opened directly.
    folder: Option<Folder>,
    pub(crate) message: Option<Message>,
    /// When the worker's report put `message` there, on `clock` (see [`SEEN`]).
    said_at: Option<Instant>,
    /// What the worker said while an action's error was on screen: shown at the next key.
    said_next: Option<Message>,
    /// The error of the last read that failed, until everything on screen is read again: what
    /// the status line says once an action's error in front of it is over.
    last_read_error: Option<String>,
    /// The terminal's size.
    pub(crate) area: Rect,
    pub(crate) quit: bool,
    /// What the last count took, and when it came (on `clock`).
    stats_cost: Option<Cost>,
    /// The TUI's own time, which says when a slow read may be repeated.
    clock: Clock,
}

impl App {
    /// A new app; nothing is read until [`App::start`].
    pub(crate) fn new(options: &Options) -> App {
        App {
            title: options.title.clone(),
            read_only: options.read_only.clone(),
            as_of: options.as_of,
            theme: Theme::new(options.no_color),
            refresh: options.refresh.max(MIN_REFRESH),
            auto_refresh: true,
            mode: Mode::Browsing,
            listing: Listing::new(View::default(), Clock::default()),
            filter_text: String::new(),
            selected: 0,
            offset: 0,
            sticky: None,
            stats: None,
            stats_at: None,
            stats_skipped: false,
            count_wanted: false,
            counting: false,
            expired_wanted: false,
            expired_counting: false,
            purge_wanted: false,
            purging: None,
            working: None,
            count_failed: false,
            now: OffsetDateTime::UNIX_EPOCH,
            refreshed_at: None,
            stale: None,
            unanswered: false,
            folder: options.folder.as_deref().map(Folder::new),
            message: None,
            said_at: None,
            said_next: None,
            last_read_error: None,
            area: Rect::new(0, 0, 80, 24),
            quit: false,
            stats_cost: None,
            clock: Clock::default(),
        }
    }

    /// The app on `clock` rather than the system's, before anything is read.
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Clock) -> App {
        self.listing = Listing::new(self.listing.view().clone(), clock.clone());
        self.clock = clock;
        self
    }

    /// Loads the first page, and asks for the header's counts, which come later (see
    /// [`App::take_job`]) so that the table is drawn first.
    pub(crate) fn start(&mut self, admin: &dyn Admin) {
        self.now = admin.now();
        match self.listing.reload(admin) {
            Ok(()) => self.read_at(self.now),
            Err(e) => {
                self.read_error(&e);
                self.read_failed();
            }
        }
        self.select(0);
        self.count_wanted = true;
    }

    /// The job the worker should start now, if any; it is the worker's until its last
    /// [`App::report`]. One runs at a time, the operator's first: a purge, then a count of the
    /// expired sessions, then the header's counts.
    pub(crate) fn take_job(&mut self) -> Option<Job> {
        if self.working.is_some() {
            return None;
        }
        let job = if self.purge_wanted {
            self.purge_wanted = false;
            if let Some(run) = &mut self.purging {
                run.started = true;
            }
            Job::Purge
        } else if self.expired_wanted {
            self.expired_wanted = false;
            self.expired_counting = true;
            Job::CountExpired
        } else if self.count_wanted {
            self.count_wanted = false;
            self.counting = true;
            Job::Count
        } else {
            return None;
        };
        self.working = Some(job);
        Some(job)
    }

    /// Whether the keys that write (`d`, `D`, `p`) may: not in a read-only view.
    pub(crate) fn writes(&self) -> bool {
        self.read_only.is_none()
    }

    /// Whether the worker has a job: the event loop looks for its reports meanwhile.
    pub(crate) fn working(&self) -> bool {
        self.working.is_some()
    }

    /// Takes what the worker reports. `admin` is for what follows on this thread (a purge
    /// that ended is followed by a refresh).
    pub(crate) fn report(&mut self, admin: &dyn Admin, report: Report) {
        if report.ends_job() {
            self.working = None;
        }
        self.said_by_worker(|app| match report {
            Report::Counted(count) => app.counted(count),
            Report::Expired(count) => app.expired_counted(count),
            Report::Purging(removed) => {
                if let Some(run) = &mut app.purging {
                    run.removed = removed;
                }
            }
            Report::Purged(purged) => app.purged(admin, purged),
        });
        self.settle();
    }

    /// Applies what the worker reported; a message it leaves was said between keys (see
    /// [`SEEN`]).
    ///
    /// An action's error that a key left on screen is not replaced before the operator's next
    /// key (a purge that ended just after a failed `d` would hide the failure): what the worker
    /// said is shown at that key instead.
    fn said_by_worker(&mut self, apply: impl FnOnce(&mut App)) {
        let before = self.message.clone();
        apply(self);
        if self.message == before {
            return;
        }
        if matches!(before, Some(Message::ActionError(_))) && self.said_at.is_none() {
            self.said_next = std::mem::replace(&mut self.message, before);
        } else {
            self.said_at = Some(self.clock.now());
        }
    }

    /// The job the worker had will not end: its thread is gone (it panicked, and the panic
    /// hook has said so), or could not be given the job.
    pub(crate) fn worker_gone(&mut self) {
        const GONE: &str = "the TUI's worker thread stopped";
        let job = self.working.take();
        self.said_by_worker(|app| match job {
            Some(Job::Count) => {
                app.counting = false;
                app.count_failed = true;
                app.say_read_error("Counting sessions failed".into());
            }
            Some(Job::CountExpired) => {
                app.expired_counting = false;
                if app.purge_question_waiting() {
                    app.close_question();
                    app.message = Some(Message::ActionError(format!(
                        "Could not count the expired sessions: {GONE}"
                    )));
                }
            }
            Some(Job::Purge) => {
                let what = app.purge_not_finished();
                app.message = Some(Message::ActionError(format!("{what}: {GONE}")));
            }
            None => {}
        });
    }

    /// The header's counts have come.
    fn counted(&mut self, count: Counted) {
        self.counting = false;
        // A failed count's time says little of what counting costs the store: through a hung
        // admin socket it is the client's timeout (up to 20 s), and 30 times that would keep
        // the counts stale for 10 minutes after the application came back. It counts as no
        // more than the last count that worked took (nothing, if none did), which still spares
        // a store that fails at the end of each long count.
        let took = match &count.stats {
            Ok(_) => count.cost,
            Err(_) => count
                .cost
                .min(self.stats_cost.map_or(Duration::ZERO, |c| c.took)),
        };
        self.stats_cost = Some(Cost {
            took,
            ended: self.clock.now(),
        });
        match count.stats {
            Ok(stats) => {
                self.stats = Some(stats);
                self.stats_at = Some(count.at);
                self.count_failed = false;
            }
            Err(e) => {
                // Not a reason to pause the auto-refresh: the count waited on its own thread
                // (and connection), the keys did not.
                self.say_read_error(error_text(&e));
                self.count_failed = true;
            }
        }
    }

    /// Whether there is work to continue on the next tick: a scan that has not filled the
    /// page. Not after a read failed: the event loop ticks at once while busy, and would ask a
    /// store that is gone again and again; the next refresh reads the page from its start.
    pub(crate) fn busy(&self) -> bool {
        self.listing.is_incomplete() && self.stale != Some(Stale::ReadFailed)
    }

    /// The selected session of the table.
    pub(crate) fn selected_session(&self) -> Option<&SessionInfo> {
        self.listing.rows().get(self.selected)
    }

    /// The detail pane's state, also while a dialog or the help covers it.
    pub(crate) fn detail(&self) -> Option<&Detail> {
        let mut mode = &self.mode;
        loop {
            match mode {
                Mode::Detail(d) => return Some(d),
                Mode::Confirm { back, .. } | Mode::Help { back } => mode = back,
                Mode::Browsing | Mode::Filter { .. } => return None,
            }
        }
    }

    fn detail_mut(&mut self) -> Option<&mut Detail> {
        let mut mode = &mut self.mode;
        loop {
            match mode {
                Mode::Detail(d) => return Some(d),
                Mode::Confirm { back, .. } | Mode::Help { back } => mode = back,
                Mode::Browsing | Mode::Filter { .. } => return None,
            }
        }
    }

    /// How many table rows fit on screen now.
    pub(crate) fn table_rows(&self) -> usize {
        usize::from(crate::ui::table_body_height(
            self.area,
            self.detail().is_some(),
        ))
    }

    /// How many detail lines fit on screen now.
    fn detail_rows(&self) -> usize {
        usize::from(crate::ui::detail_body_height(self.area)).max(1)
    }

    /// Applies one action. Store errors become the status line; nothing here panics on them.
    pub(crate) fn update(&mut self, admin: &dyn Admin, action: Action) {
        // The operator has seen what their last action did, or why it failed, once they press
        // a key (a success left on screen would read as the outcome of the next one). A read's
        // error that came meanwhile, and is not over, is said next. What the worker said (a
        // purge's outcome) came between keys, unasked at that moment: a key pressed within
        // [`SEEN`] of it was not an answer to it, and leaves it.
        let mut behind = None;
        if action.is_key()
            && matches!(
                self.message,
                Some(Message::ActionError(_) | Message::Info(_))
            )
        {
            let now = self.clock.now();
            let unseen = self
                .said_at
                .is_some_and(|at| now.saturating_duration_since(at) < SEEN);
            if !unseen {
                self.message = self.last_read_error.clone().map(Message::ReadError);
                // What the worker said behind the action's error: shown unless this key has
                // something to say itself.
                behind = self.said_next.take();
            }
        }
        let before = self.message.clone();
        self.apply(admin, action);
        if self.message != before {
            // Said by this key, not by the worker; what the worker said waits for the next.
            self.said_at = None;
            self.said_next = behind.or(self.said_next.take());
        } else if let Some(next) = behind {
            self.message = Some(next);
            self.said_at = Some(self.clock.now());
        }
        self.settle();
    }

    fn apply(&mut self, admin: &dyn Admin, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::Resize(width, height) => {
                self.area = Rect::new(0, 0, width, height);
                self.fix_offset();
                self.fit_detail();
            }
            Action::Tick => self.tick(admin),
            Action::AutoRefresh => {
                if self.auto_refresh && !self.unanswered {
                    self.refresh(admin, false);
                }
            }
            Action::Refresh => {
                self.unanswered = false;
                self.refresh(admin, true);
            }
            Action::ToggleAutoRefresh => {
                self.auto_refresh = !self.auto_refresh;
                let text = if self.auto_refresh && self.unanswered {
                    // Still paused: saying only "on" read as if it would refresh.
                    format!(
                        "Auto-refresh on, every {}, paused until the application answers (r \
                         tries again)",
                        crate::format::span(self.refresh)
                    )
                } else if self.auto_refresh {
                    format!(
                        "Auto-refresh on, every {}",
                        crate::format::span(self.refresh)
                    )
                } else {
                    "Auto-refresh off (r refreshes)".to_string()
                };
                self.message = Some(Message::Info(text));
            }
            Action::Up | Action::Down | Action::PageUp | Action::PageDown => {
                if let Mode::Detail(_) = self.mode {
                    self.scroll_detail(action);
                } else {
                    self.move_selection(admin, action);
                }
            }
            Action::First => {
                if let Mode::Detail(d) = &mut self.mode {
                    d.scroll = 0;
                } else if !self.listing.at_first() {
                    if self.load_page(admin, |l, a| l.first_page(a).map(|()| true)) {
                        self.offset = 0;
                        self.select_user(0);
                    }
                } else {
                    self.select_user(0);
                }
            }
            Action::Last => {
                if let Mode::Detail(_) = self.mode {
                    let max = self.detail_max_scroll();
                    if let Mode::Detail(d) = &mut self.mode {
                        d.scroll = max;
                    }
                } else if self.listing.at_last()
                    || self.load_page(admin, |l, a| l.last_page(a).map(|()| true))
                {
                    self.select_user(self.listing.rows().len().saturating_sub(1));
                }
            }
            Action::ToggleDetail => match &self.mode {
                Mode::Detail(_) => self.mode = Mode::Browsing,
                Mode::Browsing => match self.selected_session() {
                    Some(info) => {
                        let (handle, info) = (info.handle, Some(info.clone()));
                        // It shows the row as it was read, stale or not.
                        let stale = self.stale.is_some();
                        self.mode = Mode::Detail(Detail::new(
                            handle,
                            info,
                            &self.theme,
                            self.now,
                            self.area,
                            stale,
                        ));
                        self.fix_offset();
                    }
                    None => self.message = Some(Message::Info("No session selected".into())),
                },
                _ => {}
            },
            Action::OpenFilter => {
                if matches!(self.mode, Mode::Browsing | Mode::Detail(_)) {
                    self.mode = Mode::Filter {
                        input: self.filter_text.clone(),
                    };
                    self.fix_offset();
                }
            }
            Action::FilterInput(c) => {
                if let Mode::Filter { input } = &mut self.mode {
                    input.push(c);
                    let text = input.clone();
                    self.set_filter(admin, text);
                }
            }
            Action::FilterBackspace => {
                if let Mode::Filter { input } = &mut self.mode {
                    input.pop();
                    let text = input.clone();
                    self.set_filter(admin, text);
                }
            }
            Action::FilterDone => {
                if let Mode::Filter { .. } = self.mode {
                    self.mode = Mode::Browsing;
                }
            }
            Action::ClearFilter => {
                if matches!(self.mode, Mode::Filter { .. }) {
                    self.mode = Mode::Browsing;
                }
                self.set_filter(admin, String::new());
            }
            Action::CycleSort => {
                let sort = self.listing.view().sort.next();
                self.listing.set_sort(sort);
                self.reselect();
            }
            Action::ToggleExpired => {
                let mut view = self.listing.view().clone();
                view.show_expired = !view.show_expired;
                self.message = Some(Message::Info(
                    if view.show_expired {
                        "Showing expired sessions too (dimmed)"
                    } else {
                        "Showing live sessions only"
                    }
                    .into(),
                ));
                self.set_view(admin, view);
            }
            Action::AskInvalidate | Action::AskInvalidatePrincipal | Action::AskPurge
                if self.read_only.is_some() =>
            {
                self.message = self.read_only.clone().map(Message::ActionError);
            }
            Action::AskInvalidate => {
                if !self.refused_folder_gone("No session invalidated") {
                    self.ask_invalidate();
                }
            }
            Action::AskInvalidatePrincipal => {
                if !self.refused_folder_gone("No session invalidated") {
                    self.ask_invalidate_principal(admin);
                }
            }
            Action::AskPurge => {
                if !self.refused_folder_gone("Nothing purged") {
                    self.ask_purge();
                }
            }
            Action::Answer(yes) => self.answer(admin, yes),
            Action::Help => {
                if !matches!(self.mode, Mode::Help { .. } | Mode::Confirm { .. }) {
                    let back = std::mem::replace(&mut self.mode, Mode::Browsing);
                    self.mode = Mode::Help {
                        back: Box::new(back),
                    };
                }
            }
            Action::NothingToClose => {
                self.message = Some(Message::Info("Nothing to close or clear (q quits)".into()));
            }
            Action::Back => {
                let mode = std::mem::replace(&mut self.mode, Mode::Browsing);
                self.mode = match mode {
                    Mode::Help { back } => *back,
                    Mode::Confirm { back, .. } => *back,
                    Mode::Browsing | Mode::Detail(_) | Mode::Filter { .. } => Mode::Browsing,
                };
                self.fix_offset();
            }
        }
    }

    fn tick(&mut self, admin: &dyn Admin) {
        if self.busy() {
            self.try_load(admin, |l, a| l.continue_scan(a));
            self.reselect();
        }
    }

    fn refresh(&mut self, admin: &dyn Admin, manual: bool) {
        if self.folder_gone() {
            return;
        }
        // Rows not read keep the time of their last read in the header, as they are.
        let mut now = None;
        if manual || self.table_due() {
            let mut rows_read = self.try_load(admin, |l, a| l.reload(a)).is_some();
            if rows_read && self.listing.rows().is_empty() && self.listing.page_index() > 0 {
                // The sessions of this page are gone (invalidated, purged, expired): step back.
                rows_read = self.try_load(admin, |l, a| l.back(a)).is_some();
            }
            self.reselect();
            if rows_read {
                // The store's time once the rows came, as for a page: an application that
                // stopped answering is waited for by the read, not also by the clock.
                let at = admin.now();
                self.read_at(at);
                now = Some(at);
            }
        }
        if self.unanswered {
            // Every further call would wait for the application again, keys and all.
            if let Some(d) = self.detail_mut() {
                d.stale = true;
            }
            return;
        }
        // A count already running answers an auto-refresh; a manual one (or an action's) may
        // have changed what it counts, so it gets a fresh count after that one.
        let stats_due = !self.counting
            && self
                .stats_cost
                .is_none_or(|c| c.due_again(self.clock.now(), SLOW_STATS, STATS_COST_FACTOR));
        self.stats_skipped = !(manual || stats_due);
        if !self.stats_skipped {
            self.count_wanted = true;
        }
        // The open session is a read of its own: when it fails the pane is stale, and the
        // rows, read or not, are marked by their own read.
        if let Some(handle) = self.detail().map(|d| d.handle) {
            let now = now.unwrap_or_else(|| admin.now());
            match admin.show(&Target::Handle(handle)) {
                Ok(info) => {
                    let fresh = Detail::new(handle, info, &self.theme, now, self.area, false);
                    if let Some(d) = self.detail_mut() {
                        *d = Detail {
                            scroll: d.scroll,
                            ..fresh
                        };
                    }
                }
                Err(e) => {
                    self.read_error(&e);
                    if let Some(d) = self.detail_mut() {
                        d.stale = true;
                    }
                }
            }
        }
    }

    /// Whether an auto-refresh reads the table again. Not while a search scan is under way:
    /// the ticks carry it on, and reading the page again would start it over. After a long
    /// one, only [`SCAN_COST_FACTOR`] times its cost after it ended: a filter that matches
    /// nothing in a large store would otherwise keep the store scanning. A page read in one
    /// call, every time.
    fn table_due(&self) -> bool {
        !self.busy()
            && self
                .listing
                .scan_cost()
                .is_none_or(|c| c.due_again(self.clock.now(), SLOW_SCAN, SCAN_COST_FACTOR))
    }

    /// The table was read, at the store's time `now`: its rows are current again. A folder
    /// found gone stays said: the store reads its deleted files without an error.
    fn read_at(&mut self, now: OffsetDateTime) {
        self.now = now;
        self.refreshed_at = Some(now);
        // The application answers again: the auto-refresh goes on.
        self.unanswered = false;
        if self.stale == Some(Stale::ReadFailed) {
            self.stale = None;
        }
    }

    /// A read of the table failed: the rows on screen are those of the last read that worked.
    fn read_failed(&mut self) {
        if self.stale.is_none() {
            self.stale = Some(Stale::ReadFailed);
        }
    }

    /// Whether the database folder opened directly is gone; if so the table is marked stale
    /// and the status line says why.
    fn folder_gone(&mut self) -> bool {
        let Some(folder) = self.folder.as_ref().filter(|f| f.is_gone()) else {
            return false;
        };
        let text = format!(
            "The database folder {} was deleted or replaced: nothing is read or written any \
             more (what the store would write goes to deleted files); quit and reopen",
            folder.path.display()
        );
        self.say_read_error(text);
        self.stale = Some(Stale::FolderGone);
        if let Some(d) = self.detail_mut() {
            d.stale = true;
        }
        true
    }

    /// Refuses a key that would write (`d`, `D`, `p`, or its `y`) once the database folder is
    /// gone: the status line says first what was not done, as for any refused key, then why.
    fn refused_folder_gone(&mut self, not_done: &str) -> bool {
        if !self.folder_gone() {
            return false;
        }
        let folder = self.folder.as_ref().map(|f| f.path.display().to_string());
        self.message = Some(Message::ActionError(format!(
            "{not_done}: the database folder {} was deleted or replaced; quit and reopen",
            folder.unwrap_or_default()
        )));
        true
    }

    fn set_filter(&mut self, admin: &dyn Admin, text: String) {
        let filter = Filter::parse(&text);
        self.filter_text = text;
        if filter != self.listing.view().filter {
            let view = View {
                filter,
                ..self.listing.view().clone()
            };
            self.set_view(admin, view);
        }
    }

    fn set_view(&mut self, admin: &dyn Admin, view: View) {
        self.listing = Listing::new(view, self.clock.clone());
        if self.folder_gone() {
            self.reselect();
            return;
        }
        match self.listing.reload(admin) {
            // The store's time once the rows came (see `refresh`).
            Ok(()) => self.read_at(admin.now()),
            Err(e) => {
                self.read_error(&e);
                self.read_failed();
            }
        }
        self.offset = 0;
        self.selected = 0;
        self.reselect();
    }

    fn move_selection(&mut self, admin: &dyn Admin, action: Action) {
        let len = self.listing.rows().len();
        let step = match action {
            Action::PageUp | Action::PageDown => self.table_rows().max(1),
            _ => 1,
        };
        let down = matches!(action, Action::Down | Action::PageDown);
        // The pages of the store read as one continuous list: a move past the end of the
        // loaded page lands as far into the next (or previous) one.
        if down {
            let target = self.selected + step;
            if target < len {
                self.select_user(target);
            } else if self.load_page(admin, |l, a| l.next_page(a)) {
                let overflow = target.saturating_sub(len);
                self.offset = 0;
                self.select_user(overflow.min(self.listing.rows().len().saturating_sub(1)));
            } else {
                self.select_user(len.saturating_sub(1));
            }
        } else if self.selected >= step {
            self.select_user(self.selected - step);
        } else if self.load_page(admin, |l, a| l.prev_page(a)) {
            let new_len = self.listing.rows().len();
            self.offset = new_len;
            self.select_user(new_len.saturating_sub(step - self.selected));
        } else {
            self.select_user(0);
        }
    }

    fn scroll_detail(&mut self, action: Action) {
        let page = self.detail_rows();
        let max = self.detail_max_scroll();
        if let Mode::Detail(d) = &mut self.mode {
            d.scroll = match action {
                Action::Up => d.scroll.saturating_sub(1),
                Action::Down => d.scroll + 1,
                Action::PageUp => d.scroll.saturating_sub(page),
                _ => d.scroll + page,
            }
            .min(max);
        }
    }

    /// The detail pane's lines formatted again when the terminal's width changed (not its
    /// height alone: a large session's data takes a while), as of the time the session was
    /// read; the scroll kept within them.
    fn fit_detail(&mut self) {
        let (area, max_rows) = (self.area, self.detail_rows());
        let theme = &self.theme;
        if let Mode::Detail(d) = &mut self.mode {
            let width = usize::from(crate::ui::detail_body_width(area));
            if width != d.width {
                d.lines =
                    crate::ui::detail_lines(theme, d.read_at, width, &d.handle, d.info.as_deref());
                d.width = width;
            }
            d.scroll = d.scroll.min(d.lines.len().saturating_sub(max_rows));
        }
    }

    fn detail_max_scroll(&self) -> usize {
        let lines = self.detail().map_or(0, |d| d.lines.len());
        lines.saturating_sub(self.detail_rows())
    }

    /// The session a `d` or `D` applies to: the one in the detail pane, or the selected row.
    fn target(&self) -> Option<(Handle, Option<String>)> {
        match self.detail() {
            Some(d) => d
                .info
                .as_ref()
                .map(|info| (info.handle, info.principal.clone())),
            None => self
                .selected_session()
                .map(|info| (info.handle, info.principal.clone())),
        }
    }

    /// Why `d` or `D` has nothing to act on: no row, or a detail pane whose session is gone
    /// (it said "No session selected" with the pane open).
    fn no_target(&self) -> Message {
        Message::Info(match self.detail() {
            Some(d) => format!(
                "Session {} no longer exists: nothing to invalidate",
                d.handle.short()
            ),
            None => "No session selected".into(),
        })
    }

    fn ask(&mut self, ask: Confirm) {
        let back = std::mem::replace(&mut self.mode, Mode::Browsing);
        let back = match back {
            Mode::Filter { .. } => Mode::Browsing,
            other => other,
        };
        self.mode = Mode::Confirm {
            ask,
            back: Box::new(back),
        };
    }

    /// Refuses `d` and `D` when the session they would act on is not on screen: a terminal too
    /// small to show a row of the table.
    fn refused_off_screen(&mut self) -> bool {
        let off_screen =
            self.detail().is_none() && self.table_rows() == 0 && self.selected_session().is_some();
        if off_screen {
            self.message = Some(Message::Info(
                "No session is on screen: make the terminal taller".into(),
            ));
        }
        off_screen
    }

    fn ask_invalidate(&mut self) {
        if self.refused_off_screen() {
            return;
        }
        match self.target() {
            Some((handle, principal)) => self.ask(Confirm::Invalidate { handle, principal }),
            None => self.message = Some(self.no_target()),
        }
    }

    fn ask_invalidate_principal(&mut self, admin: &dyn Admin) {
        if self.refused_off_screen() {
            return;
        }
        let principal = match self.target() {
            Some((_, Some(p))) => p,
            Some((_, None)) => {
                self.message = Some(Message::Info("This session has no principal".into()));
                return;
            }
            None => {
                self.message = Some(self.no_target());
                return;
            }
        };
        match count_sessions_of(admin, &principal) {
            Ok(0) => {
                self.message = Some(Message::Info(format!(
                    "{} has no live sessions",
                    crate::text::printable(&principal)
                )));
            }
            Err(e) => self.action_error(
                &format!(
                    "Could not count the sessions of {}",
                    crate::text::printable(&principal)
                ),
                &e,
            ),
            Ok(count) => self.ask(Confirm::InvalidatePrincipal { principal, count }),
        }
    }

    /// Asks whether to purge, at once: the expired sessions are counted on the worker
    /// thread (seconds at a million sessions) and the question shows their number when it
    /// comes, or closes if there are none. `y` need not wait for it.
    fn ask_purge(&mut self) {
        if self.purging.is_some() {
            // The status line follows the purge under way (a message would hold it still).
            self.message = self.last_read_error.clone().map(Message::ReadError);
            return;
        }
        // A count still running (a question answered `n` before it came) answers this one.
        if !self.expired_counting {
            self.expired_wanted = true;
        }
        self.ask(Confirm::Purge { count: None });
    }

    /// The count of the expired sessions has come: the purge's question, if still open,
    /// shows it.
    fn expired_counted(&mut self, count: sessdb::Result<u64>) {
        self.expired_counting = false;
        // A question answered meanwhile needs no count.
        if !self.purge_question_waiting() {
            return;
        }
        match count {
            Ok(count @ 1..) => {
                if let Mode::Confirm { ask, .. } = &mut self.mode {
                    *ask = Confirm::Purge { count: Some(count) };
                }
            }
            Ok(0) => {
                self.close_question();
                self.message = Some(Message::Info("No expired sessions to purge".into()));
            }
            Err(e) => {
                self.close_question();
                self.action_error("Could not count the expired sessions", &e);
            }
        }
    }

    /// Whether the purge's question is on screen, waiting for its count.
    fn purge_question_waiting(&self) -> bool {
        matches!(
            self.mode,
            Mode::Confirm {
                ask: Confirm::Purge { count: None },
                ..
            }
        )
    }

    /// Closes the question on screen, back to what was under it.
    fn close_question(&mut self) {
        if let Mode::Confirm { back, .. } = std::mem::replace(&mut self.mode, Mode::Browsing) {
            self.mode = *back;
        }
    }

    fn answer(&mut self, admin: &dyn Admin, yes: bool) {
        let Mode::Confirm { ask, back } = std::mem::replace(&mut self.mode, Mode::Browsing) else {
            return;
        };
        self.mode = *back;
        if let Confirm::Purge { .. } = ask {
            // Answered: a count not started yet is not needed (one under way is let be).
            self.expired_wanted = false;
        }
        if !yes {
            self.message = Some(Message::Info("Cancelled".into()));
            return;
        }
        let not_done = match &ask {
            Confirm::Invalidate { handle, .. } => {
                format!("Session {} NOT invalidated", handle.short())
            }
            Confirm::InvalidatePrincipal { principal, .. } => format!(
                "The sessions of {} NOT invalidated",
                crate::text::printable(principal)
            ),
            Confirm::Purge { .. } => "Nothing purged".to_string(),
        };
        if self.refused_folder_gone(&not_done) {
            return;
        }
        let what = match &ask {
            Confirm::Invalidate { handle, .. } => format!("session {}", handle.short()),
            Confirm::InvalidatePrincipal { principal, .. } => {
                format!("the sessions of {}", crate::text::printable(principal))
            }
            Confirm::Purge { .. } => String::new(),
        };
        let (done, failed) = match ask {
            Confirm::Invalidate { handle, .. } => (
                admin
                    .invalidate(&Target::Handle(handle))
                    .map(|existed| match existed {
                        true => format!("Invalidated session {}", handle.short()),
                        false => format!("Session {} was already gone", handle.short()),
                    }),
                not_done,
            ),
            Confirm::InvalidatePrincipal { principal, count } => {
                let who = crate::text::printable(&principal);
                (
                    admin.invalidate_principal(&principal).map(|n| {
                        format!(
                            "Invalidated {} of {who}{}",
                            plural(n as u64, "session"),
                            since_counted(n as u64, count as u64, "logged in", "ended")
                        )
                    }),
                    format!("The sessions of {who} NOT all invalidated"),
                )
            }
            // On the worker thread: a purge of a large backlog takes minutes, and the keys
            // keep working meanwhile; the status line follows it.
            Confirm::Purge { count } => {
                // The status line follows this purge from now (an earlier one's outcome may
                // still be there, kept from keys for a moment).
                self.message = self.last_read_error.clone().map(Message::ReadError);
                self.purge_wanted = true;
                self.purging = Some(PurgeRun {
                    removed: 0,
                    of: count,
                    started: false,
                });
                return;
            }
        };
        match done {
            Ok(text) => self.done(admin, text),
            // Sent, and not answered: a stopped application does it once it runs again. One
            // that did not answer the connection got nothing to do: that is a plain failure.
            Err(e @ sessdb::Error::Unresponsive { sent: true, .. }) => self.action_error(
                &format!(
                    "Invalidating {what} was sent and not confirmed (the application may still \
                     do it when it runs again; r shows whether it did)"
                ),
                &e,
            ),
            Err(e) => self.action_error(&failed, &e),
        }
    }

    /// What the operator asked for was done: everything is read again, and the status line
    /// says `text`.
    fn done(&mut self, admin: &dyn Admin, text: String) {
        // It answered: the refresh reads everything again.
        self.unanswered = false;
        self.refresh(admin, true);
        // The detail pane of a session just removed has nothing left to show.
        if let Mode::Detail(Detail { info: None, .. }) = self.mode {
            self.mode = Mode::Browsing;
        }
        // A folder deleted meanwhile: what was written is lost, and the refresh said so.
        if self.stale != Some(Stale::FolderGone) {
            self.message = Some(Message::Info(text));
        }
    }

    /// The purge on the worker thread has ended.
    fn purged(&mut self, admin: &dyn Admin, purged: sessdb::Result<u64>) {
        match purged {
            Ok(n) => {
                let counted = self.purging.take().and_then(|run| run.of);
                let since = counted.map_or(String::new(), |of| {
                    since_counted(n, of, "expired", "purged or touched")
                });
                self.done(
                    admin,
                    format!("Purged {}{since}", plural(n, "expired session")),
                );
            }
            Err(e) => {
                let mut what = self.purge_not_finished();
                if matches!(e, sessdb::Error::Unresponsive { sent: true, .. }) {
                    what.push_str(" (the application may go on with it when it runs again)");
                }
                self.action_error(&what, &e);
            }
        }
    }

    /// The purge failed, or its thread is gone: what the status line says first, how far it
    /// went (what it removed stays removed).
    fn purge_not_finished(&mut self) -> String {
        let removed = self.purging.take().map_or(0, |run| run.removed);
        let what = match removed {
            0 => "The purge did NOT finish".to_string(),
            n => format!(
                "The purge did NOT finish ({} removed before it stopped)",
                plural(n, "expired session")
            ),
        };
        // What it removed is gone from the counts too.
        self.count_wanted = true;
        what
    }

    /// Runs a listing operation. A store error goes to the status line and marks the rows
    /// stale: the listing keeps those of the last read that worked.
    fn try_load<T>(
        &mut self,
        admin: &dyn Admin,
        op: impl FnOnce(&mut Listing, &dyn Admin) -> sessdb::Result<T>,
    ) -> Option<T> {
        match op(&mut self.listing, admin) {
            Ok(v) => Some(v),
            Err(e) => {
                self.read_error(&e);
                self.read_failed();
                None
            }
        }
    }

    /// Moves the listing to another page with `op`, which says whether it did. A page read is
    /// a read of the table: its rows are current, as of the store's time once they came (taken
    /// after the read, so that a store that stopped answering is waited for once, not twice).
    fn load_page(
        &mut self,
        admin: &dyn Admin,
        op: impl FnOnce(&mut Listing, &dyn Admin) -> sessdb::Result<bool>,
    ) -> bool {
        let moved = self.try_load(admin, op) == Some(true);
        if moved {
            self.read_at(admin.now());
        }
        moved
    }

    /// A read failed: the status line says so until everything on screen is read again.
    fn read_error(&mut self, error: &sessdb::Error) {
        let text = self.unanswered_text(error);
        self.say_read_error(text);
    }

    /// Notes an application that did not answer (see [`App::unanswered`]); its error's text,
    /// with what the TUI does about it.
    fn unanswered_text(&mut self, error: &sessdb::Error) -> String {
        let text = error_text(error);
        if matches!(error, sessdb::Error::Unresponsive { .. }) {
            self.unanswered = true;
            // First, where a narrow status line still shows it.
            return format!("Auto-refresh paused, r tries again: {text}");
        }
        text
    }

    /// Says a read's error, but not over an action's: that one tells the operator that
    /// something they asked for was not done, which no later read changes, while stale data
    /// stays marked on screen anyway. The read's error is said after it, at their next key,
    /// if it is not over by then.
    fn say_read_error(&mut self, text: String) {
        if !matches!(self.message, Some(Message::ActionError(_))) {
            self.message = Some(Message::ReadError(text.clone()));
        }
        self.last_read_error = Some(text);
    }

    /// Ends a read's error once everything on screen is as last read: the rows, the header's
    /// counts and the detail pane, each of which is marked stale while it is not.
    fn settle(&mut self) {
        let pane_stale = self.detail().is_some_and(|d| d.stale);
        if self.stale.is_some() || self.count_failed || pane_stale {
            return;
        }
        self.last_read_error = None;
        if matches!(self.message, Some(Message::ReadError(_))) {
            self.message = None;
        }
    }

    /// An action the operator asked for failed: the status line says so until their next key,
    /// `what` first (what was not done), then why. A read's errors look alike, so without it
    /// a failed logout would read as one more failed refresh.
    fn action_error(&mut self, what: &str, error: &sessdb::Error) {
        let text = self.unanswered_text(error);
        self.message = Some(Message::ActionError(format!("{what}: {text}")));
    }

    /// Selects a row because the operator asked for it: it becomes the sticky selection.
    fn select_user(&mut self, index: usize) {
        self.select(index);
        self.sticky = self.selected_session().map(|s| s.handle);
    }

    /// After the rows changed: the sticky session if it is loaded, else the same position.
    fn reselect(&mut self) {
        let found = self
            .sticky
            .and_then(|h| self.listing.rows().iter().position(|info| info.handle == h));
        match found {
            Some(index) => self.select(index),
            None => {
                self.select(self.selected);
                if self.sticky.is_none() {
                    self.sticky = self.selected_session().map(|s| s.handle);
                }
            }
        }
    }

    fn select(&mut self, index: usize) {
        self.selected = index.min(self.listing.rows().len().saturating_sub(1));
        self.fix_offset();
    }

    /// Keeps the selected row on screen, and the screen full when it can be.
    fn fix_offset(&mut self) {
        let visible = self.table_rows().max(1);
        let len = self.listing.rows().len();
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + visible {
            self.offset = self.selected + 1 - visible;
        }
        self.offset = self.offset.min(len.saturating_sub(visible));
    }
}

/// The header's counts, made off the UI thread by [`count`].
#[derive(Debug)]
pub(crate) struct Counted {
    stats: sessdb::Result<Stats>,
    /// The store's time when the count was made.
    at: OffsetDateTime,
    /// What the count took, on the worker's clock (the system's).
    cost: Duration,
}

impl Counted {
    /// A count as the worker hands it back, which took `cost`.
    #[cfg(test)]
    pub(crate) fn new(stats: sessdb::Result<Stats>, at: OffsetDateTime, cost: Duration) -> Counted {
        Counted { stats, at, cost }
    }
}

/// Counts for the header: `Admin::stats`, which reads every record, timed.
pub(crate) fn count(admin: &dyn Admin) -> Counted {
    let began = Instant::now();
    let stats = admin.stats();
    Counted {
        at: admin.now(),
        stats,
        cost: began.elapsed(),
    }
}

/// How many sessions `invalidate_principal` would end: the principal's live sessions, read a
/// page at a time (its expired ones go too, uncounted, as the store counts).
fn count_sessions_of(admin: &dyn Admin, principal: &str) -> sessdb::Result<usize> {
    let mut count = 0;
    let mut after = None;
    loop {
        let page = admin.list(&ListQuery {
            principal: Some(principal.to_string()),
            status: Status::Live,
            limit: 1000,
            after,
            ..ListQuery::default()
        })?;
        count += page.sessions.len();
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => return Ok(count),
        }
    }
}

/// A store error and its causes, on one line.
fn error_text(error: &sessdb::Error) -> String {
    // The operating system's "Connection refused" on a socket file means nothing listens: the
    // application was killed. A socket file gone is how an application that stopped cleanly
    // leaves (it removes its socket); the TUI reached it there before, so it has exited too.
    if let sessdb::Error::AdminSocket { path, source, .. } = error {
        let how = match source.kind() {
            std::io::ErrorKind::ConnectionRefused => "nothing listens on",
            std::io::ErrorKind::NotFound => "it removed its admin socket",
            _ => "",
        };
        if !how.is_empty() {
            // What to do first: a narrow status line cuts the end.
            return format!(
                "the application has exited: quit and open the database again to work on it \
                 directly ({how} {})",
                path.display()
            );
        }
    }
    // What matters first, where a narrow status line keeps it: the socket's path (the header
    // shows it already) last, where the line may cut it.
    if let sessdb::Error::Unresponsive { path, waited, .. } = error {
        return format!(
            "the application did not answer within {}: is it stopped or hung? (its admin socket \
             {})",
            crate::format::span(*waited),
            path.display()
        );
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Why `done` differs from the `counted` the question showed, if it does: the application
/// went on meanwhile (`more` of them since the count, or `fewer`: said as what happened to
/// them).
fn since_counted(done: u64, counted: u64, more: &str, fewer: &str) -> String {
    match done.cmp(&counted) {
        std::cmp::Ordering::Equal => String::new(),
        std::cmp::Ordering::Greater => format!(" ({} more {more} since the count)", done - counted),
        std::cmp::Ordering::Less => {
            format!(
                " ({} fewer than counted: {fewer} meanwhile)",
                counted - done
            )
        }
    }
}

/// What the status line says of the purge under way.
pub(crate) fn purge_progress(run: PurgeRun) -> String {
    if !run.started {
        return "Purge confirmed: it starts once the count under way ends".into();
    }
    match run.of {
        Some(count) => format!(
            "Purging {}: {} removed so far",
            plural(count, "expired session"),
            run.removed
        ),
        None => format!(
            "Purging the expired sessions: {} removed so far",
            run.removed
        ),
    }
}

/// `1 session`, `3 sessions`.
pub(crate) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod error_text_tests {
    use super::*;

    /// "Connection refused" on the admin socket is said as what it means to the operator: the
    /// application has exited, and the database can be opened directly. Other errors keep their
    /// chain of causes.
    #[test]
    fn a_refused_connection_says_the_application_has_exited() {
        let socket = std::path::PathBuf::from("/srv/app/sessions.sessdb/admin.sock");
        let refused = sessdb::Error::AdminSocket {
            path: socket.clone(),
            what: "cannot connect to",
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(
            error_text(&refused),
            "the application has exited: quit and open the database again to work on it directly \
             (nothing listens on /srv/app/sessions.sessdb/admin.sock)"
        );
        // An application that stopped cleanly removed its socket (a user saw "No such file or
        // directory" where the README promised this).
        let removed = sessdb::Error::AdminSocket {
            path: socket.clone(),
            what: "cannot connect to",
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(
            error_text(&removed),
            "the application has exited: quit and open the database again to work on it directly \
             (it removed its admin socket /srv/app/sessions.sessdb/admin.sock)"
        );
        let other = sessdb::Error::AdminSocket {
            path: socket,
            what: "cannot connect to",
            source: std::io::Error::other("no route"),
        };
        assert_eq!(
            error_text(&other),
            "cannot connect to the admin socket /srv/app/sessions.sessdb/admin.sock: no route"
        );
    }
}
