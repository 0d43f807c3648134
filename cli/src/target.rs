//! Naming a session on the command line: a full handle, a session id, or (as the TUI shows
//! them) the first characters of a handle, resolved when they match exactly one session.

use sessdb::{Admin, Target};

use crate::exit::Failure;

/// The fewest hex characters accepted as a handle prefix.
pub const MIN_PREFIX: usize = 6;

/// A session as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// A session id (a UUID, or a tower-sessions cookie's value).
    Exact(Target),
    /// 32 hex characters: a full handle, or a session id in the UUID's simple form (what
    /// `Uuid::simple` writes, which an application may put in its cookie). Told apart by
    /// which of the two a session has.
    Full(sessdb::Handle, sessdb::SessionId),
    /// The start of a handle (lower case hex, at least [`MIN_PREFIX`] characters).
    Prefix(String),
}

impl Named {
    /// Parses what the user typed.
    ///
    /// # Errors
    /// [`sessdb::Error::InvalidId`] for anything that is neither a handle, a handle prefix nor
    /// a session id.
    pub fn parse(text: &str) -> Result<Named, sessdb::Error> {
        let t = text.trim();
        let hex = t.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && (MIN_PREFIX..32).contains(&t.len()) {
            return Ok(Named::Prefix(t.to_ascii_lowercase()));
        }
        if hex && t.len() == 32 {
            return Ok(Named::Full(t.parse()?, t.parse()?));
        }
        // The store knows only whole handles and ids; its message leaves out the prefixes
        // that sessctl accepts too.
        text.parse().map(Named::Exact).map_err(|e| match e {
            sessdb::Error::InvalidId { what, input, .. } => sessdb::Error::InvalidId {
                what,
                input,
                reason: if hex && !t.is_empty() && t.len() < MIN_PREFIX {
                    "a handle prefix needs at least 6 hex characters (or give all 32, or a \
                     session id)"
                } else if hex && t.len() > 32 {
                    "more hex characters than a handle has (32)"
                } else {
                    "expected a handle (32 hex characters, or its first 6 or more) or a session \
                     id (a UUID, or a tower-sessions cookie's 22 characters)"
                },
            },
            other => other,
        })
    }

    /// The session this names. A prefix is looked up in every session, expired ones too. 32
    /// hex characters are taken for a handle; when no session has it, the caller tries
    /// [`Named::otherwise`].
    ///
    /// # Errors
    /// [`Failure::NotFound`] when a prefix matches nothing, [`Failure::Usage`] when it matches
    /// several sessions; storage or transport errors.
    pub fn resolve(&self, admin: &dyn Admin) -> anyhow::Result<Target> {
        let prefix = match self {
            Named::Exact(target) => return Ok(*target),
            Named::Full(handle, _) => return Ok(Target::Handle(*handle)),
            Named::Prefix(prefix) => prefix,
        };
        // Two tell a prefix that names one session from one that names several. Looked up
        // in the records' key order: a prefix cut from the TUI's 8 characters took 28 s at a
        // million sessions when it was a listing's search.
        let found = admin.handles_starting_with(prefix, 2)?;
        match found.as_slice() {
            [one] => Ok(Target::Handle(*one)),
            [] => Err(Failure::NotFound(format!(
                "no session with a handle starting with {prefix}"
            ))
            .into()),
            [a, b, ..] => Err(Failure::Usage(format!(
                "{prefix} is the start of several handles ({a}, {b}, ...); give more of it"
            ))
            .into()),
        }
    }
}

impl Named {
    /// What else this may name when no session has the handle [`Named::resolve`] gave: the
    /// session id of 32 hex characters (a handle is a hash of an id, so no session has both).
    /// Tried only then, so a handle costs no more round trips to an application than before.
    pub fn otherwise(&self) -> Option<Target> {
        match self {
            Named::Full(_, id) => Some(Target::Id(*id)),
            _ => None,
        }
    }
}

/// The error for a session that is not there. A session id is a secret: only its handle is
/// ever printed.
pub fn not_found(target: &Target) -> Failure {
    Failure::NotFound(match target {
        Target::Handle(h) => format!("no session with handle {h}"),
        Target::Id(id) => format!("no session with that session id (handle {})", id.handle()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_prefixes_and_ids() {
        let full = "cc8cd41cef907c4d216069122c4b8993";
        assert!(matches!(Named::parse(full), Ok(Named::Full(..))));
        assert_eq!(
            Named::parse("CC8CD41C").ok(),
            Some(Named::Prefix("cc8cd41c".into()))
        );
        assert!(matches!(
            Named::parse("67e55044-10b1-426f-9247-bb680e5fe0c8"),
            Ok(Named::Exact(Target::Id(_)))
        ));
        for bad in ["cc8cd", "zzzzzzzz", "", &format!("{full}0")] {
            assert!(Named::parse(bad).is_err(), "{bad:?}");
        }
        // Its input is shown cut short, so the reason says what is wrong with its length.
        let long = Named::parse(&format!("{full}0b")).expect_err("34 characters");
        assert!(
            long.to_string()
                .ends_with("more hex characters than a handle has (32)"),
            "{long}"
        );
    }
}
