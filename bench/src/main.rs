//! `sessdb-bench`: sessdb against raw sled (its physical limit), SQLite and Redis, side by
//! side in one run. See docs/BENCHMARKS.md.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod data;
mod engines;
mod measure;
mod report;
mod run;
mod threads;

/// With `--features mimalloc`, every engine in the bench allocates through mimalloc (SQLite's C
/// code excepted: it calls the C library's malloc).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `--features jemalloc`, through jemalloc (the same exception); mimalloc wins if both
/// are on (`--all-features`).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The global allocator, as the report names it.
pub const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc (`--features mimalloc`)"
} else if cfg!(feature = "jemalloc") {
    "jemalloc (`--features jemalloc`)"
} else {
    "the system's (the C library's malloc)"
};

fn main() -> ExitCode {
    let args = args::Args::parse();
    match run::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessdb-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
