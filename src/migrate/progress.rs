//! A progress line on stderr for long imports and exports: `saving: 5300/120000 (4%)`,
//! redrawn in place with `\r` at most once per percent, and only when stderr is a
//! terminal (a log file or a pipe gets nothing but the final report).

use std::io::{IsTerminal, Write};

/// Fewer items than this finish too fast for a progress line to help.
const MIN_ITEMS: u64 = 1000;

pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    /// `done` when the line was last drawn.
    drawn: u64,
    enabled: bool,
}

impl Progress {
    /// A progress line for `total` items, shown when stderr is a terminal and the total
    /// is large enough to be worth it.
    pub fn new(label: &'static str, total: u64) -> Progress {
        Progress {
            enabled: total >= MIN_ITEMS && std::io::stderr().is_terminal(),
            ..Progress::hidden(label, total)
        }
    }

    /// One that never draws, for tests and callers without a terminal.
    pub fn hidden(label: &'static str, total: u64) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            drawn: 0,
            enabled: false,
        }
    }

    /// Counts `n` more items done, redrawing when another percent is reached.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        let step = (self.total / 100).max(1);
        if self.enabled && self.done - self.drawn >= step {
            self.drawn = self.done;
            self.draw();
        }
    }

    fn draw(&self) {
        let percent = self.done.min(self.total) * 100 / self.total.max(1);
        let mut err = std::io::stderr().lock();
        // Progress is a courtesy: a failed write to the terminal changes nothing.
        let _ = write!(
            err,
            "\r{}: {}/{} ({percent}%)",
            self.label, self.done, self.total
        );
        let _ = err.flush();
    }

    /// Erases the line, so the report that follows starts on a clean one.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        self.enabled = false;
    }
}

impl Drop for Progress {
    /// An error return mid-way must not leave the cursor after a half-drawn line.
    fn drop(&mut self) {
        self.finish();
    }
}
