//! Untrusted text within bounds: a reader that refuses over-long lines while reading (so
//! `analyze /dev/zero` stops at once instead of buffering forever), and [`excerpt`], the one way
//! a message quotes what the user gave: cut short and with control characters escaped.

use std::fmt;
use std::io::{self, Read};

/// The longest line a series file or standard input may have, in bytes: a series line holds a
/// few numbers.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// How many characters of a value a message quotes.
const EXCERPT_CHARS: usize = 60;

/// A reader that fails with [`LineTooLong`] (as `io::ErrorKind::InvalidData`) as soon as a line
/// grows past its cap, before handing the bytes on.
#[derive(Debug)]
pub(crate) struct LineCap<R> {
    inner: R,
    max: usize,
    /// Bytes of the current line so far.
    current: usize,
    /// The current line's number, from 1.
    line: u64,
}

impl<R: Read> LineCap<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineCap {
            inner,
            max,
            current: 0,
            line: 1,
        }
    }
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &byte in &buf[..n] {
            if byte == b'\n' {
                self.line += 1;
                self.current = 0;
            } else {
                self.current += 1;
                if self.current > self.max {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        LineTooLong {
                            line: self.line,
                            max: self.max,
                        },
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// A line longer than a [`LineCap`] allows.
#[derive(Debug)]
pub(crate) struct LineTooLong {
    /// The line's number, from 1.
    pub(crate) line: u64,
    /// The cap, in bytes.
    pub(crate) max: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} is longer than {} bytes (is this the right file?)",
            self.line, self.max
        )
    }
}

impl std::error::Error for LineTooLong {}

/// `text` for a message: at most 60 characters (then `…` and the full length), control and
/// other invisible characters escaped (`\n`, `\0`, `\u{1b}`), so binary garbage or a 100 MB line
/// cannot flood or garble a terminal.
pub(crate) fn excerpt(text: &str) -> String {
    excerpt_of(text, EXCERPT_CHARS, text.len(), false)
}

/// [`excerpt`] at up to 400 characters, for a parser's message that may quote the input.
pub(crate) fn excerpt_message(text: &str) -> String {
    excerpt_of(text, 400, text.len(), false)
}

/// [`excerpt`] of bytes that may not be UTF-8 (invalid sequences show as `\u{fffd}`).
pub(crate) fn excerpt_bytes(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(EXCERPT_CHARS * 4)];
    excerpt_of(
        &String::from_utf8_lossy(head),
        EXCERPT_CHARS,
        bytes.len(),
        head.len() < bytes.len(),
    )
}

fn excerpt_of(text: &str, max_chars: usize, full_len: usize, cut_already: bool) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max_chars) {
        if c.is_control() || c == '\u{feff}' || c == '\u{fffd}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut_already || chars.next().is_some() {
        out.push_str(&format!("… ({full_len} bytes)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_line_fails_at_the_cap() {
        let mut reader = LineCap::new(io::repeat(0), 1000);
        let mut sink = Vec::new();
        let error = reader.read_to_end(&mut sink).expect_err("endless");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(sink.len() <= 1000 + 8192, "read {} bytes", sink.len());
        assert_eq!(
            error.to_string(),
            "line 1 is longer than 1000 bytes (is this the right file?)"
        );
    }

    #[test]
    fn short_lines_pass_and_the_long_one_is_named() {
        let text = format!("a\nbb\n{}\n", "c".repeat(11));
        let mut sink = Vec::new();
        let error = LineCap::new(text.as_bytes(), 10)
            .read_to_end(&mut sink)
            .expect_err("line 3 is long");
        assert!(error.to_string().starts_with("line 3 "), "{error}");
        let mut sink = Vec::new();
        LineCap::new("a\nbb\n0123456789\n".as_bytes(), 10)
            .read_to_end(&mut sink)
            .expect("lines of 10 bytes pass");
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("12QB"), "12QB");
        assert_eq!(excerpt("a\nb\0c\u{1b}[31m"), "a\\nb\\u{0}c\\u{1b}[31m");
        let long = "x".repeat(100_000_000 / 1000);
        let cut = excerpt(&long);
        assert!(cut.starts_with(&"x".repeat(60)), "{cut}");
        assert!(cut.ends_with("… (100000 bytes)"), "{cut}");
        assert!(cut.len() < 100);
        let cut = excerpt_bytes(&[0xff; 1000]);
        assert!(cut.ends_with("… (1000 bytes)"), "{cut}");
        assert!(cut.len() < 600, "{cut}");
        assert_eq!(excerpt_bytes(b"ok"), "ok");
    }
}
