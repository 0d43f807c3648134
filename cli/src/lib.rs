//! # sessctl
//!
//! The operator's command line for [`sessdb`] session databases: stats, list, show,
//! invalidate, purge, export/import, check/repair, a demo database and a terminal UI. Every
//! command goes through the [`sessdb::Admin`] interface.
//!
//! The library exists for the binary (`src/main.rs`) and its tests:
//!
//! ```no_run
//! let args = sessctl::Args::parse_from_os(["sessctl", "--db", "app.sessdb", "stats"].map(Into::into));
//! let exit = args.map_or_else(|code| code, sessctl::run);
//! // 0 where app.sessdb is a database; 5 where there is none ("Exit codes" in `--help`).
//! std::process::exit(exit.code().into());
//! ```
//!
//! Exit codes: 0 success, 1 not found, 2 usage, 3 database held by another process, 4 bad
//! data, 5 any other I/O or database error, 130 `compact` or `import` interrupted (see
//! `sessctl --help`).
#![deny(missing_docs)]

mod args;
mod cmd;
mod config;
mod db;
mod exit;
mod holder;
mod output;
mod progress;
mod run;
mod signals;
mod target;

pub use args::Args;
pub use exit::Exit;
pub use holder::held_by;
pub use run::run;
