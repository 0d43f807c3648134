//! The raw command line, as clap parses it. Nothing here is validated beyond its shape;
//! [`crate::config`] turns it into the configuration the commands run with.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{
    Args as ClapArgs, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum,
};

use crate::exit::Exit;

const EXIT_CODES: &str = "\
Exit codes:
  0    success (also when the reader of the output goes away, as with `| head`;
       a list that matches nothing is not an error: it exits 0)
  1    the session that show or invalidate acts on does not exist, or the
       principal that invalidate --principal logs out has no live session
  2    usage error: a bad option, argument, time, duration, handle or session id
  3    the database is held by another process (sled allows one process at a
       time; for `demo --live`: a running application already serves it)
  4    bad data: bad import lines, a check that found problems, an undecodable
       record, a damaged database
  5    any other I/O or database error (missing database, not a folder, newer
       format, ...)
  101  a bug in sessctl (it says so; please report it)
  130  compact stopped by Ctrl-C or SIGTERM (its unfinished copy removed, the
       database unchanged; a second signal ends it at once, and leaves the copy);
       import stopped so while it reads its input (nothing written, a database it
       made removed; a second signal ends it at once, and leaves that database).
       Once the input is read the import writes, and a signal ends it at once:
       what it wrote stays, and running it again finishes it (through an admin
       socket the application writes the whole import anyway)

Environment (a variable set to the empty string counts as unset):
  SESSCTL_DB       the database folder when --db is not given
  SESSCTL_SOCKET   the admin socket when --socket is not given
  SESSCTL_TIMEOUT  the admin socket's timeout when --timeout is not given
  NO_COLOR         turns colour off (so does TERM=dumb; it is also off when
                   stdout is not a terminal)";

/// `--version`: the package version, then the formats and protocol this build reads and writes,
/// which tell two builds apart where it matters to an operator (`-V` gives the first line).
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{}\ndatabase format {format} (opens 1 to {format}), export version {}, admin \
             socket protocol {} to {}",
            env!("CARGO_PKG_VERSION"),
            sessdb::EXPORT_VERSION,
            sessdb::OLDEST_PROTOCOL_VERSION,
            sessdb::PROTOCOL_VERSION,
            format = sessdb::FORMAT_VERSION,
        )
    })
}

/// The heading of the options every command takes, apart from each command's own (clap mixed
/// them in).
const GLOBAL: &str = "Global options";

/// sessctl: look at, clean up, back up and restore a sessdb session database.
#[derive(Debug, Parser)]
#[command(
    name = "sessctl",
    version,
    long_version = long_version(),
    after_help = EXIT_CODES,
    max_term_width = 100
)]
pub struct Args {
    /// Database folder [default: ./sessions.sessdb].
    #[arg(long, global = true, env = "SESSCTL_DB", value_name = "PATH", help_heading = GLOBAL)]
    pub db: Option<PathBuf>,

    /// Evaluate expiry as of TIME (RFC 3339, e.g. 2025-01-31T12:00:00Z) instead of now. A TIME
    /// later than now only reads: "what would purge remove tomorrow?" is `purge --expired
    /// --dry-run`, and commands that write are refused. Not while a running application serves
    /// the database: through its admin socket, expiry follows the application's clock.
    #[arg(long, global = true, value_name = "TIME", help_heading = GLOBAL)]
    pub as_of: Option<String>,

    /// Reach a running application through this admin socket instead of opening --db (by
    /// default sessctl finds `admin.sock` in the database folder by itself). When --db names
    /// another database than the application serves, commands that write, and export, are
    /// refused.
    #[arg(long, global = true, env = "SESSCTL_SOCKET", value_name = "PATH", help_heading = GLOBAL)]
    pub socket: Option<PathBuf>,

    /// How long to wait at a time for a running application's admin socket, in seconds
    /// [default: 10]. An application that is only busy (it answers a second connection) is
    /// waited for, however long the command takes; one that is stopped or hung is reported
    /// after this when connecting (exit 3 when it holds the database, 5 through --socket), and
    /// after twice this when it falls silent during a command (exit 5 either way).
    #[arg(
        long,
        global = true,
        env = "SESSCTL_TIMEOUT",
        value_name = "SECS",
        allow_hyphen_values = true,
        help_heading = GLOBAL
    )]
    pub timeout: Option<String>,

    /// Say only warnings and errors on stderr: leave out the notes (such as the one saying a
    /// running application's admin socket is used), an export's summary, a listing's hints and
    /// progress bars (`demo`, made for a person, still says what it does).
    /// For cron, which mails whatever a job prints; stdout is unchanged (send it to /dev/null
    /// for a job that should print nothing), and so is the exit code. Given twice (`-qq`, or
    /// before and after the command) it is the same.
    #[arg(long, short, global = true, overrides_with = "quiet", help_heading = GLOBAL)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Whether `db` came from `SESSCTL_DB` rather than `--db`, for messages that say which to
    /// drop.
    #[arg(skip)]
    pub db_from_env: bool,

    /// Whether `socket` came from `SESSCTL_SOCKET` rather than `--socket`.
    #[arg(skip)]
    pub socket_from_env: bool,

    /// Whether `timeout` came from `SESSCTL_TIMEOUT` rather than `--timeout`.
    #[arg(skip)]
    pub timeout_from_env: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a realistic demo database and say what to try next; with --live, run a
    /// simulated application on it.
    Demo(DemoArgs),
    /// Live and expired sessions, principals, size on disk, format version.
    Stats(StatsArgs),
    /// List sessions, soonest expiry first (to within 5 minutes).
    List(ListArgs),
    /// Show one session's metadata and data.
    Show(ShowArgs),
    /// Invalidate sessions by handle or id, or every session of a principal.
    // clap's own usage line names both forms at once, which the command refuses.
    #[command(
        override_usage = "sessctl invalidate [OPTIONS] <HANDLE|SESSION-ID>...\n       \
                                sessctl invalidate [OPTIONS] --principal <P>"
    )]
    Invalidate(InvalidateArgs),
    /// Remove expired sessions.
    Purge(PurgeArgs),
    /// Write every session as JSON Lines (to stdout, or to a file created owner-only).
    Export(ExportArgs),
    /// Restore sessions from an export.
    Import(ImportArgs),
    /// Verify records and indexes; with --repair, fix what can be fixed.
    Check(CheckArgs),
    /// Rewrite the database into a new folder and swap it in: back to its fresh size on disk
    /// (the application must be stopped).
    Compact(CompactArgs),
    /// Browse, filter, inspect and invalidate sessions in a terminal UI.
    Tui(TuiArgs),
}

/// `sessctl demo`
#[derive(Debug, ClapArgs)]
pub struct DemoArgs {
    /// How many sessions to create.
    #[arg(long, value_name = "N", default_value_t = 120, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sessions: u32,
    /// Replace an existing database at --db.
    #[arg(long)]
    pub force: bool,
    /// Then run a simulated application on it (an existing database is used as it is): it
    /// serves the admin socket and keeps logging users in and out, serving their requests,
    /// rotating session ids and letting sessions expire, until Ctrl-C. Watch it with
    /// `sessctl tui` in another terminal.
    #[arg(long)]
    pub live: bool,
    /// With --live: operations per second [default: 300].
    #[arg(long, value_name = "N", requires = "live", allow_hyphen_values = true)]
    pub rate: Option<String>,
    /// With --live: stop by itself after SECS seconds.
    #[arg(
        long,
        value_name = "SECS",
        requires = "live",
        allow_hyphen_values = true
    )]
    pub duration: Option<String>,
}

/// `sessctl stats`
#[derive(Debug, ClapArgs)]
pub struct StatsArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `sessctl list`
#[derive(Debug, ClapArgs)]
pub struct ListArgs {
    /// Only sessions of this principal.
    #[arg(long, value_name = "P")]
    pub principal: Option<String>,
    /// Only sessions with exactly this label.
    #[arg(long, value_name = "L")]
    pub label: Option<String>,
    /// Only expired sessions (not yet purged) instead of live ones.
    #[arg(long, conflicts_with = "expiring_within")]
    pub expired: bool,
    /// Only live sessions that expire within DURATION (e.g. 90s, 15m, 2h, 1d, 1h30m).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub expiring_within: Option<String>,
    /// At most N sessions; 0 for all.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        allow_negative_numbers = true,
        value_parser = parse_limit
    )]
    pub limit: usize,
    /// One JSON object per line, in the export's schema.
    #[arg(long)]
    pub json: bool,
}

/// `sessctl show`
#[derive(Debug, ClapArgs)]
pub struct ShowArgs {
    /// A handle (32 hex characters as `list` shows, or its first 6 or more, as the TUI shows),
    /// a session id (a UUID, from a cookie, with or without its hyphens: 32 hex characters
    /// that are no session's handle are taken for one), or the 22 characters of a
    /// tower-sessions cookie.
    #[arg(value_name = "HANDLE|SESSION-ID")]
    pub target: String,
    /// One JSON object, in the export's schema.
    #[arg(long)]
    pub json: bool,
}

/// `sessctl invalidate`
#[derive(Debug, ClapArgs)]
pub struct InvalidateArgs {
    /// Handles (or their first 6 or more characters), session ids (UUIDs, with or without
    /// their hyphens: 32 hex characters that are no session's handle are taken for one), or
    /// tower-sessions cookies' 22 characters.
    #[arg(
        value_name = "HANDLE|SESSION-ID",
        required_unless_present = "principal",
        conflicts_with = "principal"
    )]
    pub targets: Vec<String>,
    /// Every session of this principal ("log them out everywhere").
    #[arg(long, value_name = "P", value_parser = parse_principal)]
    pub principal: Option<String>,
}

/// `sessctl purge`
#[derive(Debug, ClapArgs)]
pub struct PurgeArgs {
    /// Remove the sessions that are expired (required, so that `purge` alone does nothing).
    #[arg(long, required = true)]
    pub expired: bool,
    /// Only count what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `sessctl compact`
#[derive(Debug, ClapArgs)]
pub struct CompactArgs {
    /// Leave out the expired sessions: what `purge --expired` would remove, without its
    /// writes into the old files.
    #[arg(long)]
    pub drop_expired: bool,
    /// Keep the old database, as `<DB>.compact-old` beside the database folder.
    #[arg(long, conflicts_with = "into")]
    pub keep_old: bool,
    /// Only write a compacted copy into DIR (a new folder, or an empty one), and leave the
    /// database as it is: for a database folder that is a mount point, or a copy to look at
    /// first.
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,
}

/// `sessctl export`
#[derive(Debug, ClapArgs)]
pub struct ExportArgs {
    /// Write to FILE instead of stdout: created with mode 0600 and replaced atomically (a
    /// symbolic link is followed, and the file it leads to replaced); a named pipe or a
    /// character device is written as it is.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Include expired sessions that are not yet purged.
    #[arg(long)]
    pub include_expired: bool,
}

/// What to do with a session that exists with other content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnConflictArg {
    /// Keep the stored session.
    Skip,
    /// Overwrite it with the one from the file.
    Replace,
}

/// `sessctl import`
#[derive(Debug, ClapArgs)]
pub struct ImportArgs {
    /// The export to read; `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Validate and count; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do with sessions that exist with other content.
    #[arg(long, value_enum, default_value_t = OnConflictArg::Skip, value_name = "POLICY")]
    pub on_conflict: OnConflictArg,
    /// Import the good lines even if some are bad (bad lines are reported either way). A file
    /// that does not start with an export header has no good lines.
    #[arg(long)]
    pub skip_bad: bool,
}

/// `sessctl check`
#[derive(Debug, ClapArgs)]
pub struct CheckArgs {
    /// Rebuild the indexes and remove undecodable records.
    #[arg(long)]
    pub repair: bool,
}

/// `sessctl tui`
#[derive(Debug, ClapArgs)]
pub struct TuiArgs {
    /// Seconds between refreshes of the session list.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "2",
        allow_hyphen_values = true
    )]
    pub refresh: String,
}

impl Args {
    /// Parses the command line. On `--help`, `--version` or a usage error clap's message is
    /// printed and the exit code returned.
    ///
    /// # Errors
    /// The exit code to end with when there is nothing to run.
    pub fn parse_from_os(args: impl IntoIterator<Item = OsString>) -> Result<Args, Exit> {
        let mut command = Args::command();
        // `SESSCTL_DB= sessctl stats` would otherwise be clap's "a value is required for
        // '--db <PATH>'", blaming a flag the user never typed. Empty is unset, as for NO_COLOR.
        for (id, var) in [
            ("db", "SESSCTL_DB"),
            ("socket", "SESSCTL_SOCKET"),
            ("timeout", "SESSCTL_TIMEOUT"),
        ] {
            if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
                command = command.mut_arg(id, |arg| arg.env(None::<&'static str>));
            }
        }
        let parsed = command.try_get_matches_from(args).and_then(|matches| {
            let mut args = Args::from_arg_matches(&matches)?;
            let from_env = |id| matches.value_source(id) == Some(ValueSource::EnvVariable);
            args.db_from_env = from_env("db");
            args.socket_from_env = from_env("socket");
            args.timeout_from_env = from_env("timeout");
            Ok(args)
        });
        parsed.map_err(|e| {
            // A closed stdout (`--help | head -1`) is not worth a message.
            let _ = e.print();
            if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            }
        })
    }
}

/// `invalidate --principal`: an empty one names no principal (no session can have it), which is
/// a mistake in the command (an unset shell variable), not a principal without sessions.
fn parse_principal(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("a principal cannot be empty (an unset shell variable?)".to_string());
    }
    Ok(text.to_string())
}

/// `list --limit`: clap's own refusal of `-1` was the parser's ("invalid digit found in
/// string"), which does not say what is wanted.
fn parse_limit(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected a whole number of sessions (0 for all)".to_string())
}
