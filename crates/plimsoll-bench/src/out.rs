//! Standard output for the bench binaries' tables: a reader that went away (`| head -1`) ends
//! the program quietly, a write that fails otherwise (`> /dev/full`) ends it with exit 2 and
//! the reason, never a panic.

use std::io::{self, Write};

/// Writes one line to standard output, or ends the program as the module says.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(error) = written {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write to standard output: {error}");
        std::process::exit(2);
    }
}

/// `println!` through [`line`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
