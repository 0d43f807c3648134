//! The writer of the crash tests (`tests/crash.rs`): runs the operations of
//! [`sessdb_e2e::writer`] and reports each one on stdout before it starts (`op …`) and once the
//! store acknowledged it (`ok …`), one flushed line each. The test kills it with SIGKILL at a
//! random moment and checks the store against what was acknowledged.
//!
//! Usage: `crash_writer DB immediate|periodic SEED`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use sessdb::Durability;

/// The writer stops by itself after this many operations if nobody kills it.
const MAX_OPS: u64 = 100_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash_writer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, mode, seed] = args.as_slice() else {
        return Err("usage: crash_writer DB immediate|periodic SEED".into());
    };
    let durability = match mode.as_str() {
        "immediate" => Durability::Immediate,
        "periodic" => Durability::Periodic {
            flush_every: Duration::from_millis(5),
        },
        other => return Err(format!("unknown durability {other:?}").into()),
    };
    let mut out = io::stdout().lock();
    sessdb_e2e::writer::run(
        Path::new(path),
        durability,
        seed.parse()?,
        MAX_OPS,
        false,
        |line| {
            writeln!(out, "{line}")?;
            out.flush()
        },
    )
}
