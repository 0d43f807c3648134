//! # sessdb
//!
//! An embedded session store for Rust services: sessions live in a [sled] database inside
//! the application, with no server to run, and survive restarts and crashes.
//!
//! - **Expiry**: idle timeout and absolute lifetime; an expired session is never returned.
//! - **Dirty tracking**: a save writes only if something changed, or if a *touch* (moving the
//!   idle deadline) is due; touches are throttled by [`Builder::touch_interval`].
//! - **Principals**: every session of a user can be listed ([`Store::sessions_of`]) and
//!   invalidated at once ([`Store::invalidate_principal`], or all but one:
//!   [`Store::invalidate_principal_except`]); an optional per-user limit.
//! - **Rotation**: [`Session::cycle_id`] gives a new id atomically (on login).
//! - **Optimistic concurrency**: a save of a stale session fails with
//!   [`Error::Conflict`] instead of erasing another request's change; [`Store::update`]
//!   retries.
//! - **Hashed ids**: the store keeps only a hash of each id ([`Handle`]), so a stolen database
//!   file or export holds no usable session token.
//! - **Named sessions** for API clients that cache a login: [`Store::get_or_create`].
//! - **Admin interface** ([`Admin`]): stats, listing, export/import, purge, check/repair — what
//!   `sessctl` uses.
//! - **Live operations**: an application can serve the admin interface on an owner-only Unix
//!   socket ([`Builder::admin_socket_default`]); [`RemoteAdmin`] reaches it from another
//!   process while the application holds the database.
//!
//! ```
//! use sessdb::Store;
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("sessions.sessdb"))?;
//!
//! // Login: a new session for alice, with typed data.
//! let mut session = store.create();
//! session.set_principal(Some("alice"))?;
//! session.insert("cart", &vec![1, 2, 3])?;
//! session.save()?;
//! let cookie = session.id().to_string(); // hand this to the client
//!
//! // Next request: load it back by id.
//! let mut session = store.load(&cookie.parse()?)?.expect("live session");
//! assert_eq!(session.get::<Vec<u32>>("cart")?, Some(vec![1, 2, 3]));
//! // End every request with a save: it keeps the idle deadline moving (a load does not), and
//! // writes only if something changed or a touch is due.
//! session.save()?;
//!
//! // Privilege change: rotate the id; the old one stops working.
//! session.cycle_id()?;
//! assert!(store.load(&cookie.parse()?)?.is_none());
//!
//! // "Log alice out everywhere."
//! assert_eq!(store.invalidate_principal("alice")?, 1);
//! assert!(store.load(session.id())?.is_none());
//! # Ok::<(), sessdb::Error>(())
//! ```
//!
//! ## Live operations
//!
//! sled lets one process open a database, so an operator reaches a running application's
//! sessions through the admin socket the application opts into:
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sessions.sessdb");
//! let store = sessdb::Store::builder()
//!     .admin_socket_default() // serves `admin.sock` in the database folder, mode 0600
//!     .open(&path)?;
//! // In another process (sessctl): the same Admin interface, over the socket.
//! use sessdb::{Admin, RemoteAdmin};
//! let admin = RemoteAdmin::connect(RemoteAdmin::default_socket(&path))?;
//! assert_eq!(admin.stats()?.live, 0);
//! # drop(store);
//! # Ok::<(), sessdb::Error>(())
//! ```
//!
//! ## Performance: pick the allocator
//!
//! sled allocates and frees a page version on most writes, and frees old versions on whichever
//! thread next collects them. With glibc's malloc (Rust's default on Linux), threads that save
//! at the same time wait on each other's malloc arena locks: in this project's benchmark two
//! threads saved sessions at about the rate of one. A library cannot choose the allocator; a
//! service can, in its `main.rs` (with `mimalloc` in its `Cargo.toml`):
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
//! ```
//!
//! mimalloc costs memory: tens of MiB more peak RSS in the benchmark. jemalloc
//! (`tikv_jemallocator::Jemalloc`) fixed the same waits and held less. The measured effects are
//! in the repository's `docs/BENCHMARKS.md` ("Concurrent calls and the allocator").
//!
//! ## Blocking calls, and async services
//!
//! Every call is blocking: a load may read the disk, a save with [`Durability::Immediate`]
//! waits for an `fdatasync` of the store's journal (and now and then for a checkpoint, sled's
//! flush and an `fsync`), a write waits for the locks of its session and principal (held for
//! seconds by [`Store::invalidate_principal`] of a principal with a very large number of
//! sessions, or by a repair), and [`Store::get_or_create`] waits for another caller's `init`
//! of the same name. In an async service, call the store from
//! `tokio::task::spawn_blocking` (or your runtime's equivalent), as the `tower-sessions-sessdb`
//! adapter does by default; a cached load takes microseconds, and calling it inline trades
//! that hop for the risk of stalling a worker thread.
//!
//! ## Platforms and versions
//!
//! sessdb builds on Unix only (it uses Unix sockets and file permissions) and is built and
//! tested on Linux with glibc; elsewhere some guarantees fall back to weaker ones, each said
//! where it applies (compaction's folder exchange and its hold of the database's lock, for
//! one). Times are [`time::OffsetDateTime`], re-exported as [`sessdb::time`](time) so that
//! an application uses the same version. The database format, the export format and
//! the admin protocol carry versions ([`FORMAT_VERSION`], [`EXPORT_VERSION`],
//! [`PROTOCOL_VERSION`]); before 1.0, a minor release may add fields to the public structs
//! and variants to the public enums.
#![deny(missing_docs)]
// No unwrap on anything user input reaches; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod admin;
mod check;
mod clock;
mod compact;
mod config;
mod data;
mod durable;
mod error;
#[cfg(test)]
mod expiry_lag_tests;
mod export;
mod folder_lock;
mod id;
mod journal;
mod keys;
mod named;
mod purge;
mod record;
mod session;
mod sled_files;
mod socket;
mod store;
mod value;

pub use admin::{Admin, Cursor, ListQuery, Page, SessionInfo, Stats, Status, Target};
pub use check::{CheckReport, RepairReport, Undecodable};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compact::{CompactOptions, CompactReport};
pub use config::{Builder, Durability, OnPrincipalLimit};
pub use error::{Error, Result, StorageError};
pub use export::{
    export_timestamp, validate_export, validate_export_as_of, BadLine, ExportReport, ImportOptions,
    ImportReport, OnConflict, EXPORT_FORMAT, EXPORT_VERSION, MAX_REPORTED_BAD_LINES,
};
pub use id::{Handle, SessionId};
pub use journal::JOURNAL_FILE;
pub use session::{Session, MAX_METADATA_BYTES, MAX_PRINCIPAL_BYTES};
pub use socket::{
    RemoteAdmin, ADMIN_SOCKET_FILE, MAX_FRAME_BYTES, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
pub use store::{foreign_entries, is_database_entry, Counters, Store, FORMAT_VERSION};
pub use value::{Value, MAX_DEPTH};

/// The `time` crate, whose [`OffsetDateTime`](time::OffsetDateTime) sessdb's timestamps are.
pub use time;
