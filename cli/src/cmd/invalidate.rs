//! `sessctl invalidate`: end sessions now, by handle or id, or every session of a principal.

use super::{plural, Ctx};
use crate::db::Access;
use crate::exit::{Exit, Failure};
use crate::output::{escape_hint, printable};
use crate::target::{not_found, Named};
use sessdb::{ListQuery, Status, Target};

/// How a session is named in a message: by its handle (a session id is a secret).
fn handle_of(target: &Target) -> String {
    match target {
        Target::Handle(h) => format!("session {h}"),
        Target::Id(id) => format!("session {}", id.handle()),
    }
}

/// A name among several that did not resolve: nothing was invalidated, which the operator
/// must not have to guess (the sessions named in full would otherwise be taken as done).
fn nothing_invalidated(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<Failure>() {
        Ok(Failure::NotFound(m)) => {
            Failure::NotFound(format!("{m}; nothing was invalidated")).into()
        }
        Ok(Failure::Usage(m)) => Failure::Usage(format!("{m}; nothing was invalidated")).into(),
        Ok(other) => other.into(),
        Err(e) => e.context("nothing was invalidated"),
    }
}

/// `invalidate <HANDLE|SESSION-ID>...` or `invalidate --principal P`
#[derive(Debug)]
pub enum Invalidate {
    /// These sessions.
    Targets(Vec<Named>),
    /// Every session of this principal.
    Principal(String),
}

impl Invalidate {
    /// Invalidates and says how many.
    ///
    /// # Errors
    /// [`Failure::NotFound`] when a principal has no live sessions (its expired ones are removed
    /// all the same); open, storage and write errors.
    /// Unknown sessions among several are reported on stderr and end with exit code 1.
    pub fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<Exit> {
        let db = ctx.open(Access::Write)?;
        let admin = db.admin();
        match self {
            Invalidate::Targets(targets) => {
                // Every name is resolved before anything is invalidated: a handle prefix that
                // names no session or several stops them all, and says so.
                let several = targets.len() > 1;
                let resolved = targets
                    .iter()
                    .map(|t| Ok((t.resolve(admin)?, t.otherwise())))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .map_err(|e| if several { nothing_invalidated(e) } else { e })?;
                // A session named twice (by handle and by prefix, say, or by its id without
                // hyphens, whose other reading is its handle) is invalidated once.
                let mut seen = std::collections::HashSet::new();
                let resolved: Vec<(Target, Option<Target>)> = resolved
                    .into_iter()
                    .filter(|(t, other)| {
                        let handles = [Some(handle_of(t)), other.as_ref().map(handle_of)];
                        let new = !handles.iter().flatten().any(|h| seen.contains(h));
                        seen.extend(handles.into_iter().flatten());
                        new
                    })
                    .collect();
                let targets: Vec<Target> = resolved.iter().map(|(t, _)| *t).collect();
                let mut removed = 0u64;
                let mut missing = Vec::new();
                let mut failed = None;
                for (i, (target, otherwise)) in resolved.iter().enumerate() {
                    // 32 hex characters that are no session's handle may be a session id.
                    let ended = admin.invalidate(target).and_then(|ended| match otherwise {
                        Some(other) if !ended => admin.invalidate(other),
                        _ => Ok(ended),
                    });
                    match ended {
                        Ok(true) => removed += 1,
                        Ok(false) => missing.push(target),
                        Err(e) => {
                            failed = Some((i, e));
                            break;
                        }
                    }
                }
                // What was done is said even when a later one failed: a rerun would otherwise
                // report those sessions as unknown. One session named and not found gets its
                // error alone, as an unknown handle prefix does.
                if !(targets.len() == 1 && missing.len() == 1) {
                    writeln!(ctx.out, "invalidated {}", plural(removed, "session"))?;
                    ctx.out.flush()?;
                }
                for target in &missing {
                    writeln!(ctx.err, "error: {}", not_found(target))?;
                }
                if let Some((i, e)) = failed {
                    let rest = targets.len() - i - 1;
                    let untried = if rest == 0 {
                        String::new()
                    } else {
                        let were = if rest == 1 { "was" } else { "were" };
                        format!(
                            "; the {} after it {were} not tried",
                            plural(rest as u64, "session")
                        )
                    };
                    return Err(anyhow::Error::new(e).context(format!(
                        "invalidating {} ({} of {}) failed{untried}",
                        handle_of(&targets[i]),
                        i + 1,
                        targets.len(),
                    )));
                }
                Ok(if missing.is_empty() {
                    Exit::Success
                } else {
                    Exit::NotFound
                })
            }
            Invalidate::Principal(p) => {
                // Looked at first, so that an answer of "no live sessions" does not read as
                // "nothing changed" when expired ones went (one entry of the principal index).
                // It matters only when none is live, and then the first entry read is an
                // expired one: a principal of many live sessions is not read twice for it (0.5 s
                // of 3.6 s at 200k).
                let had_expired = !admin
                    .list(&ListQuery {
                        principal: Some(p.clone()),
                        status: Status::Expired,
                        limit: 1,
                        scan_budget: 100,
                        ..ListQuery::default()
                    })?
                    .sessions
                    .is_empty();
                let removed = admin.invalidate_principal(p)?;
                if removed == 0 {
                    let expired = if had_expired {
                        "; its expired sessions were removed"
                    } else {
                        ""
                    };
                    let hint = escape_hint("--principal", p)
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    return Err(Failure::NotFound(format!(
                        "principal \"{}\" has no live sessions{expired}{hint}",
                        printable(p)
                    ))
                    .into());
                }
                writeln!(
                    ctx.out,
                    "invalidated {} of principal \"{}\"",
                    plural(removed as u64, "session"),
                    printable(p)
                )?;
                Ok(Exit::Success)
            }
        }
    }
}
