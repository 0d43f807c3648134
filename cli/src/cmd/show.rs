//! `sessctl show`: one session, metadata and data.

use sessdb::SessionInfo;
use time::OffsetDateTime;

use super::Ctx;
use crate::db::Access;
use crate::exit::Exit;
use crate::output::{
    bytes, expiry_phrase, or_dash, relative, span, terminal_safe, timestamp, Table, Tone,
};
use crate::target::{not_found, Named};

/// `show <HANDLE|SESSION-ID> [--json]`
#[derive(Debug)]
pub struct Show {
    /// The session.
    pub target: Named,
    /// One JSON object instead of the pretty form.
    pub json: bool,
}

impl Show {
    /// Prints the session, expired or not.
    ///
    /// # Errors
    /// [`Failure::NotFound`](crate::exit::Failure::NotFound) when there is no such session; open, storage and write errors.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        let db = ctx.open(Access::Read)?;
        let admin = db.admin();
        let target = self.target.resolve(admin)?;
        let mut info = admin.show(&target)?;
        if let (None, Some(other)) = (&info, self.target.otherwise()) {
            info = admin.show(&other)?;
        }
        // Not found either way: said as what was typed, a handle.
        let Some(info) = info else {
            return Err(not_found(&target).into());
        };
        if self.json {
            writeln!(ctx.out, "{}", info.to_json_line())?;
        } else {
            pretty(ctx, &info, admin.now())?;
        }
        Ok(Exit::Success)
    }
}

fn pretty(ctx: &mut Ctx<'_>, s: &SessionInfo, now: OffsetDateTime) -> anyhow::Result<()> {
    let at = |t: OffsetDateTime| format!("{}  ({})", timestamp(t), relative(t, now));
    let mut t = Table::default();
    let mut row = |k: &str, v: String| t.row(Tone::Plain, vec![k.to_string(), v]);
    row("handle", s.handle.to_string());
    row("principal", or_dash(s.principal.as_deref()));
    row("label", or_dash(s.label.as_deref()));
    row("remote address", or_dash(s.remote_addr.as_deref()));
    row("user agent", or_dash(s.user_agent.as_deref()));
    row("created", at(s.created));
    row("last access", at(s.last_access));
    row("idle timeout", span(s.idle_timeout));
    row("absolute deadline", at(s.absolute_deadline));
    let expired = s.is_expired_at(now);
    let phrase = if expired {
        format!("{}, not yet purged", expiry_phrase(s.expires_at, now))
    } else {
        relative(s.expires_at, now)
    };
    t.row(
        if expired { Tone::Bad } else { Tone::Plain },
        vec![
            "expires".into(),
            format!("{}  ({phrase})", timestamp(s.expires_at)),
        ],
    );
    t.row(Tone::Plain, vec!["version".into(), s.version.to_string()]);
    t.row(Tone::Plain, vec!["size".into(), bytes(s.size as u64)]);
    t.write(ctx.out, ctx.style)?;
    // JSON escapes the C0 controls only: a direction override or a C1 control in a string is
    // escaped as everywhere else on the screen.
    let data = s.to_json()["data"].clone();
    let text = serde_json::to_string_pretty(&data)?;
    writeln!(ctx.out, "data")?;
    for line in text.lines() {
        writeln!(ctx.out, "  {}", terminal_safe(line))?;
    }
    Ok(())
}
