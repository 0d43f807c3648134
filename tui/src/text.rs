//! Text measured and cut in terminal cells, the way ratatui's buffer lays it out: by grapheme
//! cluster, each as wide as `CellWidth` says, after [`printable`] has escaped what a terminal
//! would not show as it is. A CJK character takes two cells, an emoji sequence one grapheme; a
//! cut never splits a grapheme, and a cut value ends (or starts) with `…` so that it shows it
//! is cut.

use std::borrow::Cow;

use ratatui::buffer::CellWidth;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};
use unicode_segmentation::UnicodeSegmentation;

/// Text from the database made safe on a terminal: control characters (escape sequences, tabs,
/// newlines) are shown escaped (`\t`, `\u{1b}`) instead of being interpreted or dropped, and
/// so are the invisible characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width space, soft hyphen, tag characters, the byte order mark: Unicode's
/// format and default-ignorable characters, but those emoji and many scripts need), so that no
/// invisible character makes a principal read as another. A backslash is shown as it is, as a
/// domain user `CORP\alice` expects, except where it would read as one of those escapes: before
/// `t`, `r`, `n`, `u`, another backslash or an escaped character it is doubled (`CORP\\tom`),
/// so that `CORP\tom` typed with a backslash and one with a tab never show alike: two texts
/// never show the same. (Letters of other alphabets that look alike are not told apart.)
/// `sessctl` shows database text through it too.
///
/// ```
/// assert_eq!(sessdb_tui::printable("alice"), "alice");
/// assert_eq!(sessdb_tui::printable("tab\there\u{1b}[2J"), "tab\\there\\u{1b}[2J");
/// assert_eq!(sessdb_tui::printable("adm\u{202e}nimda"), "adm\\u{202e}nimda");
/// assert_eq!(sessdb_tui::printable("CORP\\alice"), "CORP\\alice");
/// assert_eq!(sessdb_tui::printable("CORP\\tom"), "CORP\\\\tom");
/// assert_eq!(sessdb_tui::printable("CORP\tom"), "CORP\\tom");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    shown(text, true)
}

/// Text made safe on a terminal as [`printable`] makes it, but with every backslash as it is:
/// for messages and JSON, which may hold text `printable` already showed (shown again, its
/// doubled backslashes would double again) or escape their backslashes themselves. What it
/// shows it shows the same a second time.
///
/// ```
/// assert_eq!(sessdb_tui::terminal_safe("a\tb \\t"), "a\\tb \\t");
/// let message = format!("no session of {}", sessdb_tui::printable("CORP\\tom"));
/// assert_eq!(sessdb_tui::terminal_safe(&message), message);
/// ```
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    shown(text, false)
}

/// [`printable`], or with `double_backslashes` false [`terminal_safe`].
fn shown(text: &str, double_backslashes: bool) -> Cow<'_, str> {
    // Borrowed until the first character shown otherwise.
    let mut shown: Option<String> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let doubled =
            double_backslashes && c == '\\' && reads_as_escape(chars.peek().map(|&(_, next)| next));
        if !doubled && !needs_escape(c) {
            if let Some(out) = &mut shown {
                out.push(c);
            }
            continue;
        }
        let out = shown.get_or_insert_with(|| {
            let mut out = String::with_capacity(text.len() + 8);
            out.push_str(&text[..at]);
            out
        });
        if doubled {
            out.push_str("\\\\");
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.extend(c.escape_unicode());
        }
    }
    shown.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// Whether a backslash followed by `next` would read as the start of an escape [`printable`]
/// writes (`\t`, `\r`, `\n`, `\u{…}`, a doubled backslash), or is followed by one.
fn reads_as_escape(next: Option<char>) -> bool {
    next.is_some_and(|n| matches!(n, 't' | 'r' | 'n' | 'u' | '\\') || needs_escape(n))
}

/// Control characters; Unicode's format characters (category Cf: direction marks, overrides
/// and isolates, zero-width space, soft hyphen, tag characters, the byte order mark, ...) but
/// the zero-width joiner and non-joiner, which emoji sequences and many scripts need; and the
/// other characters Unicode lists as default-ignorable (invisible): the combining grapheme
/// joiner, Hangul fillers, Khmer inherent vowels, Mongolian variation selectors, variation
/// selectors but the emoji one (U+FE0F).
fn needs_escape(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    match c {
        '\u{200c}' | '\u{200d}' | '\u{fe0f}' => false,
        '\u{034f}'
        | '\u{115f}'
        | '\u{1160}'
        | '\u{17b4}'
        | '\u{17b5}'
        | '\u{180b}'..='\u{180f}'
        | '\u{3164}'
        | '\u{fe00}'..='\u{fe0e}'
        | '\u{ffa0}'
        | '\u{e0100}'..='\u{e01ef}' => true,
        _ => c.general_category() == GeneralCategory::Format,
    }
}

/// The graphemes of `text` that take cells, with their widths, as the buffer draws them
/// (`Buffer::set_stringn`).
fn graphemes(text: &str) -> Vec<(&str, usize)> {
    text.graphemes(true)
        .filter(|g| !g.contains(char::is_control))
        .map(|g| (g, usize::from(g.cell_width())))
        .filter(|(_, width)| *width > 0)
        .collect()
}

/// The cells `text` takes on screen, escaped by [`terminal_safe`] (database text is given as
/// [`printable`] shows it).
pub(crate) fn width(text: &str) -> usize {
    graphemes(&terminal_safe(text)).iter().map(|(_, w)| w).sum()
}

/// The longest run of `parts` from the start that fits in `max` cells.
fn take<'a>(parts: impl Iterator<Item = (&'a str, usize)>, max: usize) -> (Vec<&'a str>, usize) {
    let mut used = 0;
    let mut kept = Vec::new();
    for (g, w) in parts {
        if used + w > max {
            break;
        }
        used += w;
        kept.push(g);
    }
    (kept, used)
}

/// The graphemes of `text` when it must be cut to fit `max` cells with room for the `…`;
/// otherwise (`Err`) what to show: `text` whole if it fits, nothing if `max` is 0.
fn to_cut(text: &str, max: usize) -> Result<Vec<(&str, usize)>, String> {
    let parts = graphemes(text);
    if parts.iter().map(|(_, w)| w).sum::<usize>() <= max {
        return Err(text.to_string());
    }
    if max == 0 {
        return Err(String::new());
    }
    Ok(parts)
}

/// `text` ([`terminal_safe`]) in at most `max` cells, ending in `…` when cut.
pub(crate) fn keep_head(text: &str, max: usize) -> String {
    let text = terminal_safe(text);
    match to_cut(&text, max) {
        Ok(parts) => format!("{}…", take(parts.into_iter(), max - 1).0.concat()),
        Err(whole) => whole,
    }
}

/// `…tail` of `text` ([`terminal_safe`]) in at most `max` cells.
pub(crate) fn keep_tail(text: &str, max: usize) -> String {
    let text = terminal_safe(text);
    let parts = match to_cut(&text, max) {
        Ok(parts) => parts,
        Err(whole) => return whole,
    };
    let (mut tail, _) = take(parts.into_iter().rev(), max - 1);
    tail.reverse();
    format!("…{}", tail.concat())
}

/// `head…tail` of `text` ([`terminal_safe`]) in at most `max` cells: both ends show, so two
/// long values that share a prefix still look different.
pub(crate) fn keep_ends(text: &str, max: usize) -> String {
    let text = terminal_safe(text);
    let parts = match to_cut(&text, max) {
        Ok(parts) => parts,
        Err(whole) => return whole,
    };
    let room = max - 1;
    let (head, used) = take(parts.iter().copied(), room.div_ceil(2));
    let (mut tail, _) = take(parts.iter().rev().copied(), room - used);
    tail.reverse();
    format!("{}…{}", head.concat(), tail.concat())
}

/// `text` ([`terminal_safe`]) broken into lines of at most `max` cells, anywhere (for
/// identifiers, which have no words to break at).
pub(crate) fn wrap(text: &str, max: usize) -> Vec<String> {
    let text = terminal_safe(text);
    let mut lines = Lines::new(max);
    for (g, w) in graphemes(&text) {
        if !lines.fits(w) {
            lines.end_line();
        }
        lines.push(g, w);
    }
    lines.done()
}

/// Lines of at most `max` cells, filled a grapheme at a time.
struct Lines {
    max: usize,
    done: Vec<String>,
    line: String,
    used: usize,
}

impl Lines {
    fn new(max: usize) -> Self {
        Lines {
            max,
            done: Vec::new(),
            line: String::new(),
            used: 0,
        }
    }

    /// Whether `cells` more fit on the line (anything does on an empty one).
    fn fits(&self, cells: usize) -> bool {
        self.used == 0 || self.used + cells <= self.max
    }

    fn end_line(&mut self) {
        self.done.push(std::mem::take(&mut self.line));
        self.used = 0;
    }

    fn push(&mut self, grapheme: &str, cells: usize) {
        self.line.push_str(grapheme);
        self.used += cells;
    }

    /// The lines, the last one too; one empty line for no text.
    fn done(mut self) -> Vec<String> {
        if !self.line.is_empty() || self.done.is_empty() {
            self.end_line();
        }
        self.done
    }
}

/// `text` ([`terminal_safe`]) broken into lines of at most `max` visible cells, between words
/// where it can, and anywhere in a word longer than a line. The spaces after a word stay at the
/// end of its line, past `max` if need be (they show as nothing there), so that no line starts
/// with one and the lines, joined, are the text.
pub(crate) fn wrap_words(text: &str, max: usize) -> Vec<String> {
    let text = terminal_safe(text);
    let max = max.max(1);
    // Every grapheme, those of no width too: they are part of the text.
    let parts: Vec<(&str, usize)> = text
        .graphemes(true)
        .map(|g| (g, usize::from(g.cell_width())))
        .collect();
    let mut lines = Lines::new(max);
    // Each word with the spaces after it.
    for word in parts.split_inclusive(|&(g, _)| g == " ") {
        let body = &word[..word.iter().take_while(|&&(g, _)| g != " ").count()];
        let cells: usize = body.iter().map(|(_, w)| w).sum();
        // A word of no width goes on a line of its own too once the spaces before it are past
        // the line's end (it would make them show); the spaces never go alone.
        if !body.is_empty() && !lines.fits(cells) {
            lines.end_line();
        }
        for (i, &(g, w)) in word.iter().enumerate() {
            // Within a word longer than a line, anywhere; never before a space.
            if i < body.len() && cells > max && !lines.fits(w) {
                lines.end_line();
            }
            lines.push(g, w);
        }
    }
    lines.done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The text [`printable`] shows, read back the way a person reads it: `\\` a backslash,
    /// `\t`, `\r`, `\n` and `\u{…}` the characters they name, any other backslash itself.
    fn read_back(shown: &str) -> String {
        let mut text = String::new();
        let mut rest = shown;
        while let Some(c) = rest.chars().next() {
            rest = &rest[c.len_utf8()..];
            if c != '\\' {
                text.push(c);
                continue;
            }
            let simple = |to: char| Some((to, 1));
            let read = match rest.chars().next() {
                Some('\\') => simple('\\'),
                Some('t') => simple('\t'),
                Some('r') => simple('\r'),
                Some('n') => simple('\n'),
                Some('u') => rest.strip_prefix("u{").and_then(|hex| {
                    let end = hex.find('}')?;
                    let c = char::from_u32(u32::from_str_radix(&hex[..end], 16).ok()?)?;
                    Some((c, end + 3))
                }),
                _ => None,
            };
            match read {
                Some((c, len)) => {
                    text.push(c);
                    rest = &rest[len..];
                }
                None => text.push('\\'),
            }
        }
        text
    }

    #[test]
    fn a_backslash_is_doubled_only_where_it_would_read_as_an_escape() {
        assert_eq!(printable("CORP\\alice"), "CORP\\alice");
        assert_eq!(printable("a\\"), "a\\", "at the end");
        // A backslash domain login and a tab one: before, both showed as `CORP\tom`.
        assert_eq!(printable("CORP\\tom"), "CORP\\\\tom");
        assert_eq!(printable("CORP\tom"), "CORP\\tom");
        assert_eq!(printable("x\\u{202e}"), "x\\\\u{202e}");
        assert_eq!(printable("x\\\u{202e}"), "x\\\\\\u{202e}");
        assert_eq!(printable("\\\\"), "\\\\\\", "a backslash before another");
    }

    proptest! {
        /// No two texts show the same: what is shown reads back as the text, whatever mix of
        /// backslashes, letters escapes use, braces, control and invisible characters it holds.
        #[test]
        fn what_is_shown_reads_back_as_the_text(
            text in proptest::collection::vec(
                prop::sample::select(vec![
                    '\\', 't', 'r', 'n', 'u', '{', '}', '1', 'b', 'a', '\t', '\n', '\u{202e}',
                    '\u{1b}', '\u{0}', 'é', '\u{200d}',
                ]),
                0..12,
            ).prop_map(|chars| chars.into_iter().collect::<String>())
        ) {
            let shown = printable(&text);
            prop_assert_eq!(read_back(&shown), text.clone(), "shown as {}", shown);
            let hidden = shown.chars().any(|c| c.is_control() || c == '\u{202e}');
            prop_assert!(!hidden, "shown as {}", shown);
        }

        /// Wrapped, any text keeps every character, in order, no line but the first starts with
        /// a space, and what a line shows fits, but for a grapheme wider than the line on its
        /// own.
        #[test]
        fn wrapped_text_is_the_text_in_lines_that_fit(
            text in proptest::collection::vec(
                prop::sample::select(vec![
                    "a", "bc", " ", "  ", "漢", "\u{301}", "\t", "👩\u{200d}👧", "-", "\u{1161}",
                ]),
                0..30,
            ).prop_map(|parts| parts.concat()),
            max in 0usize..12,
        ) {
            let lines = wrap_words(&text, max);
            prop_assert_eq!(lines.concat(), terminal_safe(&text).into_owned());
            // Only the text's own leading spaces start a line: the first.
            for line in lines.iter().skip(1) {
                prop_assert!(line.graphemes(true).next() != Some(" "), "{:?}", lines);
            }
            for line in &lines {
                let shown = line.trim_end_matches(' ');
                let one = shown.graphemes(true).filter(|g| g.cell_width() > 0).count() <= 1;
                prop_assert!(width(shown) <= max.max(1) || one, "{:?} at {}", lines, max);
            }
        }
    }

    #[test]
    fn widths_count_cells_not_characters() {
        assert_eq!(width("alice"), 5);
        assert_eq!(width("漢字テスト"), 10);
        // A family emoji: seven characters, one grapheme of two cells.
        assert_eq!(width("👩\u{200d}👩\u{200d}👧\u{200d}👦"), 2);
        // A combining accent takes no cell of its own.
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(width("a\tb"), 4, "control characters are shown escaped");
        assert_eq!(width("a\u{202e}b"), 10, "and so are direction overrides");
        assert_eq!(width("a\u{e0061}"), 10, "and tag characters");
        assert_eq!(width("a\u{fe00}"), 9, "and variation selectors");
        assert_eq!(width("a\u{200d}"), 1, "not the zero-width joiner");
    }

    #[test]
    fn cuts_fit_the_cells_and_show_they_are_cut() {
        let cjk = "漢字テストユーザー";
        assert_eq!(keep_head(cjk, 18), cjk, "fits exactly");
        // A wide character that would straddle the edge is left out, not split.
        assert_eq!(keep_head(cjk, 10), "漢字テス…");
        assert_eq!(width(&keep_head(cjk, 10)), 9);
        assert_eq!(keep_head(cjk, 9), "漢字テス…");
        assert_eq!(keep_head(cjk, 8), "漢字テ…");
        assert_eq!(keep_head(cjk, 1), "…");
        assert_eq!(keep_head(cjk, 0), "");
        assert_eq!(keep_tail(cjk, 10), "…ユーザー");
        assert_eq!(keep_tail("/srv/app/db", 8), "…/app/db");
        let family = "👩\u{200d}👩\u{200d}👧\u{200d}👦";
        let name = format!("{family}{family}{family}-team");
        assert_eq!(keep_head(&name, 6), format!("{family}{family}…"));
        assert_eq!(width(&keep_head(&name, 6)), 5);
        for max in 0..14 {
            assert!(width(&keep_head(&name, max)) <= max);
            assert!(width(&keep_tail(&name, max)) <= max);
            assert!(width(&keep_ends(&name, max)) <= max);
        }
    }

    #[test]
    fn both_ends_tell_apart_values_that_share_a_prefix() {
        let a = "tenant-42/service-account/reporting-eu";
        let b = "tenant-42/service-account/reporting-us";
        assert_eq!(keep_ends(a, 20), "tenant-42/…orting-eu");
        assert_ne!(keep_ends(a, 20), keep_ends(b, 20));
        assert_eq!(keep_ends("漢字テストユーザー", 9), "漢字…ザー");
        assert_eq!(keep_ends("short", 9), "short");
    }

    #[test]
    fn wrapping_breaks_between_graphemes() {
        assert_eq!(wrap("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(wrap("漢字テスト", 5), ["漢字", "テス", "ト"]);
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap_words("", 5), [""]);
        assert_eq!(wrap_words("ab cd ef", 5), ["ab cd ", "ef"]);
        assert_eq!(wrap_words("ab cd ef", 4), ["ab ", "cd ", "ef"]);
        assert_eq!(wrap_words("abcdefg hi", 3), ["abc", "def", "g ", "hi"]);
        assert_eq!(wrap_words("a  b", 1), ["a  ", "b"]);
        assert_eq!(wrap_words("漢字 テスト", 4), ["漢字 ", "テス", "ト"]);
        // A grapheme of no width is kept, in a word broken anywhere too.
        assert_eq!(wrap_words("\u{301}abcdef", 2).concat(), "\u{301}abcdef");
        assert_eq!(wrap_words("\u{1161}", 2), ["\u{1161}"]);
    }
}
