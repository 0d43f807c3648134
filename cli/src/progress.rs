//! Progress of long work on stderr, drawn only when stderr is a terminal.

use std::io::{self, BufRead, Read, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// A progress bar or spinner, or nothing at all when stderr is not a terminal.
#[derive(Debug, Clone)]
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar of `len` steps counted in `unit` (or in bytes when `unit` is `bytes`).
    pub fn bar(enabled: bool, len: u64, message: &str, unit: &str) -> Progress {
        let template = if unit == "bytes" {
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})"
        } else {
            "{msg} [{bar:30}] {pos}/{len}"
        };
        let bar = new_bar(Some(len), enabled);
        let style = ProgressStyle::with_template(&format!("{template}{}", unit_suffix(unit)))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(message.to_string());
        Progress(bar)
    }

    /// A spinner with a running count of `unit`.
    pub fn spinner(enabled: bool, message: &str, unit: &str) -> Progress {
        let bar = new_bar(None, enabled);
        // Without a unit there is nothing to count: only the spinner and the message.
        let template = if unit.is_empty() {
            "{spinner} {msg}".to_string()
        } else {
            format!("{{spinner}} {{msg}} {{pos}} {unit}")
        };
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(message.to_string());
        if enabled {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Progress(bar)
    }

    /// Sets the position.
    pub fn set(&self, pos: u64) {
        self.0.set_position(pos);
        self.stretch();
    }

    /// Moves forward by `n`.
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
        self.stretch();
    }

    /// A bar whose count was an estimate (the sessions a purge counted first; more expire
    /// while it runs) grows with what it passes rather than run past its end.
    fn stretch(&self) {
        let pos = self.0.position();
        if self.0.length().is_some_and(|len| pos > len) {
            self.0.set_length(pos);
        }
    }

    /// Turns a bar whose count is done, but not the work (an import's input is read, its
    /// sessions are being written), into a spinner saying `message` with the time it takes,
    /// so that it does not stand still at its end. Once only.
    pub fn then(&self, message: &str) {
        if self.0.message() == message {
            return;
        }
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        self.0.set_style(style);
        self.0.set_message(message.to_string());
        if !self.0.is_hidden() {
            self.0.enable_steady_tick(Duration::from_millis(120));
        }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn unit_suffix(unit: &str) -> &str {
    if unit == "bytes" {
        ""
    } else {
        unit
    }
}

fn new_bar(len: Option<u64>, enabled: bool) -> ProgressBar {
    let target = if enabled {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    // On an error path the bar must not stay on screen above the error message.
    ProgressBar::with_draw_target(len, target).with_finish(ProgressFinish::AndClear)
}

/// A reader that moves a progress bar by the bytes consumed.
#[derive(Debug)]
pub struct ReadProgress<R> {
    inner: R,
    progress: Progress,
}

impl<R> ReadProgress<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: Progress) -> Self {
        ReadProgress { inner, progress }
    }
}

/// What an import's bar says once its input is read: the sessions are checked and written
/// then, which takes longer than the reading on a large file.
const AFTER_INPUT: &str = "input read; importing the sessions";

impl<R: BufRead> Read for ReadProgress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.progress.then(AFTER_INPUT);
        }
        self.progress.inc(n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for ReadProgress<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let progress = &self.progress;
        self.inner.fill_buf().inspect(|buf| {
            if buf.is_empty() {
                progress.then(AFTER_INPUT);
            }
        })
    }

    fn consume(&mut self, amt: usize) {
        self.progress.inc(amt as u64);
        self.inner.consume(amt);
    }
}

/// A writer that counts the lines written on a progress spinner.
#[derive(Debug)]
pub struct LineProgress<W> {
    inner: W,
    progress: Progress,
}

impl<W> LineProgress<W> {
    /// Wraps `inner`.
    pub fn new(inner: W, progress: Progress) -> Self {
        LineProgress { inner, progress }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for LineProgress<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        self.progress.inc(lines as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A purge's bar counts the sessions expired when it started; those that expire while it
    /// runs stretch it, where it showed `48887/48863`.
    #[test]
    fn a_bar_past_its_estimate_grows_with_it() {
        let bar = Progress::bar(false, 10, "purging", "sessions");
        bar.set(4);
        assert_eq!(bar.0.length(), Some(10));
        bar.inc(7);
        assert_eq!((bar.0.position(), bar.0.length()), (11, Some(11)));
        bar.set(12);
        assert_eq!(bar.0.length(), Some(12));
    }

    /// An import's bar, once its input is read, says so rather than stand at its end while
    /// the sessions are written.
    #[test]
    fn a_read_bar_says_when_its_input_is_read() {
        let bar = Progress::bar(false, 8, "importing", "bytes");
        let mut reader = ReadProgress::new(&b"abc\ndefg"[..], bar.clone());
        let mut got = String::new();
        reader.read_line(&mut got).unwrap();
        assert_eq!((bar.0.position(), bar.0.message()), (4, "importing".into()));
        reader.read_line(&mut got).unwrap();
        assert_eq!((bar.0.position(), bar.0.message()), (8, AFTER_INPUT.into()));
    }
}
