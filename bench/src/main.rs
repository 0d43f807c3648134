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
