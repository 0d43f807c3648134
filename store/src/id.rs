//! Session ids (the secret a client holds) and handles (the hash the store keeps).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{shorten, Error};

/// The namespace of named-session ids (UUID v5). Fixed forever: changing it would orphan every
/// named session ever stored.
const NAMED_NAMESPACE: Uuid = Uuid::from_u128(0x5e55_db00_6e61_4d65_8000_0000_0000_0001);

/// A session id: 128 random bits from the OS random source (a UUID v4), or for a named session
/// a UUID v5 of its name.
///
/// This is the bearer token a client presents. The store never keeps it: records are stored
/// under its [`Handle`], a hash of it. `Debug` prints only a prefix so ids do not end up whole in
/// logs; `Display` prints the full hyphenated form for the application to hand out.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A fresh random id (UUID v4 from the OS random source).
    pub fn random() -> Self {
        SessionId(Uuid::new_v4())
    }

    /// The deterministic id of a named session (UUID v5 of `name` in sessdb's namespace).
    ///
    /// Anyone who knows the name can compute this id, so named sessions suit caches local to
    /// one application (an API client's login), not tokens handed to untrusted clients. For
    /// the same reason the calls a client's token reaches ([`Store::load`](crate::Store::load),
    /// [`Store::update`](crate::Store::update), [`Store::invalidate`](crate::Store::invalidate),
    /// and so the tower-sessions adapter) never reach a named session, even given this id: a
    /// client that builds it as a cookie gets no session. Named sessions are reached by name
    /// ([`Store::get_or_create`](crate::Store::get_or_create),
    /// [`Store::load_named`](crate::Store::load_named),
    /// [`Store::invalidate_named`](crate::Store::invalidate_named)) and by handle, as an
    /// operator does.
    pub fn named(name: &str) -> Self {
        SessionId(Uuid::new_v5(&NAMED_NAMESPACE, name.as_bytes()))
    }

    /// Whether this is the id of the named session whose name is `label`: a session made by
    /// [`Store::get_or_create`](crate::Store::get_or_create), whose label is its name. Only a
    /// version 5 id can be; the name is hashed only for those.
    pub(crate) fn is_named(&self, label: Option<&str>) -> bool {
        self.may_be_named() && label.is_some_and(|name| SessionId::named(name) == *self)
    }

    /// Whether this id could be a named session's (a version 5 id: all of those, and one in 16
    /// ids made elsewhere from random bytes, such as tower-sessions').
    pub(crate) fn may_be_named(&self) -> bool {
        self.0.get_version_num() == 5
    }

    /// An id from 16 raw bytes: a token generated elsewhere (such as tower-sessions' session
    /// ids) that the store should adopt. Any 16 bytes are accepted, UUID version bits or not;
    /// the inverse of [`SessionId::as_bytes`].
    ///
    /// The bytes are the session's bearer token, so they must come from a cryptographically
    /// secure random source; never build an id from anything a client chose or can guess.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        SessionId(Uuid::from_bytes(bytes))
    }

    /// The id as 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The handle under which this session is stored.
    pub fn handle(&self) -> Handle {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Handle(key)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.simple().to_string();
        write!(f, "SessionId({}…)", &text[..6])
    }
}

impl FromStr for SessionId {
    type Err = Error;

    /// Parses the hyphenated form (`67e55044-10b1-426f-9247-bb680e5fe0c8`), the simple form, or
    /// a URN. Any UUID version is accepted, since ids are only compared by hash.
    fn from_str(s: &str) -> Result<Self, Error> {
        Uuid::try_parse(s.trim())
            .map(SessionId)
            .map_err(|_| Error::InvalidId {
                what: "session id",
                input: shorten(s),
                reason: "expected a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8",
            })
    }
}

/// The storage key of a session: the first 16 bytes of SHA-256 of its id, shown as 32 hex
/// characters.
///
/// A handle identifies a session to an operator (sessctl, the TUI, exports) but cannot be used
/// as a session token: the id cannot be computed back from it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle([u8; 16]);

impl Handle {
    /// The handle as raw bytes (the sled key).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A handle from raw bytes, or `None` if the slice is not 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Handle)
    }

    /// The first 8 hex characters, for narrow displays.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({self})")
    }
}

impl FromStr for Handle {
    type Err = Error;

    /// Parses 32 hex characters (either case).
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidId {
            what: "handle",
            input: shorten(s),
            reason,
        };
        let s = s.trim();
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("expected 32 hex characters"));
        }
        let mut out = [0u8; 16];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            out[i] = (hex_digit(pair[0]) << 4) | hex_digit(pair[1]);
        }
        Ok(Handle(out))
    }
}

/// The value of an ASCII hex digit (the caller checked it is one).
fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

impl serde::Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_truncated_sha256_of_id_bytes() {
        let id: SessionId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
        let digest = Sha256::digest(id.as_bytes());
        assert_eq!(id.handle().as_bytes(), &digest[..16]);
    }

    #[test]
    fn handle_roundtrips_through_text() {
        let h = SessionId::random().handle();
        let text = h.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<Handle>().unwrap(), h);
        assert_eq!(text.to_uppercase().parse::<Handle>().unwrap(), h);
    }

    #[test]
    fn from_bytes_keeps_every_byte_and_hashes_them() {
        // Not a valid UUID v4 (version and variant bits are arbitrary): kept as is.
        let bytes = [0xffu8; 16];
        let id = SessionId::from_bytes(bytes);
        assert_eq!(id.as_bytes(), &bytes);
        assert_eq!(id.handle().as_bytes(), &Sha256::digest(bytes)[..16]);
        let random = SessionId::random();
        assert_eq!(SessionId::from_bytes(*random.as_bytes()), random);
    }

    #[test]
    fn named_ids_are_deterministic_and_distinct() {
        assert_eq!(SessionId::named("admin"), SessionId::named("admin"));
        assert_ne!(
            SessionId::named("admin"),
            SessionId::named("user:42/tenant:acme")
        );
    }

    #[test]
    fn bad_input_is_rejected_without_echoing_it_whole() {
        let err = "not-a-uuid-but-a-very-long-secret-looking-string"
            .parse::<SessionId>()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not a valid session id"), "{msg}");
        assert!(!msg.contains("very-long-secret"), "{msg}");
        for bad in ["", "zz", &"g".repeat(32), &"é".repeat(16), &"+f".repeat(16)] {
            assert!(bad.parse::<Handle>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_does_not_print_the_whole_id() {
        let id = SessionId::random();
        assert!(!format!("{id:?}").contains(&id.to_string()));
    }
}
