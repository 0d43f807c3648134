//! The mapping between a tower-sessions [`Record`] and a sessdb [`Session`]: ids, data, expiry
//! and the principal taken from the data.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sessdb::{Session, SessionId, Value};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::Error;

use crate::error::{encode, from_sessdb};

/// The idle timeout of every session this adapter writes: none (`Duration::MAX`, which the
/// store takes as no idle timeout), so that a session's expiry is exactly the record's
/// `expiry_date`, however far off. tower-sessions moves that date itself on activity
/// (`Expiry::OnInactivity`), so a second idle clock in the store would only cut sessions
/// short.
pub const NO_IDLE_TIMEOUT: Duration = Duration::MAX;

/// The sessdb id of a tower-sessions id: the same 16 bytes (the little-endian bytes that the
/// session cookie encodes), so [`SessionId::handle`] gives the handle `sessctl` shows for the
/// session.
///
/// ```
/// use tower_sessions_core::session::Id;
///
/// let id = Id::default();
/// let handle = tower_sessions_sessdb::session_id(&id).handle();
/// assert_eq!(handle.to_string().len(), 32);
/// ```
pub fn session_id(id: &Id) -> SessionId {
    SessionId::from_bytes(id.0.to_le_bytes())
}

/// Where in the session data the principal (the user id) is found: a JSON Pointer
/// (RFC 6901) whose first segment is a data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrincipalPointer {
    /// The data key (first segment, unescaped).
    key: String,
    /// The rest of the pointer, applied to the value under `key` ("" for the value itself).
    rest: String,
}

impl PrincipalPointer {
    /// A pointer to the value of a top-level data key.
    pub(crate) fn key(key: &str) -> Self {
        PrincipalPointer {
            key: key.to_string(),
            rest: String::new(),
        }
    }

    /// Parses a JSON Pointer such as `/axum-login.data/user_id`; `None` if it does not start
    /// with `/`.
    pub(crate) fn parse(pointer: &str) -> Option<Self> {
        let body = pointer.strip_prefix('/')?;
        let (first, rest) = match body.find('/') {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        Some(PrincipalPointer {
            key: first.replace("~1", "/").replace("~0", "~"),
            rest: rest.to_string(),
        })
    }

    /// The principal named by this pointer in `data`: a string as is, a number in its JSON
    /// form; `None` when the value is missing, null or the empty string (what an application
    /// may write there on logout).
    fn find(&self, data: &HashMap<String, serde_json::Value>) -> Result<Option<String>, Error> {
        let value = data.get(&self.key).and_then(|v| v.pointer(&self.rest));
        match value {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(Error::Encode(format!(
                "the principal at {} must be a string or a number, found {}",
                self,
                kind(other)
            ))),
        }
    }
}

impl std::fmt::Display for PrincipalPointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.key.replace('~', "~0").replace('/', "~1");
        write!(f, "/{key}{}", self.rest)
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
        _ => "another value",
    }
}

/// A stored session's deadline moved later by less than this is a touch not yet due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Touch {
    /// The store's touch interval.
    pub(crate) interval: Duration,
    /// The store's time.
    pub(crate) now: OffsetDateTime,
}

impl Touch {
    /// Whether moving the deadline from `stored` to `new` is only a touch that is not due:
    /// later by less than the touch interval, or than half the time left if that is less (as
    /// sessdb decides its own touches, so that a short inactivity window still slides).
    fn not_due(&self, stored: OffsetDateTime, new: OffsetDateTime) -> bool {
        let left = (new - self.now) / 2;
        let due = time::Duration::try_from(self.interval)
            .unwrap_or(time::Duration::MAX)
            .min(left)
            .max(time::Duration::milliseconds(1));
        new > stored && new - stored < due
    }

    /// Whether sessdb writes a touch anyway, its last access having moved by the interval
    /// since `last_access` (a session without an idle timeout, as these are, records its use
    /// so): that write takes the new deadline too, or the next request would write again for
    /// it.
    fn access_due(&self, last_access: OffsetDateTime) -> bool {
        let interval = time::Duration::try_from(self.interval)
            .unwrap_or(time::Duration::MAX)
            .max(time::Duration::milliseconds(1));
        self.now - last_access >= interval
    }
}

/// Makes `session` hold what `record` holds. Only what differs marks the session changed, so
/// sessdb's dirty tracking skips the write of an unchanged session.
///
/// With `touch` (a stored session), a deadline that only moved later by less than a due touch
/// is left as stored, unless the save writes anyway. tower-sessions moves `expiry_date` on every save (now plus the
/// inactivity period, or plus two weeks by default), so without this every request would
/// write, `with_always_save(true)` or not; with it the deadline slides as sessdb's own touches
/// do, at most one touch interval behind.
pub(crate) fn fill(
    session: &mut Session,
    record: &Record,
    principal: Option<&PrincipalPointer>,
    touch: Option<Touch>,
) -> Result<(), Error> {
    // Compute everything that can fail before touching the session's principal.
    let principal = principal
        .map(|p| p.find(&record.data))
        .transpose()?
        .flatten();
    // The plain conversion keeps any JSON exactly, as `Session::insert` would store it (the
    // tagged form of `Value::from_json` would read `{"$base64": ..}` objects as bytes).
    let data = record
        .data
        .iter()
        .map(|(key, value)| {
            let value = Value::from_plain_json(value)
                .map_err(|reason| Error::Encode(format!("session data key {key:?}: {reason}")))?;
            Ok((key.clone(), value))
        })
        .collect::<Result<BTreeMap<_, _>, Error>>()?;
    // Compared with the stored data without decoding it: an unchanged record writes nothing.
    session.replace_data(data).map_err(encode)?;
    session.set_idle_timeout(NO_IDLE_TIMEOUT);
    session
        .set_principal(principal.as_deref())
        .map_err(encode)?;
    // A save that writes anyway (its data or principal changed, or its last access is due)
    // takes the new deadline at no cost: held back, an inactivity window would end up to a
    // touch interval early.
    if session.is_dirty()
        || !touch.is_some_and(|t| {
            t.not_due(session.absolute_deadline(), record.expiry_date)
                && !t.access_due(session.last_access())
        })
    {
        session.set_absolute_deadline(record.expiry_date);
    }
    Ok(())
}

/// The record of a loaded session.
pub(crate) fn to_record(id: Id, session: Session) -> Result<Record, Error> {
    let expiry_date = session.expires_at();
    let data = session
        .into_data()
        .map_err(|e| Error::Decode(from_sessdb(&e)))?
        .into_iter()
        .map(|(key, value)| (key, value.into_plain_json()))
        .collect();
    Ok(Record {
        id,
        data,
        expiry_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: serde_json::Value) -> HashMap<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pointer_parses_and_prints_escapes() {
        let p = PrincipalPointer::parse("/a~1b~0c/user_id").unwrap();
        assert_eq!(p.key, "a/b~c");
        assert_eq!(p.rest, "/user_id");
        assert_eq!(p.to_string(), "/a~1b~0c/user_id");
        assert_eq!(PrincipalPointer::key("a/b").to_string(), "/a~1b");
        assert!(PrincipalPointer::parse("user_id").is_none());
    }

    #[test]
    fn principal_is_found_as_string_or_number() {
        let d = data(json!({
            "user_id": "alice",
            "axum-login.data": {"user_id": 42, "auth_hash": [1, 2]},
            "empty": null,
            "obj": {"a": 1}
        }));
        let find = |p: &str| PrincipalPointer::parse(p).unwrap().find(&d);
        assert_eq!(find("/user_id").unwrap().as_deref(), Some("alice"));
        assert_eq!(
            find("/axum-login.data/user_id").unwrap().as_deref(),
            Some("42")
        );
        assert_eq!(find("/missing").unwrap(), None);
        assert_eq!(find("/empty").unwrap(), None);
        let err = find("/obj").unwrap_err().to_string();
        assert!(err.contains("/obj") && err.contains("an object"), "{err}");
    }

    #[test]
    fn ids_map_to_the_cookie_bytes() {
        let id = Id(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let sid = session_id(&id);
        assert_eq!(sid.as_bytes(), &id.0.to_le_bytes());
        assert_ne!(session_id(&Id(1)).handle(), session_id(&Id(2)).handle());
    }
}
