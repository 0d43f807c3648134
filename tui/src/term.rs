//! The event loop: read a terminal event or time out, turn it into an [`Action`], update,
//! draw. Generic over the ratatui backend and the event source, so tests drive the real loop
//! on a `TestBackend` with scripted keys.

use std::error::Error;
use std::io;
use std::time::{Duration, Instant};

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event};
use ratatui::Terminal;
use sessdb::Admin;

use crate::app::{Action, App};

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

/// Runs until the app quits. A timeout with work pending is a [`Action::Tick`]; a timeout
/// without is the auto-refresh interval passing.
///
/// # Errors
/// Terminal errors (drawing, reading events); store errors never end the loop.
pub(crate) fn event_loop<B>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    admin: &dyn Admin,
    events: &mut dyn Events,
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
    // The counts may need a full scan of a large store: the first page is on screen before.
    app.load_stats(admin);
    let mut refresh_at = Instant::now() + app.refresh;
    while !app.quit {
        terminal
            .draw(|frame| crate::ui::render(app, frame))
            .map_err(to_io)?;
        let timeout = if app.busy() {
            Duration::ZERO
        } else {
            refresh_at.saturating_duration_since(Instant::now())
        };
        let action = match events.next(timeout)? {
            Some(Event::Key(key)) => {
                let filtered = app.listing.view().filter.is_active();
                crate::keys::action(&app.mode, filtered, key)
            }
            Some(Event::Resize(width, height)) => Some(Action::Resize(width, height)),
            Some(_) => None,
            None if app.busy() => Some(Action::Tick),
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
