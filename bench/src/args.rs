//! The raw command line, and the hidden subcommand the bench runs itself with to measure one
//! engine in a fresh process (so memory peaks do not mix).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmarks sessdb against raw sled, SQLite and Redis, and prints a markdown table.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 when every workload ran, 1 otherwise."
)]
pub struct Args {
    /// A small version that runs in under a minute (10k and 50k sessions, fewer operations; the
    /// tower-sessions rows at the smaller size only).
    #[arg(long)]
    pub quick: bool,
    /// Store sizes to measure, comma separated or repeated [default: 100000,1000000].
    #[arg(long = "sessions", value_delimiter = ',', value_name = "N")]
    pub sessions: Vec<usize>,
    /// Folder in which a temporary folder holds the databases (removed afterwards); it must be
    /// on the disk to measure, not tmpfs [default: the system's temporary folder].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Seed of the sessions' content and the access order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Skip the Redis peer even when redis-server is installed.
    #[arg(long)]
    pub no_redis: bool,
    /// Run only these parts, comma separated: sessdb, sled, sqlite, redis, memory, cache,
    /// tower (every store through tower-sessions' SessionStore) [default: all].
    #[arg(long, value_delimiter = ',', value_name = "PART")]
    pub only: Vec<String>,
    #[command(subcommand)]
    pub child: Option<Child>,
}

#[derive(Debug, Subcommand)]
pub enum Child {
    /// Runs one engine's workloads (internal).
    #[command(name = "__child", hide = true)]
    Run {
        /// sessdb, sled, sqlite, redis, load-*, work-*, conc-* (of sessdb, sled, sqlite), memory-sessdb, memory-sled, memory-sqlite, cache, tower-* (engines::tower::KINDS, tower-redis).
        #[arg(long)]
        kind: String,
        /// The plan, as JSON.
        #[arg(long)]
        plan: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        cache_mib: Option<u64>,
        #[arg(long)]
        redis: Option<PathBuf>,
    },
}
