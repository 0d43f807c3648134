//! # sessdb-tui
//!
//! The terminal UI of `sessctl tui`: browse, filter, inspect and invalidate the sessions of a
//! sessdb database through the [`sessdb::Admin`] interface only, so it works the same on a
//! database opened directly and on a running application's admin socket.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = sessdb::Store::open("sessions.sessdb")?;
//! sessdb_tui::run(
//!     &store,
//!     sessdb_tui::Options {
//!         title: "sessions.sessdb".into(),
//!         refresh: Duration::from_secs(2),
//!         no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
//!         read_only: None,
//!         as_of: None,
//!         folder: Some(store.path().to_path_buf()),
//!     },
//! )?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Scale
//!
//! The table holds one page (100 sessions) of the admin interface's cursor paging. `G` lists
//! the last page backward from the end ([`ListQuery::reverse`](sessdb::ListQuery::reverse))
//! and paging up from there goes on backward, so no key walks the store page by page. The
//! header's counts ([`Admin::stats`](sessdb::Admin::stats), a pass over every record) are
//! made on a worker thread; the header says "counting" until they arrive, and keys keep
//! working meanwhile. So are the count of expired sessions that `p` asks about (its question
//! opens at once and shows the number when it comes) and the purge itself, which the status
//! line follows. Through an admin socket, give the worker a connection of its own
//! ([`run_with_worker`]): one `RemoteAdmin` runs one request at a time.
//!
//! A search the indexes do not serve (a prefix, `l:LABEL`) scans 2,000 index entries per call
//! and goes on between frames; a prefix that matches nothing scans the whole store (about 24 s
//! per million sessions). An auto-refresh leaves a running scan to finish, and after a scan of
//! 0.2 s or more reads the page again only 10 times the scan's time after it ended (or failed
//! partway, its time then counted up to the call that failed: through a hung admin socket that
//! call is the client's timeout, none of it the store's work), so the store spends at most a
//! part in 11 of its time on it; `r` reads at once. A count of 0.2 s or more is repeated 30
//! times its time after it came (a failed count's time taken as no more than the last that
//! worked's): the table is what the operator watches. A read on the UI thread that the
//! application behind an admin socket does not answer (`Error::Unresponsive`: it is stopped or
//! hung) holds up the keys for the client's timeout, so it is the last read the TUI makes on
//! its own: the auto-refresh pauses until `r` (`App::unanswered`).
//!
//! Release build, 120×40 `TestBackend`, a 2-core machine shared with other work, measured by `cargo test --release -p sessdb-tui -- --ignored --nocapture scale`
//! (`tui/src/tests/scale.rs`, which builds the store; `SESSDB_SCALE_DIR` keeps it):
//!
//! | step | 100 sessions | 1,000,000 sessions |
//! |---|---|---|
//! | first frame: app, first page, drawing | 1.1 ms | 2.6 ms |
//! | frame after `G` | 0.25 ms | 1.5 ms (before: 11 s, every page from the start) |
//! | frame of `PgUp` across a page, from the end | 0.23 ms | 1.4 ms |
//! | frame after `g` | 0.2 ms | 3.9 ms |
//! | `Admin::stats`, on the worker thread | 0.2 ms | 1.7–3.9 s, median 2.2 s (before: 2.2–3.9 s, median 2.6 s, keys waiting) |
#![deny(missing_docs)]

mod app;
mod clock;
mod format;
mod keys;
mod listing;
mod term;
mod text;
mod theme;
mod ui;

#[cfg(test)]
mod tests;

pub use text::{printable, terminal_safe};

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the TUI starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// What the header names: the database path, or `live: <socket>`.
    pub title: String,
    /// The auto-refresh interval (`sessctl tui --refresh SECS`; 2 s by default).
    pub refresh: Duration,
    /// Draw without colours (the caller sets it when `NO_COLOR` is set and not empty).
    pub no_color: bool,
    /// When set, the keys that write (invalidate, purge) do nothing but show this reason in
    /// the status line (`sessctl --as-of` a future time: what would be, never acted on).
    pub read_only: Option<String>,
    /// The fixed time expiry is evaluated at (`sessctl --as-of`), which the header shows in
    /// place of the time of the last refresh: every read is as of it.
    pub as_of: Option<time::OffsetDateTime>,
    /// The database folder when the store was opened directly (`None` through an admin
    /// socket). The TUI checks that it is still there before each refresh and write: a store
    /// whose folder was deleted goes on reading and writing its open files without an error,
    /// and what it writes is lost.
    pub folder: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            title: String::new(),
            refresh: Duration::from_secs(2),
            no_color: false,
            read_only: None,
            as_of: None,
            folder: None,
        }
    }
}

/// Runs the TUI on the terminal until the operator quits (`q` or Ctrl-C).
///
/// What reads or writes every record (the header's counts,
/// [`Admin::stats`](sessdb::Admin::stats); the count of expired sessions and the purge that
/// `p` asks for) is made on a worker thread, so keys keep working while a large store is
/// counted or purged. Quitting during a purge
/// waits for it to end (it cannot be stopped partway through `Admin`), after the terminal is
/// given back and a line on stderr says so; Ctrl-C then stops the process, and what the purge
/// removed stays removed.
///
/// The terminal is entered and left only through `ratatui::try_init` and `ratatui::restore`,
/// whose panic hook restores it on a panic too. Errors from the store are shown in a status
/// line and never end the program.
///
/// # Errors
/// Terminal I/O errors (no terminal, a closed stdout).
pub fn run(admin: &dyn sessdb::Admin, options: Options) -> io::Result<()> {
    run_working(admin, None, options)
}

/// Runs the TUI as [`run`] does, with what reads or writes every record made on `worker`, an
/// admin interface of its own.
///
/// Give it a second [`RemoteAdmin`](sessdb::RemoteAdmin) to the same socket: one
/// `RemoteAdmin` runs one request at a time, so on a shared one every key would wait behind
/// a count of a large store. Nothing waits for the worker's job still running when the
/// operator quits: a count is dropped, and a purge through an admin socket goes on in the
/// application until it ends. A store call of the UI's own that blocks (an application
/// that stopped answering) holds up the keys until it returns or fails; `q` and Ctrl-C then
/// quit.
///
/// # Errors
/// As for [`run`].
pub fn run_with_worker(
    admin: &dyn sessdb::Admin,
    worker: Arc<dyn sessdb::Admin>,
    options: Options,
) -> io::Result<()> {
    run_working(admin, Some(worker), options)
}

fn run_working(
    admin: &dyn sessdb::Admin,
    worker: Option<Arc<dyn sessdb::Admin>>,
    options: Options,
) -> io::Result<()> {
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(e) => {
            // Raw mode may be on already when entering the alternate screen failed.
            let _ = ratatui::try_restore();
            return Err(e);
        }
    };
    let mut app = app::App::new(&options);
    let owned = worker.is_some();
    // SIGTERM quits as `q` does, the terminal given back; a second one ends the process at
    // once (a call blocked on a stopped application holds the loop up). Unregistered at the
    // end: the host's own handling comes back.
    let terminate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sigterm = signal_hook::consts::SIGTERM;
    let handlers = [
        signal_hook::flag::register_conditional_shutdown(sigterm, 128 + sigterm, terminate.clone()),
        signal_hook::flag::register(sigterm, terminate.clone()),
    ];
    let mut events = term::Crossterm { terminate };
    let ran = std::thread::scope(|scope| {
        let worker = match worker {
            Some(own) => term::Worker::spawn_owned(own),
            None => term::Worker::spawn(scope, admin),
        };
        let result = worker.and_then(|worker| {
            term::event_loop(
                &mut terminal,
                &mut app,
                admin,
                &mut events,
                &worker,
                Some(COUNT_SETTLE),
            )
        });
        // The terminal is given back at once; a job still running on `admin` (a large
        // store's count or purge) ends before the scope does.
        ratatui::restore();
        if let Some(run) = app.purging {
            let removed = app::plural(run.removed, "expired session");
            if !run.started {
                eprintln!("The purge confirmed in the TUI had not started: nothing was purged.");
            } else if owned {
                eprintln!(
                    "The purge under way was left to its own connection ({removed} removed so \
                     far): through an admin socket the application finishes it."
                );
            } else {
                eprintln!(
                    "Waiting for the purge under way to end ({removed} removed so far); Ctrl-C \
                     stops it, and what it removed stays removed."
                );
            }
        }
        result
    });
    for handler in handlers.into_iter().flatten() {
        signal_hook::low_level::unregister(handler);
    }
    ran
}

/// How long a frame waits for a count that has just started: a small store's count shows in
/// the same frame, a large store's shows "counting" while the keys keep working.
const COUNT_SETTLE: Duration = Duration::from_millis(50);
