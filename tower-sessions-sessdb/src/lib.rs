//! # tower-sessions-sessdb
//!
//! A [tower-sessions] session store backed by [sessdb]: axum and tower applications keep their
//! sessions in an embedded database that survives restarts, and gain what sessdb adds — a
//! principal index ("log alice out everywhere"), purge, and `sessctl` to look at and end
//! sessions. Switching from another store is one line: the store given to
//! `SessionManagerLayer::new`.
//!
//! ```
//! use tower_sessions::{Expiry, Session, SessionManagerLayer};
//! use tower_sessions_sessdb::SessdbStore;
//!
//! async fn handler(session: Session) -> String {
//!     let n: u64 = session.get("n").await.ok().flatten().unwrap_or(0);
//!     session.insert("n", n + 1).await.ok();
//!     format!("visit {}", n + 1)
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # std::env::set_current_dir(dir.path()).unwrap();
//! let store = sessdb::Store::builder()
//!     .admin_socket_default()          // sessctl reaches the sessions while the app runs
//!     .open("sessions.sessdb")?;
//! let sessions = SessionManagerLayer::new(
//!     SessdbStore::new(store.clone()).with_principal_key("user_id"), // the key your login writes
//! )
//! .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(handler))
//!     .layer(sessions);
//! // On login: session.cycle_id().await?; session.insert("user_id", &user).await?;
//! // Log alice out everywhere: store.invalidate_principal("alice")?;
//! // Everywhere but this browser, `id` being `session.id()` (`session_id` is this crate's):
//! //   store.invalidate_principal_except("alice", &session_id(&id))?;
//! # assert_eq!(store.invalidate_principal("alice")?, 0);
//! # Ok::<(), sessdb::Error>(())
//! ```
//!
//! ## How a record is stored
//! | tower-sessions [`Record`](tower_sessions_core::session::Record) | sessdb session |
//! |---|---|
//! | `id` (128 random bits) | the [`SessionId`](sessdb::SessionId) of the same 16 bytes ([`session_id`]); the store keeps only its hash, the handle `sessctl` shows |
//! | `data` (JSON values) | the data map, key for key, each value as [`Session::insert`](sessdb::Session::insert) would store it ([`Value::from_plain_json`](sessdb::Value::from_plain_json)), so any JSON comes back equal (an object's keys sorted; numbers as 64-bit integers or floats, as serde_json keeps them by default: with its `arbitrary_precision` feature, a number that does not fit fails the save with an `Encode` error) |
//! | `expiry_date` | the absolute deadline, to the millisecond; the idle timeout is [`NO_IDLE_TIMEOUT`], so tower-sessions' expiry alone decides. A deadline that only slid later by less than the store's [`touch_interval`](sessdb::Builder::touch_interval) (or half the time left, if less) is not written unless the save writes anyway (changed data or principal): tower-sessions slides it on every save, and sessdb writes it as a touch, at most one interval behind. The store's [`idle_timeout`](sessdb::Builder::idle_timeout) and [`absolute_lifetime`](sessdb::Builder::absolute_lifetime) do not apply to these sessions (they are for sessions made through sessdb's own API): set the expiry on tower-sessions' `SessionManagerLayer` (`with_expiry`) |
//! | the value at the principal key ([`SessdbStore::with_principal_key`]) | the principal |
//!
//! - `create` never overwrites: if the id is taken it draws a new one and writes it back to the
//!   record, as tower-sessions asks of a store.
//! - `load` returns `None` for an unknown, invalidated or expired session (sessdb deletes an
//!   expired one on the way), and for a named session of the same store
//!   (`Store::get_or_create`): its id is computable from its name, so a cookie built from it
//!   reaches nothing, and neither `save` nor `delete` touch it.
//! - `save` does not re-create a session that is gone: a request that loaded its session just
//!   before `sessctl invalidate --principal alice` ran cannot bring it back when it ends. (The
//!   memory store would.)
//! - `save` writes nothing when the record is unchanged (sessdb's dirty tracking), but a touch
//!   (its last access, and the slid deadline) once a touch interval, which makes
//!   `with_always_save(true)` cheap. It compares the record's data with the stored data in
//!   sessdb's encoding ([`Session::replace_data`](sessdb::Session::replace_data)), without
//!   decoding the stored data.
//! - Two requests of one session that save at once: the later record wins whole, as with every
//!   tower-sessions store (the trait hands over whole records, not changes), and neither save
//!   fails.
//! - [`ExpiredDeletion::delete_expired`](tower_sessions_core::ExpiredDeletion) is sessdb's
//!   purge. sessdb's own reaper ([`sessdb::Builder::reap_every`]) does the same on a thread.
//! - A per-principal limit ([`sessdb::Builder::max_sessions_per_principal`]) applies to the
//!   sessions the adapter writes. Use [`OnPrincipalLimit::EvictOldest`](sessdb::OnPrincipalLimit)
//!   with it: tower-sessions' `cycle_id` deletes the old id before it creates the new one, so
//!   with `Refuse` a login over the limit fails in `create` (a backend error naming the limit,
//!   which axum answers with a 500) after the anonymous session, and its data, are gone.
//!   `EvictOldest` ends the sessions whose recorded last access is oldest, and a request
//!   records one only if it reaches the store: tower-sessions saves a session only when the
//!   handler changed it, unless `with_always_save(true)`, so by default the last access is the
//!   last change. With `with_always_save(true)` an unchanged session's use is recorded once a
//!   [touch interval](sessdb::Builder::touch_interval) (a write; none in between), whatever
//!   its [`Expiry`](tower_sessions_core::Expiry).
//! - A session over [`sessdb::Builder::max_session_bytes`] (256 KiB encoded by default) fails
//!   in `save` with an `Encode` error naming its size and the limit. tower-sessions saves after
//!   the handler has returned, so the client gets a bare 500 and the message goes to
//!   `tracing` only: install a subscriber to see it, and bound what a request can add to its
//!   session (a cart's length, say) in the handler, where it can still answer the user.
//!
//! ## Blocking
//! sessdb is synchronous. By default every call of this store runs on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]), never on an async worker thread.
//! [`SessdbStore::with_inline_calls`] runs the cheap calls on the calling task instead. Measured
//! with `cargo run --release -p tower-sessions-sessdb --example blocking_cost` on this project's
//! shared 2-core machine (Intel Xeon, 100k sessions, sessdb's default 128 MiB cache; ranges
//! over three runs):
//!
//! | per operation | sessdb called directly | through this store | with inline calls |
//! |---|---|---|---|
//! | load | 3.6–3.8 µs | 27–29 µs | 3.9–4.0 µs |
//! | the blocking-pool round trip alone | – | 18–19 µs | – |
//! | save, periodic durability | 9.0–9.1 µs | 37–38 µs | 11.7–12.3 µs |
//! | save, [immediate durability](sessdb::Durability::Immediate) | 0.37–0.38 ms | the same | on the blocking pool |
//!
//! The default is the safe one: a load that misses sled's cache reads the disk, a save in
//! immediate mode waits for an `fsync`, and a purge walks every expired session. Inline, any of
//! these would stall every request on that worker. With inline calls, loads, and writes with
//! periodic durability, run inline; writes with immediate durability and the purge still take
//! the blocking pool. Choose it when the sessions in use fit in sled's cache.
//!
//! ## Operators
//! Sessions written through this store are ordinary sessdb sessions: `sessctl list`, `show`,
//! `invalidate --principal`, `purge`, `export` and the TUI work on them. sled lets one process
//! open a database, so an application that wants `sessctl` to reach its sessions while it runs
//! opens its store with [`sessdb::Builder::admin_socket_default`], as the `axum_app` example
//! does.
//!
//! [tower-sessions]: https://docs.rs/tower-sessions
//! [sessdb]: sessdb
#![deny(missing_docs)]
// No unwrap on anything a request reaches; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod convert;
mod error;
mod store;

pub use convert::{session_id, NO_IDLE_TIMEOUT};
pub use store::SessdbStore;
