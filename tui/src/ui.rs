//! Drawing: `&App` in, cells out. Each part of the screen is a widget of its own so it can be
//! tested on a plain `Buffer`; only the rows that fit on screen are turned into cells.

use std::borrow::Cow;

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Margin, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Scrollbar, ScrollbarOrientation, ScrollbarState,
    StatefulWidget, Table, TableState, Widget,
};
use ratatui::Frame;
use sessdb::{Handle, SessionInfo};
use time::OffsetDateTime;

use crate::app::{plural, App, Confirm, Detail, Message, Mode};
use crate::format::{ago, bytes, clock, remaining, span, timestamp};
use crate::keys::{self, KeyHelp};
use crate::listing::Filter;
use crate::text::{keep_ends, keep_head, keep_tail, printable, width, wrap, wrap_words};
use crate::theme::Theme;

/// Where each part of the screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Areas {
    header: Rect,
    table: Rect,
    detail: Option<Rect>,
    status: Rect,
    keys: Rect,
}

fn areas(area: Rect, detail: bool) -> Areas {
    let [header, body, status, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    if detail {
        let [table, detail] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1)]).areas(body);
        Areas {
            header,
            table,
            detail: Some(detail),
            status,
            keys,
        }
    } else {
        Areas {
            header,
            table: body,
            detail: None,
            status,
            keys,
        }
    }
}

/// Table rows that fit in a terminal of `area` (inside the border, below the column names).
pub(crate) fn table_body_height(area: Rect, detail: bool) -> u16 {
    areas(area, detail).table.height.saturating_sub(3)
}

/// Detail lines that fit in a terminal of `area`.
pub(crate) fn detail_body_height(area: Rect) -> u16 {
    areas(area, true)
        .detail
        .map_or(0, |r| r.height.saturating_sub(2))
}

/// The cells a detail line may take in a terminal of `area`: inside the border, left of the
/// scrollbar.
pub(crate) fn detail_body_width(area: Rect) -> u16 {
    areas(area, true)
        .detail
        .map_or(0, |r| r.width.saturating_sub(3))
}

/// Draws the whole screen.
pub(crate) fn render(app: &App, frame: &mut Frame) {
    let a = areas(frame.area(), app.detail().is_some());
    frame.render_widget(Header { app }, a.header);
    frame.render_widget(SessionTable { app }, a.table);
    if let (Some(area), Some(detail)) = (a.detail, app.detail()) {
        frame.render_widget(DetailPane { app, detail }, area);
    }
    frame.render_widget(StatusLine { app }, a.status);
    if let Mode::Filter { input } = &app.mode {
        // In cells: a wide character moves the cursor two columns.
        let prompt = width(FILTER_PROMPT) + width(&typed_filter(app, input, a.status));
        let x = a.status.x + u16::try_from(prompt).unwrap_or(u16::MAX);
        frame.set_cursor_position((x.min(a.status.right().saturating_sub(1)), a.status.y));
    }
    frame.render_widget(
        KeyBar {
            keys: &keys::footer(
                &app.mode,
                app.listing.view().filter.is_active(),
                app.writes(),
            ),
            theme: &app.theme,
        },
        a.keys,
    );
    match &app.mode {
        Mode::Confirm { ask, .. } => frame.render_widget(
            ConfirmDialog {
                ask,
                theme: &app.theme,
            },
            frame.area(),
        ),
        Mode::Help { .. } => frame.render_widget(HelpOverlay { theme: &app.theme }, frame.area()),
        _ => {}
    }
}

const FILTER_PROMPT: &str = " filter: ";

/// The least of the title a narrow header keeps before it shortens the time of the refresh.
const TITLE_MIN: usize = 12;

/// The two header lines: what is open and when it was read; the store's counts.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub(crate) app: &'a App,
}

impl Widget for Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let t = &app.theme;
        // As of a fixed time (`--as-of`), every read is as of it: that is the time to show,
        // with its date, rather than a clock that never moves.
        let (label, at) = match app.as_of {
            Some(t) => ("as of ", Some(format!("{} {}", t.date(), clock(t)))),
            None => ("refreshed ", app.refreshed_at.map(clock)),
        };
        let utc = if at.is_some() { " UTC" } else { "" };
        let at = at.as_deref().unwrap_or("never");
        let auto = if !app.auto_refresh {
            "auto off".to_string()
        } else if app.unanswered {
            // The application did not answer: no read until `r` (see `App::unanswered`).
            "auto paused".to_string()
        } else {
            format!("auto {}", span(app.refresh))
        };
        // The right side, longest first: a narrow terminal gets the first that leaves the
        // title some room, so the two never run together.
        let refreshed = Span::styled(label, t.label);
        let time = Span::styled(format!("{at}{utc}"), t.value);
        let end = Span::raw(" ");
        let rights = [
            vec![
                refreshed.clone(),
                time.clone(),
                Span::styled(" · ", t.label),
                Span::styled(auto, t.value),
                end.clone(),
            ],
            vec![refreshed, time.clone(), end.clone()],
            vec![time, end.clone()],
            vec![Span::styled(at.to_string(), t.value), end],
        ];
        // Rows that may be out of date say so first; the time is then that of the last
        // read that worked.
        let rights = rights.map(|spans| match app.stale {
            Some(_) => [Span::styled("stale", t.error), Span::styled(" · ", t.label)]
                .into_iter()
                .chain(spans)
                .collect(),
            None => spans,
        });
        let name = Span::styled(" sessdb ", t.title);
        let title_min = width(&app.title).min(TITLE_MIN);
        let fits = |right: &Line| name.width() + 1 + title_min + 1 + right.width();
        let mut rights = rights.into_iter().map(Line::from);
        let mut right = rights.next().unwrap_or_default();
        for shorter in rights {
            if fits(&right) <= usize::from(area.width) {
                break;
            }
            right = shorter;
        }
        // One cell between the title and the right side.
        let room = usize::from(area.width).saturating_sub(name.width() + 1 + right.width() + 1);
        let left = Line::from(vec![
            name,
            Span::raw(" "),
            Span::styled(keep_tail(&app.title, room), t.value),
        ]);
        let [top, bottom] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
        left.render(top, buf);
        right.right_aligned().render(top, buf);
        let counts = match &app.stats {
            Some(s) => {
                // Items, each shown whole or not at all: a count cut short (`on disk 2.0`,
                // its unit gone) would read as another.
                let mut items: Vec<Vec<Span>> = Vec::new();
                // After a count failed, the counts of the last that worked: said first and
                // dimmed, as stale rows are, and with the time they were made.
                let value = if app.count_failed {
                    items.push(vec![
                        Span::styled("stale", t.error),
                        Span::styled(" · ", t.label),
                    ]);
                    t.value.patch(t.expired)
                } else {
                    t.value
                };
                let counts = [
                    ("live ", s.live.to_string()),
                    (" · expired ", s.expired.to_string()),
                    (" · principals ", s.principals.to_string()),
                    (" · on disk ", bytes(s.bytes_on_disk)),
                ];
                for (label, text) in counts {
                    items.push(vec![
                        Span::styled(label, t.label),
                        Span::styled(text, value),
                    ]);
                }
                if app.counting {
                    // A large store's count takes a while; these are the previous one's.
                    items.push(vec![Span::styled(" · counting…", t.label)]);
                } else if let Some(at) = app
                    .stats_at
                    .filter(|_| app.stats_skipped || app.count_failed)
                {
                    // A slow count (a large store) is repeated less often than the table;
                    // a failed one leaves those of the last that worked.
                    items.push(vec![
                        Span::styled(" · counted ", t.label),
                        Span::styled(clock(at), value),
                    ]);
                }
                if s.undecodable > 0 {
                    items.push(vec![
                        Span::styled(" · undecodable ", t.label),
                        Span::styled(s.undecodable.to_string(), t.error),
                    ]);
                }
                Line::from(whole_items(items, usize::from(area.width)))
            }
            // Nothing was ever counted, and nothing is counting now.
            None if app.count_failed && !app.counting => {
                Line::from(Span::styled(" count failed", t.error))
            }
            None => Line::from(Span::styled(" counting sessions…", t.label)),
        };
        counts.render(bottom, buf);
    }
}

/// The spans of `items` (after one space) that fit in `room` cells, each item whole: the
/// first that does not fit ends the line, with `…` when that fits, to say something is left
/// out.
fn whole_items(items: Vec<Vec<Span<'static>>>, room: usize) -> Vec<Span<'static>> {
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1;
    for item in items {
        let width: usize = item.iter().map(Span::width).sum();
        if used + width > room {
            if used + 2 <= room {
                spans.push(Span::raw(" …"));
            }
            break;
        }
        used += width;
        spans.extend(item);
    }
    spans
}

/// The table of the loaded page, with a scrollbar for the position in the whole listing.
#[derive(Debug)]
pub(crate) struct SessionTable<'a> {
    pub(crate) app: &'a App,
}

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Handle,
    Principal,
    Label,
    Address,
    Created,
    Accessed,
    Expires,
    Size,
}

/// The columns, left to right.
const COLUMNS: [Column; 8] = [
    Column::Handle,
    Column::Principal,
    Column::Label,
    Column::Address,
    Column::Created,
    Column::Accessed,
    Column::Expires,
    Column::Size,
];

/// The columns a narrow terminal leaves out, first to last: the least identifying go first,
/// so that the handle (what `sessctl` takes) and the principal always show.
const DROPPED_FIRST: [Column; 6] = [
    Column::Size,
    Column::Created,
    Column::Accessed,
    Column::Expires,
    Column::Address,
    Column::Label,
];

/// The handle's full short form; 6 hex characters still identify it to `sessctl`.
const HANDLE_WIDTH: u16 = 8;
const HANDLE_MIN: u16 = 6;

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Handle => "HANDLE",
            Column::Principal => "PRINCIPAL",
            Column::Label => "LABEL",
            Column::Address => "ADDRESS",
            Column::Created => "CREATED",
            Column::Accessed => "ACCESSED",
            Column::Expires => "EXPIRES",
            Column::Size => "SIZE",
        }
    }

    /// The width of a column of fixed width, or the least a column of free text (which
    /// shares what the fixed ones leave) is given.
    fn width(self) -> (u16, bool) {
        match self {
            Column::Handle => (HANDLE_WIDTH, true),
            Column::Principal => (12, false),
            Column::Label => (8, false),
            Column::Address => (10, false),
            Column::Created | Column::Accessed | Column::Expires | Column::Size => (8, true),
        }
    }
}

/// The principals' column is kept this wide, when the principals on screen need it, before
/// the less identifying columns are: a principal cut short may read as another.
const PRINCIPAL_KEPT: u16 = 32;

/// The addresses' column is kept this wide (an IPv4 address whole), when the addresses on
/// screen need it, before the less identifying columns are: addresses cut from their end all
/// read alike (`203.0.113…`). Longer ones (IPv6) are cut in the middle, keeping both ends.
const ADDRESS_KEPT: u16 = 15;

/// The columns that fit in `width` cells (one between columns), with their widths. Columns
/// are left out in [`DROPPED_FIRST`] order until the rest fit, the principals' column counted
/// `principals` cells wide (the widest principal on screen, up to [`PRINCIPAL_KEPT`]) and the
/// addresses' `addresses` wide (up to [`ADDRESS_KEPT`]), so a column goes before a principal
/// or an IPv4 address is cut; free text shares what is left evenly, none below its least
/// width.
fn columns(width: u16, principals: u16, addresses: u16) -> Vec<(Column, u16)> {
    let principals = principals.clamp(Column::Principal.width().0, PRINCIPAL_KEPT);
    let addresses = addresses.clamp(Column::Address.width().0, ADDRESS_KEPT);
    let least = |c: Column| match c {
        Column::Principal => principals,
        Column::Address => addresses,
        c => c.width().0,
    };
    let need = |shown: &[Column]| -> u16 {
        let widths: u16 = shown.iter().map(|&c| least(c)).sum();
        widths + u16::try_from(shown.len().saturating_sub(1)).unwrap_or(u16::MAX)
    };
    let mut shown = COLUMNS.to_vec();
    for column in DROPPED_FIRST {
        if need(&shown) <= width {
            break;
        }
        shown.retain(|c| *c != column);
    }
    let handle = if need(&shown) <= width {
        HANDLE_WIDTH
    } else {
        HANDLE_MIN
    };
    let fixed: u16 = shown
        .iter()
        .map(|c| match c {
            Column::Handle => handle,
            c if c.width().1 => c.width().0,
            _ => 0,
        })
        .sum();
    let spacing = u16::try_from(shown.len().saturating_sub(1)).unwrap_or(u16::MAX);
    let free: Vec<u16> = shown
        .iter()
        .filter(|c| !c.width().1)
        .map(|&c| least(c))
        .collect();
    let shares = share(width.saturating_sub(fixed + spacing), &free);
    let mut shares = shares.into_iter();
    shown
        .into_iter()
        .map(|c| match c {
            Column::Handle => (c, handle),
            c if c.width().1 => (c, c.width().0),
            c => (c, shares.next().unwrap_or(0)),
        })
        .collect()
}

/// `total` shared between columns as evenly as their least widths allow (the lowest level
/// that gives each `max(least, level)`); the first ones get the odd cells. When `total` is
/// short of the least widths, the first columns keep theirs and the last get what is left.
fn share(total: u16, least: &[u16]) -> Vec<u16> {
    let sum = |level: u16| -> u32 { least.iter().map(|&m| u32::from(m.max(level))).sum() };
    if least.is_empty() {
        return Vec::new();
    }
    if sum(0) > u32::from(total) {
        let mut left = total;
        return least
            .iter()
            .map(|&m| {
                let w = m.min(left);
                left -= w;
                w
            })
            .collect();
    }
    let mut level = 0;
    while sum(level + 1) <= u32::from(total) {
        level += 1;
    }
    let mut widths: Vec<u16> = least.iter().map(|&m| m.max(level)).collect();
    let mut odd = u32::from(total) - sum(level);
    for w in widths.iter_mut().filter(|w| **w == level) {
        if odd == 0 {
            break;
        }
        *w += 1;
        odd -= 1;
    }
    widths
}

impl SessionTable<'_> {
    /// One row of `columns`; free text is cut to its column with an ellipsis, so a cut value
    /// shows it is cut.
    fn row(&self, info: &SessionInfo, columns: &[(Column, u16)]) -> Row<'static> {
        let t = &self.app.theme;
        let now = self.app.now;
        let text = |v: &Option<String>, width: u16| {
            let shown = v.as_deref().map_or(Cow::Borrowed("-"), printable);
            Cell::from(keep_head(&shown, usize::from(width)))
        };
        let left = remaining(info.expires_at, now);
        let cells = columns.iter().map(|&(column, width)| match column {
            Column::Handle => {
                let short = info.handle.short();
                Cell::from(short.chars().take(usize::from(width)).collect::<String>())
            }
            Column::Principal => text(&info.principal, width),
            Column::Label => text(&info.label, width),
            Column::Address => Cell::from(keep_ends(
                &info
                    .remote_addr
                    .as_deref()
                    .map_or(Cow::Borrowed("-"), printable),
                usize::from(width),
            )),
            Column::Created => Cell::from(ago(info.created, now)),
            Column::Accessed => Cell::from(ago(info.last_access, now)),
            Column::Expires => match left {
                Some(d) if d.as_secs() < 60 => Cell::from(span(d)).style(t.urgent),
                Some(d) => Cell::from(span(d)),
                None => Cell::from("expired"),
            },
            Column::Size => Cell::from(Line::from(bytes(info.size as u64)).right_aligned()),
        });
        let row = Row::new(cells.collect::<Vec<_>>());
        if left.is_none() {
            row.style(t.expired)
        } else {
            row
        }
    }
}

impl Widget for SessionTable<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let t = &app.theme;
        let listing = &app.listing;
        let rows = listing.rows();
        // The size of the whole listing is known when there is no filter: the header's counts.
        let known = match (&listing.view().filter, &app.stats) {
            (Filter::None, Some(s)) => {
                let all = if listing.view().show_expired {
                    s.live + s.expired
                } else {
                    s.live
                };
                Some(usize::try_from(all).unwrap_or(usize::MAX))
            }
            _ => None,
        };
        let place = listing.place(known);
        let which = match (listing.view().show_expired, &app.stale) {
            (true, None) => " live + expired sessions ",
            (false, None) => " live sessions ",
            (true, Some(_)) => " live + expired sessions (stale) ",
            (false, Some(_)) => " live sessions (stale) ",
        };
        let span_text = if rows.is_empty() {
            String::new()
        } else if place.from_end {
            // Reached with G, size unknown (a filter): count from the end.
            let after = place.total - place.above - rows.len();
            format!(" {}–{} from the end ", after + 1, after + rows.len())
        } else {
            format!(
                " {}–{}{} ",
                place.above + 1,
                place.above + rows.len(),
                if listing.has_next() { "+" } else { "" }
            )
        };
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(t.border)
            .title(Span::styled(which, t.title))
            .title(Line::from(span_text).right_aligned());
        let inner = block.inner(area);
        block.render(area, buf);
        if rows.is_empty() {
            let text = if listing.is_incomplete() {
                "Searching…".to_string()
            } else {
                match &listing.view().filter {
                    Filter::None if listing.view().show_expired => "No sessions".to_string(),
                    Filter::None => "No live sessions (e shows expired ones)".to_string(),
                    _ => format!(
                        "No sessions match “{}”",
                        keep_ends(app.filter_text.trim(), filter_shown(inner.width))
                    ),
                }
            };
            let middle = inner.centered_vertically(Constraint::Length(1));
            Paragraph::new(text)
                .style(t.label)
                .alignment(Alignment::Center)
                .render(middle, buf);
            return;
        }
        let table_area = Rect {
            width: inner.width.saturating_sub(1),
            ..inner
        };
        let visible = usize::from(inner.height.saturating_sub(1));
        let end = (app.offset + visible).min(rows.len());
        let start = app.offset.min(end);
        let widest = |field: fn(&SessionInfo) -> Option<&str>| {
            let widest = rows[start..end]
                .iter()
                .filter_map(field)
                .map(|v| width(&printable(v)))
                .max()
                .unwrap_or(0);
            u16::try_from(widest).unwrap_or(u16::MAX)
        };
        let columns = columns(
            table_area.width,
            widest(|r| r.principal.as_deref()),
            widest(|r| r.remote_addr.as_deref()),
        );
        let header = Row::new(columns.iter().map(|(c, _)| Cell::from(c.name()))).style(t.column);
        let table = Table::new(
            rows[start..end].iter().map(|r| self.row(r, &columns)),
            columns.iter().map(|&(_, w)| Constraint::Length(w)),
        )
        .header(header)
        .column_spacing(1)
        .row_highlight_style(t.selected);
        // Rows that may be out of date are dimmed, as the header says why.
        let table = match app.stale {
            Some(_) => table.style(t.expired),
            None => table,
        };
        let mut state = TableState::new().with_selected(app.selected.checked_sub(start));
        StatefulWidget::render(table, table_area, buf, &mut state);

        // The scrollbar places the selection in the whole listing when its size is known
        // (no filter: the header's counts), else in what has been paged through so far.
        let position = place.above + app.selected;
        let total = place.total.max(position + 1);
        if total <= visible {
            return;
        }
        let bar = ScrollbarState::new(total)
            .position(position)
            .viewport_content_length(visible);
        scrollbar(area, buf, bar, t.border);
    }
}

/// A vertical scrollbar on the right border of `area`, between its top and bottom borders.
fn scrollbar(area: Rect, buf: &mut Buffer, mut state: ScrollbarState, style: Style) {
    Scrollbar::new(ScrollbarOrientation::VerticalRight)
        .begin_symbol(None)
        .end_symbol(None)
        .style(style)
        .render(
            area.inner(Margin {
                horizontal: 0,
                vertical: 1,
            }),
            buf,
            &mut state,
        );
}

/// The lines of the detail pane, `width` cells wide at most: metadata, then the data as pretty
/// JSON; `info` is `None` when the session no longer exists. A value too long for the pane
/// (a browser's user agent, a token in the data) goes on over the lines below it, indented,
/// rather than being cut at the pane's edge: the pane is where a session is read whole.
pub(crate) fn detail_lines(
    t: &Theme,
    now: OffsetDateTime,
    width: usize,
    handle: &Handle,
    info: Option<&SessionInfo>,
) -> Vec<Line<'static>> {
    let Some(info) = info else {
        return vec![
            Line::styled(
                format!("Session {} no longer exists.", handle.short()),
                t.error,
            ),
            Line::styled(
                "It was invalidated, purged or removed after expiring.",
                t.label,
            ),
        ];
    };
    let mut lines = Vec::new();
    // Too narrow a pane for values beside their labels: each value goes under its label.
    let stacked = width < LABEL_CELLS + MIN_VALUE_CELLS;
    let mut field = |name: &'static str, value: String| {
        if stacked {
            let indent = 2.min(width / 2);
            lines.push(Line::styled(keep_head(name, width), t.label));
            for part in wrap_words(&value, width.saturating_sub(indent)) {
                lines.push(Line::from(vec![
                    Span::raw(" ".repeat(indent)),
                    Span::styled(part, t.value),
                ]));
            }
            return;
        }
        let label = format!("{name:<LABEL_CELLS$}");
        let parts = wrap_words(&value, width.saturating_sub(LABEL_CELLS));
        let mut label = Some(Span::styled(label, t.label));
        for part in parts {
            let head = label
                .take()
                .unwrap_or_else(|| Span::raw(" ".repeat(LABEL_CELLS)));
            lines.push(Line::from(vec![head, Span::styled(part, t.value)]));
        }
    };
    let opt = |v: &Option<String>| {
        v.as_deref()
            .map_or_else(|| "-".into(), |v| printable(v).into_owned())
    };
    let until = |at| match remaining(at, now) {
        Some(d) => format!("{} (in {})", timestamp(at), span(d)),
        None => format!(
            "{} ({})",
            timestamp(at),
            ago(at, now).replace(" ago", " ago, expired")
        ),
    };
    field("handle", info.handle.to_string());
    field("principal", opt(&info.principal));
    field("label", opt(&info.label));
    field("remote addr", opt(&info.remote_addr));
    field("user agent", opt(&info.user_agent));
    field(
        "created",
        format!("{} ({})", timestamp(info.created), ago(info.created, now)),
    );
    field(
        "last access",
        format!(
            "{} ({})",
            timestamp(info.last_access),
            ago(info.last_access, now)
        ),
    );
    field("idle timeout", span(info.idle_timeout));
    field("deadline", until(info.absolute_deadline));
    field("expires", until(info.expires_at));
    field("version", info.version.to_string());
    field("size", bytes(info.size as u64));
    lines.push(Line::styled("data", t.label));
    let json = info.to_json();
    let data = json.get("data").cloned().unwrap_or_default();
    let pretty = serde_json::to_string_pretty(&data).unwrap_or_else(|e| e.to_string());
    // JSON escapes the C0 controls only; a direction override or a C1 control in a string is
    // shown escaped (by `wrap_words`), as in every other field. JSON escapes its backslashes itself.
    for l in pretty.lines() {
        let text = l.trim_start_matches(' ');
        // Two cells in from the label, and two more where a line goes on, but never so far
        // that a deeply nested value gets no room.
        let indent = (2 + l.len() - text.len()).min(width / 2);
        let more = (indent + 2).min(width / 2);
        let mut parts = wrap_words(text, width.saturating_sub(indent)).into_iter();
        let first = parts.next().unwrap_or_default();
        lines.push(Line::raw(format!("{}{first}", " ".repeat(indent))));
        // The lines it goes on over are narrower than its first: wrapped again to fit.
        let rest: String = parts.collect();
        if !rest.is_empty() {
            for part in wrap_words(&rest, width.saturating_sub(more)) {
                lines.push(Line::raw(format!("{}{part}", " ".repeat(more))));
            }
        }
    }
    lines
}

/// The width of the detail pane's labels, the column its values start at.
const LABEL_CELLS: usize = 13;

/// The fewest cells a value gets beside its label; in a narrower pane it goes under it.
const MIN_VALUE_CELLS: usize = 16;

/// The detail pane of one session, scrolled.
#[derive(Debug)]
pub(crate) struct DetailPane<'a> {
    pub(crate) app: &'a App,
    pub(crate) detail: &'a Detail,
}

impl Widget for DetailPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = &self.app.theme;
        let lines = &self.detail.lines;
        let stale = if self.detail.stale { "(stale) " } else { "" };
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(t.border)
            .title(Span::styled(
                format!(" session {} {stale}", self.detail.handle.short()),
                t.title,
            ))
            .title(Line::from(" Enter/Esc closes ").right_aligned());
        let inner = block.inner(area);
        block.render(area, buf);
        let visible = usize::from(inner.height);
        let total = lines.len();
        let scroll = self.detail.scroll.min(total.saturating_sub(visible));
        let shown: Vec<Line> = lines.iter().skip(scroll).take(visible).cloned().collect();
        // Dimmed while it may be out of date, as stale rows are.
        let style = if self.detail.stale {
            t.expired
        } else {
            Style::new()
        };
        Paragraph::new(shown).style(style).render(
            Rect {
                width: inner.width.saturating_sub(1),
                ..inner
            },
            buf,
        );
        if total > visible {
            let bar = ScrollbarState::new(total.saturating_sub(visible) + 1)
                .position(scroll)
                .viewport_content_length(visible);
            scrollbar(area, buf, bar, t.border);
        }
    }
}

/// The status line: the filter prompt, the last message, or progress; and on the right the
/// sort and filter in force, saying when a sort covers only the loaded page.
#[derive(Debug)]
pub(crate) struct StatusLine<'a> {
    pub(crate) app: &'a App,
}

/// The status line's right side in a line `width` cells wide: the sort, and the filter when it
/// is not being typed (both ends of a long one, within half the width).
fn status_right(app: &App, width: u16) -> Line<'static> {
    let t = &app.theme;
    let view = app.listing.view();
    let mut right = vec![Span::styled("sort ", t.label)];
    right.push(Span::styled(view.sort.name(), t.value));
    if !view.sort.served_by_index(&view.filter) {
        right.push(Span::styled(" (loaded page only)", t.label));
    }
    if view.filter.is_active() && !matches!(app.mode, Mode::Filter { .. }) {
        right.push(Span::styled(" · filter ", t.label));
        right.push(Span::styled(
            keep_ends(app.filter_text.trim(), filter_shown(width)),
            t.value,
        ));
    }
    right.push(Span::raw(" "));
    Line::from(right)
}

/// The most cells a filter takes where it is shown beside something else, in a line `width`
/// cells wide: half of it (a whole handle from 64 columns), and at least 16.
fn filter_shown(width: u16) -> usize {
    usize::from(width / 2).max(16)
}

/// Whether the status line shows its right side while the filter is typed: not on a narrow
/// screen, where the input needs the room.
fn right_while_typing(area: Rect) -> bool {
    area.width >= 60
}

/// The filter as typed, as the prompt shows it in `area`: its end, the part being typed, when
/// it is longer than the room left (the prompt, the right side, and a cell for the cursor).
fn typed_filter(app: &App, input: &str, area: Rect) -> String {
    let right = if right_while_typing(area) {
        status_right(app, area.width).width() + 1
    } else {
        0
    };
    let room = usize::from(area.width).saturating_sub(width(FILTER_PROMPT) + right + 1);
    keep_tail(input, room)
}

impl Widget for StatusLine<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let t = &app.theme;
        let right = status_right(app, area.width);
        // A cell between them, so that a cut message never runs into the right side.
        let room = usize::from(area.width).saturating_sub(right.width() + 2);
        let left = match (&app.mode, &app.message) {
            (Mode::Filter { input }, _) => Line::from(vec![
                Span::styled(FILTER_PROMPT, t.key),
                Span::raw(typed_filter(app, input, area)),
            ]),
            // A purge under way is said before a read's error, which would otherwise hide it
            // until the purge ends (a purge confirmed while the application was stopped showed
            // nothing, and `p` then did nothing to see).
            (_, Some(Message::ReadError(text))) if app.purging.is_some() => {
                let progress = app.purging.map(crate::app::purge_progress);
                let progress = keep_head(&progress.unwrap_or_default(), room);
                let rest = room.saturating_sub(width(&progress) + 3);
                Line::from(vec![
                    Span::styled(format!(" {progress}"), t.info),
                    Span::styled(format!(" · {}", keep_head(text, rest)), t.error),
                ])
            }
            (_, Some(Message::ReadError(text) | Message::ActionError(text))) => {
                Line::styled(format!(" {}", keep_head(text, room)), t.error)
            }
            (_, Some(Message::Info(text))) => {
                Line::styled(format!(" {}", keep_head(text, room)), t.info)
            }
            (_, None) if app.purging.is_some() => {
                let text = app.purging.map(crate::app::purge_progress);
                Line::styled(
                    format!(" {}", keep_head(&text.unwrap_or_default(), room)),
                    t.info,
                )
            }
            (_, None) if app.listing.is_incomplete() => Line::styled(" Searching…", t.label),
            (_, None) => Line::raw(""),
        };
        left.render(area, buf);
        if !matches!(app.mode, Mode::Filter { .. }) || right_while_typing(area) {
            right.right_aligned().render(area, buf);
        }
    }
}

/// The keys of the current mode, as many as fit.
#[derive(Debug)]
pub(crate) struct KeyBar<'a> {
    pub(crate) keys: &'a [KeyHelp],
    pub(crate) theme: &'a Theme,
}

impl Widget for KeyBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let mut spans = vec![Span::raw(" ")];
        let mut used = 1;
        for (key, what) in self.keys {
            let item = width(key) + 1 + width(what) + 2;
            if used + item > usize::from(area.width) {
                break;
            }
            used += item;
            spans.push(Span::styled(*key, self.theme.key));
            spans.push(Span::raw(format!(" {what}  ")));
        }
        Line::from(spans).render(area, buf);
    }
}

/// A box of `width`×`height` in the middle of `area`, shrunk to fit.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    area.centered(
        Constraint::Length(width.min(area.width)),
        Constraint::Length(height.min(area.height)),
    )
}

/// The `y`/`n` question before a destructive action.
#[derive(Debug)]
pub(crate) struct ConfirmDialog<'a> {
    pub(crate) ask: &'a Confirm,
    pub(crate) theme: &'a Theme,
}

/// Lines a principal too long for the question may take in the dialog; a longer one shows
/// both its ends.
const PRINCIPAL_LINES: usize = 3;

impl ConfirmDialog<'_> {
    /// The question and its consequence, naming the principal in them (`Some`) or referring
    /// to it as "this principal", shown on lines of its own (`None`).
    fn text(&self, principal: Option<&str>) -> (String, String) {
        match self.ask {
            Confirm::Invalidate {
                handle,
                principal: p,
            } => (
                match (p, principal) {
                    (Some(_), Some(p)) => format!("Invalidate session {} of {p}?", handle.short()),
                    (Some(_), None) => {
                        format!("Invalidate session {} of this principal?", handle.short())
                    }
                    (None, _) => format!("Invalidate session {}?", handle.short()),
                },
                "Its holder is logged out at the next request.".into(),
            ),
            Confirm::InvalidatePrincipal { count, .. } => (
                format!(
                    "Invalidate {} of {}?",
                    match count {
                        1 => "the only session".to_string(),
                        n => format!("all {n} sessions"),
                    },
                    principal.unwrap_or("this principal")
                ),
                match principal {
                    Some(p) => format!("{p} is logged out everywhere."),
                    None => "It is logged out everywhere.".into(),
                },
            ),
            Confirm::Purge { count: Some(count) } => (
                format!("Purge {}?", plural(*count, "expired session")),
                "They are removed from the database for good.".into(),
            ),
            // A large store's count takes seconds; the number shows when it comes.
            Confirm::Purge { count: None } => (
                "Purge the expired sessions? (counting them…)".into(),
                "They are removed from the database for good.".into(),
            ),
        }
    }

    fn principal(&self) -> Option<&str> {
        match self.ask {
            Confirm::Invalidate { principal, .. } => principal.as_deref(),
            Confirm::InvalidatePrincipal { principal, .. } => Some(principal),
            Confirm::Purge { .. } => None,
        }
    }
}

impl Widget for ConfirmDialog<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        // Border and two columns of padding on each side.
        let frame = 6;
        let room = usize::from(area.width).saturating_sub(frame).max(1);
        // As the table shows it: a principal whose invisible characters reached the terminal
        // here (before, the question held it raw) could read as another.
        let shown = self.principal().map(printable);
        let principal = shown.as_deref();
        let (question, consequence) = self.text(principal);
        let mut lines = vec![];
        let consequence = if width(&question).max(width(&consequence)) <= room {
            lines.push(Line::styled(question, t.value));
            consequence
        } else {
            // A principal cut silently would make two that share a long prefix look alike:
            // it gets lines of its own, and shows both its ends if it needs more.
            let (question, consequence) = self.text(None);
            lines.push(Line::styled(keep_head(&question, room), t.value));
            if let Some(p) = principal {
                let p = keep_ends(p, PRINCIPAL_LINES * room.saturating_sub(1).max(1));
                lines.extend(wrap(&p, room).into_iter().map(|l| Line::styled(l, t.value)));
            }
            consequence
        };
        lines.push(Line::styled(keep_head(&consequence, room), t.label));
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::styled("y", t.key),
            Span::raw(" yes    "),
            Span::styled("n", t.key),
            Span::raw(" no"),
        ]));
        let widest = lines.iter().map(Line::width).max().unwrap_or(0);
        let popup = centered(
            area,
            u16::try_from(widest + frame).unwrap_or(u16::MAX),
            u16::try_from(lines.len() + 3).unwrap_or(u16::MAX),
        );
        Clear.render(popup, buf);
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(t.danger)
            .title(Span::styled(" Confirm ", t.danger));
        Paragraph::new(lines)
            .alignment(Alignment::Center)
            .block(block)
            .render(popup, buf);
    }
}

/// Every key, over the screen.
#[derive(Debug)]
pub(crate) struct HelpOverlay<'a> {
    pub(crate) theme: &'a Theme,
}

impl Widget for HelpOverlay<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let height = u16::try_from(keys::HELP.len() + 4).unwrap_or(u16::MAX);
        let popup = centered(area, 76, height);
        Clear.render(popup, buf);
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(t.title)
            .title(Span::styled(" Keys ", t.title))
            .title_bottom(Line::from(" any key closes ").right_aligned());
        // On a terminal too small for the box, a line cut short ends in `…` and the rows that
        // do not fit are counted in the last one, so nothing is lost unseen.
        let inner = block.inner(popup);
        let (columns, rows) = (usize::from(inner.width), usize::from(inner.height));
        let line = |key: &str, what: &str| {
            let key = keep_head(&format!(" {key:<16}"), columns);
            let what = keep_head(what, columns.saturating_sub(width(&key)));
            Line::from(vec![Span::styled(key, t.key), Span::raw(what)])
        };
        let mut lines: Vec<Line> = keys::HELP
            .iter()
            .map(|(key, what)| line(key, what))
            .collect();
        if lines.len() < rows {
            lines.insert(0, Line::raw(""));
        } else if lines.len() > rows && rows > 0 {
            let hidden = lines.len() - (rows - 1);
            lines.truncate(rows - 1);
            lines.push(Line::raw(keep_head(
                &format!(" … {hidden} more lines: enlarge the terminal"),
                columns,
            )));
        }
        Paragraph::new(lines)
            .block(block)
            .style(Style::new())
            .render(popup, buf);
    }
}
