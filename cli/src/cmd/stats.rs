//! `sessctl stats`: counts and sizes.

use serde_json::json;

use super::Ctx;
use crate::db::Access;
use crate::exit::Exit;
use crate::output::{bytes, json_line, printable, timestamp, Table, Tone};

/// `stats [--json]`
#[derive(Debug)]
pub struct Stats {
    /// One JSON object instead of a table.
    pub json: bool,
}

impl Stats {
    /// Prints the store's counts.
    ///
    /// # Errors
    /// Open, storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        let db = ctx.open(Access::Read)?;
        let admin = db.admin();
        // Through a socket, the figures are those of the application's database.
        let database = db.path(ctx.db).display().to_string();
        let s = admin.stats()?;
        if self.json {
            let value = json!({
                "database": database,
                "as_of": sessdb::export_timestamp(admin.now()),
                "live": s.live,
                "expired": s.expired,
                "undecodable": s.undecodable,
                "principals": s.principals,
                "bytes_on_disk": s.bytes_on_disk,
                "format_version": s.format_version,
            });
            json_line(ctx.out, &value)?;
            return Ok(Exit::Success);
        }
        let mut t = Table::default();
        // Through a socket the application names it: escaped for the terminal (the JSON
        // above has it as it is, escaped by JSON's own rules).
        t.row(Tone::Plain, vec!["database".into(), printable(&database)]);
        if ctx.as_of.is_some() {
            t.row(Tone::Plain, vec!["as of".into(), timestamp(admin.now())]);
        }
        t.row(
            Tone::Plain,
            vec!["format version".into(), s.format_version.to_string()],
        );
        t.row(
            Tone::Plain,
            vec!["live sessions".into(), s.live.to_string()],
        );
        // A future --as-of only reads: no purge acts on what it counts.
        let expired = if s.expired > 0 && ctx.future_as_of().is_some() {
            s.expired.to_string()
        } else if s.expired > 0 {
            format!("{} (`sessctl purge --expired` removes them)", s.expired)
        } else {
            "0".into()
        };
        t.row(Tone::Plain, vec!["expired, not purged".into(), expired]);
        if s.undecodable > 0 {
            t.row(
                Tone::Bad,
                vec![
                    "undecodable".into(),
                    format!("{} (see `sessctl check`)", s.undecodable),
                ],
            );
        }
        t.row(
            Tone::Plain,
            vec!["principals".into(), s.principals.to_string()],
        );
        t.row(
            Tone::Plain,
            vec![
                "on disk".into(),
                format!("{} ({} bytes)", bytes(s.bytes_on_disk), s.bytes_on_disk),
            ],
        );
        t.write(ctx.out, ctx.style)?;
        Ok(Exit::Success)
    }
}
