//! sessctl: the operator's command line for sessdb session databases.

use std::process::ExitCode;

/// sled allocates and frees a page version on most writes; mimalloc serves that faster than
/// glibc's malloc (sessdb's docs, "Performance: pick the allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match sessctl::Args::parse_from_os(std::env::args_os()) {
        Ok(args) => sessctl::run(args).into(),
        Err(exit) => exit.into(),
    }
}
