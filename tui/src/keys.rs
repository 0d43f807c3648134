//! Which key means what in each mode: a pure function from a key event to an [`Action`], so
//! the key table is tested without a terminal and the help and footer can list it.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{Action, Mode};

/// The action for `key` in `mode`; `None` for keys that do nothing there. `filtered` says
/// whether a filter is set (then `Esc` clears it).
pub(crate) fn action(mode: &Mode, filtered: bool, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            KeyCode::Char('u') if matches!(mode, Mode::Filter { .. }) => Some(Action::ClearFilter),
            _ => None,
        };
    }
    match mode {
        Mode::Browsing | Mode::Detail(_) => browse(mode, filtered, key.code),
        Mode::Filter { .. } => match key.code {
            KeyCode::Esc => Some(Action::ClearFilter),
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Up => Some(Action::Up),
            KeyCode::Down => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown => Some(Action::PageDown),
            KeyCode::Char(c) => Some(Action::FilterInput(c)),
            _ => None,
        },
        Mode::Confirm { .. } => match key.code {
            KeyCode::Char('y' | 'Y') => Some(Action::Answer(true)),
            KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => Some(Action::Answer(false)),
            _ => None,
        },
        Mode::Help { .. } => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            _ => Some(Action::Back),
        },
    }
}

fn browse(mode: &Mode, filtered: bool, code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown | KeyCode::Char(' ') => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::First,
        KeyCode::End | KeyCode::Char('G') => Action::Last,
        KeyCode::Enter => Action::ToggleDetail,
        KeyCode::Char('/') => Action::OpenFilter,
        KeyCode::Char('s') => Action::CycleSort,
        KeyCode::Char('e') => Action::ToggleExpired,
        KeyCode::Char('d') | KeyCode::Delete => Action::AskInvalidate,
        KeyCode::Char('D') => Action::AskInvalidatePrincipal,
        KeyCode::Char('p') => Action::AskPurge,
        KeyCode::Char('r') | KeyCode::F(5) => Action::Refresh,
        KeyCode::Char('a') => Action::ToggleAutoRefresh,
        KeyCode::Char('?') | KeyCode::F(1) => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc => match mode {
            Mode::Detail(_) => Action::Back,
            _ if filtered => Action::ClearFilter,
            _ => Action::NothingToClose,
        },
        _ => return None,
    })
}

/// One row of the key table: the keys as written on screen, and what they do.
pub(crate) type KeyHelp = (&'static str, &'static str);

/// Every key, for the help overlay (and the README).
pub(crate) const HELP: &[KeyHelp] = &[
    (
        "↑/↓  j/k",
        "move the selection (scrolls the detail pane when open)",
    ),
    ("PgUp/PgDn Space", "one screen up or down, across pages"),
    ("g/G  Home/End", "first / last session"),
    (
        "Enter",
        "open or close the detail pane (typing a filter: keep it)",
    ),
    ("/", "filter: prefix of principal, label or handle"),
    (
        "",
        "  p:NAME exact principal (indexed), l:LABEL exact label",
    ),
    (
        "Esc  Ctrl-U",
        "clear the filter (Ctrl-U while typing it); close a pane",
    ),
    ("s", "sort: expiry, last access, principal, created"),
    ("e", "show or hide expired sessions"),
    ("d  Del", "invalidate the selected session (y/n)"),
    ("D", "invalidate every session of its principal (y/n)"),
    ("p", "purge expired sessions (y/n)"),
    ("r  F5", "refresh now"),
    ("a", "auto-refresh on or off"),
    ("?  F1", "this help"),
    ("q  Ctrl-C", "quit"),
];

/// The keys the footer offers in `mode`, most useful first; the footer shows what fits. With
/// `writes` off (a read-only view: `sessctl --as-of` a later time), the keys that write are
/// left out: they would only be refused.
pub(crate) fn footer(mode: &Mode, filtered: bool, writes: bool) -> Vec<KeyHelp> {
    all_footer(mode, filtered)
        .iter()
        .filter(|(key, _)| writes || !WRITE_KEYS.contains(key))
        .copied()
        .collect()
}

/// The keys that write.
const WRITE_KEYS: [&str; 3] = ["d", "D", "p"];

fn all_footer(mode: &Mode, filtered: bool) -> &'static [KeyHelp] {
    match mode {
        Mode::Browsing if filtered => &[
            ("?", "help"),
            ("q", "quit"),
            ("↑↓", "move"),
            ("⏎", "details"),
            ("/", "filter"),
            ("Esc", "clear filter"),
            ("d", "invalidate"),
            ("D", "all of user"),
            ("s", "sort"),
            ("e", "expired"),
            ("p", "purge"),
            ("r", "refresh"),
            ("a", "auto"),
        ],
        Mode::Browsing => &[
            ("?", "help"),
            ("q", "quit"),
            ("↑↓", "move"),
            ("⏎", "details"),
            ("/", "filter"),
            ("d", "invalidate"),
            ("D", "all of user"),
            ("s", "sort"),
            ("e", "expired"),
            ("p", "purge"),
            ("r", "refresh"),
            ("a", "auto"),
            ("g/G", "first/last"),
        ],
        Mode::Detail(_) => &[
            ("?", "help"),
            ("↑↓", "scroll"),
            ("PgUp/PgDn", "page"),
            ("⏎/Esc", "close"),
            ("d", "invalidate"),
            ("D", "all of user"),
            ("q", "quit"),
        ],
        Mode::Filter { .. } => &[
            ("⏎", "keep filter"),
            ("Esc", "clear filter"),
            ("↑↓", "move"),
            ("p:NAME", "exact principal"),
            ("l:LABEL", "exact label"),
        ],
        Mode::Confirm { .. } => &[("y", "yes"), ("n/Esc", "no")],
        Mode::Help { .. } => &[("any key", "closes the help"), ("q", "quit")],
    }
}
