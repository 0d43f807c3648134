//! The validated configuration: times, durations and session names parsed, terminal facts
//! decided. Everything the user can get wrong is rejected here, before the database is opened.

use std::path::PathBuf;
use std::time::Duration;

use sessdb::{CompactOptions, ImportOptions, ListQuery, OnConflict, RemoteAdmin, Status};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::args::{Args, Command as RawCommand, OnConflictArg};
use crate::cmd::{check, compact, demo, export, import, invalidate, list, purge, show, stats, tui};
use crate::exit::Failure;
use crate::output::Style;
use crate::target::Named;

/// Facts about the environment that change the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Env {
    /// NO_COLOR is set to a non-empty value, or TERM is `dumb` (a terminal that shows escape
    /// sequences as text, as clap's and indicatif's output already assume).
    pub no_color: bool,
    /// stdout is a terminal.
    pub stdout_terminal: bool,
    /// stderr is a terminal.
    pub stderr_terminal: bool,
}

impl Env {
    /// The environment of this process.
    pub fn detect() -> Env {
        use std::io::IsTerminal as _;
        Env {
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
                || std::env::var_os("TERM").is_some_and(|t| t == "dumb"),
            stdout_terminal: std::io::stdout().is_terminal(),
            stderr_terminal: std::io::stderr().is_terminal(),
        }
    }
}

/// What to run, and how to show it.
#[derive(Debug)]
pub struct Config {
    /// The database folder.
    pub db: PathBuf,
    /// What named it, `--db` or `SESSCTL_DB`; `None` for the default.
    pub db_named_by: Option<&'static str>,
    /// The moment expiry is evaluated at, if not now.
    pub as_of: Option<OffsetDateTime>,
    /// An admin socket to use instead of opening the database (`--socket`).
    pub socket: Option<PathBuf>,
    /// What named the socket, `--socket` or `SESSCTL_SOCKET`.
    pub socket_named_by: &'static str,
    /// How long to wait at a time for an application's admin socket (`--timeout`).
    pub timeout: Duration,
    /// Colours for stdout.
    pub style: Style,
    /// Whether to draw progress bars on stderr.
    pub progress: bool,
    /// NO_COLOR is set, or TERM is `dumb` (the TUI draws on the terminal whatever stdout is).
    pub no_color: bool,
    /// Notes on stderr are left out (`--quiet`).
    pub quiet: bool,
    /// The command.
    pub command: Command,
}

/// A validated command.
#[derive(Debug)]
pub enum Command {
    /// `demo`
    Demo(demo::Demo),
    /// `stats`
    Stats(stats::Stats),
    /// `list`
    List(list::List),
    /// `show`
    Show(show::Show),
    /// `invalidate`
    Invalidate(invalidate::Invalidate),
    /// `purge`
    Purge(purge::Purge),
    /// `export`
    Export(export::Export),
    /// `import`
    Import(import::Import),
    /// `check`
    Check(check::Check),
    /// `compact`
    Compact(compact::Compact),
    /// `tui`
    Tui(tui::Tui),
}

impl Config {
    /// Validates the raw arguments.
    ///
    /// # Errors
    /// [`Failure::Usage`] or [`sessdb::Error::InvalidId`] for anything malformed.
    pub fn new(args: Args, env: Env) -> anyhow::Result<Config> {
        let as_of = args.as_of.as_deref().map(parse_time).transpose()?;
        let timeout = match &args.timeout {
            Some(t) => parse_timeout(
                if args.timeout_from_env {
                    "SESSCTL_TIMEOUT"
                } else {
                    "--timeout"
                },
                t,
            )?,
            None => RemoteAdmin::DEFAULT_TIMEOUT,
        };
        let command = match args.command {
            RawCommand::Demo(a) => {
                let live = if a.live {
                    if as_of.is_some() {
                        return Err(usage(
                            "--as-of cannot be used with demo --live: the simulated application \
                             runs on the system clock"
                                .into(),
                        ));
                    }
                    Some(demo::Live {
                        rate: a.rate.as_deref().map_or(Ok(DEFAULT_RATE), parse_rate)?,
                        duration: a
                            .duration
                            .as_deref()
                            .map(|d| parse_seconds("--duration", d, 0.1, MAX_DURATION_SECS))
                            .transpose()?,
                    })
                } else {
                    None
                };
                Command::Demo(demo::Demo {
                    sessions: a.sessions,
                    force: a.force,
                    live,
                })
            }
            RawCommand::Stats(a) => Command::Stats(stats::Stats { json: a.json }),
            RawCommand::List(a) => {
                let expiring_within = a
                    .expiring_within
                    .as_deref()
                    .map(|d| {
                        parse_duration(d).map_err(|e| usage(format!("--expiring-within: {e}")))
                    })
                    .transpose()?;
                Command::List(list::List {
                    query: ListQuery {
                        principal: a.principal,
                        label: a.label,
                        status: if a.expired {
                            Status::Expired
                        } else {
                            Status::Live
                        },
                        expiring_within,
                        ..ListQuery::default()
                    },
                    limit: (a.limit > 0).then_some(a.limit),
                    json: a.json,
                })
            }
            RawCommand::Show(a) => Command::Show(show::Show {
                target: Named::parse(&a.target)?,
                json: a.json,
            }),
            RawCommand::Invalidate(a) => Command::Invalidate(match a.principal {
                Some(p) => invalidate::Invalidate::Principal(p),
                None => invalidate::Invalidate::Targets(
                    a.targets
                        .iter()
                        .map(|t| Named::parse(t))
                        .collect::<Result<_, _>>()?,
                ),
            }),
            RawCommand::Purge(a) => Command::Purge(purge::Purge { dry_run: a.dry_run }),
            RawCommand::Export(a) => Command::Export(export::Export {
                out: a.out.filter(|p| p.as_os_str() != "-"),
                include_expired: a.include_expired,
            }),
            RawCommand::Import(a) => Command::Import(import::Import::new(
                if a.file.as_os_str() == "-" {
                    import::Input::Stdin
                } else {
                    import::Input::File(a.file)
                },
                ImportOptions {
                    dry_run: a.dry_run,
                    on_conflict: match a.on_conflict {
                        OnConflictArg::Skip => OnConflict::Skip,
                        OnConflictArg::Replace => OnConflict::Replace,
                    },
                    skip_bad: a.skip_bad,
                },
            )),
            RawCommand::Check(a) => Command::Check(check::Check { repair: a.repair }),
            RawCommand::Compact(a) => Command::Compact(compact::Compact {
                options: CompactOptions {
                    drop_expired: a.drop_expired,
                    keep_old: a.keep_old,
                },
                into: a.into,
            }),
            RawCommand::Tui(a) => Command::Tui(tui::Tui {
                refresh: parse_refresh(&a.refresh)?,
                terminal: env.stdout_terminal,
            }),
        };
        Ok(Config {
            db_named_by: args.db.as_ref().map(|_| {
                if args.db_from_env {
                    "SESSCTL_DB"
                } else {
                    "--db"
                }
            }),
            db: args.db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
            as_of,
            socket: args.socket,
            socket_named_by: if args.socket_from_env {
                "SESSCTL_SOCKET"
            } else {
                "--socket"
            },
            timeout,
            style: Style {
                color: env.stdout_terminal && !env.no_color,
            },
            // --quiet: no progress bars either, whatever stderr is.
            progress: env.stderr_terminal && !args.quiet,
            no_color: env.no_color,
            quiet: args.quiet,
            command,
        })
    }
}

/// The database folder when neither `--db` nor `SESSCTL_DB` names one.
pub const DEFAULT_DB: &str = "./sessions.sessdb";

fn usage(message: String) -> anyhow::Error {
    Failure::Usage(message).into()
}

/// The latest time sessdb stores: the end of 9999 (its clock clamps to 1970..=9999).
const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999 UTC);

/// An RFC 3339 time for `--as-of`, within the times sessdb stores: the store's clock would
/// clamp any other, and answer for another moment than the one asked about.
fn parse_time(text: &str) -> anyhow::Result<OffsetDateTime> {
    let shown = crate::output::clip(text, 40);
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
        usage(format!(
            "--as-of: {shown:?} is not an RFC 3339 time such as 2025-01-31T12:00:00Z"
        ))
    })?;
    if t < OffsetDateTime::UNIX_EPOCH {
        return Err(usage(format!(
            "--as-of: {shown:?} is before 1970-01-01T00:00:00Z, the earliest time sessdb stores"
        )));
    }
    if t > LATEST {
        return Err(usage(format!(
            "--as-of: {shown:?} is after the end of 9999, the latest time sessdb stores"
        )));
    }
    Ok(t)
}

/// A duration such as `90s`, `15m`, `2h`, `1d`, `1w` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = |why: &str| {
        format!(
            "{:?} is not a duration ({why}; e.g. 90s, 15m, 2h, 1d, 1h30m)",
            crate::output::clip(text, 40)
        )
    };
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(bad(&format!(
                    "{c:?} is neither a digit nor a unit: whole numbers, each followed by s, m, \
                     h, d or w"
                )))
            }
        };
        if number.is_empty() {
            return Err(bad("a unit needs a number before it"));
        }
        let n: u64 = number.parse().map_err(|_| bad("too large"))?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| bad("too large"))?;
    }
    if !number.is_empty() {
        return Err(bad("the last number has no unit"));
    }
    // Keep far below the store's time range so `now + duration` cannot overflow anything.
    if total > 100 * 365 * 86_400 {
        return Err(bad("longer than 100 years"));
    }
    Ok(Duration::from_secs(total))
}

fn parse_refresh(text: &str) -> anyhow::Result<Duration> {
    parse_seconds("--refresh", text, 0.1, 3600.0)
}

/// `--timeout` (or `SESSCTL_TIMEOUT`, named by `flag`): from a millisecond, the client's
/// least, to an hour.
fn parse_timeout(flag: &str, text: &str) -> anyhow::Result<Duration> {
    parse_seconds(flag, text, 0.001, 3600.0)
}

/// A number of seconds between `min` and `max` for `flag`, or a duration with units as
/// `--expiring-within` takes it (`10s`, `2m`).
fn parse_seconds(flag: &str, text: &str, min: f64, max: f64) -> anyhow::Result<Duration> {
    let seconds = text
        .trim()
        .parse::<f64>()
        .ok()
        .or_else(|| parse_duration(text).ok().map(|d| d.as_secs_f64()));
    match seconds {
        Some(s) if (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(usage(format!(
            "{flag}: {:?} is not a number of seconds between {min} and {max} (or a duration \
             such as 10s or 2m)",
            crate::output::clip(text, 40)
        ))),
    }
}

/// `demo --live` without `--rate`: busy enough to watch, light enough for a laptop.
const DEFAULT_RATE: u32 = 300;
const MAX_RATE: u32 = 100_000;
/// A year: far from any overflow of `Instant + Duration`.
const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;

/// Operations per second for `demo --live --rate`.
fn parse_rate(text: &str) -> anyhow::Result<u32> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_RATE).contains(&n) => Ok(n),
        _ => Err(usage(format!(
            "--rate: {:?} is not a whole number of operations per second between 1 and \
             {MAX_RATE}",
            crate::output::clip(text, 40)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a terminal, progress bars are drawn, unless `--quiet`.
    #[test]
    fn quiet_draws_no_progress() {
        use clap::Parser as _;
        let terminal = Env {
            no_color: false,
            stdout_terminal: true,
            stderr_terminal: true,
        };
        let config = |args: &[&str]| {
            Config::new(crate::args::Args::parse_from(args), terminal).expect("config")
        };
        let loud = config(&["sessctl", "stats"]);
        assert!(loud.progress && !loud.quiet);
        let quiet = config(&["sessctl", "-q", "stats"]);
        assert!(!quiet.progress && quiet.quiet);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "15",
            "m",
            "1x",
            "-1m",
            "99999999999999999999s",
            "1000000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        // The character that is wrong is named, not the units, which may be right.
        let why = |text| parse_duration(text).expect_err(text);
        assert!(
            why("1.5h").contains("'.' is neither a digit nor a unit"),
            "{}",
            why("1.5h")
        );
        assert!(why("-5m").contains("'-' is neither"), "{}", why("-5m"));
        assert!(why("1 h").contains("' ' is neither"), "{}", why("1 h"));
        assert!(why("1x").contains("'x' is neither"), "{}", why("1x"));
    }

    #[test]
    fn refresh_and_time() {
        assert_eq!(
            parse_refresh("0.5").expect("valid"),
            Duration::from_millis(500)
        );
        assert!(parse_refresh("0").is_err());
        assert!(parse_refresh("NaN").is_err());
        assert!(parse_time("2025-01-31T12:00:00Z").is_ok());
        assert!(parse_time("2025-01-31").is_err());
        assert!(parse_time("1970-01-01T00:00:00Z").is_ok());
        assert!(parse_time("1970-01-01T00:30:00+01:00").is_err());
        assert!(parse_time("9999-12-31T23:59:59Z").is_ok());
        assert!(parse_time("9999-12-31T23:30:00-01:00").is_err());
    }

    #[test]
    fn live_rate_and_duration() {
        assert_eq!(parse_rate("300").expect("valid"), 300);
        assert_eq!(parse_rate(" 1 ").expect("valid"), 1);
        assert_eq!(parse_rate("100000").expect("valid"), MAX_RATE);
        for bad in ["0", "100001", "-5", "2.5", "fast", ""] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        let d = |t| parse_seconds("--duration", t, 0.1, MAX_DURATION_SECS);
        assert_eq!(d("2.5").expect("valid"), Duration::from_millis(2500));
        assert_eq!(d("60").expect("valid"), Duration::from_secs(60));
        // With units, as --expiring-within takes them; still within the range.
        assert_eq!(d("10s").expect("valid"), Duration::from_secs(10));
        assert_eq!(d("1h30m").expect("valid"), Duration::from_secs(5400));
        for bad in [
            "0", "0.01", "-1", "inf", "NaN", "1e9", "0s", "400d", "10x", "s",
        ] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
    }
}
