//! Human output: relative times, sizes, aligned tables, colour that is off unless stdout is a
//! terminal and NO_COLOR is unset, and escaping of text that came from the database.

use std::io::{self, Write};
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use unicode_width::UnicodeWidthStr as _;

/// Colours, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Whether to write ANSI colour codes.
    pub color: bool,
}

/// The colour of a table row or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// No colour.
    Plain,
    /// Headers.
    Bold,
    /// Expiring soon.
    Warn,
    /// Expired.
    Bad,
}

impl Style {
    /// `text` in `tone`.
    pub fn paint(&self, tone: Tone, text: &str) -> String {
        let code = match tone {
            Tone::Plain => return text.to_string(),
            Tone::Bold => "1",
            Tone::Warn => "33",
            Tone::Bad => "31",
        };
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// A duration in at most two units: `45s`, `12m`, `2h 5m`, `3d 4h`; `none` for `Duration::MAX`.
pub fn span(d: Duration) -> String {
    if d == Duration::MAX {
        // A session with no idle timeout.
        return "none".into();
    }
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86_400);
    if s < 60 {
        format!("{s}s")
    } else if m < 60 {
        format!("{m}m")
    } else if h < 24 {
        two(h, "h", m % 60, "m")
    } else {
        two(days, "d", h % 24, "h")
    }
}

fn two(a: u64, ua: &str, b: u64, ub: &str) -> String {
    if b == 0 {
        format!("{a}{ua}")
    } else {
        format!("{a}{ua} {b}{ub}")
    }
}

/// `t` relative to `now`: `in 12m`, `3h 5m ago`, or `now`.
pub fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = t - now;
    let abs = Duration::from_millis(
        u64::try_from(d.whole_milliseconds().unsigned_abs()).unwrap_or(u64::MAX),
    );
    if abs < Duration::from_secs(1) {
        "now".to_string()
    } else if d.is_positive() {
        format!("in {}", span(abs))
    } else {
        format!("{} ago", span(abs))
    }
}

/// When a session expires, as a phrase: `expires in 12m` or `expired 3h ago`.
pub fn expiry_phrase(expires_at: OffsetDateTime, now: OffsetDateTime) -> String {
    if now >= expires_at {
        format!("expired {}", relative(expires_at, now))
    } else {
        format!("expires {}", relative(expires_at, now))
    }
}

/// An RFC 3339 timestamp (UTC, with milliseconds only when there are any).
pub fn timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A byte count for people: `812 B`, `4.0 KiB`, `1.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Text from the database made safe for a terminal, as the TUI shows it
/// ([`sessdb_tui::printable`]): control characters (escape sequences, newlines) and the
/// invisible characters that reorder or hide text are shown escaped, and a backslash that
/// would read as such an escape is doubled, so that two principals never show alike.
pub fn printable(text: &str) -> String {
    sessdb_tui::printable(text).into_owned()
}

/// A message or JSON made safe for a terminal ([`sessdb_tui::terminal_safe`]): escaped as
/// [`printable`] escapes, its backslashes as they are (it may quote what [`printable`] showed,
/// or escape them itself).
pub fn terminal_safe(text: &str) -> String {
    sessdb_tui::terminal_safe(text).into_owned()
}

/// Text of several lines made safe for a terminal: each line as [`terminal_safe`] shows it, the
/// line breaks kept. For messages (an error and its causes) that may hold text from elsewhere,
/// such as a running application's: escape sequences in them are shown, not obeyed, and a
/// message of several lines still reads as lines.
pub fn printable_lines(text: &str) -> String {
    text.split('\n')
        .map(sessdb_tui::terminal_safe)
        .collect::<Vec<_>>()
        .join("\n")
}

/// When `typed` (a `--principal` or `--label` that matched nothing) holds an escape as
/// [`printable`] shows one (`evil\u{202e}admin`, `tab\there`, `CORP\\tom`), how to type the
/// text itself: with the shell's `$'…'` quoting, where `\u{202e}` is written `\u202e`, and
/// `\t`, `\r`, `\n` and `\\` mean what they mean in sessctl's output (a backslash shown as it
/// is is doubled there). `None` for anything else, and for a `\u{…}` sessctl never writes.
pub fn escape_hint(flag: &str, typed: &str) -> Option<String> {
    if !["\\u{", "\\t", "\\r", "\\n", "\\\\"]
        .iter()
        .any(|escape| typed.contains(escape))
    {
        return None;
    }
    let mut quoted = String::from("$'");
    let mut rest = typed;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match (c, rest.as_bytes().first()) {
            ('\'', _) => quoted.push_str("\\'"),
            ('\\', Some(&e @ (b'\\' | b't' | b'r' | b'n'))) => {
                quoted.push('\\');
                quoted.push(char::from(e));
                rest = &rest[1..];
            }
            ('\\', Some(b'u')) if rest.starts_with("u{") => {
                let digits = &rest[2..];
                let end = digits.find('}').filter(|&end| {
                    (1..=6).contains(&end) && digits[..end].bytes().all(|b| b.is_ascii_hexdigit())
                })?;
                let hex = &digits[..end];
                if hex.len() <= 4 {
                    quoted.push_str(&format!("\\u{hex:0>4}"));
                } else {
                    quoted.push_str(&format!("\\U{hex:0>8}"));
                }
                rest = &digits[end + 1..];
            }
            // A backslash shown as it is (`CORP\alice`): `$'…'` reads `\a` as a bell.
            ('\\', _) => quoted.push_str("\\\\"),
            (c, _) => quoted.push(c),
        }
    }
    quoted.push('\'');
    Some(format!(
        "sessctl shows invisible characters escaped, and doubles a backslash that would read as \
         an escape, as in {}; to give the text itself, use the shell's $'…' quoting: {flag} \
         {quoted}",
        clip(typed, 40)
    ))
}

/// An optional field for people: escaped, or `-`.
pub fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_string(), printable)
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Rows of cells printed with aligned columns; each row has one tone.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<(Tone, Vec<String>)>,
}

impl Table {
    /// Adds a row.
    pub fn row(&mut self, tone: Tone, cells: Vec<String>) {
        self.rows.push((tone, cells));
    }

    /// Writes the rows; every column but the last is padded to its widest cell.
    ///
    /// # Errors
    /// Write errors.
    pub fn write(&self, out: &mut dyn Write, style: Style) -> io::Result<()> {
        self.write_at_least(out, style, &mut Vec::new())
    }

    /// Writes the rows with every column but the last padded to its widest cell or to
    /// `widths`, whichever is wider, and leaves in `widths` the widths used: a listing printed
    /// as several tables keeps its columns where they were. Widths are terminal cells, so
    /// that a CJK principal (two cells a character) keeps the columns after it in line.
    ///
    /// # Errors
    /// Write errors.
    pub fn write_at_least(
        &self,
        out: &mut dyn Write,
        style: Style,
        widths: &mut Vec<usize>,
    ) -> io::Result<()> {
        let columns = self.rows.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
        if widths.len() < columns {
            widths.resize(columns, 0);
        }
        for (_, row) in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.width());
            }
        }
        for (tone, row) in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.width();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                } else {
                    line.push_str(cell);
                }
            }
            writeln!(out, "{}", style.paint(*tone, line.trim_end()))?;
        }
        Ok(())
    }
}

/// Writes one JSON value on its own line.
///
/// # Errors
/// Write errors.
pub fn json_line(out: &mut dyn Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn escape_hints_quote_for_the_shell() {
        assert_eq!(escape_hint("--principal", "alice"), None);
        let hint = |typed| escape_hint("--label", typed).expect("a hint");
        assert!(hint("a\\u{202e}b").ends_with("--label $'a\\u202eb'"));
        assert!(hint("\\u{e0041}it's").ends_with("--label $'\\U000e0041it\\'s'"));
        assert!(hint("tab\\there \\u{200b}").ends_with("--label $'tab\\there \\u200b'"));
        // A backslash domain login as shown (doubled before `t`), and one shown as it is.
        assert!(hint("CORP\\\\tom").ends_with("--label $'CORP\\\\tom'"));
        assert!(hint("tab\\tCORP\\alice").ends_with("--label $'tab\\tCORP\\\\alice'"));
        assert_eq!(
            escape_hint("--label", "CORP\\alice"),
            None,
            "nothing escaped"
        );
        // Not an escape sessctl writes: no hint rather than a wrong one.
        assert_eq!(escape_hint("--label", "a\\u{zz}"), None);
        assert_eq!(escape_hint("--label", "a\\u{1234567}"), None);
    }

    #[test]
    fn spans_use_at_most_two_units() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (12 * 60 + 59, "12m"),
            (3600, "1h"),
            (3600 + 5 * 60, "1h 5m"),
            (86_400, "1d"),
            (3 * 86_400 + 4 * 3600 + 59, "3d 4h"),
        ];
        for (secs, want) in cases {
            assert_eq!(span(Duration::from_secs(secs)), want, "{secs}");
        }
        assert_eq!(span(Duration::MAX), "none");
    }

    #[test]
    fn relative_times_read_both_ways() {
        let now = datetime!(2025-01-01 12:00 UTC);
        assert_eq!(relative(datetime!(2025-01-01 12:12 UTC), now), "in 12m");
        assert_eq!(relative(datetime!(2025-01-01 9:00 UTC), now), "3h ago");
        assert_eq!(relative(now, now), "now");
        assert_eq!(
            expiry_phrase(datetime!(2025-01-01 12:12 UTC), now),
            "expires in 12m"
        );
        assert_eq!(expiry_phrase(now, now), "expired now");
        assert_eq!(
            expiry_phrase(datetime!(2024-12-30 12:00 UTC), now),
            "expired 2d ago"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("a\x1b[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(or_dash(None), "-");
    }

    /// Errors may carry a running application's text: every control character but the line
    /// break is escaped (a carriage return could rewrite the line, an OSC the window title).
    #[test]
    fn messages_keep_their_lines_and_lose_their_escapes() {
        assert_eq!(printable_lines("plain: text"), "plain: text");
        assert_eq!(
            printable_lines("first\nsecond\x1b]0;owned\x07\r\x1b[2J\n\u{202e}third\t"),
            "first\nsecond\\u{1b}]0;owned\\u{7}\\r\\u{1b}[2J\n\\u{202e}third\\t"
        );
    }

    #[test]
    fn sizes_and_clipping() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(1_363_149), "1.3 MiB");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn tables_align_and_colour_only_when_asked() {
        let mut t = Table::default();
        t.row(Tone::Bold, vec!["A".into(), "B".into(), "C".into()]);
        t.row(Tone::Bad, vec!["long".into(), "x".into(), "y".into()]);
        let mut plain = Vec::new();
        t.write(&mut plain, Style { color: false }).expect("write");
        assert_eq!(String::from_utf8_lossy(&plain), "A     B  C\nlong  x  y\n");
        let mut coloured = Vec::new();
        t.write(&mut coloured, Style { color: true })
            .expect("write");
        assert_eq!(
            String::from_utf8_lossy(&coloured),
            "\x1b[1mA     B  C\x1b[0m\n\x1b[31mlong  x  y\x1b[0m\n"
        );
    }
}
