//! sessctl: the operator's command line for sessdb session databases.

use std::process::ExitCode;

/// With `--features mimalloc`: sled allocates and frees a page version on most writes, which
/// mimalloc serves faster than glibc's malloc, for more memory (sessdb's docs, "Performance:
/// pick the allocator"). Off by default.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match sessctl::Args::parse_from_os(std::env::args_os()) {
        Ok(args) => sessctl::run(args).into(),
        Err(exit) => exit.into(),
    }
}
