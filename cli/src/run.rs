//! Runs a parsed command line: validate, run the command, flush, and turn any error into one
//! line on stderr and its exit code.

use std::io::{self, BufWriter, Write};

use crate::args::Args;
use crate::cmd::Ctx;
use crate::config::{Command, Config, Env};
use crate::exit::{classify, hint, is_broken_pipe, Exit};
use crate::output::printable_lines;

/// Runs sessctl with parsed arguments and returns how it should end. Errors are printed to
/// stderr here, once, with their chain of causes.
pub fn run(args: Args) -> Exit {
    let config = match Config::new(args, Env::detect()) {
        Ok(config) => config,
        Err(e) => return report(&e, None),
    };
    let mut out = BufWriter::new(io::stdout());
    let mut err = io::stderr();
    let result = execute(&config, &mut out, &mut err);
    // Whatever happened, what was printed before it goes out first.
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(exit), Ok(())) => exit,
        (Err(e), _) => {
            let advice = command_hint(&config.command, &e);
            report(&e, advice)
        }
        (Ok(_), Err(e)) => report(&e.into(), None),
    }
}

/// Runs the command of `config`, writing results to `out` and diagnostics to `err`.
///
/// # Errors
/// Whatever the command fails with.
pub fn execute(config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Exit> {
    let mut quiet;
    let err: &mut dyn Write = if config.quiet {
        quiet = WithoutNotes::new(err);
        &mut quiet
    } else {
        err
    };
    let mut ctx = Ctx {
        db: &config.db,
        db_named_by: config.db_named_by,
        as_of: config.as_of,
        socket: config.socket.as_deref(),
        socket_named_by: config.socket_named_by,
        timeout: config.timeout,
        style: config.style,
        progress: config.progress,
        no_color: config.no_color,
        out,
        err,
        quiet: config.quiet,
    };
    match &config.command {
        Command::Demo(c) => c.run(&mut ctx),
        Command::Stats(c) => c.run(&mut ctx),
        Command::List(c) => c.run(&mut ctx),
        Command::Show(c) => c.run(&mut ctx),
        Command::Invalidate(c) => c.run(&mut ctx),
        Command::Purge(c) => c.run(&mut ctx),
        Command::Export(c) => c.run(&mut ctx),
        Command::Import(c) => c.run(&mut ctx),
        Command::Check(c) => c.run(&mut ctx),
        Command::Compact(c) => c.run(&mut ctx),
        Command::Tui(c) => c.run(&mut ctx),
    }
}

/// stderr without its notes (`--quiet`): each whole line that starts `note: ` is dropped,
/// everything else passes, a line at a time.
struct WithoutNotes<'a> {
    inner: &'a mut dyn Write,
    /// The line written so far, up to its newline.
    line: Vec<u8>,
}

impl<'a> WithoutNotes<'a> {
    fn new(inner: &'a mut dyn Write) -> Self {
        WithoutNotes {
            inner,
            line: Vec::new(),
        }
    }

    fn pass(&mut self) -> io::Result<()> {
        if !self.line.starts_with(b"note: ") {
            self.inner.write_all(&self.line)?;
        }
        self.line.clear();
        Ok(())
    }
}

impl Write for WithoutNotes<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..=at]);
            self.pass()?;
            rest = &rest[at + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    /// A line without its newline yet stays until it is whole (or the writer is dropped).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Drop for WithoutNotes<'_> {
    fn drop(&mut self) {
        let _ = self.pass();
    }
}

/// Advice on an error that depends on the command it ended, ahead of the error's own
/// ([`hint`]): only an import cut off by the application says more.
fn command_hint(command: &Command, e: &anyhow::Error) -> Option<String> {
    match command {
        Command::Import(c) => c.hint(e),
        Command::Compact(c) => c.hint(e),
        _ => None,
    }
}

/// Prints `error: <chain>` (with `advice` or else a hint where one helps) and returns the exit
/// code. A closed stdout is not an error: the reader has what it wanted.
fn report(e: &anyhow::Error, advice: Option<String>) -> Exit {
    if is_broken_pipe(e) {
        return Exit::Success;
    }
    let _ = writeln!(io::stderr(), "{}", error_line(e, advice));
    classify(e)
}

/// `error: <chain>; <advice or hint>`, escaped: the chain may hold what a running application
/// sent (its errors, its database's path), and a hostile or broken one could send escape
/// sequences to the operator's terminal.
fn error_line(e: &anyhow::Error, advice: Option<String>) -> String {
    let hint = advice
        .or_else(|| hint(e))
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    printable_lines(&format!("error: {e:#}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--quiet`'s stderr drops whole lines that start `note: `, however they were written in
    /// pieces, and passes the rest, a last line without its newline included.
    #[test]
    fn without_notes_drops_the_notes_only() {
        let mut out = Vec::new();
        {
            let mut w = WithoutNotes::new(&mut out);
            w.write_all(b"no").unwrap();
            w.write_all(b"te: a running application\nwarning: kept\nnote: x\n")
                .unwrap();
            write!(w, "line 2: bad\nerror: ").unwrap();
            w.flush().unwrap();
            write!(w, "1 bad line").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "warning: kept\nline 2: bad\nerror: 1 bad line"
        );
    }

    #[test]
    fn an_application_error_is_printed_escaped_on_its_lines() {
        let remote = anyhow::Error::new(sessdb::Error::Remote {
            message: "disk on fire\x1b]0;owned\x07\rall good\nsee the log".into(),
        })
        .context("purging");
        assert_eq!(
            error_line(&remote, None),
            "error: purging: the application reported: disk on fire\\u{1b}]0;owned\\u{7}\\rall \
             good\nsee the log"
        );
    }
}
