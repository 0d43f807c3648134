//! sessctl: the operator's command line for sessdb session databases.

use std::process::ExitCode;

fn main() -> ExitCode {
    match sessctl::Args::parse_from_os(std::env::args_os()) {
        Ok(args) => sessctl::run(args).into(),
        Err(exit) => exit.into(),
    }
}
