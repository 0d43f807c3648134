//! `sessctl list`: sessions matching a filter, soonest expiry first (to within the expiry
//! index's lag, see `ListQuery`), paged through the
//! store's cursor so the whole store is never loaded at once.

use std::time::Duration;

use sessdb::{ListQuery, SessionInfo};
use time::OffsetDateTime;

use super::Ctx;
use crate::db::Access;
use crate::exit::Exit;
use crate::output::{clip, escape_hint, or_dash, relative, Table, Tone};

/// Sessions read from the store per page.
const PAGE: usize = 1000;

/// A session expiring within this long is highlighted.
const SOON: Duration = Duration::from_secs(5 * 60);

/// The widest cell of each column but the last, as `table` clips them: a handle, a principal,
/// a label, an IPv6 address, a last access (`12d 23h ago`).
const WIDEST: [usize; 5] = [32, PRINCIPAL_CHARS, LABEL_CHARS, ADDRESS_CHARS, 11];

const PRINCIPAL_CHARS: usize = 32;
const LABEL_CHARS: usize = 24;
const ADDRESS_CHARS: usize = 39;

/// `list [--principal P] [--label L] [--expired] [--expiring-within D] [--limit N] [--json]`
#[derive(Debug)]
pub struct List {
    /// The filter (its `limit` and `after` are managed here).
    pub query: ListQuery,
    /// At most this many sessions; `None` for all.
    pub limit: Option<usize>,
    /// JSON Lines instead of a table.
    pub json: bool,
}

impl List {
    /// Prints the matching sessions.
    ///
    /// # Errors
    /// Open, storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        let db = ctx.open(Access::Read)?;
        let admin = db.admin();
        let now = admin.now();
        let mut query = self.query.clone();
        let mut shown = 0usize;
        let mut more = false;
        // The column widths of a listing printed in pages: at least what the first page
        // needs, or, when more pages follow, the widest value a column shows, so that the
        // columns stay where they are from page to page.
        let mut widths = Vec::new();
        loop {
            // One extra session tells whether there are more than the limit.
            let want = self
                .limit
                .map_or(PAGE, |l| (l - shown).saturating_add(1).min(PAGE));
            query.limit = want;
            let page = admin.list(&query)?;
            let mut sessions = page.sessions;
            // The expiry index is ordered by 10-second buckets and an entry may lag its
            // deadline; order within a page exactly.
            sessions.sort_by_key(|s| (s.expires_at, s.handle));
            if let Some(limit) = self.limit {
                if shown + sessions.len() > limit {
                    sessions.truncate(limit - shown);
                    more = true;
                }
            }
            if self.json {
                for s in &sessions {
                    writeln!(ctx.out, "{}", s.to_json_line())?;
                }
            } else if !sessions.is_empty() {
                if shown == 0 && page.next.is_some() && !more {
                    widths = WIDEST.to_vec();
                }
                table(&sessions, now, shown == 0).write_at_least(
                    ctx.out,
                    ctx.style,
                    &mut widths,
                )?;
            }
            shown += sessions.len();
            match page.next {
                Some(next) if !more => query.after = Some(next),
                _ => break,
            }
        }
        if ctx.quiet {
            // Hints only, on stderr: --quiet leaves them out.
        } else if !self.json {
            // The note goes after the table, also when both streams are one terminal.
            ctx.out.flush()?;
            if shown == 0 {
                writeln!(ctx.err, "no sessions match")?;
                let typed = [
                    ("--principal", &self.query.principal),
                    ("--label", &self.query.label),
                ];
                for (flag, value) in typed {
                    if let Some(hint) = value.as_deref().and_then(|v| escape_hint(flag, v)) {
                        writeln!(ctx.err, "note: {hint}")?;
                    }
                }
            } else if more {
                writeln!(ctx.err, "{MORE}")?;
            }
        } else if more {
            // On stderr, so the JSON lines stay whole for jq; a script that pages by hand
            // still learns that it has not seen everything.
            writeln!(ctx.err, "{MORE}")?;
        }
        Ok(Exit::Success)
    }
}

/// What a listing cut short at `--limit` says on stderr.
const MORE: &str = "more sessions match; --limit N shows more, --limit 0 shows all";

fn table(sessions: &[SessionInfo], now: OffsetDateTime, header: bool) -> Table {
    let mut t = Table::default();
    if header {
        t.row(
            Tone::Bold,
            [
                "HANDLE",
                "PRINCIPAL",
                "LABEL",
                "REMOTE ADDR",
                "LAST ACCESS",
                "EXPIRES",
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    for s in sessions {
        let tone = if s.is_expired_at(now) {
            Tone::Bad
        } else if s.expires_at - now <= SOON {
            Tone::Warn
        } else {
            Tone::Plain
        };
        t.row(
            tone,
            vec![
                s.handle.to_string(),
                clip(&or_dash(s.principal.as_deref()), PRINCIPAL_CHARS),
                clip(&or_dash(s.label.as_deref()), LABEL_CHARS),
                clip(&or_dash(s.remote_addr.as_deref()), ADDRESS_CHARS),
                relative(s.last_access, now),
                relative(s.expires_at, now),
            ],
        );
    }
    t
}
