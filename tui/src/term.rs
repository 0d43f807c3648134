//! The event loop: read a terminal event or time out, turn it into an [`Action`], update,
//! draw; and the worker thread that counts for the header meanwhile. Generic over the ratatui
//! backend and the event source, so tests drive the real loop on a `TestBackend` with
//! scripted keys.

use std::error::Error;
use std::io;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event};
use ratatui::Terminal;
use sessdb::Admin;

use crate::app::{Action, App, Counted};

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
pub(crate) struct Crossterm;

impl Events for Crossterm {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if event::poll(timeout)? {
            event::read().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// How often the loop looks for a finished count while one is running.
const COUNT_POLL: Duration = Duration::from_millis(100);

/// The worker thread that makes the header's counts, so that a count reading every record of
/// a large store never holds up a key.
#[derive(Debug)]
pub(crate) struct Counter {
    requests: mpsc::Sender<()>,
    replies: mpsc::Receiver<Counted>,
}

impl Counter {
    /// Starts the worker; it ends once the counter is dropped and its count in flight, if
    /// any, is done (the scope waits for that).
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn spawn<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        admin: &'env dyn Admin,
    ) -> io::Result<Counter> {
        let (requests, asked) = mpsc::channel::<()>();
        let (answer, replies) = mpsc::channel();
        thread::Builder::new()
            .name("sessdb-tui-count".into())
            .spawn_scoped(scope, move || work(admin, &asked, &answer))?;
        Ok(Counter { requests, replies })
    }

    /// Starts the worker on an admin interface of its own (a second connection to an admin
    /// socket), so that its calls never queue with the UI's. Nothing waits for it: once the
    /// counter is dropped it ends after its count in flight, and a process that exits first
    /// does not wait for that count.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn spawn_owned(admin: Arc<dyn Admin>) -> io::Result<Counter> {
        let (requests, asked) = mpsc::channel::<()>();
        let (answer, replies) = mpsc::channel();
        thread::Builder::new()
            .name("sessdb-tui-count".into())
            .spawn(move || work(&*admin, &asked, &answer))?;
        Ok(Counter { requests, replies })
    }

    /// Starts a count if the app wants one, and hands the app the one that finished. A count
    /// that has just started is waited for up to `settle` (`None`: as long as it takes), so
    /// that a quick one shows in the next frame rather than after a "counting" frame.
    fn serve(&self, app: &mut App, settle: Option<Duration>) {
        let started = app.take_count();
        if started && self.requests.send(()).is_err() {
            // The worker is gone (it panicked, and the panic hook has said so).
            app.counted_nothing();
            return;
        }
        if !app.counting {
            return;
        }
        let reply = match settle {
            None => self.replies.recv().map_err(|_| TryRecvError::Disconnected),
            Some(wait) if started => self.replies.recv_timeout(wait).map_err(|e| match e {
                RecvTimeoutError::Timeout => TryRecvError::Empty,
                RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
            }),
            Some(_) => self.replies.try_recv(),
        };
        match reply {
            Ok(count) => app.counted(count),
            Err(TryRecvError::Disconnected) => app.counted_nothing(),
            Err(TryRecvError::Empty) => {}
        }
    }
}

/// The worker: one count per request, until either end of the channels is gone.
fn work(admin: &dyn Admin, asked: &mpsc::Receiver<()>, answer: &mpsc::Sender<Counted>) {
    for () in asked {
        if answer.send(crate::app::count(admin)).is_err() {
            return;
        }
    }
}

/// Runs until the app quits. A timeout with work pending is a [`Action::Tick`]; a timeout
/// without is the auto-refresh interval passing. The header's counts are made by `counter`;
/// `settle` is how long a frame waits for a count that has just started (see
/// [`Counter::serve`]).
///
/// # Errors
/// Terminal errors (drawing, reading events); store errors never end the loop.
pub(crate) fn event_loop<B>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    admin: &dyn Admin,
    events: &mut dyn Events,
    counter: &Counter,
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
        counter.serve(app, settle);
        terminal
            .draw(|frame| crate::ui::render(app, frame))
            .map_err(to_io)?;
        let until_refresh = refresh_at.saturating_duration_since(Instant::now());
        let timeout = if app.busy() {
            Duration::ZERO
        } else if app.counting {
            until_refresh.min(COUNT_POLL)
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
            // A look for a finished count, before the refresh is due.
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
