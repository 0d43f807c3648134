//! sessctl: the operator's command line for sessdb session databases.

use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};

/// With `--features mimalloc`: sled allocates and frees a page version on most writes, which
/// mimalloc serves faster than glibc's malloc, for more memory (sessdb's docs, "Performance:
/// pick the allocator"). Off by default.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The report of the main thread's last panic, held until it is known whether anything caught
/// it: sessdb turns sled's panics on a damaged database into an error, which is all the
/// operator should see then.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            let backtrace = std::backtrace::Backtrace::capture();
            let text = match backtrace.status() {
                std::backtrace::BacktraceStatus::Captured => format!("{info}\n{backtrace}"),
                _ => info.to_string(),
            };
            *PANIC.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
        } else {
            report(info);
        }
    }));
    let run =
        std::panic::catch_unwind(|| match sessctl::Args::parse_from_os(std::env::args_os()) {
            Ok(args) => sessctl::run(args).into(),
            Err(exit) => exit.into(),
        });
    run.unwrap_or_else(|_| {
        // Printed after unwinding, so after the TUI gave the terminal back.
        let text = PANIC.lock().unwrap_or_else(PoisonError::into_inner).take();
        eprintln!(
            "error: sessctl failed (a bug; please report it): {}",
            text.as_deref().unwrap_or("a panic")
        );
        ExitCode::from(101)
    })
}
