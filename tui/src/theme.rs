//! The styles of the screen, in colour or without (NO_COLOR): without colour, emphasis comes
//! from bold, dim and reverse video only, so nothing is lost on a monochrome terminal.

use ratatui::style::{Color, Modifier, Style};

/// Every style the screen uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Theme {
    /// The product name and title in the header.
    pub(crate) title: Style,
    /// Labels such as `live` in the header.
    pub(crate) label: Style,
    /// Numbers and values next to labels.
    pub(crate) value: Style,
    /// The table's column names.
    pub(crate) column: Style,
    /// The selected row.
    pub(crate) selected: Style,
    /// Expired sessions.
    pub(crate) expired: Style,
    /// A session expiring within a minute.
    pub(crate) urgent: Style,
    /// Error messages.
    pub(crate) error: Style,
    /// Confirmation messages ("Invalidated 1 session").
    pub(crate) info: Style,
    /// Key names in the footer and help.
    pub(crate) key: Style,
    /// Pane borders.
    pub(crate) border: Style,
    /// The border of a dialog that destroys something.
    pub(crate) danger: Style,
}

impl Theme {
    /// The theme for a terminal with colours, or without when `no_color`.
    pub(crate) fn new(no_color: bool) -> Theme {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let dim = Style::new().add_modifier(Modifier::DIM);
        if no_color {
            return Theme {
                title: bold,
                label: Style::new(),
                value: bold,
                column: bold,
                selected: Style::new().add_modifier(Modifier::REVERSED),
                expired: dim,
                urgent: bold,
                error: bold,
                info: Style::new(),
                key: bold,
                border: Style::new(),
                danger: bold,
            };
        }
        Theme {
            title: bold.fg(Color::Cyan),
            label: Style::new().fg(Color::Gray),
            value: bold.fg(Color::White),
            column: bold.fg(Color::Yellow),
            selected: Style::new()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
            expired: dim,
            urgent: bold.fg(Color::Red),
            error: bold.fg(Color::Red),
            info: Style::new().fg(Color::Green),
            key: bold.fg(Color::Cyan),
            border: Style::new().fg(Color::DarkGray),
            danger: bold.fg(Color::Red),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_uses_no_colours() {
        let t = Theme::new(true);
        for style in [
            t.title, t.label, t.value, t.column, t.selected, t.expired, t.urgent, t.error, t.info,
            t.key, t.border, t.danger,
        ] {
            assert_eq!((style.fg, style.bg), (None, None), "{style:?}");
        }
        assert!(t.selected.add_modifier.contains(Modifier::REVERSED));
        assert_ne!(Theme::new(false), t);
    }
}
