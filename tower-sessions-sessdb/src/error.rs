//! sessdb's errors as tower-sessions' error type, which only carries a message: the message
//! keeps the whole chain of causes, and never a session id (sessdb names sessions by handle).

use std::error::Error as _;

use tower_sessions_core::session_store::Error;

/// The message of `e` followed by each of its causes, as `{:#}` would print it.
pub(crate) fn from_sessdb(e: &sessdb::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A failure to store a value (bad principal, value too deep, session too large).
pub(crate) fn encode(e: sessdb::Error) -> Error {
    Error::Encode(from_sessdb(&e))
}

/// Any other failure of the store.
pub(crate) fn backend(e: sessdb::Error) -> Error {
    match e {
        sessdb::Error::TooLarge { .. }
        | sessdb::Error::Value { .. }
        | sessdb::Error::InvalidField { .. } => encode(e),
        e => Error::Backend(from_sessdb(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_keeps_the_causes() {
        let e = sessdb::Error::Io {
            path: "/db".into(),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(from_sessdb(&e), "I/O error on /db: disk on fire");
        assert!(matches!(backend(e), Error::Backend(m) if m.ends_with("disk on fire")));
        let e = sessdb::Error::TooLarge {
            handle: "ab".into(),
            size: 2,
            limit: 1,
        };
        assert!(matches!(backend(e), Error::Encode(_)));
    }
}
