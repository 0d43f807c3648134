//! The event loop: read a terminal event or time out, turn it into an [`Action`], update,
//! draw; and the worker thread that counts and purges meanwhile. Generic over the ratatui
//! backend and the event source, so tests drive the real loop on a `TestBackend` with
//! scripted keys.

use std::error::Error;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use sessdb::Admin;

use crate::app::{Action, App, Job, Report};

/// Where terminal events come from.
pub(crate) trait Events {
    /// The next event, or `None` when `timeout` passed without one.
    ///
    /// # Errors
    /// Reading the terminal failed.
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>>;
}

/// The real terminal's events.
#[derive(Debug)]
pub(crate) struct Crossterm {
    /// Set by SIGTERM (`timeout`, `kill`, a service stop): the loop then quits as for Ctrl-C,
    /// and the terminal is given back. Before, the process died in raw mode, on the alternate
    /// screen, the cursor hidden (found by a second reviewer).
    pub(crate) terminate: Arc<AtomicBool>,
}

/// How often a wait for input looks at [`Crossterm::terminate`].
const SIGNAL_POLL: Duration = Duration::from_millis(100);

impl Events for Crossterm {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        let until = Instant::now() + timeout;
        loop {
            if self.terminate.load(Ordering::Relaxed) {
                let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
                return Ok(Some(Event::Key(ctrl_c)));
            }
            let left = until.saturating_duration_since(Instant::now());
            if event::poll(left.min(SIGNAL_POLL))? {
                return event::read().map(Some);
            }
            if left <= SIGNAL_POLL {
                return Ok(None);
            }
        }
    }
}

/// How often the loop looks for the worker's reports while it has a job.
const WORK_POLL: Duration = Duration::from_millis(100);

/// The worker thread that reads or writes every record (the header's counts, the count of
/// expired sessions, a purge), so that none of it holds up a key.
#[derive(Debug)]
pub(crate) struct Worker {
    requests: mpsc::Sender<Job>,
    replies: mpsc::Receiver<Report>,
}

impl Worker {
    /// Starts the worker; it ends once the worker is dropped and its job in flight, if any,
    /// is done (the scope waits for that).
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn spawn<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        admin: &'env dyn Admin,
    ) -> io::Result<Worker> {
        let (requests, asked) = mpsc::channel();
        let (answer, replies) = mpsc::channel();
        thread::Builder::new()
            .name(THREAD.into())
            .spawn_scoped(scope, move || work(admin, &asked, &answer))?;
        Ok(Worker { requests, replies })
    }

    /// Starts the worker on an admin interface of its own (a second connection to an admin
    /// socket), so that its calls never queue with the UI's. Nothing waits for it: once the
    /// worker is dropped it ends after its job in flight, and a process that exits first
    /// does not wait for that job.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn spawn_owned(admin: Arc<dyn Admin>) -> io::Result<Worker> {
        let (requests, asked) = mpsc::channel();
        let (answer, replies) = mpsc::channel();
        thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || work(&*admin, &asked, &answer))?;
        Ok(Worker { requests, replies })
    }

    /// Starts the job the app wants next, if the worker is free, and hands the app every
    /// report that has come; a job that ended is followed at once by the next one wanted (a
    /// purge by the header's counts). A job started here is waited for up to `settle` in all
    /// (`None`: as long as it takes), so that a quick one shows in the next frame rather than
    /// after a "counting" frame.
    fn serve(&self, admin: &dyn Admin, app: &mut App, settle: Option<Duration>) {
        let deadline = settle.map(|wait| Instant::now() + wait);
        let mut started = false;
        loop {
            if let Some(job) = app.take_job() {
                if self.requests.send(job).is_err() {
                    // The worker is gone (it panicked, and the panic hook has said so).
                    return app.worker_gone();
                }
                started = true;
            }
            if !app.working() {
                return;
            }
            let reply = match (started, deadline) {
                (true, None) => self.replies.recv().map_err(|_| TryRecvError::Disconnected),
                (true, Some(deadline)) => self
                    .replies
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .map_err(|e| match e {
                        RecvTimeoutError::Timeout => TryRecvError::Empty,
                        RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                    }),
                (false, _) => self.replies.try_recv(),
            };
            match reply {
                Ok(report) => app.report(admin, report),
                Err(TryRecvError::Disconnected) => return app.worker_gone(),
                Err(TryRecvError::Empty) => return,
            }
        }
    }
}

/// The worker thread's name.
const THREAD: &str = "sessdb-tui-work";

/// The worker: one job per request, until either end of the channels is gone.
fn work(admin: &dyn Admin, asked: &mpsc::Receiver<Job>, answer: &mpsc::Sender<Report>) {
    for job in asked {
        let mut gone = false;
        crate::app::work(admin, job, &mut |report| {
            gone |= answer.send(report).is_err();
        });
        if gone {
            return;
        }
    }
}

/// Runs until the app quits. A timeout with work pending is a [`Action::Tick`]; a timeout
/// without is the auto-refresh interval passing. What reads every record is made by
/// `worker`; `settle` is how long a frame waits for a job that has just started (see
/// [`Worker::serve`]).
///
/// # Errors
/// Terminal errors (drawing, reading events); store errors never end the loop.
pub(crate) fn event_loop<B>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    admin: &dyn Admin,
    events: &mut dyn Events,
    worker: &Worker,
    settle: Option<Duration>,
) -> io::Result<()>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
{
    let size = terminal.size().map_err(to_io)?;
    app.update(admin, Action::Resize(size.width, size.height));
    app.start(admin);
    terminal
        .draw(|frame| crate::ui::render(app, frame))
        .map_err(to_io)?;
    let mut refresh_at = Instant::now() + app.refresh;
    while !app.quit {
        worker.serve(admin, app, settle);
        terminal
            .draw(|frame| crate::ui::render(app, frame))
            .map_err(to_io)?;
        let until_refresh = refresh_at.saturating_duration_since(Instant::now());
        let timeout = if app.busy() {
            Duration::ZERO
        } else if app.working() {
            until_refresh.min(WORK_POLL)
        } else {
            until_refresh
        };
        let action = match events.next(timeout)? {
            Some(Event::Key(key)) => {
                let filtered = app.listing.view().filter.is_active();
                crate::keys::action(&app.mode, filtered, key)
            }
            Some(Event::Resize(width, height)) => Some(Action::Resize(width, height)),
            Some(_) => None,
            None if app.busy() => Some(Action::Tick),
            // A look for the worker's reports, before the refresh is due.
            None if timeout < until_refresh => None,
            None => {
                refresh_at = Instant::now() + app.refresh;
                Some(Action::AutoRefresh)
            }
        };
        if let Some(action) = action {
            app.update(admin, action);
        }
    }
    Ok(())
}

/// A backend's error as an `io::Error`, unwrapped when it is one already.
fn to_io<E: Error + Send + Sync + 'static>(error: E) -> io::Error {
    let boxed: Box<dyn Error + Send + Sync> = Box::new(error);
    match boxed.downcast::<io::Error>() {
        Ok(io) => *io,
        Err(other) => io::Error::other(other),
    }
}
