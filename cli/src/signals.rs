//! Ctrl-C and SIGTERM for the commands that stop cleanly (`demo --live`, `compact`, `import`
//! while it reads): the first signal sets a flag the command checks, a second ends the process
//! at once.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;

/// SIGINT and SIGTERM set the flag returned; a second one ends the process at once with exit
/// status `second`, for a command whose own stop hangs or takes too long.
pub fn stop_on_signals(second: i32) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    set_on_signals(&stop, second)?;
    Ok(stop)
}

/// SIGINT and SIGTERM set `stop`, as [`stop_on_signals`] does with a flag of its own; handlers
/// registered after these run after the flag is set.
pub fn set_on_signals(stop: &Arc<AtomicBool>, second: i32) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    for signal in [SIGINT, SIGTERM] {
        // In this order: the shutdown hook sees the flag only from the second signal on.
        flag::register_conditional_shutdown(signal, second, Arc::clone(stop))
            .context("cannot handle SIGINT and SIGTERM")?;
        flag::register(signal, Arc::clone(stop)).context("cannot handle SIGINT and SIGTERM")?;
    }
    Ok(())
}
