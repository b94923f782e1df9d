//! Standard output of the commands that print (`analyze`, `check`, `heap`, `snapshot`, `soak`,
//! `up --check`): every write goes through [`write`], so a reader that goes away (`| head -1`)
//! ends the program quietly and a full disk (`> /dev/full`) is an error, never a panic. Notes on
//! standard error go through `errln!`, which never panics either.

use std::fmt;
use std::io::{self, Write as _};

/// Standard output could not be written.
#[derive(Debug)]
pub(crate) struct StdoutError(io::Error);

impl StdoutError {
    /// The reader closed its end of the pipe (EPIPE): not worth a message. Like ripgrep (and
    /// what a C program killed by SIGPIPE looks like to most scripts), the program then exits 0.
    pub(crate) fn is_closed_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot write to standard output")
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Writes `text` to standard output and flushes it, so an error shows here and not at exit.
pub(crate) fn write(text: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_fmt(text)
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// The exit code of a command whose code is a verdict (`analyze`, `soak`), once it printed
/// it: a reader that went away keeps the verdict's code, not 0, so that `plimsoll analyze
/// leak.csv | head -1` under `set -o pipefail` fails as the leak does (0 or 1 by the race
/// between the write and the reader's exit, before). Any other write error stays an error.
pub(crate) fn verdict_code(code: u8, printed: Result<(), StdoutError>) -> Result<u8, StdoutError> {
    match printed {
        Err(error) if error.is_closed_pipe() => Ok(code),
        Err(error) => Err(error),
        Ok(()) => Ok(code),
    }
}

/// `println!` that returns a [`StdoutError`] instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns a [`StdoutError`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a note on standard error (progress, "report written") is lost
/// when standard error is a closed pipe or a full disk, and the command goes on.
macro_rules! errln {
    ($($arg:tt)*) => {{
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("{}\n", format_args!($($arg)*)),
        );
    }};
}

pub(crate) use {errln, out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_keeps_its_code_through_a_closed_pipe() {
        let pipe = || Err(StdoutError(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert_eq!(verdict_code(1, pipe()).ok(), Some(1));
        assert_eq!(verdict_code(3, Ok(())).ok(), Some(3));
        let full = Err(StdoutError(io::Error::from_raw_os_error(28)));
        assert!(verdict_code(0, full).is_err());
    }

    #[test]
    fn a_closed_pipe_is_told_apart_from_a_full_disk() {
        let pipe = StdoutError(io::Error::from(io::ErrorKind::BrokenPipe));
        let full = StdoutError(io::Error::from_raw_os_error(28));
        assert!(pipe.is_closed_pipe());
        assert!(!full.is_closed_pipe());
        let message = format!("{:#}", anyhow::Error::new(full));
        assert!(
            message.starts_with("cannot write to standard output: "),
            "{message}"
        );
        assert!(message.contains("No space left on device"), "{message}");
    }
}
